"""The upstream tool lists are fetched at most once per interval, however many callers ask,
and a failed fetch is not retried before the interval is over."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

pytest.importorskip("mcp")

from warrantor.mcp_gateway.upstreams import LIST_INTERVAL_SECONDS, ExposedTool, UpstreamListingError, Upstreams


class CountingUpstreams(Upstreams):
    """No real upstream: each fetch is counted, takes a moment, and fails while ``failing``."""

    def __init__(self) -> None:
        self.now = 1000.0
        super().__init__((), clock=lambda: self.now)
        self.fetches = 0
        self.failing = False

    async def _fetch_tools(self) -> list[ExposedTool]:
        self.fetches += 1
        await anyio.sleep(0.01)
        if self.failing:
            raise ConnectionError("upstream down")
        return []


def run(fn: Any) -> Any:
    return anyio.run(fn)


def test_concurrent_and_repeated_callers_share_one_fetch_per_interval() -> None:
    up = CountingUpstreams()

    async def burst() -> None:
        async with anyio.create_task_group() as tg:
            for _ in range(50):
                tg.start_soon(up.tools)
        for _ in range(50):
            await up.tools()

    run(burst)
    assert up.fetches == 1
    up.now += LIST_INTERVAL_SECONDS - 0.1
    run(up.tools)
    assert up.fetches == 1
    up.now += 0.1
    run(up.tools)
    assert up.fetches == 2


def test_a_failed_fetch_is_not_retried_within_the_interval() -> None:
    up = CountingUpstreams()
    up.failing = True
    with pytest.raises(ConnectionError):
        run(up.tools)
    for _ in range(20):
        with pytest.raises(UpstreamListingError, match="upstream down"):
            run(up.tools)
    assert up.fetches == 1
    up.failing = False
    up.now += LIST_INTERVAL_SECONDS
    assert run(up.tools) == [] and up.fetches == 2
