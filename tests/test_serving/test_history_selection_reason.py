"""`history export`'s selection_reason says who chose an inspection: the random quota, the model
(red or yellow), or someone else (a parcel the model sent green), also once the decisions are
archived."""

from __future__ import annotations

import dataclasses
import json

import pandas as pd
import pytest

from features.intake.io import read_declarations
from serving.audit.archive import archive_before
from serving.outcomes import store_outcomes
from serving.store import open_outcome_store
from tests.test_serving.conftest import run_cli
from tests.test_serving.test_store import _record

KEY = b"s" * 40
DAY = "2026-05-01"
# declaration id -> (first decision's lane, exploration, the selection_reason it must get:
# spelled out, as the analysts reading the exported file spell them)
FIRST_DECISIONS = {
    "DRED": ("red", False, "model"),
    "DYELLOW": ("yellow", False, "model"),
    "DGREEN": ("green", False, "manual"),
    "DEXPLORED": ("green", True, "random"),
    "DEXPLOREDRED": ("red", True, "random"),
}


def _decision(n: int, declaration_id: str, lane: str, exploration: bool):
    text = json.dumps(
        {
            "declaration_id": declaration_id,
            "declared_at": f"{DAY}T08:00:{n:02d}.000000Z",
            "hs_code": "610910",
        }
    )
    return dataclasses.replace(
        _record(n),
        decision_id=f"dec-{declaration_id}",
        declaration_id=declaration_id,
        declaration_json=text,
        lane=lane,
        exploration=exploration,
    )


@pytest.fixture(params=["sqlite", "postgresql"])
def scored(request, tmp_path, monkeypatch):
    """A store of one day's decisions, one per case of FIRST_DECISIONS, each with a result; and
    a green parcel re-scored red later (its first decision decides)."""
    import serving.postgres_store as postgres_store
    import serving.sqlite_store as sqlite_store
    from serving.postgres_store import PostgresDecisionStore
    from serving.sqlite_store import SqliteDecisionStore

    monkeypatch.setenv("PARCELRISK_AUDIT_KEY", KEY.decode())
    if request.param == "postgresql":
        location = request.getfixturevalue("postgres_url")
        store = PostgresDecisionStore(location, key=KEY)
    else:
        location = str(tmp_path / "audit.db")
        store = SqliteDecisionStore(location, key=KEY)
    answered = f"{DAY}T12:00:00.000000Z"
    monkeypatch.setattr(sqlite_store, "_now_iso", lambda: answered)
    monkeypatch.setattr(postgres_store, "_now_iso", lambda: answered)
    decisions = [
        _decision(n, declaration_id, lane, exploration)
        for n, (declaration_id, (lane, exploration, _)) in enumerate(FIRST_DECISIONS.items())
    ]
    store.record(decisions)
    later = _decision(0, "DGREEN", "red", False)
    store.record([dataclasses.replace(later, decision_id="dec-again", model_version="4")])
    results = pd.DataFrame(
        [
            {"declaration_id": d, "inspected_at": f"{DAY}T10:00:00Z", "illicit": False}
            for d in FIRST_DECISIONS
        ]
    )
    outcomes = open_outcome_store(location, store)
    store_outcomes(outcomes, results, source="t", now=pd.Timestamp("2026-06-01", tz="UTC"))
    outcomes.close()
    yield store, location
    store.close()


def _exported_reasons(capsys, location: str, out) -> dict[str, str]:
    code, _, err = run_cli(capsys, "history", "export", "--db", location, "--out", str(out))
    assert code == 0, err
    history, _ = read_declarations(out, with_outcomes=True)
    return dict(zip(history["declaration_id"], history["selection_reason"], strict=True))


def test_an_inspected_green_parcel_is_not_credited_to_the_model(scored, capsys, tmp_path):
    _, location = scored
    reasons = _exported_reasons(capsys, location, tmp_path / "history.parquet")
    assert reasons == {d: reason for d, (_, _, reason) in FIRST_DECISIONS.items()}


def test_archived_decisions_keep_their_selection_reason(scored, capsys, tmp_path):
    store, location = scored
    summary = archive_before(store, f"{DAY}T23:59:59.000000Z", tmp_path / "archive")
    assert summary["archived"] == len(FIRST_DECISIONS) + 1
    reasons = _exported_reasons(capsys, location, tmp_path / "history.parquet")
    assert reasons == {d: reason for d, (_, _, reason) in FIRST_DECISIONS.items()}
