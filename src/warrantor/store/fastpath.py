"""The write hot path on the raw DB-API cursor, skipping SQLAlchemy's per-statement work.

Every authorization inserts an action, its evidence and a log entry and bumps the log
counter, all in the single writer thread. Through SQLAlchemy Core each of those statements
costs about 0.15 ms of Python (compilation cache, parameter processing, result proxies);
on the raw cursor it costs a fraction of that, and the writer releases and re-takes the
GIL fewer times per job. Profiles and figures: ``bench/results/authorize.json``.

What stays the same: the tables (``schema.py``), the values (each column's own SQLAlchemy
bind processor formats it exactly as Core would, so rows read back identically), and the
transaction (the statements run on the same DB-API connection, inside the writer's
transaction and the job's savepoint).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.sql.schema import ScalarElementColumnDefault


def raw_cursor(conn: Connection) -> Any:
    """The DB-API cursor of a SQLAlchemy connection, cached on the pooled connection."""
    info = conn.connection.info
    cursor = info.get("warrantor_cursor")
    if cursor is None:
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        info["warrantor_cursor"] = cursor
    return cursor


def placeholder(conn: Connection) -> str:
    return "?" if conn.dialect.paramstyle == "qmark" else "%s"


_Plan = list[tuple[str, Callable[[Any], Any] | None, Any]]


class RawInsert:
    """``INSERT INTO table (every column) VALUES (...)``, prepared once per dialect.

    The SQL is built from our own table definitions only (names from ``schema.py``, never
    from input); every value is a bound parameter.
    """

    def __init__(self, table: sa.Table) -> None:
        self.table = table
        self._prepared: dict[str, tuple[str, _Plan]] = {}

    def _prepare(self, conn: Connection) -> tuple[str, _Plan]:
        name = conn.dialect.name
        hit = self._prepared.get(name)
        if hit is None:
            ph = placeholder(conn)
            columns = list(self.table.columns)
            sql = (f"INSERT INTO {self.table.name} ({', '.join(c.name for c in columns)}) "  # noqa: S608
                   f"VALUES ({', '.join([ph] * len(columns))})")
            plan: _Plan = [
                (c.name, c.type.dialect_impl(conn.dialect).bind_processor(conn.dialect),
                 c.default.arg if isinstance(c.default, ScalarElementColumnDefault) else None)
                for c in columns
            ]
            hit = (sql, plan)
            self._prepared[name] = hit
        return hit

    def execute(self, conn: Connection, rows: Iterable[Mapping[str, Any]]) -> None:
        sql, plan = self._prepare(conn)
        params = [
            tuple(
                (proc(value) if proc is not None and value is not None else value)
                for name, proc, default in plan
                for value in (row.get(name, default),)
            )
            for row in rows
        ]
        if not params:
            return
        cursor = raw_cursor(conn)
        if len(params) == 1:
            cursor.execute(sql, params[0])
        else:
            cursor.executemany(sql, params)


def bump_counter(conn: Connection, name: str, n: int) -> int | None:
    """``value += n`` for a counter row; the new value, or None when the row is missing."""
    ph = placeholder(conn)
    cursor = raw_cursor(conn)
    cursor.execute(f"UPDATE counters SET value = value + {ph} WHERE name = {ph} RETURNING value", (n, name))  # noqa: S608
    row = cursor.fetchone()
    return None if row is None else int(row[0])


class Savepoints:
    """SAVEPOINT / RELEASE / ROLLBACK TO on the raw cursor, one per job of a batch."""

    def __init__(self, conn: Connection) -> None:
        self._cursor = raw_cursor(conn)

    def begin(self, i: int) -> None:
        self._cursor.execute(f"SAVEPOINT job_{i}")

    def release(self, i: int) -> None:
        self._cursor.execute(f"RELEASE SAVEPOINT job_{i}")

    def rollback(self, i: int) -> None:
        self._cursor.execute(f"ROLLBACK TO SAVEPOINT job_{i}")
        self._cursor.execute(f"RELEASE SAVEPOINT job_{i}")


# -- single statements on the raw cursor (budgets and rate limits) ------------------------
_BINDERS: dict[tuple[str, sa.Column[Any]], Callable[[Any], Any] | None] = {}


def bind(conn: Connection, column: sa.Column[Any], value: Any) -> Any:
    """``value`` as ``column``'s bind processor formats it for this dialect (as Core binds it).

    The same processors ``RawInsert`` uses, so a raw ``WHERE`` or ``SET`` compares and
    stores exactly what Core would (on SQLite a ``DateTime`` becomes its stored text).
    """
    key = (conn.dialect.name, column)
    try:
        proc = _BINDERS[key]
    except KeyError:
        proc = column.type.dialect_impl(conn.dialect).bind_processor(conn.dialect)
        _BINDERS[key] = proc
    return proc(value) if proc is not None and value is not None else value


def execute(conn: Connection, sql: str, params: tuple[Any, ...]) -> None:
    """Run one statement on the raw cursor (SQL from our own code only, values bound)."""
    raw_cursor(conn).execute(sql, params)


def fetch_row(conn: Connection, sql: str, params: tuple[Any, ...]) -> tuple[Any, ...] | None:
    """Run one ``SELECT`` or ``... RETURNING`` on the raw cursor; its first row, or None."""
    cursor = raw_cursor(conn)
    cursor.execute(sql, params)
    rows = cursor.fetchall()
    return tuple(rows[0]) if rows else None
