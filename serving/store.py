"""Where decisions are kept: the ``DecisionStore`` interface and the choice of implementation.

Every decision is recorded before it is answered, with everything needed to recompute it
(``serving.decision.DecisionRecord``). A store is chosen by its location (``serve.audit_db`` or
``PARCELRISK_AUDIT_DB``): a file path or ``sqlite:///PATH`` is the SQLite store, the embedded
default; ``postgresql://USER@HOST:PORT/DATABASE`` is the PostgreSQL store a team's replicas share
(``serving.postgres_store``). Each is one module implementing ``DecisionStore`` plus one line in
``_STORES``; the chain's MACs and its verification (``serving.audit``) are shared code. The
inspection results live beside the decisions, in the same database (``open_outcome_store``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from features.errors import ParcelriskError
from serving.audit.chain import ChainRow
from serving.decision import DecisionRecord


@runtime_checkable
class DecisionStore(Protocol):
    """A decision store; implementations are safe to call from several threads."""

    def record(
        self, decisions: Sequence[DecisionRecord], *, first_wins: bool = False
    ) -> dict[tuple[str, str], DecisionRecord]:
        """Keep a batch of decisions, all or nothing. With ``first_wins``, a declaration this
        model version has decided already (as ``decided`` finds them, looked up again in the
        write transaction) is not stored again: its first decision is returned instead,
        keyed by (declaration_id, declaration_json). Without it: ``{}``."""

    def get(self, decision_id: str) -> tuple[DecisionRecord, bool] | None:
        """The stored decision and whether its link in the chain holds; None if absent."""

    def count(self) -> int:
        """How many decisions are stored."""

    def check_in_place(self) -> None:
        """``StoreReplaced`` when the store is no longer where it was opened (a SQLite file
        deleted, renamed or replaced under the service; one stat); a server's database
        cannot be, so nothing there. Readiness asks it, so an idle worker stops being ready
        before the next write would find it (probe 21)."""

    def decided(
        self, declaration_ids: Sequence[str], model_name: str
    ) -> dict[tuple[str, str], DecisionRecord]:
        """The first decision already stored by any version of this model for each of these
        declarations, keyed by (declaration_id, declaration_json): a declaration sent again
        unchanged gets that decision back (``serving.service``), not a second one, also after
        a new champion was promoted (probe 14: a re-send after a promotion got a second,
        unflagged decision, perhaps in another lane, while the first had been delivered). The
        records hold what an answer carries: their feature vector is not read (empty)."""

    def mark_undelivered(self, decision_ids: Sequence[str], reason: str) -> None:
        """These recorded decisions were never answered (the request timed out or was cancelled
        before its answer was sent): keep them, marked, for the retry that will return them."""

    def mark_redelivered(self, decision_ids: Sequence[str]) -> int:
        """These decisions were just answered (a retry): those marked undelivered note when.
        Returns how many were waiting."""

    def delivery(self, decision_id: str) -> dict[str, str | None] | None:
        """``{reason, marked_at, redelivered_at}`` if the decision's answer was not sent."""

    def since(
        self, seq: int, declared_from_us: int | None = None, limit: int | None = None
    ) -> list[tuple[int, str]]:
        """(seq, declaration_json) of the decisions recorded after ``seq``, in seq order;
        with ``declared_from_us``, only declarations declared at or after it (UTC us); at most
        ``limit`` rows when given.

        ``seq`` increases in commit order across every writer, so a reader that has seen ``s``
        has seen every decision before it: the event log the live entity state is fed from
        (``ScoringRuntime.catch_up``). Start from 0.
        """

    def last_seq(self) -> int:
        """The seq of the last decision recorded (0 when none)."""

    # --- auditor sign-outs (``serving.auditor.session``): kept here because every worker and
    # replica opens this store; not part of the chain (a fact about sessions, not decisions).

    def revoke_session(self, session_id: str, expires_at: int) -> None:
        """Keep the session ``session_id`` (a digest, never a token) signed out until
        ``expires_at`` (unix seconds), when its token expires anyway; sign-outs already past
        theirs are dropped in the same transaction. ``StoreUnavailable`` when it cannot be
        written now: the session is then not signed out."""

    def session_revoked(self, session_id: str) -> bool:
        """Whether the session was signed out (a primary-key lookup). Expiry is not looked at:
        an expired token is refused before it is asked about."""

    # --- the tamper-evident chain (``serving.audit.chain``): every store keeps the same one,
    # made inside its write transaction, one writer at a time, keyed with the audit key.

    location: str  # where it is, for messages (no password)
    source: str  # the location to open it again with (may hold a password: never shown)

    @property
    def key(self) -> bytes:
        """The audit key this store MACs its chain with (``features.keys``)."""

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
        """Decisions in seq order after ``after_seq``, answered in [from, to) (ISO UTC),
        filtered by lane, model version and declaration when given; at most ``limit``."""

    def chain_start(self) -> tuple[int, bytes, dict[str, Any] | None]:
        """(seq, mac) the stored chain follows and the archive cut it starts at (None: never
        archived)."""

    def chain_rows(self, after_seq: int = 0) -> Iterator[ChainRow]:
        """Every stored decision's link after ``after_seq``, in seq order, paged."""

    def head(self) -> tuple[int, bytes] | None:
        """The chain's last (seq, mac); None when nothing was recorded."""

    def cut_chain(
        self, cut_seq: int, cut_mac: bytes, archived_at: str, archive: str, mac: bytes
    ) -> None:
        """Record where the hot chain starts after an archive and drop what it moved out
        (``serving.audit.archive``), in the writers' turn."""

    def expire_results(self, runs: Sequence[tuple[int, int]]) -> int:
        """Delete the inspection results of these seq ranges (first, last; inclusive), in the
        writers' turn, all or nothing: ``parcelrisk audit expire``, once its signed record
        names them (``serving.audit.expiry``). Returns how many were deleted (none on a
        re-run)."""

    def close(self) -> None:
        """Flush and release the store."""


def _open_sqlite(location: str, *, wal_max_mb: float | None = None) -> DecisionStore:
    from serving.sqlite_store import SqliteDecisionStore

    if wal_max_mb is None:
        return SqliteDecisionStore(location)
    return SqliteDecisionStore(location, wal_max_mb=wal_max_mb)


def _open_postgres(location: str, *, wal_max_mb: float | None = None) -> DecisionStore:
    from serving.postgres_store import PostgresDecisionStore

    return PostgresDecisionStore(location)  # no write-ahead log beside it: the server keeps its own


def _sqlite_file(scheme: str, rest: str) -> str:
    # as in SQLAlchemy's (and MLflow's) URLs: sqlite:///relative.db, sqlite:////absolute.db
    return rest[1:] if scheme == "sqlite" and rest.startswith("/") else rest


# scheme -> opener of the location (and the settings it takes)
_STORES: dict[str, Callable[..., DecisionStore]] = {
    "sqlite": _open_sqlite,
    "postgresql": _open_postgres,
    "postgresql+psycopg": _open_postgres,
    "postgres": _open_postgres,
}


def _scheme(location: str | Path) -> tuple[str, str]:
    """(scheme, the rest after ``://``) of a location; ``("", path)`` for a file path."""
    text = str(location)
    scheme, sep, rest = text.partition("://")
    if not sep:
        return "", text
    scheme = scheme.lower()
    if scheme not in _STORES:
        raise ParcelriskError(
            f"decision store {scheme}://...: unknown kind; use a file path or one of "
            f"{', '.join(f'{s}://' for s in sorted(_STORES))}"
        )
    return scheme, rest


def is_sqlite(location: str | Path) -> bool:
    """Whether a store location is the embedded SQLite store (a path or ``sqlite://``)."""
    return _scheme(location)[0] in ("", "sqlite")


class AuditKeyMismatch(ParcelriskError):
    """The audit key in force does not sign the chain a writer would extend."""


def require_key_signs_chain(store: DecisionStore) -> None:
    """Refuse to write decisions to ``store`` under a key that did not sign its last one.

    A writer holding another key (a replica configured apart, a key made anew on another
    machine) appended records MAC'd under it: ``audit verify`` then reported the genuine
    chain as altered from there on, and every later record unverifiable (probe, 2026-12).
    Checked once, where a writer starts (``serve``, ``score --audit-db``), on the last
    record: a chain whose last record was altered is refused too, which `audit verify`
    names."""
    last = store.last_seq()
    if last <= 0:
        return
    link = next(iter(store.chain_rows(after_seq=last - 1, page=1)), None)
    if link is None or link.valid(store.key):
        return
    from features.keys import key_source

    # where this process's key came from (probe 30: a key from PARCELRISK_AUDIT_KEY_FILE was
    # said to come from PARCELRISK_AUDIT_KEY or ~/.config/parcelrisk)
    raise AuditKeyMismatch(
        f"decision store {store.location}: its last record (seq {link.seq}) was not signed "
        f"with the audit key in force (from {key_source('audit')}): a "
        "writer with another key would make every record after it fail `audit verify`. "
        "Give this process the store's key (as every replica and command writing to it); if "
        "the key is the store's, the record was altered: run `parcelrisk audit verify`"
    )


def open_store(
    location: str | Path, *, wal_max_mb: float | None = None, read_only: bool = False
) -> DecisionStore:
    """The store at ``location``: a file path (SQLite) or ``SCHEME://...``.

    ``wal_max_mb`` (``serve.audit_wal_max_mb``): the most disk a write-ahead log may hold
    beside the store, where it keeps one; None: the store's default.
    ``read_only``: for review; a SQLite file is never written (a copy on write-once media
    reads too), and a missing one is an error, not a new store. A PostgreSQL store opens as
    usual: what a reviewer may do there is the database role's to say.
    """
    scheme, rest = _scheme(location)
    if scheme in ("", "sqlite"):
        if read_only:
            from serving.sqlite_store import SqliteDecisionStore

            return SqliteDecisionStore(_sqlite_file(scheme, rest), read_only=True)
        return _open_sqlite(_sqlite_file(scheme, rest), wal_max_mb=wal_max_mb)
    return _STORES[scheme](str(location), wal_max_mb=wal_max_mb)


def open_outcome_store(
    location: str | Path, decisions: DecisionStore | None = None, *, read_only: bool = False
) -> Any:
    """The inspection results beside the decisions of the store at ``location``
    (``serving.outcomes.OutcomeStore`` plus the live state's reads); ``decisions``: that
    store already open, whose connections a PostgreSQL results store shares.
    ``read_only``: as ``open_store``'s."""
    scheme, _ = _scheme(location)
    if scheme in ("", "sqlite"):
        from serving.outcome_store import SqliteOutcomeStore

        return SqliteOutcomeStore(location, read_only=read_only)
    from serving.postgres_store import PostgresDecisionStore, PostgresOutcomeStore

    engines = decisions.engines if isinstance(decisions, PostgresDecisionStore) else None
    return PostgresOutcomeStore(str(location), engines=engines, read_only=read_only)
