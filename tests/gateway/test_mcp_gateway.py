"""The MCP gateway with real processes: Warrantor, the gateway, the project's tools server,
and the official SDK's client as the agent. Each test looks at what reached the tools
server (its outbox files), what Warrantor recorded, and what ``warrantor verify`` says."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import httpx
import mcp_types as types
import pytest
from gateway_support import (
    Deployment,
    gateway_params,
    outbox_calls,
    upload_mcp_policy,
    write_config,
)
from mcp import Client

from support import decide_in_console

META = "io.warrantor/evidence"
SMALL = {"amount_minor": 1200, "currency": "EUR", "beneficiary": "ACME GmbH"}
BIG = {"amount_minor": 6_000_000, "currency": "EUR", "beneficiary": "ACME GmbH"}
HUGE = {"amount_minor": 200_000_000, "currency": "EUR", "beneficiary": "ACME GmbH"}


def run(fn: Callable[[], Awaitable[Any]]) -> Any:
    return anyio.run(fn)


def client(config: Path, deployment: Deployment, *, mode: str = "auto", **kwargs: Any) -> Client:
    return Client(gateway_params(config, deployment), cache=None, mode=mode, **kwargs)


def evidence(result: Any) -> dict[str, Any]:
    return dict((result.meta or {})[META])


def text(result: Any) -> str:
    return "\n".join(b.text for b in result.content if isinstance(b, types.TextContent))


def verify_receipt(deployment: Deployment, receipt_id: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    """``warrantor verify`` on the receipt's proof bundle, offline, against the trust bundle."""
    bundle = deployment.get(f"/v1/receipts/{receipt_id}/bundle")
    assert bundle.status_code == 200, bundle.text
    trust = httpx.get(f"{deployment.url}/v1/trust", timeout=10)
    (tmp / f"{receipt_id}.json").write_text(bundle.text)
    (tmp / "trust.json").write_text(trust.text)
    return subprocess.run(
        [sys.executable, "-m", "warrantor.cli.main", "verify", str(tmp / f"{receipt_id}.json"),
         "--trust", str(tmp / "trust.json")], capture_output=True, text=True, timeout=60, check=False,
    )


def statement(deployment: Deployment, receipt_id: str) -> dict[str, Any]:
    import base64

    envelope = deployment.get(f"/v1/receipts/{receipt_id}").json()["envelope"]
    return dict(json.loads(base64.b64decode(envelope["payload"])))


@pytest.mark.parametrize("mode", ["auto", "legacy"], ids=["2026-07-28", "2025-11-25"])
def test_allowed_call_is_forwarded_and_notarized_as_witnessed(
    deployment: Deployment, tmp_path: Path, mode: str,
) -> None:
    outbox = tmp_path / "outbox"
    config = write_config(tmp_path / "gateway.yaml", deployment, outbox)

    async def go() -> tuple[str, Any]:
        async with client(config, deployment, mode=mode) as c:
            return c.protocol_version, await c.call_tool("tools__send_payment", SMALL)

    version, result = run(go)
    assert version == ("2026-07-28" if mode == "auto" else "2025-11-25")
    assert not result.is_error, text(result)
    assert result.structured_content["status"] == "sent"
    assert [c["arguments"] for c in outbox_calls(outbox, "send_payment")] == [SMALL]
    ev = evidence(result)
    assert ev["status"] == "notarized" and ev["evidence_grade"] == "witnessed"
    action = deployment.get(f"/v1/actions/{ev['action_id']}").json()
    assert action["action_type"] == "mcp.tools.send_payment" and action["agent_id"] == "payments-agent"
    signed = statement(deployment, ev["receipt_id"])
    predicate = signed["predicate"]
    assert predicate["evidence_grade"] == "witnessed"
    assert predicate["witness"]["request_sha256"].startswith("sha256:")
    assert predicate["witness"]["target"] == "mcp:tools/send_payment"
    verified = verify_receipt(deployment, ev["receipt_id"], tmp_path)
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_denied_call_never_reaches_the_upstream(deployment: Deployment, tmp_path: Path) -> None:
    outbox = tmp_path / "outbox"
    config = write_config(tmp_path / "gateway.yaml", deployment, outbox)

    async def go() -> Any:
        async with client(config, deployment) as c:
            return await c.call_tool("tools__send_payment", HUGE)

    result = run(go)
    assert result.is_error
    assert "AMOUNT_CAP" in text(result) and "payment-cap" in text(result)
    ev = evidence(result)
    assert ev["status"] == "denied" and ev["receipt_id"] in text(result)
    assert outbox_calls(outbox, "send_payment") == []
    verified = verify_receipt(deployment, ev["receipt_id"], tmp_path)
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_arguments_that_break_the_tool_schema_are_refused_before_authorizing(
    deployment: Deployment, tmp_path: Path,
) -> None:
    outbox = tmp_path / "outbox"
    config = write_config(tmp_path / "gateway.yaml", deployment, outbox)
    before = len(deployment.actions())

    async def go() -> Any:
        async with client(config, deployment) as c:
            return await c.call_tool("tools__send_payment", {**SMALL, "amount_minor": "lots"})

    result = run(go)
    assert result.is_error and "amount_minor" in text(result) and "input schema" in text(result)
    assert len(deployment.actions()) == before  # nothing was authorized
    assert outbox_calls(outbox, "send_payment") == []


def test_tools_list_hides_denied_tools_and_marks_those_needing_approval(
    deployment: Deployment, tmp_path: Path,
) -> None:
    config = write_config(tmp_path / "gateway.yaml", deployment, tmp_path / "outbox")

    async def go() -> list[types.Tool]:
        async with client(config, deployment) as c:
            return list((await c.list_tools()).tools)

    tools = {t.name: t for t in run(go)}
    assert "tools__delete_file" not in tools  # forbidden outright by rule no-deletes
    assert "tools__send_payment" in tools and "tools__send_email" in tools
    assert tools["tools__send_payment"].meta["io.warrantor/approval"]["approval"] == "sometimes"
    assert "human's approval" in (tools["tools__send_payment"].description or "")
    assert tools["tools__broken_tool"].meta["io.warrantor/approval"]["approval"] is None


def test_held_call_returns_pending_and_continues_after_approval(deployment: Deployment, tmp_path: Path) -> None:
    """A client without URL elicitation: a pending tool result with the link; once a human
    approves (here through the console's HTTP forms; the browser test clicks), the same call
    runs as the approved action; other arguments are a new action."""
    outbox = tmp_path / "outbox"
    config = write_config(tmp_path / "gateway.yaml", deployment, outbox, wait=0.5)

    async def go() -> tuple[Any, Any, Any]:
        async with client(config, deployment) as c:
            pending = await c.call_tool("tools__send_payment", BIG)
            other = await c.call_tool("tools__send_payment", {**BIG, "beneficiary": "Other GmbH"})
            assert outbox_calls(outbox, "send_payment") == []
            await anyio.to_thread.run_sync(approve_in_console, deployment, evidence(pending)["action_id"])
            done = await c.call_tool("tools__send_payment", BIG)
            return pending, other, done

    pending, other, done = run(go)
    assert pending.is_error and "held for a human's approval" in text(pending)
    held = evidence(pending)
    assert held["status"] == "pending_approval"
    assert held["approval_url"] == f"{deployment.url}/console/actions/{held['action_id']}"
    assert "APR-" not in text(pending)  # never an approval code: the client is the agent's side
    assert evidence(other)["action_id"] != held["action_id"]  # other arguments: another action
    assert not done.is_error, text(done)
    assert evidence(done)["action_id"] == held["action_id"]
    assert evidence(done)["status"] == "notarized"
    assert [c["arguments"] for c in outbox_calls(outbox, "send_payment")] == [BIG]
    verified = verify_receipt(deployment, evidence(done)["receipt_id"], tmp_path)
    assert verified.returncode == 0, verified.stdout + verified.stderr


def approve_in_console(deployment: Deployment, action_id: str) -> None:
    """An approver logs in to the console and approves (HTTP forms, as the browser would)."""
    decide_in_console(deployment.url, deployment.demo["console_email"], deployment.demo["console_password"],
                      action_id)
    status = deployment.get(f"/v1/actions/{action_id}").json()["status"]
    assert status == "approved", status


def test_held_call_that_nobody_approves_expires_with_a_receipt(deployment: Deployment, tmp_path: Path) -> None:
    outbox = tmp_path / "outbox"
    config = write_config(tmp_path / "gateway.yaml", deployment, outbox, wait=6)
    upload_mcp_policy(deployment.url, deployment.demo["admin_key"], "approvals:\n  default_ttl_seconds: 2\n")
    try:
        async def go() -> Any:
            async with client(config, deployment) as c:
                return await c.call_tool("tools__send_payment", BIG)

        result = run(go)
    finally:
        upload_mcp_policy(deployment.url, deployment.demo["admin_key"])
    assert result.is_error and "expired" in text(result)
    ev = evidence(result)
    assert ev["status"] == "expired" and ev["receipt_id"]
    assert outbox_calls(outbox, "send_payment") == []
    verified = verify_receipt(deployment, ev["receipt_id"], tmp_path)
    assert verified.returncode == 0, verified.stdout + verified.stderr


@pytest.mark.parametrize("mode", ["auto", "legacy"], ids=["2026-07-28", "2025-11-25"])
def test_url_elicitation_shows_the_console_page_and_the_call_runs_once_approved(
    deployment: Deployment, tmp_path: Path, mode: str,
) -> None:
    """A client with URL-mode elicitation is shown the held action's console page (never a
    code); the human approves there while the call waits; the call then runs."""
    outbox = tmp_path / "outbox"
    config = write_config(tmp_path / "gateway.yaml", deployment, outbox, wait=30)
    shown: list[types.ElicitRequestURLParams] = []

    async def on_elicit(context: Any, params: Any) -> types.ElicitResult:
        assert isinstance(params, types.ElicitRequestURLParams), params
        shown.append(params)
        action_id = params.url.rsplit("/", 1)[1]
        # The user follows the link and approves in the console.
        await anyio.to_thread.run_sync(approve_in_console, deployment, action_id)
        return types.ElicitResult(action="accept")

    async def go() -> Any:
        async with client(config, deployment, mode=mode, elicitation_callback=on_elicit) as c:
            return await c.call_tool("tools__send_payment", {**BIG, "beneficiary": f"Elicit {mode}"})

    result = run(go)
    assert len(shown) == 1
    assert shown[0].url.startswith(f"{deployment.url}/console/actions/act_")
    assert "APR-" not in shown[0].url and "APR-" not in shown[0].message
    assert not result.is_error, text(result)
    assert evidence(result)["status"] == "notarized"
    assert [c["arguments"]["beneficiary"] for c in outbox_calls(outbox, "send_payment")] == [f"Elicit {mode}"]


def test_a_client_that_never_answers_the_elicitation_gets_the_pending_result(
    deployment: Deployment, tmp_path: Path,
) -> None:
    """A 2025-11-25 client that accepts the elicitation request but never answers it: the
    call still ends within the approval wait, with the pending result and its link."""
    outbox = tmp_path / "outbox"
    config = write_config(tmp_path / "gateway.yaml", deployment, outbox, wait=2)
    asked: list[Any] = []

    async def never(context: Any, params: Any) -> types.ElicitResult:
        asked.append(params)
        await anyio.sleep(3600)
        raise AssertionError("unreachable")

    async def go() -> Any:
        async with client(config, deployment, mode="legacy", elicitation_callback=never) as c:
            with anyio.fail_after(20):
                return await c.call_tool("tools__send_payment", {**BIG, "beneficiary": "Silent client"})

    result = run(go)
    assert len(asked) == 1
    assert result.is_error and "held for a human's approval" in text(result)
    assert evidence(result)["status"] == "pending_approval"
    assert evidence(result)["approval_url"] == asked[0].url
    assert outbox_calls(outbox, "send_payment") == []


def test_upstream_failures_end_failed_or_uncertain_never_hang(deployment: Deployment, tmp_path: Path) -> None:
    outbox = tmp_path / "outbox"
    config = write_config(tmp_path / "gateway.yaml", deployment, outbox)

    async def go() -> tuple[Any, Any]:
        async with client(config, deployment) as c:
            broken = await c.call_tool("tools__broken_tool", {"reason": "card declined"})
            with anyio.fail_after(15):  # the upstream's timeout is 1 s: no hung client
                slow = await c.call_tool("slow__slow_payment", {"seconds": 5})
            return broken, slow

    broken, slow = run(go)
    assert broken.is_error and "card declined" in text(broken)
    failed = evidence(broken)
    assert failed["status"] == "failed" and failed["receipt_id"]
    assert statement(deployment, failed["receipt_id"])["predicate"]["evidence_grade"] == "witnessed"
    assert slow.is_error and "may or may not have run" in text(slow)
    uncertain = evidence(slow)
    assert deployment.get(f"/v1/actions/{uncertain['action_id']}").json()["status"] == "uncertain"


def test_warrantor_unreachable_fails_closed(deployment: Deployment, tmp_path: Path) -> None:
    from support import free_port

    outbox = tmp_path / "outbox"
    config = write_config(tmp_path / "gateway.yaml", deployment, outbox)
    config.write_text(config.read_text().replace(deployment.url, f"http://127.0.0.1:{free_port()}"))

    async def go() -> Any:
        async with client(config, deployment) as c:
            return await c.call_tool("tools__send_payment", SMALL)

    result = run(go)
    assert result.is_error and "could not be reached" in text(result)
    assert outbox_calls(outbox, "send_payment") == []


def test_a_hidden_tool_called_by_name_is_still_denied(deployment: Deployment, tmp_path: Path) -> None:
    """Hiding is a courtesy: an agent that calls a tool it was not shown is authorized like
    any other call, and the policy's deny stops it before the upstream."""
    outbox = tmp_path / "outbox"
    config = write_config(tmp_path / "gateway.yaml", deployment, outbox)

    async def go() -> Any:
        async with client(config, deployment) as c:
            return await c.call_tool("tools__delete_file", {"path": "/etc/passwd"})

    result = run(go)
    assert result.is_error and "TOOL_FORBIDDEN" in text(result)
    assert evidence(result)["status"] == "denied"
    assert outbox_calls(outbox, "delete_file") == []


def test_an_approval_covers_only_the_exact_arguments(deployment: Deployment, tmp_path: Path) -> None:
    outbox = tmp_path / "outbox"
    config = write_config(tmp_path / "gateway.yaml", deployment, outbox, wait=0.3)
    approved = {**BIG, "beneficiary": "Exact GmbH"}
    swapped = {**BIG, "beneficiary": "Attacker Ltd"}

    async def go() -> Any:
        async with client(config, deployment) as c:
            pending = await c.call_tool("tools__send_payment", approved)
            await anyio.to_thread.run_sync(approve_in_console, deployment, evidence(pending)["action_id"])
            return pending, await c.call_tool("tools__send_payment", swapped)

    pending, attempt = run(go)
    assert attempt.is_error and evidence(attempt)["status"] == "pending_approval"
    assert evidence(attempt)["action_id"] != evidence(pending)["action_id"]
    assert outbox_calls(outbox, "send_payment") == []  # neither ran: one waits to be called, one to be approved


def grant_for_mail(deployment: Deployment) -> str:
    r = httpx.post(f"{deployment.url}/v1/grants", headers={"Authorization": f"Bearer {deployment.demo['app_key']}"},
                   json={"agent_id": "payments-agent", "subject": "user-42",
                         "scopes": [{"scope": "mail", "decision": "confirm", "resources": ["to:*"],
                                     "confirm_prompt_hint": "Send this e-mail"}]}, timeout=10)
    assert r.status_code == 201, r.text
    return str(r.json()["authorization_id"])


@pytest.mark.parametrize("mode", ["auto", "legacy"], ids=["2026-07-28", "2025-11-25"])
@pytest.mark.parametrize("answer", [True, False], ids=["confirmed", "declined"])
def test_end_user_confirmation_by_form_elicitation_is_recorded_as_presence(
    deployment: Deployment, tmp_path: Path, mode: str, answer: bool,
) -> None:
    outbox = tmp_path / "outbox"
    auth = grant_for_mail(deployment)
    config = write_config(tmp_path / "gateway.yaml", deployment, outbox, wait=5, extra="")
    config.write_text(config.read_text()
                      .replace("  api_key_env: TEST_GATEWAY_KEY\n",
                               f"  api_key_env: TEST_GATEWAY_KEY\n  authorization_id: {auth}\n")
                      .replace("    timeout_seconds: 20\n",
                               "    timeout_seconds: 20\n    scopes:\n"
                               "      send_email: {scope: mail, resource: \"to:{to}\"}\n", 1))
    asked: list[Any] = []

    async def on_elicit(context: Any, params: Any) -> types.ElicitResult:
        assert isinstance(params, types.ElicitRequestFormParams), params
        asked.append(params)
        return types.ElicitResult(action="accept", content={"confirm": answer})

    mail = {"to": "team@example.com", "subject": f"hello {mode} {answer}", "body": "hi"}

    async def go() -> Any:
        async with client(config, deployment, mode=mode, elicitation_callback=on_elicit) as c:
            return await c.call_tool("tools__send_email", mail)

    result = run(go)
    assert len(asked) == 1 and "team@example.com" in asked[0].message
    ev = evidence(result)
    action = deployment.get(f"/v1/actions/{ev['action_id']}").json()
    (approval,) = action["approvals"]
    assert approval["via"] == "mcp-elicitation" and approval["approver"] == "end-user:user-42"
    sent = [c["arguments"] for c in outbox_calls(outbox, "send_email")]
    if answer:
        assert not result.is_error, text(result)
        assert ev["status"] == "notarized" and sent == [mail]
    else:
        assert result.is_error and ev["status"] == "denied_by_user" and sent == []


def test_end_user_confirmation_without_form_support_stays_pending(deployment: Deployment, tmp_path: Path) -> None:
    outbox = tmp_path / "outbox"
    auth = grant_for_mail(deployment)
    config = write_config(tmp_path / "gateway.yaml", deployment, outbox, wait=0.3)
    config.write_text(config.read_text()
                      .replace("  api_key_env: TEST_GATEWAY_KEY\n",
                               f"  api_key_env: TEST_GATEWAY_KEY\n  authorization_id: {auth}\n")
                      .replace("    timeout_seconds: 20\n",
                               "    timeout_seconds: 20\n    scopes:\n"
                               "      send_email: {scope: mail, resource: \"to:{to}\"}\n", 1))

    async def go() -> Any:
        async with client(config, deployment) as c:
            return await c.call_tool("tools__send_email", {"to": "x@example.com", "subject": "s"})

    result = run(go)
    assert result.is_error and "end user's confirmation" in text(result)
    assert evidence(result)["status"] == "pending_confirmation"
    assert outbox_calls(outbox, "send_email") == []


def test_identical_calls_at_the_same_time_share_one_held_action(deployment: Deployment, tmp_path: Path) -> None:
    """Two identical calls racing: one action held, both answered with it (not two actions
    a human would have to approve twice)."""
    config = write_config(tmp_path / "gateway.yaml", deployment, tmp_path / "outbox", wait=0.3)
    args = {**BIG, "beneficiary": "Race GmbH"}

    async def go() -> list[Any]:
        results: list[Any] = []
        async with client(config, deployment) as c:
            async def one() -> None:
                results.append(await c.call_tool("tools__send_payment", args))

            async with anyio.create_task_group() as tg:
                tg.start_soon(one)
                tg.start_soon(one)
        return results

    first, second = run(go)
    assert evidence(first)["status"] == evidence(second)["status"] == "pending_approval"
    assert evidence(first)["action_id"] == evidence(second)["action_id"]


@pytest.mark.parametrize(("extra", "said"), [
    ({"n": 2**70}, "cannot be authorized"),  # refused by the gateway before Warrantor
    ({"deep": json.loads('{"a": ' * 100 + "1" + "}" * 100)}, "arguments are nested deeper than 64 levels"),
], ids=["integer beyond 2**53", "nested 100 deep"])
def test_hostile_arguments_are_a_tool_error_not_a_crash(deployment: Deployment, tmp_path: Path,
                                                        extra: dict[str, Any], said: str) -> None:
    """Arguments the tool's schema lets through (it allows extra properties) but Warrantor
    cannot sign: a clear tool error, nothing authorized, the upstream never called, and the
    gateway still serves the next call."""
    outbox = tmp_path / "outbox"
    config = write_config(tmp_path / "gateway.yaml", deployment, outbox)
    before = len(deployment.actions())

    async def go() -> tuple[Any, Any]:
        async with client(config, deployment) as c:
            hostile = await c.call_tool("tools__broken_tool", {"reason": "x", **extra})
            return hostile, await c.call_tool("tools__send_payment", SMALL)

    hostile, after = run(go)
    assert hostile.is_error and said in text(hostile), text(hostile)
    assert outbox_calls(outbox, "broken_tool") == []
    assert not after.is_error  # the gateway lives on
    assert len(deployment.actions()) == before + 1  # only the second call was authorized
