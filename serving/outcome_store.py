"""Inspection results in the decision store's SQLite file: the ``outcomes`` table.

The results live beside the decisions they answer (same file, WAL), on this module's own
connection, so the decision store's code and its write path are untouched. ``seq`` numbers the
results in the order they were stored, for a reader that pulls what is new since its last look
(the live entity state). Each batch is checked and written inside one ``BEGIN IMMEDIATE``
transaction (``serving.outcomes.store_outcomes``): the check sees exactly what it writes over.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from features.errors import ParcelriskError
from serving.audit.archived import FirstDecision, with_archived
from serving.audit.chain import (
    GENESIS,
    ChainRow,
    chain_results,
    result_link,
    result_mac,
)
from serving.decision import iso_utc, parse_iso_us, refuse_newer_release
from serving.outcomes import (
    HISTORY_COLUMNS,
    ResultEvent,
    ScoredRow,
    StoredResult,
    current_results,
    history_entry,
    result_events,
    result_rows,
)
from serving.sqlite_store import (
    check_same_file,
    connect_read_only,
    file_identity,
    stored_text,
    unavailable_as_error,
)

logger = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outcomes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    declaration_id TEXT NOT NULL,  -- one row per result stored: a correction is a new row
    inspected_at TEXT NOT NULL,
    illicit INTEGER NOT NULL,
    offence_type TEXT,
    revenue_recovered REAL,
    recorded_at TEXT NOT NULL,
    source TEXT NOT NULL,
    prev_mac BLOB,  -- the results' own chain (serving.audit.chain.chain_results)
    mac BLOB,
    selection_reason TEXT,  -- why it was inspected, as given (null: not given)
    correction TEXT  -- why it replaces the result stored before it (null: a first result)
);
"""
# a declaration's results in the order stored: the current one is the last
_INDEX = "CREATE INDEX IF NOT EXISTS outcomes_declaration_seq ON outcomes (declaration_id, seq)"
# a store from before the results were chained gets the two columns at its first writer's open
_CHAIN_COLUMNS = ("prev_mac", "mac")
# one from before results kept their selection reason gets the column at its first writer's
# open; until then its readers (read-only) see it null, as every result stored then has it
_REASON = "selection_reason"
_CORRECTION = "correction"
_LAST_RESULT = "SELECT seq, mac FROM outcomes ORDER BY seq DESC LIMIT 1"
_RESULT_LINKS = (
    "SELECT seq, recorded_at, prev_mac, mac, declaration_id, inspected_at, illicit, "
    "offence_type, revenue_recovered, source, selection_reason, correction FROM outcomes "
    "WHERE seq > ? ORDER BY seq LIMIT ?"
)
# New results with the declaration as first scored (decisions_declaration indexes the lookup),
# and, for a correction, the result it replaces (``ResultEvent.replaces``). A correction is
# read whatever its time: the live state decides whether the result it replaces was counted.
_RESULTS_SINCE = """
SELECT o.seq, d.declaration_json, o.inspected_at, o.illicit, o.revenue_recovered,
       p.seq, p.inspected_at, p.illicit, p.revenue_recovered, o.declaration_id
FROM outcomes AS o LEFT JOIN decisions AS d ON d.rowid = (
    SELECT rowid FROM decisions WHERE declaration_id = o.declaration_id
    ORDER BY scored_at, rowid LIMIT 1
)
LEFT JOIN outcomes AS p ON p.seq = (
    SELECT MAX(seq) FROM outcomes WHERE declaration_id = o.declaration_id AND seq < o.seq
)
WHERE o.seq > ? AND (o.inspected_at >= ? OR p.seq IS NOT NULL) ORDER BY o.seq
"""
_INSERT = (
    "INSERT INTO outcomes (declaration_id, inspected_at, illicit, offence_type, "
    "revenue_recovered, source, selection_reason, correction, seq, recorded_at, prev_mac, mac) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
# The first decision of each declaration: scored first, then stored first.
_FIRST_DECISIONS = """
SELECT declaration_id, declaration_json, exploration, lane, scored_at FROM (
    SELECT declaration_id, declaration_json, exploration, lane, scored_at,
           ROW_NUMBER() OVER (PARTITION BY declaration_id ORDER BY scored_at, rowid) AS n
    FROM decisions
) WHERE n = 1 AND json_extract(declaration_json, '$.declared_at') >= ?
"""


def sqlite_path(location: str | Path) -> Path:
    """The file of a decision store location (a path or ``sqlite:///PATH``, as ``open_store``)."""
    text = str(location)
    scheme, sep, rest = text.partition("://")
    if not sep:
        return Path(text)
    if scheme.lower() != "sqlite":
        raise ParcelriskError(
            f"decision store {scheme}://...: this reads a SQLite decision store only; use a "
            "file path or sqlite:///PATH"
        )
    return Path(rest[1:] if rest.startswith("/") else rest)


class SqliteOutcomeStore:
    """Thread-safe handle on the ``outcomes`` table of a decision store file."""

    def __init__(
        self, location: str | Path, *, read_only: bool = False, key: bytes | None = None
    ) -> None:
        """``read_only``: the results as a review reads them (``history export``, ``audit
        recompute``), the file never written (``serving.sqlite_store.connect_read_only``).
        ``key``: the audit key results are chained with (default: the configured one; a
        read-only handle needs none)."""
        self.path = sqlite_path(location)
        self._lock = threading.Lock()
        self._key = key
        if read_only:
            self._conn = connect_read_only(self.path)
            # a store that never took a result has no table: an empty one, in memory only (a
            # temporary table would hide the file's own of the same name: only when it has none)
            tables = self._conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            if "outcomes" not in {name for (name,) in tables}:
                self._conn.executescript(_SCHEMA.replace("CREATE TABLE", "CREATE TEMP TABLE"))
            self._refuse_newer()
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(
            str(self.path), check_same_thread=False, isolation_level=None, timeout=30.0
        )
        self._conn.text_factory = stored_text
        self._identity = file_identity(self.path)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")  # as the decisions: see sqlite_store
        self._refuse_newer()
        self._conn.executescript(_SCHEMA)
        if self._key is None:
            from features.keys import load_key

            self._key = load_key("audit")
        self._add_reason_column()
        self._chain_unchained()
        self._allow_corrections()

    def limit_write_wait(self, seconds: float) -> None:
        """As the decisions' ``limit_write_wait``: a results batch waits this long for a lock
        another process holds, then is refused with nothing stored."""
        with self._lock:
            self._conn.execute(f"PRAGMA busy_timeout={max(1, round(seconds * 1000))}")

    def _refuse_newer(self) -> None:
        """Results with fields this release does not know (a newer one wrote them, and their
        MACs cover them): refused by name, as the decisions are."""
        try:
            refuse_newer_release(
                str(self.path), "results", _outcome_columns(self._conn), _known_columns()
            )
        except ParcelriskError:
            self._conn.close()
            raise

    def _add_reason_column(self) -> None:
        """Give a results table from before results kept their selection reason its column
        (null in every row there: their MACs, which leave a null reason out, stay valid)."""
        if _REASON in _outcome_columns(self._conn):
            return
        with self._lock, unavailable_as_error(self._conn, self.path):
            self._conn.execute("BEGIN IMMEDIATE")
            if _REASON not in _outcome_columns(self._conn):  # else another writer added it
                self._conn.execute(f"ALTER TABLE outcomes ADD COLUMN {_REASON} TEXT")
            self._conn.execute("COMMIT")

    def _allow_corrections(self) -> None:
        """Give a results table from before corrections (one row per declaration, UNIQUE) the
        form that takes them: rebuilt without the constraint, with the ``correction`` column
        (null in every row: their MACs leave a trailing null out) and the index the current
        result is found by. Rows are copied as they are, seq and MACs included, so the chain
        verifies as before; SQLite drops no constraint in place, hence the copy, once."""
        if not self._needs_rebuild():
            self._conn.execute(_INDEX)
            return
        with self._lock, unavailable_as_error(self._conn, self.path):
            self._conn.execute("BEGIN IMMEDIATE")
            if self._needs_rebuild():  # else another writer rebuilt it meanwhile
                columns = [row[1] for row in self._conn.execute("PRAGMA table_info(outcomes)")]
                names = ", ".join(columns)
                rebuilt = _SCHEMA.replace("outcomes (", "outcomes_rebuilt (", 1)
                self._conn.execute(rebuilt.replace("IF NOT EXISTS ", "").strip().rstrip(";"))
                self._conn.execute(
                    f"INSERT INTO outcomes_rebuilt ({names}) SELECT {names} FROM outcomes"
                )
                self._conn.execute("DROP TABLE outcomes")
                self._conn.execute("ALTER TABLE outcomes_rebuilt RENAME TO outcomes")
                logger.info("decision store %s: results table now takes corrections", self.path)
            self._conn.execute(_INDEX)
            self._conn.execute("COMMIT")

    def _needs_rebuild(self) -> bool:
        (sql,) = self._conn.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'outcomes'"
        ).fetchone()
        return "UNIQUE" in sql.upper() or _CORRECTION not in _outcome_columns(self._conn)

    def _chain_unchained(self) -> None:
        """Chain the results of a store from before results were chained, in the transaction
        that adds the chain's columns: their MACs vouch for them from now on, not for what
        they were before.

        Only then. A store that has the columns was chained from its first result, so a result
        without a MAC there had it removed: chaining it again would launder whatever was
        edited beside it (probe, 2026-12). It stays a break for ``audit verify`` to name."""
        if self.has_chain():
            return
        with self._lock, unavailable_as_error(self._conn, self.path):
            self._conn.execute("BEGIN IMMEDIATE")
            columns = _outcome_columns(self._conn)
            if "mac" in columns:  # another writer chained them meanwhile
                self._conn.execute("COMMIT")
                return
            for column in _CHAIN_COLUMNS:
                if column not in columns:
                    self._conn.execute(f"ALTER TABLE outcomes ADD COLUMN {column} BLOB")
            rows = self._conn.execute(
                "SELECT seq, recorded_at, declaration_id, inspected_at, illicit, offence_type, "
                "revenue_recovered, source, selection_reason FROM outcomes ORDER BY seq"
            ).fetchall()
            assert self._key is not None
            prev = GENESIS
            updates = []
            for seq, recorded_at, *values in rows:
                mac = result_mac(self._key, seq, recorded_at, prev, values)
                updates.append((prev, mac, seq))
                prev = mac
            self._conn.executemany(
                "UPDATE outcomes SET prev_mac = ?, mac = ? WHERE seq = ?", updates
            )
            self._conn.execute("COMMIT")
        logger.warning(
            "decision store %s: %d inspection results stored before results were chained are "
            "chained now; `audit verify` vouches for them from now on",
            self.path,
            len(updates),
        )

    def has_chain(self) -> bool:
        """Whether the results table has the chain's columns (False: a store from before
        results were chained, not yet opened by a writer)."""
        with self._lock:
            return "mac" in _outcome_columns(self._conn)

    def chain_rows(self, after_seq: int = 0, page: int = 5_000) -> Iterator[ChainRow]:
        """Every stored result's link after ``after_seq``, in seq order, paged (a result
        stored before results were chained, read without a writer's open: empty MACs)."""
        with self._lock:
            columns = _outcome_columns(self._conn)
        query = _RESULT_LINKS
        if "mac" not in columns:
            query = query.replace("prev_mac, mac", "NULL, NULL")
        if _REASON not in columns:
            query = query.replace(f"source, {_REASON}", "source, NULL")
        if _CORRECTION not in columns:
            query = query.replace(f", {_CORRECTION} FROM", ", NULL FROM")
        while True:
            with self._lock:
                rows = self._conn.execute(query, (after_seq, page)).fetchall()
            for seq, recorded_at, prev_mac, mac, *values in rows:
                yield result_link(seq, recorded_at, prev_mac, mac, values)
            if len(rows) < page:
                return
            after_seq = rows[-1][0]

    @contextlib.contextmanager
    def write(self) -> Iterator[_Write]:
        """One write transaction: committed if the block ends normally, else rolled back.

        ``StoreUnavailable`` when the file cannot take it now (disk full, I/O error, locked),
        as for the decisions: nothing of it is stored.
        """
        with self._lock, unavailable_as_error(self._conn, self.path):
            check_same_file(self.path, self._identity)  # as the decisions' writes
            self._conn.execute("BEGIN IMMEDIATE")
            assert self._key is not None, "a read-only results store takes no results"
            yield _Write(self._conn, self._key)
            self._conn.execute("COMMIT")  # may fail too: the log is written here

    def count(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM outcomes").fetchone()[0])

    def scored_history(
        self, since_us: int | None = None, archived: Sequence[FirstDecision] = ()
    ) -> list[ScoredRow]:
        """The first decision of every declaration (declared at or after ``since_us``), with
        its result where one is stored, in one consistent read; ``archived``: the archive's
        first decisions (``serving.audit.archived``), which come first."""
        return self.scored_history_at(since_us, archived)[0]

    def scored_history_at(
        self, since_us: int | None = None, archived: Sequence[FirstDecision] = ()
    ) -> tuple[list[ScoredRow], int]:
        """``scored_history``, and the seq of the last result stored when it was read (in the
        same read): every result up to it is in the history, none after it."""
        with self._lock:
            if not _has_decisions(self._conn):
                return [], 0
            self._conn.execute("BEGIN")  # one snapshot for the three queries
            try:
                # stored times are all "%Y-%m-%dT%H:%M:%S.%fZ": text order is time order
                since = iso_utc(since_us) if since_us is not None else ""
                decisions = self._conn.execute(_FIRST_DECISIONS, (since,)).fetchall()
                results = _results(self._conn, None)
                last = self._conn.execute("SELECT MAX(seq) FROM outcomes").fetchone()[0]
            finally:
                self._conn.execute("COMMIT")
        return [
            ScoredRow(
                declaration_json, bool(exploration), lane, results.get(declaration_id), scored_at
            )
            for declaration_id, declaration_json, exploration, lane, scored_at in with_archived(
                archived, decisions
            )
        ], int(last or 0)

    def results_since(
        self, seq: int, inspected_from_us: int | None = None, decisions: Any = None
    ) -> list[ResultEvent]:
        """The results stored after ``seq``, in order (``ResultEvent``: the declaration as
        first scored, the result, and for a correction the result it replaces). For the live
        state. With ``inspected_from_us``: only results inspected at or after it, and every
        correction. ``decisions``: the decision store whose archive holds the declarations
        no longer hot (``result_events``)."""
        # stored times are all "%Y-%m-%dT%H:%M:%S.%fZ": text order is time order
        since = iso_utc(inspected_from_us) if inspected_from_us is not None else ""
        with self._lock:
            if not _has_decisions(self._conn):
                return []
            rows = self._conn.execute(_RESULTS_SINCE, (seq, since)).fetchall()
        return result_events(rows, decisions)

    def result_history(self, declaration_id: str) -> list[dict[str, Any]]:
        """Every result stored for one declaration, first to current (an auditor's read: who
        stored each, when, and why a correction replaced the one before)."""
        with self._lock:
            columns = _outcome_columns(self._conn)
            if not columns:
                return []
            names = [c if c in columns else f"NULL AS {c}" for c in HISTORY_COLUMNS]
            cursor = self._conn.execute(
                f"SELECT {', '.join(names)} FROM outcomes WHERE declaration_id = ? ORDER BY seq",
                (declaration_id,),
            )
            rows = cursor.fetchall()
        return [history_entry(dict(zip(HISTORY_COLUMNS, row, strict=True))) for row in rows]

    def last_seq(self) -> int:
        """The seq of the last result stored (0 when none)."""
        with self._lock:
            row = self._conn.execute("SELECT MAX(seq) FROM outcomes").fetchone()
        return int(row[0] or 0)

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class _Write:
    """The reads and the insert of one write transaction (``serving.outcomes.OutcomeWrite``)."""

    def __init__(self, conn: sqlite3.Connection, key: bytes) -> None:
        self._conn = conn
        self._key = key

    def _load_ids(self, ids: Sequence[str]) -> None:
        # a temporary table rather than IN (?, ?, ...): a file may hold more ids than SQLite
        # takes parameters in one statement
        self._conn.execute("CREATE TEMP TABLE IF NOT EXISTS wanted (id TEXT PRIMARY KEY)")
        self._conn.execute("DELETE FROM wanted")
        self._conn.executemany("INSERT OR IGNORE INTO wanted VALUES (?)", ((i,) for i in ids))

    def declared_at(self, ids: Sequence[str]) -> dict[str, int]:
        if not ids or not _has_decisions(self._conn):
            return {}
        self._load_ids(ids)
        rows = self._conn.execute(
            "SELECT d.declaration_id, MIN(json_extract(d.declaration_json, '$.declared_at')) "
            "FROM decisions d JOIN wanted w ON d.declaration_id = w.id "
            "GROUP BY d.declaration_id"
        ).fetchall()
        return {declaration_id: parse_iso_us(at) for declaration_id, at in rows if at}

    def stored(self, ids: Sequence[str]) -> dict[str, StoredResult]:
        if not ids:
            return {}
        self._load_ids(ids)
        return _results(self._conn, "wanted")

    def insert(self, results: Sequence[StoredResult], ids: Sequence[str], source: str) -> None:
        recorded_at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        values = result_rows(ids, results, source)
        # in the write transaction: the last result read here is the one these follow
        last = self._conn.execute(_LAST_RESULT).fetchone()
        links = chain_results(self._key, last, recorded_at, values)
        self._conn.executemany(
            _INSERT,
            [
                (*v, seq, recorded_at, prev, mac)
                for v, (seq, prev, mac) in zip(values, links, strict=True)
            ],
        )


def _has_decisions(conn: sqlite3.Connection) -> bool:
    """Whether the decisions table exists yet (a store no one has scored into has none)."""
    found = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'decisions'"
    ).fetchone()
    return found is not None


def _known_columns() -> set[str]:
    """The results table's columns as this release makes it."""
    with contextlib.closing(sqlite3.connect(":memory:")) as conn:
        conn.executescript(_SCHEMA)
        return _outcome_columns(conn)


def _outcome_columns(conn: sqlite3.Connection) -> set[str]:
    return {row[1] for row in conn.execute("PRAGMA table_info(outcomes)")}


def _results(conn: sqlite3.Connection, wanted: str | None) -> dict[str, StoredResult]:
    """Each declaration's current result: the last stored (a correction replaces the one
    before it; read in seq order, the later row wins)."""
    # asked on every read: a long-lived reader may see a writer add the columns meanwhile
    columns = _outcome_columns(conn)
    reason = _REASON if _REASON in columns else "NULL"
    correction = _CORRECTION if _CORRECTION in columns else "NULL"
    query = (
        "SELECT declaration_id, inspected_at, illicit, offence_type, revenue_recovered, "
        f"{reason}, {correction}, recorded_at FROM outcomes"
    )
    if wanted is not None:
        query += f" WHERE declaration_id IN (SELECT id FROM {wanted})"
    query += " ORDER BY seq"
    return current_results(conn.execute(query))
