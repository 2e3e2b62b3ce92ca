"""Fixtures: ``env`` (SQLite), ``pg_env`` (PostgreSQL), ``store_env`` (both, parametrized)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from support import Env, make_env, pg_database


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    with make_env(tmp_path) as e:
        yield e


@pytest.fixture
def pg_url() -> Iterator[str]:
    with pg_database() as url:
        yield url


@pytest.fixture
def pg_env(tmp_path: Path, pg_url: str) -> Iterator[Env]:
    with make_env(tmp_path, pg_url) as e:
        yield e


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Env]:
    """The same test on both stores: the contract every Store implementation keeps."""
    if request.param == "sqlite":
        with make_env(tmp_path) as e:
            yield e
    else:
        with pg_database() as url, make_env(tmp_path, url) as e:
            yield e
