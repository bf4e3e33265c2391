"""The validation gate: a valid history passes, each kind of corruption is named, files untouched."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from features.contract import write_declarations
from features.validation import validate_declarations, validate_file
from tests.test_features.test_contract import EXTRAS, make_declarations


def _set(column: str, row: int, value) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def corrupt(df: pd.DataFrame) -> pd.DataFrame:
        df = df.copy()
        df.loc[row, column] = value
        return df

    return corrupt


def _drop(column: str) -> Callable[[pd.DataFrame], pd.DataFrame]:
    return lambda df: df.drop(columns=[column])


def _as_text_with(column: str, row: int, value: str) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def corrupt(df: pd.DataFrame) -> pd.DataFrame:
        text = df.astype("str").where(df.notna())
        text.loc[row, column] = value
        return text

    return corrupt


# Rows of make_declarations(): 0, 2, 4 inspected (0 illicit with an offence), 1, 3, 5 not.
CORRUPTIONS = {
    "duplicate ids": (_set("declaration_id", 1, "D00000"), "declaration_id", "duplicate"),
    "null seller_id": (_set("seller_id", 3, None), "seller_id", "null values are not allowed"),
    "bad hs_code": (_set("hs_code", 2, "61A9"), "hs_code", "do not match the format"),
    "bad country": (_set("origin_country", 1, "CHN"), "origin_country", "format"),
    "bad currency": (_set("currency", 4, "EURO"), "currency", "format"),
    "negative value": (_set("declared_value", 1, -5.0), "declared_value", "outside the range"),
    "weight out of range": (
        _set("gross_weight_kg", 5, 5000.0),
        "gross_weight_kg",
        "outside the range",
    ),
    "quantity 0": (_set("quantity", 2, 0), "quantity", "outside the range"),
    "channel not allowed": (_set("channel", 1, "drone"), "channel", "not allowed"),
    "category not allowed": (_set("category", 3, "bribe"), "category", "not allowed"),
    "declared in the far future": (
        _set("declared_at", 1, pd.Timestamp("2100-01-01", tz="UTC")),
        "declared_at",
        "outside the range",
    ),
    "declared before 2000": (
        _set("declared_at", 3, pd.Timestamp("1970-01-01", tz="UTC")),
        "declared_at",
        "outside the range",
    ),
    "illicit where not inspected": (
        _set("illicit", 1, True),
        "illicit",
        "null where the parcel was not inspected",
    ),
    "inspected without inspected_at": (
        _set("inspected_at", 2, pd.NaT),
        "inspected_at",
        "must be set where the parcel was inspected",
    ),
    "inspected without result": (
        _set("illicit", 4, pd.NA),
        "illicit",
        "must be set where the parcel was inspected",
    ),
    "inspected before declared": (
        _set("inspected_at", 2, pd.Timestamp("2026-02-01", tz="UTC")),
        "inspected_at/declared_at",
        "inspected_at is before declared_at",
    ),
    "offence without illicit": (
        _set("offence_type", 2, "counterfeit"),
        "offence_type",
        "unless the parcel was found illicit",
    ),
    "negative revenue recovered": (
        _set("revenue_recovered", 0, -1.0),
        "revenue_recovered",
        "outside the range",
    ),
    "missing required column": (_drop("hs_code"), "hs_code", "required column is missing"),
    "missing extra column": (_drop("broker_id"), "broker_id", "required column is missing"),
    "unconvertible number": (
        _as_text_with("declared_value", 2, "12 EUR"),
        "declared_value",
        "not numbers",
    ),
}


def test_valid_history_passes() -> None:
    result = validate_declarations(make_declarations(), EXTRAS)
    assert result.success, result.render()
    assert result.failures == []
    assert result.render().startswith("OK: 6 rows, ")
    assert result.statistics["evaluated_expectations"] > 50


@pytest.mark.parametrize("case", list(CORRUPTIONS))
def test_gate_rejects_corruption(case: str) -> None:
    corrupt, column, problem = CORRUPTIONS[case]
    result = validate_declarations(corrupt(make_declarations()), EXTRAS)
    assert not result.success
    matching = [f for f in result.failures if f.column == column and problem in f.message]
    assert matching, result.render()
    report = result.render()
    assert report.startswith("INVALID")
    assert column in report and problem in report


def test_empty_file_fails() -> None:
    result = validate_declarations(make_declarations().head(0), EXTRAS)
    assert not result.success
    assert "the file has no rows" in result.render()


def test_failures_show_offending_declaration_ids() -> None:
    result = validate_declarations(_set("hs_code", 2, "61A9")(make_declarations()), EXTRAS)
    (failure,) = result.failures
    assert failure.unexpected_count == 1
    assert failure.examples == [{"hs_code": "61A9", "declaration_id": "D00002"}]
    assert "declaration_id='D00002'" in result.render()


def test_file_without_outcomes_skips_outcome_checks() -> None:
    result = validate_declarations(make_declarations(with_outcomes=False), EXTRAS)
    assert result.success, result.render()
    assert result.statistics["with_outcomes"] is False


def test_unreadable_csv_is_reported_as_failures(tmp_path) -> None:
    text = make_declarations().drop(columns=["seller_country"]).astype("str")
    text.loc[1, "quantity"] = "many"
    path = tmp_path / "broken.csv"
    text.to_csv(path, index=False)
    result = validate_file(path)
    assert not result.success
    report = result.render()
    assert "seller_country: required column is missing" in report
    assert "quantity: values are not numbers" in report


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_file_is_unchanged_and_data_docs_written(tmp_path) -> None:
    path = tmp_path / "declarations.parquet"
    write_declarations(_set("illicit", 1, True)(make_declarations()), path, EXTRAS)
    before = _sha256(path)
    result = validate_file(path, report_dir=tmp_path / "report")
    assert not result.success
    assert _sha256(path) == before
    assert (tmp_path / "report" / "index.html").is_file()
    assert list((tmp_path / "report" / "validations").rglob("*.html"))


def test_cli_validate_exit_codes(tmp_path) -> None:
    from serving.main import app

    good, bad = tmp_path / "good.parquet", tmp_path / "bad.parquet"
    write_declarations(make_declarations(), good, EXTRAS)
    write_declarations(_set("channel", 1, "drone")(make_declarations()), bad, EXTRAS)
    runner = CliRunner()

    ok = runner.invoke(app, ["validate", str(good)])
    assert ok.exit_code == 0, ok.output
    assert "OK: 6 rows" in ok.output

    failed = runner.invoke(app, ["validate", str(bad)])
    assert failed.exit_code == 1, failed.output
    assert "channel: values not allowed" in failed.output
    assert "drone" in failed.output
