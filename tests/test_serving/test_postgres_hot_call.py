"""``hot_call``, the scoring path's PostgreSQL calls, when the connection breaks: without a
server (fake connections), so CI checks it whether or not PostgreSQL can start."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import psycopg
import pytest
import sqlalchemy as sa

from serving.postgres_store import _MaybeCommitted, hot_call
from serving.sqlite_store import StoreUnavailable


@dataclass
class _Info:
    transaction_status: psycopg.pq.TransactionStatus = psycopg.pq.TransactionStatus.IDLE


@dataclass
class _Pg:
    """A psycopg connection as ``hot_call`` sees it."""

    broken: bool = False
    closed: bool = False
    info: _Info = field(default_factory=_Info)
    executed: list[str] = field(default_factory=list)

    def execute(self, sql: str) -> None:
        self.executed.append(sql)


@dataclass
class _Engine:
    """Hands out the given connections in turn; records which were invalidated."""

    connections: list[_Pg]
    url: sa.URL = field(
        default_factory=lambda: sa.make_url("postgresql+psycopg://u:secret@db.example/decisions")
    )
    invalidated: list[_Pg] = field(default_factory=list)

    @contextlib.contextmanager
    def connect(self) -> Iterator[object]:
        pg = self.connections.pop(0)
        engine = self

        class _Conn:
            class connection:  # SQLAlchemy's attribute name
                driver_connection = pg

            @staticmethod
            def invalidate() -> None:
                engine.invalidated.append(pg)

        yield _Conn()


def _breaking(pg: _Pg, error: Exception):
    def work(conn: _Pg) -> None:
        conn.broken = True  # the server went away during the call
        raise error

    return work


def test_a_connection_found_broken_is_dropped_and_the_work_runs_again_on_a_new_one() -> None:
    first, second = _Pg(), _Pg()
    engine = _Engine([first, second])
    calls: list[_Pg] = []

    def work(pg: _Pg) -> str:
        calls.append(pg)
        if pg is first:
            pg.broken = True
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        return "stored"

    assert hot_call(engine, work) == "stored"  # type: ignore[arg-type]
    assert calls == [first, second] and engine.invalidated == [first]


def test_twice_broken_is_unavailable_and_says_nothing_was_stored() -> None:
    engine = _Engine([_Pg(), _Pg()])
    lost = psycopg.OperationalError("server closed the connection unexpectedly")
    with pytest.raises(StoreUnavailable, match="nothing of it was stored") as refused:
        hot_call(engine, lambda pg: _breaking(pg, lost)(pg))  # type: ignore[arg-type]
    assert "secret" not in str(refused.value) and len(engine.invalidated) == 2


def test_broken_after_commit_is_not_retried_and_does_not_claim_nothing_was_stored() -> None:
    """The COMMIT may have reached the server: running the work again could decide the same
    declarations twice, and "nothing stored" could be untrue."""
    engine = _Engine([_Pg(), _Pg()])
    calls: list[_Pg] = []

    def work(pg: _Pg) -> None:
        calls.append(pg)
        pg.broken = True
        try:
            raise psycopg.OperationalError("consuming input failed: EOF detected")
        except psycopg.OperationalError as exc:
            raise _MaybeCommitted(str(exc)) from exc

    with pytest.raises(StoreUnavailable) as refused:
        hot_call(engine, work)  # type: ignore[arg-type]
    message = str(refused.value)
    assert len(calls) == 1 and len(engine.connections) == 1  # not run again
    assert "may or may not be stored" in message and "nothing of it was stored" not in message
    assert "EOF detected" in message and "secret" not in message
    assert isinstance(refused.value.__cause__, psycopg.OperationalError)


def test_an_error_on_a_live_connection_rolls_back_its_open_transaction() -> None:
    pg = _Pg(info=_Info(psycopg.pq.TransactionStatus.INERROR))
    engine = _Engine([pg])

    def work(conn: _Pg) -> None:
        raise psycopg.errors.UniqueViolation("duplicate key value violates unique constraint")

    with pytest.raises(psycopg.errors.UniqueViolation):  # a bug or a constraint: as it is
        hot_call(engine, work)  # type: ignore[arg-type]
    assert pg.executed == ["ROLLBACK"] and engine.invalidated == []
