"""``Store.read_lazy``: no transaction until a query needs one; then one snapshot for the block."""

from __future__ import annotations

from pathlib import Path

import pytest

from warrantor.store import Store, sqlite_url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    url = sqlite_url(tmp_path) if request.param == "sqlite" else request.getfixturevalue("pg_url")
    s = Store(url)
    s.migrate()
    request.addfinalizer(s.close)
    return s


def test_a_block_that_reads_nothing_checks_out_no_connection(store: Store) -> None:
    pool = store.db.reader_engine.pool
    before = pool.checkedout()
    with store.read_lazy() as repo:
        assert pool.checkedout() == before
        assert repo.dialect == store.dialect
    assert pool.checkedout() == before


def test_once_begun_every_query_of_the_block_reads_one_snapshot(store: Store) -> None:
    store.write(lambda repo: repo.next_counter("lazy", 1))
    with store.read_lazy() as repo:
        first = repo.counter("lazy")
        store.write(lambda r: r.next_counter("lazy", 5))  # committed meanwhile by the writer
        assert repo.counter("lazy") == first  # same snapshot within the block
    with store.read_lazy() as repo:
        assert repo.counter("lazy") == first + 5


def test_an_error_in_the_block_releases_the_connection(store: Store) -> None:
    pool = store.db.reader_engine.pool
    before = pool.checkedout()
    with pytest.raises(RuntimeError), store.read_lazy() as repo:
        repo.counter("lazy")
        raise RuntimeError("boom")
    assert pool.checkedout() == before
