"""The MCP servers behind the gateway: connecting, listing their tools, calling one.

Each upstream is one ``mcp.Client``: a stdio server is started as a child process with only
the variables its config names (plus the SDK's minimal default environment: ``PATH``,
``HOME``...), so the gateway's own Warrantor key never reaches it; a URL is reached over
Streamable HTTP. A call that does not answer within the upstream's ``timeout_seconds`` is
abandoned: the caller learns it is *uncertain* whether it ran.

The tool lists are fetched from the upstreams at most once per ``LIST_INTERVAL_SECONDS``,
however many ``tools/list`` requests or calls of unknown tool names the gateway's clients
make, and concurrent callers share one fetch: an agent cannot turn its requests into
``tools/list`` load on every upstream. A failed fetch is not retried within the interval
either; until then its error is raised again.

No exposed tool may shadow another: tools that share an exposed name, or an action type
(the identity the policy sees), are all refused, not exposed, with a logged error, until
the upstreams or the config make them unique (:func:`refuse_duplicates`). The config
already refuses what it can know of this before anything starts (``config``).
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import anyio
import mcp_types as types
from mcp import Client, StdioServerParameters
from mcp.client.stdio import get_default_environment
from mcp.shared.exceptions import MCPError

from warrantor.mcp_gateway.config import Upstream

log = logging.getLogger(__name__)

MAX_TOOL_PAGES = 50
LIST_INTERVAL_SECONDS = 5.0


@dataclass(frozen=True)
class ExposedTool:
    """A tool as the gateway's clients see it, and where it really lives."""

    name: str  # the name clients call
    upstream: Upstream
    tool: types.Tool  # the upstream's declaration (its own name, schema, annotations)

    @property
    def action_type(self) -> str:
        return self.upstream.action_type(self.tool.name)


class CallOutcome:
    """What came back from one upstream call."""

    COMPLETED = "completed"  # a result; ``result.is_error`` says whether the tool failed
    REFUSED = "refused"  # the upstream answered with a protocol error: the tool did not run
    UNCERTAIN = "uncertain"  # timeout, broken connection or unreadable reply: it may have run


@dataclass(frozen=True)
class CallResult:
    outcome: str
    result: types.CallToolResult | None
    error: str | None = None


class UpstreamListingError(Exception):
    """The upstream tool lists could not be fetched recently, so they are not asked again yet."""


class Upstreams:
    """Every configured upstream, connected for the gateway's lifetime (``async with``)."""

    def __init__(self, upstreams: tuple[Upstream, ...], clock: Callable[[], float] = time.monotonic) -> None:
        self._config = upstreams
        self._clients: dict[str, Client] = {}
        self._stack = AsyncExitStack()
        self._clock = clock
        self._listing_lock = anyio.Lock()
        self._listed: list[ExposedTool] = []
        self._refused: dict[str, str] = {}  # exposed name -> why it is refused (duplicates)
        self._listed_at = -math.inf  # when the last fetch started
        self._listing_error: str | None = None  # why the last fetch failed, if it did

    async def __aenter__(self) -> Upstreams:
        try:
            for upstream in self._config:
                self._clients[upstream.name] = await self._stack.enter_async_context(self._client(upstream))
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()

    @staticmethod
    def _client(upstream: Upstream) -> Client:
        if upstream.command is not None:
            params = StdioServerParameters(
                command=upstream.command[0], args=list(upstream.command[1:]),
                env={**get_default_environment(), **dict(upstream.env)}, cwd=os.getcwd(),
            )
            return Client(params, cache=None, read_timeout_seconds=upstream.timeout_seconds)
        assert upstream.url is not None  # the config requires one of the two
        return Client(upstream.url, cache=None, read_timeout_seconds=upstream.timeout_seconds)

    async def tools(self) -> list[ExposedTool]:
        """All upstream tools, fetched again only once ``LIST_INTERVAL_SECONDS`` have passed since
        the last fetch started (the module docstring); raises if that fetch failed."""
        async with self._listing_lock:
            age = self._clock() - self._listed_at
            if age >= LIST_INTERVAL_SECONDS:
                self._listed_at, self._listing_error = self._clock(), None
                try:
                    self._listed, self._refused = refuse_duplicates(await self._fetch_tools())
                except Exception as exc:
                    self._listing_error = f"{type(exc).__name__}: {exc}"
                    raise
            elif self._listing_error is not None:
                raise UpstreamListingError(f"listing the upstream tools failed {age:.1f} s ago "
                                           f"({self._listing_error}); the next try is after "
                                           f"{LIST_INTERVAL_SECONDS:g} s")
            return list(self._listed)

    @property
    def refused(self) -> Mapping[str, str]:
        """The exposed names the last listing refused, and why."""
        return self._refused

    async def _fetch_tools(self) -> list[ExposedTool]:
        """Every upstream's tools; names are prefixed ``<server>__`` when there is more than one upstream."""
        prefixed = len(self._config) > 1
        exposed: list[ExposedTool] = []
        for upstream in self._config:
            client = self._clients[upstream.name]
            cursor: str | None = None
            for _ in range(MAX_TOOL_PAGES):
                with anyio.fail_after(upstream.timeout_seconds):
                    page = await client.list_tools(cursor=cursor)
                for tool in page.tools:
                    name = f"{upstream.name}__{tool.name}" if prefixed else tool.name
                    exposed.append(ExposedTool(name, upstream, tool))
                cursor = page.next_cursor
                if not cursor:
                    break
        return exposed

    async def call(self, tool: ExposedTool, arguments: Mapping[str, Any]) -> CallResult:
        """Call ``tool`` upstream; never raises for what the upstream does."""
        client = self._clients[tool.upstream.name]
        try:
            with anyio.fail_after(tool.upstream.timeout_seconds):
                result = await client.call_tool(tool.tool.name, dict(arguments))
        except TimeoutError:
            return CallResult(CallOutcome.UNCERTAIN, None,
                              f"no answer from {tool.upstream.name} within {tool.upstream.timeout_seconds:g} s")
        except Exception as exc:  # the SDK's errors: protocol error, broken pipe, invalid reply
            return _classify(tool, exc)
        if not isinstance(result, types.CallToolResult):
            return CallResult(CallOutcome.UNCERTAIN, None,
                              f"{tool.upstream.name} answered with a {type(result).__name__}, not a tool result")
        return CallResult(CallOutcome.COMPLETED, result)


def refuse_duplicates(tools: list[ExposedTool]) -> tuple[list[ExposedTool], dict[str, str]]:
    """``tools`` less every tool that shares its exposed name or its action type with another
    (all of them: which one would win is not the gateway's to guess), and why each refused
    name is refused. Each duplicate is logged as an error."""
    groups: dict[tuple[str, str], list[ExposedTool]] = defaultdict(list)
    for tool in tools:
        groups["exposed name", tool.name].append(tool)
        groups["action type", tool.action_type].append(tool)
    refused: dict[str, str] = {}
    for (what, value), group in groups.items():
        if len(group) > 1:
            sources = ", ".join(f"{t.upstream.name}/{t.tool.name}" for t in group)
            reason = f"the {what} {value!r} belongs to more than one upstream tool ({sources})"
            log.error("refusing to expose %s: %s; make them unique (the upstreams' tool names or the "
                      "config's action_types)", ", ".join(sorted({t.name for t in group})), reason)
            for tool in group:
                refused.setdefault(tool.name, reason)
    return [t for t in tools if t.name not in refused], refused


def _classify(tool: ExposedTool, exc: Exception) -> CallResult:
    name = tool.upstream.name
    if isinstance(exc, MCPError):
        # A JSON-RPC error answer: the upstream refused the request (unknown tool, invalid
        # params). The SDK also reports a request timeout and a closed connection as an
        # MCPError, and then nobody knows whether the tool ran.
        if exc.args and exc.args[0] in (types.REQUEST_TIMEOUT, types.CONNECTION_CLOSED):
            return CallResult(CallOutcome.UNCERTAIN, None, f"{name}: {exc}")
        return CallResult(CallOutcome.REFUSED, None, f"{name} refused the call: {exc}")
    log.warning("upstream %s failed during a call: %s: %s", name, type(exc).__name__, exc)
    return CallResult(CallOutcome.UNCERTAIN, None, f"{name} failed during the call ({type(exc).__name__}: {exc})")
