"""The ``browser`` fixture (see ``chromium.py``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from chromium import launch


@pytest.fixture
def browser() -> Iterator[Any]:
    with launch() as b:
        yield b
