"""The Store contract: what every implementation (SQLite, PostgreSQL) guarantees.

Run against both stores; a new implementation passes this file or is not a Store.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from support import pg_database
from warrantor.domain.model import Evidence, Tenant
from warrantor.errors import NotFoundError
from warrantor.store import Repo, Store, UniqueViolationError
from warrantor.store import schema as s
from warrantor.store.fastpath import RawInsert
from warrantor.store.repo import evidence_values
from warrantor.store.sequencing import LogTicket

NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        s = Store(f"sqlite:///{tmp_path / 'w.db'}")
        s.migrate()
        yield s
        s.close()
    else:
        with pg_database() as url:
            s = Store(url)
            s.migrate()
            yield s
            s.close()


def test_migrate_is_idempotent(store: Store) -> None:
    store.migrate()
    assert store.ping()


def test_a_failing_job_rolls_back_alone(store: Store) -> None:
    barrier = threading.Barrier(3)
    errors: list[BaseException] = []

    def good(i: int) -> None:
        barrier.wait()
        store.write(lambda repo: repo.insert_tenant(Tenant(f"t{i}", "ok", NOW)))

    def bad() -> None:
        def job(repo: Repo) -> None:
            repo.insert_tenant(Tenant("t-bad", "half-written", NOW))
            raise NotFoundError("boom")

        barrier.wait()
        try:
            store.write(job)
        except NotFoundError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=good, args=(i,)) for i in range(2)] + [threading.Thread(target=bad)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(errors) == 1
    with store.read() as repo:
        assert repo.get_tenant("t0") and repo.get_tenant("t1")
        assert repo.get_tenant("t-bad") is None


def test_unique_violation_is_a_conflict(store: Store) -> None:
    store.write(lambda repo: repo.insert_tenant(Tenant("dup", "a", NOW)))
    with pytest.raises(UniqueViolationError):
        store.write(lambda repo: repo.insert_tenant(Tenant("dup", "b", NOW)))


def test_group_commit_batches_concurrent_writes(store: Store) -> None:
    def write(i: int) -> None:
        store.write(lambda repo: repo.insert_tenant(Tenant(f"g{i}", "x", NOW)))

    threads = [threading.Thread(target=write, args=(i,)) for i in range(64)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.db.jobs == 64
    assert store.db.batches < 64  # at least some writes shared a commit
    with store.read() as repo:
        assert all(repo.get_tenant(f"g{i}") for i in range(64))


def test_log_indices_are_dense_and_unique_under_concurrency(store: Store) -> None:
    store.write(lambda repo: repo.insert_tenant(Tenant("t", "x", NOW)))
    firsts: list[int] = []
    lock = threading.Lock()

    def append(i: int) -> None:
        rows = [_evidence_row(f"e{i}a", bytes([i])), _evidence_row(f"e{i}b", bytes([i]))]
        first = store.write(lambda repo: repo.sequence_evidence(rows, NOW)).first
        with lock:
            firsts.append(first)

    threads = [threading.Thread(target=append, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(firsts) == list(range(0, 80, 2))
    with store.read() as repo:
        assert repo.counter("log_size") == 80
        assert len(repo.log_entries_from(0, 1000)) == 80
        for i in range(40):  # each evidence row carries the index of its log entry
            a, b = repo.get_evidence("t", f"e{i}a"), repo.get_evidence("t", f"e{i}b")
            assert a is not None and b is not None and b.log_index == a.log_index + 1  # type: ignore[operator]


def _evidence_row(evidence_id: str, fill: bytes) -> dict[str, object]:
    return evidence_values(Evidence(
        id=evidence_id, tenant_id="t", kind="receipt", action_id=None, envelope={"payload": evidence_id},
        envelope_digest=(fill * 32).hex(), log_index=None, created_at=NOW,
    ))


def test_counters_start_at_zero(store: Store) -> None:
    assert store.write(lambda repo: repo.next_counter("c")) == 0
    assert store.write(lambda repo: repo.next_counter("c", 5)) == 1
    with store.read() as repo:
        assert repo.counter("c") == 6


def test_fast_path_rows_read_back_like_core_rows(store: Store) -> None:
    """The raw-cursor inserts store values exactly as SQLAlchemy Core would."""
    when = datetime(2026, 3, 4, 5, 6, 7, 891011, tzinfo=UTC)
    core = {"idx": 0, "entry": b"\x01" * 32, "evidence_id": "via-core", "created_at": when}
    store.db.write(lambda conn: conn.execute(sa.insert(s.log_entries), [core]))
    insert = RawInsert(s.log_entries)
    store.db.write(lambda conn: insert.execute(conn, [
        {"idx": 1, "entry": b"\x02" * 32, "evidence_id": "via-raw", "created_at": when}]))
    with store.db.read() as conn:
        rows = conn.execute(sa.select(s.log_entries.c.created_at, s.log_entries.c.entry)
                            .order_by(s.log_entries.c.idx)).all()
        texts = conn.execute(sa.text("SELECT CAST(created_at AS TEXT) FROM log_entries ORDER BY idx")).all()
    assert rows[0][0].replace(tzinfo=UTC) == rows[1][0].replace(tzinfo=UTC) == when
    assert bytes(rows[1][1]) == b"\x02" * 32
    assert texts[0][0] == texts[1][0]  # byte-identical storage, so range queries compare alike


# -- log sequencing in the group-commit writer (store/sequencing.py) ------------------------

def _one_batch(store: Store, jobs: list[Callable[[Repo], Any]]) -> list[Any]:
    """Run ``jobs`` in one writer batch: the writer is held on a first job while they queue."""
    gate, started = threading.Event(), threading.Event()

    def hold(_repo: Repo) -> None:
        started.set()
        gate.wait(10)

    holder = threading.Thread(target=store.write, args=(hold,))
    holder.start()
    started.wait(10)
    results: list[Any] = [None] * len(jobs)

    def run(i: int) -> None:
        try:
            results[i] = store.write(jobs[i])
        except Exception as exc:  # the job's own failure, reported to its caller
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    while store.db._queue.qsize() < len(jobs):  # all queued behind the held job
        threading.Event().wait(0.01)
    batches = store.db.batches
    gate.set()
    for t in [holder, *threads]:
        t.join(10)
    assert store.db.batches == batches + 2  # the held job's batch, then all of these
    return results


def test_a_job_rolled_back_after_recording_evidence_leaves_no_gap(store: Store) -> None:
    store.write(lambda repo: repo.insert_tenant(Tenant("t", "x", NOW)))

    def good(name: str) -> Callable[[Repo], LogTicket]:
        rows = [_evidence_row(f"{name}1", b"\x01"), _evidence_row(f"{name}2", b"\x02")]
        return lambda repo: repo.sequence_evidence(rows, NOW)

    def bad(repo: Repo) -> None:
        repo.sequence_evidence([_evidence_row("bad", b"\x09")], NOW)
        raise NotFoundError("boom")

    a, failed, c = _one_batch(store, [good("a"), bad, good("c")])
    assert isinstance(failed, NotFoundError)
    assert (a.first, a.last, c.first, c.last) == (0, 1, 2, 3)
    with store.read() as repo:
        assert repo.counter("log_size") == 4
        assert len(repo.log_entries_from(0, 100)) == 4
        assert repo.get_evidence("t", "bad") is None
        assert [repo.get_evidence("t", e).log_index for e in ("a1", "a2", "c1", "c2")] == [0, 1, 2, 3]  # type: ignore[union-attr]


def test_a_log_index_is_not_readable_inside_the_job_that_recorded_it(store: Store) -> None:
    store.write(lambda repo: repo.insert_tenant(Tenant("t", "x", NOW)))

    def peek(repo: Repo) -> int:
        return repo.sequence_evidence([_evidence_row("early", b"\x08")], NOW).first

    with pytest.raises(RuntimeError, match="known only after"):
        store.write(peek)
    with store.read() as repo:  # the job failed alone: nothing of it was written
        assert repo.get_evidence("t", "early") is None and repo.counter("log_size") == 0


@pytest.mark.postgres
def test_the_log_lock_is_not_held_while_the_batch_runs() -> None:
    """Another process can take the ``log_size`` row lock while this writer's job runs after
    recording evidence: the lock is taken only when the batch is sequenced, before COMMIT."""
    with pg_database() as url:
        store = Store(url)
        store.migrate()
        other = sa.create_engine("postgresql+psycopg://" + url.removeprefix("postgresql://"))
        try:
            store.write(lambda repo: repo.insert_tenant(Tenant("t", "x", NOW)))
            store.write(lambda repo: repo.sequence_evidence([_evidence_row("first", b"\x07")], NOW))
            recorded, release = threading.Event(), threading.Event()

            def job(repo: Repo) -> LogTicket:
                ticket = repo.sequence_evidence([_evidence_row("second", b"\x06")], NOW)
                recorded.set()
                release.wait(10)
                return ticket

            result: list[LogTicket] = []
            writer = threading.Thread(target=lambda: result.append(store.write(job)))
            writer.start()
            assert recorded.wait(10)
            try:
                with other.begin() as conn:
                    conn.execute(sa.text("SET LOCAL lock_timeout = '2s'"))
                    size = conn.execute(sa.text(
                        "SELECT value FROM counters WHERE name = 'log_size' FOR UPDATE")).scalar_one()
            finally:
                release.set()
                writer.join(10)
            assert size == 1 and result[0].first == 1
        finally:
            other.dispose()
            store.close()
