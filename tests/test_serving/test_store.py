"""The decision store: the ``DecisionStore`` interface (every implementation), then SQLite's own."""

import dataclasses
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

# every implementation, opened at a fresh location: a file under tmp_path, a new database
STORES = {
    "sqlite": lambda request, tmp: open_store(f"sqlite:///{tmp / 'audit.db'}"),
    "postgresql": lambda request, tmp: open_store(request.getfixturevalue("postgres_url")),
}


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
    opened = STORES[request.param](request, tmp_path)
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
    with pytest.raises(ParcelriskError, match="unknown kind; use a file path or one of "):
        open_store("mysql://db/decisions")
    with pytest.raises(ParcelriskError, match="name the database"):
        open_store("postgresql://user@127.0.0.1:5432")


def test_an_unreachable_postgresql_store_is_named_not_a_traceback() -> None:
    from serving.sqlite_store import StoreUnavailable

    # port 1 on loopback: nothing listens there; the password never appears in the message
    with pytest.raises(
        StoreUnavailable, match=r"postgresql://u:\*\*\*@127.0.0.1:1/d cannot be opened"
    ):
        open_store("postgresql://u:secret@127.0.0.1:1/d")


def _declared(i: int, day: int) -> DecisionRecord:
    record = _record(i)
    text = json.dumps(
        {"declaration_id": f"D{i}", "declared_at": f"2026-05-{day:02d}T10:00:00.000000Z"}
    )
    return dataclasses.replace(record, declaration_json=text)


def test_a_store_serves_the_event_log_in_commit_order(store) -> None:
    store.record([_declared(1, 1), _declared(2, 3)])
    store.record([_declared(3, 2)])
    assert store.last_seq() == 3
    assert [s for s, _ in store.since(0)] == [1, 2, 3]
    assert [s for s, _ in store.since(1, limit=1)] == [2]
    from serving.decision import parse_iso_us

    since_day2 = parse_iso_us("2026-05-02T00:00:00.000000Z")
    assert [json.loads(t)["declaration_id"] for _, t in store.since(0, since_day2)] == ["D2", "D3"]


def test_a_store_finds_and_hands_back_earlier_decisions(store) -> None:
    store.record([_record(1), _record(2)])
    store.record([dataclasses.replace(_record(3), lane="red", decision_id="dec3b")])
    first = store.decided(["D1", "D3", "D9"], "parcel-risk")
    assert sorted(k[0] for k in first) == ["D1", "D3"]
    assert first[("D1", _record(1).declaration_json)].decision_id == "dec1"
    assert store.decided(["D1"], "another-model") == {}
    # a later version of the model finds it too: one parcel, one decision (probe 14)
    store.record([dataclasses.replace(_record(1), decision_id="dec1-v4", model_version="4")])
    again = store.decided(["D1"], "parcel-risk")
    assert again[("D1", _record(1).declaration_json)].decision_id == "dec1"
    assert [r.decision_id for r in store.find(lane="red")] == ["dec3b"]
    assert [r.decision_id for r in store.find(after_seq=1, limit=1)] == ["dec2"]
    assert [r.decision_id for r in store.find(declaration_id="D2")] == ["dec2"]


def test_a_store_keeps_the_first_decision_of_a_declaration_decided_twice_at_once(store) -> None:
    """Two workers scored the same new declaration at once (a retry on a second connection):
    the second to write stores nothing for it and gets the first decision back."""
    store.record([_record(1)])
    again = dataclasses.replace(_record(1), decision_id="dec1-late", lane="green")
    changed = dataclasses.replace(
        _record(2), decision_id="dec2-amended", declaration_json='{"declaration_id": "D2"}'
    )
    other_version = dataclasses.replace(_record(3), decision_id="dec3-v4", model_version="4")
    store.record([_record(3)])
    taken = store.record([again, changed, _record(4), other_version], first_wins=True)
    # a declaration decided unchanged before is handed back, by whichever version decided it
    # (a worker still on the old champion and one on the new one during a swap, probe 14)
    assert {k: r.decision_id for k, r in taken.items()} == {
        ("D1", _record(1).declaration_json): "dec1",
        ("D3", _record(3).declaration_json): "dec3",
    }
    assert taken[("D1", _record(1).declaration_json)].lane == "yellow"
    assert store.get("dec1-late") is None and store.get("dec3-v4") is None
    assert {d for d in ("dec2-amended", "dec4") if store.get(d)} == {"dec2-amended", "dec4"}
    assert store.count() == 4 and [s for s, _ in store.since(0)] == [1, 2, 3, 4]
    # without first_wins (offline scoring, migration) every decision is stored
    assert store.record([dataclasses.replace(_record(1), decision_id="dec1-file")]) == {}
    assert store.get("dec1-file") is not None
    from serving.audit.verify import verify_store

    report = verify_store(store)
    assert report.problem is None and report.checked == 5


def test_two_contents_of_one_id_decided_at_once_store_the_second_as_amended(store) -> None:
    """An amendment racing its original (an at-least-once queue, two workers): each worker
    looked before scoring and found the id undecided, so neither said "amended", and the parcel
    held two decisions each answered as its only one (probe 31). The write, in the writers'
    turn, stores the second content's decision saying it is amended and answers with that."""
    from features.notes import DECLARATION_AMENDED
    from serving.audit.verify import verify_store

    original = _record(1)
    amended_content = dataclasses.replace(
        original,
        decision_id="dec1-b",
        declaration_json=json.dumps({"declaration_id": "D1", "hs_code": "950300"}),
        lane="green",
    )
    assert store.record([original], first_wins=True) == {}
    taken = store.record([amended_content, _record(2)], first_wins=True)
    key = ("D1", amended_content.declaration_json)
    assert list(taken) == [key]
    answer = taken[key]
    assert answer.decision_id == "dec1-b" and answer.lane == "green"  # ours, saying so
    assert answer.warning_codes == ["unclassified", DECLARATION_AMENDED]
    assert answer.warnings[-1].startswith("declaration_id decided before with other content")
    stored, intact = store.get("dec1-b")
    assert intact and stored.warning_codes == answer.warning_codes
    assert store.get("dec2")[0].warning_codes == []  # a new id is not amended
    # two contents in one write (requests merged into one batch): the second is amended
    third = dataclasses.replace(_record(3), decision_id="dec3-a")
    fourth = dataclasses.replace(
        _record(3), decision_id="dec3-b", declaration_json='{"declaration_id": "D3"}'
    )
    taken = store.record([third, fourth], first_wins=True)
    assert [r.decision_id for r in taken.values()] == ["dec3-b"]
    assert store.get("dec3-a")[0].warning_codes == []
    assert DECLARATION_AMENDED in store.get("dec3-b")[0].warning_codes
    # one the service already found amended is stored as it is, said once
    said = amended_content.amended()
    again = dataclasses.replace(said, decision_id="dec1-c", declaration_json='{"x": 1}')
    assert store.record([again], first_wins=True) == {}
    assert store.get("dec1-c")[0].warning_codes.count(DECLARATION_AMENDED) == 1
    assert verify_store(store).problem is None


def test_a_store_keeps_undelivered_decisions_for_the_retry(store) -> None:
    store.record([_record(1), _record(2)])
    assert store.delivery("dec1") is None
    store.mark_undelivered(["dec1", "dec1"], "timeout")
    assert store.delivery("dec1")["reason"] == "timeout"
    assert store.mark_redelivered(["dec1", "dec2"]) == 1
    assert store.delivery("dec1")["redelivered_at"] is not None
    assert store.mark_redelivered(["dec1"]) == 0


def _sql(store, statement: str):
    """``statement`` run on the store's database directly; the first value of its first row."""
    if isinstance(store, SqliteDecisionStore):
        conn = sqlite3.connect(store.path, isolation_level=None)
        try:
            row = conn.execute(statement).fetchone()
        finally:
            conn.close()
        return None if row is None else row[0]
    with store.engine.begin() as conn:
        result = conn.exec_driver_sql(statement)
        return result.scalar() if result.returns_rows else None


def test_a_store_keeps_a_sign_out_for_every_handle(store) -> None:
    later = int(time.time()) + 600
    assert not store.session_revoked("s1")
    store.revoke_session("s1", later)
    store.revoke_session("s1", later)  # a copy of the cookie signed out as well: one row
    assert _sql(store, "SELECT COUNT(*) FROM revoked_sessions") == 1
    other = open_store(store.source, read_only=True)  # another worker's review handle
    try:
        assert other.session_revoked("s1") and not other.session_revoked("s2")
    finally:
        other.close()


def test_a_store_drops_sign_outs_once_their_tokens_expired(store) -> None:
    now = int(time.time())
    store.revoke_session("old", now - 1)  # its token has expired: nothing left to refuse
    store.revoke_session("live", now + 600)  # the insert drops what expired
    assert _sql(store, "SELECT COUNT(*) FROM revoked_sessions") == 1
    assert store.session_revoked("live") and not store.session_revoked("old")


def test_a_store_from_before_sign_outs_gets_their_table_when_opened(store) -> None:
    _sql(store, "DROP TABLE revoked_sessions")
    again = open_store(store.source)
    try:
        again.revoke_session("s1", int(time.time()) + 60)
        assert again.session_revoked("s1")
    finally:
        again.close()


def test_a_store_keeps_one_verifiable_chain(store) -> None:
    from serving.audit.verify import verify_store

    assert store.head() is None and store.chain_start()[2] is None
    for batch in range(3):
        store.record([_record(batch * 10 + i) for i in range(4)])
    report = verify_store(store)
    assert report.problem is None and report.checked == 12
    assert store.head()[0] == 12 and [r.seq for r in store.chain_rows(10)] == [11, 12]


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


def test_bytes_that_are_not_text_are_named_not_intact_never_a_traceback(tmp_path) -> None:
    """sqlite3 failed the whole read (`Could not decode to UTF-8`): verify and show ended in
    a traceback, /decision in a 500 (probe)."""
    from serving.audit.verify import verify_store
    from serving.sqlite_store import DamagedRecord

    path = tmp_path / "audit.db"
    store = SqliteDecisionStore(path)
    store.record([_record(1), _record(2), _record(3)])
    store.close()
    with sqlite3.connect(path) as conn:
        conn.execute(
            "UPDATE decisions SET reasons_json = CAST(x'5bff5d' AS TEXT) WHERE decision_id = 'dec2'"
        )
    store = SqliteDecisionStore(path)
    report = verify_store(store)
    assert not report.intact and report.problem.seq == 2, report
    with pytest.raises(DamagedRecord, match=r"decision dec2 \(seq 2\): its stored record cannot"):
        store.get("dec2")
    assert store.get("dec3")[1] is True  # the next record is whole: only the edited one is not
    store.close()


@pytest.mark.parametrize("damage", ["CAST(x'c328' AS TEXT)", "'not json at all'", "'[1, 2]'"])
def test_a_declaration_that_no_longer_reads_is_damaged_never_a_traceback(tmp_path, damage):
    """The declaration edited into bytes that are not text, or text that is not a JSON object:
    `audit show` died in a traceback, the page and /decision answered 500, and the live
    state's replay of the log kept every worker from loading its champion (probe 12)."""
    from serving.scoring import ScoringRuntime
    from serving.sqlite_store import DamagedRecord

    path = tmp_path / "audit.db"
    store = SqliteDecisionStore(path)
    store.record([_record(1), _record(2), _record(3)])
    store.close()
    with sqlite3.connect(path) as conn:
        conn.execute(f"UPDATE decisions SET declaration_json = {damage} WHERE seq = 2")
    store = SqliteDecisionStore(path)
    with pytest.raises(DamagedRecord, match=r"decision dec2 \(seq 2\): its stored declaration"):
        store.get("dec2")
    assert store.get("dec3")[1] is True

    from features.pipeline.live import SeenIds

    class _Live:  # what _append_logged reads of the live state
        def __init__(self) -> None:
            self.seen_ids = SeenIds()

        def append(self, columns, prep=None):
            return len(columns)

    runtime = ScoringRuntime.__new__(ScoringRuntime)
    runtime.live, runtime._own_texts, runtime.contract = _Live(), set(), None
    added = runtime._append_logged(store.since(0))
    assert added == 2  # decisions 1 and 3; the damaged one left out, said in the log
    store.close()


def test_a_writer_under_another_audit_key_is_refused_before_it_writes(tmp_path) -> None:
    """Under another key, serve and score --audit-db appended records that made the
    genuine chain fail verify from there on (probe)."""
    from serving.store import AuditKeyMismatch, require_key_signs_chain

    path = tmp_path / "audit.db"
    store = SqliteDecisionStore(path, key=b"k" * 32)
    require_key_signs_chain(store)  # nothing recorded yet: any key may start it
    store.record([_record(1), _record(2)])
    require_key_signs_chain(store)
    store.close()
    other = SqliteDecisionStore(path, key=b"x" * 32)
    with pytest.raises(AuditKeyMismatch, match=r"its last record \(seq 2\) was not signed"):
        require_key_signs_chain(other)
    # the refusal names where this process's key came from (probe 30: a key file's was
    # said to be the variable's or the default path's)
    key_file = tmp_path / "audit.key"
    with pytest.MonkeyPatch.context() as env:
        env.delenv("PARCELRISK_AUDIT_KEY", raising=False)
        env.setenv("PARCELRISK_AUDIT_KEY_FILE", str(key_file))
        with pytest.raises(AuditKeyMismatch, match=f"audit key in force \\(from {key_file}\\)"):
            require_key_signs_chain(other)
    other.close()


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


# --- PostgreSQL: what only a shared server can show -------------------------------------------


def test_postgresql_tampering_is_named_by_get_and_verify(postgres_url) -> None:
    import sqlalchemy as sa

    from serving.audit.verify import verify_store

    store = open_store(postgres_url)
    store.record([_record(1), _record(2), _record(3)])
    with store.engine.begin() as conn:
        conn.execute(sa.text("UPDATE decisions SET lane = 'green' WHERE decision_id = 'dec2'"))
    record, intact = store.get("dec2")
    assert record.lane == "green" and not intact
    assert store.get("dec1")[1] and store.get("dec3")[1]
    report = verify_store(store)
    assert report.problem is not None and "dec2" in report.problem.describe()
    store.close()


def test_postgresql_replicas_extend_one_chain(postgres_url) -> None:
    """Stores with their own connection pools (as replicas on other machines have) writing at
    once: every batch committed, seqs without gaps, one chain that verifies."""
    import threading

    from serving.audit.verify import verify_store

    stores = [open_store(postgres_url) for _ in range(3)]

    def write(k: int) -> None:
        for batch in range(40):
            stores[k].record([_record(k * 100_000 + batch * 5 + i) for i in range(5)])

    threads = [threading.Thread(target=write, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert stores[0].count() == 600 and stores[1].last_seq() == 600
    report = verify_store(stores[2])
    assert report.problem is None and report.checked == 600
    for opened in stores:
        opened.close()


def test_postgresql_store_survives_its_connections_being_cut(postgres_url) -> None:
    """A server restart or a failover drops every connection: the pool reconnects on the next
    write instead of failing it."""
    import sqlalchemy as sa

    store = open_store(postgres_url)
    store.record([_record(1)])
    database = postgres_url.rsplit("/", 1)[1]
    with sa.create_engine(
        postgres_url.replace("postgresql://", "postgresql+psycopg://")
    ).connect() as admin:
        admin.execute(
            sa.text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = :db AND pid <> pg_backend_pid()"
            ),
            {"db": database},
        )
        admin.commit()
    store.record([_record(2)])
    assert store.count() == 2 and store.get("dec2")[1]
    store.close()


def test_the_analysts_reads_are_the_same_on_both_stores(tmp_path, postgres_url) -> None:
    """`monitor` and `lanes` read a period with its results (``serving.store_read``): the same
    frames from a SQLite file and from PostgreSQL holding the same decisions and results."""
    import pandas as pd

    from serving.lanes_cli import read_lane_traffic
    from serving.monitor.data import read_period
    from serving.outcomes import store_outcomes
    from serving.store import open_outcome_store

    records = []
    for i in range(6):
        text = json.dumps(
            {
                "declaration_id": f"D{i}",
                "declared_at": f"2026-05-0{1 + i}T10:00:00.000000Z",
                "aeo_operator": i % 2 == 0,
            }
        )
        records.append(dataclasses.replace(_record(i), declaration_json=text, lane="red"))
    results = pd.DataFrame(
        [{"declaration_id": "D1", "inspected_at": "2026-05-03T09:00:00Z", "illicit": False}]
    )
    frames = {}
    for location in (str(tmp_path / "audit.db"), postgres_url):
        store = open_store(location)
        store.record(records)
        store.record([dataclasses.replace(records[2], decision_id="again")])  # counted once
        outcomes = open_outcome_store(location, store)
        store_outcomes(outcomes, results, source="t", now=pd.Timestamp("2026-06-01", tz="UTC"))
        outcomes.close()
        store.close()
        frames[location] = (
            read_lane_traffic(location, "2026-05-02", None),
            read_period(location, "2026-05-01T00:00:00.000000Z", "2026-05-05T00:00:00.000000Z"),
            read_period(
                location,
                "2026-05-01T00:00:00.000000Z",
                "2026-05-05T00:00:00.000000Z",
                vectors_at_most=2,  # every 3rd of the 5 decisions by seq keeps its vector
            )["features"].notna(),
        )
    (lite_traffic, lite_period, lite_kept), (pg_traffic, pg_period, pg_kept) = frames.values()
    assert 0 < lite_kept.sum() < len(lite_kept) and lite_kept.equals(pg_kept)
    assert len(lite_traffic) == 5 and lite_traffic["aeo"].sum() == 2
    pd.testing.assert_frame_equal(lite_traffic, pg_traffic)
    assert len(lite_period) == 4 and lite_period["has_result"].sum() == 1
    assert lite_period["aeo_operator"].tolist() == [True, False, True, False]
    columns = [c for c in lite_period.columns if c != "features"]  # bytes: compared below
    pd.testing.assert_frame_equal(lite_period[columns], pg_period[columns], check_dtype=False)
    assert [bytes(b) for b in lite_period["features"]] == [bytes(b) for b in pg_period["features"]]


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"hello this is not sqlite" * 10, "file is not a database (SQLITE_NOTADB)"),
        (b"SQLite format 3\x00" + b"\x10\x00" + b"\x00" * 5000, "cannot be opened"),
    ],
)
def test_a_file_that_is_not_a_store_is_named_not_a_traceback(tmp_path, content, says) -> None:
    """Every command opening it (audit verify/list/export, history export, score --audit-db,
    serve) stopped with sqlite3's traceback."""
    from serving.sqlite_store import StoreUnavailable

    path = tmp_path / "audit.db"
    path.write_bytes(content)
    with pytest.raises(StoreUnavailable, match=f"decision store {path} cannot be opened") as e:
        SqliteDecisionStore(path)
    assert says in str(e.value)


@pytest.mark.parametrize("how", ["deleted", "renamed", "replaced"])
def test_a_store_file_gone_from_under_its_handle_takes_no_write(tmp_path, how) -> None:
    """Probe 21: after `rm audit.db` the workers went on committing into the unlinked file,
    answered 200, and lost it all at the restart. Every write checks the path still names the
    file it opened; nothing is written into the orphan."""
    import shutil

    from serving.outcome_store import SqliteOutcomeStore
    from serving.sqlite_store import StoreReplaced

    db = tmp_path / "audit.db"
    store, results = SqliteDecisionStore(db), SqliteOutcomeStore(db)
    try:
        store.record([_record(0)])
        if how == "deleted":
            db.unlink()
        elif how == "renamed":
            db.rename(tmp_path / "moved.db")
        else:  # a copy put in its place (a restore over the live file): another inode
            shutil.copy(db, tmp_path / "copy.db")
            (tmp_path / "copy.db").replace(db)
        said = "deleted or renamed" if how != "replaced" else "replaced by another file"
        with pytest.raises(StoreReplaced, match=f"audit.db was {said} under the running service"):
            store.record([_record(1)])
        with pytest.raises(StoreReplaced), results.write():
            pass
    finally:
        results.close()
        store.close()


def test_a_page_damaged_inside_the_store_is_one_line_from_every_review_command(
    tmp_path, capsys
) -> None:
    """Probe 21: a store whose file opened fine but held one overwritten page gave a Python
    traceback from `audit verify`, `audit export`, `audit archive` and `history export`, met
    while walking its rows. One line naming the file, what to do, exit 2."""
    from tests.test_serving.conftest import run_cli

    path = tmp_path / "audit.db"
    store = SqliteDecisionStore(path)
    for lo in range(0, 3000, 500):
        store.record([_record(i) for i in range(lo, lo + 500)])
    store.close()
    with sqlite3.connect(path) as conn:  # everything in the main file, no log beside it
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    size = path.stat().st_size
    with open(path, "r+b") as fh:  # one 4 KiB page at 60% of the file, overwritten
        fh.seek((size * 6 // 10) // 4096 * 4096)
        fh.write(b"\xa5" * 4096)
    for args in (
        ["audit", "verify", "--db", str(path)],
        ["audit", "export", "--db", str(path), "--from", "2026-01-01", "--to", "2027-01-01",
         "--format", "csv"],
        ["history", "export", "--db", str(path), "--out", str(tmp_path / "h.parquet")],
    ):  # fmt: skip
        code, _, err = run_cli(capsys, *args)
        assert code == 2 and "Traceback" not in err, (args, err)
        (line,) = err.strip().splitlines()
        assert line.startswith(f"error: the SQLite file {path} is damaged: ") and (
            "SQLITE_CORRUPT" in line or "SQLITE_NOTADB" in line
        ), line
        assert "Restore it from a backup" in line


def test_a_write_kept_out_by_another_process_s_lock_is_refused_after_its_wait(tmp_path) -> None:
    """Probe 21: an operator's sqlite3 session holding the store made every /score a 504 after
    the whole request timeout (SQLite's 30 s busy wait), the decision recorded behind the
    caller's back. The service limits the wait: refused, passing, nothing stored."""
    from serving.outcome_store import SqliteOutcomeStore
    from serving.sqlite_store import StoreUnavailable

    path = tmp_path / "audit.db"
    store, results = SqliteDecisionStore(path), SqliteOutcomeStore(path)
    store.record([_record(0)])
    store.limit_write_wait(0.2)
    results.limit_write_wait(0.2)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        started = time.monotonic()
        with pytest.raises(StoreUnavailable, match=r"database is locked \(SQLITE_BUSY\)") as got:
            store.record([_record(1)])
        assert got.value.passing and time.monotonic() - started < 2.0
        with pytest.raises(StoreUnavailable), results.write():
            pass
    finally:
        other.execute("ROLLBACK")
        other.close()
    store.record([_record(2)])  # the lock gone, writes go through, the wait kept
    assert store.count() == 2
    (waits,) = store._conn.execute("PRAGMA busy_timeout").fetchone()
    assert waits == 200
    results.close()
    store.close()


def test_periods_by_declaration_time_are_read_through_an_index(tmp_path) -> None:
    """A week of a year's store is found by an index on declared_at (the monitor scanned
    every decision of the store for each period it read), and a store made before the index
    gains it when a writer opens it."""
    path = tmp_path / "audit.db"
    store = SqliteDecisionStore(path)
    store.record([_record(0)])
    store.close()
    conn = sqlite3.connect(path)
    conn.execute("DROP INDEX decisions_declared")  # a store from before the index
    conn.close()
    SqliteDecisionStore(path).close()
    conn = sqlite3.connect(path)
    try:
        plan = conn.execute(
            "EXPLAIN QUERY PLAN SELECT COUNT(*) FROM decisions "
            "WHERE declared_at >= ? AND declared_at < ?",
            ("2026-01-01", "2026-01-08"),
        ).fetchall()
    finally:
        conn.close()
    assert any("decisions_declared" in str(row) for row in plan), plan


def test_a_postgresql_store_made_before_the_index_gains_it(postgres_url) -> None:
    import sqlalchemy as sa

    open_store(postgres_url).close()
    engine = sa.create_engine(postgres_url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP INDEX decisions_declared")
        open_store(postgres_url).close()
        with engine.connect() as conn:
            names = set(
                conn.exec_driver_sql(
                    "SELECT indexname FROM pg_indexes WHERE tablename = 'decisions'"
                ).scalars()
            )
    finally:
        engine.dispose()
    assert "decisions_declared" in names
