"""Foreign-export probe: mapping and gate inputs that were read wrong silently or traced back.

Each test names the probe case it pins (b03 day-first dates, b04 mixed offsets, b04b number
separators, b05 mapping mistakes, b07 extras named like derived columns, b08 numeric HS codes,
and the lower ones: --out suffix, scale 0, repeated header names).
"""

from __future__ import annotations

import logging
from io import StringIO
from pathlib import Path

import pandas as pd
import pytest

from features.intake.contract import ContractError, parse_utc
from features.intake.ingest import ingest_file
from features.intake.io import read_contract, read_declarations
from features.intake.mapping import (
    DERIVED_COLUMNS,
    apply_mapping,
    parse_mapping_text,
)

SOURCE = """\
ID;AT;OFFICE;MODE;ORIGIN;HS;KG;VALUE
A1;2026-01-02T10:00:00Z;FR01;P;CN;851762;0,45;12,50
A2;2026-07-01T02:10:29+02:00;FR01;P;CN;950300;1,20;1.018,00
A3;2026-07-01T00:03:54Z;FR02;P;US;610910;0,90;9,99
"""

MAPPING = """\
delimiter: ";"
columns:
  declaration_id: ID
  declared_at: {column: AT, timezone: Europe/Paris}
  arrival_office: OFFICE
  channel: {column: MODE, values: {P: postal}}
  origin_country: ORIGIN
  hs_code: HS
  gross_weight_kg: {column: KG, decimal: ","}
  declared_value: {column: VALUE, decimal: ",", thousands: "."}
  currency: {value: EUR}
"""


def _raw(text: str = SOURCE) -> pd.DataFrame:
    return pd.read_csv(StringIO(text), sep=";", dtype="str", keep_default_na=False, na_values=[""])


def _with(spec_line: str, replacement: str, text: str = MAPPING) -> str:
    assert spec_line in text
    return text.replace(spec_line, replacement)


# --- b03: day-first dates without a format ----------------------------------------------------


def test_dayfirst_dates_without_format_are_refused_naming_column_rows_and_format() -> None:
    raw = _raw().assign(AT=["02/01/2026 00:32", "13/01/2026 10:00", "01/02/2026 08:00"])
    with pytest.raises(ContractError) as err:
        apply_mapping(raw, parse_mapping_text(MAPPING))
    message = str(err.value)
    assert "declared_at (source column 'AT')" in message
    assert "not ISO 8601" in message and "format: '%d/%m/%Y %H:%M'" in message
    assert "row 1 (A1): '02/01/2026 00:32'" in message


def test_a_single_non_iso_value_among_iso_ones_is_refused() -> None:
    raw = _raw()
    raw.loc[2, "AT"] = "07/01/2026 00:03"
    with pytest.raises(ContractError, match=r"declared_at.*1 value\(s\), e\.g\. row 3 \(A3\)"):
        apply_mapping(raw, parse_mapping_text(MAPPING))


def test_dayfirst_dates_with_their_format_are_read_day_first() -> None:
    raw = _raw().assign(AT=["02/01/2026 00:32", "13/01/2026 10:00", "01/02/2026 08:00"])
    text = _with("{column: AT, timezone", '{column: AT, format: "%d/%m/%Y %H:%M", timezone')
    out, _ = apply_mapping(raw, parse_mapping_text(text))
    assert out["declared_at"].tolist() == [  # Paris is UTC+1 in winter
        pd.Timestamp("2026-01-01T23:32Z"),
        pd.Timestamp("2026-01-13T09:00Z"),
        pd.Timestamp("2026-02-01T07:00Z"),
    ]


def test_spreadsheet_serial_dates_are_refused_as_numbers() -> None:
    raw = _raw().assign(AT=["46024.5", "46204", "46204.25"])
    with pytest.raises(ContractError, match=r"declared_at.*numbers, not timestamps"):
        apply_mapping(raw, parse_mapping_text(MAPPING))


@pytest.mark.parametrize(
    "value", ["02/01/2026", "02/01/2026 00:32", "13/01/2026", "Jan 2 2026", "2.1.2026"]
)
def test_gate_reader_refuses_text_that_is_not_iso(value: str) -> None:
    _, bad = parse_utc(pd.Series(["2026-01-02T10:00:00Z", value]))
    assert bad.tolist() == [False, True]


@pytest.mark.parametrize(
    ("value", "utc"),
    [
        ("2026-01-02", "2026-01-02T00:00Z"),
        ("2026-01-02 10:00", "2026-01-02T10:00Z"),
        ("2026-01-02T10:00:00Z", "2026-01-02T10:00Z"),
        ("2026-01-02T10:00:00+02:00", "2026-01-02T08:00Z"),
        ("2026-01-02T10:00:00+0530", "2026-01-02T04:30Z"),
        ("2026-01-02 10:00:00.250000+00:00", "2026-01-02T10:00:00.25Z"),
        (" 2026-01-02t10:00:00z ", "2026-01-02T10:00Z"),
        ("2026-01-02 10:00:00 UTC", "2026-01-02T10:00Z"),
        ("20260102", "2026-01-02T00:00Z"),
    ],
)
def test_gate_reader_keeps_reading_iso_text(value: str, utc: str) -> None:
    out, bad = parse_utc(pd.Series([value]))
    assert not bad.any()
    assert out.iloc[0] == pd.Timestamp(utc)


# --- b04: one column, several UTC offsets -----------------------------------------------------


@pytest.mark.parametrize(
    "spec",
    ["AT", '{column: AT, format: "%Y-%m-%dT%H:%M:%S%z"}', "{column: AT, timezone: Europe/Paris}"],
)
def test_mixed_utc_offsets_are_each_converted_to_utc(spec: str) -> None:
    text = _with("{column: AT, timezone: Europe/Paris}", spec)
    out, _ = apply_mapping(_raw(), parse_mapping_text(text))
    assert out["declared_at"].tolist() == [
        pd.Timestamp("2026-01-02T10:00Z"),
        pd.Timestamp("2026-07-01T00:10:29Z"),
        pd.Timestamp("2026-07-01T00:03:54Z"),
    ]


def test_naive_iso_values_are_local_to_the_timezone_and_zoned_ones_keep_their_offset() -> None:
    raw = _raw().assign(AT=["2026-01-02 10:00", "2026-07-01T10:00:00+09:00", "2026-07-01"])
    out, _ = apply_mapping(raw, parse_mapping_text(MAPPING))
    assert out["declared_at"].tolist() == [
        pd.Timestamp("2026-01-02T09:00Z"),  # Paris winter, UTC+1
        pd.Timestamp("2026-07-01T01:00Z"),  # its own offset, not Paris
        pd.Timestamp("2026-06-30T22:00Z"),  # Paris summer midnight, UTC+2
    ]


# --- b05: mapping mistakes are mapping errors, not tracebacks -----------------------------------


@pytest.mark.parametrize(
    ("fmt", "says"),
    [
        ("%d/%m/%Y %Q", "'Q' is a bad directive"),
        ("%Y-%m-%d %", "stray %"),
        ("%Y %Y", "not a strptime format"),
        ("mixed", "guesses the day/month order"),
    ],
)
def test_a_bad_format_is_refused_when_the_mapping_is_read(fmt: str, says: str) -> None:
    text = _with("{column: AT, timezone", f'{{column: AT, format: "{fmt}", timezone')
    with pytest.raises(ContractError, match=rf"columns\.declared_at\.format: .*{says}"):
        parse_mapping_text(text)


def test_an_unknown_encoding_is_refused_when_the_mapping_is_read() -> None:
    with pytest.raises(ContractError, match=r"encoding: unknown encoding 'latin1x'"):
        parse_mapping_text(MAPPING.replace('delimiter: ";"', 'delimiter: ";"\nencoding: latin1x'))


def test_values_a_zoned_format_cannot_read_are_bad_values_not_a_traceback() -> None:
    raw = _raw()
    raw.loc[2, "AT"] = "2026-07-01 02:10"  # no offset; the other rows' offsets differ
    text = _with(
        "{column: AT, timezone: Europe/Paris}", '{column: AT, format: "%Y-%m-%dT%H:%M:%S%z"}'
    )
    with pytest.raises(ContractError, match=r"declared_at.*not timestamps in format.*row 3"):
        apply_mapping(raw, parse_mapping_text(text))


# --- b04b: number separators that would scale values -------------------------------------------


def test_the_same_decimal_and_thousands_separator_is_a_mapping_error() -> None:
    text = _with('decimal: ",", thousands: "."', 'decimal: ",", thousands: ","')
    with pytest.raises(ContractError, match=r"declared_value: decimal and thousands are the same"):
        parse_mapping_text(text)


def test_a_value_without_three_digit_groups_after_the_thousands_separator_is_refused() -> None:
    raw = _raw().assign(VALUE=["17.10", "1.018,00", "9.99"])
    with pytest.raises(ContractError) as err:
        apply_mapping(raw, parse_mapping_text(MAPPING))
    message = str(err.value)
    assert "declared_value (source column 'VALUE')" in message
    assert "groups of 3 digits" in message and "separators do not fit" in message
    assert "2 value(s), e.g. row 1 (A1): '17.10'; row 3 (A3): '9.99'" in message


@pytest.mark.parametrize(
    ("value", "number"), [("1.234.567,5", 1234567.5), ("-1.018", -1018.0), ("17,1", 17.1)]
)
def test_well_grouped_values_are_read(value: str, number: float) -> None:
    out, _ = apply_mapping(_raw().assign(VALUE=value), parse_mapping_text(MAPPING))
    assert out["declared_value"].tolist() == [number] * 3


# --- b07: extras named like derived columns ---------------------------------------------------


@pytest.mark.parametrize("name", ["hs6", "hs_chapter", "hs_heading", "value_eur"])
def test_an_extra_named_like_a_derived_column_is_refused(name: str) -> None:
    text = MAPPING + f"extras:\n  - {{column: OFFICE, name: {name}, kind: entity}}\n"
    with pytest.raises(ContractError, match=rf"extra '{name}' clashes with a column the pipeline"):
        parse_mapping_text(text)


def test_derived_columns_cover_every_column_prepare_adds() -> None:
    from features.intake.contract import FIELDS, Contract
    from features.params import FeatureParams
    from features.pipeline.prepare import DERIVED_FROM, prepare

    declarations, _ = apply_mapping(_raw(), parse_mapping_text(MAPPING))
    added = set(prepare(declarations, Contract(), FeatureParams())) - {f.name for f in FIELDS}
    assert added <= DERIVED_COLUMNS
    assert set(DERIVED_FROM) <= DERIVED_COLUMNS


# --- b08: HS codes stored as numbers ----------------------------------------------------------


def test_numeric_hs_codes_get_back_the_zero_of_chapters_01_to_09() -> None:
    raw = _raw().assign(HS=pd.array([901111000, 851762, 61091], dtype="int64"))
    out, _ = apply_mapping(raw, parse_mapping_text(MAPPING))
    assert out["hs_code"].tolist() == ["0901111000", "851762", "061091"]


def test_ingest_counts_the_restored_zeros(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    source, mapping = tmp_path / "export.parquet", tmp_path / "mapping.yaml"
    _raw().assign(HS=[9011110.0, 851762.0, None]).to_parquet(source)
    mapping.write_text(MAPPING)
    with caplog.at_level(logging.WARNING):
        summary = ingest_file(source=source, mapping_path=mapping, out=tmp_path / "out.parquet")
    assert summary["hs_code_zeros_restored"] == 1
    assert "1 code(s) of 5, 7 or 9 digits had lost the leading zero" in caplog.text
    df, _ = read_declarations(tmp_path / "out.parquet")
    assert df["hs_code"].tolist()[:2] == ["09011110", "851762"]


def test_the_gate_refuses_a_parquet_hs_code_stored_as_numbers(tmp_path: Path) -> None:
    declarations, _ = apply_mapping(_raw(), parse_mapping_text(MAPPING))
    path = tmp_path / "declarations.parquet"
    declarations.assign(hs_code=[901111000, 851762, 610910]).to_parquet(path)
    with pytest.raises(ContractError, match=r"'hs_code' is stored as numbers.*parcelrisk ingest"):
        read_declarations(path)
    with pytest.raises(ContractError, match=r"'hs_code' is stored as numbers"):
        read_contract(path)  # what the chunked gate and the Dask engine read first


# --- lower: output suffix, scale, repeated header names ---------------------------------------


def test_ingest_refuses_an_output_that_is_not_parquet(tmp_path: Path) -> None:
    source, mapping = tmp_path / "export.csv", tmp_path / "mapping.yaml"
    source.write_text(SOURCE)
    mapping.write_text(MAPPING)
    with pytest.raises(ContractError, match=r"writes contract Parquet.*out\.parquet"):
        ingest_file(source=source, mapping_path=mapping, out=tmp_path / "out.csv")
    assert not (tmp_path / "out.csv").exists()


@pytest.mark.parametrize("scale", ["0", "-0.001", ".nan", ".inf"])
def test_scale_must_be_a_positive_number(scale: str) -> None:
    text = _with('{column: KG, decimal: ","}', f'{{column: KG, decimal: ",", scale: {scale}}}')
    with pytest.raises(ContractError, match=r"gross_weight_kg\.scale: .*must be a number > 0"):
        parse_mapping_text(text)


def test_a_source_header_naming_a_column_twice_is_refused(tmp_path: Path) -> None:
    source, mapping = tmp_path / "export.csv", tmp_path / "mapping.yaml"
    header, *rows = SOURCE.splitlines()
    source.write_text("\n".join([header + ";VALUE", *(row + ";1,00" for row in rows)]) + "\n")
    mapping.write_text(MAPPING)
    with pytest.raises(ContractError, match=r"names column\(s\) more than once: VALUE;"):
        ingest_file(source=source, mapping_path=mapping, out=tmp_path / "out.parquet")


def test_blank_text_cells_of_a_parquet_source_are_missing_as_in_a_csv(tmp_path: Path) -> None:
    """An export to Parquet writes "" for an empty cell: ingest refused every uninspected row
    ('not timestamps: ""'), where the same cells in a CSV are null_values."""
    source, mapping = tmp_path / "export.parquet", tmp_path / "mapping.yaml"
    raw = _raw().assign(RESULT=["", "NULL", "POS"], WHEN=["", "", "2026-07-02T10:00:00Z"])
    raw["INSPECTED"] = ["N", "N", "Y"]
    raw.to_parquet(source)
    mapping.write_text(
        MAPPING
        + "  inspected: {column: INSPECTED, true_values: [Y], false_values: [N]}\n"
        + "  inspected_at: WHEN\n"
        + "  illicit: {column: RESULT, values: {POS: true, NEG: false}}\n"
    )
    summary = ingest_file(source=source, mapping_path=mapping, out=tmp_path / "out.parquet")
    assert summary["rows"] == 3
    df, _ = read_declarations(tmp_path / "out.parquet", with_outcomes=True)
    assert df["inspected_at"].isna().tolist() == [True, True, False]
    assert df["illicit"].tolist()[2] is True and df["illicit"].isna().tolist()[:2] == [True, True]


# --- a typed export's boolean columns ---------------------------------------------------------


@pytest.mark.parametrize("tables", ["true_values: ['True'], false_values: ['False']", ""])
def test_typed_boolean_cells_are_read_as_they_are_whatever_the_text_tables(tables) -> None:
    """A Parquet export's bool column (nulls too: object cells) with the text tables a draft
    writes, or none: its booleans are the values; a text cell still needs the tables."""
    raw = _raw()
    raw["CHECKED"] = pd.Series([True, False, None], dtype="object")
    raw["HIT"] = pd.Series([True, False, False], dtype=bool)
    spec = f"{{column: CHECKED, {tables}}}" if tables else "CHECKED"
    hit = f"{{column: HIT, {tables}}}" if tables else "HIT"
    mapping = parse_mapping_text(MAPPING + f"  inspected: {spec}\n  illicit: {hit}\n")
    out = apply_mapping(raw, mapping)[0]
    assert out["inspected"].tolist()[:2] == [True, False] and pd.isna(out["inspected"].iloc[2])
    assert out["illicit"].tolist()[:2] == [True, False]
    raw["CHECKED"] = ["True", "maybe", None]
    if tables:
        with pytest.raises(ContractError, match=r"not in true_values \['True'\].*'maybe'"):
            apply_mapping(raw, mapping)


def test_zeros_given_back_as_the_mapping_asked_are_said_but_not_warned(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """DATE's layout mapped with lost_leading_zero: true got the same warning as an export
    that lost the zeros unsaid (benchmark, 2026-12): noise for a person who already said so."""
    source, mapping = tmp_path / "export.parquet", tmp_path / "mapping.yaml"
    _raw().assign(HS=["901111000", "851762", "61091"]).to_parquet(source)
    mapping.write_text(
        MAPPING.replace("hs_code: HS", "hs_code: {column: HS, lost_leading_zero: true}")
    )
    with caplog.at_level(logging.INFO):
        summary = ingest_file(source=source, mapping_path=mapping, out=tmp_path / "out.parquet")
    assert summary["hs_code_zeros_restored"] == 2
    said = [r for r in caplog.records if "had lost the leading zero" in r.getMessage()]
    assert [r.levelno for r in said] == [logging.INFO]
