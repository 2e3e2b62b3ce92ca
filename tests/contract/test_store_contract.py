"""The Store contract: what every implementation (SQLite, PostgreSQL) guarantees.

Run against both stores; a new implementation passes this file or is not a Store.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from support import pg_database
from warrantor.domain.model import Evidence, Tenant
from warrantor.errors import NotFoundError
from warrantor.store import Repo, Store, UniqueViolationError
from warrantor.store import schema as s
from warrantor.store.fastpath import RawInsert
from warrantor.store.repo import evidence_values

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
        first = store.write(lambda repo: repo.sequence_evidence(rows, NOW))
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
