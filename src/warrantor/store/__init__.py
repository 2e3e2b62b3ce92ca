"""Storage: the ``Store`` facade over SQLite (default) or PostgreSQL.

``Store.read()`` opens a read transaction; ``Store.write(job)`` runs a job in the
group-commit writer (see ``db.py``) and returns once it is durable. Jobs and readers get a
``Repo`` (``repo.py``), never raw SQL. Migrations are Alembic scripts in ``migrations/``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from warrantor.store.db import Database, UniqueViolationError, sqlite_url
from warrantor.store.repo import Repo

T = TypeVar("T")

__all__ = ["Repo", "Store", "UniqueViolationError", "sqlite_url"]

_MIGRATIONS = Path(__file__).parent / "migrations"
_PG_MIGRATION_LOCK = 0x5741_5252  # "WARR": one migrator at a time across processes


_KEY_COLUMNS = "SELECT id, tenant_id, role, agent_id, revoked_at IS NOT NULL, key_hash FROM api_keys"
_KEY_SQL = {
    "sqlite": _KEY_COLUMNS + " WHERE key_hash = ?",
    "postgresql": _KEY_COLUMNS + " WHERE key_hash = %s",
}


class Store:
    """The one storage seam. Two implementations share it: SQLite and PostgreSQL."""

    def __init__(self, url: str, *, max_batch: int = 256) -> None:
        self.db = Database(url, max_batch=max_batch)
        self.dialect = self.db.dialect

    @contextmanager
    def read(self) -> Iterator[Repo]:
        with self.db.read() as conn:
            yield Repo(conn, self.dialect)

    @contextmanager
    def read_lazy(self) -> Iterator[Repo]:
        """``read``, but the transaction begins at the first query: a request whose facts
        all come from caches (the usual authorization) opens no transaction at all. Once
        begun, every query of the block reads the same snapshot, as with ``read``."""
        lazy = _LazyRepo(self.db, self.dialect)
        try:
            yield lazy
        except BaseException as exc:
            lazy.close(exc)
            raise
        lazy.close(None)

    def write(self, job: Callable[[Repo], T]) -> T:
        dialect = self.dialect
        return self.db.write(lambda conn: job(Repo(conn, dialect)))

    def key_principal(self, key_hash: str) -> tuple[str, str, str, str | None, bool, str] | None:
        """The API key lookup every request makes: ``(key id, tenant id, role, agent id,
        revoked, key hash)`` or None, in one statement on the raw cursor."""
        row = self.db.read_row(_KEY_SQL[self.dialect], (key_hash,))
        if row is None:
            return None
        return str(row[0]), str(row[1]), str(row[2]), row[3], bool(row[4]), str(row[5])

    async def write_async(self, job: Callable[[Repo], T]) -> T:
        """``write``, awaited on the event loop instead of blocking a thread."""
        dialect = self.dialect
        return await self.db.write_async(lambda conn: job(Repo(conn, dialect)))

    def migrate(self) -> None:
        """Bring the schema to the newest revision (idempotent, safe to race on PostgreSQL)."""
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(_MIGRATIONS))
        with self.db.writer_engine.connect() as conn:
            if self.dialect == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
                conn.commit()
            try:
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
                conn.commit()
            finally:
                if self.dialect == "postgresql":
                    conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": _PG_MIGRATION_LOCK})
                    conn.commit()

    def ping(self) -> bool:
        try:
            with self.db.read() as conn:
                conn.execute(sa.text("SELECT 1"))
        except Exception:
            return False
        return True

    def close(self) -> None:
        self.db.close()


class _LazyRepo(Repo):
    """A ``Repo`` whose read transaction begins when a query first needs the connection."""

    def __init__(self, db: Database, dialect: str) -> None:  # no connection yet: see ``conn``
        self._db = db
        self.dialect = dialect
        self._opened: AbstractContextManager[Connection] | None = None
        self._conn: Connection | None = None

    @property
    def conn(self) -> Connection:
        if self._conn is None:
            self._opened = self._db.read()
            self._conn = self._opened.__enter__()
        return self._conn

    @conn.setter
    def conn(self, value: Connection) -> None:
        self._conn = value

    def close(self, exc: BaseException | None) -> None:
        if self._opened is not None:
            opened, self._opened, self._conn = self._opened, None, None
            if exc is None:
                opened.__exit__(None, None, None)
            else:
                opened.__exit__(type(exc), exc, exc.__traceback__)
