"""The decision store's disk is bounded: the write-ahead log under sustained writes from two
processes, and a write the disk cannot take (``StoreUnavailable``, nothing half-written)."""

import multiprocessing
import sqlite3
import time
from pathlib import Path

import pytest

from serving.sqlite_store import SqliteDecisionStore, StoreUnavailable
from tests.test_serving.test_store import _record

WAL_MAX_MB = 4.0


def _write(
    path: Path, worker: int, seconds: float, rows: multiprocessing.Value, target: int = 0
) -> None:
    """Write batches of 4 for ``seconds``, or until ``target`` rows are in (0: no target)."""
    store = SqliteDecisionStore(path, wal_max_mb=WAL_MAX_MB)
    seq, n, deadline = 0, 0, time.perf_counter() + seconds
    while time.perf_counter() < deadline and not (target and rows.value >= target):
        for found, _ in store.since(seq):  # a worker's catch-up before each batch
            seq = found
        store.record([_record(worker * 10_000_000 + n + k) for k in range(4)])
        n += 4
    with rows.get_lock():
        rows.value += n
    store.close()


def test_the_log_stays_under_its_limit_under_sustained_writes(tmp_path) -> None:
    path = tmp_path / "audit.db"
    SqliteDecisionStore(path, wal_max_mb=WAL_MAX_MB).close()
    context = multiprocessing.get_context("spawn")
    rows = context.Value("q", 0)
    # a volume, not a time: ~10 times the limit through the log, however busy the machine
    writers = [context.Process(target=_write, args=(path, w, 60.0, rows, 45_000)) for w in (1, 2)]
    for process in writers:
        process.start()
    wal, largest = Path(f"{path}-wal"), 0
    while any(process.is_alive() for process in writers):
        largest = max(largest, _size(wal))
        time.sleep(0.02)
    for process in writers:
        process.join()
        assert process.exitcode == 0
    written = path.stat().st_size
    # without the limit the log grew past the database itself within seconds
    assert rows.value >= 45_000 and written > 4 * WAL_MAX_MB * 2**20
    # the bound: the limit, plus the one batch whose commit crossed it (4 rows: < 256 KB)
    assert largest <= WAL_MAX_MB * 2**20 + 2**18, f"log reached {largest / 2**20:.2f} MB"
    assert not wal.exists() or wal.stat().st_size == 0  # a clean stop truncates it


def test_an_idle_log_is_truncated(tmp_path) -> None:
    store = SqliteDecisionStore(tmp_path / "audit.db", checkpoint_interval_s=0.05)
    store.record([_record(i) for i in range(50)])
    wal = Path(f"{store.path}-wal")
    assert wal.stat().st_size > 0
    deadline = time.monotonic() + 5
    while wal.stat().st_size and time.monotonic() < deadline:
        time.sleep(0.05)
    assert wal.stat().st_size == 0 and store.count() == 50
    store.close()


def test_a_full_disk_raises_store_unavailable_and_stores_nothing(tmp_path) -> None:
    store = SqliteDecisionStore(tmp_path / "audit.db")
    store.record([_record(0)])
    pages = store._conn.execute("PRAGMA page_count").fetchone()[0]
    store._conn.execute(f"PRAGMA max_page_count={pages}")  # SQLITE_FULL, as a full disk
    with pytest.raises(StoreUnavailable, match=r"cannot take a write now: .*SQLITE_FULL"):
        store.record([_record(i) for i in range(1, 200)])
    assert store.count() == 1 and store.get("dec1") is None
    assert not store._conn.in_transaction
    store._conn.execute("PRAGMA max_page_count=1073741823")  # space freed
    store.record([_record(i) for i in range(1, 200)])
    assert store.count() == 200
    store.close()


def test_other_errors_keep_their_own_type(tmp_path) -> None:
    store = SqliteDecisionStore(tmp_path / "audit.db")
    store.record([_record(1)])
    with pytest.raises(sqlite3.IntegrityError):  # duplicate id: a bug, not an outage
        store.record([_record(2), _record(1)])
    assert store.count() == 1 and not store._conn.in_transaction
    store.close()


def test_the_limit_is_a_setting() -> None:
    from features.params import ServeParams

    assert ServeParams().audit_wal_max_mb == 64


def test_a_checkpoint_failing_round_after_round_is_warned_once_then_counted(
    tmp_path, monkeypatch, caplog
) -> None:
    """A full disk failed every checkpoint round: a WARNING a second for the whole outage
    (probe 27). Now one when it starts, then at most one every 30 s saying how many failed."""
    import logging
    import sqlite3

    import serving.sqlite_store as sqlite_store

    class Failing:
        def __init__(self, conn: sqlite3.Connection) -> None:
            self.conn, self.rounds = conn, 0

        def execute(self, sql: str, *args):
            if "wal_checkpoint" in sql:
                self.rounds += 1
                raise sqlite3.OperationalError("database or disk is full")
            return self.conn.execute(sql, *args)

        def close(self) -> None:
            self.conn.close()

    real = SqliteDecisionStore._checkpoint_connection
    opened: list[Failing] = []

    def connect(self):
        opened.append(Failing(real(self)))
        return opened[-1]

    monkeypatch.setattr(SqliteDecisionStore, "_checkpoint_connection", connect)
    monkeypatch.setattr(sqlite_store, "_CHECKPOINT_WARN_EVERY_S", 0.5)
    caplog.set_level(logging.WARNING, logger="serving.sqlite_store")
    store = SqliteDecisionStore(tmp_path / "audit.db", checkpoint_interval_s=0.02)
    try:
        store.record([_record(0)])
        time.sleep(1.2)  # ~60 failing rounds
    finally:
        store.close()
    warned = [r.getMessage() for r in caplog.records if "checkpoint failed" in r.getMessage()]
    assert opened and opened[0].rounds >= 20
    assert 2 <= len(warned) <= 4, warned  # the first, then one per 0.5 s
    assert "database or disk is full" in warned[0] and "failed rounds" in warned[1]


def test_a_store_file_removed_as_the_checkpointer_starts_is_not_made_again(
    tmp_path, monkeypatch
) -> None:
    """The checkpointer connected from its own thread: a store file renamed between the store
    opening it and that thread starting was made again, empty, at the path, and the store
    read it as "replaced by another file" (CI ci110). Its connection is made before."""
    import threading

    from serving.sqlite_store import StoreReplaced

    db = tmp_path / "audit.db"
    start = threading.Thread.start

    def renamed_first(thread: threading.Thread) -> None:
        if thread.name.startswith("audit-checkpoint") and db.exists():
            db.rename(tmp_path / "moved.db")
        start(thread)

    monkeypatch.setattr(threading.Thread, "start", renamed_first)
    store = SqliteDecisionStore(db, checkpoint_interval_s=0.02)
    try:
        time.sleep(0.3)  # rounds of the checkpointer on the moved file
        assert not db.exists()
        with pytest.raises(StoreReplaced, match=r"audit\.db was deleted or renamed"):
            store.record([_record(0)])
    finally:
        store.close()


def _size(path: Path) -> int:
    """The log's size, 0 while there is none: a writer's last close removes it between an
    exists() and a stat() (the test failed so on a loaded CI run)."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0
