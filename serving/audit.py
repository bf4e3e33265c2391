"""The decision store: every scored declaration, with everything needed to recompute it.

SQLite in WAL mode (readers never block the writer; several worker processes can share one
file). Path from ``PARCELRISK_AUDIT_DB`` (default ``audit.db``). Each batch is inserted in one
transaction, so a batch is either fully recorded or not at all. Each record carries a SHA-256
of its content (``record_hash``) so an auditor can check it was not edited after the fact.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from serving.config import AUDIT_DB_ENV

try:  # POSIX: worker processes queue for the write lock in the kernel (AuditStore.record)
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

DEFAULT_AUDIT_DB = "audit.db"

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

_COLUMNS = (
    "decision_id",
    "scored_at",
    "declaration_id",
    "declaration_json",
    "features",
    "manifest_fingerprint",
    "model_name",
    "model_version",
    "thresholds_version",
    "lane_policy",
    "raw_score",
    "risk",
    "expected_revenue",
    "lane",
    "exploration",
    "reasons_json",
    "warnings_json",
)


@dataclass(frozen=True)
class DecisionRecord:
    """One stored decision.

    ``declaration_json`` is the canonical declaration as JSON text; ``features`` the model input
    row as little-endian float64 bytes in the order of the model's manifest (bit-exact, so the
    score can be recomputed exactly; NaN = missing).
    """

    decision_id: str
    scored_at: str
    declaration_id: str
    declaration_json: str
    features: bytes
    manifest_fingerprint: str
    model_name: str
    model_version: str
    thresholds_version: str
    lane_policy: str  # JSON of serving.lanes.LanePolicy: AEO discount, exploration rate/seed/lane
    raw_score: float
    risk: float
    expected_revenue: float
    lane: str
    exploration: bool
    reasons: list[dict[str, Any]]
    warnings: list[str]

    @property
    def declaration(self) -> dict[str, Any]:
        return json.loads(self.declaration_json)

    @property
    def feature_vector(self) -> np.ndarray:
        return np.frombuffer(self.features, dtype="<f8")

    def row(self) -> tuple[Any, ...]:
        values = (
            self.decision_id,
            self.scored_at,
            self.declaration_id,
            self.declaration_json,
            self.features,
            self.manifest_fingerprint,
            self.model_name,
            self.model_version,
            self.thresholds_version,
            self.lane_policy,
            float(self.raw_score),
            float(self.risk),
            float(self.expected_revenue),
            self.lane,
            int(self.exploration),
            json.dumps(self.reasons) if self.reasons else "[]",
            json.dumps(self.warnings) if self.warnings else "[]",
        )
        return (*values, _hash_row(values))


def _hash_row(values: Sequence[Any]) -> str:
    # Fields joined by a unit separator; bytes as-is, everything else by its exact str()
    # (repr of floats round-trips), so the hash is canonical and cheap (one update per row).
    parts = [v if isinstance(v, bytes) else str(v).encode() for v in values]
    return hashlib.sha256(b"\x1f".join(parts)).hexdigest()


def features_for_storage(X: np.ndarray) -> list[bytes]:
    """Model input rows as little-endian float64 bytes."""
    X = np.ascontiguousarray(X, dtype="<f8")
    return [row.tobytes() for row in X]


class AuditStore:
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

    @classmethod
    def from_env(cls, default: str | Path = DEFAULT_AUDIT_DB) -> AuditStore:
        return cls(os.environ.get(AUDIT_DB_ENV) or default)

    def record(self, decisions: Sequence[DecisionRecord]) -> None:
        """Insert a batch in one transaction (all or nothing)."""
        if not decisions:
            return
        rows = [d.row() for d in decisions]
        placeholders = ",".join("?" * (len(_COLUMNS) + 1))
        sql = f"INSERT INTO decisions ({','.join(_COLUMNS)},record_hash) VALUES ({placeholders})"
        with self._lock, self._writer_turn():
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.executemany(sql, rows)
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
            cur = self._conn.execute(
                f"SELECT {','.join(_COLUMNS)},record_hash FROM decisions WHERE decision_id = ?",
                (decision_id,),
            )
            row = cur.fetchone()
        if row is None:
            return None
        *values, stored_hash = row
        intact = hmac_equal(_hash_row(values), stored_hash)
        v = dict(zip(_COLUMNS, values, strict=True))
        record = DecisionRecord(
            decision_id=v["decision_id"],
            scored_at=v["scored_at"],
            declaration_id=v["declaration_id"],
            declaration_json=v["declaration_json"],
            features=bytes(v["features"]),
            manifest_fingerprint=v["manifest_fingerprint"],
            model_name=v["model_name"],
            model_version=v["model_version"],
            thresholds_version=v["thresholds_version"],
            lane_policy=v["lane_policy"],
            raw_score=v["raw_score"],
            risk=v["risk"],
            expected_revenue=v["expected_revenue"],
            lane=v["lane"],
            exploration=bool(v["exploration"]),
            reasons=json.loads(v["reasons_json"]),
            warnings=json.loads(v["warnings_json"]),
        )
        return record, intact

    def count(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM decisions").fetchone()[0])

    def close(self) -> None:
        self._stop.set()
        self._checkpointer.join(timeout=10)
        with self._lock:
            try:
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as exc:  # another process still writing: it checkpoints later
                logger.info("audit store: final checkpoint skipped: %s", exc)
            self._conn.close()
            if self._lock_file is not None:
                self._lock_file.close()


def hmac_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
