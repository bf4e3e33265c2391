"""The SQLite decision store (``serving.store.DecisionStore``), the embedded default.

WAL mode: readers never block the writer, and several worker processes can share one file.
Each batch is inserted in one transaction, so a batch is either fully recorded or not at all.
The decisions form a chain (``serving.audit.chain``): each row carries its seq, the MAC of the
row before it and its own, keyed with the audit key, so an edit, insertion, deletion or reorder
by anyone without the key is found by ``parcelrisk audit verify``. Writers extend the chain in
their turn (one transaction at a time across worker processes), so both workers append to one.

The disk it takes is bounded: the write-ahead log is checkpointed and started over before it
holds ``wal_max_mb`` (``serve.audit_wal_max_mb``), and a write the disk cannot take raises
``StoreUnavailable`` (the service answers 503) with nothing of its batch stored.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import math
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from features.errors import ParcelriskError
from features.keys import load_key
from serving.audit.chain import GENESIS, ChainRow, decision_mac, record_mac
from serving.decision import (  # DamagedRecord: raised here, imported from here by callers
    ADDED_FIELDS,
    STORED_FIELDS,
    DamagedRecord,
    DecisionRecord,
    StoreFromNewerRelease,
    iso_utc,
    pack_feature_rows,
    refuse_newer_release,
    unpack_features,
)

try:  # POSIX: worker processes queue for the write lock in the kernel (SqliteDecisionStore.record)
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

# SQLite's primary result codes for "this write cannot happen now", whatever the batch holds:
# disk or quota full, I/O failure, the file locked or read-only. Anything else (a constraint,
# a bad statement) is a bug and keeps its own error.
_UNAVAILABLE = {
    sqlite3.SQLITE_FULL,
    sqlite3.SQLITE_IOERR,
    sqlite3.SQLITE_BUSY,
    sqlite3.SQLITE_LOCKED,
    sqlite3.SQLITE_READONLY,
    sqlite3.SQLITE_CANTOPEN,
}
_MB = 1024 * 1024
# How long the checkpointer waits for readers to leave the log before it starts it over; it
# holds every writer back meanwhile, so an auditor's long read costs a round, not the scoring.
_RESTART_WAIT_MS = 200
_FASTEST_ROUND_S = 0.01
# A checkpoint failing round after round (a full disk) is warned when it starts, then at most
# this often with how many failed meanwhile: it was a WARNING a second (probe 27)
_CHECKPOINT_WARN_EVERY_S = 30.0
_HOLD_BACK_S = 1.0  # a writer waits this long for a running checkpoint, then writes on
_CATCH_UP_PASSES = 3
_CATCH_UP_FRAMES = 256  # ~1 MB of 4 KB pages: copied in a few ms while the writers wait


def stored_text(raw: bytes) -> str:
    """A text cell as read (every connection's ``text_factory``): bytes that are not UTF-8,
    which only an edit outside the service writes, are kept (as surrogates), so the chain
    check sees a record that differs from what was signed, NOT INTACT at its seq, where
    sqlite3's own decoding failed the whole read with a traceback (probe, 2026-12)."""
    return raw.decode("utf-8", "surrogateescape")


def _is_unavailable(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in _UNAVAILABLE  # extended codes: low byte


def is_damaged(exc: sqlite3.Error) -> bool:
    """Whether ``exc`` says the store's file is damaged (malformed, or not a database)."""
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)


class StoreUnavailable(ParcelriskError):
    """The decision store cannot take a write now (disk full, I/O error, locked): nothing of
    the batch was stored; retrying later may succeed. ``passing``: a lock that another writer
    holds a moment (busy), no sign the store is down."""

    def __init__(self, message: str, *, passing: bool = False) -> None:
        super().__init__(message)
        self.passing = passing


class StoreReplaced(StoreUnavailable):
    """The store's path no longer names the file this handle opened: deleted, renamed or
    replaced under the running service. Writes would go on into the unlinked file and be
    lost at the next restart, answered all the same (probe 21): a worker stops taking writes
    until it is restarted on the file meant to be the store."""


def file_identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of the file at ``path``; None when there is none."""
    try:
        found = os.stat(path)
    except FileNotFoundError:
        return None
    return found.st_dev, found.st_ino


def check_same_file(path: Path, opened: tuple[int, int] | None) -> None:
    """``StoreReplaced`` unless ``path`` still names the file opened as ``opened`` (one stat,
    ~2 us: before every write transaction)."""
    now = file_identity(path)
    if opened is not None and now != opened:
        what = "deleted or renamed" if now is None else "replaced by another file"
        raise StoreReplaced(
            f"decision store {path} was {what} under the running service: nothing of the "
            "batch was stored (it would have gone into the unlinked file and been lost at the "
            "next restart); put the store back in place, or restore it, then restart the service"
        )


@contextlib.contextmanager
def unavailable_as_error(conn: sqlite3.Connection, path: Path) -> Iterator[None]:
    """Roll back the write transaction the block fails in; ``StoreUnavailable`` when the
    file could not take it (disk full, I/O error, locked), any other error as it is."""
    try:
        yield
    except BaseException as exc:
        # SQLite may have rolled the transaction back itself (SQLITE_FULL, SQLITE_IOERR do)
        if conn.in_transaction:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error as failed:  # uncommitted log frames are never read: safe
                logger.error("audit store: rollback failed: %s", failed)
        if isinstance(exc, sqlite3.Error) and _is_unavailable(exc):
            code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
            raise StoreUnavailable(
                f"decision store {path.name} cannot take a write now: {exc} "
                f"({exc.sqlite_errorname}); nothing of it was stored",
                passing=code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED),
            ) from exc
        raise


def _read_only_place(path: Path) -> str:
    """Why a store cannot be written where it is, when that is its file system or directory
    (a read-only mount, a WORM volume): SQLite says only "unable to open database file" (probe
    27). Empty when it can be written, or cannot be told."""
    for place in (path, path.parent):
        if not place.exists():
            continue
        try:
            if os.statvfs(place).f_flag & os.ST_RDONLY:
                return (
                    f": {place} is on a read-only file system, and the service writes every "
                    "decision to its store (give a writable path; review a copy with `audit`)"
                )
        except OSError:
            return ""
        if not os.access(place, os.W_OK):
            return f": {place} is not writable by this user"
    return ""


def connect_read_only(path: Path, table: str | None = "decisions") -> sqlite3.Connection:
    """A connection that never writes the store file at ``path`` (an auditor's copy, a WORM
    volume, the live store read beside the service), refusing a file without ``table``
    (None: any SQLite file).

    ``mode=ro`` reads a live store consistently (SQLite's WAL index is shared with the
    writers). On read-only media that index cannot be made beside the file (CANTOPEN): with
    no write-ahead log beside it the file is the whole store and nothing can be writing it
    (a writer would have to create that log), so it is read as immutable, without locks.
    A log left beside a copy on read-only media cannot be read without writing: refused,
    naming what to do, rather than reading the file without its last commits."""
    if not path.is_file():
        raise StoreUnavailable(f"decision store {path}: no such file")
    uri = path.resolve().as_uri()

    def connect(query: str) -> sqlite3.Connection:
        conn = sqlite3.connect(
            f"{uri}?{query}", uri=True, check_same_thread=False, isolation_level=None, timeout=30.0
        )
        conn.text_factory = stored_text
        try:  # the first read opens the file: what fails, fails here
            found = conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
            ).fetchone()
        except BaseException:
            conn.close()
            raise
        if found is None and table is not None:
            conn.close()
            raise StoreUnavailable(
                f"decision store {path}: not a decision store (no {table} table)"
            )
        return conn

    try:
        try:
            return connect("mode=ro")
        except sqlite3.OperationalError as exc:
            if getattr(exc, "sqlite_errorname", "") != "SQLITE_CANTOPEN":
                raise
            log = Path(f"{path}-wal")
            if log.exists() and log.stat().st_size > 0:
                raise StoreUnavailable(
                    f"decision store {path} cannot be read where it is: its write-ahead log "
                    f"{log.name} holds commits and the directory is read-only; copy both files "
                    "to a writable directory and read the copy"
                ) from None
            return connect("immutable=1")
    except sqlite3.Error as exc:  # not SQLite, damaged: one line naming the file
        name = getattr(exc, "sqlite_errorname", "")
        raise StoreUnavailable(
            f"decision store {path} cannot be read: {exc}" + (f" ({name})" if name else "")
        ) from None


# The stored columns of a decision, in ``STORED_FIELDS`` order (features packed:
# ``serving.decision.pack_feature_rows``), then its place in the chain.
_COLUMNS = (*STORED_FIELDS, "declared_at", "seq", "answered_at", "prev_mac", "mac")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS decisions (
    seq INTEGER PRIMARY KEY,  -- the chain's order: commit order across every writer
    decision_id TEXT NOT NULL UNIQUE,
    answered_at TEXT NOT NULL,  -- committed and released to its request (UTC)
    scored_at TEXT NOT NULL,
    declaration_id TEXT NOT NULL,
    declared_at TEXT,  -- copied from the declaration: replay and time filters without JSON
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
    request_id TEXT NOT NULL,
    api_key_id TEXT NOT NULL,
    known_seq INTEGER NOT NULL,
    known_results_seq INTEGER NOT NULL,
    model_run_id TEXT NOT NULL DEFAULT '',  -- added later (serving.decision.ADDED_FIELDS)
    model_bundle_sha256 TEXT NOT NULL DEFAULT '',
    warning_codes_json TEXT NOT NULL DEFAULT '',
    pseudonym_key_id TEXT NOT NULL DEFAULT '',
    prev_mac BLOB NOT NULL,  -- the MAC of the decision at seq - 1 (serving.audit.chain)
    mac BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS decisions_declaration ON decisions (declaration_id);
CREATE INDEX IF NOT EXISTS decisions_answered ON decisions (answered_at);
-- periods by declared_at (monitor, lanes refit, history export --since): a week of a year's
-- store read without scanning the year (built once when a store from before it is opened)
CREATE INDEX IF NOT EXISTS decisions_declared ON decisions (declared_at);
-- Decisions recorded whose answer was never sent (the request timed out or was cancelled
-- first): kept, not deleted (the log is append-only), and handed back on a retry. Apart from
-- the decisions so that delivery, a fact about the transport, never touches their chain.
CREATE TABLE IF NOT EXISTS undelivered (
    decision_id TEXT PRIMARY KEY REFERENCES decisions (decision_id),
    reason TEXT NOT NULL,
    marked_at TEXT NOT NULL,
    redelivered_at TEXT
);
-- Where the hot store's chain starts after ``parcelrisk audit archive`` moved older days out:
-- the last archived (seq, mac), MAC'd with the audit key so a cut cannot be invented.
CREATE TABLE IF NOT EXISTS chain_cuts (
    cut_seq INTEGER PRIMARY KEY,
    cut_mac BLOB NOT NULL,
    archived_at TEXT NOT NULL,
    archive TEXT NOT NULL,
    mac BLOB NOT NULL
);
-- Auditor sessions signed out before their cookie expires (``serving.auditor.session``): the
-- SHA-256 of the token's signed part, never the token, kept until the token's own expiry. Only
-- the sign-outs of the last session lifetime are here (older ones are dropped on insert), so the
-- drop scans a small table and needs no index of its own.
CREATE TABLE IF NOT EXISTS revoked_sessions (
    session_id TEXT PRIMARY KEY,
    expires_at INTEGER NOT NULL  -- unix seconds
);
"""
_INSERT = f"INSERT INTO decisions ({','.join(_COLUMNS)}) VALUES ({','.join('?' * len(_COLUMNS))})"
_READ = f"SELECT {','.join(_COLUMNS)} FROM decisions"
_SELECT = f"{_READ} WHERE decision_id = ?"
# decisions_declaration indexes the ids; the first of each (id, text) wins (ORDER BY seq)
# what an answer needs, not the feature vector nor the chain: a retry is answered from it.
# Any version of the model: a declaration re-sent after a promotion gets its first decision.
_DECIDED = (
    f"SELECT {','.join(f if f != 'features' else 'NULL' for f in STORED_FIELDS)}, seq, "
    "answered_at FROM decisions WHERE model_name = ? "
    "AND declaration_id IN ({ids}) ORDER BY seq"
)
_LAST_LINK = "SELECT seq, mac FROM decisions ORDER BY seq DESC LIMIT 1"
_LAST_CUT = "SELECT cut_seq, cut_mac, archived_at, archive, mac FROM chain_cuts ORDER BY cut_seq DESC LIMIT 1"

# Stored declarations carry declared_at as "%Y-%m-%dT%H:%M:%S.%fZ": text order is time order,
# so a replay skips what a snapshot holds already without parsing it in Python.
_SINCE = (
    "SELECT seq, declaration_json FROM decisions WHERE seq > ? "
    "AND (? IS NULL OR declared_at >= ?) ORDER BY seq LIMIT ?"
)
_MARK_UNDELIVERED = (
    "INSERT INTO undelivered (decision_id, reason, marked_at, redelivered_at) "
    "VALUES (?, ?, ?, NULL) ON CONFLICT (decision_id) DO UPDATE SET "
    "reason = excluded.reason, marked_at = excluded.marked_at, redelivered_at = NULL"
)
_WAITING = (
    "SELECT decision_id FROM undelivered WHERE redelivered_at IS NULL AND decision_id IN ({ids})"
)
_DELIVERY = "SELECT reason, marked_at, redelivered_at FROM undelivered WHERE decision_id = ?"
_REVOKE = (
    "INSERT INTO revoked_sessions (session_id, expires_at) VALUES (?, ?) "
    "ON CONFLICT (session_id) DO NOTHING"
)
_PRUNE_REVOKED = "DELETE FROM revoked_sessions WHERE expires_at <= ?"
_REVOKED = "SELECT 1 FROM revoked_sessions WHERE session_id = ?"
_N_STORED = len(STORED_FIELDS)
_FEATURES = STORED_FIELDS.index("features")


def decided_records(rows: Sequence[Sequence[Any]]) -> dict[tuple[str, str], DecisionRecord]:
    """Rows of a ``decided`` query (stored values, seq, answered_at; in seq order) as the first
    decision of each (declaration_id, declaration_json)."""
    found: dict[tuple[str, str], DecisionRecord] = {}
    for row in rows:
        *values, seq, answered_at = row
        values[_FEATURES] = b""  # not read: the answer does not carry them
        record = DecisionRecord.from_stored_values(values, seq=seq, answered_at=answered_at)
        found.setdefault((record.declaration_id, record.declaration_json), record)
    return found


def already_decided(
    decisions: Sequence[DecisionRecord],
    lookup: Callable[[list[str], str], Sequence[Sequence[Any]]],
) -> tuple[dict[tuple[str, str], DecisionRecord], set[str]]:
    """The stored first decisions of the declarations ``decisions`` decide again, by any
    version of the same model: ``lookup(ids, model_name)`` runs the ``decided`` query inside
    the writer's transaction. Two workers can score the same new declaration at once (a client
    retrying on a second connection while its first attempt is still being scored, or one
    worker on the old champion and one on the new during a swap): both see it undecided before
    scoring, and the second to write must answer with the first's decision instead of chaining
    a second one. Also the ids among them decided with any content (``first_or_amended``)."""
    by_model: dict[str, list[str]] = {}
    for d in decisions:
        by_model.setdefault(d.model_name, []).append(d.declaration_id)
    wanted = {(d.declaration_id, d.declaration_json) for d in decisions}
    found: dict[tuple[str, str], DecisionRecord] = {}
    decided_ids: set[str] = set()
    for name, ids in by_model.items():
        for key, record in decided_records(lookup(list(dict.fromkeys(ids)), name)).items():
            decided_ids.add(key[0])
            if key in wanted:
                found.setdefault(key, record)
    return found, decided_ids


def first_or_amended(
    decisions: Sequence[DecisionRecord],
    lookup: Callable[[list[str], str], Sequence[Sequence[Any]]],
) -> tuple[list[DecisionRecord | None], dict[tuple[str, str], DecisionRecord]]:
    """What a ``first_wins`` write stores of ``decisions``, one per decision (None: decided
    first elsewhere, not stored), and what it answers instead of them, keyed by (declaration
    id, declaration JSON): the first decision stored of the same declaration, or the decision
    itself saying it is amended.

    Amended: its id was decided with other content, stored before (by a worker that scored it
    meanwhile) or earlier in this write. The service checks that before scoring, but two
    contents of one id arriving at once (an amendment overtaking its original in an
    at-least-once queue) both looked first, and the parcel held a green and a yellow decision,
    each answered as its only one (probe 31). Checked again here, in the writers' turn, where
    the decision's MAC is still to be made."""
    found, decided_ids = already_decided(decisions, lookup)
    stored: list[DecisionRecord | None] = []
    answers: dict[tuple[str, str], DecisionRecord] = dict(found)
    contents: dict[str, str] = {}  # id -> the first content this write stores for it
    for d in decisions:
        key = (d.declaration_id, d.declaration_json)
        if key in found:
            stored.append(None)
            continue
        first = contents.setdefault(d.declaration_id, d.declaration_json)
        if d.declaration_id in decided_ids or first != d.declaration_json:
            amended = d.amended()
            if amended is not d:
                answers[key] = amended
            d = amended
        stored.append(d)
    return stored, answers


def _declared_at(declaration_json: str) -> str | None:
    """The declaration's ``declared_at`` as stored (ISO UTC text), without parsing the JSON."""
    at = declaration_json.find('"declared_at": "')  # a key: quotes inside values are escaped
    if at < 0:
        import json

        try:
            declaration = json.loads(declaration_json)
        except ValueError:  # damaged: the MAC check names it
            return None
        value = declaration.get("declared_at") if isinstance(declaration, dict) else None
        return None if value is None else str(value)
    start = at + len('"declared_at": "')
    return declaration_json[start : declaration_json.index('"', start)]


_DECISION_ID = STORED_FIELDS.index("decision_id")
_DECLARATION_JSON = STORED_FIELDS.index("declaration_json")


def _row_record(row: Sequence[Any]) -> tuple[DecisionRecord, ChainRow]:
    """A stored row back to its record (canonical features) and its chain link; a row that
    no longer reads is ``DamagedRecord`` (a 409 from the service, one line from the CLI),
    never a traceback."""
    link = _row_link(row)
    try:
        record = DecisionRecord.from_stored_values(
            link.values, seq=link.seq, answered_at=link.answered_at
        )
        record.declaration  # noqa: B018 (read now: DamagedRecord here, not where it is shown)
    except (ValueError, TypeError, KeyError) as exc:  # JSONDecodeError is a ValueError
        decision_id = row[_DECISION_ID]
        raise DamagedRecord(
            f"decision {decision_id} (seq {link.seq}): its stored record cannot be read "
            f"({type(exc).__name__}): edited outside the service, NOT INTACT; `parcelrisk "
            "audit verify` names where the chain breaks"
        ) from None
    return record, link


def _row_link(row: Sequence[Any]) -> ChainRow:
    """A stored row's chain link alone: what ``verify`` walks. Built from the stored values as
    they are, so a row edited into something no longer readable (a feature vector of no known
    format, JSON that does not parse) still reaches the MAC check, which names it."""
    values = list(row[:_N_STORED])
    try:
        values[_FEATURES] = unpack_features(bytes(values[_FEATURES]))
    except ValueError:
        values[_FEATURES] = bytes(values[_FEATURES])  # its MAC cannot match: named altered
    seq, answered_at, prev_mac, mac = row[_N_STORED + 1 :]
    # declared_at is a copy of the declaration's, outside the MAC: held to it here
    try:
        copied = _declared_at(str(values[_DECLARATION_JSON]))
    except ValueError:  # the declaration no longer parses: the MAC check names the row
        copied = row[_N_STORED]
    differs = "declared_at" if row[_N_STORED] != copied else ""
    return ChainRow(
        seq, str(values[_DECISION_ID]), answered_at, bytes(prev_mac), bytes(mac), values, differs
    )


# --- the archive (``serving.audit.archive``): old days as Parquet files of these columns ---
ARCHIVE_MANIFEST = "manifest.json"  # the archive's list of day files and its cut


def read_archive_manifest(archive: Path) -> dict[str, Any]:
    """The archive's manifest (no files yet: an empty one)."""
    import json

    path = Path(archive) / ARCHIVE_MANIFEST
    if not path.is_file():
        return {"files": []}
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ParcelriskError(f"{path}: unreadable archive manifest: {exc}") from exc


class ArchiveUnavailable(ParcelriskError):
    """The archive a store moved its old days to cannot be read (deleted, moved, not
    mounted, a day file gone): what it holds is unknown, never "no decision" (probe 30:
    `audit list` answered "no decisions in that period" for 10,687 archived ones)."""


def archive_manifest_reaching(cut: dict[str, Any]) -> dict[str, Any]:
    """The manifest of the archive a store's last cut (``chain_start``) moved its days to,
    checked to reach that cut: an ``ArchiveUnavailable`` naming the folder otherwise."""
    folder = Path(cut["archive"])
    try:
        manifest = read_archive_manifest(folder)
        reached = int(manifest.get("cut_seq", 0))
    except (ParcelriskError, TypeError, ValueError) as exc:
        raise ArchiveUnavailable(
            f"the archived decisions up to seq {cut['cut_seq']} ({folder}) cannot be read "
            f"({exc}): run `parcelrisk audit verify`"
        ) from None
    if reached < int(cut["cut_seq"]):
        found = "no archive manifest" if not manifest.get("files") else f"one to seq {reached}"
        raise ArchiveUnavailable(
            f"the decisions up to seq {cut['cut_seq']} were archived to {folder}, where "
            f"{found} is found: the archive was moved, deleted or is not mounted; put it back "
            "(or restore it) to review them"
        )
    return manifest


def archived_rows(
    path: Path, decision_id: str | None = None, filters: list[tuple[str, str, Any]] | None = None
) -> Iterator[ChainRow]:
    """The chain links of one archived day file, in seq order (only ``decision_id``'s and
    the one before it, when given: what ``get`` needs to check its link; only the rows
    matching ``filters``, pyarrow's (column, op, value) triples, when given).

    A lookup reads the id column alone first: a miss (any scorer's /explain of an unknown
    id) costs one column of each day, not every day whole."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    try:
        if decision_id is not None:
            ids = pq.read_table(path, columns=["decision_id"]).column("decision_id")
            at = pc.index(ids, decision_id).as_py()
            if at < 0:
                return
            table = pq.read_table(path).slice(max(0, at - 1), 2 if at else 1)
        else:
            table = pq.read_table(path, filters=filters or None)
    except (OSError, ValueError) as exc:  # pyarrow's errors are both (a damaged file: probe 30)
        raise ArchiveUnavailable(
            f"archived day {path} cannot be read ({exc}): run `parcelrisk audit verify`"
        ) from None
    yield from _table_links(table)


def _table_links(table: Any) -> Iterator[ChainRow]:
    """The chain links of an archived table's rows (features unpacked)."""
    # a day archived before ``ADDED_FIELDS`` has no such columns: empty, as the store gives them
    held = set(table.column_names)
    columns = [
        table.column(name).to_pylist()
        if name in held or name not in ADDED_FIELDS
        else [""] * table.num_rows
        for name in _COLUMNS
    ]
    for r in zip(*columns, strict=True):
        values = list(r[:_N_STORED])
        values[_FEATURES] = unpack_features(bytes(values[_FEATURES]))
        seq, answered_at, prev_mac, mac = r[_N_STORED + 1 :]
        yield ChainRow(seq, values[0], answered_at, bytes(prev_mac), bytes(mac), values)


class LegacyStore(ParcelriskError):
    """A decision store written before the chain: it must be migrated first."""


def _now_iso() -> str:
    return iso_utc(time.time_ns() // 1000)


class SqliteDecisionStore:
    """Thread-safe handle on the SQLite decision store.

    Checkpoints (copying the write-ahead log into the database file, with an fsync) run in a
    background thread on its own connection, in one worker process per file (the first to
    open it), at most ``checkpoint_interval_s`` apart. Left to SQLite they run inside
    whichever commit crosses 1,000 log pages: a ~6 ms stall every ~50 batches of 8
    decisions, which was most of the /score p99 in process. sqlite3 releases the GIL while it
    works, so the scoring thread is not held up. ``close`` truncates the log.

    A PASSIVE checkpoint never holds a writer up, but under steady writes from several
    processes it never finds the log both fully copied and unread, so SQLite never starts the
    log over and the file grows without end (1.5 GB in 40 s at 3,850 declarations/s). So once
    the log holds a quarter of ``wal_max_mb``, the thread copies what it can passively, then takes
    the writers' turn for a RESTART checkpoint (the few pages left, then the readers' current
    statements): the next commit writes from the start of the file again, and
    ``journal_size_limit`` cuts the file back to the limit if it had grown past it. The
    thread looks again within the time the log, at the rate it grew, takes to fill an eighth
    of the limit (a quarter, not half: a checkpoint of 32 MB took longer than the writers
    took to add 32 more at twice the issue's rate); an idle log is truncated to nothing. Should the disk be too slow for the
    thread to keep up, the writer that finds the log over the limit checkpoints it before
    its batch (back-pressure: the batch waits for the disk), so the log never holds more
    than the limit plus one batch. Only a reader that keeps one snapshot open longer than
    the log takes to fill can hold it past that: the pages it reads cannot be overwritten.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        checkpoint_interval_s: float = 1.0,
        wal_max_mb: float = 64.0,
        key: bytes | None = None,
        read_only: bool = False,
    ) -> None:
        """``read_only``: for review (``audit verify/list/show/export``, ``history export``):
        no schema, lock files, checkpoints or log truncation; the file is never written, so
        an auditor can read a copy on write-once media (``connect_read_only``)."""
        # the audit key (``features.keys``): without it nothing is recorded or verified
        self._key = key if key is not None else load_key("audit")
        self.path = Path(path)
        self.read_only = read_only
        self._lock = threading.Lock()
        self._read_lock = threading.Lock()
        self._stop = threading.Event()
        if read_only:
            self._conn = self._reader = connect_read_only(self.path)
            self._refuse_legacy()
            self._refuse_newer()
            self._read_added_fields()
            self._lock_file = None
            self._checkpointer: threading.Thread | None = None
            return
        if self.path.parent and not self.path.parent.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._wal_max_bytes = max(1, int(wal_max_mb * _MB))
        try:
            self._conn = self._connect(check_same_thread=False)
            self._conn.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL: a committed batch survives a process crash; an OS crash may lose
            # the last few transactions, never corrupt the file.
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute("PRAGMA wal_autocheckpoint=0")  # the thread below does it
            self._refuse_legacy()
            self._refuse_newer()
            self._conn.executescript(_SCHEMA)
            self._add_fields()
        except sqlite3.Error as exc:
            # not a SQLite file, a damaged one, a read-only one that needs its tables or log
            # made: one line naming the file, for every command and the service alike
            name = getattr(exc, "sqlite_errorname", "")
            raise StoreUnavailable(
                f"decision store {self.path} cannot be opened: {exc}"
                + (f" ({name})" if name else "")
                + _read_only_place(self.path)
            ) from None
        self._reader = self._connect(check_same_thread=False)
        self._identity = file_identity(self.path)  # every write checks it still names the file
        self._lock_file = self._open_lock_file()
        # the checkpointer's connection is opened here, on the file just checked: opened by its
        # thread, a file removed in between was made again, empty, at the path (sqlite3
        # creates what it connects to), and the store read "replaced by another file"
        checkpoint_conn = self._checkpoint_connection()
        self._checkpointer = threading.Thread(
            target=self._checkpoint_loop,
            args=(checkpoint_interval_s, checkpoint_conn),
            name=f"audit-checkpoint-{self.path.name}",
            daemon=True,
        )
        self._checkpointer.start()

    @property
    def key(self) -> bytes:
        """The audit key the chain is MAC'd with."""
        return self._key

    @property
    def location(self) -> str:
        """Where the store is, for messages (a PostgreSQL store: its URL without password)."""
        return str(self.path)

    @property
    def source(self) -> str:
        """The location to open it again with (a PostgreSQL store's may hold a password:
        never shown; ``location`` is)."""
        return str(self.path)

    def _connect(self, **options: bool) -> sqlite3.Connection:
        conn = sqlite3.connect(str(self.path), isolation_level=None, timeout=30.0, **options)
        conn.text_factory = stored_text
        # whichever connection starts the log over cuts the file back to the limit
        conn.execute(f"PRAGMA journal_size_limit={self._wal_max_bytes}")
        return conn

    def _checkpoint_connection(self) -> sqlite3.Connection:
        """The checkpointer thread's own connection (made before the thread starts)."""
        return self._connect(check_same_thread=False)

    def limit_write_wait(self, seconds: float) -> None:
        """How long a write waits for the file's lock while another process holds it, before
        its batch is refused (``StoreUnavailable``, passing: nothing stored). The service sets
        a quarter of its request timeout: a store held by an operator's sqlite3 session or a
        backup then answers 503 with Retry-After, where the 30 s default gave a 504 after the
        whole request timeout and recorded the decision behind the caller's back (probe 21)."""
        with self._lock:
            self._conn.execute(f"PRAGMA busy_timeout={max(1, round(seconds * 1000))}")

    def _open_lock_file(self, suffix: str = ".lock") -> IO[bytes] | None:
        # flock belongs to the open file: each holder (writer, checkpointer) opens its own
        return open(f"{self.path}{suffix}", "a+b") if fcntl is not None else None

    @staticmethod
    def _lead(lock_file: IO[bytes] | None) -> bool:
        """Whether this process checkpoints the file: the first to ask does, until it closes
        the store or exits (the kernel drops its lock), then the next one to ask."""
        if lock_file is None:
            return True
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held already: a no-op
        except BlockingIOError:
            return False
        return True

    def _checkpoint_loop(self, interval_s: float, conn: sqlite3.Connection) -> None:
        turn = self._open_lock_file()
        # one checkpointer per file: two would find each other's checkpoint running (busy)
        # and skip rounds, and the log would grow past the limit meanwhile
        leader = self._open_lock_file(".checkpointer")
        frame_bytes = int(conn.execute("PRAGMA page_size").fetchone()[0]) + 24
        # the first look comes soon: the wait adapts to the write rate seen since
        last_frames, last_look, wait_s = 0, time.perf_counter(), min(interval_s, 0.1)
        warned_at, failed = -math.inf, 0  # the last warning of a failing run, failures since
        try:
            while not self._stop.wait(wait_s):
                if not self._lead(leader):
                    wait_s = interval_s
                    continue
                try:
                    # PASSIVE: copy what no reader still needs, never block the writer
                    _, frames, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    if frames < 0:  # another connection was checkpointing: look again later
                        continue
                    # fewer frames than last time: the log was started over meanwhile
                    grown = frames - last_frames if frames >= last_frames else frames
                    now = time.perf_counter()
                    rate = grown * frame_bytes / max(now - last_look, 1e-6)  # bytes/s
                    last_look, last_frames = now, frames
                    if grown == 0 and 0 < frames == copied:  # idle: give the disk back
                        last_frames = self._start_log_over(conn, turn, "TRUNCATE")
                    elif grown > 0 and frames * frame_bytes >= self._wal_max_bytes // 4:
                        self._catch_up(conn)
                        self._start_log_over(conn, turn, "RESTART")
                    eighth_s = self._wal_max_bytes / 8 / rate if rate > 0 else interval_s
                    wait_s = min(interval_s, max(_FASTEST_ROUND_S, eighth_s))
                    if failed or warned_at > -math.inf:
                        logger.info("audit store checkpoints work again")
                    warned_at, failed = -math.inf, 0
                except sqlite3.Error as exc:  # busy or I/O trouble: try again next round
                    failed += 1
                    if time.monotonic() - warned_at >= _CHECKPOINT_WARN_EVERY_S:
                        since = (
                            f" ({failed} failed rounds since the last warning)"
                            if failed > 1
                            else ""
                        )
                        logger.warning("audit store checkpoint failed: %s%s", exc, since)
                        warned_at, failed = time.monotonic(), 0
        finally:
            conn.close()
            for lock_file in (turn, leader):
                if lock_file is not None:
                    lock_file.close()

    @staticmethod
    def _catch_up(conn: sqlite3.Connection) -> None:
        """More PASSIVE passes, each copying what was committed during the one before, so
        that little is left to copy while the writers wait for the RESTART."""
        _, _, before = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        for _ in range(_CATCH_UP_PASSES):
            _, _, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            if copied - before <= _CATCH_UP_FRAMES:
                return
            before = copied

    def _start_log_over(self, conn: sqlite3.Connection, turn: IO[bytes] | None, mode: str) -> int:
        """A RESTART or TRUNCATE checkpoint in the writers' turn; the frames left in the log
        (those of a RESTART go at the next commit, which writes from the file's start).

        The turn queues this process's and the other workers' writers behind it in the
        kernel; without it SQLite's busy handler would poll for the write lock and could
        starve behind back-to-back commits. Its wait for readers is short: a reader still on
        an old snapshot costs this round (the log grows on), not the scoring.
        """
        with self._writer_turn(turn):
            return max(0, self._restart_log(conn, mode))

    @staticmethod
    def _restart_log(conn: sqlite3.Connection, mode: str = "RESTART") -> int:
        """A RESTART or TRUNCATE checkpoint (the caller holds the writers' turn); the frames
        left in the log, -1 when another checkpoint was running."""
        (waits_ms,) = conn.execute("PRAGMA busy_timeout").fetchone()
        conn.execute(f"PRAGMA busy_timeout={_RESTART_WAIT_MS}")
        try:
            busy, frames, _ = conn.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
        finally:
            conn.execute(f"PRAGMA busy_timeout={int(waits_ms)}")  # the connection's own again
        if busy and frames < 0:  # another connection's checkpoint was running
            return -1
        if busy:
            logger.warning(
                "audit store: log not started over (%d frames): a reader holds an old snapshot",
                frames,
            )
        return int(frames)

    def _refuse_legacy(self) -> None:
        columns = {row[1] for row in self._conn.execute("PRAGMA table_info(decisions)")}
        if columns and "mac" not in columns:
            self._conn.close()
            raise LegacyStore(
                f"decision store {self.path} was written before the tamper-evident chain "
                "(no seq/mac columns): run `parcelrisk audit migrate --db "
                f"{self.path}` once, with the audit key, to chain its decisions"
            )

    def _refuse_newer(self) -> None:
        columns = {row[1] for row in self._conn.execute("PRAGMA main.table_info(decisions)")}
        try:
            refuse_newer_release(str(self.path), "decisions", columns, set(_COLUMNS))
        except StoreFromNewerRelease:
            self._conn.close()
            raise

    def _missing_fields(self) -> list[str]:
        columns = {row[1] for row in self._conn.execute("PRAGMA table_info(decisions)")}
        return [name for name in ADDED_FIELDS if columns and name not in columns]

    def _add_fields(self) -> None:
        """Give a decisions table from before ``ADDED_FIELDS`` their columns, empty in every
        row: the MACs of those rows leave empty added fields out, so they stay valid as they
        are. Once, in a write transaction: workers opening the store together add them once."""
        if not self._missing_fields():
            return
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            for name in self._missing_fields():  # another writer may have added them meanwhile
                self._conn.execute(
                    f"ALTER TABLE decisions ADD COLUMN {name} TEXT NOT NULL DEFAULT ''"
                )
            self._conn.execute("COMMIT")
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise

    def _read_added_fields(self) -> None:
        """A read-only handle on a store from before ``ADDED_FIELDS`` (a copy on write-once
        media is never altered): the decisions are read through a temporary view that gives
        them empty, as a writer's ``_add_fields`` would. SQLite looks a name up in the temp
        schema first, so every query reads the view; nothing is written to the file."""
        missing = self._missing_fields()
        if missing:
            empty = ", ".join(f"'' AS {name}" for name in missing)
            self._conn.execute(
                f"CREATE TEMP VIEW decisions AS SELECT *, {empty} FROM main.decisions"
            )

    def record(
        self,
        decisions: Sequence[DecisionRecord],
        *,
        answered_at: Sequence[str] | None = None,
        first_wins: bool = False,
    ) -> dict[tuple[str, str], DecisionRecord]:
        """Append a batch to the chain in one transaction (all or nothing).

        The seqs, the answer time and the MACs are made inside the write transaction, in the
        writers' turn, after reading the chain's last link: every worker extends one chain.
        Raises ``StoreUnavailable`` when the store cannot take it now (disk full, I/O error,
        locked past the timeout): the transaction is rolled back, the store stays usable.
        ``answered_at``: one time per decision instead of now (``parcelrisk audit migrate``
        chaining decisions answered before the chain existed).
        ``first_wins``: a decision whose declaration this model version has decided already
        (``decided``: another worker stored it since this one looked) is not stored; that
        first decision is returned instead, keyed as ``decided`` keys them. A decision whose
        declaration id was decided with other content is stored saying it is amended, and
        returned so (the same decision id: ``first_or_amended``).
        """
        if not decisions:
            return {}
        values = [d.stored_values() for d in decisions]
        packed = pack_feature_rows([v[_FEATURES] for v in values])
        declared = [_declared_at(d.declaration_json) for d in decisions]
        key = self._key
        taken: dict[tuple[str, str], DecisionRecord] = {}

        def decided_now(ids: list[str], name: str) -> list[Any]:
            query = _DECIDED.format(ids=",".join("?" * len(ids)))
            return self._conn.execute(query, (name, *ids)).fetchall()

        def append() -> None:
            taken.clear()  # a retried transaction looks again
            stored: list[DecisionRecord | None] = list(decisions)
            if first_wins:
                stored, answers = first_or_amended(decisions, decided_now)
                taken.update(answers)
            seq, prev = self._last_link()
            now = _now_iso()
            rows = []
            for i, record in enumerate(stored):
                if record is None:
                    continue
                v = values[i] if record is decisions[i] else record.stored_values()
                seq += 1
                at = now if answered_at is None else answered_at[i]
                mac = decision_mac(key, seq, at, prev, v)
                rows.append((*v[:_FEATURES], packed[i], *v[_FEATURES + 1 :], declared[i], seq, at, prev, mac))  # fmt: skip
                prev = mac
            self._conn.executemany(_INSERT, rows)

        self._write(append)
        return taken

    def _last_link(self) -> tuple[int, bytes]:
        """(seq, mac) the next decision follows: the last one, the archive cut, or genesis."""
        row = self._conn.execute(_LAST_LINK).fetchone()
        if row is not None:
            return int(row[0]), bytes(row[1])
        cut = self._conn.execute(_LAST_CUT).fetchone()
        return (int(cut[0]), bytes(cut[1])) if cut is not None else (0, GENESIS)

    def _hold_back_log(self) -> None:
        """The log is over the limit: the checkpointer is behind (the disk is slower than the
        writers). Checkpoint it before this batch, in its turn: the batch waits for the disk.

        A checkpoint already running (the checkpointer's PASSIVE) makes SQLite answer busy at
        once, without waiting: try again until it is done, for up to ``_HOLD_BACK_S``.
        """
        deadline = time.monotonic() + _HOLD_BACK_S
        while self._restart_log(self._conn) < 0:
            if time.monotonic() > deadline:
                logger.warning("audit store: log over its limit, checkpoint busy: writing on")
                return
            time.sleep(0.001)

    def _wal_bytes(self) -> int:
        try:
            return os.stat(f"{self.path}-wal").st_size
        except FileNotFoundError:
            return 0

    @contextlib.contextmanager
    def _writer_turn(self, lock_file: IO[bytes] | None) -> Iterator[None]:
        """Queue the service's worker processes for the write lock in the kernel.

        When two processes want SQLite's write lock at once, the loser sleeps in SQLite's busy
        handler (1, 2, 5, 10... ms) however short the winner's commit; an exclusive flock
        wakes it the moment the lock is free. Where flock is missing SQLite's timeout remains.
        """
        if lock_file is None:
            yield
            return
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)

    def cut_chain(
        self, cut_seq: int, cut_mac: bytes, archived_at: str, archive: str, mac: bytes
    ) -> None:
        """``parcelrisk audit archive``'s last step, in the writers' turn: record where the hot
        chain now starts (the cut, MAC'd by the caller) and drop the decisions up to it."""

        def cut() -> None:
            self._conn.execute(
                "INSERT INTO chain_cuts (cut_seq, cut_mac, archived_at, archive, mac) "
                "VALUES (?, ?, ?, ?, ?)",
                (cut_seq, cut_mac, archived_at, archive, mac),
            )
            # the undelivered marks stay: few (a decision whose answer was lost), and deleted
            # with their decisions an archived one read "answered" (probe, 2026-12)
            self._conn.execute("DELETE FROM decisions WHERE seq <= ?", (cut_seq,))

        self._write(cut)

    def expire_results(self, runs: Sequence[tuple[int, int]]) -> int:
        """``parcelrisk audit expire``: delete the results of these seq ranges, in the writers'
        turn (after its signed record names them)."""
        deleted = 0

        def expire() -> None:
            nonlocal deleted
            if not self._conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'outcomes'"
            ).fetchone():
                return
            for first, last in runs:
                deleted += self._conn.execute(
                    "DELETE FROM outcomes WHERE seq BETWEEN ? AND ?", (int(first), int(last))
                ).rowcount

        if runs:
            self._write(expire)
        return deleted

    def mark_undelivered(self, decision_ids: Sequence[str], reason: str) -> None:
        """These recorded decisions were never answered (``reason``): a retry returns them."""
        if not decision_ids:
            return
        at = _now_iso()
        rows = [(decision_id, reason, at) for decision_id in dict.fromkeys(decision_ids)]
        self._write(lambda: self._conn.executemany(_MARK_UNDELIVERED, rows))

    def mark_redelivered(self, decision_ids: Sequence[str]) -> int:
        """Of these decisions, those marked undelivered were just answered (a retry): note
        when. Returns how many were waiting. A read first: most retries find none."""
        ids = list(dict.fromkeys(decision_ids))
        if not ids:
            return 0
        with self._read_lock:
            waiting = [
                row[0]
                for row in self._reader.execute(
                    _WAITING.format(ids=",".join("?" * len(ids))), ids
                ).fetchall()
            ]
        if waiting:
            at = _now_iso()
            update = "UPDATE undelivered SET redelivered_at = ? WHERE decision_id = ?"
            self._write(
                lambda: self._conn.executemany(
                    update, [(at, decision_id) for decision_id in waiting]
                )
            )
        return len(waiting)

    def delivery(self, decision_id: str) -> dict[str, str | None] | None:
        """``{reason, marked_at, redelivered_at}`` of a decision whose answer was not sent;
        None for one that was answered."""
        with self._read_lock:
            row = self._reader.execute(_DELIVERY, (decision_id,)).fetchone()
        if row is None:
            return None
        return {"reason": row[0], "marked_at": row[1], "redelivered_at": row[2]}

    def revoke_session(self, session_id: str, expires_at: int) -> None:
        """Keep an auditor session signed out until ``expires_at`` (unix seconds); expired
        sign-outs are dropped in the same transaction."""
        now = int(time.time())

        def revoke() -> None:
            self._conn.execute(_PRUNE_REVOKED, (now,))
            self._conn.execute(_REVOKE, (session_id, int(expires_at)))

        self._write(revoke)

    def session_revoked(self, session_id: str) -> bool:
        """Whether the auditor session was signed out; ``StoreUnavailable`` when the file
        cannot be read now (the caller refuses the page: it cannot tell)."""
        try:
            with self._read_lock:
                row = self._reader.execute(_REVOKED, (session_id,)).fetchone()
        except sqlite3.Error as exc:
            if not _is_unavailable(exc):
                raise
            raise StoreUnavailable(
                f"decision store {self.path.name} cannot be read now: {exc} "
                f"({exc.sqlite_errorname})"
            ) from exc
        return row is not None

    def _write(self, statements: Callable[[], object]) -> None:
        """``statements`` in one write transaction, in the writers' turn (all or nothing); the
        log checkpointed first if it is over its limit (``_hold_back_log``)."""
        if self.read_only:  # a review command's handle: a bug to get here, said plainly
            raise ParcelriskError(f"decision store {self.path} is open read-only: nothing written")
        with (
            self._lock,
            self._writer_turn(self._lock_file),
            unavailable_as_error(self._conn, self.path),
        ):
            check_same_file(self.path, self._identity)
            if self._wal_bytes() > self._wal_max_bytes:
                self._hold_back_log()
            self._conn.execute("BEGIN IMMEDIATE")
            statements()
            self._conn.execute("COMMIT")  # may fail too: the log is written here

    def get(self, decision_id: str) -> tuple[DecisionRecord, bool] | None:
        """The stored decision and whether its link in the chain holds: its MAC matches its
        content, the one before it is the one it names, and the one after names it. (The whole
        chain: ``parcelrisk audit verify``.) None if absent."""
        with self._read_lock:
            row = self._reader.execute(_SELECT, (decision_id,)).fetchone()
            if row is not None:
                seq = row[_N_STORED + 1]
                before = self._reader.execute(
                    "SELECT mac FROM decisions WHERE seq = ?", (seq - 1,)
                ).fetchone()
                after = self._reader.execute(
                    "SELECT prev_mac FROM decisions WHERE seq = ?", (seq + 1,)
                ).fetchone()
                cut = self._reader.execute(_LAST_CUT).fetchone() if before is None else None
        if row is None:  # not in the hot store: archived, or never recorded
            return get_archived(self, decision_id)
        record, link = _row_record(row)
        intact = link_intact(
            self._key,
            link,
            None if before is None else before[0],
            cut,
            None if after is None else after[0],
        )
        return record, intact

    def find(
        self,
        *,
        answered_from: str | None = None,
        answered_to: str | None = None,
        lane: str | None = None,
        model_version: str | None = None,
        declaration_id: str | None = None,
        after_seq: int = 0,
        limit: int = 100,
    ) -> list[DecisionRecord]:
        """Decisions in seq order after ``after_seq``, answered in [from, to) (ISO UTC text),
        of a lane, model version and declaration when given; at most ``limit``."""
        where, args = ["seq > ?"], [int(after_seq)]
        for clause, value in (
            ("answered_at >= ?", answered_from),
            ("answered_at < ?", answered_to),
            ("lane = ?", lane),
            ("model_version = ?", model_version),
            ("declaration_id = ?", declaration_id),
        ):
            if value is not None:
                where.append(clause)
                args.append(value)
        query = f"{_READ} WHERE {' AND '.join(where)} ORDER BY seq LIMIT ?"
        with self._read_lock:
            rows = self._reader.execute(query, (*args, int(limit))).fetchall()
        return [_row_record(row)[0] for row in rows]

    def chain_start(self) -> tuple[int, bytes, dict[str, Any] | None]:
        """(seq, mac) the hot store's chain follows, and the archive cut it starts at (None:
        never archived). A cut whose MAC fails raises: it was not made with the key."""
        with self._read_lock:
            cut = self._reader.execute(_LAST_CUT).fetchone()
        seq, mac, recorded = checked_cut(self._key, cut, self.location)
        if recorded is None:
            return seq, mac, None
        # The cut names the archive where it was made (an absolute path). A copy of the store
        # with its archive beside it (an auditor's machine, write-once media) is the copy's
        # to verify: its own archive is read, not the original's (probe 12: a copy whose
        # archive was edited verified intact, reading the original; a faithful copy away from
        # the original was "missing" its archived decisions). Every row read is still
        # checked against the chain, so reading another directory can prove nothing false.
        beside = self.path.with_name(f"{self.path.name}.archive")
        if (beside / ARCHIVE_MANIFEST).is_file() and not _same_dir(beside, recorded["archive"]):
            recorded = {**recorded, "archive": str(beside), "recorded_archive": recorded["archive"]}
        return seq, mac, recorded

    def chain_rows(self, after_seq: int = 0, page: int = 5_000) -> Iterator[ChainRow]:
        """Every stored decision's chain link after ``after_seq``, in seq order, in pages
        (bounded memory however long the chain)."""
        last = after_seq
        while True:
            with self._read_lock:
                rows = self._reader.execute(
                    f"{_READ} WHERE seq > ? ORDER BY seq LIMIT ?", (last, page)
                ).fetchall()
            if not rows:
                return
            for row in rows:
                yield _row_link(row)
            last = rows[-1][_N_STORED + 1]

    def head(self) -> tuple[int, bytes] | None:
        """The chain's last (seq, mac); None when nothing was ever recorded."""
        with self._read_lock:
            row = self._reader.execute(_LAST_LINK).fetchone()
            cut = self._reader.execute(_LAST_CUT).fetchone() if row is None else None
        if row is not None:
            return int(row[0]), bytes(row[1])
        return (int(cut[0]), bytes(cut[1])) if cut is not None else None

    def count(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM decisions").fetchone()[0])

    def check_in_place(self) -> None:
        check_same_file(self.path, self._identity)

    def decided(
        self, declaration_ids: Sequence[str], model_name: str
    ) -> dict[tuple[str, str], DecisionRecord]:
        ids = list(dict.fromkeys(declaration_ids))
        if not ids:
            return {}
        query = _DECIDED.format(ids=",".join("?" * len(ids)))
        # the reader connection, as ``since``: runs before every batch, must not queue behind
        # a commit waiting for another worker's write lock
        with self._read_lock:
            rows = self._reader.execute(query, (model_name, *ids)).fetchall()
        return decided_records(rows)

    def since(
        self, seq: int, declared_from_us: int | None = None, limit: int | None = None
    ) -> list[tuple[int, str]]:
        """(seq, declaration_json) after ``seq``, in seq order (declared at or after
        ``declared_from_us``, at most ``limit`` rows, when given).

        Seqs are given inside the write transaction, one writer at a time, so they grow in
        commit order across worker processes.
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
            row = self._reader.execute("SELECT MAX(seq) FROM decisions").fetchone()
        return int(row[0] or 0)

    def close(self) -> None:
        if self._checkpointer is None:  # read-only: nothing to flush
            with self._lock, self._read_lock:
                self._conn.close()
            return
        self._stop.set()
        self._checkpointer.join(timeout=10)
        with self._lock:
            try:
                # in the writers' turn: another worker still writing waits a moment for it
                with self._writer_turn(self._lock_file):
                    self._restart_log(self._conn, "TRUNCATE")
            except sqlite3.Error as exc:  # busy or I/O trouble: the next one truncates it
                logger.info("audit store: final checkpoint skipped: %s", exc)
            self._conn.close()
            with self._read_lock:
                self._reader.close()
            if self._lock_file is not None:
                self._lock_file.close()


def link_intact(
    key: bytes,
    link: ChainRow,
    before_mac: bytes | None,
    cut: Sequence[Any] | None,
    after_prev_mac: bytes | None,
) -> bool:
    """Whether one stored decision's link holds: its MAC matches its content, it follows the
    decision before it (``before_mac``; else the archive ``cut`` at seq - 1, else genesis at
    seq 1) and the decision after it, if any, names it (``after_prev_mac``)."""
    expected_prev = (
        bytes(before_mac)
        if before_mac is not None
        else bytes(cut[1])
        if cut is not None and cut[0] == link.seq - 1
        else GENESIS
        if link.seq == 1
        else None
    )
    return (
        not link.copy_differs
        and link.valid(key)
        and expected_prev is not None
        and hmac.compare_digest(expected_prev, link.prev_mac)
        and (after_prev_mac is None or hmac.compare_digest(bytes(after_prev_mac), link.mac))
    )


def _same_dir(a: Path, b: str) -> bool:
    try:
        return a.resolve() == Path(b).resolve()
    except OSError:
        return False


def checked_cut(
    key: bytes, cut: Sequence[Any] | None, where: str
) -> tuple[int, bytes, dict[str, Any] | None]:
    """``chain_start`` from the last ``chain_cuts`` row (or none): raises when the cut's MAC
    fails, as a cut not made with the key (``where``: the store, for the message)."""
    if cut is None:
        return 0, GENESIS, None
    cut_seq, cut_mac, archived_at, archive, mac = cut
    if not hmac.compare_digest(
        bytes(mac), cut_mac_of(key, cut_seq, bytes(cut_mac), archived_at, archive)
    ):
        raise ParcelriskError(
            f"{where}: the archive cut at seq {cut_seq} does not carry a valid MAC: it was "
            "not made by `parcelrisk audit archive` with this audit key"
        )
    return (
        int(cut_seq),
        bytes(cut_mac),
        {"cut_seq": cut_seq, "archived_at": archived_at, "archive": archive},
    )


def cut_mac_of(key: bytes, cut_seq: int, cut_mac: bytes, archived_at: str, archive: str) -> bytes:
    """The MAC of an archive cut: only the key's holder can say where the hot chain starts."""
    return record_mac(key, cut_seq, archived_at, cut_mac, ("chain-cut", archive))


def get_archived(store: Any, decision_id: str) -> tuple[DecisionRecord, bool] | None:
    """A decision ``store`` moved to its archive (``parcelrisk audit archive``): the day
    files are read until it is found (an auditor's lookup, not a scoring path). Its link holds
    when its MAC matches and it follows the record before it (the whole archive: ``verify``)."""
    _, _, cut = store.chain_start()
    if cut is None:
        return None
    folder = Path(cut["archive"])
    missing = []
    for entry in reversed(archive_manifest_reaching(cut)["files"]):
        path = folder / entry["file"]
        if not path.is_file():  # expired under retention, or lost: said if not found elsewhere
            missing.append(entry)
            continue
        links = list(archived_rows(path, decision_id))
        if not links:
            continue
        link = links[-1]
        before = links[0].mac if len(links) == 2 else (GENESIS if link.seq == 1 else None)
        intact = link.valid(store.key) and (
            before is None or hmac.compare_digest(before, link.prev_mac)
        )
        record = DecisionRecord.from_stored_values(
            link.values, seq=link.seq, answered_at=link.answered_at
        )
        record.declaration  # noqa: B018 (DamagedRecord now, as for a hot record)
        return record, intact
    if missing:
        from serving.audit.expiry import expired_through, read_expiries

        through = expired_through(read_expiries(folder))
        lost = [e for e in missing if int(e["last_seq"]) > through]
        if lost:
            days = ", ".join(str(e.get("day", e["file"])) for e in lost[:5])
            raise ArchiveUnavailable(
                f"{len(lost)} archived day file(s) of {folder} are missing ({days}"
                f"{', ...' if len(lost) > 5 else ''}): the decision may be among them; run "
                "`parcelrisk audit verify`"
            )
    return None
