"""``outcomes ingest --mapping``: local inspection times a clock change skips or repeats are
read as ``ingest`` reads them, and counted and warned the same way, not passed over unsaid."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from tests.test_serving.conftest import decided_store, ingest_results_csv

MAPPING = (
    "columns:\n"
    "  declaration_id: DECL\n"
    "  inspected_at: {column: DATE, format: '%d/%m/%Y %H:%M', timezone: Europe/Paris}\n"
    "  illicit: {column: RESULT, values: {POS: true, NEG: false}}\n"
)


def _ingest(tmp_path: Path, rows: str) -> tuple[object, str]:
    location = decided_store(
        tmp_path,
        {
            "D1": "2026-03-28T10:00:00.000000Z",
            "D2": "2026-10-24T10:00:00.000000Z",
            "D3": "2026-06-01T10:00:00.000000Z",
        },
        scored_at="2026-03-01T12:00:00.000000+00:00",
    )
    return ingest_results_csv(tmp_path, location, "DECL;DATE;RESULT\n" + rows, MAPPING), location


def test_skipped_and_repeated_local_times_are_counted_and_warned(tmp_path, caplog) -> None:
    with caplog.at_level(logging.WARNING):
        run, location = _ingest(
            tmp_path,
            "D1;29/03/2026 02:30;POS\n"  # Paris skips 02:00-03:00 that night
            "D2;25/10/2026 02:30;NEG\n"  # and repeats 02:00-03:00 in October
            "D3;02/06/2026 11:00;NEG\n",
        )
    assert run.exit_code == 0, run.output
    summary = json.loads(run.output)
    assert summary["stored"] == 3
    assert summary["dst_skipped_times_moved_forward"] == 1
    assert summary["dst_repeated_times_read_as_standard"] == 1
    warned = " ".join(r.getMessage() for r in caplog.records)
    assert "the spring clock change skips" in warned and "row 1 (D1)" in warned
    assert "the autumn clock change repeats" in warned and "row 2 (D2)" in warned
    import sqlite3

    stored = dict(
        sqlite3.connect(location).execute("SELECT declaration_id, inspected_at FROM outcomes")
    )
    assert stored["D1"].startswith("2026-03-29T01:30")  # 02:30 moved to 03:30 CEST
    assert stored["D2"].startswith("2026-10-25T01:30")  # 02:30 CET, the second pass


def test_a_file_without_such_times_says_nothing_of_them(tmp_path) -> None:
    run, _ = _ingest(tmp_path, "D3;02/06/2026 11:00;NEG\n")
    assert run.exit_code == 0, run.output
    assert "dst_" not in run.output
