"""Exports that write outcome cells on every row (ASYCUDA: illicit 0, revenue 0, a result date
derived from the declaration date) read with ``outcomes_only_if_inspected``: the cells of
rows not inspected are empty, counted, and a finding among them is named. Results files that
list parcels not inspected store none of them as clean inspections."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd
import pytest

from features.intake.contract import ContractError
from features.intake.mapping import parse_mapping_text
from tests.test_features.exports import ingest_text

EXPORT = """\
ID;DATE;OFFICE;HS;KG;VALUE;ORIGIN;LANE;ILLICIT;REVENUE
A1;2026-08-01;NG01;610910;1,0;10,00;CN;RED;1;25,5
A2;2026-08-01;NG01;610910;1,0;10,00;CN;GREEN;0;0
A3;2026-08-02;NG01;851762;2,0;30,00;CN;YELLOW;0;0
A4;2026-08-02;NG01;851762;2,0;30,00;CN;GREEN;0;0
A5;2026-08-03;NG01;950300;0,5;5,00;CN;BLUE;1;0
"""

MAPPING = """\
outcomes_only_if_inspected: true
columns:
  declaration_id: ID
  declared_at: {column: DATE, timezone: Africa/Lagos}
  arrival_office: OFFICE
  channel: {value: postal}
  hs_code: HS
  gross_weight_kg: {column: KG, decimal: ","}
  declared_value: {column: VALUE, decimal: ","}
  currency: {value: EUR}
  origin_country: ORIGIN
  inspected: {column: LANE, values: {RED: true, YELLOW: true, GREEN: false, BLUE: false}}
  inspected_at: {column: DATE, timezone: Africa/Lagos, offset: "1 day"}
  illicit: {column: ILLICIT, values: {"1": true, "0": false}}
  revenue_recovered: {column: REVENUE, decimal: ","}
"""


def _ingest(tmp_path: Path, mapping: str = MAPPING) -> tuple[dict, pd.DataFrame]:
    return ingest_text(tmp_path, EXPORT, mapping)


def test_outcome_cells_of_rows_not_inspected_are_empty(tmp_path, caplog) -> None:
    with caplog.at_level(logging.WARNING):
        summary, got = _ingest(tmp_path)
    assert got["inspected"].tolist() == [True, False, True, False, False]
    idle = got.loc[["A2", "A4", "A5"]]
    assert idle["illicit"].isna().all() and idle["inspected_at"].isna().all()
    assert idle["revenue_recovered"].isna().all()
    assert got.loc["A1", "illicit"] and got.loc["A1", "revenue_recovered"] == 25.5
    assert got.loc["A3", "illicit"] == False  # noqa: E712 - a clean inspection stays clean
    assert summary["outcomes_blanked_not_inspected"] == 3
    assert summary["findings_on_rows_not_inspected"] == 1  # A5: BLUE lane, illicit 1
    warned = " ".join(r.getMessage() for r in caplog.records)
    assert "row 5 (A5)" in warned and "not inspected held a finding" in warned


def test_what_it_reads_passes_the_gate_where_the_export_as_written_does_not(tmp_path) -> None:
    from features.intake.rules import Limits
    from features.intake.validation import validate_file
    from features.params import load_settings

    limits = Limits.from_settings(load_settings(None))
    _ingest(tmp_path)
    assert validate_file(tmp_path / "out.parquet", limits, cross_check=False).success
    _ingest(tmp_path, MAPPING.replace("outcomes_only_if_inspected: true\n", ""))
    refused = validate_file(tmp_path / "out.parquet", limits, cross_check=False)
    assert not refused.success  # results recorded on parcels never inspected


def test_the_option_needs_inspected_mapped() -> None:
    lines = MAPPING.splitlines()
    without = "\n".join(x for x in lines if not x.startswith("  inspected:"))
    with pytest.raises(ContractError, match="map it"):
        parse_mapping_text(without)


# --- results files: rows not inspected are not results ---------------------------------------


RESULTS_MAPPING = (
    "columns:\n"
    "  declaration_id: ID\n"
    "  inspected: {column: LANE, values: {RED: true, YELLOW: true, GREEN: false}}\n"
    "  inspected_at: DATE\n"
    "  illicit: {column: ILLICIT, values: {'1': true, '0': false}}\n"
)


def _results(tmp_path: Path, rows: str):
    from tests.test_serving.conftest import decided_store, ingest_results_csv

    at = "2026-08-01T10:00:00.000000Z"
    location = decided_store(tmp_path, {d: at for d in ("A1", "A2", "A3")})
    text = "ID;LANE;DATE;ILLICIT\n" + rows
    return ingest_results_csv(tmp_path, location, text, RESULTS_MAPPING), location


def test_a_results_file_row_not_inspected_is_skipped_and_counted(tmp_path) -> None:
    import sqlite3

    run, location = _results(
        tmp_path,
        "A1;RED;2026-08-02T10:00:00Z;1\nA2;GREEN;2026-08-02T10:00:00Z;0\n"
        "A3;YELLOW;2026-08-02T10:00:00Z;0\n",
    )
    assert run.exit_code == 0, run.output
    summary = json.loads(run.output)
    assert summary["stored"] == 2 and summary["skipped_not_inspected"] == 1
    stored = sqlite3.connect(location).execute("SELECT declaration_id FROM outcomes").fetchall()
    assert sorted(r[0] for r in stored) == ["A1", "A3"]  # A2 is no clean inspection


def test_a_results_row_whose_inspected_is_empty_is_refused(tmp_path) -> None:
    from features.errors import ParcelriskError

    source_rows = "A1;RED;2026-08-02T10:00:00Z;1\nA2;;2026-08-02T10:00:00Z;0\n"
    run, _ = _results(tmp_path, source_rows)
    assert isinstance(run.exception, ParcelriskError), run.output
    assert "row 2 (A2)" in str(run.exception) and "neither yes nor no" in str(run.exception)
