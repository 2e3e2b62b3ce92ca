"""POST /v1/policies/outlook: what the enforcing bundle can decide per action type and agent.

What a gateway relies on (hide ``deny`` + ``certain``, mark ``require_approval`` in
``possible``) is checked against what ``POST /v1/actions`` then really decides; and the
attacks: an agent key asking for another agent's outlook, oversized or malformed lists,
another tenant's bundle.
"""

from __future__ import annotations

import logging
import os
import signal
from typing import Any

import pytest

from support import Env, bearer
from warrantor.domain.model import Role
from warrantor.policy import outlook as outlook_module
from warrantor.service.authorization import policies as policies_module

URL = "/v1/policies/outlook"
FILES_SCHEMA = """
entity Agent;
entity Resource;
type Ctx = {
  payload: {path?: String}, details: String, scope: String, endpoint_host: String,
  labels: Set<String>, agent_version: String, model_id: String, model_version: String,
};
action "mcp.files.delete", "mcp.files.read"
  appliesTo { principal: [Agent], resource: [Resource], context: Ctx };
"""
FILES_CEDAR = """
@id("default-allow") @reason("DEFAULT_ALLOW") permit (principal, action, resource);
@id("no-delete") @effect("deny") @reason("NO_DELETE")
forbid (principal, action == Action::"mcp.files.delete", resource);
"""
# every role that is a key bound to one agent ("gateway" once the role exists)
AGENT_BOUND_ROLES = [r.value for r in Role if r.value in ("agent", "gateway")]


def outlooks(env: Env, headers: dict[str, str], *types: str, **body: Any) -> dict[str, Any]:
    r = env.client.post(URL, json={"action_types": list(types), **body}, headers=headers)
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    assert [o["action_type"] for o in out["outlooks"]] == list(types)
    return out


def by_type(answer: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {o["action_type"]: o for o in answer["outlooks"]}


def activate_files_bundle(env: Env) -> str:
    r = env.client.post("/v1/policies", json={"cedar": FILES_CEDAR, "schema": FILES_SCHEMA},
                        headers=env.h("admin"))
    assert r.status_code == 201, r.text
    bundle_hash = str(r.json()["bundle_hash"])
    r = env.client.post(f"/v1/policies/{bundle_hash}/activate", json={"mode": "enforce"}, headers=env.h("admin"))
    assert r.status_code == 200, r.text
    return bundle_hash


def problem(r: Any, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == code, r.text


def test_the_demo_bundle_for_its_agent(env: Env) -> None:
    answer = outlooks(env, env.h("agent"), "wire_transfer", "refund", "send_email", "mcp.payments.send_payment")
    assert answer["bundle_hash"] == env.bundle_hash and answer["agent_id"] == "payments-agent"
    got = by_type(answer)
    wire = got["wire_transfer"]
    assert (wire["effect"], wire["certain"], wire["reason"]) == ("allow", False, None)
    assert wire["possible"] == ["deny", "require_approval", "allow"]  # strongest first
    assert wire["rules"] == [
        {"id": "wire-cap-1m", "effect": "deny", "conditional": True},
        {"id": "wire-approval-50k", "effect": "require_approval", "conditional": True},
        {"id": "wire-foreign-currency", "effect": "require_approval", "conditional": True},
        {"id": "default-allow", "effect": "allow", "conditional": False},
    ]
    assert got["refund"]["possible"] == ["confirm", "allow"]
    assert got["send_email"]["possible"] == ["require_approval", "allow"]


def test_a_type_the_demo_schema_does_not_declare_is_denied_for_certain_as_authorize_denies_it(env: Env) -> None:
    """The demo's default-allow permits every action, but the engine checks each request
    against the bundle's schema, which declares three actions: anything else is denied."""
    unknown = by_type(outlooks(env, env.h("agent"), "mcp.payments.send_payment"))["mcp.payments.send_payment"]
    assert unknown == {"action_type": "mcp.payments.send_payment", "effect": "deny", "certain": True,
                       "possible": ["deny"], "rules": [], "reason": "ACTION_NOT_IN_SCHEMA"}
    r = env.authorize(action_type="mcp.payments.send_payment", payload={})
    assert r.status_code == 403 and r.json()["code"] == "POLICY_DENIED", r.text


def test_an_unconditional_forbid_is_a_certain_deny_and_authorize_agrees(env: Env) -> None:
    bundle_hash = activate_files_bundle(env)
    answer = outlooks(env, env.h("agent"), "mcp.files.delete", "mcp.files.read")
    assert answer["bundle_hash"] == bundle_hash
    got = by_type(answer)
    assert got["mcp.files.delete"] == {
        "action_type": "mcp.files.delete", "effect": "deny", "certain": True, "possible": ["deny"],
        "rules": [{"id": "no-delete", "effect": "deny", "conditional": False},
                  {"id": "default-allow", "effect": "allow", "conditional": False}],
        "reason": None,
    }
    assert (got["mcp.files.read"]["effect"], got["mcp.files.read"]["certain"]) == ("allow", True)
    for action_type, status in (("mcp.files.delete", 403), ("mcp.files.read", 201)):
        r = env.authorize(action_type=action_type, payload={"path": "/tmp/x"})
        assert r.status_code == status, (action_type, r.text)


@pytest.mark.parametrize("role", AGENT_BOUND_ROLES)
def test_an_agent_bound_key_gets_its_own_agent_and_no_other(env: Env, role: str) -> None:
    r = env.client.post("/v1/api-keys", headers=env.h("admin"), json={"role": role, "agent_id": "mallory-agent"})
    assert r.status_code == 201, r.text
    mallory = bearer(r.json()["key"])
    assert outlooks(env, mallory, "wire_transfer")["agent_id"] == "mallory-agent"
    assert outlooks(env, mallory, "wire_transfer", agent_id="mallory-agent")["agent_id"] == "mallory-agent"
    r = env.client.post(URL, json={"action_types": ["wire_transfer"], "agent_id": "payments-agent"}, headers=mallory)
    problem(r, 403, "AGENT_MISMATCH")
    assert "'mallory-agent' (bound to this key)" in r.json()["detail"]


def test_the_agent_changes_the_outlook(env: Env) -> None:
    cedar = FILES_CEDAR + """
@id("mallory-held") @effect("require_approval") @reason("WATCHED")
forbid (principal == Agent::"mallory-agent", action, resource);
"""
    r = env.client.post("/v1/policies", json={"cedar": cedar, "schema": FILES_SCHEMA}, headers=env.h("admin"))
    assert r.status_code == 201, r.text
    r = env.client.post(f"/v1/policies/{r.json()['bundle_hash']}/activate", json={}, headers=env.h("admin"))
    assert r.status_code == 200, r.text
    mine = by_type(outlooks(env, env.h("agent"), "mcp.files.read"))["mcp.files.read"]
    assert (mine["effect"], mine["certain"]) == ("allow", True)
    theirs = by_type(outlooks(env, env.h("admin"), "mcp.files.read", agent_id="mallory-agent"))["mcp.files.read"]
    assert (theirs["effect"], theirs["certain"]) == ("require_approval", True)


def test_keys_not_bound_to_an_agent_must_name_one(env: Env) -> None:
    for role in ("admin", "auditor"):
        problem(env.client.post(URL, json={"action_types": ["wire_transfer"]}, headers=env.h(role)),
                422, "AGENT_ID_REQUIRED")
        assert outlooks(env, env.h(role), "wire_transfer", agent_id="any-agent")["agent_id"] == "any-agent"
    r = env.client.post("/v1/api-keys", headers=env.h("admin"), json={"role": "agent"})
    assert r.status_code == 201, r.text
    problem(env.client.post(URL, json={"action_types": ["refund"]}, headers=bearer(r.json()["key"])),
            422, "AGENT_ID_REQUIRED")
    problem(env.client.post(URL, json={"action_types": ["refund"], "agent_id": "x"}, headers=env.h("app")),
            403, "FORBIDDEN_ROLE")
    problem(env.client.post(URL, json={"action_types": ["refund"]}), 401, "UNAUTHORIZED")


@pytest.mark.parametrize("body", [
    {"action_types": ["t"] * 501},
    {"action_types": ["wire transfer"]},
    {"action_types": [""]},
    {"action_types": ["x" * 129]},
    {"action_types": ["9lives"]},
    {"action_types": [5]},
    {"action_types": "wire_transfer"},
    {"action_types": ["wire_transfer"], "agent_id": "bad agent"},
    {"action_types": ["wire_transfer"], "surprise": True},
    {},
])
def test_malformed_requests_are_422(env: Env, body: dict[str, Any]) -> None:
    problem(env.client.post(URL, json=body, headers=env.h("agent")), 422, "VALIDATION_ERROR")


def test_500_types_is_the_most_one_request_may_ask_for(env: Env) -> None:
    types = [f"mcp.server.tool_{i}" for i in range(499)] + ["wire_transfer"]
    answer = outlooks(env, env.h("agent"), *types)
    assert len(answer["outlooks"]) == 500
    assert answer["outlooks"][-1]["effect"] == "allow" and answer["outlooks"][0]["reason"] == "ACTION_NOT_IN_SCHEMA"


def test_another_tenants_bundle_is_never_used(env: Env) -> None:
    files_hash = activate_files_bundle(env)  # tenant A enforces the files bundle
    other = env.new_tenant()  # tenant B enforces the demo bundle
    answer = outlooks(env, bearer(other["agent"]), "mcp.files.delete")
    assert answer["bundle_hash"] == env.bundle_hash != files_hash
    assert by_type(answer)["mcp.files.delete"]["reason"] == "ACTION_NOT_IN_SCHEMA"

    r = env.client.post("/v1/tenants", json={"name": "Empty"}, headers=env.operator)  # tenant C enforces nothing
    assert r.status_code == 201, r.text
    r = env.client.post(f"/v1/tenants/{r.json()['tenant_id']}/api-keys", json={"role": "agent", "agent_id": "a"},
                        headers=env.operator)
    assert r.status_code == 201, r.text
    answer = outlooks(env, bearer(r.json()["key"]), "mcp.files.read", "wire_transfer")
    assert answer["bundle_hash"] is None
    assert {o["reason"] for o in answer["outlooks"]} == {"NO_ACTIVE_POLICY"}
    assert {(o["effect"], o["certain"]) for o in answer["outlooks"]} == {("deny", True)}


def test_a_bundle_that_cannot_be_analysed_is_answered_conservatively_and_logged(
    env: Env, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(cedar: str) -> Any:
        raise RuntimeError("no heads today")

    monkeypatch.setattr(outlook_module, "policy_heads", broken)
    with caplog.at_level(logging.WARNING, logger="warrantor.service.authorization.policies"):
        wire = by_type(outlooks(env, env.h("agent"), "wire_transfer"))["wire_transfer"]
    assert wire == {"action_type": "wire_transfer", "effect": "deny", "certain": False,
                    "possible": ["deny", "require_approval", "confirm", "allow"], "rules": [],
                    "reason": "ANALYSIS_FAILED"}
    assert any(env.bundle_hash in m and "no heads today" in m for m in caplog.messages), caplog.messages
    assert env.authorize().status_code == 201  # the engine itself is untouched


def test_the_openapi_document_describes_the_outlook(env: Env) -> None:
    spec = env.client.get("/openapi.json").json()
    op = spec["paths"][URL]["post"]
    assert op["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/OutlookIn")
    assert op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/OutlookOut")
    out = spec["components"]["schemas"]
    assert set(out["OutlookOut"]["properties"]) == {"bundle_hash", "agent_id", "outlooks"}
    assert set(out["ActionOutlookOut"]["properties"]) == {
        "action_type", "effect", "certain", "possible", "rules", "reason"}
    assert out["OutlookIn"]["properties"]["action_types"]["maxItems"] == 500


def test_the_upload_sandbox_runs_the_analysis_so_a_crash_there_is_a_refused_upload(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(bundle: Any) -> Any:  # what native code that cannot read the bundle would do
        os.kill(os.getpid(), signal.SIGSEGV)

    monkeypatch.setattr(policies_module, "analyse", crash)
    r = env.client.post("/v1/policies", json={"cedar": FILES_CEDAR, "schema": FILES_SCHEMA}, headers=env.h("admin"))
    problem(r, 422, "POLICY_INVALID")
    assert [p.get("code") for p in r.json()["details"]["problems"]] == ["POLICY_TOO_COMPLEX"]
    assert env.client.get("/healthz").status_code == 200  # the server process never ran it
