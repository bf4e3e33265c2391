"""The decision store: the ``DecisionStore`` interface (every implementation), then SQLite's own."""

import json
import sqlite3
import time

import numpy as np
import pytest

from features.errors import ParcelriskError
from features.params import load_settings
from serving.decision import DecisionRecord
from serving.sqlite_store import SqliteDecisionStore
from serving.store import DecisionStore, open_store

# every implementation, opened at a fresh location under tmp_path
STORES = {"sqlite": lambda tmp: open_store(f"sqlite:///{tmp / 'audit.db'}")}


def _record(i: int) -> DecisionRecord:
    return DecisionRecord(
        decision_id=f"dec{i}",
        scored_at="2026-05-01T10:00:00+00:00",
        declaration_id=f"D{i}",
        declaration_json=json.dumps({"declaration_id": f"D{i}", "hs_code": "610910"}),
        features=np.array([1.0, np.nan]).tobytes(),
        manifest_fingerprint="fp",
        model_name="parcel-risk",
        model_version="3",
        thresholds_version="t1",
        lane_policy='{"exploration_rate": 0.01}',
        raw_score=-1.5,
        risk=0.2,
        expected_revenue=3.0,
        lane="yellow",
        exploration=True,
        reasons=[{"feature": "f", "text": "t", "contribution": 0.1}],
        warnings=["w"],
    )


@pytest.fixture(params=sorted(STORES))
def store(request, tmp_path):
    opened = STORES[request.param](tmp_path)
    yield opened
    opened.close()


def test_a_store_implements_the_interface(store) -> None:
    assert isinstance(store, DecisionStore)


def test_a_store_gives_back_what_it_recorded(store) -> None:
    store.record([_record(1), _record(2)])
    store.record([])
    record, intact = store.get("dec2")
    assert record == _record(2) and intact
    assert record.declaration["hs_code"] == "610910"
    assert record.feature_vector[0] == 1.0 and np.isnan(record.feature_vector[1])
    assert store.get("missing") is None
    assert store.count() == 2


def test_a_store_records_a_batch_all_or_nothing(store) -> None:
    store.record([_record(1)])
    with pytest.raises(Exception):  # noqa: B017 (each store raises its own database's error)
        store.record([_record(2), _record(1)])  # duplicate id in the batch
    assert store.count() == 1 and store.get("dec2") is None


def test_store_locations() -> None:
    with pytest.raises(ParcelriskError, match="unknown kind; use a file path or one of sqlite://"):
        open_store("postgresql://db/decisions")


def test_sqlite_locations(tmp_path, monkeypatch) -> None:
    by_path = open_store(tmp_path / "a.db")
    by_url = open_store(f"sqlite:///{tmp_path / 'b.db'}")  # four slashes: an absolute path
    assert isinstance(by_path, SqliteDecisionStore) and by_path.path == tmp_path / "a.db"
    assert isinstance(by_url, SqliteDecisionStore) and by_url.path == tmp_path / "b.db"
    monkeypatch.chdir(tmp_path)
    relative = open_store("sqlite:///c.db")
    assert relative.path.resolve() == tmp_path / "c.db"
    for opened in (by_path, by_url, relative):
        opened.close()


def test_roundtrip_and_wal(tmp_path) -> None:
    store = SqliteDecisionStore(tmp_path / "audit.db")
    store.record([_record(1), _record(2)])
    record, intact = store.get("dec2")
    assert record == _record(2) and intact
    assert record.declaration["hs_code"] == "610910"
    assert record.feature_vector[0] == 1.0 and np.isnan(record.feature_vector[1])
    assert store.get("missing") is None
    mode = store._conn.execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_batch_is_all_or_nothing(tmp_path) -> None:
    store = SqliteDecisionStore(tmp_path / "audit.db")
    store.record([_record(1)])
    with pytest.raises(sqlite3.IntegrityError):
        store.record([_record(2), _record(1)])  # duplicate id in the batch
    assert store.count() == 1


def test_tampering_is_detected(tmp_path) -> None:
    path = tmp_path / "audit.db"
    SqliteDecisionStore(path).record([_record(1)])
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE decisions SET lane = 'green' WHERE decision_id = 'dec1'")
    record, intact = SqliteDecisionStore(path).get("dec1")
    assert record.lane == "green" and not intact


def test_path_from_env(tmp_path) -> None:
    """PARCELRISK_AUDIT_DB overrides serve.audit_db (features.params.ENV_OVERRIDES)."""
    location = str(tmp_path / "x" / "a.db")
    settings = load_settings(None, environ={"PARCELRISK_AUDIT_DB": location})
    store = open_store(settings.serve.audit_db)
    assert isinstance(store, SqliteDecisionStore) and store.path == tmp_path / "x" / "a.db"
    assert load_settings(None, environ={}).serve.audit_db == "audit.db"


def test_checkpoints_run_in_the_background_not_in_commits(tmp_path) -> None:
    path = tmp_path / "audit.db"
    wal = tmp_path / "audit.db-wal"
    store = SqliteDecisionStore(path, checkpoint_interval_s=0.05)
    assert store._conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
    empty_size = path.stat().st_size  # the schema only: commits go to the log
    for batch in range(300):  # ~1,500 log pages: SQLite alone would checkpoint in a commit
        store.record([_record(batch * 20 + i) for i in range(20)])
    # only a checkpoint moves pages into the database file; the thread does it within moments
    deadline = time.monotonic() + 10
    while path.stat().st_size <= empty_size + 1_000_000 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert path.stat().st_size > empty_size + 1_000_000
    store.close()
    assert not store._checkpointer.is_alive()
    assert not wal.exists() or wal.stat().st_size == 0  # close truncates the log
    reopened = SqliteDecisionStore(path)
    assert reopened.count() == 6000 and reopened.get("dec5999")[1]
    reopened.close()


def test_stored_json_from_models_equals_the_frame_path() -> None:
    """The service stores models_as_json; offline scoring stores the frame's JSON: one text."""
    from features.intake.columns import declarations_frame, models_as_json
    from features.intake.contract import Declaration
    from serving.scoring import declarations_as_json
    from tests.test_serving.conftest import make_declarations

    raw = make_declarations(12, seed=3)
    raw[1]["declared_at"] = "2026-05-01T12:34:56.789012+02:00"  # offset and microseconds
    raw[2]["declared_value"] = 0.1  # a float whose repr matters
    raw[3]["description"] = 'quote " and ünïcode'
    models = [Declaration.model_validate(r) for r in raw]
    assert models_as_json(models) == declarations_as_json(declarations_frame(models))
    assert json.loads(models_as_json(models)[1])["declared_at"] == "2026-05-01T10:34:56.789012Z"


def test_concurrent_writers_take_turns(tmp_path) -> None:
    """Two stores on one file (as two worker processes have) both commit every batch."""
    import threading

    path = tmp_path / "audit.db"
    stores = [SqliteDecisionStore(path), SqliteDecisionStore(path)]

    def write(k: int) -> None:
        for batch in range(100):
            stores[k].record([_record(k * 100_000 + batch * 5 + i) for i in range(5)])

    threads = [threading.Thread(target=write, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert stores[0].count() == 1000
    assert (tmp_path / "audit.db.lock").exists()
    for store in stores:
        store.close()
