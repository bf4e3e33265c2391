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
answers 503 and the client sends it again. The connection pool checks a connection before
using it, so a restarted server costs the requests in flight, not the replica.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from features.errors import ParcelriskError
from features.keys import load_key
from serving.audit.chain import GENESIS, ChainRow, record_mac
from serving.decision import STORED_FIELDS, DecisionRecord, iso_utc, pack_feature_rows
from serving.outcomes import ScoredRow, StoredResult
from serving.sqlite_store import (
    StoreUnavailable,
    _declared_at,
    _now_iso,
    _row_record,
    checked_cut,
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
    sa.Column("declaration_id", sa.Text, nullable=False, unique=True),
    sa.Column("inspected_at", sa.Text, nullable=False),
    sa.Column("illicit", sa.Integer, nullable=False),
    sa.Column("offence_type", sa.Text),
    sa.Column("revenue_recovered", sa.Double),
    sa.Column("recorded_at", sa.Text, nullable=False),
    sa.Column("source", sa.Text, nullable=False),
)

# a stored row in the SQLite store's column order: ``_row_record`` reads both
_ROW = [decisions.c[name] for name in (*STORED_FIELDS, "declared_at", "seq", "answered_at")] + [
    decisions.c.prev_mac,
    decisions.c.mac,
]
_N_STORED = len(STORED_FIELDS)
_INSERT_COLUMNS = (*STORED_FIELDS, "declared_at", "seq", "answered_at", "prev_mac", "mac")


@functools.lru_cache(maxsize=64)
def _insert_sql(n_rows: int) -> str:
    """``INSERT INTO decisions (...) VALUES (%s, ...), ...`` for a batch of ``n_rows``."""
    row = "(" + ", ".join(["%s"] * len(_INSERT_COLUMNS)) + ")"
    return f"INSERT INTO decisions ({', '.join(_INSERT_COLUMNS)}) VALUES " + ", ".join(
        [row] * n_rows
    )


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


def make_engine(location: str) -> sa.Engine:
    url = engine_url(location)
    return sa.create_engine(
        url,
        pool_size=4,
        max_overflow=4,
        pool_pre_ping=True,  # a server restarted since the last request: reconnect, not fail
        pool_timeout=10,
        connect_args={"connect_timeout": 10, "application_name": "parcelrisk"},
    )


def _shown(engine: sa.Engine) -> str:
    return engine.url.set(drivername="postgresql").render_as_string(hide_password=True)


@contextlib.contextmanager
def unavailable_as_error(engine: sa.Engine, doing: str = "cannot take this now") -> Iterator[None]:
    """``StoreUnavailable`` when PostgreSQL cannot serve the statement now (server down, the
    connection lost, disk full, too many clients); any other error (a constraint, a bug) as it
    is. The transaction the block was in is rolled back by the caller's ``begin``."""
    try:
        yield
    except (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError) as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise StoreUnavailable(
            f"decision store {_shown(engine)} {doing}: {reason}; nothing of it was stored"
        ) from exc


def create_schema(engine: sa.Engine) -> None:
    """The tables, made once: replicas starting together wait for the first to finish."""
    with unavailable_as_error(engine, "cannot be opened"), engine.begin() as conn:
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_SCHEMA_LOCK)))
        metadata.create_all(conn)


class PostgresDecisionStore:
    """Thread-safe handle on a PostgreSQL decision store (a pool of connections)."""

    def __init__(self, location: str, *, engine: sa.Engine | None = None, key: bytes | None = None):
        # the audit key (``features.keys``): without it nothing is recorded or verified
        self._key = key if key is not None else load_key("audit")
        self.engine = engine if engine is not None else make_engine(location)
        self.location = _shown(self.engine)
        create_schema(self.engine)

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
        with unavailable_as_error(self.engine), self.engine.connect() as conn:
            yield conn

    # --- writing -----------------------------------------------------------------------------

    def record(
        self, decisions_: Sequence[DecisionRecord], *, answered_at: Sequence[str] | None = None
    ) -> None:
        """Append a batch to the chain in one transaction, in the writers' turn: the seqs, the
        answer time and the MACs are made after reading the chain's last link under the lock."""
        if not decisions_:
            return
        values = [d.stored_values() for d in decisions_]
        features = STORED_FIELDS.index("features")
        packed = pack_feature_rows([v[features] for v in values])
        declared = [_declared_at(d.declaration_json) for d in decisions_]
        with self._writing() as conn:
            seq, prev = self._last_link(conn)
            now = _now_iso()
            rows = []
            for i, v in enumerate(values):
                seq += 1
                at = now if answered_at is None else answered_at[i]
                mac = record_mac(self._key, seq, at, prev, v)
                row = dict(zip(STORED_FIELDS, v, strict=True))
                row.update(
                    features=packed[i], declared_at=declared[i], seq=seq, answered_at=at,
                    prev_mac=prev, mac=mac,
                )  # fmt: skip
                rows.append(row)
                prev = mac
            # one INSERT ... VALUES (...), (...) of plain driver SQL: one round trip for the
            # batch and no statement compiled per call (an executemany sends a statement per
            # row; SQLAlchemy's multi-row insert compiles one each time: 4x slower here)
            flat = [row[name] for row in rows for name in _INSERT_COLUMNS]
            conn.exec_driver_sql(_insert_sql(len(rows)), tuple(flat))

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

    # --- reading -----------------------------------------------------------------------------

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
        query = sa.select(*_ROW).where(decisions.c.seq > int(after_seq))
        for column, test, value in (
            (decisions.c.answered_at, "ge", answered_from),
            (decisions.c.answered_at, "lt", answered_to),
            (decisions.c.lane, "eq", lane),
            (decisions.c.model_version, "eq", model_version),
            (decisions.c.declaration_id, "eq", declaration_id),
        ):
            if value is not None:
                query = query.where(getattr(column, f"__{test}__")(value))
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
                yield _row_record(tuple(row))[1]
            last = int(rows[-1][_N_STORED + 1])

    def head(self) -> tuple[int, bytes] | None:
        with self._reading() as conn:
            seq, prev = self._last_link(conn)
        return None if seq == 0 else (seq, prev)

    def count(self) -> int:
        with self._reading() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(decisions)).scalar())

    def decided(
        self, declaration_ids: Sequence[str], model_name: str, model_version: str
    ) -> dict[tuple[str, str], DecisionRecord]:
        ids = list(dict.fromkeys(declaration_ids))
        if not ids:
            return {}
        # what an answer needs, not the feature vector nor the chain
        columns = [
            sa.literal(b"").label("features") if f == "features" else decisions.c[f]
            for f in STORED_FIELDS
        ]
        query = (
            sa.select(*columns, decisions.c.seq, decisions.c.answered_at)
            .where(
                decisions.c.model_name == model_name,
                decisions.c.model_version == model_version,
                _among(decisions.c.declaration_id, ids),
            )
            .order_by(decisions.c.seq)
        )
        with self._reading() as conn:
            rows = conn.execute(query).all()
        found: dict[tuple[str, str], DecisionRecord] = {}
        for row in rows:
            *values, seq, answered_at = row
            record = DecisionRecord.from_stored_values(values, seq=seq, answered_at=answered_at)
            found.setdefault((record.declaration_id, record.declaration_json), record)
        return found

    def since(
        self, seq: int, declared_from_us: int | None = None, limit: int | None = None
    ) -> list[tuple[int, str]]:
        query = sa.select(decisions.c.seq, decisions.c.declaration_json).where(
            decisions.c.seq > int(seq)
        )
        if declared_from_us is not None:
            # stored as "%Y-%m-%dT%H:%M:%S.%fZ": text order is time order (C collation below)
            query = query.where(
                decisions.c.declared_at.collate("C") >= iso_utc(int(declared_from_us))
            )
        query = query.order_by(decisions.c.seq)
        if limit is not None:
            query = query.limit(int(limit))
        with self._reading() as conn:
            return [(int(s), text) for s, text in conn.execute(query)]

    def last_seq(self) -> int:
        with self._reading() as conn:
            return int(conn.execute(sa.select(sa.func.max(decisions.c.seq))).scalar() or 0)

    def close(self) -> None:
        self.engine.dispose()


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
        decisions.c.seq,
    )
    .distinct(decisions.c.declaration_id)
    .order_by(decisions.c.declaration_id, decisions.c.scored_at, decisions.c.seq)
)


class PostgresOutcomeStore:
    """The ``outcomes`` table of a PostgreSQL decision store."""

    def __init__(self, location: str, *, engine: sa.Engine | None = None) -> None:
        self._owns_engine = engine is None  # else the decision store's, which disposes it
        self.engine = engine if engine is not None else make_engine(location)
        self.location = _shown(self.engine)
        create_schema(self.engine)
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def write(self) -> Iterator[_Write]:
        """One write transaction, results checked and written in the writers' turn (all or
        nothing); ``StoreUnavailable`` when PostgreSQL cannot take it now."""
        with unavailable_as_error(self.engine), self.engine.begin() as conn:
            # results are numbered in the order they are stored, for the live state's reader
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_CHAIN_LOCK + 1)))
            yield _Write(conn)

    def count(self) -> int:
        with unavailable_as_error(self.engine), self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(outcomes)).scalar())

    def scored_history(self, since_us: int | None = None) -> list[ScoredRow]:
        """The first decision of every declaration (declared at or after ``since_us``), with
        its result where one is stored, in one consistent read."""
        first = _FIRST.subquery()
        query = sa.select(first.c.declaration_id, first.c.declaration_json, first.c.exploration)
        if since_us is not None:
            declared = sa.cast(first.c.declaration_json, sa.JSON)["declared_at"].as_string()
            query = query.where(declared.collate("C") >= iso_utc(since_us))
        query = query.order_by(first.c.seq)
        with unavailable_as_error(self.engine), self.engine.connect() as conn:
            conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():  # one snapshot for both queries
                rows = conn.execute(query).all()
                results = _results(conn, None)
        return [
            ScoredRow(declaration_json, bool(exploration), results.get(declaration_id))
            for declaration_id, declaration_json, exploration in rows
        ]

    def results_since(
        self, seq: int, inspected_from_us: int | None = None
    ) -> list[tuple[int, str, int, bool, float | None]]:
        first = (
            sa.select(decisions.c.declaration_json)
            .where(decisions.c.declaration_id == outcomes.c.declaration_id)
            .order_by(decisions.c.scored_at, decisions.c.seq)
            .limit(1)
            .scalar_subquery()
        )
        query = (
            sa.select(
                outcomes.c.seq,
                first,
                outcomes.c.inspected_at,
                outcomes.c.illicit,
                outcomes.c.revenue_recovered,
            )
            .where(outcomes.c.seq > int(seq))
            .order_by(outcomes.c.seq)
        )
        if inspected_from_us is not None:
            query = query.where(
                outcomes.c.inspected_at.collate("C") >= iso_utc(int(inspected_from_us))
            )
        from serving.decision import parse_iso_us

        with unavailable_as_error(self.engine), self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [
            (int(s), text, parse_iso_us(at), bool(illicit), revenue)
            for s, text, at, illicit, revenue in rows
            if text is not None  # a result for a declaration no longer in the store
        ]

    def last_seq(self) -> int:
        with unavailable_as_error(self.engine), self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.max(outcomes.c.seq))).scalar() or 0)

    def close(self) -> None:
        if self._owns_engine:
            self.engine.dispose()


class _Write:
    """The reads and the insert of one write transaction (``serving.outcomes.OutcomeWrite``)."""

    def __init__(self, conn: sa.Connection) -> None:
        self._conn = conn

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
        self._conn.execute(
            outcomes.insert(),
            [
                {
                    "declaration_id": declaration_id,
                    "inspected_at": iso_utc(result.inspected_at_us),
                    "illicit": int(result.illicit),
                    "offence_type": result.offence_type,
                    "revenue_recovered": result.revenue_recovered,
                    "recorded_at": recorded_at,
                    "source": source,
                }
                for declaration_id, result in zip(ids, results, strict=True)
            ],
        )


def read_results(engine: sa.Engine, ids: Sequence[str]) -> dict[str, StoredResult]:
    """The results stored for these declaration ids (an auditor's read)."""
    with unavailable_as_error(engine), engine.connect() as conn:
        return _results(conn, list(ids))


def _results(conn: sa.Connection, wanted: list[str] | None) -> dict[str, StoredResult]:
    from serving.decision import parse_iso_us

    query = sa.select(
        outcomes.c.declaration_id,
        outcomes.c.inspected_at,
        outcomes.c.illicit,
        outcomes.c.offence_type,
        outcomes.c.revenue_recovered,
    )
    if wanted is not None:
        query = query.where(_among(outcomes.c.declaration_id, wanted))
    return {
        declaration_id: StoredResult(parse_iso_us(at), bool(illicit), offence, revenue)
        for declaration_id, at, illicit, offence, revenue in conn.execute(query)
    }
