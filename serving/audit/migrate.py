"""Chain a decision store written before the chain (``parcelrisk audit migrate``).

Its rows carried a plain SHA-256 (``record_hash``) that anyone could recompute. Each one is
checked against it first: a row whose hash already fails is reported and the migration refused
(chaining it would certify the edit). The rows are then re-recorded, in their original order,
into the chained table with the audit key, each answered at its original ``scored_at``; the
request id, key id and what-was-known fields they never had stay empty (0). The old table is
dropped only once every row is in the chain, in the same file.
"""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path
from typing import Any

from features.errors import ParcelriskError

LEGACY_FIELDS = (
    "decision_id", "scored_at", "declaration_id", "declaration_json", "features",
    "manifest_fingerprint", "model_name", "model_version", "thresholds_version", "lane_policy",
    "raw_score", "risk", "expected_revenue", "lane", "exploration", "reasons_json",
    "warnings_json",
)  # fmt: skip
_PAGE = 20_000


def _legacy_hash(values: tuple[Any, ...]) -> str:
    """The hash the store wrote before the chain (``content_hash`` of its 17 values)."""
    parts = [v if isinstance(v, bytes) else str(v).encode() for v in values]
    return hashlib.sha256(b"\x1f".join(parts)).hexdigest()


def migrate_legacy(path: Path) -> dict[str, Any]:
    """Chain every decision of the pre-chain store at ``path``; the audit key comes from
    ``features.keys`` as for any store."""
    from serving.decision import STORED_FIELDS, DecisionRecord, iso_utc, parse_iso_us
    from serving.sqlite_store import SqliteDecisionStore

    conn = sqlite3.connect(path, isolation_level=None)
    columns = {row[1] for row in conn.execute("PRAGMA table_info(decisions)")}
    # an earlier run stopped after moving the old table aside (disk full, killed): its rows
    # wait there, and this run goes on from where it stopped
    resuming = bool(conn.execute("PRAGMA table_info(decisions_before_chain)").fetchall())
    if not resuming and (not columns or "mac" in columns):
        conn.close()
        raise ParcelriskError(f"{path}: no decisions from before the chain to migrate")
    old_table = "decisions_before_chain" if resuming else "decisions"
    altered = [
        row[0]
        for row in conn.execute(
            f"SELECT {','.join(LEGACY_FIELDS)}, record_hash FROM {old_table} ORDER BY rowid"
        )
        if _legacy_hash(row[:-1]) != row[-1]
    ]
    if altered:
        conn.close()
        raise ParcelriskError(
            f"{path}: {len(altered)} decisions no longer match their hash (first: "
            f"{altered[0]}); they were edited before the chain existed: not migrated"
        )
    if not resuming:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("DROP INDEX IF EXISTS decisions_declaration")
        conn.execute("ALTER TABLE decisions RENAME TO decisions_before_chain")
        conn.execute("COMMIT")
    conn.close()
    store = SqliteDecisionStore(path)  # creates the chained table
    moved, last = 0, 0
    try:
        while True:
            with store._read_lock:
                rows = store._reader.execute(
                    f"SELECT rowid, {','.join(LEGACY_FIELDS)} FROM decisions_before_chain "
                    "WHERE rowid > ? ORDER BY rowid LIMIT ?",
                    (last, _PAGE),
                ).fetchall()
            if not rows:
                break
            last = rows[-1][0]
            if resuming:  # the rows an interrupted run chained already
                ids = [r[1] for r in rows]
                with store._read_lock:
                    chained = {
                        found
                        for (found,) in store._reader.execute(
                            "SELECT decision_id FROM decisions WHERE decision_id IN "
                            f"({','.join('?' * len(ids))})",
                            ids,
                        )
                    }
                rows = [r for r in rows if r[1] not in chained]
                if not rows:
                    continue
            # request_id, api_key_id, known_seq, known_results_seq, model_run_id,
            # model_bundle_sha256, warning_codes_json and pseudonym_key_id: a decision from
            # before the chain recorded none of them
            blank = ("", "", 0, 0, "", "", "", "")
            records = [DecisionRecord.from_stored_values((*r[1:], *blank)) for r in rows]
            assert len(records[0].stored_values()) == len(STORED_FIELDS)
            answered = [iso_utc(parse_iso_us(r.scored_at)) for r in records]
            store.record(records, answered_at=answered)
            moved += len(rows)
        store._write(lambda: store._conn.execute("DROP TABLE decisions_before_chain"))
        head = store.head()
    finally:
        store.close()
    return {"migrated": moved, "head": None if head is None else f"{head[0]}:{head[1].hex()}"}
