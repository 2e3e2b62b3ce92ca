"""Attacks on the gateway, with real processes: an agent nesting its messages too deep to
read, filling the gateway's memory of held calls, and calling unknown tools to make the
gateway re-list every upstream; and a config that lets one tool shadow another."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import httpx
import mcp_types as types
import pytest
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream
from gateway_support import Deployment, gateway_params, outbox_calls, write_config
from mcp import Client
from mcp.shared.exceptions import MCPError

from support import bearer

SMALL = {"amount_minor": 1200, "currency": "EUR", "beneficiary": "ACME GmbH"}


def nested(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = {"a": value}
    return value


@pytest.mark.parametrize("mode", ["auto", "legacy"], ids=["2026-07-28", "2025-11-25"])
def test_arguments_nested_200_deep_get_a_prompt_error_not_a_hang(
    deployment: Deployment, tmp_path: Path, mode: str,
) -> None:
    """200 levels is past what the SDK's stdio transport reads: the gateway answers the call
    with a parse error at once (the SDK dropped it, and the client waited forever), nothing is
    authorized or sent, and the next call is served."""
    outbox = tmp_path / "outbox"
    config = write_config(tmp_path / "gateway.yaml", deployment, outbox)
    before = len(deployment.actions())

    async def go() -> tuple[MCPError, types.CallToolResult]:
        async with Client(gateway_params(config, deployment), cache=None, mode=mode) as c:
            with anyio.fail_after(10):
                with pytest.raises(MCPError) as refused:
                    await c.call_tool("tools__broken_tool", {"reason": "x", "deep": nested(200)})
                return refused.value, await c.call_tool("tools__send_payment", SMALL)

    refused, after = anyio.run(go)
    assert refused.error.code == types.PARSE_ERROR, refused.error
    assert "recursion limit" in refused.error.message and "200 levels" in refused.error.message
    assert not after.is_error
    assert outbox_calls(outbox, "broken_tool") == []
    assert len(deployment.actions()) == before + 1  # only the second call was authorized


async def _line(reader: BufferedByteReceiveStream) -> dict[str, Any]:
    return dict(json.loads(await reader.receive_until(b"\n", 1 << 20)))


async def _send(process: Process, message: str) -> None:
    assert process.stdin is not None
    await process.stdin.send(message.encode() + b"\n")


def test_a_hand_written_request_nested_100000_deep_is_answered_by_its_id(
    deployment: Deployment, tmp_path: Path,
) -> None:
    """No SDK on the agent's side: a raw line 100,000 levels deep with its id placed after the
    arguments still gets a parse error for that id, and the gateway serves the next request.
    Warrantor's own HTTP API refuses the same nesting with 422 JSON_TOO_DEEP."""
    config = write_config(tmp_path / "gateway.yaml", deployment, tmp_path / "outbox")
    params = gateway_params(config, deployment)
    deep = '{"a":' * 100_000 + '"x"' + "}" * 100_000
    hello = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "attacker", "version": "0"}}}

    async def go() -> tuple[dict[str, Any], dict[str, Any]]:
        log = (tmp_path / "gateway.log").open("wb")
        async with await anyio.open_process([params.command, *params.args], env=params.env, stderr=log) as process:
            assert process.stdout is not None
            reader = BufferedByteReceiveStream(process.stdout)
            try:
                with anyio.fail_after(30):
                    await _send(process, json.dumps(hello))
                    assert (await _line(reader))["id"] == 1
                    await _send(process, '{"jsonrpc": "2.0", "method": "notifications/initialized"}')
                    await _send(process, '{"jsonrpc": "2.0", "method": "tools/call", "params": {"name": '
                                         '"tools__broken_tool", "arguments": {"deep": ' + deep + '}}, "id": "late"}')
                    refused = await _line(reader)
                    await _send(process, json.dumps({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {
                        "name": "tools__send_payment", "arguments": SMALL}}))
                    return refused, await _line(reader)
            finally:
                process.terminate()
                log.close()

    refused, after = anyio.run(go)
    assert refused["id"] == "late" and refused["error"]["code"] == types.PARSE_ERROR, refused
    assert after["id"] == 3 and not after["result"].get("isError"), after
    r = httpx.post(f"{deployment.url}/v1/actions", headers={**bearer(deployment.gateway_key),
                   "content-type": "application/json"}, timeout=10,
                   content='{"action_type": "mcp.tools.broken_tool", "payload": {"deep": ' + deep + "}}")
    assert (r.status_code, r.json()["code"]) == (422, "JSON_TOO_DEEP"), r.text[:300]


def test_the_memory_of_held_calls_is_bounded_oldest_first(deployment: Deployment, tmp_path: Path) -> None:
    """An agent that gets ever more different calls held cannot grow the gateway's memory:
    with ``approval.max_held_calls: 2`` a third held call makes the gateway forget the first
    (calling it again starts a new held action: fail closed, never an unapproved run), while
    the newest still continue their own."""
    config = write_config(tmp_path / "gateway.yaml", deployment, tmp_path / "outbox", wait=0.2)
    config.write_text(config.read_text().replace("  wait_seconds: 0.2\n", "  wait_seconds: 0.2\n  max_held_calls: 2\n"))
    calls = [{"amount_minor": 6_000_000, "currency": "EUR", "beneficiary": f"Held {i}"} for i in range(3)]

    async def go() -> tuple[list[str], str, str]:
        async with Client(gateway_params(config, deployment), cache=None) as c:
            held = [held_action(await c.call_tool("tools__send_payment", args)) for args in calls]
            newest = held_action(await c.call_tool("tools__send_payment", calls[2]))
            oldest = held_action(await c.call_tool("tools__send_payment", calls[0]))
            return held, newest, oldest

    held, newest, oldest = anyio.run(go)
    assert len(set(held)) == 3
    assert newest == held[2]  # still remembered: the same action continues
    assert oldest != held[0]  # forgotten past the cap: a new held action
    assert deployment.get(f"/v1/actions/{held[0]}").json()["status"] == "pending_approval"


def held_action(result: types.CallToolResult) -> str:
    evidence = (result.meta or {})["io.warrantor/evidence"]
    assert result.is_error and evidence["status"] == "pending_approval", evidence
    return str(evidence["action_id"])


def test_a_burst_of_unknown_tool_names_does_not_relist_the_upstreams_each_time(
    deployment: Deployment, tmp_path: Path,
) -> None:
    """Each unknown name used to make the gateway list every upstream again. 200 of them, half
    at once and half one after another, now cost at most one listing per upstream per
    interval, and the gateway still serves a real call."""
    outbox = tmp_path / "outbox"
    config = write_config(tmp_path / "gateway.yaml", deployment, outbox)  # two upstreams, one outbox

    async def go() -> tuple[list[types.CallToolResult], types.CallToolResult, float]:
        results: list[types.CallToolResult] = []
        async with Client(gateway_params(config, deployment), cache=None) as c:
            started = anyio.current_time()

            async def unknown(i: int) -> None:
                results.append(await c.call_tool(f"tools__no_such_tool_{i}", {}))

            async with anyio.create_task_group() as tg:
                for i in range(100):
                    tg.start_soon(unknown, i)
            for i in range(100, 200):
                await unknown(i)
            elapsed = anyio.current_time() - started
            return results, await c.call_tool("tools__send_payment", SMALL), elapsed

    results, after, elapsed = anyio.run(go)
    assert len(results) == 200 and all(r.is_error and "Unknown tool" in r.content[0].text for r in results)
    assert not after.is_error
    listings = len(outbox_calls(outbox, "tools_list"))
    allowed = 2 * (int(elapsed // 5.0) + 2)  # two upstreams: the first listing, one per 5 s after it, a spare
    assert 2 <= listings <= allowed, (listings, elapsed)


def test_a_tool_mapped_onto_another_tools_action_type_is_refused_with_it(
    deployment: Deployment, tmp_path: Path,
) -> None:
    """The config maps delete_file to send_email's action type, so delete_file would be
    authorized under send_email's policy (and the policy could not tell them apart). Both are
    refused, fail closed: not listed, a call of either is a tool error naming the clash, nothing
    is authorized or sent; the other tools still work."""
    outbox = tmp_path / "outbox"
    config = write_config(tmp_path / "gateway.yaml", deployment, outbox)
    mapping = "    action_types: {delete_file: mcp.tools.send_email}\n"
    config.write_text(config.read_text().replace("    timeout_seconds: 20\n", "    timeout_seconds: 20\n" + mapping, 1))
    before = len(deployment.actions())

    async def go() -> tuple[list[str], list[types.CallToolResult], types.CallToolResult]:
        async with Client(gateway_params(config, deployment), cache=None) as c:
            names = [t.name for t in (await c.list_tools()).tools]
            refused = [await c.call_tool("tools__delete_file", {"path": "/etc/passwd"}),
                       await c.call_tool("tools__send_email", {"to": "a@example.com", "subject": "s"})]
            return names, refused, await c.call_tool("tools__send_payment", SMALL)

    names, refused, after = anyio.run(go)
    assert "tools__send_payment" in names and "tools__broken_tool" in names
    assert "tools__delete_file" not in names and "tools__send_email" not in names
    for result in refused:
        text = result.content[0].text
        assert result.is_error and "refuses" in text and "'mcp.tools.send_email'" in text, text
    assert not after.is_error
    assert outbox_calls(outbox, "delete_file") == [] and outbox_calls(outbox, "send_email") == []
    assert len(deployment.actions()) == before + 1  # only the payment was authorized
