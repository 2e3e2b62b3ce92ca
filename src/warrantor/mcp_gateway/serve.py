"""Serving the gateway to MCP clients over stdio or Streamable HTTP (``warrantor mcp-gateway``).

The MCP server is the official SDK's low-level ``Server``; it speaks the 2026-07-28 protocol
(per-request envelope) and the handshake-era revisions before it (2025-11-25 and older), and
the client's first request decides which. What a held call can show the client depends on
both the era and the client's declared capabilities (``gateway.Interaction``). Over stdio, a
request the SDK cannot read (nested deeper than its parser goes) is answered with a parse
error for its id instead of dropped (``unreadable``).

Over HTTP the gateway acts for the agent its Warrantor key is bound to, so whoever can reach
it can act as that agent: it refuses to listen beyond loopback without ``http.token`` (a
bearer token every request must carry), and the SDK's DNS-rebinding protection stays on.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import mcp_types as types
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.exceptions import MCPError
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from starlette.types import ASGIApp, Receive, Scope, Send

from warrantor import __version__
from warrantor.client import AsyncClient
from warrantor.errors import WarrantorError
from warrantor.mcp_gateway.config import GatewayConfig
from warrantor.mcp_gateway.gateway import Gateway, Interaction
from warrantor.mcp_gateway.unreadable import AnsweringReader
from warrantor.mcp_gateway.upstreams import Upstreams

log = logging.getLogger(__name__)


@asynccontextmanager
async def open_gateway(config: GatewayConfig) -> AsyncIterator[Gateway]:
    """The Warrantor client and every upstream, open for as long as the gateway serves."""
    async with AsyncClient(config.warrantor_url, config.api_key, timeout=30.0) as wr, \
            Upstreams(config.upstreams) as upstreams:
        yield Gateway(config, upstreams, wr)


def build_server(gateway: Gateway) -> Server[Any]:
    async def list_tools(ctx: Any, params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
        try:
            return types.ListToolsResult(tools=await gateway.list_tools())
        except WarrantorError as exc:  # fail closed: no list without the policy's outlook
            raise MCPError(types.INTERNAL_ERROR, f"Warrantor could not be asked about these tools: "
                                                 f"{exc.code}: {exc.message}") from exc

    async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult | \
            types.InputRequiredResult:
        return await gateway.call_tool(params.name, params.arguments, interaction_for(ctx, params))

    return Server("warrantor-mcp-gateway", version=__version__,
                  instructions="Every tool call is authorized by Warrantor; some wait for a human's approval.",
                  on_list_tools=list_tools, on_call_tool=call_tool)


def interaction_for(ctx: Any, params: types.CallToolRequestParams) -> Interaction:
    caps = ctx.session.client_capabilities
    elicitation = caps.elicitation if caps is not None else None
    url_ok = elicitation is not None and elicitation.url is not None
    # A bare ``elicitation: {}`` (the 2025-06-18 form) means form mode.
    form_ok = elicitation is not None and (elicitation.form is not None or elicitation.url is None)
    if not (url_ok or form_ok):
        return Interaction("none")
    if ctx.protocol_version in MODERN_PROTOCOL_VERSIONS:
        return Interaction("input_required", url=url_ok, form=form_ok, responses=params.input_responses)

    async def elicit_url(message: str, url: str, elicitation_id: str) -> str:
        result = await ctx.session.elicit_url(message, url, elicitation_id, related_request_id=ctx.request_id)
        return str(result.action)

    async def elicit_form(message: str, schema: dict[str, Any]) -> types.ElicitResult:
        result: types.ElicitResult = await ctx.session.elicit_form(message, schema, related_request_id=ctx.request_id)
        return result

    return Interaction("elicit", url=url_ok, form=form_ok, elicit_url=elicit_url, elicit_form=elicit_form)


async def serve_stdio(config: GatewayConfig) -> None:
    async with open_gateway(config) as gateway:
        server = build_server(gateway)
        async with stdio_server() as (read, write):
            await server.run(AnsweringReader(read, write), write, server.create_initialization_options())


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class BearerToken:
    """Every HTTP request must carry ``Authorization: Bearer <http.token>`` (constant-time check)."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self._app, self._expected = app, f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            given = dict(scope.get("headers") or []).get(b"authorization", b"")
            if not hmac.compare_digest(given, self._expected):
                body = b'{"error": "expected Authorization: Bearer <the gateway token>"}'
                await send({"type": "http.response.start", "status": 401,
                            "headers": [(b"content-type", b"application/json"),
                                        (b"www-authenticate", b"Bearer"),
                                        (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
                return
        await self._app(scope, receive, send)


async def serve_http(config: GatewayConfig, host: str, port: int) -> None:
    import uvicorn

    if config.http_token is None and not is_loopback(host):
        raise ValueError(f"refusing to serve on {host} without http.token: anyone who can reach the gateway "
                         f"could act as its agent")
    async with open_gateway(config) as gateway:
        server = build_server(gateway)
        hosts = [f"{host}:*", "127.0.0.1:*", "localhost:*"] if not is_loopback(host) else \
            ["127.0.0.1:*", "localhost:*", "[::1]:*"]
        security = TransportSecuritySettings(
            enable_dns_rebinding_protection=True, allowed_hosts=hosts,
            allowed_origins=[f"http://{h}" for h in hosts] + [f"https://{h}" for h in hosts],
        )
        app: ASGIApp = server.streamable_http_app(host=host, transport_security=security)
        if config.http_token is not None:
            app = BearerToken(app, config.http_token)
        uv = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                                           lifespan="on"))
        await uv.serve()
