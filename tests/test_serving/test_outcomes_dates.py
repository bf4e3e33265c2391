"""Results dated by their day alone, and a revenue sent with a currency (probe 10): read as
the end of the day from a file, refused with the fix from the API, never read as midnight."""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Iterator

import pandas as pd
import pytest

from serving.outcomes import dated_results_at_end_of_day, end_of_day
from tests.test_serving.conftest import (
    INSPECTOR_KEY,
    SCORER_KEY,
    decided_store,
    make_declarations,
    stub_service_client,
)


def test_days_alone_are_read_as_the_end_of_their_day() -> None:
    raw = pd.DataFrame(
        {
            "declaration_id": ["D1", "D2", "D3", "D4"],
            "inspected_at": [" 2026-11-21 ", "2026-11-21T10:00:00Z", "2026-02-30", None],
        }
    )
    moved, days = dated_results_at_end_of_day(raw)
    assert days == ["2026-11-21"]
    assert moved["inspected_at"].tolist()[:3] == [
        "2026-11-22T00:00:00Z",
        "2026-11-21T10:00:00Z",
        "2026-02-30",  # no such day: left for the rules to name
    ]
    assert pd.isna(moved["inspected_at"].iloc[3])
    assert raw["inspected_at"].iloc[0] == " 2026-11-21 "  # the caller's frame is untouched
    assert end_of_day("2026-12-31") == "2027-01-01T00:00:00Z"


def test_a_results_file_dated_by_days_counts_from_the_next_day(tmp_path, caplog) -> None:
    """`outcomes ingest` of a contract-named file stored "2026-11-21" as midnight, silently:
    the result counted before that day's inspection (probe 10)."""
    from typer.testing import CliRunner

    from serving.main import app

    location = decided_store(
        tmp_path,
        {"D1": "2026-11-21T10:00:00.000000Z", "D2": "2026-11-20T10:00:00.000000Z"},
        scored_at="2026-11-21T12:00:00.000000+00:00",
    )
    source = tmp_path / "results.csv"
    source.write_text(
        "declaration_id,inspected_at,illicit\nD1,2026-11-21,true\nD2,2026-11-20T15:00:00Z,false\n"
    )
    with caplog.at_level(logging.WARNING):
        run = CliRunner().invoke(app, ["outcomes", "ingest", str(source), "--db", location])
    assert run.exit_code == 0, run.output
    summary = json.loads(run.output)
    assert summary["stored"] == 2 and summary["dated_without_time"] == 1
    said = " ".join(r.getMessage() for r in caplog.records)
    assert "the inspected_at of 1 result(s) is a date without a time (e.g. 2026-11-21)" in said
    stored = dict(
        sqlite3.connect(location).execute("SELECT declaration_id, inspected_at FROM outcomes")
    )
    assert stored["D1"].startswith("2026-11-22T00:00:00")
    assert stored["D2"].startswith("2026-11-20T15:00:00")


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory, stub_runtime) -> Iterator:
    tmp = tmp_path_factory.mktemp("outcomes-dates")
    with stub_service_client(tmp, stub_runtime, "serve:\n  champion_check_s: 0\n") as c:
        yield c


def _post_one(client, **changes) -> dict:
    (declaration,) = make_declarations(1, seed=51, prefix=f"OD{len(changes)}")
    r = client.post(
        "/score", json={"declarations": [declaration]}, headers={"X-API-Key": SCORER_KEY}
    )
    assert r.status_code == 200, r.text
    result = {
        "declaration_id": declaration["declaration_id"],
        "inspected_at": "2026-05-02T08:00:00Z",
        "illicit": True,
        "offence_type": "undervaluation",
        "revenue_recovered": 30.0,
        **changes,
    }
    r = client.post("/outcomes", json={"outcomes": [result]}, headers={"X-API-Key": INSPECTOR_KEY})
    assert r.status_code == 400, r.text
    return r.json()


def test_the_api_refuses_a_day_alone_with_the_fix(client) -> None:
    """It was refused as lacking a time zone, the wrong problem (probe 10)."""
    body = _post_one(client, inspected_at="2026-05-02")
    said = json.dumps(body)
    assert "inspected_at '2026-05-02' is a date without a time" in said
    assert "'2026-05-03T00:00:00Z'" in said and "time zone" not in said
    assert body["error"].startswith("outcomes.0.inspected_at: inspected_at '2026-05-02'")


def test_the_api_says_the_revenue_is_in_eur(client) -> None:
    """A currency beside the revenue was an unexplained "extra input" (probe 10)."""
    said = json.dumps(_post_one(client, revenue_recovered=100.0, currency="BRL"))
    assert "revenue_recovered is in EUR" in said and "outcomes ingest" in said
    assert "Extra inputs are not permitted" not in said
