"""End-user grants: create/read/revoke, ``POST /v1/check``, glob matching, and the grant
stage of ``POST /v1/actions``."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from support import Env, bearer
from warrantor.domain.clock import isoformat
from warrantor.service.authorization.grants import match_resource

AGENT = "payments-agent"  # the demo agent key is bound to this agent
REFUND = {"amount_minor": 1000, "currency": "EUR", "order_id": "o-1"}


def grant_body(**over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "agent_id": AGENT,
        "subject": "user-42",
        "scopes": [
            {"scope": "refunds", "decision": "allow", "resources": ["order:*"]},
            {"scope": "calendar.write", "decision": "confirm", "resources": ["cal:primary", "cal:team-?"],
             "confirm_prompt_hint": "Add events to your calendar"},
        ],
    }
    return body | over


def create(env: Env, role: str = "app", **over: Any) -> dict[str, Any]:
    r = env.client.post("/v1/grants", json=grant_body(**over), headers=env.h(role))
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


def check(env: Env, auth: str, scope: str, resource: str, role: str = "agent",
          headers: dict[str, str] | None = None) -> Any:
    return env.client.post("/v1/check", json={"authorization_id": auth, "scope": scope, "resource": resource},
                           headers=headers or env.h(role))


@pytest.mark.parametrize(("pattern", "resource", "expected"), [
    ("order:*", "order:1", True),
    ("order:*", "order:", True),
    ("order:*", "orders:1", False),
    ("*", "anything/at:all", True),
    ("cal:team-?", "cal:team-a", True),
    ("cal:team-?", "cal:team-ab", False),
    ("cal:team-?", "cal:team-", False),
    ("repo:acme/*/issues", "repo:acme/web/issues", True),
    ("repo:acme/*/issues", "repo:acme/web/pulls", False),
    ("a*b*c", "abc", True),
    ("a*b*c", "aXbYbZc", True),
    ("a*b*c", "acb", False),
    ("*.pdf", "report.pdf", True),
    ("*.pdf", "report.pdf.exe", False),
    ("exact", "exact", True),
    ("exact", "Exact", False),  # case-sensitive
    ("[abc]", "a", False),  # no character classes: "[" is literal
    ("[abc]", "[abc]", True),
    ("a?c*", "abcdef", True),
    ("*?*?*", "a", False),
    ("ab*ba", "aba", False),  # prefix and suffix may not overlap
])
def test_resource_globs_match_star_and_question_mark_only(pattern: str, resource: str, expected: bool) -> None:
    assert match_resource(pattern, resource) is expected


def test_glob_matching_has_no_backtracking_blowup() -> None:
    started = time.perf_counter()
    assert not match_resource("*a" * 100 + "b", "a" * 512)
    assert time.perf_counter() - started < 0.5


def test_create_read_and_revoke_a_grant(env: Env) -> None:
    expires = isoformat(datetime.now(UTC) + timedelta(days=1))
    grant = create(env, expires_at=expires)
    assert grant["authorization_id"].startswith("auth_")
    assert grant["agent_id"] == AGENT and grant["subject"] == "user-42"
    assert grant["scopes"][1]["confirm_prompt_hint"] == "Add events to your calendar"
    assert grant["requires_confirm_for"] == ["calendar.write"]
    assert grant["expires_at"] == expires and grant["created_at"]
    auth = grant["authorization_id"]
    r = env.client.get(f"/v1/grants/{auth}", headers=env.h("admin"))
    assert r.status_code == 200 and r.json()["status"] == "active"
    r = env.client.delete(f"/v1/grants/{auth}", headers=env.h("app"))
    assert r.status_code == 200, r.text
    revoked_at = r.json()["revoked_at"]
    assert r.json()["status"] == "revoked" and revoked_at
    again = env.client.delete(f"/v1/grants/{auth}", headers=env.h("admin"))
    assert again.status_code == 200 and again.json()["revoked_at"] == revoked_at  # idempotent
    assert check(env, auth, "refunds", "order:1").json() == {
        "decision": "deny", "authorization_id": auth, "scope": "refunds", "resource": "order:1",
        "reason": "GRANT_REVOKED",
    }


def test_only_app_and_admin_keys_create_and_revoke_grants(env: Env) -> None:
    for role in ("agent", "auditor"):
        r = env.client.post("/v1/grants", json=grant_body(), headers=env.h(role))
        assert r.status_code == 403 and r.json()["code"] == "FORBIDDEN_ROLE"
    auth = create(env, role="admin")["authorization_id"]
    r = env.client.delete(f"/v1/grants/{auth}", headers=env.h("agent"))
    assert r.status_code == 403
    assert env.client.get(f"/v1/grants/{auth}", headers=env.h("auditor")).status_code == 200


@pytest.mark.parametrize(("change", "code"), [
    ({"scopes": []}, "VALIDATION_ERROR"),
    ({"scopes": [{"scope": "x", "decision": "maybe", "resources": ["*"]}]}, "VALIDATION_ERROR"),
    ({"scopes": [{"scope": "x", "decision": "allow", "resources": []}]}, "VALIDATION_ERROR"),
    ({"scopes": [{"scope": "x", "decision": "allow", "resources": ["a\nb"]}]}, "INVALID_RESOURCE_PATTERN"),
    ({"scopes": [{"scope": "x", "decision": "allow", "resources": [""]}]}, "INVALID_RESOURCE_PATTERN"),
    ({"scopes": [{"scope": "has space", "decision": "allow", "resources": ["*"]}]}, "INVALID_SCOPE"),
    ({"scopes": [{"scope": "x", "decision": "allow", "resources": ["*"]},
                 {"scope": "x", "decision": "confirm", "resources": ["*"]}]}, "DUPLICATE_SCOPE"),
    ({"expires_at": "2001-01-01T00:00:00Z"}, "INVALID_EXPIRES_AT"),
    ({"expires_at": "tomorrow"}, "INVALID_EXPIRES_AT"),
    ({"expires_at": "2999-01-01T00:00:00"}, "INVALID_EXPIRES_AT"),  # no timezone
    ({"agent_id": ""}, "VALIDATION_ERROR"),
    ({"subject": "x" * 201}, "VALIDATION_ERROR"),
    ({"unknown": 1}, "VALIDATION_ERROR"),
])
def test_bad_grants_are_422_with_a_code(env: Env, change: dict[str, Any], code: str) -> None:
    r = env.client.post("/v1/grants", json=grant_body(**change), headers=env.h("app"))
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == code


def test_check_allows_denies_and_asks_for_confirmation(env: Env) -> None:
    auth = create(env)["authorization_id"]
    assert check(env, auth, "refunds", "order:9").json()["decision"] == "allow"
    assert check(env, auth, "refunds", "order:9", role="app").json()["decision"] == "allow"
    denied = check(env, auth, "refunds", "invoice:9").json()
    assert denied["decision"] == "deny" and denied["reason"] == "RESOURCE_NOT_GRANTED"
    assert check(env, auth, "email.send", "x").json()["reason"] == "SCOPE_NOT_GRANTED"
    assert check(env, "auth_nope", "refunds", "order:9").json()["reason"] == "GRANT_NOT_FOUND"
    confirm = check(env, auth, "calendar.write", "cal:team-b").json()
    assert confirm["decision"] == "confirm"
    assert confirm["confirm_nonce"].startswith("cnf_") and len(confirm["confirm_nonce"]) == 36
    assert confirm["confirm_prompt_hint"] == "Add events to your calendar"
    assert confirm["expires_at"]
    again = check(env, auth, "calendar.write", "cal:team-b").json()
    assert again["confirm_nonce"] != confirm["confirm_nonce"]  # a fresh nonce per check


def test_an_expired_grant_denies(env: Env) -> None:
    soon = isoformat(datetime.now(UTC) + timedelta(seconds=1))
    auth = create(env, expires_at=soon)["authorization_id"]
    assert check(env, auth, "refunds", "order:1").json()["decision"] == "allow"
    time.sleep(1.1)
    assert check(env, auth, "refunds", "order:1").json()["reason"] == "GRANT_EXPIRED"
    assert env.client.get(f"/v1/grants/{auth}", headers=env.h("app")).json()["status"] == "expired"


def test_an_agent_key_checks_only_grants_of_its_own_agent(env: Env) -> None:
    auth = create(env)["authorization_id"]
    _, other = env.services.tenancy.create_api_key(env.tenant_id, "agent", "other-agent")
    _, unbound = env.services.tenancy.create_api_key(env.tenant_id, "agent", None)
    for key in (other, unbound):
        r = check(env, auth, "refunds", "order:1", headers=bearer(key))
        assert r.status_code == 403 and r.json()["code"] == "GRANT_AGENT_MISMATCH"


def test_grants_are_invisible_to_other_tenants(env: Env) -> None:
    auth = create(env)["authorization_id"]
    other = env.new_tenant()
    assert env.client.get(f"/v1/grants/{auth}", headers=bearer(other["app"])).status_code == 404
    r = env.client.delete(f"/v1/grants/{auth}", headers=bearer(other["admin"]))
    assert r.status_code == 404 and r.json()["code"] == "GRANT_NOT_FOUND"
    r = check(env, auth, "refunds", "order:1", headers=bearer(other["agent"]))
    assert r.status_code == 200 and r.json()["decision"] == "deny" and r.json()["reason"] == "GRANT_NOT_FOUND"
    r = env.authorize(headers=bearer(other["agent"]), action_type="refund", payload=REFUND,
                      authorization_id=auth, scope="refunds", resource="order:1")
    assert r.status_code == 403 and r.json()["code"] == "GRANT_DENIED"
    assert env.client.get(f"/v1/grants/{auth}", headers=env.h("app")).json()["status"] == "active"


def test_authorize_under_an_allow_scope_is_authorized(env: Env) -> None:
    auth = create(env)["authorization_id"]
    r = env.authorize(action_type="refund", payload=REFUND, authorization_id=auth, scope="refunds",
                      resource="order:1")
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["status"] == "authorized" and "warrant" in body
    assert next(s for s in body["decision"]["stages"] if s["name"] == "grant")["outcome"] == "allow"


@pytest.mark.parametrize(("scope", "resource", "outcome"), [
    ("refunds", "invoice:1", "deny:RESOURCE_NOT_GRANTED"),
    ("payouts", "order:1", "deny:SCOPE_NOT_GRANTED"),
])
def test_authorize_outside_the_grant_is_denied_with_a_receipt(env: Env, scope: str, resource: str,
                                                              outcome: str) -> None:
    auth = create(env)["authorization_id"]
    r = env.authorize(action_type="refund", payload=REFUND, authorization_id=auth, scope=scope, resource=resource)
    assert r.status_code == 403, r.text
    problem = r.json()
    assert problem["code"] == "GRANT_DENIED"
    assert problem["details"]["stage"] == "grant" and problem["details"]["receipt_id"].startswith("rcpt_")
    detail = env.client.get(f"/v1/actions/{problem['details']['action_id']}", headers=env.h("agent")).json()
    assert detail["status"] == "denied"
    assert next(s for s in detail["decision"]["stages"] if s["name"] == "grant")["outcome"] == outcome


def test_authorize_for_another_agent_or_a_revoked_grant_is_denied(env: Env) -> None:
    auth = create(env, agent_id="someone-else")["authorization_id"]
    r = env.authorize(action_type="refund", payload=REFUND, authorization_id=auth, scope="refunds", resource="order:1")
    assert r.status_code == 403 and r.json()["code"] == "GRANT_DENIED"
    auth = create(env)["authorization_id"]
    env.client.delete(f"/v1/grants/{auth}", headers=env.h("app"))
    r = env.authorize(action_type="refund", payload=REFUND, authorization_id=auth, scope="refunds", resource="order:1")
    assert r.status_code == 403 and r.json()["code"] == "GRANT_DENIED"


def test_authorize_with_a_grant_needs_scope_and_resource(env: Env) -> None:
    auth = create(env)["authorization_id"]
    r = env.authorize(action_type="refund", payload=REFUND, authorization_id=auth, scope="refunds")
    assert r.status_code == 422 and r.json()["code"] == "GRANT_SCOPE_REQUIRED"


def test_the_grant_cannot_loosen_the_policy(env: Env) -> None:
    auth = create(env, scopes=[{"scope": "wires", "decision": "allow", "resources": ["*"]}])["authorization_id"]
    r = env.authorize(payload={"amount_minor": 200_000_000, "currency": "EUR", "beneficiary": "X"},
                      authorization_id=auth, scope="wires", resource="acct:1")
    assert r.status_code == 403 and r.json()["code"] == "POLICY_DENIED"
