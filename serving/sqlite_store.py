"""The SQLite decision store (``serving.store.DecisionStore``), the embedded default.

WAL mode: readers never block the writer, and several worker processes can share one file.
Each batch is inserted in one transaction, so a batch is either fully recorded or not at all.
Each row carries the SHA-256 of its content (``record_hash``, ``serving.decision.content_hash``)
so an auditor can check it was not edited after the fact.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

from serving.decision import STORED_FIELDS, DecisionRecord, content_hash, iso_utc

try:  # POSIX: worker processes queue for the write lock in the kernel (SqliteDecisionStore.record)
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS decisions (
    decision_id TEXT PRIMARY KEY,
    scored_at TEXT NOT NULL,
    declaration_id TEXT NOT NULL,
    declaration_json TEXT NOT NULL,
    features BLOB NOT NULL,
    manifest_fingerprint TEXT NOT NULL,
    model_name TEXT NOT NULL,
    model_version TEXT NOT NULL,
    thresholds_version TEXT NOT NULL,
    lane_policy TEXT NOT NULL,
    raw_score REAL NOT NULL,
    risk REAL NOT NULL,
    expected_revenue REAL NOT NULL,
    lane TEXT NOT NULL,
    exploration INTEGER NOT NULL,
    reasons_json TEXT NOT NULL,
    warnings_json TEXT NOT NULL,
    record_hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS decisions_declaration ON decisions (declaration_id);
"""
_INSERT = (
    f"INSERT INTO decisions ({','.join(STORED_FIELDS)},record_hash) "
    f"VALUES ({','.join('?' * (len(STORED_FIELDS) + 1))})"
)
_SELECT = f"SELECT {','.join(STORED_FIELDS)},record_hash FROM decisions WHERE decision_id = ?"
# decisions_declaration indexes the ids; the first of each (id, text) wins (ORDER BY rowid)
_DECIDED = (
    f"SELECT {','.join(STORED_FIELDS)} FROM decisions WHERE model_name = ? AND model_version = ? "
    "AND declaration_id IN ({ids}) ORDER BY rowid"
)

# Stored declarations carry declared_at as "%Y-%m-%dT%H:%M:%S.%fZ": text order is time order,
# so a replay skips what a snapshot holds already without parsing it in Python.
_SINCE = (
    "SELECT rowid, declaration_json FROM decisions WHERE rowid > ? "
    "AND (? IS NULL OR json_extract(declaration_json, '$.declared_at') >= ?) "
    "ORDER BY rowid LIMIT ?"
)


class SqliteDecisionStore:
    """Thread-safe handle on the SQLite decision store.

    Checkpoints (copying the write-ahead log into the database file, with an fsync) run in a
    background thread on its own connection, every ``checkpoint_interval_s``. Left to SQLite
    they run inside whichever commit crosses 1,000 log pages: a ~6 ms stall every ~50 batches
    of 8 decisions, which was most of the /score p99 in process. sqlite3 releases the GIL
    while it works, so the scoring thread is not held up. ``close`` truncates the log.
    """

    def __init__(self, path: str | Path, *, checkpoint_interval_s: float = 1.0) -> None:
        self.path = Path(path)
        if self.path.parent and not self.path.parent.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(
            str(self.path), check_same_thread=False, isolation_level=None, timeout=30.0
        )
        self._conn.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL: a committed batch survives a process crash; an OS crash may lose the
        # last few transactions, never corrupt the file.
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute("PRAGMA wal_autocheckpoint=0")  # the thread below does it
        self._conn.executescript(_SCHEMA)
        self._read_lock = threading.Lock()
        self._reader = sqlite3.connect(
            str(self.path), check_same_thread=False, isolation_level=None, timeout=30.0
        )
        self._lock_file = (
            open(f"{self.path}.lock", "a+b")  # noqa: SIM115 (held for the store's life)
            if fcntl is not None
            else None
        )
        self._stop = threading.Event()
        self._checkpointer = threading.Thread(
            target=self._checkpoint_loop,
            args=(checkpoint_interval_s,),
            name=f"audit-checkpoint-{self.path.name}",
            daemon=True,
        )
        self._checkpointer.start()

    def _checkpoint_loop(self, interval_s: float) -> None:
        conn = sqlite3.connect(str(self.path), isolation_level=None, timeout=30.0)
        try:
            while not self._stop.wait(interval_s):
                try:
                    # PASSIVE: copy what no reader still needs, never block the writer
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
                except sqlite3.Error as exc:  # busy or I/O trouble: try again next round
                    logger.warning("audit store checkpoint failed: %s", exc)
        finally:
            conn.close()

    def record(self, decisions: Sequence[DecisionRecord]) -> None:
        """Insert a batch in one transaction (all or nothing)."""
        if not decisions:
            return
        rows = [
            (*values, content_hash(values)) for values in (d.stored_values() for d in decisions)
        ]
        with self._lock, self._writer_turn():
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.executemany(_INSERT, rows)
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    @contextlib.contextmanager
    def _writer_turn(self) -> Iterator[None]:
        """Queue the service's worker processes for the write lock in the kernel.

        When two processes want SQLite's write lock at once, the loser sleeps in SQLite's busy
        handler (1, 2, 5, 10... ms) however short the winner's commit; an exclusive flock
        wakes it the moment the lock is free. Where flock is missing SQLite's timeout remains.
        """
        if self._lock_file is None:
            yield
            return
        fcntl.flock(self._lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._lock_file, fcntl.LOCK_UN)

    def get(self, decision_id: str) -> tuple[DecisionRecord, bool] | None:
        """The stored decision and whether its content still matches its hash; None if absent."""
        with self._lock:
            row = self._conn.execute(_SELECT, (decision_id,)).fetchone()
        if row is None:
            return None
        *values, stored_hash = row
        intact = hmac.compare_digest(content_hash(values).encode(), stored_hash.encode())
        return DecisionRecord.from_stored_values(values), intact

    def count(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM decisions").fetchone()[0])

    def decided(
        self, declaration_ids: Sequence[str], model_name: str, model_version: str
    ) -> dict[tuple[str, str], DecisionRecord]:
        ids = list(dict.fromkeys(declaration_ids))
        if not ids:
            return {}
        query = _DECIDED.format(ids=",".join("?" * len(ids)))
        # the reader connection, as ``since``: runs before every batch, must not queue behind
        # a commit waiting for another worker's write lock
        with self._read_lock:
            rows = self._reader.execute(query, (model_name, model_version, *ids)).fetchall()
        found: dict[tuple[str, str], DecisionRecord] = {}
        for values in rows:
            record = DecisionRecord.from_stored_values(values)
            found.setdefault((record.declaration_id, record.declaration_json), record)
        return found

    def since(
        self, seq: int, declared_from_us: int | None = None, limit: int | None = None
    ) -> list[tuple[int, str]]:
        """(rowid, declaration_json) after ``seq``, in rowid order (declared at or after
        ``declared_from_us``, at most ``limit`` rows, when given).

        The rowid is the sequence: inserts run one transaction at a time under the write lock
        and rows are never deleted, so rowids grow in commit order across worker processes.
        """
        # its own connection: a WAL reader never waits for a writer, and this read runs before
        # every batch (on the event loop for small ones), so it must not queue behind a commit
        # that holds ``_lock`` while waiting for another worker's write lock
        since = iso_utc(int(declared_from_us)) if declared_from_us is not None else None
        limit = -1 if limit is None else int(limit)  # SQLite: a negative LIMIT is none
        with self._read_lock:
            return self._reader.execute(_SINCE, (int(seq), since, since, limit)).fetchall()

    def last_seq(self) -> int:
        with self._read_lock:
            row = self._reader.execute("SELECT MAX(rowid) FROM decisions").fetchone()
        return int(row[0] or 0)

    def close(self) -> None:
        self._stop.set()
        self._checkpointer.join(timeout=10)
        with self._lock:
            try:
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as exc:  # another process still writing: it checkpoints later
                logger.info("audit store: final checkpoint skipped: %s", exc)
            self._conn.close()
            with self._read_lock:
                self._reader.close()
            if self._lock_file is not None:
                self._lock_file.close()
