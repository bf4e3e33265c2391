"""What real exports write that the mapping now reads, each right or refused naming the rows:
several date layouts in one column, a spreadsheet's serial dates, units and currencies inside
the cell, ISO alpha-3 and numeric country codes, and .xlsx workbooks."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from features.intake.contract import ContractError
from features.intake.ingest import ingest_file
from features.intake.mapping import apply_mapping, parse_mapping_text, read_source

BASE = {
    "ID": ["A1", "A2", "A3", "A4"],
    "AT": ["2026-01-02 10:00"] * 4,
    "HS": ["610910", "851762", "950300", "610910"],
    "VALUE": ["12.50", "7.00", "30.00", "3.25"],
    "KG": ["0.35", "1.2", "0.9", "0.5"],
    "ORIGIN": ["CN", "CN", "DE", "US"],
}

HEAD = """\
columns:
  declaration_id: ID
  arrival_office: {value: FR01}
  channel: {value: postal}
  hs_code: HS
  currency: {value: EUR}
"""

DEFAULTS = {
    "declared_at": "AT",
    "declared_value": "VALUE",
    "gross_weight_kg": "KG",
    "origin_country": "ORIGIN",
}


def _mapping(**specs: str) -> str:
    lines = {**DEFAULTS, **specs}
    head = [line for line in HEAD.splitlines() if line.strip().split(":")[0] not in specs]
    return "\n".join(head) + "\n" + "".join(f"  {name}: {spec}\n" for name, spec in lines.items())


def _apply(columns: dict[str, list], **specs: str) -> pd.DataFrame:
    raw = pd.DataFrame({**BASE, **columns})
    return apply_mapping(raw, parse_mapping_text(_mapping(**specs)))[0]


def _refused(columns: dict[str, list], **specs: str) -> str:
    with pytest.raises(ContractError) as err:
        _apply(columns, **specs)
    return str(err.value)


def _utc(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


# --- several layouts in one date column ---------------------------------------------------------


def test_each_value_is_read_by_the_first_format_that_reads_it_whole() -> None:
    out = _apply(
        {"AT": ["02/01/2026 10:30", "03/01/2026", "04/01/2026 23:59", "05/01/2026"]},
        declared_at='{column: AT, format: ["%d/%m/%Y %H:%M", "%d/%m/%Y"], timezone: Europe/Paris}',
    )
    assert list(out["declared_at"]) == [
        _utc("2026-01-02 09:30"),
        _utc("2026-01-02 23:00"),  # date only: local midnight
        _utc("2026-01-04 22:59"),
        _utc("2026-01-04 23:00"),
    ]


def test_a_value_no_format_reads_is_refused_naming_the_formats_and_rows() -> None:
    message = _refused(
        {"AT": ["02/01/2026 10:30", "2026-01-03", "03/01/2026", "13.01.2026"]},
        declared_at='{column: AT, format: ["%d/%m/%Y %H:%M", "%d/%m/%Y"]}',
    )
    assert "any of the formats" in message and "%d/%m/%Y %H:%M" in message
    assert "row 2 (A2): '2026-01-03'" in message and "row 4 (A4): '13.01.2026'" in message
    assert "2 value(s)" in message


def test_a_single_format_keeps_its_own_message() -> None:
    message = _refused(
        {"AT": ["02/01/2026", "x", "03/01/2026", "04/01/2026"]},
        declared_at='{column: AT, format: "%d/%m/%Y"}',
    )
    assert "not timestamps in format '%d/%m/%Y'" in message and "row 2 (A2): 'x'" in message


@pytest.mark.parametrize("bad", ["[]", '["%d/%m/%Y", "%Q"]', '["%d/%m/%Y", mixed]'])
def test_a_bad_format_list_is_refused_when_the_mapping_is_read(bad: str) -> None:
    with pytest.raises(ContractError, match="declared_at"):
        parse_mapping_text(_mapping(declared_at=f"{{column: AT, format: {bad}}}"))


def test_a_format_on_a_field_that_is_no_timestamp_is_refused() -> None:
    with pytest.raises(ContractError, match="'format' reads timestamps"):
        parse_mapping_text(_mapping(declared_value='{column: VALUE, format: "%d"}'))


# --- a spreadsheet's serial dates ---------------------------------------------------------------


def test_excel_serial_days_are_read_as_local_times() -> None:
    out = _apply(
        {"AT": ["46023", "46023.5", "46024.999988426", "46204.25"]},
        declared_at="{column: AT, format: excel, timezone: Europe/Paris}",
    )
    assert list(out["declared_at"]) == [
        _utc("2025-12-31 23:00"),  # 2026-01-01 00:00 in Paris
        _utc("2026-01-01 11:00"),
        _utc("2026-01-02 22:59:59"),  # 23:59:59 written as a binary fraction of a day
        _utc("2026-07-01 04:00"),  # summer time: UTC+2
    ]


def test_excel_serials_from_a_numeric_column_and_beside_written_dates() -> None:
    raw = pd.DataFrame({**BASE, "AT": [46023.5, 46024.0, 46025.25, 46026.0]})
    out = apply_mapping(
        raw, parse_mapping_text(_mapping(declared_at="{column: AT, format: excel}"))
    )
    assert out[0]["declared_at"].iloc[0] == _utc("2026-01-01 12:00")
    mixed = _apply(
        {"AT": ["46023.5", "02/01/2026", "46025", "04/01/2026"]},
        declared_at='{column: AT, format: [excel, "%d/%m/%Y"]}',
    )
    assert list(mixed["declared_at"].dt.day) == [1, 2, 3, 4]


@pytest.mark.parametrize("bad", ["0", "-3", "3000000", "01/02/2026"])
def test_what_is_no_serial_day_is_refused(bad: str) -> None:
    message = _refused(
        {"AT": ["46023", bad, "46025", "46026"]}, declared_at="{column: AT, format: excel}"
    )
    assert "not spreadsheet serial dates" in message and f"row 2 (A2): {bad!r}" in message


def test_numbers_without_a_format_point_to_excel() -> None:
    message = _refused({"AT": ["46023.5"] * 4})
    assert "format: excel" in message


# --- units and currencies written in the cell ---------------------------------------------------


UNITS = '{column: KG, units: {g: 0.001, kg: 1, lb: 0.45359237}, decimal: ","}'


def test_units_in_the_cell_are_converted_whatever_their_case_and_side() -> None:
    out = _apply({"KG": ["350 g", "1,2 kg", "2lb", "KG 0,5"]}, gross_weight_kg=UNITS)
    assert list(out["gross_weight_kg"].round(6)) == [0.35, 1.2, 0.907185, 0.5]


@pytest.mark.parametrize(
    ("cell", "problem"),
    [
        ("3 oz", "units not in the 'units' table ('g', 'kg', 'lb')"),
        ("0,3", "units not in the 'units' table"),  # no unit: which one was meant?
        ("1 kg 300 g", "not a number with at most one unit"),
        ("kg", "not a number with at most one unit"),
        ("g 3 kg", "not a number with at most one unit"),
    ],
)
def test_a_cell_the_units_table_cannot_read_is_refused_naming_it(cell: str, problem: str) -> None:
    message = _refused({"KG": ["350 g", cell, "1 kg", "2 kg"]}, gross_weight_kg=UNITS)
    assert problem in message and f"row 2 (A2): {cell!r}" in message


def test_a_bare_number_reads_only_with_the_empty_unit_in_the_table() -> None:
    out = _apply(
        {"KG": ["350 g", "0,3", "1 kg", "2"]},
        gross_weight_kg='{column: KG, units: {g: 0.001, kg: 1, "": 1}, decimal: ","}',
    )
    assert out["gross_weight_kg"].tolist() == pytest.approx([0.35, 0.3, 1.0, 2.0])


def test_the_number_and_the_currency_of_one_cell() -> None:
    out = _apply(
        {"VALUE": ["12,50 €", "USD 7,00", "€ 1.234,00", "3 eur"]},
        declared_value='{column: VALUE, part: number, decimal: ",", thousands: "."}',
        currency='{column: VALUE, part: unit, values: {"€": EUR, USD: USD, eur: EUR}}',
    )
    assert list(out["declared_value"]) == [12.5, 7.0, 1234.0, 3.0]
    assert list(out["currency"]) == ["EUR", "USD", "EUR", "EUR"]


def test_a_value_without_its_currency_is_refused_not_given_one() -> None:
    message = _refused(
        {"VALUE": ["12.50 USD", "7.00", "30 USD", "1 USD"]},
        declared_value="{column: VALUE, part: number}",
        currency="{column: VALUE, part: unit}",
    )
    assert "currency" in message and "without its unit or currency" in message
    assert "row 2 (A2): '7.00'" in message


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ("{column: KG, units: {kg: 1}, scale: 2}", "not also a 'scale'"),
        ("{column: KG, units: {kg: 0}}", "must be numbers > 0"),
        ("{column: KG, units: {kg: 1, KG: 1}}", "differ only by case"),
        ("{column: KG, units: {}}", "an empty table"),
        ("{column: KG, part: unit}", "part: unit reads a unit or currency code as text"),
        ("{column: KG, units: {kg: 1}, values: {a: 1}}", "'values' table reads codes"),
    ],
)
def test_unit_specs_that_cannot_work_are_refused_when_read(spec: str, problem: str) -> None:
    with pytest.raises(ContractError, match="gross_weight_kg") as err:
        parse_mapping_text(_mapping(gross_weight_kg=spec))
    assert problem in str(err.value)


def test_units_on_a_text_field_are_refused() -> None:
    with pytest.raises(ContractError, match="hs_code: 'units' and part: number read numbers"):
        parse_mapping_text(_mapping(hs_code="{column: HS, units: {kg: 1}}"))


# --- ISO 3166 alpha-3 and numeric country codes -------------------------------------------------


def test_alpha3_codes_become_alpha2_whatever_their_case() -> None:
    out = _apply(
        {"ORIGIN": ["CHN", "deu", " USA ", "XKX"]},
        origin_country="{column: ORIGIN, country_codes: alpha3, values: {XKX: XK}}",
    )
    assert list(out["origin_country"]) == ["CN", "DE", "US", "XK"]


def test_numeric_codes_get_their_leading_zeros() -> None:
    raw = pd.DataFrame({**BASE, "ORIGIN": [156, 36, 276, 4]})
    mapping = parse_mapping_text(
        _mapping(origin_country="{column: ORIGIN, country_codes: numeric}")
    )
    assert list(apply_mapping(raw, mapping)[0]["origin_country"]) == ["CN", "AU", "DE", "AF"]


def test_a_code_outside_the_standard_is_refused_naming_it() -> None:
    message = _refused(
        {"ORIGIN": ["CHN", "CN", "ZZZ", "DEU"]},
        origin_country="{column: ORIGIN, country_codes: alpha3}",
    )
    assert "not ISO 3166 alpha3 country codes" in message and "2 value(s)" in message
    assert "row 2 (A2): 'CN'" in message and "row 3 (A3): 'ZZZ'" in message
    # the one-line fix for codes mixed with other forms is named (probe 32: only the 'values'
    # table was, for 873 names)
    assert "reads with country_codes: name" in message


def test_an_empty_optional_country_stays_unknown() -> None:
    out = _apply(
        {"SELLER_COUNTRY": ["CHN", None, None, "DEU"]},
        seller_country="{column: SELLER_COUNTRY, country_codes: alpha3}",
    )
    assert out["seller_country"].tolist()[0] == "CN" and out["seller_country"].isna().sum() == 2


@pytest.mark.parametrize(
    ("field", "spec"),
    [
        ("hs_code", "{column: HS, country_codes: alpha3}"),
        ("origin_country", "{value: CHN, country_codes: alpha3}"),
    ],
)
def test_country_codes_outside_a_country_column_are_refused(field: str, spec: str) -> None:
    with pytest.raises(ContractError, match="country_codes"):
        parse_mapping_text(_mapping(**{field: spec}))


# --- .xlsx workbooks ----------------------------------------------------------------------------


WORKBOOK_MAPPING = """\
sheet: Declarations
columns:
  declaration_id: ID
  declared_at: {column: AT, timezone: Europe/Paris}
  arrival_office: {value: FR01}
  channel: {column: MODE, values: {P: postal, E: express}}
  hs_code: HS
  declared_value: VALUE
  currency: {value: EUR}
  gross_weight_kg: {column: WEIGHT, units: {g: 0.001, kg: 1}}
  origin_country: {column: ORIGIN, country_codes: alpha3}
  seller_id: SELLER
  aeo_operator: AEO
"""


def _workbook(path: Path, sheets: dict[str, pd.DataFrame]) -> Path:
    with pd.ExcelWriter(path, engine="openpyxl") as writer:
        for name, frame in sheets.items():
            frame.to_excel(writer, sheet_name=name, index=False)
    return path


def _declarations_sheet() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "ID": [1001, 1002, 1003],
            "AT": [dt.datetime(2026, 1, 2, 10, 30), dt.datetime(2026, 7, 1), None],
            "MODE": ["P", "E", "P"],
            "HS": [901111000, 610910, 85044090],  # numbers: chapter 09 lost its zero
            "VALUE": [12.5, 7, 1234.75],
            "WEIGHT": ["350 g", "1.2 kg", "2 kg"],
            "ORIGIN": ["CHN", "DEU", "USA"],
            "SELLER": ["S1", "NULL", None],
            "AEO": [True, False, None],
        }
    )


def _ingest(tmp_path: Path, source: Path, mapping: str = WORKBOOK_MAPPING) -> tuple[dict, Path]:
    mapping_path = tmp_path / "mapping.yaml"
    mapping_path.write_text(mapping, encoding="utf-8")
    out = tmp_path / "out.parquet"
    return ingest_file(source=source, mapping_path=mapping_path, out=out), out


def test_a_workbook_sheet_is_read_with_the_types_its_cells_hold(tmp_path) -> None:
    book = _workbook(
        tmp_path / "export.xlsx",
        {"Cover": pd.DataFrame({"note": ["x"]}), "Declarations": _declarations_sheet()},
    )
    summary, out = _ingest(tmp_path, book)
    got = pd.read_parquet(out)
    assert summary["rows"] == 3 and summary["hs_code_zeros_restored"] == 1
    assert list(got["declaration_id"]) == ["1001", "1002", "1003"]  # not "1001.0"
    assert list(got["hs_code"]) == ["0901111000", "610910", "85044090"]
    assert got["declared_at"].iloc[0] == _utc("2026-01-02 09:30")  # local Paris time, winter
    assert got["declared_at"].iloc[1] == _utc("2026-06-30 22:00")  # summer
    assert pd.isna(got["declared_at"].iloc[2])
    assert list(got["declared_value"]) == [12.5, 7.0, 1234.75]
    assert got["gross_weight_kg"].tolist() == pytest.approx([0.35, 1.2, 2.0])
    assert list(got["origin_country"]) == ["CN", "DE", "US"]
    assert got["seller_id"].iloc[0] == "S1" and got["seller_id"].iloc[1:].isna().all()
    assert got["aeo_operator"].tolist()[:2] == [True, False]


def test_a_workbook_of_several_sheets_needs_the_sheet_named(tmp_path) -> None:
    book = _workbook(
        tmp_path / "export.xlsx",
        {"Cover": pd.DataFrame({"note": ["x"]}), "Declarations": _declarations_sheet()},
    )
    unnamed = WORKBOOK_MAPPING.replace("sheet: Declarations\n", "")
    with pytest.raises(ContractError, match="a workbook of 2 sheets \\('Cover', 'Declarations'\\)"):
        _ingest(tmp_path, book, unnamed)
    with pytest.raises(ContractError, match="no sheet 'Decl' in the workbook; its sheets: 'Cover'"):
        _ingest(tmp_path, book, WORKBOOK_MAPPING.replace("sheet: Declarations", "sheet: Decl"))
    single = _workbook(tmp_path / "single.xlsx", {"Data": _declarations_sheet()})
    assert _ingest(tmp_path, single, unnamed)[0]["rows"] == 3


def test_a_workbook_header_naming_a_column_twice_is_refused(tmp_path) -> None:
    sheet = _declarations_sheet()
    sheet.columns = [*sheet.columns[:-1], "SELLER"]
    book = _workbook(tmp_path / "export.xlsx", {"Declarations": sheet})
    with pytest.raises(ContractError, match="names column\\(s\\) more than once: SELLER"):
        _ingest(tmp_path, book)


def test_spreadsheets_that_are_not_xlsx_and_damaged_workbooks_are_named(tmp_path) -> None:
    mapping = parse_mapping_text(WORKBOOK_MAPPING)
    numbers = tmp_path / "export.numbers"
    numbers.write_bytes(b"PK\x03\x04 not read")
    with pytest.raises(ContractError, match=re.escape("a .numbers spreadsheet is not read")):
        read_source(numbers, mapping)
    old = tmp_path / "export.xls"
    old.write_bytes(b"\xd0\xcf\x11\xe0 truncated")
    with pytest.raises(ContractError, match=re.escape("export.xls: cannot read the workbook")):
        read_source(old, mapping)
    damaged = tmp_path / "damaged.xlsx"
    damaged.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ContractError, match=re.escape("damaged.xlsx: cannot read the workbook")):
        read_source(damaged, mapping)
    csv = tmp_path / "export.csv"
    pd.DataFrame(BASE).to_csv(csv, index=False)
    with pytest.raises(ContractError, match="names a sheet, but this is not a workbook"):
        read_source(csv, mapping)


def test_the_cli_ingests_a_workbook_and_refuses_a_damaged_one_in_one_line(tmp_path) -> None:
    from serving.main import app

    book = _workbook(tmp_path / "export.xlsx", {"Declarations": _declarations_sheet()})
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(WORKBOOK_MAPPING, encoding="utf-8")
    out = tmp_path / "out.parquet"
    args = ["ingest", str(book), "--mapping", str(mapping), "--out", str(out)]
    run = CliRunner().invoke(app, args)
    assert run.exit_code == 0, run.output
    assert len(pd.read_parquet(out)) == 3
    book.write_bytes(b"PK\x03\x04 truncated")
    out.unlink()
    run = CliRunner().invoke(app, args)
    assert isinstance(run.exception, ContractError), run.output
    assert "\n" not in str(run.exception) and not out.exists()


# --- HS codes in tariff notation ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "read"),
    [
        ("6109.10.00", "61091000"),
        ("6109 10 00 90", "6109100090"),
        ("61.09.10", "610910"),
        ("6109-10", "610910"),
        ("0901.11", "090111"),
        ("610910", "610910"),
    ],
)
def test_tariff_notation_is_joined_to_digits(written: str, read: str) -> None:
    out = _apply({"HS": [written, "610910", "851762", "950300"]})
    assert out["hs_code"].iloc[0] == read


def test_other_separators_are_left_for_the_gate_and_counted_when_joined(tmp_path) -> None:
    out = _apply({"HS": ["610.910", "6109.1", "61091.10", "6109.10"]})
    assert out["hs_code"].tolist() == ["610.910", "6109.1", "61091.10", "610910"]
    # one zero after the point is how a program writes a float: the number 61091, whose
    # chapter's zero is lost (read_float_written), not a separator
    assert _apply({"HS": ["61091.0"] * 4})["hs_code"].tolist() == ["061091"] * 4
    frame = pd.DataFrame({**BASE, "HS": ["6109.10.00", "8517.62", "950300", "6109 10"]})
    source = tmp_path / "export.csv"
    frame.to_csv(source, index=False)
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(_mapping(), encoding="utf-8")
    summary = ingest_file(source=source, mapping_path=mapping, out=tmp_path / "out.parquet")
    assert summary["hs_code_groups_joined"] == 3
    assert pd.read_parquet(tmp_path / "out.parquet")["hs_code"].tolist() == [
        "61091000",
        "851762",
        "950300",
        "610910",
    ]


# --- code tables matched whatever the case; a key given twice ----------------------------------


def test_a_key_given_twice_in_the_mapping_is_refused_naming_its_lines() -> None:
    with pytest.raises(ContractError, match=re.escape("key 'hs_code' given twice (lines 5 and 7)")):
        parse_mapping_text(HEAD + "  hs_code: X\n")
    with pytest.raises(ContractError, match="key 'P' given twice"):
        parse_mapping_text(_mapping(channel="{column: M, values: {P: postal, P: express}}"))


def test_ignore_case_matches_a_code_table_whatever_the_case() -> None:
    out = _apply(
        {"MODE": ["P", "p", "Express", "EXPRESS"]},
        channel="{column: MODE, values: {P: postal, express: express}, ignore_case: true}",
    )
    assert out["channel"].tolist() == ["postal", "postal", "express", "express"]
    message = _refused(
        {"MODE": ["P", "p", "E", "P"]}, channel="{column: MODE, values: {P: postal}}"
    )
    assert "codes not in the 'values' table (P)" in message and "row 2 (A2): 'p'" in message


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ("{column: MODE, ignore_case: true}", "give one"),
        (
            "{column: MODE, values: {P: postal, p: express}, ignore_case: true}",
            "differ only by case",
        ),
    ],
)
def test_ignore_case_that_cannot_work_is_refused(spec: str, problem: str) -> None:
    with pytest.raises(ContractError, match=problem):
        parse_mapping_text(_mapping(channel=spec))


# --- several source columns read as one ---------------------------------------------------------


def test_a_date_and_a_time_column_are_read_as_one_timestamp() -> None:
    out = _apply(
        {
            "DAY": ["02/01/2026", "03/01/2026", "04/01/2026", "05/01/2026"],
            "TIME": ["10:30", None, "23:59", "00:05"],
        },
        declared_at='{columns: [DAY, TIME], format: ["%d/%m/%Y %H:%M", "%d/%m/%Y"], '
        "timezone: Europe/Paris}",
    )
    assert list(out["declared_at"]) == [
        _utc("2026-01-02 09:30"),
        _utc("2026-01-02 23:00"),
        _utc("2026-01-04 22:59"),
        _utc("2026-01-04 23:05"),
    ]


def test_a_number_and_its_unit_in_two_columns() -> None:
    out = _apply(
        {"W": ["350", "1.2", "2", "500"], "WU": ["g", "kg", "LB", "g"]},
        gross_weight_kg="{columns: [W, WU], units: {g: 0.001, kg: 1, lb: 0.45359237}}",
    )
    assert out["gross_weight_kg"].tolist() == pytest.approx([0.35, 1.2, 0.907185, 0.5])


def test_a_joined_value_that_does_not_convert_names_both_columns() -> None:
    message = _refused(
        {"W": ["350", "1.2", "2", "500"], "WU": ["g", "kg", "oz", "g"]},
        gross_weight_kg="{columns: [W, WU], units: {g: 0.001, kg: 1}}",
    )
    assert "source column 'W + WU'" in message and "row 3 (A3): '2 oz'" in message


def test_workbook_dates_and_times_join(tmp_path) -> None:
    frame = pd.DataFrame(
        {
            **BASE,
            "DAY": [dt.datetime(2026, 1, d) for d in (2, 3, 4, 5)],
            "TIME": ["10:30", "11:00", "12:00", "13:00"],
        }
    )
    book = _workbook(tmp_path / "export.xlsx", {"Data": frame})
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(_mapping(declared_at='{columns: [DAY, TIME], format: "%Y-%m-%d %H:%M"}'))
    summary = ingest_file(source=book, mapping_path=mapping, out=tmp_path / "out.parquet")
    got = pd.read_parquet(tmp_path / "out.parquet")
    assert got["declared_at"].iloc[0] == _utc("2026-01-02 10:30")
    assert "DAY" not in summary["ignored_source_column_names"]
    assert "AT" in summary["ignored_source_column_names"]


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ("{columns: [AT]}", "two or more"),
        ("{columns: [AT, AT]}", "names a column twice"),
        ("{column: AT, columns: [AT, X]}", "not both"),
    ],
)
def test_joined_columns_that_cannot_work_are_refused(spec: str, problem: str) -> None:
    with pytest.raises(ContractError, match=problem):
        parse_mapping_text(_mapping(declared_at=spec))


def test_a_missing_part_is_named_like_any_missing_column() -> None:
    with pytest.raises(ContractError, match="absent from the file: 'TIME'"):
        _apply({"DAY": ["02/01/2026"] * 4}, declared_at="{columns: [DAY, TIME]}")


def _ods(path: Path, rows: list[list[object]]) -> Path:
    """A minimal OpenDocument spreadsheet (what LibreOffice saves): text, numbers and dates."""
    import zipfile
    from xml.sax.saxutils import escape

    def cell(value: object) -> str:
        if isinstance(value, dt.datetime):
            return (
                f'<table:table-cell office:value-type="date" office:date-value="'
                f'{value.isoformat()}"><text:p>{value}</text:p></table:table-cell>'
            )
        if isinstance(value, int | float):
            return (
                f'<table:table-cell office:value-type="float" office:value="{value}">'
                f"<text:p>{value}</text:p></table:table-cell>"
            )
        return (
            f'<table:table-cell office:value-type="string"><text:p>{escape(str(value))}'
            "</text:p></table:table-cell>"
        )

    body = "".join(
        "<table:table-row>" + "".join(cell(v) for v in row) + "</table:table-row>" for row in rows
    )
    content = (
        '<?xml version="1.0" encoding="UTF-8"?><office:document-content '
        'xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
        'xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" '
        'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" office:version="1.2">'
        '<office:body><office:spreadsheet><table:table table:name="Data">'
        f"{body}</table:table></office:spreadsheet></office:body></office:document-content>"
    )
    manifest = (
        '<?xml version="1.0" encoding="UTF-8"?><manifest:manifest '
        'xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0" '
        'manifest:version="1.2"><manifest:file-entry manifest:full-path="/" '
        'manifest:media-type="application/vnd.oasis.opendocument.spreadsheet"/>'
        '<manifest:file-entry manifest:full-path="content.xml" manifest:media-type="text/xml"/>'
        "</manifest:manifest>"
    )
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(
            zipfile.ZipInfo("mimetype"), "application/vnd.oasis.opendocument.spreadsheet"
        )
        archive.writestr("content.xml", content)
        archive.writestr("META-INF/manifest.xml", manifest)
    return path


def test_an_opendocument_spreadsheet_is_read_like_a_workbook(tmp_path) -> None:
    header = ["ID", "AT", "MODE", "HS", "VALUE", "WEIGHT", "ORIGIN", "SELLER", "AEO"]
    rows = [
        ["A1", dt.datetime(2026, 1, 2, 10, 30), "P", 901111000, 12.5, "350 g", "CHN", "S1", "Y"],
        ["A2", dt.datetime(2026, 7, 1, 0, 0), "E", 610910, 7, "1.2 kg", "DEU", "S2", "N"],
    ]
    book = _ods(tmp_path / "export.ods", [header, *rows])
    mapping = WORKBOOK_MAPPING.replace("sheet: Declarations\n", "").replace(
        "aeo_operator: AEO", "aeo_operator: {column: AEO, true_values: [Y], false_values: [N]}"
    )
    summary, out = _ingest(tmp_path, book, mapping)
    got = pd.read_parquet(out)
    assert summary["rows"] == 2 and summary["hs_code_zeros_restored"] == 1
    assert got["hs_code"].tolist() == ["0901111000", "610910"]
    assert got["declared_at"].tolist() == [_utc("2026-01-02 09:30"), _utc("2026-06-30 22:00")]
    assert got["gross_weight_kg"].tolist() == pytest.approx([0.35, 1.2])
    assert got["origin_country"].tolist() == ["CN", "DE"]
    assert got["aeo_operator"].tolist() == [True, False]


# --- HS codes that lost their leading zero as text, or were written in scientific notation ------


def _ingest_hs(tmp_path: Path, codes: list[str], spec: str = "HS") -> dict:
    frame = pd.DataFrame({**BASE, "HS": codes})
    source = tmp_path / "export.csv"
    frame.to_csv(source, index=False)
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(_mapping(hs_code=spec), encoding="utf-8")
    return ingest_file(source=source, mapping_path=mapping, out=tmp_path / "out.parquet")


def test_text_codes_that_lost_their_zero_get_it_back_when_the_spec_says_so(tmp_path) -> None:
    codes = ["901210000", "30389", "3004900000", "1012100"]
    summary = _ingest_hs(tmp_path, codes, "{column: HS, lost_leading_zero: true}")
    assert summary["hs_code_zeros_restored"] == 3
    assert pd.read_parquet(tmp_path / "out.parquet")["hs_code"].tolist() == [
        "0901210000",
        "030389",
        "3004900000",
        "01012100",
    ]


def test_text_codes_of_odd_length_are_warned_not_changed_unasked(tmp_path, caplog) -> None:
    import logging

    with caplog.at_level(logging.WARNING):
        summary = _ingest_hs(tmp_path, ["901210000", "610910", "851762", "950300"])
    assert summary["hs_code_zeros_restored"] == 0
    assert pd.read_parquet(tmp_path / "out.parquet")["hs_code"].iloc[0] == "901210000"
    warned = " ".join(r.getMessage() for r in caplog.records)
    assert "1 code(s) of 5, 7 or 9 digits" in warned and "lost_leading_zero: true" in warned


def test_codes_in_scientific_notation_are_refused_at_ingest(tmp_path) -> None:
    with pytest.raises(ContractError) as err:
        _ingest_hs(tmp_path, ["610910", "4.022100E+08", "851762", "9.5E+05"])
    message = str(err.value)
    assert "scientific notation" in message and "export the column as text" in message
    assert "row 2: '4.022100E+08'" in message and "2 value(s)" in message
    assert not (tmp_path / "out.parquet").exists()


def test_lost_leading_zero_is_for_hs_codes_only() -> None:
    with pytest.raises(ContractError, match="restores HS codes only"):
        parse_mapping_text(_mapping(declared_value="{column: VALUE, lost_leading_zero: true}"))


def test_identifiers_written_as_numbers_get_their_zeros_back_to_the_width_given(
    tmp_path,
) -> None:
    """``zero_pad: 9``: digits-only ids shorter than 9 are zero-filled; an id with a letter,
    or already 9 digits or longer, is as written. Counted in the ingest summary."""
    ids = {"ID": ["515428", "000515429", "A3", "1234567890"]}
    frame = pd.DataFrame({**BASE, **ids})
    source = tmp_path / "export.csv"
    frame.to_csv(source, index=False)
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(_mapping(declaration_id="{column: ID, zero_pad: 9}"), encoding="utf-8")
    summary = ingest_file(source=source, mapping_path=mapping, out=tmp_path / "out.parquet")
    assert summary["identifier_zeros_restored"] == {"declaration_id": 1}
    got = pd.read_parquet(tmp_path / "out.parquet")["declaration_id"].tolist()
    assert got == ["000515428", "000515429", "A3", "1234567890"]


def test_an_integer_id_column_is_zero_padded_as_text() -> None:
    """A Parquet or workbook integer column of seller numbers reads as the padded text."""
    raw = pd.DataFrame({**BASE, "BUYER": [7, 70, 700, 7000]})
    mapping = _mapping(seller_id="{column: BUYER, zero_pad: 4}")
    out = apply_mapping(raw, parse_mapping_text(mapping))[0]
    assert out["seller_id"].tolist() == ["0007", "0070", "0700", "7000"]


def test_zero_pad_is_for_identifiers_read_from_one_column() -> None:
    with pytest.raises(ContractError, match="identifiers only"):
        parse_mapping_text(_mapping(declared_value="{column: VALUE, zero_pad: 6}"))
    with pytest.raises(ContractError, match="pads one source 'column'"):
        parse_mapping_text(_mapping(seller_id="{value: S1, zero_pad: 6}"))


def test_the_api_refuses_an_hs_code_sent_as_a_number() -> None:
    from pydantic import ValidationError

    from features.intake.contract import Declaration

    body = {
        "declaration_id": "D1", "declared_at": "2026-07-01T08:00:00Z", "arrival_office": "O1",
        "channel": "express", "operator_id": "E1", "seller_id": "S1", "seller_country": "CN",
        "consignee_id": "C1", "origin_country": "CN", "hs_code": 901210000,
        "description": "coffee", "quantity": 1, "gross_weight_kg": 1.0, "declared_value": 9.5,
        "currency": "EUR", "category": "merchandise", "ioss_prepaid": False,
        "aeo_operator": False,
    }  # fmt: skip
    with pytest.raises(ValidationError) as err:
        Declaration.model_validate(body)
    assert "send HS codes as JSON strings" in str(err.value) and "0901210000" in str(err.value)
    Declaration.model_validate({**body, "hs_code": "0901210000"})


def test_a_column_absent_only_by_a_space_names_the_one_the_file_has() -> None:
    raw = pd.DataFrame({**BASE, " VALUE ": BASE["VALUE"]}).drop(columns="VALUE")
    with pytest.raises(ContractError) as err:
        apply_mapping(raw, parse_mapping_text(_mapping()))
    message = str(err.value)
    assert "absent from the file: 'VALUE' (the file has ' VALUE ': write it so" in message


# --- a column's own null values; a code table that renames a few codes ------------------------


def test_a_column_null_values_empty_its_cells_only() -> None:
    out = _apply(
        {"QTY": ["0", "2", "0", "3"], "KG": ["0.35", "0", "0.9", "0.5"]},
        quantity='{column: QTY, null_values: ["0"]}',
    )
    assert out["quantity"].isna().tolist() == [True, False, True, False]
    assert out["gross_weight_kg"].tolist()[1] == 0.0  # another column's 0 stays 0
    filled = _apply(
        {"QTY": ["0", "2", "0", "3"]}, quantity='{column: QTY, null_values: ["0"], default: "1"}'
    )
    assert filled["quantity"].tolist() == [1, 2, 1, 3]


def test_unlisted_keep_renames_the_listed_codes_and_keeps_the_others() -> None:
    out = _apply(
        {"CUR": ["RMB", "USD", "EUR", "rmb"]},
        currency="{column: CUR, values: {RMB: CNY}, unlisted: keep, ignore_case: true}",
    )
    assert out["currency"].tolist() == ["CNY", "USD", "EUR", "CNY"]
    with pytest.raises(ContractError, match="give one"):
        parse_mapping_text(_mapping(currency="{column: CUR, unlisted: keep}"))


def test_typed_numbers_in_a_mixed_column_read_with_the_specs_decimal(tmp_path) -> None:
    """Probe (2026-12): numbers typed as numbers beside text cells written "7,5" became text
    "12.125", which decimal "," with thousands "." read as 12125; and a tiny typed value
    was written 1e-05, which no spec reads."""
    sheet = _declarations_sheet()
    sheet["VALUE"] = pd.Series([12.125, "7,5", 0.00001], dtype=object)
    sheet["WEIGHT"] = pd.Series([1.25, "350 g", "2 kg"], dtype=object)
    book = _workbook(tmp_path / "mixed.xlsx", {"Declarations": sheet})
    mapping = WORKBOOK_MAPPING.replace(
        "declared_value: VALUE", 'declared_value: {column: VALUE, decimal: ",", thousands: "."}'
    ).replace(
        "gross_weight_kg: {column: WEIGHT, units: {g: 0.001, kg: 1}}",
        'gross_weight_kg: {column: WEIGHT, units: {g: 0.001, kg: 1, "": 1}, decimal: ","}',
    )
    _, out = _ingest(tmp_path, book, mapping)
    got = pd.read_parquet(out)
    assert got["declared_value"].tolist() == pytest.approx([12.125, 7.5, 0.00001])
    assert got["gross_weight_kg"].tolist() == pytest.approx([1.25, 0.35, 2.0])


def test_a_sheet_with_a_two_row_header_reads_one_name_per_column(tmp_path) -> None:
    """Group titles merged above their columns' own names (Peso: lordo, netto), the other
    names merged down both rows: read row by row, the groups' columns were "Unnamed" and the
    second row was data; the draft and ingest chose different rows (probe)."""
    import openpyxl

    from features.intake.draft import draft_mapping, read_for_draft
    from features.intake.ingest import ingest_file

    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["Numero dichiarazione", "Data accettazione", "Peso", None, "Valore", None])
    sheet.append([None, None, "lordo (kg)", "netto (kg)", "importo", "valuta"])
    for cell in ("A1:A2", "B1:B2", "C1:D1", "E1:F1"):
        sheet.merge_cells(cell)
    for i in range(30):
        sheet.append([f"26IT{i:08d}", "01/07/2026", 1.5 + i, 1.2 + i, 10.0 + i, "EUR"])
    path = tmp_path / "adm.xlsx"
    book.save(path)
    raw, _ = read_for_draft(path)
    assert list(raw.columns) == [
        "Numero dichiarazione",
        "Data accettazione",
        "Peso lordo (kg)",
        "Peso netto (kg)",
        "Valore importo",
        "Valore valuta",
    ]
    assert len(raw) == 30 and float(raw["Peso lordo (kg)"].iloc[0]) == 1.5
    draft = draft_mapping(raw)
    assert draft.mapped["gross_weight_kg"] == "Peso lordo (kg)"
    mapping = tmp_path / "m.yaml"
    mapping.write_text(
        "columns:\n  declaration_id: Numero dichiarazione\n"
        "  declared_at: {column: Data accettazione, format: '%d/%m/%Y'}\n"
        "  arrival_office: {value: IT01}\n  channel: {value: postal}\n"
        "  origin_country: {value: CN}\n  hs_code: {value: '610910'}\n"
        "  gross_weight_kg: Peso lordo (kg)\n  declared_value: Valore importo\n"
        "  currency: Valore valuta\n"
    )
    summary = ingest_file(source=path, mapping_path=mapping, out=tmp_path / "out.parquet")
    assert summary["rows"] == 30


def test_a_sheets_own_date_cells_beside_text_dates_are_named_with_the_formats_to_add(
    tmp_path,
) -> None:
    """A column of typed dates and text dates ('02.10.2026 10:00'): with the text's format
    the typed cells were refused as text the format did not fit, the message silent on why
    (probe); it names the year-first formats that read them."""
    import datetime as dt

    import openpyxl

    from features.intake.ingest import ingest_file

    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["id", "at", "kg", "value"])
    for i in range(6):
        at = dt.datetime(2026, 10, 2 + i, 10, 0) if i % 2 else f"0{2 + i}.10.2026 10:00"
        sheet.append([f"P{i}", at, 1.5, 12.0])
    path = tmp_path / "zgl.xlsx"
    book.save(path)
    mapping = tmp_path / "m.yaml"
    columns = (
        "  arrival_office: {value: PL01}\n  channel: {value: postal}\n"
        "  origin_country: {value: CN}\n  hs_code: {value: '610910'}\n"
        "  gross_weight_kg: kg\n  declared_value: value\n  currency: {value: PLN}\n"
    )
    mapping.write_text(
        "columns:\n  declaration_id: id\n"
        "  declared_at: {column: at, format: '%d.%m.%Y %H:%M', timezone: Europe/Warsaw}\n" + columns
    )
    with pytest.raises(ContractError, match=r"add '%Y-%m-%d %H:%M:%S' and '%Y-%m-%d'"):
        ingest_file(source=path, mapping_path=mapping, out=tmp_path / "out.parquet")
    mapping.write_text(
        "columns:\n  declaration_id: id\n  declared_at: {column: at, format: ['%d.%m.%Y %H:%M',"
        " '%Y-%m-%d %H:%M:%S'], timezone: Europe/Warsaw}\n" + columns
    )
    assert ingest_file(source=path, mapping_path=mapping, out=tmp_path / "out.parquet")["rows"] == 6


def test_a_title_right_above_a_header_is_no_group_row(tmp_path) -> None:
    """A one-cell title with no blank line under it is not a row of group titles: the header
    keeps its own names (they were read "Declarations export id" for a moment)."""
    import openpyxl

    from features.intake.draft import read_for_draft

    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["Declarations export"])
    sheet.append(["id", "at", "kg", "value"])
    for i in range(10):
        sheet.append([f"P{i}", "2026-10-02 10:00", 1.5, 12.0])
    path = tmp_path / "title.xlsx"
    book.save(path)
    raw, _ = read_for_draft(path)
    assert list(raw.columns) == ["id", "at", "kg", "value"] and len(raw) == 10


# --- what a workbook says beyond its cells: its date system, formulas it never calculated ------

_SERIAL_MAPPING = (
    "columns:\n  declaration_id: ID\n"
    "  declared_at: {column: AT, format: excel}\n"
    "  arrival_office: {value: FR01}\n  channel: {value: postal}\n"
    "  origin_country: {value: CN}\n  hs_code: {value: '610910'}\n"
    "  gross_weight_kg: KG\n  declared_value: VALUE\n  currency: {value: EUR}\n"
)


def _serial_book(path: Path, rows: list[list[object]], *, mac: bool = False) -> Path:
    import openpyxl
    from openpyxl.utils.datetime import CALENDAR_MAC_1904

    book = openpyxl.Workbook()
    if mac:
        book.epoch = CALENDAR_MAC_1904
    sheet = book.active
    sheet.append(["ID", "AT", "KG", "VALUE"])
    for row in rows:
        sheet.append(row)
    book.save(path)
    return path


def test_serial_dates_of_a_1904_workbook_are_counted_from_its_epoch(tmp_path) -> None:
    """A Mac Excel workbook (date1904) counts serial days from 1904-01-01: read from 1899-12-30
    they came out 4 years and a day early, and the gate took 2022 (probe)."""
    # 2026-10-01 14:05 is serial 46296.5868... in the 1900 system, 44834.5868... in the 1904 one
    rows = [["A1", 44834 + (14 * 60 + 5) / 1440, 0.5, 12.0], ["A2", 44835.25, 1.0, 7.0]]
    _, out = _ingest(tmp_path, _serial_book(tmp_path / "mac.xlsx", rows, mac=True), _SERIAL_MAPPING)
    got = pd.read_parquet(out)["declared_at"].tolist()
    assert got == [_utc("2026-10-01 14:05"), _utc("2026-10-02 06:00")]
    # the same serials in a workbook of the usual date system are read from its epoch
    plain = [["A1", 46296.25, 0.5, 12.0]]
    _, out = _ingest(tmp_path, _serial_book(tmp_path / "pc.xlsx", plain), _SERIAL_MAPPING)
    assert pd.read_parquet(out)["declared_at"].tolist() == [_utc("2026-10-01 06:00")]


def test_formulas_a_workbook_never_calculated_are_refused_where_the_mapping_reads_them(
    tmp_path,
) -> None:
    """openpyxl and report writers save formulas without their results; read as empty, a
    declared value was refused by the gate without a word of why and a weight nulled (probe)."""
    rows = [["A1", 46296.25, 0.5, "=10+2.5"], ["A2", 46296.5, 1.0, 7.0]]
    book = _serial_book(tmp_path / "report.xlsx", rows)
    with pytest.raises(ContractError) as err:
        _ingest(tmp_path, book, _SERIAL_MAPPING)
    said = str(err.value)
    assert "1 cell(s) hold a formula with no value saved (e.g. D2)" in said
    assert "'VALUE'" in said and "save it" in said
    assert not (tmp_path / "out.parquet").exists()
    # in a column the mapping does not read: a warning, the rest read
    rows = [["A1", 46296.25, 0.5, 12.5, "=C2*2"], ["A2", 46296.5, 1.0, 7.0, "=C3*2"]]
    book = _serial_book(tmp_path / "report.xlsx", rows)
    summary, _ = _ingest(tmp_path, book, _SERIAL_MAPPING)
    assert summary["rows"] == 2


def test_data_cells_merged_down_rows_are_read_on_every_row_they_cover(tmp_path, caplog) -> None:
    """A platform merged over two rows, as a person groups them, was read on the first alone:
    the second a direct sale, unsaid (probe 34)."""
    import logging

    import openpyxl

    frame = pd.DataFrame({**BASE, "PLATFORM": ["SHEIN", "TEMU", None, "AMZ"]})
    path = tmp_path / "export.xlsx"
    frame.to_excel(path, index=False)
    book = openpyxl.load_workbook(path)
    book.active.merge_cells("G3:G4")  # TEMU over rows 2 and 3 of the data
    book.save(path)
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(_mapping(platform_id="PLATFORM"))
    with caplog.at_level(logging.WARNING):
        ingest_file(source=path, mapping_path=mapping, out=tmp_path / "out.parquet")
    out = pd.read_parquet(tmp_path / "out.parquet")
    assert out["platform_id"].tolist() == ["SHEIN", "TEMU", "TEMU", "AMZ"]
    assert "1 cell range(s) merged over several rows of the data (e.g. rows 3-4 of column " in (
        caplog.text
    )


def test_an_xlsx_sheets_merged_ranges_are_read_from_its_xml(tmp_path) -> None:
    """Asked of calamine, the ranges cost a second parse of the sheet (0.9 s of 2.3 s at 60k
    rows); the sheet's XML, read already for its formulas, declares them."""
    import openpyxl

    from features.intake.mapping import _xlsx_facts

    path = tmp_path / "export.xlsx"
    pd.DataFrame({**BASE, "PLATFORM": ["SHEIN", "TEMU", None, "AMZ"]}).to_excel(path, index=False)
    book = openpyxl.load_workbook(path)
    book.active.merge_cells("G3:G4")
    book.active.merge_cells("A6:B7")
    book.save(path)
    merged = set(_xlsx_facts(path, book.active.title).merged or ())
    assert merged == {((2, 6), (3, 6)), ((5, 0), (6, 1))}
    unmerged = tmp_path / "plain.xlsx"
    pd.DataFrame(BASE).to_excel(unmerged, index=False)
    assert _xlsx_facts(unmerged, "Sheet1").merged == ()


def _small_workbook(tmp_path: Path) -> tuple[Path, Path]:
    path = tmp_path / "export.xlsx"
    pd.DataFrame(BASE).to_excel(path, index=False)
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(_mapping())
    return path, mapping


def test_an_encrypted_or_expanding_workbook_is_refused_before_it_is_read(
    tmp_path, monkeypatch
) -> None:
    """A password-protected .xlsx was "Cannot detect file format"; a 3 MB .xlsx of 3 GiB of
    sheet XML held 4.4 GB before failing (probe 34)."""
    from features.intake import io as intake_io

    path, mapping = _small_workbook(tmp_path)
    out = tmp_path / "out.parquet"
    monkeypatch.setattr(intake_io, "EXPANSION_FLOOR", 0)
    monkeypatch.setattr(intake_io, "MAX_EXPANSION", 1)  # any real workbook expands more
    with pytest.raises(ContractError, match=r"its parts expand to .* more than 1 times its size"):
        ingest_file(source=path, mapping_path=mapping, out=out)
    monkeypatch.undo()
    assert ingest_file(source=path, mapping_path=mapping, out=out)["rows"] == 4
    encrypted = tmp_path / "secret.xlsx"  # what Excel writes with a password: an OLE2 file
    encrypted.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504))
    with pytest.raises(ContractError, match=r"a password-protected \(encrypted\) workbook"):
        ingest_file(source=encrypted, mapping_path=mapping, out=out)


def test_a_sheet_declaring_a_doctype_is_refused_not_left_unchecked(tmp_path) -> None:
    """A DOCTYPE in the sheet's XML made its formula check give up silently: a formula with
    no value saved was read as empty (probe 34)."""
    import zipfile

    path, mapping = _small_workbook(tmp_path)
    with zipfile.ZipFile(path) as book:
        parts = {name: book.read(name) for name in book.namelist()}
    sheet = parts["xl/worksheets/sheet1.xml"]
    doctype = b'<!DOCTYPE x [<!ENTITY e "1">]>'
    head, _, rest = sheet.rpartition(b"?>")  # after the XML declaration, if any
    parts["xl/worksheets/sheet1.xml"] = head + (b"?>" if head else b"") + doctype + rest
    with zipfile.ZipFile(path, "w") as book:
        for name, data in parts.items():
            book.writestr(name, data)
    with pytest.raises(ContractError, match=r"declares a document type \(DOCTYPE\)"):
        ingest_file(source=path, mapping_path=mapping, out=tmp_path / "out.parquet")


def test_formulas_in_a_sheet_whose_xml_cannot_be_checked_are_refused(tmp_path) -> None:
    """The formula check gave up silently when the sheet's XML did not parse (probe 34): its
    formulas' saved values went unchecked. With formulas, such a sheet is refused."""
    import zipfile

    from features.intake.mapping import _xlsx_facts

    rows = [["A1", 46296.25, 0.5, "=10+2.5"], ["A2", 46296.5, 1.0, 7.0]]
    book = _serial_book(tmp_path / "report.xlsx", rows)
    with zipfile.ZipFile(book) as archive:
        parts = {name: archive.read(name) for name in archive.namelist()}
    parts["xl/worksheets/sheet1.xml"] += b"<trailing"  # not well-formed past its root
    with zipfile.ZipFile(book, "w") as archive:
        for name, data in parts.items():
            archive.writestr(name, data)
    with pytest.raises(ContractError, match="holds formulas, and its XML cannot be read"):
        _xlsx_facts(book, "Sheet")
