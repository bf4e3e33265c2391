"""Mapping reads that lost or changed data unsaid: each is now refused, or counted and warned.

Number separators the mapping does not declare, an empty string in true_values/false_values,
local times the daylight-saving change skips or repeats, and header names that differ only by
surrounding spaces or case.
"""

from __future__ import annotations

import logging
from io import StringIO
from pathlib import Path

import pandas as pd
import pytest
import yaml

from features.intake.contract import ContractError
from features.intake.ingest import ingest_file
from features.intake.io import read_declarations
from features.intake.mapping import apply_mapping, parse_mapping_text

SOURCE = """\
ID;AT;OFFICE;MODE;ORIGIN;HS;KG;VALUE;IOSS
A1;01.02.2026 10:00;FR01;P;CN;851762;450;12,50;X
A2;01.02.2026 11:00;FR01;P;CN;950300;900;18,00;N
A3;01.02.2026 12:00;FR02;P;US;610910;120;9,99;X
"""

MAPPING = """\
delimiter: ";"
columns:
  declaration_id: ID
  declared_at: {column: AT, format: "%d.%m.%Y %H:%M", timezone: Europe/Berlin}
  arrival_office: OFFICE
  channel: {column: MODE, values: {P: postal}}
  origin_country: ORIGIN
  hs_code: HS
  gross_weight_kg: {column: KG, decimal: ",", scale: 0.001}
  declared_value: {column: VALUE, decimal: ","}
  currency: {value: EUR}
  ioss_prepaid: {column: IOSS, true_values: ["X"], false_values: ["N"]}
"""


def _raw(text: str = SOURCE) -> pd.DataFrame:
    return pd.read_csv(StringIO(text), sep=";", dtype="str", keep_default_na=False, na_values=[""])


def _with(old: str, new: str, text: str) -> str:
    assert old in text
    return text.replace(old, new)


def _ingest(tmp_path: Path, source: str = SOURCE, mapping: str = MAPPING) -> dict:
    source_path, mapping_path = tmp_path / "export.csv", tmp_path / "mapping.yaml"
    source_path.write_text(source, encoding="utf-8")
    mapping_path.write_text(mapping, encoding="utf-8")
    return ingest_file(source=source_path, mapping_path=mapping_path, out=tmp_path / "out.parquet")


# --- 1. a separator the mapping does not declare ------------------------------------------------


def test_a_dot_with_decimal_comma_and_no_thousands_is_refused_naming_rows() -> None:
    raw = _raw().assign(KG=["450", "1.234", "1.200"])
    with pytest.raises(ContractError) as err:
        apply_mapping(raw, parse_mapping_text(MAPPING))
    message = str(err.value)
    assert "gross_weight_kg (source column 'KG'): numbers holding '.'" in message
    assert 'add thousands: "."' in message
    assert "row 2 (A2): '1.234'; row 3 (A3): '1.200'" in message


def test_the_same_cells_read_with_thousands_dot() -> None:
    raw = _raw().assign(KG=["450", "1.234", "1.200"])
    mapping = _with('decimal: ",", scale', 'decimal: ",", thousands: ".", scale', MAPPING)
    out, _ = apply_mapping(raw, parse_mapping_text(mapping))
    assert out["gross_weight_kg"].tolist() == pytest.approx([0.45, 1.234, 1.2])


def test_a_comma_with_the_default_decimal_and_no_thousands_is_refused_suggesting_it() -> None:
    raw = _raw().assign(VALUE=["12.50", "1,018.00", "9.99"])
    mapping = _with(
        'declared_value: {column: VALUE, decimal: ","}', "declared_value: VALUE", MAPPING
    )
    with pytest.raises(ContractError, match=r"numbers holding ','.*add thousands: \",\".*row 2"):
        apply_mapping(raw, parse_mapping_text(mapping))


def test_numbers_without_the_other_separator_still_read() -> None:
    out, _ = apply_mapping(_raw(), parse_mapping_text(MAPPING))
    assert out["declared_value"].tolist() == pytest.approx([12.5, 18.0, 9.99])


# --- 2. an empty string in true_values / false_values -------------------------------------------


@pytest.mark.parametrize("spec", ['true_values: ["X"], false_values: [""]', 'true_values: [""]'])
def test_an_empty_true_or_false_value_is_refused_pointing_to_default(spec: str) -> None:
    mapping = _with('true_values: ["X"], false_values: ["N"]', spec, MAPPING)
    with pytest.raises(ContractError, match=r"ioss_prepaid\..*empty value.*default: 'N'"):
        parse_mapping_text(mapping)


def test_a_true_or_false_value_that_is_a_null_value_is_refused() -> None:
    mapping = _with('false_values: ["N"]', 'false_values: ["NULL"]', MAPPING)
    with pytest.raises(ContractError, match=r"also null_values.*ioss_prepaid: 'NULL'"):
        parse_mapping_text(mapping)


def test_default_reads_empty_cells_as_a_false_value() -> None:
    raw = _raw().assign(IOSS=["X", None, None])
    mapping = _with('false_values: ["N"]', 'false_values: ["N"], default: "N"', MAPPING)
    out, _ = apply_mapping(raw, parse_mapping_text(mapping))
    assert out["ioss_prepaid"].tolist() == [True, False, False]


# --- 3. local times the daylight-saving change skips or repeats ---------------------------------

SPRING = ["29.03.2026 02:10", "29.03.2026 02:50", "29.03.2026 03:20"]


def test_skipped_spring_times_keep_their_order_moved_by_the_clock_change() -> None:
    out, _ = apply_mapping(_raw().assign(AT=SPRING), parse_mapping_text(MAPPING))
    utc = out["declared_at"].dt.strftime("%H:%M").tolist()
    assert utc == ["01:10", "01:50", "01:20"]  # 02:10 -> 03:10 CEST; 03:20 CEST as written
    assert out["declared_at"].is_unique


def test_the_gap_is_the_zones_own() -> None:
    # Lord Howe Island moves its clocks by 30 minutes (02:00 -> 02:30)
    mapping = _with("timezone: Europe/Berlin", "timezone: Australia/Lord_Howe", MAPPING)
    raw = _raw().assign(AT=["04.10.2026 02:10", "04.10.2026 02:20", "04.10.2026 02:40"])
    out, _ = apply_mapping(raw, parse_mapping_text(mapping))
    local = out["declared_at"].dt.tz_convert("Australia/Lord_Howe").dt.strftime("%H:%M")
    assert local.tolist() == ["02:40", "02:50", "02:40"]


def test_skipped_and_repeated_local_times_are_counted_and_warned(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source = SOURCE.replace("01.02.2026 10:00", SPRING[0])
    source = source.replace("01.02.2026 11:00", SPRING[1])
    source = source.replace("01.02.2026 12:00", "25.10.2026 02:30")
    with caplog.at_level(logging.WARNING):
        summary = _ingest(tmp_path, source)
    assert summary["dst_skipped_times_moved_forward"] == 2
    assert summary["dst_repeated_times_read_as_standard"] == 1
    skipped, repeated = caplog.messages
    assert "2 local time(s) the spring clock change skips" in skipped
    assert "declared_at (source column 'AT')" in skipped
    assert "row 1 (A1): '29.03.2026 02:10'" in skipped
    assert "read as standard time" in repeated and "row 3 (A3): '25.10.2026 02:30'" in repeated
    df, _ = read_declarations(tmp_path / "out.parquet")
    assert df["declared_at"].iloc[2] == pd.Timestamp("2026-10-25 01:30", tz="UTC")


def test_a_file_without_such_times_counts_none(tmp_path: Path) -> None:
    summary = _ingest(tmp_path)
    assert summary["dst_skipped_times_moved_forward"] == 0
    assert summary["dst_repeated_times_read_as_standard"] == 0


# --- 4. header names that differ only by surrounding spaces or case -----------------------------


def test_a_mapped_column_beside_a_name_differing_by_a_space_is_refused(tmp_path: Path) -> None:
    source = _with("ORIGIN;HS;KG;VALUE;IOSS\n", "ORIGIN;HS;KG;VALUE;IOSS;OFFICE \n", SOURCE)
    source = source.replace(";X\n", ";X;FR09\n").replace(";N\n", ";N;FR09\n")
    with pytest.raises(ContractError, match=r"differ only by surrounding spaces or case: "):
        _ingest(tmp_path, source)


def test_names_differing_by_case_are_refused_when_mapped(tmp_path: Path) -> None:
    source = _with("ORIGIN;HS", "ORIGIN;hs;HS", SOURCE)
    source = source.replace(";CN;", ";CN;x;").replace(";US;", ";US;x;")
    with pytest.raises(ContractError, match=r"'hs' and 'HS'; the mapping names one of them"):
        _ingest(tmp_path, source)


def test_unmapped_names_differing_by_case_are_only_warned(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source = _with("ORIGIN;HS;KG;VALUE;IOSS\n", "ORIGIN;HS;KG;VALUE;IOSS;Note;NOTE \n", SOURCE)
    source = source.replace(";X\n", ";X;a;b\n").replace(";N\n", ";N;a;b\n")
    with caplog.at_level(logging.WARNING):
        summary = _ingest(tmp_path, source)
    assert summary["rows"] == 3
    assert "'Note' and 'NOTE '; the mapping names none of them" in caplog.text


# --- identifiers a spreadsheet rounded ----------------------------------------------------------


def test_identifiers_in_a_spreadsheets_scientific_notation_are_refused(tmp_path) -> None:
    """770001234567 and 770001987654 are both 7.70001E+11: read as written, 155 consignees
    became 3 (probe). Personal values are not shown; a code such as 3E12 is not rounded."""
    source = (
        "ID;AT;OFFICE;MODE;ORIGIN;HS;KG;VALUE;IOSS;SELLER;BUYER\n"
        "A1;01.02.2026 10:00;FR01;P;CN;851762;450;12,50;X;3E12;7.70001E+11\n"
        "A2;01.02.2026 11:00;FR01;P;CN;950300;900;18,00;N;3E12;7.70002E+11\n"
    )
    mapping = MAPPING + "  seller_id: SELLER\n  consignee_id: BUYER\n"
    with pytest.raises(ContractError) as refused:
        _ingest(tmp_path, source, mapping)
    said = str(refused.value)
    assert "consignee_id (source column 'BUYER'): 2 identifier(s) in scientific notation" in said
    assert "rows 1, 2 (personal: values not shown)" in said and "7.7" not in said
    seller_rounded = source.replace(";3E12;7.70001E+11", ";7.7E+11;C1").replace(
        ";3E12;7.70002E+11", ";4E+11;C2"
    )
    with pytest.raises(ContractError, match=r"seller_id .* e.g. row 1: '7.7E\+11'"):
        _ingest(tmp_path, seller_rounded, mapping)
    fine = source.replace("7.70001E+11", "C1").replace("7.70002E+11", "C2")
    assert _ingest(tmp_path, fine, mapping)["rows"] == 2  # 3E12 is a code, not a rounding


def test_numbers_dates_and_codes_in_arabic_indic_digits_are_read(tmp_path) -> None:
    """Gulf and Egyptian exports write digits as ٠١٢٣: numbers and dates were refused, and
    HS codes passed ingest as written, for validate to refuse (probe)."""
    source = (
        "ID;AT;OFFICE;MODE;ORIGIN;HS;KG;VALUE;IOSS\n"
        "A1;٠١.٠٢.٢٠٢٦ ١٠:٠٠;FR01;P;CN;٨٥١٧.١٢.٠٠;٤٥٠;١٢٫٥٠;X\n"
        "A2;01.02.2026 11:00;FR01;P;CN;950300;900;18,00;N\n"
        "A3;01.02.2026 12:00;FR02;P;US;٦١٠٩١٠;١٢٠;٩٫٩٩;X\n"
    )
    _ingest(tmp_path, source)
    out, _ = read_declarations(tmp_path / "out.parquet", with_outcomes=False)
    assert out["hs_code"].tolist() == ["85171200", "950300", "610910"]
    assert out["gross_weight_kg"].tolist() == pytest.approx([0.45, 0.9, 0.12])
    assert out["declared_value"].tolist() == pytest.approx([12.5, 18.0, 9.99])
    assert str(out["declared_at"].iloc[0]) == "2026-02-01 09:00:00+00:00"  # Berlin, winter


def test_national_codes_longer_than_hs_are_refused_at_ingest_or_cut_by_digits(tmp_path) -> None:
    """610910000011 passed ingest and failed only validate; no spec could read it (probe)."""
    source = (
        "ID;AT;OFFICE;MODE;ORIGIN;HS;KG;VALUE;IOSS\n"
        "A1;01.02.2026 10:00;FR01;P;CN;610910000011;450;12,50;X\n"
        "A2;01.02.2026 11:00;FR01;P;CN;6109.10.00.00.11;900;18,00;N\n"
        "A3;01.02.2026 12:00;FR02;P;US;85171200;120;9,99;X\n"
    )
    with pytest.raises(ContractError, match=r"national codes of more than 10 digits .* digits: 10"):
        _ingest(tmp_path, source)
    _ingest(
        tmp_path, source, _with("  hs_code: HS\n", "  hs_code: {column: HS, digits: 8}\n", MAPPING)
    )
    out, _ = read_declarations(tmp_path / "out.parquet", with_outcomes=False)
    assert out["hs_code"].tolist() == ["61091000", "61091000", "85171200"]
    with pytest.raises(ContractError, match="'digits' shortens HS codes only"):
        parse_mapping_text(
            _with(
                "  arrival_office: OFFICE\n",
                "  arrival_office: {column: OFFICE, digits: 8}\n",
                MAPPING,
            )
        )


def test_codes_and_ids_written_from_floats_are_read_as_the_whole_numbers(tmp_path) -> None:
    """ "610910.0" was joined as tariff notation into 06109100 (another chapter) and "100002.0"
    kept as an id apart from "100002" (probe). A code so written lost its zero too."""
    source = (
        "ID;AT;OFFICE;MODE;ORIGIN;HS;KG;VALUE;IOSS\n"
        "A1;01.02.2026 10:00;FR01;P;CN;6109100000.0;450;12,50;X\n"
        "100002.0;01.02.2026 11:00;FR01;P;CN;90121.0;900;18,00;N\n"
        "A3;01.02.2026 12:00;FR02;P;US;610910.0;120;9,99;X\n"
    )
    summary = _ingest(tmp_path, source)
    assert summary["float_written_values_read"] == {"declaration_id": 1, "hs_code": 3}
    assert summary["hs_code_groups_joined"] == 0
    out, _ = read_declarations(tmp_path / "out.parquet", with_outcomes=False)
    assert out["hs_code"].tolist() == ["6109100000", "090121", "610910"]
    assert out["declaration_id"].tolist() == ["A1", "100002", "A3"]
    # a code in tariff notation is still joined, and "6109.10" is no float
    summary = _ingest(tmp_path, source.replace("610910.0", "6109.10.00"))
    assert summary["hs_code_groups_joined"] == 1


def test_japans_statistical_notation_is_joined_and_digits_cuts_any_longer_code(tmp_path) -> None:
    """8504.40-000 passed ingest as written and failed the gate; digits: 6 left 9 digits."""
    source = SOURCE.replace("851762", "8504.40-000").replace("950300", "0902.30-000")
    summary = _ingest(tmp_path, source)
    assert summary["hs_code_groups_joined"] == 2
    out, _ = read_declarations(tmp_path / "out.parquet", with_outcomes=False)
    assert out["hs_code"].tolist() == ["850440000", "090230000", "610910"]
    _ingest(
        tmp_path, source, _with("  hs_code: HS\n", "  hs_code: {column: HS, digits: 6}\n", MAPPING)
    )
    out, _ = read_declarations(tmp_path / "out.parquet", with_outcomes=False)
    assert out["hs_code"].tolist() == ["850440", "090230", "610910"]


def test_the_indian_grouping_is_read_and_drafted(tmp_path) -> None:
    """1,90,581.82 (lakh and crore) was refused by every spec: an Indian export writes every
    INR amount so (probe). A misgrouped value is still refused."""
    from features.intake.draft import draft_mapping

    source = (
        "ID;AT;OFFICE;MODE;ORIGIN;HS;KG;VALUE;IOSS\n"
        "A1;01.02.2026 10:00;FR01;P;CN;851762;450;1,90,581.82;X\n"
        "A2;01.02.2026 11:00;FR01;P;CN;950300;900;7,405.00;N\n"
        "A3;01.02.2026 12:00;FR02;P;US;610910;120;1,23,45,678;X\n"
    )
    mapping = _with('{column: VALUE, decimal: ","}', '{column: VALUE, thousands: ","}', MAPPING)
    _ingest(tmp_path, source, mapping)
    out, _ = read_declarations(tmp_path / "out.parquet", with_outcomes=False)
    assert out["declared_value"].tolist() == pytest.approx([190581.82, 7405.0, 12345678.0])
    with pytest.raises(ContractError, match="without groups of 3 digits"):
        _ingest(tmp_path, source.replace("7,405.00", "74,05.00"), mapping)
    raw = pd.DataFrame({"Assessable Value": ["1,90,581.82", "7,405.00", "12,345.50"] * 20})
    spec = yaml.safe_load(draft_mapping(raw).text)["columns"]["declared_value"]
    assert spec == {"column": "Assessable Value", "thousands": ","}


def test_an_impossible_iso_date_is_named_so_not_as_a_day_month_question() -> None:
    """2026-13-45 was told to give a format for the day/month order (probe)."""
    from features.intake.mapping import _not_iso_problem

    said = _not_iso_problem(pd.Series(["2026-13-45T10:00:00+01:00"]))
    assert "not a date that exists" in said and "day/month order" not in said
    assert "day/month order" in _not_iso_problem(pd.Series(["02/01/2026 10:00"]))


def test_decimal_auto_reads_each_amount_with_its_own_currencys_marks(tmp_path) -> None:
    """A marketplace column mixing '€22,77', '$63.62', '1.234,50 €' and 'US$ 1,234.50' was
    refused whole: one decimal mark per column (probe). decimal: auto reads each cell's;
    one mark before exactly three digits cannot be told and is refused, naming the row."""
    from features.intake.draft import draft_mapping

    cells = ["€22,77", "$63.62", "1.234,50 €", "US$ 1,234.50", "12 EUR", "7.48 GBP"]
    source = "ID;AT;OFFICE;MODE;ORIGIN;HS;KG;VALUE;IOSS\n" + "".join(
        f"A{i};01.02.2026 10:00;FR01;P;CN;851762;450;{cell};X\n" for i, cell in enumerate(cells)
    )
    mapping = _with(
        '  declared_value: {column: VALUE, decimal: ","}\n  currency: {value: EUR}\n',
        "  declared_value: {column: VALUE, part: number, decimal: auto}\n"
        "  currency: {column: VALUE, part: unit, values: {'€': EUR, '$': USD, 'US$': USD}, "
        "unlisted: keep}\n",
        MAPPING,
    )
    _ingest(tmp_path, source, mapping)
    out, _ = read_declarations(tmp_path / "out.parquet", with_outcomes=False)
    assert out["declared_value"].tolist() == pytest.approx([22.77, 63.62, 1234.5, 1234.5, 12, 7.48])
    assert out["currency"].tolist() == ["EUR", "USD", "EUR", "USD", "EUR", "GBP"]
    with pytest.raises(ContractError, match=r"one separator before exactly three digits.*row 2"):
        _ingest(tmp_path, source.replace("$63.62", "$12,500"), mapping)
    with pytest.raises(ContractError, match="decimal: auto reads each cell's own"):
        parse_mapping_text(_with('decimal: ","}', 'decimal: auto, thousands: ","}', MAPPING))
    raw = pd.DataFrame({"order_value": ["€22,77", "$63.62", "18,81 EUR", "7.48 GBP"] * 10})
    spec = yaml.safe_load(draft_mapping(raw).text)["columns"]["declared_value"]
    assert spec == {"column": "order_value", "part": "number", "decimal": "auto"}


def test_full_width_numbers_among_ascii_ones_are_read(tmp_path) -> None:
    """０．５ and １，２３４ in columns of 0.5 and 1,234 (a Japanese export): not numbers to any
    spec, so the file had to be rewritten (probe)."""
    source = (
        "ID;AT;OFFICE;MODE;ORIGIN;HS;KG;VALUE;IOSS\n"
        "A1;01.02.2026 10:00;FR01;P;CN;８５１７６２;４５０;１２，５０;X\n"
        "A2;０１．０２．２０２６ １１：００;FR01;P;CN;950300;900;18,00;N\n"
        "A3;01.02.2026 12:00;FR02;P;US;610910;120;9,99;X\n"
    )
    _ingest(tmp_path, source)
    out, _ = read_declarations(tmp_path / "out.parquet", with_outcomes=False)
    assert out["hs_code"].tolist() == ["851762", "950300", "610910"]
    assert out["gross_weight_kg"].tolist() == pytest.approx([0.45, 0.9, 0.12])
    assert out["declared_value"].tolist() == pytest.approx([12.5, 18.0, 9.99])
    assert str(out["declared_at"].iloc[1]) == "2026-02-01 10:00:00+00:00"


def test_buddhist_era_years_are_read_with_calendar_buddhist_and_drafted(tmp_path) -> None:
    """A Thai export dates 2569 for 2026: no spec could read it, and an offset of days misses
    the leap days (29/02/2567 is no Gregorian date at all). Fractions of seconds are no years."""
    from features.intake.draft import draft_mapping

    source = (
        "ID;AT;OFFICE;MODE;ORIGIN;HS;KG;VALUE;IOSS\n"
        "A1;05.10.2569 14:05;FR01;P;CN;851762;450;12,50;X\n"
        "A2;29.02.2567 09:00;FR01;P;CN;950300;900;18,00;N\n"
        "A3;01.01.2570 00:30;FR02;P;US;610910;120;9,99;X\n"
    )
    spec = '{column: AT, format: "%d.%m.%Y %H:%M", timezone: Asia/Bangkok, calendar: buddhist}'
    mapping = _with(
        '{column: AT, format: "%d.%m.%Y %H:%M", timezone: Europe/Berlin}', spec, MAPPING
    )
    _ingest(tmp_path, source, mapping)
    out, _ = read_declarations(tmp_path / "out.parquet", with_outcomes=False)
    assert [str(t) for t in out["declared_at"]] == [
        "2026-10-05 07:05:00+00:00",
        "2024-02-29 02:00:00+00:00",
        "2026-12-31 17:30:00+00:00",
    ]
    with pytest.raises(ContractError, match="'calendar' reads timestamps"):
        parse_mapping_text(
            _with("  hs_code: HS\n", "  hs_code: {column: HS, calendar: buddhist}\n", MAPPING)
        )
    days = [f"{d:02d}.10.2569 14:05" for d in range(1, 29)]
    raw = pd.DataFrame({"Datum": days, "ID": [f"A{i}" for i in range(28)]})
    assert "calendar: buddhist" in draft_mapping(raw).text


def test_times_ending_in_a_zone_abbreviation_are_named_with_the_specs_that_read_them(
    tmp_path,
) -> None:
    """'2026-10-05 14:05:33 CEST' was refused as "an impossible date" (probe); the message
    names the abbreviation, and the specs it gives read the column."""
    source = (
        "ID;AT;OFFICE;MODE;ORIGIN;HS;KG;VALUE;IOSS\n"
        "A1;2026-10-05 14:05:33 CEST;FR01;P;CN;851762;450;12,50;X\n"
        "A2;2026-11-05 14:05:33 CET;FR01;P;CN;950300;900;18,00;N\n"
    )
    iso = _with('{column: AT, format: "%d.%m.%Y %H:%M", timezone: Europe/Berlin}', "AT", MAPPING)
    with pytest.raises(ContractError) as err:
        _ingest(tmp_path, source, iso)
    said = str(err.value)
    assert "zone abbreviation (CEST, CET)" in said and "impossible" not in said
    spec = (
        "{column: AT, timezone: Europe/Paris, "
        "format: ['%Y-%m-%d %H:%M:%S CET', '%Y-%m-%d %H:%M:%S CEST']}"
    )
    _ingest(tmp_path, source, _with("declared_at: AT", f"declared_at: {spec}", iso))
    out, _ = read_declarations(tmp_path / "out.parquet", with_outcomes=False)
    assert [str(t) for t in out["declared_at"]] == [
        "2026-10-05 12:05:33+00:00",
        "2026-11-05 13:05:33+00:00",
    ]


def test_hijri_and_solar_hijri_dates_are_read_day_by_day_and_drafted(tmp_path) -> None:
    """A Saudi export dates in the Umm al-Qura calendar (15/06/1447 is 2025-12-06), an
    Iranian one in the Solar Hijri (1404-09-15 is the same day): no offset of years reads
    them, their months are not the Gregorian ones (30 Safar exists, 30 February does not). A
    date that is none of the calendar's, or a Gregorian one among them, is refused by name."""
    from features.intake.draft import draft_mapping

    hijri = (
        "ID;AT;OFFICE;MODE;ORIGIN;HS;KG;VALUE;IOSS\n"
        "A1;15/06/1447 10:30;FR01;P;CN;851762;450;12,50;X\n"
        "A2;30/02/1446 08:00;FR01;P;CN;950300;900;18,00;N\n"
        "A3;1/7/1447 09:00;FR02;P;US;610910;120;9,99;X\n"
    )
    spec = '{column: AT, format: "%d/%m/%Y %H:%M", timezone: Asia/Riyadh, calendar: hijri}'
    mapping = _with(
        '{column: AT, format: "%d.%m.%Y %H:%M", timezone: Europe/Berlin}', spec, MAPPING
    )
    _ingest(tmp_path, hijri, mapping)
    out, _ = read_declarations(tmp_path / "out.parquet", with_outcomes=False)
    assert [str(t) for t in out["declared_at"]] == [
        "2025-12-06 07:30:00+00:00",
        "2024-09-03 05:00:00+00:00",
        "2025-12-21 06:00:00+00:00",
    ]
    # Solar Hijri, year first, dates only; 1403 is a leap year (30 Esfand), 1404 is not
    jalali = (
        hijri.replace("15/06/1447 10:30", "1404-09-15")
        .replace("30/02/1446 08:00", "1403-12-30")
        .replace("1/7/1447 09:00", "1404-01-01")
    )
    spec = '{column: AT, format: "%Y-%m-%d", timezone: Asia/Tehran, calendar: jalali}'
    mapping = _with(
        '{column: AT, format: "%d.%m.%Y %H:%M", timezone: Europe/Berlin}', spec, MAPPING
    )
    _ingest(tmp_path, jalali, mapping)
    out, _ = read_declarations(tmp_path / "out.parquet", with_outcomes=False)
    assert [str(t.tz_convert("Asia/Tehran").date()) for t in out["declared_at"]] == [
        "2025-12-06",
        "2025-03-20",
        "2025-03-21",
    ]
    # not a date of the calendar (29 days in Esfand 1404), or a Gregorian year among them
    for bad in ("1404-12-30", "2026-01-05"):
        with pytest.raises(ContractError, match="AT") as refused:
            _ingest(tmp_path, jalali.replace("1404-09-15", bad), mapping)
        assert bad in str(refused.value)
    # a format the conversion cannot read (a two-digit year) is refused with the mapping
    with pytest.raises(ContractError, match="calendar: hijri converts dates written with"):
        parse_mapping_text(
            _with(
                '{column: AT, format: "%d.%m.%Y %H:%M", timezone: Europe/Berlin}',
                '{column: AT, format: "%d/%m/%y", timezone: Asia/Riyadh, calendar: hijri}',
                MAPPING,
            )
        )
    # the draft proposes the calendar from the years
    days = [f"{d:02d}/06/1447 10:30" for d in range(1, 29)]
    raw = pd.DataFrame({"Date": days, "ID": [f"A{i}" for i in range(28)]})
    assert "calendar: hijri" in draft_mapping(raw).text
    days = [f"1404-09-{d:02d}" for d in range(1, 29)]
    raw = pd.DataFrame({"Date": days, "ID": [f"A{i}" for i in range(28)]})
    assert "calendar: jalali" in draft_mapping(raw).text
