"""The SDK against the real app: ``Client`` over a loopback uvicorn server, ``AsyncClient``
over ``httpx.ASGITransport``. No mocks: every answer comes from the real pipeline on SQLite.

What a user relies on: authorize (allowed, denied, held) and approve by code, notarize,
server errors raised as the same ``warrantor.errors`` classes, retried authorizations that
replay instead of duplicating, and the ``guard`` decorator's four outcomes.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import uvicorn

from support import WIRE, Env
from warrantor.client import (
    ApprovalTimeoutError,
    AsyncClient,
    Client,
    TransportError,
)
from warrantor.errors import (
    ActionDeniedError,
    AuthenticationError,
    ConflictError,
    GoneError,
    InvalidTransitionError,
    NotFoundError,
    PermissionDeniedError,
    ValidationError,
    WarrantorError,
)
from warrantor.evidence.proofs import ProofBundle, TrustBundle
from warrantor.verify import verify_bundle

BIG = {**WIRE, "amount_minor": 6_000_000}  # held for finance-leads
HUGE = {**WIRE, "amount_minor": 200_000_000}  # over the cap: denied
HASH = "sha256:" + "ab" * 32


@pytest.fixture
def base_url(env: Env) -> Iterator[str]:
    """The env's app served by uvicorn on 127.0.0.1:<free port> (its lifespan already runs)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(env.client.app, lifespan="off", log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@pytest.fixture
def client(env: Env, base_url: str) -> Iterator[Client]:
    with Client(base_url, env.keys["agent"]) as c:
        yield c


def pay(client: Client, payload: dict[str, Any], **kw: Any) -> Any:
    return client.authorize("wire_transfer", details="Pay invoice 42", payload=payload,
                            instruction_hash=HASH, **kw)


def approve_when_held(env: Env, client: Client, decision: str = "approve") -> threading.Thread:
    """A human in another thread: waits for a held action and decides by its code."""
    def run() -> None:
        deadline = time.monotonic() + 10
        while not (held := client.list_actions(status="pending_approval").data):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        code = env.approval_codes(held[0]["action_id"])[0]
        client.decide(code, decision, reason="checked the invoice")

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def only_action(client: Client) -> Any:
    page = client.list_actions(action_type="wire_transfer")
    assert page.total == 1, page.data
    return client.get_action(page.data[0]["action_id"])


# -- authorize, approve, notarize ------------------------------------------------------


def test_allowed_action_gets_a_warrant_and_a_receipt(client: Client) -> None:
    auth = pay(client, WIRE)
    assert auth.status == "authorized" and auth.cleared
    assert auth.warrant is not None and auth.warrant["payloadType"] == "application/vnd.in-toto+json"
    assert auth.decision["effect"] == "allow"
    assert auth.raw["action_id"] == auth.action_id
    executed = {"action_type": "wire_transfer", "payload": WIRE}
    result = client.notarize(auth.action_id, "completed", executed=executed)
    assert result.status == "notarized"
    assert result.match is not None and result.match["payload_consistent"] is True
    assert result.receipt_id is not None and result.receipt_id.startswith("rcpt_")
    assert client.receipt(result.receipt_id)["action_id"] == auth.action_id


def test_denied_action_raises_action_denied_with_the_receipt(client: Client) -> None:
    with pytest.raises(ActionDeniedError) as caught:
        pay(client, HUGE)
    err = caught.value
    assert (err.code, err.status) == ("POLICY_DENIED", 403)
    assert err.details["receipt_id"].startswith("rcpt_")
    assert err.details["rules"][0]["id"] == "wire-cap-1m"
    assert client.get_action(err.details["action_id"]).status == "denied"


def test_held_action_approved_by_code_then_notarized(env: Env, client: Client) -> None:
    auth = pay(client, BIG)
    assert auth.status == "pending_approval" and auth.pending and auth.warrant is None
    assert auth.approval is not None and auth.approval["approvers"] == ["finance-leads"]
    code = env.approval_codes(auth.action_id)[0]
    review = client.approval(code)
    assert review["action_id"] == auth.action_id and review["payload"] == BIG
    decided = client.decide(code, "approve")
    assert (decided.status, decided.approvals, decided.quorum) == ("approved", 1, 1)
    detail = client.wait_for_decision(auth.action_id, timeout=5)
    assert detail.status == "approved" and detail.warrant is not None
    assert client.notarize(auth.action_id, executed={"payload": BIG}).status == "notarized"


def test_wait_for_decision_returns_when_a_human_decides(env: Env, client: Client) -> None:
    auth = pay(client, BIG)
    approver = approve_when_held(env, client, "deny")
    detail = client.wait_for_decision(auth.action_id, timeout=10)
    approver.join()
    assert detail.status == "denied_by_human"
    assert detail.receipt_id is not None


def test_wait_for_decision_gives_up_after_its_timeout(client: Client) -> None:
    auth = pay(client, BIG)
    started = time.monotonic()
    detail = client.wait_for_decision(auth.action_id, timeout=0.3)
    assert detail.pending and time.monotonic() - started < 5


# -- errors ------------------------------------------------------------------------------

ERROR_CASES: dict[str, tuple[Callable[[Env, Client], Any], type[WarrantorError], str, int]] = {
    "unknown action is 404": (
        lambda env, c: c.get_action("act_doesnotexist"), NotFoundError, "NOT_FOUND", 404),
    "schema violation is 422": (
        lambda env, c: c.authorize("9-not-a-type"), ValidationError, "VALIDATION_ERROR", 422),
    "bad outcome is 400": (
        lambda env, c: c.notarize(pay(c, WIRE).action_id, "maybe"), ValidationError, "INVALID_OUTCOME", 400),
    "second notarize is 409": (
        lambda env, c: [c.notarize(a := pay(c, WIRE).action_id), c.notarize(a)],
        InvalidTransitionError, "INVALID_ACTION_STATE", 409),
    "same key, other body is 409": (
        lambda env, c: [pay(c, WIRE, idempotency_key="k1"), pay(c, BIG, idempotency_key="k1")],
        ConflictError, "DUPLICATE_REQUEST", 409),
    "code used twice is 410": (
        lambda env, c: [c.decide(code := env.approval_codes(pay(c, BIG).action_id)[0], "approve"),
                        c.decide(code, "approve")],
        GoneError, "CODE_EXPIRED", 410),
    "unknown approval code is 404": (
        lambda env, c: c.approval("APR-NOPE-NOPE"), NotFoundError, "NOT_FOUND", 404),
}


@pytest.mark.parametrize("case", ERROR_CASES)
def test_server_errors_raise_the_servers_classes(env: Env, client: Client, case: str) -> None:
    call, cls, code, status = ERROR_CASES[case]
    with pytest.raises(cls) as caught:
        call(env, client)
    assert (caught.value.code, caught.value.status) == (code, status)
    assert caught.value.details["request_id"].startswith("req_")


def test_wrong_role_is_permission_denied(env: Env, base_url: str) -> None:
    with Client(base_url, env.keys["auditor"]) as auditor, pytest.raises(PermissionDeniedError) as caught:
        pay(auditor, WIRE)
    assert (caught.value.code, caught.value.status) == ("FORBIDDEN_ROLE", 403)
    assert not isinstance(caught.value, ActionDeniedError)


def test_unknown_key_is_authentication_error(base_url: str) -> None:
    with Client(base_url, "wrt_" + "x" * 32) as stranger, pytest.raises(AuthenticationError) as caught:
        stranger.list_actions()
    assert caught.value.status == 401


def test_unreachable_server_is_transport_error(env: Env, base_url: str) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    with Client(f"http://127.0.0.1:{port}", env.keys["agent"], retries=1) as c, \
            pytest.raises(TransportError) as caught:
        c.get_action("act_x")
    assert caught.value.code == "TRANSPORT_ERROR"
    assert isinstance(caught.value.__cause__, httpx.ConnectError)


def test_other_tenants_action_is_not_found(env: Env, client: Client, base_url: str) -> None:
    auth = pay(client, WIRE)
    with Client(base_url, env.new_tenant()["agent"]) as other, pytest.raises(NotFoundError):
        other.get_action(auth.action_id)
    with Client(base_url, env.new_tenant()["admin"]) as other:
        assert other.list_actions().total == 0


# -- idempotency -------------------------------------------------------------------------


class LoseFirstAuthorizeResponse(httpx.BaseTransport):
    """Delivers the first ``POST /v1/actions`` to the server, then drops its response."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.keys: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        if request.method == "POST" and request.url.path == "/v1/actions":
            self.keys.append(request.headers["idempotency-key"])
            if len(self.keys) == 1:
                response.read()
                response.close()
                raise httpx.ReadError("connection reset after the request was sent", request=request)
        return response

    def close(self) -> None:
        self.inner.close()


def test_a_retried_authorize_replays_instead_of_duplicating(env: Env, base_url: str) -> None:
    transport = LoseFirstAuthorizeResponse()
    with Client(base_url, env.keys["agent"], transport=transport) as c:
        auth = pay(c, WIRE)
        assert only_action(c).action_id == auth.action_id
        assert auth.status == "authorized"
    assert len(transport.keys) == 2 and transport.keys[0] == transport.keys[1]


def test_explicit_idempotency_key_replays_denials_too(client: Client) -> None:
    first = pay(client, WIRE, idempotency_key="order-42")
    assert pay(client, WIRE, idempotency_key="order-42").action_id == first.action_id
    with pytest.raises(ActionDeniedError) as one:
        pay(client, HUGE, idempotency_key="order-43")
    with pytest.raises(ActionDeniedError) as two:
        pay(client, HUGE, idempotency_key="order-43")
    assert one.value.details["receipt_id"] == two.value.details["receipt_id"]


def test_each_authorize_call_gets_its_own_key(client: Client) -> None:
    assert pay(client, WIRE).action_id != pay(client, WIRE).action_id


# -- guard -------------------------------------------------------------------------------


def wire_guard(client: Client, **kw: Any) -> Callable[..., Any]:
    calls: list[tuple[int, str]] = []

    @client.guard(
        "wire_transfer",
        payload=lambda amount, to: {"amount_minor": amount, "currency": "EUR", "beneficiary": to},
        details=lambda amount, to: f"Pay {amount} to {to}",
        instruction_hash=HASH,
        **kw,
    )
    def transfer(amount: int, to: str) -> str:
        calls.append((amount, to))
        if to == "Mallory":
            raise RuntimeError("bank said no")
        return f"sent {amount}"

    transfer.calls = calls  # type: ignore[attr-defined]
    return transfer


def test_guard_allowed_runs_and_notarizes(client: Client) -> None:
    transfer = wire_guard(client)
    assert transfer(1000, "ACME GmbH") == "sent 1000"
    assert transfer.calls == [(1000, "ACME GmbH")]  # type: ignore[attr-defined]
    action = only_action(client)
    assert action.status == "notarized" and action.receipt_id is not None  # not "diverged"
    executed = action.raw["execution"]["executed"]
    assert executed["action_type"] == "wire_transfer" and executed["executed_at"].endswith("Z")
    assert executed["payload_sha256"]


def test_guard_denied_never_calls_the_function(client: Client) -> None:
    transfer = wire_guard(client)
    with pytest.raises(ActionDeniedError) as caught:
        transfer(200_000_000, "ACME GmbH")
    assert caught.value.code == "POLICY_DENIED"
    assert transfer.calls == []  # type: ignore[attr-defined]


def test_guard_held_then_approved_runs_after_the_human(env: Env, client: Client) -> None:
    transfer = wire_guard(client, approval_timeout=10)
    approver = approve_when_held(env, client)
    assert transfer(6_000_000, "ACME GmbH") == "sent 6000000"
    approver.join()
    action = only_action(client)
    assert action.status == "notarized"
    assert [a["decision"] for a in action.approvals] == ["approve"]


def test_guard_held_then_denied_raises_with_the_receipt(env: Env, client: Client) -> None:
    transfer = wire_guard(client, approval_timeout=10)
    approver = approve_when_held(env, client, "deny")
    with pytest.raises(ActionDeniedError) as caught:
        transfer(6_000_000, "ACME GmbH")
    approver.join()
    assert caught.value.code == "DENIED_BY_HUMAN"
    assert caught.value.details["receipt_id"].startswith("rcpt_")
    assert transfer.calls == []  # type: ignore[attr-defined]


def test_guard_gives_up_on_a_silent_approver(client: Client) -> None:
    transfer = wire_guard(client, approval_timeout=0.2)
    with pytest.raises(ApprovalTimeoutError):
        transfer(6_000_000, "ACME GmbH")
    assert transfer.calls == []  # type: ignore[attr-defined]
    assert only_action(client).status == "pending_approval"


def test_guard_function_raises_records_failed(client: Client) -> None:
    transfer = wire_guard(client)
    with pytest.raises(RuntimeError, match="bank said no"):
        transfer(1000, "Mallory")
    action = only_action(client)
    assert action.status == "failed" and action.receipt_id is not None


def test_guard_payload_defaults_to_the_bound_arguments(client: Client) -> None:
    @client.guard("wire_transfer", instruction_hash=HASH)
    def transfer(amount_minor: int, beneficiary: str, currency: str = "EUR") -> None:
        return None

    transfer(1000, "ACME GmbH")
    assert only_action(client).raw["intent"]["payload"] == WIRE


# -- evidence ----------------------------------------------------------------------------


def test_keys_lists_the_active_signing_key(client: Client) -> None:
    keys = client.keys()
    assert [k["status"] for k in keys].count("active") == 1
    assert all(k["algorithm"] == "ed25519" for k in keys)


def test_trust_bundle_parses_as_a_verifiers_trust_bundle(client: Client) -> None:
    trust = client.trust()
    assert TrustBundle.from_dict(trust).to_dict() == trust  # parses as a verifier's trust bundle


def test_receipt_bundle_verifies_offline(client: Client) -> None:
    auth = pay(client, WIRE)
    receipt_id = client.notarize(auth.action_id).receipt_id
    assert receipt_id is not None
    bundle = client.receipt_bundle(receipt_id)
    assert bundle["envelope"]["payloadType"] == "application/vnd.in-toto+json"
    report = verify_bundle(ProofBundle.from_dict(bundle), TrustBundle.from_dict(client.trust()))
    assert report.ok, report


# -- AsyncClient -------------------------------------------------------------------------


def async_client(env: Env, role: str = "agent") -> AsyncClient:
    return AsyncClient("http://warrantor.test", env.keys[role],
                       transport=httpx.ASGITransport(app=env.client.app))


def test_async_client_authorize_deny_and_notarize(env: Env) -> None:
    async def scenario() -> None:
        async with async_client(env) as c:
            auth = await c.authorize("wire_transfer", payload=WIRE, instruction_hash=HASH)
            assert auth.cleared
            assert (await c.notarize(auth.action_id)).status == "notarized"
            with pytest.raises(ActionDeniedError) as caught:
                await c.authorize("wire_transfer", payload=HUGE, instruction_hash=HASH)
            assert caught.value.details["receipt_id"].startswith("rcpt_")
            with pytest.raises(NotFoundError):
                await c.get_action("act_doesnotexist")

    asyncio.run(scenario())


def test_async_guard_held_then_approved_and_failure(env: Env, client: Client) -> None:
    calls: list[int] = []

    async def scenario() -> None:
        async with async_client(env) as c:
            @c.guard("wire_transfer", instruction_hash=HASH, approval_timeout=10,
                     payload=lambda amount: {**WIRE, "amount_minor": amount})
            async def transfer(amount: int) -> int:
                calls.append(amount)
                if amount == 1:
                    raise RuntimeError("bank said no")
                return amount

            approver = approve_when_held(env, client)
            assert await transfer(6_000_000) == 6_000_000
            approver.join()
            with pytest.raises(RuntimeError):
                await transfer(1)

    asyncio.run(scenario())
    assert calls == [6_000_000, 1]
    statuses = {a["status"] for a in client.list_actions().data}
    assert statuses == {"notarized", "failed"}
