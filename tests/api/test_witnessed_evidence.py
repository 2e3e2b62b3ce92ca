"""Witnessed evidence: gateway keys, and receipts that say a gateway saw the call.

A gateway executes an agent's tool calls itself and notarizes them with digests of the
request it sent and the response it got (``evidence_grade: witnessed``). The attacker here
is the agent: it must never be able to claim witnessed evidence for itself, and the
gateway's key must reach no further than the agent key it stands beside (its own agent's
work only, and never a decision).
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from support import WIRE, Env, bearer, make_env
from warrantor.client import AsyncClient, Client
from warrantor.domain.model import Principal, Role
from warrantor.errors import PermissionDeniedError, ValidationError
from warrantor.evidence.dsse import Envelope
from warrantor.verify.cli import main as verify_main

AGENT = "payments-agent"  # the demo agent key is bound to this agent
BIG = {**WIRE, "amount_minor": 6_000_000}  # held for finance-leads
REQUEST = "sha256:" + "1a" * 32
RESPONSE = "sha256:" + "2b" * 32
WITNESS = {"request_sha256": REQUEST, "response_sha256": RESPONSE,
           "executor": "mcp-gateway", "target": "mcp:payments/send_payment"}


def _key(env: Env, role: str, agent_id: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"role": role, **({"agent_id": agent_id} if agent_id else {})}
    r = env.client.post("/v1/api-keys", headers=env.h("admin"), json=body)
    assert r.status_code == 201, r.text
    created: dict[str, Any] = r.json()
    return created


@pytest.fixture
def gateway(env: Env) -> dict[str, str]:
    """A gateway key for the demo agent (the one the demo agent key is bound to)."""
    return bearer(_key(env, "gateway", AGENT)["key"])


def _authorized(env: Env, headers: dict[str, str], **body: Any) -> str:
    r = env.authorize(headers=headers, **body)
    assert r.status_code == 201 and r.json()["status"] == "authorized", r.text
    return str(r.json()["action_id"])


def _notarize(env: Env, action_id: str, headers: dict[str, str], **body: Any) -> httpx.Response:
    body.setdefault("executed", {"action_type": "wire_transfer", "payload": WIRE})
    return env.client.post(f"/v1/actions/{action_id}/notarize", json=body, headers=headers)


def _predicate(envelope: dict[str, Any]) -> dict[str, Any]:
    predicate: dict[str, Any] = Envelope.from_dict(envelope).statement()["predicate"]
    return predicate


def _status(env: Env, action_id: str) -> str:
    return str(env.client.get(f"/v1/actions/{action_id}", headers=env.h("admin")).json()["status"])


# -- creating gateway keys ---------------------------------------------------------------------
def test_a_gateway_key_needs_an_agent_id(env: Env) -> None:
    before = len(env.client.get("/v1/api-keys", headers=env.h("admin")).json()["data"])
    for path, headers in (("/v1/api-keys", env.h("admin")), (f"/v1/tenants/{env.tenant_id}/api-keys", env.operator)):
        r = env.client.post(path, headers=headers, json={"role": "gateway"})
        assert r.status_code == 422 and r.json()["code"] == "AGENT_ID_REQUIRED", (path, r.text)
        assert r.headers["content-type"] == "application/problem+json"
    assert len(env.client.get("/v1/api-keys", headers=env.h("admin")).json()["data"]) == before
    created = _key(env, "gateway", AGENT)
    assert (created["role"], created["agent_id"]) == ("gateway", AGENT) and created["key"].startswith("wrt_")
    by_operator = env.client.post(f"/v1/tenants/{env.tenant_id}/api-keys", headers=env.operator,
                                  json={"role": "gateway", "agent_id": "other-agent"})
    assert by_operator.status_code == 201 and by_operator.json()["role"] == "gateway"
    listed = {k["key_id"]: k for k in env.client.get("/v1/api-keys", headers=env.h("admin")).json()["data"]}
    assert listed[created["key_id"]]["role"] == "gateway" and "key" not in listed[created["key_id"]]
    # Only admins (and the operator) mint keys: no machine key, a gateway's included.
    for headers in (env.h("agent"), env.h("app"), env.h("auditor"), bearer(created["key"])):
        r = env.client.post("/v1/api-keys", headers=headers, json={"role": "gateway", "agent_id": AGENT})
        assert r.status_code == 403 and r.json()["code"] == "FORBIDDEN_ROLE"
    r = env.client.post("/v1/api-keys", headers=env.h("admin"), json={"role": "app", "agent_id": AGENT})
    assert r.status_code == 422 and r.json()["code"] == "INVALID_ROLE"


# -- a gateway key is its agent's key, no more -------------------------------------------------
def test_a_gateway_key_authorizes_as_its_agent_and_nobody_else(env: Env, gateway: dict[str, str]) -> None:
    action_id = _authorized(env, gateway)
    assert env.client.get(f"/v1/actions/{action_id}", headers=env.h("admin")).json()["agent_id"] == AGENT
    total = env.client.get("/v1/actions", headers=env.h("admin")).json()["pagination"]["total"]
    r = env.authorize(headers=gateway, agent_id="other-agent")
    assert r.status_code == 403 and r.json()["code"] == "AGENT_MISMATCH"
    assert env.client.get("/v1/actions", headers=env.h("admin")).json()["pagination"]["total"] == total


def test_a_gateway_key_does_what_its_agents_key_does(env: Env, gateway: dict[str, str]) -> None:
    by_agent = _authorized(env, env.h("agent"))
    action_id = _authorized(env, gateway)
    for path in (f"/v1/actions/{by_agent}", f"/v1/actions/{action_id}?wait=0.2", f"/v1/actions/{action_id}/chain"):
        assert env.client.get(path, headers=gateway).status_code == 200, path
    listed = env.client.get("/v1/actions", headers=gateway).json()["data"]
    assert {a["action_id"] for a in listed} == {by_agent, action_id}
    run = env.client.post("/v1/runs", json={}, headers=gateway)
    assert run.status_code == 201 and run.json()["agent_id"] == AGENT
    r = env.client.post(f"/v1/runs/{run.json()['run_id']}/usage", json={"tokens": 10}, headers=gateway)
    assert r.status_code == 200, r.text
    r = env.client.post("/v1/policies/evaluate", headers=gateway,
                        json={"action": {"action_type": "wire_transfer", "payload": WIRE}})
    assert r.status_code == 200 and r.json()["status"] == "authorized", r.text
    authorized = env.client.get(f"/v1/actions/{action_id}", headers=gateway).json()
    r = env.client.post("/v1/confirm-execution", headers=gateway, json={
        "warrant": authorized["warrant"]["envelope"],
        "executed_action": {"type": "wire_transfer", "payload": WIRE, "executed_at": authorized["created_at"],
                            "executed_by": "mcp-gateway"}})
    assert r.status_code == 200 and r.json()["match"] is True, r.text
    done = _notarize(env, action_id, gateway)  # a gateway may also just report
    assert done.status_code == 200 and done.json()["evidence_grade"] == "reported", done.text
    receipt_id = done.json()["receipt"]["receipt_id"]
    assert env.client.get(f"/v1/receipts/{receipt_id}", headers=gateway).status_code == 200


def test_a_gateway_key_checks_only_grants_of_its_own_agent(env: Env, gateway: dict[str, str]) -> None:
    r = env.client.post("/v1/grants", headers=env.h("app"), json={
        "agent_id": AGENT, "subject": "user-42",
        "scopes": [{"scope": "refunds", "decision": "allow", "resources": ["order:*"]}]})
    assert r.status_code == 201, r.text
    check = {"authorization_id": r.json()["authorization_id"], "scope": "refunds", "resource": "order:1"}
    own = env.client.post("/v1/check", json=check, headers=gateway)
    assert own.status_code == 200 and own.json()["decision"] == "allow", own.text
    neighbour = bearer(_key(env, "gateway", "other-agent")["key"])
    r = env.client.post("/v1/check", json=check, headers=neighbour)
    assert r.status_code == 403 and r.json()["code"] == "GRANT_AGENT_MISMATCH"


def test_a_gateway_key_cannot_see_or_notarize_another_agents_action(env: Env) -> None:
    mallory = bearer(_key(env, "gateway", "mallory-agent")["key"])
    victim = _authorized(env, env.h("agent"))
    denied = env.authorize(payload={**WIRE, "amount_minor": 500_000_000})
    assert denied.status_code == 403
    for path in (f"/v1/actions/{victim}", f"/v1/actions/{victim}?wait=0.2", f"/v1/actions/{victim}/chain",
                 f"/v1/receipts/{denied.json()['details']['receipt_id']}", "/v1/actions/act_doesnotexist"):
        r = env.client.get(path, headers=mallory)
        assert r.status_code == 404 and r.json()["code"] == "NOT_FOUND", (path, r.text)
    assert env.client.get("/v1/actions", headers=mallory).json()["data"] == []
    for action_id in (victim, "act_doesnotexist"):
        for body in ({}, {"evidence_grade": "witnessed", "witness": WITNESS}):
            r = _notarize(env, action_id, mallory, **body)
            assert r.status_code == 404 and r.json()["code"] == "NOT_FOUND", (action_id, body, r.text)
    assert _status(env, victim) == "authorized"


def test_a_gateway_key_can_never_approve_or_decide(env: Env, gateway: dict[str, str]) -> None:
    held = env.authorize(headers=gateway, payload=BIG)
    assert held.status_code == 201 and held.json()["status"] == "pending_approval", held.text
    action_id = held.json()["action_id"]
    [code] = env.approval_codes(action_id)
    for path, body in (("approve", {}), ("deny", {"reason": "no"}), ("cosign", {})):
        r = env.client.post(f"/v1/actions/{action_id}/{path}", json=body, headers=gateway)
        assert r.status_code == 403 and r.json()["code"] == "HUMAN_SESSION_REQUIRED", (path, r.text)
    for path in (f"/v1/actions/{action_id}", f"/v1/actions/{action_id}?wait=0.2", "/v1/actions"):
        r = env.client.get(path, headers=gateway)
        assert r.status_code == 200 and code not in r.text and "APR-" not in r.text, path
    r = env.client.get(f"/v1/actions/{action_id}/approval", headers=gateway)
    assert r.status_code == 403 and r.json()["code"] == "FORBIDDEN_ROLE"
    for path, body in (("/v1/approvers", {"address": "gateway@example.com"}),
                       ("/v1/users", {"email": "gw@example.com", "name": "gw", "roles": ["approver"]})):
        r = env.client.post(path, json=body, headers=gateway)
        assert r.status_code == 403 and r.json()["code"] == "FORBIDDEN_ROLE", (path, r.text)
    # Confirmations: only an end user's presence for its own agent's action (test_grants.py);
    # a nonce it cannot use looks like any unknown nonce.
    r = env.client.post("/v1/confirmations/cnf_whatever", json={"approved": True}, headers=gateway)
    assert r.status_code == 410 and r.json()["code"] == "CONFIRMATION_GONE"
    r = _notarize(env, action_id, gateway, evidence_grade="witnessed", witness=WITNESS)
    assert r.status_code == 409 and r.json()["code"] == "INVALID_ACTION_STATE"  # witnessing is no approval
    assert _status(env, action_id) == "pending_approval"


def test_a_revoked_gateway_key_is_refused_by_the_very_next_request(env: Env) -> None:
    created = _key(env, "gateway", AGENT)
    headers = bearer(created["key"])
    action_id = _authorized(env, headers)
    r = env.client.delete(f"/v1/api-keys/{created['key_id']}", headers=env.h("admin"))
    assert r.status_code == 200 and r.json()["revoked_at"] is not None
    r = _notarize(env, action_id, headers, evidence_grade="witnessed", witness=WITNESS)
    assert r.status_code == 401 and r.json()["code"] == "INVALID_API_KEY"
    assert env.authorize(headers=headers).status_code == 401
    assert env.client.get(f"/v1/actions/{action_id}", headers=headers).status_code == 401
    assert _status(env, action_id) == "authorized"


# -- witnessed notarize ------------------------------------------------------------------------
def test_witnessed_notarize_signs_the_grade_and_the_digests(env: Env) -> None:
    created = _key(env, "gateway", AGENT)
    gateway = bearer(created["key"])
    action_id = _authorized(env, gateway)
    r = _notarize(env, action_id, gateway, outcome_details="paid, reference 7781",
                  evidence_grade="witnessed", witness=WITNESS)
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["evidence_grade"]) == ("notarized", "witnessed")
    predicate = _predicate(r.json()["receipt"]["envelope"])
    assert predicate["evidence_grade"] == "witnessed"
    assert predicate["witness"] == {**WITNESS, "gateway_key_id": created["key_id"]}
    assert "paid, reference 7781" not in json.dumps(predicate)  # digests only, never content
    stored = env.client.get(f"/v1/actions/{action_id}", headers=env.h("auditor")).json()
    assert stored["status"] == "notarized"
    assert _predicate(stored["receipt"]["envelope"])["witness"]["request_sha256"] == REQUEST
    # executor and target are optional; the digests alone make a witness.
    other = _authorized(env, gateway)
    r = _notarize(env, other, gateway, evidence_grade="witnessed",
                  witness={"request_sha256": REQUEST, "response_sha256": RESPONSE})
    assert r.status_code == 200, r.text
    assert _predicate(r.json()["receipt"]["envelope"])["witness"] == {
        "request_sha256": REQUEST, "response_sha256": RESPONSE, "gateway_key_id": created["key_id"]}


def test_every_other_notarize_stays_reported(env: Env) -> None:
    for role in ("agent", "admin"):
        action_id = _authorized(env, env.h("agent"))
        r = _notarize(env, action_id, env.h(role))
        assert r.status_code == 200 and r.json()["evidence_grade"] == "reported", (role, r.text)
        predicate = _predicate(r.json()["receipt"]["envelope"])
        assert predicate["evidence_grade"] == "reported" and "witness" not in predicate
    action_id = _authorized(env, env.h("agent"))
    r = _notarize(env, action_id, env.h("agent"), evidence_grade="reported")
    assert r.status_code == 200 and _predicate(r.json()["receipt"]["envelope"])["evidence_grade"] == "reported"


@pytest.mark.parametrize("role", ["agent", "admin", "app", "auditor"])
def test_only_a_gateway_key_may_claim_witnessed_evidence(env: Env, role: str) -> None:
    action_id = _authorized(env, env.h("agent"))
    for witness in (WITNESS, None, {"request_sha256": "junk"}):
        body: dict[str, Any] = {"evidence_grade": "witnessed", **({"witness": witness} if witness else {})}
        r = _notarize(env, action_id, env.h(role), **body)
        assert r.status_code == 403, r.text
        assert r.json()["code"] == "WITNESS_NOT_ALLOWED" and r.headers["content-type"] == "application/problem+json"
    assert _status(env, action_id) == "authorized"  # nothing happened: still notarizable
    r = _notarize(env, action_id, env.h("agent"))
    assert r.status_code == 200 and r.json()["evidence_grade"] == "reported"


def test_the_service_refuses_a_witnessed_claim_from_an_agent_principal_too(env: Env) -> None:
    action_id = _authorized(env, env.h("agent"))
    agent = Principal(tenant_id=env.tenant_id, role=Role.AGENT, key_id="key_x", agent_id=AGENT)
    for grade in ("witnessed", "confirmed"):
        with pytest.raises((PermissionDeniedError, ValidationError)) as caught:
            env.services.notarizer.notarize(agent, action_id, {"evidence_grade": grade, "witness": WITNESS})
        assert caught.value.code == {"witnessed": "WITNESS_NOT_ALLOWED", "confirmed": "INVALID_EVIDENCE_GRADE"}[grade]
    assert _status(env, action_id) == "authorized"


def _witnessed(**changes: Any) -> dict[str, Any]:
    return {"evidence_grade": "witnessed", "witness": {**WITNESS, **changes}}


BAD_WITNESSES: dict[str, tuple[dict[str, Any], str]] = {
    "upper-case hex": (_witnessed(request_sha256=REQUEST.upper()), "witness.request_sha256"),
    "no algorithm": (_witnessed(response_sha256="2b" * 32), "witness.response_sha256"),
    "short digest": (_witnessed(request_sha256=REQUEST[:-2]), "witness.request_sha256"),
    "another algorithm": (_witnessed(response_sha256="sha512:" + "2b" * 32), "witness.response_sha256"),
    "digest missing": ({"evidence_grade": "witnessed", "witness": {"request_sha256": REQUEST}},
                       "witness.response_sha256"),
    "witness missing": ({"evidence_grade": "witnessed"}, "witness"),
    "witness without witnessed": ({"witness": WITNESS}, "witness"),
    "witness with reported": ({"evidence_grade": "reported", "witness": WITNESS}, "witness"),
    "executor too long": (_witnessed(executor="x" * 201), "witness.executor"),
    "empty target": (_witnessed(target=""), "witness.target"),
    "target with a newline": (_witnessed(target="mcp:a\nb"), "witness.target"),
}


def test_malformed_witnesses_are_422_naming_the_field(env: Env, gateway: dict[str, str]) -> None:
    action_id = _authorized(env, gateway)
    for case, (body, field) in BAD_WITNESSES.items():
        r = _notarize(env, action_id, gateway, **body)
        assert r.status_code == 422, (case, r.text)
        assert r.json()["code"] == "INVALID_WITNESS" and r.json()["details"]["field"] == field, (case, r.text)
        assert field in r.json()["detail"], case
    # Unknown fields and unknown grades are refused as everywhere else.
    for body in (_witnessed(response_body="the raw reply"), {"evidence_grade": "confirmed"},
                 {"evidence_grade": "witnessed", "witnessed_by": "me"}):
        r = _notarize(env, action_id, gateway, **body)
        assert r.status_code == 422 and r.json()["code"] == "VALIDATION_ERROR", (body, r.text)
    assert _status(env, action_id) == "authorized"
    r = _notarize(env, action_id, gateway, evidence_grade="witnessed", witness=WITNESS)
    assert r.status_code == 200 and r.json()["evidence_grade"] == "witnessed"


# -- offline verification ----------------------------------------------------------------------
@pytest.fixture
def fast(tmp_path: Path) -> Iterator[Env]:
    with make_env(tmp_path, integrate_interval_ms=50) as e:  # bundles need the entry in a checkpoint
        yield e


def test_a_witnessed_receipt_verifies_offline(fast: Env, tmp_path: Path) -> None:
    gateway = bearer(_key(fast, "gateway", AGENT)["key"])
    action_id = _authorized(fast, gateway)
    done = _notarize(fast, action_id, gateway, evidence_grade="witnessed", witness=WITNESS)
    receipt_id = done.json()["receipt"]["receipt_id"]
    bundle = fast.client.get(f"/v1/receipts/{receipt_id}/bundle", headers=fast.h("auditor"))
    assert bundle.status_code == 200, bundle.text
    assert _predicate(bundle.json()["envelope"])["evidence_grade"] == "witnessed"
    (tmp_path / "receipt.json").write_text(bundle.text)
    (tmp_path / "trust.json").write_text(fast.client.get("/v1/trust").text)
    out = io.StringIO()
    assert verify_main([str(tmp_path / "receipt.json"), "--trust", str(tmp_path / "trust.json")], out=out) == 0
    for check in ("signature", "key_validity", "subject_digest", "inclusion", "checkpoint_signature", "timestamp"):
        assert f"PASS  {check}" in out.getvalue(), out.getvalue()


# -- the SDK -----------------------------------------------------------------------------------
def _forwarding(env: Env, seen: list[dict[str, Any]]) -> httpx.MockTransport:
    """A transport that hands each request to the real app (and remembers JSON bodies)."""
    def handle(request: httpx.Request) -> httpx.Response:
        if request.content:
            seen.append(json.loads(request.content))
        r = env.client.request(request.method, request.url.raw_path.decode(), content=request.content,
                               headers={k: v for k, v in request.headers.items() if k.lower() != "host"})
        headers = {k: v for k, v in r.headers.items() if k.lower() not in ("content-encoding", "content-length")}
        return httpx.Response(r.status_code, headers=headers, content=r.content)

    return httpx.MockTransport(handle)


def test_the_sdk_sends_the_grade_and_the_witness_only_when_given(env: Env) -> None:
    key = _key(env, "gateway", AGENT)["key"]
    seen: list[dict[str, Any]] = []
    with Client("http://warrantor.test", key, transport=_forwarding(env, seen)) as wr:
        plain = wr.authorize("wire_transfer", payload=WIRE, instruction_hash="sha256:" + "ab" * 32)
        assert wr.notarize(plain.action_id).evidence_grade == "reported"
        assert "evidence_grade" not in seen[-1] and "witness" not in seen[-1]
        auth = wr.authorize("wire_transfer", payload=WIRE, instruction_hash="sha256:" + "ab" * 32)
        result = wr.notarize(auth.action_id, executed={"payload": WIRE},
                             evidence_grade="witnessed", witness=WITNESS)
    assert seen[-1]["evidence_grade"] == "witnessed" and seen[-1]["witness"] == WITNESS
    assert (result.status, result.evidence_grade) == ("notarized", "witnessed")
    assert result.receipt is not None
    assert _predicate(result.receipt["envelope"])["witness"]["target"] == WITNESS["target"]


def test_the_async_sdk_sends_them_and_an_agent_key_gets_witness_not_allowed(env: Env) -> None:
    key = _key(env, "gateway", AGENT)["key"]

    def client(api_key: str) -> AsyncClient:
        return AsyncClient("http://warrantor.test", api_key, transport=httpx.ASGITransport(app=env.client.app))

    async def scenario() -> None:
        async with client(key) as gw, client(env.keys["agent"]) as agent:
            auth = await gw.authorize("wire_transfer", payload=WIRE, instruction_hash="sha256:" + "ab" * 32)
            with pytest.raises(PermissionDeniedError) as caught:
                await agent.notarize(auth.action_id, evidence_grade="witnessed", witness=WITNESS)
            assert (caught.value.code, caught.value.status) == ("WITNESS_NOT_ALLOWED", 403)
            with pytest.raises(ValidationError) as invalid:
                await gw.notarize(auth.action_id, evidence_grade="witnessed", witness={"request_sha256": REQUEST})
            assert invalid.value.code == "INVALID_WITNESS"
            result = await gw.notarize(auth.action_id, evidence_grade="witnessed", witness=WITNESS)
            assert (result.status, result.evidence_grade) == ("notarized", "witnessed")

    asyncio.run(scenario())
