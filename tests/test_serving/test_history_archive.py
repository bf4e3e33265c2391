"""`history export` reads the archived days too: archiving old decisions (their results stay in
the store) must not take labelled declarations out of the next model's training history."""

from __future__ import annotations

import dataclasses
import json

import pandas as pd
import pytest

from features.errors import ParcelriskError
from features.intake.io import read_declarations
from serving.audit.archive import archive_before
from serving.outcomes import store_outcomes
from serving.store import open_outcome_store
from tests.test_serving.conftest import run_cli
from tests.test_serving.test_store import _record

KEY = b"h" * 40
DAYS = ("2026-05-01", "2026-05-02", "2026-05-03")


def _declared_record(n: int, day: str):
    text = json.dumps(
        {
            "declaration_id": f"D{n}",
            "declared_at": f"{day}T08:00:{n:02d}.000000Z",
            "hs_code": "610910",
        }
    )
    return dataclasses.replace(_record(n), declaration_json=text, declaration_id=f"D{n}")


def _store_with_results(tmp_path, url: str | None):
    """Five decisions a day on DAYS (answered that day), then results for three of each day,
    and one declaration decided again on the last day (its first decision is archived)."""
    import serving.postgres_store as postgres_store
    import serving.sqlite_store as sqlite_store
    from serving.postgres_store import PostgresDecisionStore
    from serving.sqlite_store import SqliteDecisionStore

    location = url or str(tmp_path / "audit.db")
    store = PostgresDecisionStore(url, key=KEY) if url else SqliteDecisionStore(location, key=KEY)
    for d, day in enumerate(DAYS):
        original = sqlite_store._now_iso
        sqlite_store._now_iso = postgres_store._now_iso = lambda day=day: f"{day}T12:00:00.000000Z"
        try:
            store.record([_declared_record(d * 5 + i, day) for i in range(5)])
            if d == len(DAYS) - 1:  # a later model's decision on an archived declaration
                again = dataclasses.replace(_declared_record(1, DAYS[0]), decision_id="again")
                store.record([dataclasses.replace(again, model_version="4", exploration=False)])
        finally:
            sqlite_store._now_iso = postgres_store._now_iso = original
    results = pd.DataFrame(
        [
            {"declaration_id": f"D{n}", "inspected_at": f"{DAYS[n // 5]}T10:00:00Z",
             "illicit": n % 2 == 0, "revenue_recovered": 10.0 * n if n % 2 == 0 else None}
            for n in range(15) if n % 5 < 3
        ]
    )  # fmt: skip
    outcomes = open_outcome_store(location, store)
    store_outcomes(outcomes, results, source="t", now=pd.Timestamp("2026-06-01", tz="UTC"))
    outcomes.close()
    return store, location


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request) -> str | None:
    return request.getfixturevalue("postgres_url") if request.param == "postgresql" else None


def _export(capsys, location: str, out, *since: str) -> tuple[pd.DataFrame, dict]:
    code, stdout, err = run_cli(capsys, "history", "export", "--db", location, "--out", str(out), *since)  # fmt: skip
    assert code == 0, err
    history, _ = read_declarations(out, with_outcomes=True)
    return history, json.loads(stdout)


def test_the_history_is_the_same_before_and_after_an_archive(tmp_path, capsys, monkeypatch, url):
    monkeypatch.setenv("PARCELRISK_AUDIT_KEY", KEY.decode())
    store, location = _store_with_results(tmp_path, url)
    before, _ = _export(capsys, location, tmp_path / "before.parquet")
    assert len(before) == 15 and before["inspected"].sum() == 9
    summary = archive_before(store, "2026-05-03T00:00:00.000000Z", tmp_path / "archive")
    assert summary["archived"] == 10
    store.close()
    after, body = _export(capsys, location, tmp_path / "after.parquet")
    pd.testing.assert_frame_equal(after, before)
    assert body["from_archive"] == {"declarations": 10, "archive": str(tmp_path / "archive")}
    since, _ = _export(capsys, location, tmp_path / "since.parquet", "--since", "2026-05-02")
    pd.testing.assert_frame_equal(since, before[before["declared_at"] >= "2026-05-02"].reset_index(drop=True))  # fmt: skip


def test_a_missing_archived_day_stops_the_export_naming_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PARCELRISK_AUDIT_KEY", KEY.decode())
    store, location = _store_with_results(tmp_path, None)
    archive_before(store, "2026-05-03T00:00:00.000000Z", tmp_path / "archive")
    store.close()
    day = next((tmp_path / "archive").glob("day=2026-05-01/*.parquet"))
    day.unlink()
    out = tmp_path / "h.parquet"
    code, _, err = run_cli(capsys, "history", "export", "--db", location, "--out", str(out))
    assert code != 0 and str(day) in err and "audit verify" in err
    assert not out.exists()
    with pytest.raises(ParcelriskError):  # the same from the function an analyst's script calls
        from serving.audit.archived import archived_first_decisions
        from serving.store import open_store

        reader = open_store(location, read_only=True)
        try:
            archived_first_decisions(reader)
        finally:
            reader.close()
