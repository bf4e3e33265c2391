"""The decision store's tamper-evident chain: what `parcelrisk audit verify` finds when someone
with write access to the store edits, deletes, inserts or reorders decisions, and what a head
filed elsewhere proves against someone who also holds the key."""

from __future__ import annotations

import json
import multiprocessing
import sqlite3
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from serving.audit.chain import decision_mac, format_head
from serving.audit.verify import verify_store
from serving.main import app
from serving.sqlite_store import LegacyStore, SqliteDecisionStore
from tests.test_serving.test_store import _record

KEY = b"k" * 40


def _store(tmp_path: Path, n: int = 10) -> SqliteDecisionStore:
    store = SqliteDecisionStore(tmp_path / "audit.db", key=KEY)
    for start in range(0, n, 3):  # several batches: the chain runs across them
        store.record([_record(i) for i in range(start, min(n, start + 3))])
    return store


def _edit(store: SqliteDecisionStore, *statements: str) -> None:
    """What someone with write access to the file does, behind the service's back."""
    conn = sqlite3.connect(store.path)
    with conn:
        for statement in statements:
            conn.execute(statement)
    conn.close()


def _problem(store: SqliteDecisionStore, head: str | None = None) -> tuple[str, int] | None:
    report = verify_store(store, head)
    return None if report.problem is None else (report.problem.kind, report.problem.seq)


def test_an_intact_chain_verifies_across_batches(tmp_path) -> None:
    store = _store(tmp_path)
    report = verify_store(store)
    assert report.intact and report.checked == 10 and (report.first_seq, report.last_seq) == (1, 10)
    seq, mac = store.head()
    assert report.head == format_head(seq, mac) and seq == 10
    assert all(store.get(f"dec{i}")[1] for i in range(10))


def test_an_edited_decision_is_named_even_with_its_hash_recomputed(tmp_path) -> None:
    """The attack that passed before: a red decision turned green, its hash recomputed with
    the project's own function. Without the key the MAC cannot be remade."""
    store = _store(tmp_path)
    row = store._conn.execute(
        "SELECT seq, answered_at, prev_mac FROM decisions WHERE seq = 5"
    ).fetchone()
    record = store.get("dec4")[0]
    forged = decision_mac(b"not-the-key" * 4, row[0], row[1], row[2], record.stored_values())
    _edit(store, "UPDATE decisions SET lane = 'green' WHERE seq = 5")
    _edit(store, f"UPDATE decisions SET mac = x'{forged.hex()}' WHERE seq = 5")
    assert _problem(store) == ("altered", 5)
    assert store.get("dec4")[1] is False and store.get("dec2")[1] is True


def test_a_deleted_decision_is_named(tmp_path) -> None:
    store = _store(tmp_path)
    _edit(store, "DELETE FROM decisions WHERE seq = 5")
    assert _problem(store) == ("deleted", 5)
    assert not store.get("dec5")[1]  # its neighbour no longer links to what it names


def test_a_deletion_with_the_rest_renumbered_is_named(tmp_path) -> None:
    store = _store(tmp_path)
    _edit(
        store,
        "DELETE FROM decisions WHERE seq = 5",
        "UPDATE decisions SET seq = seq - 1 WHERE seq > 5",
    )
    assert _problem(store) == ("deleted", 5)


def test_an_inserted_decision_is_named(tmp_path) -> None:
    store = _store(tmp_path)
    columns = [r[1] for r in store._conn.execute("PRAGMA table_info(decisions)")]
    copied = ",".join(c if c not in ("decision_id", "seq") else "'forged'" if c == "decision_id" else "100" for c in columns)  # fmt: skip
    _edit(
        store,
        f"INSERT INTO decisions ({','.join(columns)}) SELECT {copied} FROM decisions WHERE seq = 4",
    )
    _edit(store, "UPDATE decisions SET seq = seq + 1000 WHERE seq BETWEEN 5 AND 10", "UPDATE decisions SET seq = seq - 999 WHERE seq > 1000", "UPDATE decisions SET seq = 5 WHERE seq = 100")  # fmt: skip
    assert _problem(store) == ("inserted", 5)


def test_reordered_decisions_are_named(tmp_path) -> None:
    store = _store(tmp_path)
    _edit(
        store,
        "UPDATE decisions SET seq = 100 WHERE seq = 5",
        "UPDATE decisions SET seq = 5 WHERE seq = 6",
        "UPDATE decisions SET seq = 6 WHERE seq = 100",
    )
    assert _problem(store) == ("reordered", 5)


def test_a_filed_head_catches_a_rewrite_by_someone_holding_the_key(tmp_path) -> None:
    store = _store(tmp_path)
    filed = format_head(*store.head())
    assert verify_store(store, filed).head_checked == filed
    # an insider with the key edits decision 3 and remakes every MAC from there on
    _edit(store, "UPDATE decisions SET lane = 'green' WHERE seq = 3")
    prev = store._conn.execute("SELECT mac FROM decisions WHERE seq = 2").fetchone()[0]
    for seq in range(3, 11):
        record = store.find(after_seq=seq - 1, limit=1)[0]
        mac = decision_mac(KEY, seq, record.answered_at, prev, record.stored_values())
        _edit(store, f"UPDATE decisions SET prev_mac = x'{prev.hex()}', mac = x'{mac.hex()}' WHERE seq = {seq}")  # fmt: skip
        prev = mac
    assert _problem(store) is None  # the chain alone cannot tell
    assert _problem(store, filed) == ("rewritten", 10)


def test_a_filed_head_catches_a_cut_tail(tmp_path) -> None:
    store = _store(tmp_path)
    filed = format_head(*store.head())
    _edit(store, "DELETE FROM decisions WHERE seq > 8")
    assert _problem(store) is None  # the last records gone leave no gap
    assert _problem(store, filed) == ("truncated", 10)


def _write(path: Path, worker: int, seconds: float) -> None:
    store = SqliteDecisionStore(path, key=KEY)
    deadline, n = time.perf_counter() + seconds, 0
    while time.perf_counter() < deadline:
        store.record([_record(worker * 1_000_000 + n + k) for k in range(3)])
        n += 3
    store.close()


def test_two_worker_processes_extend_one_chain(tmp_path) -> None:
    path = tmp_path / "audit.db"
    SqliteDecisionStore(path, key=KEY).close()
    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=_write, args=(path, w, 2.0)) for w in (1, 2)]
    for process in writers:
        process.start()
    for process in writers:
        process.join()
        assert process.exitcode == 0
    store = SqliteDecisionStore(path, key=KEY)
    report = verify_store(store)
    ids = {r[0][:3] for r in store._conn.execute("SELECT decision_id FROM decisions")}
    assert report.intact and report.checked == store.count() > 100 and ids == {"dec"}
    workers = store._conn.execute(
        "SELECT COUNT(DISTINCT CAST(SUBSTR(decision_id, 4) AS INTEGER) / 1000000) FROM decisions"
    ).fetchone()[0]
    assert workers == 2


def test_the_cli_verifies_and_prints_the_head(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("PARCELRISK_AUDIT_KEY", KEY.decode())
    store = _store(tmp_path)
    db = str(store.path)
    runner = CliRunner()
    head = runner.invoke(app, ["audit", "head", "--db", db])
    assert head.exit_code == 0 and head.output.strip() == format_head(*store.head())
    ok = runner.invoke(app, ["audit", "verify", "--db", db, "--head", head.output.strip()])
    assert ok.exit_code == 0 and '"intact": true' in ok.output
    _edit(store, "UPDATE decisions SET risk = 0.0 WHERE seq = 7")
    broken = runner.invoke(app, ["audit", "verify", "--db", db])
    assert broken.exit_code == 1 and "NOT INTACT: altered at seq 7 (decision dec6)" in broken.output
    bad_head = runner.invoke(app, ["audit", "verify", "--db", db, "--head", "nonsense"])
    assert bad_head.exit_code != 0 and "expected SEQ:MAC" in str(
        bad_head.exception or bad_head.output
    )


def test_without_the_key_nothing_is_recorded_or_verified(tmp_path, monkeypatch) -> None:
    from features.keys import KeyUnavailable

    monkeypatch.delenv("PARCELRISK_AUDIT_KEY")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "empty"))
    with pytest.raises(KeyUnavailable, match=r"no audit key .* `parcelrisk keys new audit`"):
        SqliteDecisionStore(tmp_path / "audit.db")


def test_a_store_from_before_the_chain_is_refused_by_name(tmp_path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE decisions (decision_id TEXT PRIMARY KEY, record_hash TEXT)")
    conn.close()
    with pytest.raises(LegacyStore, match=r"before the tamper-evident chain.*audit migrate"):
        SqliteDecisionStore(path, key=KEY)


def _legacy_store(path: Path, n: int = 6) -> None:
    """A store as written before the chain: 17 values and their plain SHA-256."""
    from serving.audit.migrate import LEGACY_FIELDS, _legacy_hash

    conn = sqlite3.connect(path)
    columns = ",".join(f"{name}" for name in LEGACY_FIELDS)
    conn.execute(f"CREATE TABLE decisions ({columns}, record_hash TEXT)")
    conn.execute("CREATE INDEX decisions_declaration ON decisions (declaration_id)")
    for i in range(n):
        values = _record(i).stored_values()[: len(LEGACY_FIELDS)]
        conn.execute(
            f"INSERT INTO decisions VALUES ({','.join('?' * (len(values) + 1))})",
            (*values, _legacy_hash(values)),
        )
    conn.commit()
    conn.close()


def test_a_store_from_before_the_chain_is_migrated_into_it(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("PARCELRISK_AUDIT_KEY", KEY.decode())
    path = tmp_path / "old.db"
    _legacy_store(path)
    result = CliRunner().invoke(app, ["audit", "migrate", "--db", str(path)])
    assert result.exit_code == 0, result.output
    store = SqliteDecisionStore(path, key=KEY)
    report = verify_store(store)
    assert report.intact and report.checked == 6 == json.loads(result.output)["migrated"]
    record, intact = store.get("dec3")
    assert intact and record == _record(3) and record.answered_at == "2026-05-01T10:00:00.000000Z"


def test_a_legacy_store_with_an_edited_row_is_not_migrated(tmp_path) -> None:
    from features.errors import ParcelriskError
    from serving.audit.migrate import migrate_legacy

    path = tmp_path / "old.db"
    _legacy_store(path)
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("UPDATE decisions SET lane = 'green' WHERE decision_id = 'dec2'")
    conn.close()
    with pytest.raises(ParcelriskError, match=r"1 decisions no longer match .*dec2"):
        migrate_legacy(path)


def test_an_interrupted_migration_goes_on_where_it_stopped(tmp_path, monkeypatch) -> None:
    """A disk full half-way left every old decision in the table moved aside: verify said
    'intact: 0 decisions' and migrate 'nothing to migrate'. Run again, it finishes."""
    from features.errors import ParcelriskError
    from serving.audit import migrate as migration
    from serving.sqlite_store import StoreUnavailable

    monkeypatch.setenv("PARCELRISK_AUDIT_KEY", KEY.decode())
    monkeypatch.setattr(migration, "_PAGE", 2)
    path = tmp_path / "old.db"
    _legacy_store(path, n=7)
    record = SqliteDecisionStore.record
    pages = []

    def full_after_two_pages(self, decisions, **kwargs):
        pages.append(len(decisions))
        if len(pages) == 3:
            raise StoreUnavailable("decision store old.db: database or disk is full")
        return record(self, decisions, **kwargs)

    monkeypatch.setattr(SqliteDecisionStore, "record", full_after_two_pages)
    with pytest.raises(StoreUnavailable):
        migration.migrate_legacy(path)
    monkeypatch.setattr(SqliteDecisionStore, "record", record)
    assert migration.migrate_legacy(path)["migrated"] == 3  # the 4 chained before are kept
    store = SqliteDecisionStore(path, key=KEY)
    try:
        report = verify_store(store)
        assert report.intact and report.checked == 7
        assert [r.decision_id for r in store.find(limit=10)] == [f"dec{i}" for i in range(7)]
    finally:
        store.close()
    with pytest.raises(ParcelriskError, match="no decisions from before the chain"):
        migration.migrate_legacy(path)


def _edited_store(tmp_path: Path, edit: str, *args: object) -> SqliteDecisionStore:
    """A store of 4 decisions, then ``edit`` run on its file behind its back."""
    path = tmp_path / "audit.db"
    store = SqliteDecisionStore(path, key=KEY)
    store.record([_record(i) for i in range(4)])
    conn = sqlite3.connect(path)
    with conn:
        conn.execute(edit, args)
    conn.close()
    return store


def test_an_edited_declared_at_column_is_named_by_verify_and_get(tmp_path) -> None:
    """declared_at is kept beside the declaration for the store's queries (monitor, lanes
    plan, the live state's replay select by it) and is outside the MAC: an edit of it passed
    verify while it moved decisions between periods."""
    store = _edited_store(
        tmp_path, "UPDATE decisions SET declared_at = '2026-03-01T00:00:00.000000Z' WHERE seq = 3"
    )
    try:
        report = verify_store(store)
        assert report.problem is not None
        assert (report.problem.kind, report.problem.seq) == ("altered", 3)
        assert "declared_at" in report.problem.detail
        decision_id = report.problem.decision_id
        assert store.get(decision_id)[1] is False
        assert store.get(store.find(limit=1)[0].decision_id)[1] is True
    finally:
        store.close()


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("reasons_json", "[X"),
        ("warnings_json", "{"),
        ("declaration_json", "not json"),
        ("features", b""),
    ],
)
def test_a_row_edited_into_something_unreadable_is_named_not_a_crash(
    tmp_path, column, value
) -> None:
    """verify stopped with 'Expecting value: line 1 column 2' or 'stored feature vector:
    unknown format', naming no decision."""
    store = _edited_store(tmp_path, f"UPDATE decisions SET {column} = ? WHERE seq = 2", value)
    try:
        report = verify_store(store)
        assert report.problem is not None
        assert (report.problem.kind, report.problem.seq) == ("altered", 2)
    finally:
        store.close()


def test_verify_with_another_key_points_at_the_key_first(tmp_path) -> None:
    store = SqliteDecisionStore(tmp_path / "audit.db", key=KEY)
    try:
        store.record([_record(i) for i in range(3)])
    finally:
        store.close()
    other = SqliteDecisionStore(tmp_path / "audit.db", key=b"x" * 40)
    try:
        report = verify_store(other)
    finally:
        other.close()
    assert (report.problem.kind, report.problem.seq) == ("altered", 1)
    assert "check the audit key first" in report.problem.detail
