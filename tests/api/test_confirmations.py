"""End-user confirmations: ``POST /v1/confirmations/{nonce}`` after ``/v1/check`` or for an
action in ``pending_confirmation``; single use, not enumerable, never by an agent."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from support import Env, bearer, make_env
from warrantor.domain.clock import FixedClock
from warrantor.store import schema_grants as g

AGENT = "payments-agent"
REFUND = {"amount_minor": 1000, "currency": "EUR", "order_id": "o-1"}
BIG_REFUND = {"amount_minor": 90_000, "currency": "EUR", "order_id": "o-2"}  # policy: confirm


@pytest.fixture
def clock_env(tmp_path: Path) -> Iterator[tuple[Env, FixedClock]]:
    clock = FixedClock(datetime.now(UTC).replace(microsecond=0))
    with make_env(tmp_path, services_kwargs={"clock": clock}) as env:
        yield env, clock


def grant(env: Env) -> str:
    r = env.client.post("/v1/grants", headers=env.h("app"), json={
        "agent_id": AGENT, "subject": "user-42",
        "scopes": [
            {"scope": "refunds", "decision": "allow", "resources": ["order:*"]},
            {"scope": "refunds.confirm", "decision": "confirm", "resources": ["order:*"],
             "confirm_prompt_hint": "Refund your order"},
        ],
    })
    assert r.status_code == 201, r.text
    return str(r.json()["authorization_id"])


def check(env: Env, auth: str, resource: str = "order:1") -> dict[str, Any]:
    r = env.client.post("/v1/check", headers=env.h("agent"),
                        json={"authorization_id": auth, "scope": "refunds.confirm", "resource": resource})
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


def confirm(env: Env, nonce: str, approved: bool = True, key: str | None = None, **extra: Any) -> Any:
    headers = bearer(key) if key else env.h("app")
    return env.client.post(f"/v1/confirmations/{nonce}", json={"approved": approved, **extra}, headers=headers)


def test_approved_confirmation_allows_the_exact_triple_until_it_expires(clock_env: tuple[Env, FixedClock]) -> None:
    env, clock = clock_env
    auth = grant(env)
    asked = check(env, auth)
    r = confirm(env, asked["confirm_nonce"], ttl_seconds=120)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["decision"] == "approved" and body["authorization_id"] == auth and body["expires_at"]
    allowed = check(env, auth)
    assert allowed["decision"] == "allow" and allowed["expires_at"] == body["expires_at"]
    assert check(env, auth, "order:2")["decision"] == "confirm"  # another resource still asks
    clock.advance(121)
    assert check(env, auth)["decision"] == "confirm"


def test_the_default_ttl_is_60_seconds_and_at_most_300(clock_env: tuple[Env, FixedClock]) -> None:
    env, clock = clock_env
    auth = grant(env)
    assert confirm(env, check(env, auth)["confirm_nonce"]).status_code == 200
    clock.advance(59)
    assert check(env, auth)["decision"] == "allow"
    clock.advance(2)
    assert check(env, auth)["decision"] == "confirm"
    for ttl in (0, 301, "60"):
        r = confirm(env, check(env, auth)["confirm_nonce"], ttl_seconds=ttl)
        assert r.status_code == 422 and r.json()["code"] == "VALIDATION_ERROR"


def test_declined_confirmation_is_denied_by_user(env: Env) -> None:
    auth = grant(env)
    r = confirm(env, check(env, auth)["confirm_nonce"], approved=False)
    assert r.status_code == 200 and r.json() == {"decision": "denied_by_user"}
    assert check(env, auth)["decision"] == "confirm"


def test_an_agent_can_never_confirm(env: Env) -> None:
    auth = grant(env)
    nonce = check(env, auth)["confirm_nonce"]
    r = confirm(env, nonce, key=env.keys["agent"])
    assert r.status_code == 403 and r.json()["code"] == "FORBIDDEN_ROLE"
    assert confirm(env, nonce, key=env.keys["auditor"]).status_code == 403
    assert confirm(env, nonce, key=env.keys["admin"]).status_code == 200  # still unused after the 403s


def test_a_consumed_nonce_cannot_be_replayed(env: Env) -> None:
    auth = grant(env)
    nonce = check(env, auth)["confirm_nonce"]
    assert confirm(env, nonce).status_code == 200
    for approved in (True, False):
        r = confirm(env, nonce, approved=approved)
        assert r.status_code == 410 and r.json()["code"] == "CONFIRMATION_GONE"


def test_every_invalid_nonce_gets_the_same_410(clock_env: tuple[Env, FixedClock]) -> None:
    env, clock = clock_env
    auth = grant(env)
    consumed = check(env, auth)["confirm_nonce"]
    confirm(env, consumed)
    expired = check(env, auth, "order:7")["confirm_nonce"]
    other = env.new_tenant()
    foreign = check(env, auth, "order:8")["confirm_nonce"]  # valid, but this tenant's
    revoked_auth = grant(env)
    revoked = check(env, revoked_auth)["confirm_nonce"]
    env.client.delete(f"/v1/grants/{revoked_auth}", headers=env.h("app"))
    clock.advance(301)
    cases = {
        "expired": (expired, None),
        "consumed": (consumed, None),
        "unknown": ("cnf_" + "0" * 32, None),
        "malformed": ("not-a-nonce", None),
        "upper case": (expired.upper(), None),
        "too long": ("cnf_" + "a" * 500, None),
        "other tenant": (foreign, other["app"]),
        "revoked grant": (revoked, None),
    }
    bodies = {}
    for name, (nonce, key) in cases.items():
        r = confirm(env, nonce, key=key)
        assert r.status_code == 410, (name, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        body = r.json()
        assert body.pop("request_id")
        bodies[name] = body
    first = bodies["unknown"]
    assert first["code"] == "CONFIRMATION_GONE"
    assert all(body == first for body in bodies.values()), bodies


def test_another_tenant_cannot_use_a_live_nonce(env: Env) -> None:
    auth = grant(env)
    nonce = check(env, auth)["confirm_nonce"]
    other = env.new_tenant()
    assert confirm(env, nonce, key=other["app"]).status_code == 410
    assert confirm(env, nonce).status_code == 200  # the other tenant's attempt consumed nothing


def test_nonces_are_stored_hashed(env: Env) -> None:
    nonce = check(env, grant(env))["confirm_nonce"]
    with env.services.store.read() as repo:
        rows = repo.conn.execute(sa.select(g.confirmation_nonces.c.nonce_hash)).scalars().all()
    assert hashlib.sha256(nonce.encode()).hexdigest() in rows
    assert nonce not in rows


def test_concurrent_confirmations_of_one_nonce_succeed_exactly_once(store_env: Env) -> None:
    env = store_env
    nonce = check(env, grant(env))["confirm_nonce"]
    results: list[int] = []
    barrier = threading.Barrier(8)

    def race(approved: bool) -> None:
        barrier.wait()
        results.append(confirm(env, nonce, approved=approved).status_code)

    threads = [threading.Thread(target=race, args=(i % 2 == 0,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [200] + [410] * 7


# -- actions in pending_confirmation -------------------------------------------------------
def authorize_refund(env: Env, auth: str, scope: str, payload: dict[str, Any], resource: str = "order:1") -> Any:
    return env.authorize(action_type="refund", payload=payload, authorization_id=auth, scope=scope,
                         resource=resource)


def test_policy_confirm_under_a_grant_waits_for_the_end_user_then_gets_a_warrant(env: Env) -> None:
    auth = grant(env)
    r = authorize_refund(env, auth, "refunds", BIG_REFUND)
    assert r.status_code == 201, r.text
    held = r.json()
    assert held["status"] == "pending_confirmation"
    assert held["decision"]["effect"] == "confirm" and held["decision"]["stage"] == "policy"
    assert held["confirmation"]["confirm_nonce"].startswith("cnf_")
    assert held["confirmation"]["expires_at"] and "approval" not in held
    action_id = held["action_id"]
    r = confirm(env, held["confirmation"]["confirm_nonce"])
    assert r.status_code == 200, r.text
    assert r.json()["action_id"] == action_id and r.json()["status"] == "approved"
    detail = env.client.get(f"/v1/actions/{action_id}", headers=env.h("agent")).json()
    assert detail["status"] == "approved"
    assert detail["warrant"]["envelope"]["payloadType"] == "application/vnd.in-toto+json"
    assert [(a["approver"], a["decision"]) for a in detail["approvals"]] == [("end-user:user-42", "approve")]
    r = env.client.post(f"/v1/actions/{action_id}/notarize", headers=env.h("agent"),
                        json={"outcome": "completed", "executed": {"action_type": "refund", "payload": BIG_REFUND}})
    assert r.status_code == 200 and r.json()["status"] == "notarized"


def test_declining_a_pending_action_ends_it_denied_by_user_with_a_receipt(env: Env) -> None:
    auth = grant(env)
    held = authorize_refund(env, auth, "refunds.confirm", REFUND).json()
    assert held["status"] == "pending_confirmation"
    assert held["decision"]["stage"] == "grant" and held["decision"]["reason"] == "USER_CONFIRMATION_REQUIRED"
    assert held["confirmation"]["confirm_prompt_hint"] == "Refund your order"
    r = confirm(env, held["confirmation"]["confirm_nonce"], approved=False)
    assert r.status_code == 200 and r.json()["status"] == "denied_by_user"
    detail = env.client.get(f"/v1/actions/{held['action_id']}", headers=env.h("agent")).json()
    assert detail["status"] == "denied_by_user"
    assert detail["receipt"]["receipt_id"].startswith("rcpt_")
    assert confirm(env, held["confirmation"]["confirm_nonce"]).status_code == 410


def test_a_confirmed_grant_scope_authorizes_the_same_triple_within_its_ttl(env: Env) -> None:
    auth = grant(env)
    held = authorize_refund(env, auth, "refunds.confirm", REFUND).json()
    assert confirm(env, held["confirmation"]["confirm_nonce"]).json()["status"] == "approved"
    again = authorize_refund(env, auth, "refunds.confirm", REFUND)
    assert again.status_code == 201 and again.json()["status"] == "authorized"
    other = authorize_refund(env, auth, "refunds.confirm", REFUND, resource="order:2")
    assert other.json()["status"] == "pending_confirmation"
    # The policy's own confirm always asks again, however recent the grant's confirmation.
    policy = authorize_refund(env, auth, "refunds.confirm", BIG_REFUND)
    assert policy.json()["status"] == "pending_confirmation"


def test_an_unanswered_pending_confirmation_expires(clock_env: tuple[Env, FixedClock]) -> None:
    env, clock = clock_env
    auth = grant(env)
    held = authorize_refund(env, auth, "refunds.confirm", REFUND).json()
    clock.advance(301)
    assert env.services.sweeper.sweep() == 1
    detail = env.client.get(f"/v1/actions/{held['action_id']}", headers=env.h("agent")).json()
    assert detail["status"] == "expired" and detail["receipt"] is not None
    assert confirm(env, held["confirmation"]["confirm_nonce"]).status_code == 410


def test_policy_confirm_without_a_grant_is_still_held_for_a_human(env: Env) -> None:
    r = env.authorize(action_type="refund", payload=BIG_REFUND)
    assert r.status_code == 201 and r.json()["status"] == "pending_approval"


def gateway_key(env: Env, agent_id: str = AGENT) -> str:
    r = env.client.post("/v1/api-keys", headers=env.h("admin"), json={"role": "gateway", "agent_id": agent_id})
    assert r.status_code == 201, r.text
    return str(r.json()["key"])


def test_a_gateway_relays_presence_for_its_own_agents_action_recorded_as_such(env: Env) -> None:
    """An MCP form elicitation's answer: accepted for this one action only, recorded
    ``via: "mcp-elicitation"``, and no live confirmation left behind for later calls."""
    key = gateway_key(env)
    auth = grant(env)
    held = env.client.post("/v1/actions", headers=bearer(key), json={
        "action_type": "refund", "payload": REFUND, "authorization_id": auth, "scope": "refunds.confirm",
        "resource": "order:1"}).json()
    assert held["status"] == "pending_confirmation"
    r = confirm(env, held["confirmation"]["confirm_nonce"], key=key)
    assert r.status_code == 200 and r.json()["status"] == "approved", r.text
    assert "expires_at" not in r.json()  # nothing confirmed beyond this action
    detail = env.client.get(f"/v1/actions/{held['action_id']}", headers=bearer(key)).json()
    (approval,) = detail["approvals"]
    assert approval["approver"] == "end-user:user-42" and approval["via"] == "mcp-elicitation"
    again = env.client.post("/v1/actions", headers=bearer(key), json={
        "action_type": "refund", "payload": REFUND, "authorization_id": auth, "scope": "refunds.confirm",
        "resource": "order:1"}).json()
    assert again["status"] == "pending_confirmation"  # presence once is not a standing confirmation


def test_a_gateway_cannot_confirm_another_agents_action_or_a_bare_check(env: Env) -> None:
    auth = grant(env)
    other_agents_gateway = gateway_key(env, "someone-else")
    held = authorize_refund(env, auth, "refunds.confirm", REFUND).json()
    r = confirm(env, held["confirmation"]["confirm_nonce"], key=other_agents_gateway)
    assert r.status_code == 410 and r.json()["code"] == "CONFIRMATION_GONE"
    own_gateway = gateway_key(env)
    asked = check(env, auth)  # a nonce from /v1/check belongs to no action
    r = confirm(env, asked["confirm_nonce"], key=own_gateway)
    assert r.status_code == 410 and r.json()["code"] == "CONFIRMATION_GONE"
    # Both nonces are still good for the app's strong path.
    assert confirm(env, held["confirmation"]["confirm_nonce"]).json()["status"] == "approved"
    assert confirm(env, asked["confirm_nonce"]).json()["decision"] == "approved"
