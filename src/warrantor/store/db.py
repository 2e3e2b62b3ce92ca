"""Engines, connections and the group-commit writer.

Every write is a *job*: a function of one open transaction. Jobs are queued to a single
writer thread per process, which runs whatever is queued in one database transaction, each
job inside its own SAVEPOINT (a failing job rolls back alone), commits once, and only then
answers each caller. One fsync serves the whole batch: durability is cheap, and an
acknowledged write has always been committed.

Several processes may share one PostgreSQL database: each has its own writer, and
everything that must be atomic across processes (idempotency, single-use codes, log
sequencing, budgets) is enforced by constraints and row locks, never in memory.

SQLite runs in WAL mode with ``synchronous=FULL``; the writer uses ``BEGIN IMMEDIATE`` so
it never has to upgrade a read lock. The writer does not checkpoint the WAL itself
(``wal_autocheckpoint=0``): SQLite's automatic checkpoint runs inside the commit that crosses
1,000 WAL pages, copying pages and fsyncing the database file while every queued write
waits (a 50-450 ms stall every few seconds under load). A ``warrantor-checkpoint`` thread
runs ``PRAGMA wal_checkpoint(PASSIVE)`` on a connection of its own instead; a passive
checkpoint never blocks writers or readers, and durability is unchanged (each commit is
already synced to the WAL).

A database that fails or cannot be reached is a ``StorageError`` (503
``STORAGE_UNAVAILABLE`` with ``Retry-After``): a transaction commits whole or not at all,
so nothing is half-written, and the request can be sent again with its idempotency key
(if the commit did land before the connection broke, the retry replays it). A
broken connection is discarded and the next request connects afresh (``pool_pre_ping``), so
the server recovers by itself when the database returns.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError

from warrantor.errors import ConflictError, StorageError, WarrantorError
from warrantor.store.fastpath import Savepoints, fetch_row
from warrantor.store.sequencing import LogBatch

T = TypeVar("T")
log = logging.getLogger(__name__)

_STOP = object()
_RETRYABLE_SQLSTATES = {"40001", "40P01"}  # serialization failure, deadlock detected


@dataclass
class _Job:
    fn: Callable[[Connection], Any]
    future: Future[Any]


def sqlite_url(data_dir: Path) -> str:
    return f"sqlite:///{data_dir / 'warrantor.db'}"


CHECKPOINT_INTERVAL_SECONDS = 1.0


class ServerLockedError(WarrantorError):
    code = "DATABASE_IN_USE"


def lock_sqlite_server(url: str) -> IO[str] | None:
    """For a SQLite database: hold ``<database>.serve-lock`` exclusively for as long as the
    returned file stays open (the process's life); None for any other database.

    SQLite has one writer process, and the server relies on that (``Tenancy`` caches live
    keys' principals): a second ``warrantor serve`` on the same database refuses to start
    with ``ServerLockedError`` naming the holder, instead of running beside the first.
    Commands that open the database briefly (``warrantor keys``, ``audit``) do not take it.
    """
    if sa.engine.make_url(url).get_backend_name() != "sqlite":
        return None
    database = sa.engine.make_url(url).database
    if not database or database == ":memory:":
        return None
    path = Path(f"{database}.serve-lock")
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    handle = path.open("a+", encoding="utf-8")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise ServerLockedError(
            f"the SQLite database {database} is already served by {holder}; SQLite has a single "
            f"writer, so stop that server first (several processes need PostgreSQL)") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"warrantor serve (pid {os.getpid()})\n")
    handle.flush()
    return handle


def _configure_sqlite(engine: Engine, *, begin: str, autocheckpoint: bool = True) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: sqlite3.Connection, _record: object) -> None:
        dbapi_conn.isolation_level = None  # SQLAlchemy emits BEGIN itself (savepoints work)
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=10000")
        if not autocheckpoint:
            cur.execute("PRAGMA wal_autocheckpoint=0")  # the checkpointer thread does it
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # On the DB-API connection itself: this runs for every transaction (each request's
        # reads), and SQLAlchemy's statement machinery costs more than the BEGIN.
        conn.connection.driver_connection.execute(begin)  # type: ignore[union-attr]


def create_engines(url: str) -> tuple[Engine, Engine]:
    """(writer engine, reader engine) for a database URL."""
    if url.startswith("sqlite"):
        args = {"check_same_thread": False, "timeout": 10}
        writer = sa.create_engine(url, connect_args=args, pool_size=1, max_overflow=0)
        # Enough pooled readers for every request thread: no connect/PRAGMA churn per request.
        reader = sa.create_engine(url, connect_args=args, pool_size=48, max_overflow=16)
        _configure_sqlite(writer, begin="BEGIN IMMEDIATE", autocheckpoint=False)
        _configure_sqlite(reader, begin="BEGIN")
        return writer, reader
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    writer = sa.create_engine(url, pool_size=2, max_overflow=2, pool_pre_ping=True)
    # Repeatable read: a read transaction sees one snapshot on PostgreSQL too (its default,
    # read committed, takes a new snapshot per statement); read-only, it never conflicts.
    reader = sa.create_engine(url, pool_size=8, max_overflow=16, pool_pre_ping=True,
                              isolation_level="REPEATABLE READ")
    return writer, reader


class Database:
    """A database with a group-commit writer thread and a pool of readers."""

    def __init__(self, url: str, *, max_batch: int = 256) -> None:
        self.url = url
        self.dialect = "sqlite" if url.startswith("sqlite") else "postgresql"
        self.writer_engine, self.reader_engine = create_engines(url)
        # The DB-API's base error (sqlite3.Error, psycopg.Error): what a raw cursor raises.
        self._driver_error: type[Exception] = self.reader_engine.dialect.dbapi.Error  # type: ignore[union-attr]
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._checkpointer: threading.Thread | None = None
        self._checkpoint_stop = threading.Event()
        self._lock = threading.Lock()
        self.batches = 0
        self.jobs = 0

    # -- reads -----------------------------------------------------------------------
    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read transaction (a consistent snapshot on both databases)."""
        try:
            with self.reader_engine.connect() as conn, conn.begin():
                yield conn
        except WarrantorError:
            raise
        except SQLAlchemyError as exc:
            raise unavailable("read", exc) from exc

    def read_row(self, sql: str, params: tuple[Any, ...]) -> tuple[Any, ...] | None:
        """One ``SELECT`` (our own SQL, values bound) outside an explicit transaction: a
        single statement reads one consistent snapshot anyway, and skipping ``BEGIN`` and
        the SQLAlchemy layers matters for a lookup that runs on every request."""
        try:
            with self.reader_engine.connect() as conn:
                return fetch_row(conn, sql, params)
        except WarrantorError:
            raise
        except (SQLAlchemyError, self._driver_error) as exc:
            raise unavailable("read", exc) from exc

    # -- writes ----------------------------------------------------------------------
    def write(self, fn: Callable[[Connection], T]) -> T:
        """Run ``fn`` in a transaction, batched with concurrent writes; return once committed."""
        self._ensure_writer()
        future: Future[T] = Future()
        self._queue.put(_Job(fn, future))
        return future.result()

    async def write_async(self, fn: Callable[[Connection], T]) -> T:
        """``write`` for the event loop: the caller awaits the writer's future, so no thread
        is held (or handed off to) while the batch commits."""
        self._ensure_writer()
        future: Future[T] = Future()
        self._queue.put(_Job(fn, future))
        return await asyncio.wrap_future(future)

    def _ensure_writer(self) -> None:
        if self._thread is not None:
            return
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run_writer, name="warrantor-writer", daemon=True
                )
                self._thread.start()
                if self.dialect == "sqlite":
                    self._checkpointer = threading.Thread(
                        target=self._run_checkpointer, name="warrantor-checkpoint", daemon=True
                    )
                    self._checkpointer.start()

    def _run_checkpointer(self) -> None:
        """Fold the WAL back into the database file off the commit path (module docstring)."""
        path = self.writer_engine.url.database
        if not path:
            return
        con = sqlite3.connect(path, check_same_thread=False, timeout=10, isolation_level=None)
        try:
            con.execute("PRAGMA busy_timeout=10000")
            while not self._checkpoint_stop.wait(CHECKPOINT_INTERVAL_SECONDS):
                try:
                    con.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error as exc:  # busy or I/O: the next round tries again
                    log.warning("WAL checkpoint failed: %s", exc)
        finally:
            con.close()

    def _run_writer(self) -> None:
        conn: Connection | None = None
        while True:
            first = self._queue.get()
            if first is _STOP:
                break
            batch = [first]
            while len(batch) < self._max_batch:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP:
                    self._queue.put(_STOP)
                    break
                batch.append(nxt)
            conn = self._commit_batch(conn, batch)
        if conn is not None:
            conn.close()

    def _commit_batch(self, conn: Connection | None, batch: list[_Job]) -> Connection | None:
        for attempt in range(4):
            try:
                if conn is None:
                    conn = self.writer_engine.connect()
                results = self._run_batch(conn, batch)
            except Exception as exc:  # the transaction failed as a whole: nothing was written
                conn = self._discard(conn)
                if _sqlstate(exc) in _RETRYABLE_SQLSTATES and attempt < 3:
                    time.sleep(0.005 * (attempt + 1))
                    continue
                conn = self._discard(conn)
                self._fail(batch, exc)
                return conn
            self.batches += 1
            self.jobs += len(batch)
            for job, (ok, value) in zip(batch, results, strict=True):
                if ok:
                    job.future.set_result(value)
                else:
                    job.future.set_exception(value)
            return conn
        return conn

    def _run_batch(self, conn: Connection, batch: list[_Job]) -> list[tuple[bool, Any]]:
        results: list[tuple[bool, Any]] = []
        info = conn.info
        with conn.begin():
            savepoints = Savepoints(conn)
            log_batch = LogBatch.begin(conn)  # evidence is sequenced last (sequencing.py)
            try:
                for i, job in enumerate(batch):
                    savepoints.begin(i)
                    mark = log_batch.mark()
                    try:
                        value = job.fn(conn)
                    except Exception as exc:
                        if _sqlstate(exc) in _RETRYABLE_SQLSTATES:
                            raise  # the whole batch is retried
                        savepoints.rollback(i)
                        log_batch.drop_from(mark)
                        results.append((False, self._wrap(exc)))
                    else:
                        savepoints.release(i)
                        results.append((True, value))
                log_batch.flush(conn)  # the log_size row lock, held from here to COMMIT
            finally:
                LogBatch.end(info)
        return results

    @staticmethod
    def _discard(conn: Connection | None) -> None:
        if conn is not None:
            try:
                conn.invalidate()
                conn.close()
            except Exception:  # the connection is already broken; nothing more to do
                log.debug("closing a broken writer connection failed", exc_info=True)

    def _fail(self, batch: list[_Job], exc: BaseException) -> None:
        log.error("write batch of %d failed: %s", len(batch), exc)
        err = self._wrap(exc)
        for job in batch:
            job.future.set_exception(err)

    def _wrap(self, exc: BaseException) -> BaseException:
        """Database errors become Warrantor errors; a job's own exceptions pass through.

        Errors come either from SQLAlchemy (``DBAPIError``) or, on the raw fast path,
        straight from the driver (its DB-API ``Error`` classes).
        """
        if isinstance(exc, WarrantorError):
            return exc
        dbapi = self.writer_engine.dialect.dbapi
        if isinstance(exc, IntegrityError) or (dbapi is not None and isinstance(exc, dbapi.IntegrityError)):
            conflict = UniqueViolationError("a concurrent request already wrote this record")
            conflict.__cause__ = exc
            return conflict
        if isinstance(exc, DBAPIError) or (dbapi is not None and isinstance(exc, dbapi.Error)):
            err = unavailable("write", exc)
            err.__cause__ = exc
            return err
        return exc

    def close(self) -> None:
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join(timeout=10)
            self._thread = None
        if self._checkpointer is not None:
            self._checkpoint_stop.set()
            self._checkpointer.join(timeout=10)
            self._checkpointer = None
        self.writer_engine.dispose()
        self.reader_engine.dispose()


def unavailable(what: str, exc: BaseException) -> StorageError:
    """503 ``STORAGE_UNAVAILABLE``; the client retries (writes with the same idempotency key)."""
    return StorageError(f"the database failed a {what} ({type(exc).__name__}); retry shortly",
                        headers={"Retry-After": "1"})


def _sqlstate(exc: BaseException) -> str | None:
    driver_error = exc.orig if isinstance(exc, DBAPIError) else exc
    return getattr(driver_error, "sqlstate", None)


class UniqueViolationError(ConflictError):
    """A unique constraint refused a write: another request got there first."""

    code = "CONFLICT"
