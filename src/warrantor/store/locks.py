"""A deployment-wide "only one of us" lock: a PostgreSQL session advisory lock.

Held on a dedicated connection for as long as the holder lives; when the process dies
the connection drops and PostgreSQL releases the lock, so another process takes over.
With SQLite there is only one server process, so the lock is always held.
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from warrantor.store.db import Database

log = logging.getLogger(__name__)


class SessionLock:
    def __init__(self, db: Database, key: int) -> None:
        self._db = db
        self._key = key
        self._conn: Connection | None = None

    @property
    def is_held(self) -> bool:
        return self._db.dialect != "postgresql" or self._conn is not None

    def held(self) -> bool:
        """Hold the lock if possible; True while this process holds it."""
        if self._db.dialect != "postgresql":
            return True
        try:
            if self._conn is not None:
                self._conn.execute(sa.text("SELECT 1"))  # still alive, so still ours
                self._conn.commit()
                return True
            conn = self._db.writer_engine.connect()
            got = conn.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": self._key}).scalar()
            conn.commit()
            if got:
                self._conn = conn
                return True
            conn.close()
            return False
        except sa.exc.SQLAlchemyError:
            log.warning("lost the connection holding advisory lock %#x; will retry", self._key, exc_info=True)
            self.release()
            return False

    def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": self._key})
            conn.commit()
            conn.close()
        except sa.exc.SQLAlchemyError:
            conn.invalidate()
