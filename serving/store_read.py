"""Read-only queries on a decision store of either kind, for the analysts' commands.

`monitor` and `lanes plan|set|refit` read a period of decisions with their results: a few
queries, written once with two dialect slots: ``{p}`` (a parameter: ``?`` in SQLite, ``%s`` in
PostgreSQL) and ``json_text(column, key)`` (a field of the stored declaration as text). A
SQLite file is opened read-only (an analyst's read never creates or changes anything); a
PostgreSQL database in a read-only transaction.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from features.errors import ParcelriskError


def json_flag(values: Any) -> Any:
    """A JSON boolean read by ``json_text`` as a bool column: SQLite gives 1/0, PostgreSQL
    'true'/'false'; missing is False."""
    return values.astype("string").str.lower().isin(["1", "true"]).to_numpy(dtype=bool)


@dataclass
class ReadOnlyStore:
    location: str
    _sqlite: sqlite3.Connection | None = None
    _pg: Any = None  # a SQLAlchemy connection

    @property
    def p(self) -> str:
        """The parameter placeholder of this store's driver."""
        return "?" if self._sqlite is not None else "%s"

    def json_text(self, column: str, key: str) -> str:
        """SQL for the text of ``key`` in the JSON of ``column``."""
        if self._sqlite is not None:
            return f"json_extract({column}, '$.{key}')"
        return f"({column}::json ->> '{key}')"

    def tables(self) -> set[str]:
        if self._sqlite is not None:
            rows = self._sqlite.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            return {r[0] for r in rows}
        rows = self._pg.exec_driver_sql(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
        )
        return {r[0] for r in rows}

    def columns(self, table: str) -> set[str]:
        """The columns of ``table`` (a store from before a field was added lacks it)."""
        if self._sqlite is not None:
            return {r[1] for r in self._sqlite.execute(f"PRAGMA table_info({table})")}
        rows = self._pg.exec_driver_sql(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = %s",
            (table,),
        )
        return {r[0] for r in rows}

    def query(self, sql: str, params: Sequence[Any] = ()) -> tuple[list[str], list[tuple]]:
        """(column names, rows) of ``sql``, its ``{p}`` slots filled for this driver."""
        text = sql.replace("{p}", self.p)
        if self._sqlite is not None:
            cursor = self._sqlite.execute(text, tuple(params))
            return [c[0] for c in cursor.description], cursor.fetchall()
        result = self._pg.exec_driver_sql(text, tuple(params))
        return list(result.keys()), [tuple(r) for r in result]

    def query_chunks(
        self, sql: str, params: Sequence[Any] = (), size: int = 100_000
    ) -> Iterator[tuple[list[str], list[tuple]]]:
        """``query``'s (column names, rows), ``size`` rows at a time: a period of millions of
        decisions is never one list of Python tuples (``monitor`` held ~4.5 KB a decision so,
        probe of 2026-12-07)."""
        text = sql.replace("{p}", self.p)
        if self._sqlite is not None:
            cursor = self._sqlite.execute(text, tuple(params))
            names = [c[0] for c in cursor.description]
            while rows := cursor.fetchmany(size):
                yield names, rows
            return
        result = self._pg.execution_options(stream_results=True).exec_driver_sql(
            text, tuple(params)
        )
        names = list(result.keys())
        for part in result.partitions(size):
            yield names, [tuple(r) for r in part]


@contextlib.contextmanager
def read_only(location: str | Path) -> Iterator[ReadOnlyStore]:
    """The store at ``location`` opened for reading only; a missing SQLite file is an error
    (a typo must not create an empty store), as is an unreachable server."""
    from serving.outcome_store import sqlite_path
    from serving.store import is_sqlite

    text = str(location)
    if is_sqlite(text):
        path = sqlite_path(text)
        if not path.is_file():
            raise ParcelriskError(f"decision store {path}: no such file")
        from serving.sqlite_store import connect_read_only

        conn = connect_read_only(path, table=None)  # write-once media read too
        try:
            yield ReadOnlyStore(str(path), _sqlite=conn)
        except sqlite3.Error as exc:
            raise ParcelriskError(f"cannot read the decision store {path}: {exc}") from None
        finally:
            conn.close()
        return
    from serving.postgres_store import make_engine, unavailable_as_error

    engine = make_engine(text)
    try:
        with unavailable_as_error(engine, "cannot be read"), engine.connect() as conn:
            conn.exec_driver_sql("SET TRANSACTION READ ONLY")
            yield ReadOnlyStore(engine.url.render_as_string(hide_password=True), _pg=conn)
    finally:
        engine.dispose()
