"""The decision store on PostgreSQL (``serving.store.DecisionStore``): a team's shared store.

Chosen by its URL, ``postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE`` (or
``postgresql+psycopg://...``; a unix socket directory as ``?host=/run/postgresql``). Every
service replica, on any machine, writes the same decisions, the same tamper-evident chain
(``serving.audit.chain``) and the same inspection results; the replicas' live entity states
read the same event log (``since``, ``results_since``).

Written with SQLAlchemy Core, the statements are the SQLite store's (``serving.sqlite_store``);
what differs is how writers take turns. The chain needs one writer at a time, so every write
transaction first takes a transaction-level advisory lock (``pg_advisory_xact_lock``): the
next writer, in any process on any machine, waits in the server until the commit releases it.
Seqs are therefore given in commit order and a reader that has seen seq ``s`` has seen every
decision before it, as the live state requires.

A write PostgreSQL cannot take now (server down or restarting, connection lost, disk full,
too many connections) raises ``StoreUnavailable`` with nothing of its batch stored: the service
answers 503 and the client sends it again. One case is not "nothing stored": the connection
breaking after COMMIT was sent, when the batch may be in; the message says so, and the
client's retry is answered from the store (a declaration is decided once). The scoring
path's connections are not pinged before use (``hot_call``): a broken one is dropped and the
work runs once more on a new one, so a restarted server costs the requests in flight, not the
replica.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from features.errors import ParcelriskError
from features.keys import load_key
from serving.audit.archived import FirstDecision, with_archived
from serving.audit.chain import (
    GENESIS,
    RESULT_FIELDS,
    ChainRow,
    chain_results,
    decision_mac,
    result_link,
    result_mac,
)
from serving.decision import (
    ADDED_FIELDS,
    STORED_FIELDS,
    DecisionRecord,
    iso_utc,
    pack_feature_rows,
    refuse_newer_release,
)
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
    StoreUnavailable,
    _declared_at,
    _now_iso,
    _row_link,
    _row_record,
    checked_cut,
    decided_records,
    first_or_amended,
    get_archived,
    link_intact,
)

logger = logging.getLogger(__name__)

# pg_advisory_xact_lock keys: one for the chain's writers, one for creating the schema (two
# replicas starting together would otherwise race in CREATE TABLE IF NOT EXISTS)
_CHAIN_LOCK = 0x70617263656C01  # "parcel" + 1
_SCHEMA_LOCK = 0x70617263656C00
_PAGE = 5_000

# The types of the stored fields (``serving.decision.STORED_FIELDS``); text otherwise.
_TYPES: dict[str, Any] = {
    "features": sa.LargeBinary,
    "raw_score": sa.Double,
    "risk": sa.Double,
    "expected_revenue": sa.Double,
    "exploration": sa.Integer,
    "known_seq": sa.BigInteger,
    "known_results_seq": sa.BigInteger,
}

metadata = sa.MetaData()
decisions = sa.Table(
    "decisions",
    metadata,
    # the chain's order: commit order across every writer (given under the chain lock)
    sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
    *(sa.Column(name, _TYPES.get(name, sa.Text), nullable=False) for name in STORED_FIELDS),
    sa.Column("declared_at", sa.Text),  # copied from the declaration: replay filters, no JSON
    sa.Column("answered_at", sa.Text, nullable=False),  # committed and released (UTC)
    sa.Column("prev_mac", sa.LargeBinary, nullable=False),
    sa.Column("mac", sa.LargeBinary, nullable=False),
    sa.UniqueConstraint("decision_id", name="decisions_decision_id"),
    sa.Index("decisions_declaration", "declaration_id"),
    sa.Index("decisions_answered", "answered_at"),
    # periods by declared_at (monitor, lanes refit): a week read without scanning the year
    sa.Index("decisions_declared", "declared_at"),
)
undelivered = sa.Table(
    "undelivered",
    metadata,
    sa.Column("decision_id", sa.Text, sa.ForeignKey("decisions.decision_id"), primary_key=True),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("marked_at", sa.Text, nullable=False),
    sa.Column("redelivered_at", sa.Text),
)
chain_cuts = sa.Table(
    "chain_cuts",
    metadata,
    sa.Column("cut_seq", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("cut_mac", sa.LargeBinary, nullable=False),
    sa.Column("archived_at", sa.Text, nullable=False),
    sa.Column("archive", sa.Text, nullable=False),
    sa.Column("mac", sa.LargeBinary, nullable=False),
)
outcomes = sa.Table(
    "outcomes",
    metadata,
    sa.Column("seq", sa.BigInteger, sa.Identity(), primary_key=True),
    # one row per result stored: a correction is a new row (the current result: the last)
    sa.Column("declaration_id", sa.Text, nullable=False),
    sa.Column("inspected_at", sa.Text, nullable=False),
    sa.Column("illicit", sa.Integer, nullable=False),
    sa.Column("offence_type", sa.Text),
    sa.Column("revenue_recovered", sa.Double),
    sa.Column("recorded_at", sa.Text, nullable=False),
    sa.Column("source", sa.Text, nullable=False),
    # the results' own chain (serving.audit.chain.chain_results); added to an older table
    sa.Column("prev_mac", sa.LargeBinary),
    sa.Column("mac", sa.LargeBinary),
    # why it was inspected, as given (null: not given); added to an older table
    sa.Column("selection_reason", sa.Text),
    # why it replaces the result stored before it (null: a first result); added to an older
    # table, whose UNIQUE (declaration_id) is dropped then
    sa.Column("correction", sa.Text),
    sa.Index("outcomes_declaration_seq", "declaration_id", "seq"),
)
# auditor sessions signed out before their cookie expires (``serving.auditor.session``): as
# the SQLite store's table, the token's digest until the token's own expiry, dropped after it
revoked_sessions = sa.Table(
    "revoked_sessions",
    metadata,
    sa.Column("session_id", sa.Text, primary_key=True),
    sa.Column("expires_at", sa.BigInteger, nullable=False),  # unix seconds
)

_RESULT_VALUES = [outcomes.c[name] for name in RESULT_FIELDS]  # the MAC's order


def _result_values(columns: set[str]) -> list[sa.ColumnElement[Any]]:
    """``_RESULT_VALUES`` as a table with these ``columns`` holds them: a table from before
    results kept their selection reason or took corrections, read without a writer's open,
    has them null."""
    return [
        c
        if c.name in columns or c.name not in ("selection_reason", "correction")
        else sa.null().label(c.name)
        for c in _RESULT_VALUES
    ]


# a stored row in the SQLite store's column order: ``_row_record`` reads both
_ROW = [decisions.c[name] for name in (*STORED_FIELDS, "declared_at", "seq", "answered_at")] + [
    decisions.c.prev_mac,
    decisions.c.mac,
]
_N_STORED = len(STORED_FIELDS)
# --- the scoring path's statements, plain SQL (``_Engines``) ---
_INSERT_COLUMNS = (*STORED_FIELDS, "declared_at", "seq", "answered_at", "prev_mac", "mac")
_INSERT_SQL = (
    f"INSERT INTO decisions ({', '.join(_INSERT_COLUMNS)}) "
    f"VALUES ({', '.join(['%s'] * len(_INSERT_COLUMNS))})"
)
# No parameters: sent as one simple query, so the three statements cost one round trip; the
# last SELECT takes its snapshot after the lock is held, so it sees the last writer's commit.
_TURN = (
    f"BEGIN; SELECT pg_advisory_xact_lock({_CHAIN_LOCK}); "
    "SELECT seq, mac FROM decisions ORDER BY seq DESC LIMIT 1"
)
_LAST_CUT_SQL = "SELECT cut_seq, cut_mac FROM chain_cuts ORDER BY cut_seq DESC LIMIT 1"
_DECIDED_SQL = (
    "SELECT "
    + ", ".join("''::bytea" if f == "features" else f for f in STORED_FIELDS)
    + ", seq, answered_at FROM decisions WHERE model_name = %s "
    "AND declaration_id = ANY(%s) ORDER BY seq"
)
# stored times are "%Y-%m-%dT%H:%M:%S.%fZ": in byte order ("C") text order is time order
_SINCE_SQL = (
    "SELECT seq, declaration_json FROM decisions WHERE seq > %s "
    'AND (%s::text IS NULL OR declared_at COLLATE "C" >= %s::text) ORDER BY seq LIMIT %s'
)
# and for a correction the result it replaces, read whatever its time (as the SQLite store's)
_RESULTS_SINCE_SQL = """
SELECT o.seq, (
    SELECT d.declaration_json FROM decisions AS d WHERE d.declaration_id = o.declaration_id
    ORDER BY d.scored_at, d.seq LIMIT 1
), o.inspected_at, o.illicit, o.revenue_recovered,
   p.seq, p.inspected_at, p.illicit, p.revenue_recovered, o.declaration_id
FROM outcomes AS o
LEFT JOIN LATERAL (
    SELECT seq, inspected_at, illicit, revenue_recovered FROM outcomes
    WHERE declaration_id = o.declaration_id AND seq < o.seq ORDER BY seq DESC LIMIT 1
) AS p ON TRUE
WHERE o.seq > %s
  AND (%s::text IS NULL OR o.inspected_at COLLATE "C" >= %s::text OR p.seq IS NOT NULL)
ORDER BY o.seq
"""


def _last_result(cur: psycopg.Cursor[Any]) -> Any:
    """The row of the last statement of a multi-statement query (None if it had none)."""
    row = None
    while True:
        if cur.description is not None:
            row = cur.fetchone()
        if not cur.nextset():
            return row


def _fetch(engine: sa.Engine, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
    """One read on the scoring path: one round trip."""
    return hot_call(engine, lambda pg: pg.execute(sql, params).fetchall())


def _among(column: sa.ColumnElement[Any], ids: Sequence[str]) -> sa.ColumnElement[bool]:
    """``column = ANY(:ids)``: one array parameter however many ids (a results file may hold
    more than the 65,535 parameters a statement takes)."""
    from sqlalchemy.dialects.postgresql import ARRAY

    return column == sa.any_(sa.bindparam(None, list(ids), type_=ARRAY(sa.Text)))


def engine_url(location: str) -> sa.URL:
    """``postgresql://...`` (any driver named or none) as SQLAlchemy's URL on psycopg 3."""
    try:
        url = sa.make_url(location)
    except sa_exc.ArgumentError as exc:
        raise ParcelriskError(f"decision store {location!r}: not a database URL: {exc}") from None
    if url.get_backend_name() != "postgresql":
        raise ParcelriskError(f"decision store {url.render_as_string()}: not a PostgreSQL URL")
    if not url.database:
        raise ParcelriskError(
            f"decision store {url.render_as_string()}: name the database "
            "(postgresql://USER@HOST:PORT/DATABASE)"
        )
    return url.set(drivername="postgresql+psycopg")


def make_engine(location: str, *, hot: bool = False) -> sa.Engine:
    """A pool of connections. ``hot``: the scoring path's, in autocommit and without a ping
    before each use: a round trip on this machine's loopback costs ~0.4 ms, and a batch's
    reads and write took 14 of them through SQLAlchemy (``_Engines``)."""
    url = engine_url(location)
    options: dict[str, Any] = (
        {"isolation_level": "AUTOCOMMIT"}
        # a server restarted since the last request: reconnect, not fail
        if hot
        else {"pool_pre_ping": True}
    )
    return sa.create_engine(
        url,
        pool_size=4,
        max_overflow=4,
        pool_timeout=10,
        connect_args={"connect_timeout": 10, "application_name": "parcelrisk"},
        **options,
    )


@dataclass
class _Engines:
    """The two pools of one store location, shared by its decisions and results handles.

    ``core``: SQLAlchemy Core for everything but the scoring path (the auditor's reads,
    delivery marks, results writes), pinged before use. ``hot``: the statements every batch
    runs (the log since a seq, decisions already made, the chain's append), as plain SQL on
    psycopg in autocommit: one round trip per read, two per append (``BEGIN``, the lock and
    the last link in one; the rows and ``COMMIT`` pipelined), against 14 per batch through
    the core pool (0.9 ms against 4.3 ms to append a batch of 8 here)."""

    core: sa.Engine
    hot: sa.Engine

    @classmethod
    def open(cls, location: str) -> _Engines:
        return cls(make_engine(location), make_engine(location, hot=True))

    def dispose(self) -> None:
        self.core.dispose()
        self.hot.dispose()


def _shown(engine: sa.Engine) -> str:
    return engine.url.set(drivername="postgresql").render_as_string(hide_password=True)


_WRITING = "cannot take this now"
_READING = "cannot be read now"


@contextlib.contextmanager
def unavailable_as_error(engine: sa.Engine, doing: str = _WRITING) -> Iterator[None]:
    """``StoreUnavailable`` when PostgreSQL cannot serve the statement now (server down, the
    connection lost, disk full, too many clients); any other error (a constraint, a bug) as it
    is. The transaction the block was in is rolled back by the caller's ``begin``."""
    try:
        yield
    except (
        sa_exc.OperationalError,
        sa_exc.InterfaceError,
        sa_exc.TimeoutError,
        psycopg.OperationalError,
        psycopg.InterfaceError,
    ) as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        # "nothing of it was stored" is for a write; a read or an open stored nothing to say
        stored = "; nothing of it was stored" if doing == _WRITING else ""
        raise StoreUnavailable(
            f"decision store {_shown(engine)} {doing}: {reason}{stored}"
        ) from exc


def hot_call(engine: sa.Engine, work: Callable[[psycopg.Connection], Any]) -> Any:
    """``work(connection)`` on a pooled psycopg connection in autocommit.

    No ping before use: a connection found broken (the server restarted since) is dropped and
    ``work`` runs once more on a new one, unless it says what it sent may have committed
    (``_MaybeCommitted``): then the caller gets ``StoreUnavailable`` and its retry is answered
    from the store (a declaration decided once is not decided again). A transaction ``work``
    left open by an error is rolled back before the connection goes back to the pool."""
    for attempt in (0, 1):
        with unavailable_as_error(engine), engine.connect() as conn:
            pg = conn.connection.driver_connection
            try:
                return work(pg)
            except psycopg.Error as exc:
                maybe = isinstance(exc, _MaybeCommitted)
                cause = exc.__cause__ if maybe else exc
                if pg.broken or pg.closed:
                    conn.invalidate()
                    if attempt == 0 and not maybe:
                        continue
                    if maybe:  # not "nothing was stored": that may be untrue
                        reason = (str(cause).strip().splitlines() or ["connection lost"])[0]
                        raise StoreUnavailable(
                            f"decision store {_shown(engine)}: the connection broke after the "
                            f"commit was sent ({reason}), so it may or may not be stored; send "
                            "it again: what was decided is answered from the store, once"
                        ) from cause
                elif pg.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                    pg.execute("ROLLBACK")
                raise cause from None
    raise AssertionError("unreachable")  # pragma: no cover


class _MaybeCommitted(psycopg.OperationalError):
    """The connection broke after ``COMMIT`` was sent: whether it was applied is unknown."""


def create_schema(engine: sa.Engine, key: bytes) -> None:
    """The tables, made once: replicas starting together wait for the first to finish.

    An outcomes table from before results were chained gets the chain's two columns and its
    results are chained (with the audit ``key``) in the same transaction, so a store with the
    columns was chained from its first result: a result without a MAC there had it removed,
    a break ``audit verify`` names, never chained again (that would launder the rows edited
    beside it).

    A table from before results kept their selection reason gets its column (null in every
    row: their MACs leave a null reason out, so they stay valid as they are)."""
    with unavailable_as_error(engine, "cannot be opened"), engine.begin() as conn:
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_SCHEMA_LOCK)))
        columns = _outcome_columns(conn)  # none: a new store
        legacy = bool(columns) and "mac" not in columns
        refuse_newer_release(
            _shown(engine),
            "decisions",
            _outcome_columns(conn, "decisions"),
            {column.name for column in decisions.c},
        )
        refuse_newer_release(_shown(engine), "results", columns, {c.name for c in outcomes.c})
        metadata.create_all(conn)
        # a store made before the index: create_all adds none to an existing table
        conn.exec_driver_sql(
            "CREATE INDEX IF NOT EXISTS decisions_declared ON decisions (declared_at)"
        )
        _add_decision_fields(conn)
        if columns and "selection_reason" not in columns:
            conn.exec_driver_sql(
                "ALTER TABLE outcomes ADD COLUMN IF NOT EXISTS selection_reason text"
            )
        if legacy:
            conn.exec_driver_sql(
                "ALTER TABLE outcomes ADD COLUMN IF NOT EXISTS prev_mac bytea, "
                "ADD COLUMN IF NOT EXISTS mac bytea"
            )
            _chain_legacy_results(conn, key, _shown(engine))
        if columns and "correction" not in columns:
            _allow_corrections(conn)


def _allow_corrections(conn: sa.Connection) -> None:
    """A results table from before corrections: its UNIQUE (declaration_id) dropped, the
    ``correction`` column (null in every row: their MACs leave a trailing null out) and the
    index the current result is found by added. No row is touched."""
    unique = conn.exec_driver_sql(
        "SELECT constraint_name FROM information_schema.table_constraints "
        "WHERE table_schema = current_schema() AND table_name = 'outcomes' "
        "AND constraint_type = 'UNIQUE'"
    ).scalars()
    for name in list(unique):
        conn.exec_driver_sql(f'ALTER TABLE outcomes DROP CONSTRAINT "{name}"')
    conn.exec_driver_sql("ALTER TABLE outcomes ADD COLUMN IF NOT EXISTS correction text")
    conn.exec_driver_sql(
        "CREATE INDEX IF NOT EXISTS outcomes_declaration_seq ON outcomes (declaration_id, seq)"
    )


def _outcome_columns(conn: sa.Connection, table: str = "outcomes") -> set[str]:
    return set(
        conn.execute(
            sa.text(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_schema = current_schema() AND table_name = :table"
            ),
            {"table": table},
        ).scalars()
    )


def _add_decision_fields(conn: sa.Connection) -> None:
    """Give a decisions table from before ``ADDED_FIELDS`` their columns, empty in every row:
    the MACs of those rows leave empty added fields out, so they stay valid as they are."""
    columns = _outcome_columns(conn, "decisions")
    for name in ADDED_FIELDS:
        if name not in columns:
            conn.exec_driver_sql(
                f"ALTER TABLE decisions ADD COLUMN IF NOT EXISTS {name} text NOT NULL DEFAULT ''"
            )


def _has_chain_columns(conn: sa.Connection) -> bool:
    return "mac" in _outcome_columns(conn)


def _chain_legacy_results(conn: sa.Connection, key: bytes, shown: str) -> None:
    """Chain every stored result, in seq order (only for a table that just got the columns)."""
    rows = conn.execute(
        sa.select(outcomes.c.seq, outcomes.c.recorded_at, *_RESULT_VALUES).order_by(outcomes.c.seq)
    ).all()
    prev, updates = GENESIS, []
    for seq, recorded_at, *values in rows:
        mac = result_mac(key, seq, recorded_at, prev, values)
        updates.append({"s": seq, "p": prev, "m": mac})
        prev = mac
    if updates:
        conn.execute(
            outcomes.update()
            .where(outcomes.c.seq == sa.bindparam("s"))
            .values(prev_mac=sa.bindparam("p"), mac=sa.bindparam("m")),
            updates,
        )
    logger.warning(
        "decision store %s: %d inspection results stored before results were chained are "
        "chained now; `audit verify` vouches for them from now on",
        shown,
        len(updates),
    )


class PostgresDecisionStore:
    """Thread-safe handle on a PostgreSQL decision store (a pool of connections)."""

    def __init__(self, location: str, *, key: bytes | None = None):
        # the audit key (``features.keys``): without it nothing is recorded or verified
        self._key = key if key is not None else load_key("audit")
        self.engines = _Engines.open(location)
        self.engine = self.engines.core
        self.location = _shown(self.engine)  # for messages: no password
        self.source = location  # to open it again (may hold a password: never shown)
        create_schema(self.engine, self._key)

    @property
    def key(self) -> bytes:
        return self._key

    @contextlib.contextmanager
    def _writing(self) -> Iterator[sa.Connection]:
        """One write transaction in the chain writers' turn (all or nothing)."""
        with unavailable_as_error(self.engine), self.engine.begin() as conn:
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_CHAIN_LOCK)))
            yield conn

    @contextlib.contextmanager
    def _reading(self) -> Iterator[sa.Connection]:
        with unavailable_as_error(self.engine, _READING), self.engine.connect() as conn:
            yield conn

    # --- writing -----------------------------------------------------------------------------

    def record(
        self,
        decisions_: Sequence[DecisionRecord],
        *,
        answered_at: Sequence[str] | None = None,
        first_wins: bool = False,
    ) -> dict[tuple[str, str], DecisionRecord]:
        """Append a batch to the chain in one transaction, in the writers' turn: the seqs, the
        answer time and the MACs are made after reading the chain's last link under the lock.
        ``first_wins``: as ``SqliteDecisionStore.record`` (declarations another replica has
        decided meanwhile are not stored again; their first decisions are returned)."""
        if not decisions_:
            return {}
        values = [d.stored_values() for d in decisions_]
        features = STORED_FIELDS.index("features")
        packed = pack_feature_rows([v[features] for v in values])
        declared = [_declared_at(d.declaration_json) for d in decisions_]
        key = self._key
        taken: dict[tuple[str, str], DecisionRecord] = {}

        def append(pg: psycopg.Connection) -> None:
            cur = pg.cursor()
            cur.execute(_TURN)  # BEGIN, the writers' lock, the last link: one round trip
            last = _last_result(cur)
            if last is None:  # nothing recorded since the archive cut, or ever
                cur.execute(_LAST_CUT_SQL)
                last = cur.fetchone()
            taken.clear()  # a retried transaction looks again
            stored: list[DecisionRecord | None] = list(decisions_)
            if first_wins:  # one more round trip, under the lock
                stored, answers = first_or_amended(
                    decisions_,
                    lambda ids, name: cur.execute(_DECIDED_SQL, (name, ids)).fetchall(),
                )
                taken.update(answers)
            seq, prev = (int(last[0]), bytes(last[1])) if last is not None else (0, GENESIS)
            now = _now_iso()
            rows = []
            for i, record in enumerate(stored):
                if record is None:
                    continue
                v = values[i] if record is decisions_[i] else record.stored_values()
                seq += 1
                at = now if answered_at is None else answered_at[i]
                mac = decision_mac(key, seq, at, prev, v)
                rows.append((*v[:features], packed[i], *v[features + 1 :], declared[i], seq, at, prev, mac))  # fmt: skip
                prev = mac
            try:
                with pg.pipeline():  # the rows and COMMIT in one round trip
                    cur.executemany(_INSERT_SQL, rows)
                    cur.execute("COMMIT")
            except psycopg.OperationalError as exc:
                if pg.broken or pg.closed:  # COMMIT may have reached the server
                    raise _MaybeCommitted(str(exc)) from exc
                raise

        hot_call(self.engines.hot, append)
        return taken

    @staticmethod
    def _last_link(conn: sa.Connection) -> tuple[int, bytes]:
        """(seq, mac) the next decision follows: the last one, the archive cut, or genesis."""
        row = conn.execute(
            sa.select(decisions.c.seq, decisions.c.mac).order_by(decisions.c.seq.desc()).limit(1)
        ).first()
        if row is not None:
            return int(row[0]), bytes(row[1])
        cut = _last_cut(conn)
        return (int(cut[0]), bytes(cut[1])) if cut is not None else (0, GENESIS)

    def cut_chain(
        self, cut_seq: int, cut_mac: bytes, archived_at: str, archive: str, mac: bytes
    ) -> None:
        """``parcelrisk audit archive``'s last step, in the writers' turn (the chain lock):
        record where the hot chain now starts and drop the decisions up to it."""
        with self._writing() as conn:
            conn.execute(
                chain_cuts.insert().values(
                    cut_seq=cut_seq,
                    cut_mac=cut_mac,
                    archived_at=archived_at,
                    archive=archive,
                    mac=mac,
                )
            )
            # the undelivered marks stay (as SQLite's: an archived decision never delivered
            # read "answered" once its mark went with it)
            conn.execute(decisions.delete().where(decisions.c.seq <= cut_seq))

    def expire_results(self, runs: Sequence[tuple[int, int]]) -> int:
        """``parcelrisk audit expire``: delete the results of these seq ranges, in the chain
        writers' turn (after its signed record names them)."""
        if not runs:
            return 0
        deleted = 0
        with self._writing() as conn:
            for first, last in runs:
                deleted += conn.execute(
                    outcomes.delete().where(outcomes.c.seq.between(int(first), int(last)))
                ).rowcount
        return deleted

    def mark_undelivered(self, decision_ids: Sequence[str], reason: str) -> None:
        if not decision_ids:
            return
        from sqlalchemy.dialects.postgresql import insert

        at = _now_iso()
        rows = [
            {"decision_id": i, "reason": reason, "marked_at": at, "redelivered_at": None}
            for i in dict.fromkeys(decision_ids)
        ]
        statement = insert(undelivered)
        statement = statement.on_conflict_do_update(
            index_elements=[undelivered.c.decision_id],
            set_={
                "reason": statement.excluded.reason,
                "marked_at": statement.excluded.marked_at,
                "redelivered_at": None,
            },
        )
        with self._writing() as conn:
            conn.execute(statement, rows)

    def mark_redelivered(self, decision_ids: Sequence[str]) -> int:
        ids = list(dict.fromkeys(decision_ids))
        if not ids:
            return 0
        with self._reading() as conn:  # a read first: most retries find none waiting
            waiting = conn.execute(
                sa.select(undelivered.c.decision_id).where(
                    undelivered.c.redelivered_at.is_(None), _among(undelivered.c.decision_id, ids)
                )
            ).scalars().all()  # fmt: skip
        if waiting:
            with self._writing() as conn:
                conn.execute(
                    undelivered.update()
                    .where(_among(undelivered.c.decision_id, waiting))
                    .values(redelivered_at=_now_iso())
                )
        return len(waiting)

    def revoke_session(self, session_id: str, expires_at: int) -> None:
        """Keep an auditor session signed out until ``expires_at`` (unix seconds); expired
        sign-outs are dropped in the same transaction. Not in the chain writers' turn: the
        table is no part of the chain."""
        from sqlalchemy.dialects.postgresql import insert

        now = int(time.time())
        with unavailable_as_error(self.engine), self.engine.begin() as conn:
            conn.execute(revoked_sessions.delete().where(revoked_sessions.c.expires_at <= now))
            conn.execute(
                insert(revoked_sessions)
                .values(session_id=session_id, expires_at=int(expires_at))
                .on_conflict_do_nothing(index_elements=[revoked_sessions.c.session_id])
            )

    # --- reading -----------------------------------------------------------------------------

    def session_revoked(self, session_id: str) -> bool:
        """Whether the auditor session was signed out: one primary-key lookup, on the pool of
        the auditor's reads (not the scoring path's)."""
        query = sa.select(revoked_sessions.c.session_id).where(
            revoked_sessions.c.session_id == session_id
        )
        with self._reading() as conn:
            return conn.execute(query).first() is not None

    def delivery(self, decision_id: str) -> dict[str, str | None] | None:
        with self._reading() as conn:
            row = conn.execute(
                sa.select(undelivered.c.reason, undelivered.c.marked_at, undelivered.c.redelivered_at)
                .where(undelivered.c.decision_id == decision_id)
            ).first()  # fmt: skip
        if row is None:
            return None
        return {"reason": row[0], "marked_at": row[1], "redelivered_at": row[2]}

    def get(self, decision_id: str) -> tuple[DecisionRecord, bool] | None:
        """The stored decision and whether its link holds (its MAC, the link before it and the
        one after it); None if absent. Decisions archived out of the store are looked up there."""
        with self._reading() as conn:
            row = conn.execute(
                sa.select(*_ROW).where(decisions.c.decision_id == decision_id)
            ).first()
            if row is not None:
                seq = int(row[_N_STORED + 1])
                before = conn.execute(
                    sa.select(decisions.c.mac).where(decisions.c.seq == seq - 1)
                ).scalar()
                after = conn.execute(
                    sa.select(decisions.c.prev_mac).where(decisions.c.seq == seq + 1)
                ).scalar()
                cut = _last_cut(conn) if before is None else None
        if row is None:
            return get_archived(self, decision_id)
        record, link = _row_record(tuple(row))
        intact = link_intact(self._key, link, before, cut, after)
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
        c = decisions.c
        conditions = [c.seq > int(after_seq)]
        if answered_from is not None:
            conditions.append(c.answered_at >= answered_from)
        if answered_to is not None:
            conditions.append(c.answered_at < answered_to)
        for column, value in (
            (c.lane, lane),
            (c.model_version, model_version),
            (c.declaration_id, declaration_id),
        ):
            if value is not None:
                conditions.append(column == value)
        query = sa.select(*_ROW).where(*conditions)
        with self._reading() as conn:
            rows = conn.execute(query.order_by(decisions.c.seq).limit(int(limit))).all()
        return [_row_record(tuple(row))[0] for row in rows]

    def chain_start(self) -> tuple[int, bytes, dict[str, Any] | None]:
        with self._reading() as conn:
            cut = _last_cut(conn)
        return checked_cut(self._key, cut, self.location)

    def chain_rows(self, after_seq: int = 0, page: int = _PAGE) -> Iterator[ChainRow]:
        last = after_seq
        while True:
            with self._reading() as conn:
                rows = conn.execute(
                    sa.select(*_ROW)
                    .where(decisions.c.seq > last)
                    .order_by(decisions.c.seq)
                    .limit(page)
                ).all()
            if not rows:
                return
            for row in rows:
                yield _row_link(tuple(row))
            last = int(rows[-1][_N_STORED + 1])

    def head(self) -> tuple[int, bytes] | None:
        with self._reading() as conn:
            seq, prev = self._last_link(conn)
        return None if seq == 0 else (seq, prev)

    def count(self) -> int:
        with self._reading() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(decisions)).scalar())

    def check_in_place(self) -> None:
        """A server's database is not a file a command can delete from under the service."""

    def decided(
        self, declaration_ids: Sequence[str], model_name: str
    ) -> dict[tuple[str, str], DecisionRecord]:
        ids = list(dict.fromkeys(declaration_ids))
        if not ids:
            return {}
        # what an answer needs, not the feature vector nor the chain
        return decided_records(_fetch(self.engines.hot, _DECIDED_SQL, (model_name, ids)))

    def since(
        self, seq: int, declared_from_us: int | None = None, limit: int | None = None
    ) -> list[tuple[int, str]]:
        since = iso_utc(int(declared_from_us)) if declared_from_us is not None else None
        rows = _fetch(
            self.engines.hot,
            _SINCE_SQL,
            (int(seq), since, since, None if limit is None else int(limit)),
        )
        return [(int(s), text) for s, text in rows]

    def last_seq(self) -> int:
        return int(
            _fetch(self.engines.hot, "SELECT COALESCE(MAX(seq), 0) FROM decisions", ())[0][0]
        )

    def close(self) -> None:
        self.engines.dispose()


def _last_cut(conn: sa.Connection) -> Sequence[Any] | None:
    return conn.execute(
        sa.select(chain_cuts).order_by(chain_cuts.c.cut_seq.desc()).limit(1)
    ).first()


# --------------------------------------------------------------------------------------------
# Inspection results (``serving.outcomes.OutcomeStore``), beside the decisions they answer
# --------------------------------------------------------------------------------------------

# The first decision of each declaration: scored first, then stored first.
_FIRST = (
    sa.select(
        decisions.c.declaration_id,
        decisions.c.declaration_json,
        decisions.c.exploration,
        decisions.c.lane,
        decisions.c.seq,
        decisions.c.scored_at,
    )
    .distinct(decisions.c.declaration_id)
    .order_by(decisions.c.declaration_id, decisions.c.scored_at, decisions.c.seq)
)


class PostgresOutcomeStore:
    """The ``outcomes`` table of a PostgreSQL decision store."""

    def __init__(
        self,
        location: str,
        *,
        engines: _Engines | None = None,
        key: bytes | None = None,
        read_only: bool = False,
    ) -> None:
        """``read_only``: a review's handle: no schema made, nothing chained (``write`` is
        for the service and ``outcomes ingest``); ``key``: the audit key results are chained
        with (default: the configured one)."""
        self._owns_engines = engines is None  # else the decision store's, which disposes them
        self.engines = engines if engines is not None else _Engines.open(location)
        self.engine = self.engines.core
        self.location = _shown(self.engine)
        self._lock = threading.Lock()
        self._key = key
        if read_only:
            return
        if self._key is None:
            self._key = load_key("audit")  # results are chained too
        create_schema(self.engine, self._key)

    def has_chain(self) -> bool:
        """Whether the results table has the chain's columns (False: a store from before
        results were chained, not yet opened by a writer: ``create_schema`` chains it)."""
        with unavailable_as_error(self.engine, _READING), self.engine.connect() as conn:
            return _has_chain_columns(conn)

    def chain_rows(self, after_seq: int = 0, page: int = 5_000) -> Iterator[ChainRow]:
        """Every stored result's link after ``after_seq``, in seq order, paged (a table from
        before results were chained, read without a writer's open: empty MACs)."""
        with unavailable_as_error(self.engine, _READING), self.engine.connect() as conn:
            columns = _outcome_columns(conn)
        links = [outcomes.c.prev_mac, outcomes.c.mac]
        if "mac" not in columns:
            links = [sa.null().label("prev_mac"), sa.null().label("mac")]
        values = _result_values(columns)
        query = sa.select(outcomes.c.seq, outcomes.c.recorded_at, *links, *values)
        while True:
            with unavailable_as_error(self.engine, _READING), self.engine.connect() as conn:
                rows = conn.execute(
                    query.where(outcomes.c.seq > after_seq).order_by(outcomes.c.seq).limit(page)
                ).all()
            for seq, recorded_at, prev_mac, mac, *values in rows:
                yield result_link(seq, recorded_at, prev_mac, mac, values)
            if len(rows) < page:
                return
            after_seq = rows[-1][0]

    @contextlib.contextmanager
    def write(self) -> Iterator[_Write]:
        """One write transaction, results checked and written in the writers' turn (all or
        nothing); ``StoreUnavailable`` when PostgreSQL cannot take it now."""
        with unavailable_as_error(self.engine), self.engine.begin() as conn:
            # results are numbered and chained in the order they are stored
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_CHAIN_LOCK + 1)))
            assert self._key is not None, "a read-only results store takes no results"
            yield _Write(conn, self._key)

    def count(self) -> int:
        with unavailable_as_error(self.engine, _READING), self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(outcomes)).scalar())

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
        same snapshot: results are written one transaction at a time, in seq order)."""
        first = _FIRST.subquery()
        query = sa.select(
            first.c.declaration_id,
            first.c.declaration_json,
            first.c.exploration,
            first.c.lane,
            first.c.scored_at,
        )
        if since_us is not None:
            declared = sa.cast(first.c.declaration_json, sa.JSON)["declared_at"].as_string()
            query = query.where(declared.collate("C") >= iso_utc(since_us))
        query = query.order_by(first.c.seq)
        with unavailable_as_error(self.engine, _READING), self.engine.connect() as conn:
            conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():  # one snapshot for the three queries
                rows = conn.execute(query).all()
                results = _results(conn, None)
                last = conn.execute(sa.text("SELECT COALESCE(MAX(seq), 0) FROM outcomes")).scalar()
        return [
            ScoredRow(
                declaration_json, bool(exploration), lane, results.get(declaration_id), scored_at
            )
            for declaration_id, declaration_json, exploration, lane, scored_at in with_archived(
                archived, rows
            )
        ], int(last or 0)

    def results_since(
        self, seq: int, inspected_from_us: int | None = None, decisions: Any = None
    ) -> list[ResultEvent]:
        since = iso_utc(int(inspected_from_us)) if inspected_from_us is not None else None
        rows = _fetch(self.engines.hot, _RESULTS_SINCE_SQL, (int(seq), since, since))
        return result_events(rows, decisions)

    def result_history(self, declaration_id: str) -> list[dict[str, Any]]:
        """Every result stored for one declaration, first to current (an auditor's read)."""
        with unavailable_as_error(self.engine, _READING), self.engine.connect() as conn:
            columns = _outcome_columns(conn)
            if not columns:
                return []
            selected = [
                outcomes.c[c] if c in columns else sa.null().label(c) for c in HISTORY_COLUMNS
            ]
            rows = conn.execute(
                sa.select(*selected)
                .where(outcomes.c.declaration_id == declaration_id)
                .order_by(outcomes.c.seq)
            ).all()
        return [history_entry(dict(zip(HISTORY_COLUMNS, row, strict=True))) for row in rows]

    def last_seq(self) -> int:
        return int(_fetch(self.engines.hot, "SELECT COALESCE(MAX(seq), 0) FROM outcomes", ())[0][0])

    def close(self) -> None:
        if self._owns_engines:
            self.engines.dispose()


class _Write:
    """The reads and the insert of one write transaction (``serving.outcomes.OutcomeWrite``)."""

    def __init__(self, conn: sa.Connection, key: bytes) -> None:
        self._conn = conn
        self._key = key

    def declared_at(self, ids: Sequence[str]) -> dict[str, int]:
        from serving.decision import parse_iso_us

        if not ids:
            return {}
        declared = sa.cast(decisions.c.declaration_json, sa.JSON)["declared_at"].as_string()
        rows = self._conn.execute(
            sa.select(decisions.c.declaration_id, sa.func.min(declared.collate("C")))
            .where(_among(decisions.c.declaration_id, ids))
            .group_by(decisions.c.declaration_id)
        ).all()
        return {declaration_id: parse_iso_us(at) for declaration_id, at in rows if at}

    def stored(self, ids: Sequence[str]) -> dict[str, StoredResult]:
        if not ids:
            return {}
        return _results(self._conn, list(ids))

    def insert(self, results: Sequence[StoredResult], ids: Sequence[str], source: str) -> None:
        if not ids:
            return
        recorded_at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        values = result_rows(ids, results, source)
        # in the writers' turn (``write``): the last result read here is the one these follow
        last = self._conn.execute(
            sa.select(outcomes.c.seq, outcomes.c.mac).order_by(outcomes.c.seq.desc()).limit(1)
        ).first()
        links = chain_results(self._key, last, recorded_at, values)
        self._conn.execute(
            outcomes.insert(),
            [
                {
                    **dict(zip(RESULT_FIELDS, v, strict=True)),
                    "seq": seq,  # explicit: the MAC covers it (the identity is by default)
                    "recorded_at": recorded_at,
                    "prev_mac": prev,
                    "mac": mac,
                }
                for v, (seq, prev, mac) in zip(values, links, strict=True)
            ],
        )


def read_results(engine: sa.Engine, ids: Sequence[str]) -> dict[str, StoredResult]:
    """The results stored for these declaration ids (an auditor's read)."""
    with unavailable_as_error(engine, _READING), engine.connect() as conn:
        return _results(conn, list(ids))


def _results(conn: sa.Connection, wanted: list[str] | None) -> dict[str, StoredResult]:
    """Each declaration's current result: the last stored (a correction replaces the one
    before it; read in seq order, the later row wins)."""
    # asked on every read: a reader's handle makes no schema (a table from before the columns)
    *_, reason, correction = _result_values(_outcome_columns(conn))
    query = sa.select(
        outcomes.c.declaration_id,
        outcomes.c.inspected_at,
        outcomes.c.illicit,
        outcomes.c.offence_type,
        outcomes.c.revenue_recovered,
        reason,
        correction,
        outcomes.c.recorded_at,
    )
    if wanted is not None:
        query = query.where(_among(outcomes.c.declaration_id, wanted))
    return current_results(conn.execute(query.order_by(outcomes.c.seq)))
