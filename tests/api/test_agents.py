"""Agent registry and the identify stage: strict mode, instruction-hash mismatch, isolation."""

from __future__ import annotations

from typing import Any

from support import Env
from warrantor.demo import demo_bundle

H1 = "sha256:" + "ab" * 32  # the hash env.authorize sends by default
H2 = "sha256:" + "cd" * 32


def activate(env: Env, config: dict[str, Any]) -> str:
    bundle = {**demo_bundle(), "config": config}
    r = env.client.post("/v1/policies", json=bundle, headers=env.h("admin"))
    assert r.status_code == 201, r.text
    bundle_hash = r.json()["bundle_hash"]
    r = env.client.post(f"/v1/policies/{bundle_hash}/activate", json={"mode": "enforce"}, headers=env.h("admin"))
    assert r.status_code == 200, r.text
    return bundle_hash


def register(env: Env, version: str, instruction_hash: str, agent_id: str = "payments-agent") -> Any:
    return env.client.post("/v1/agents", headers=env.h("admin"), json={
        "agent_id": agent_id, "version": version, "model_id": "gpt-4o", "instruction_hash": instruction_hash})


def test_register_read_and_delete_versions(env: Env) -> None:
    assert register(env, "1", H1).status_code == 201
    assert register(env, "2", H2).status_code == 201
    dup = register(env, "2", H1)
    assert dup.status_code == 409 and dup.json()["code"] == "AGENT_VERSION_EXISTS"
    got = env.client.get("/v1/agents/payments-agent", headers=env.h("auditor")).json()
    assert [v["version"] for v in got["versions"]] == ["1", "2"]
    assert got["latest_version"] == "2"
    assert env.client.delete("/v1/agents/payments-agent", headers=env.h("admin")).json()["deleted_versions"] == 2
    assert env.client.get("/v1/agents/payments-agent", headers=env.h("admin")).status_code == 404
    assert env.client.delete("/v1/agents/payments-agent", headers=env.h("admin")).status_code == 404


def test_only_admins_register_and_bad_bodies_are_422(env: Env) -> None:
    body = {"agent_id": "a", "version": "1", "model_id": "m", "instruction_hash": H1}
    assert env.client.post("/v1/agents", json=body, headers=env.h("agent")).status_code == 403
    bad = env.client.post("/v1/agents", json={**body, "extra": 1}, headers=env.h("admin"))
    assert bad.status_code == 422
    assert env.client.post("/v1/agents", json={**body, "version": ""}, headers=env.h("admin")).status_code == 422


def test_strict_denies_unregistered_agent_with_receipt(env: Env) -> None:
    activate(env, {"agents": {"strict": True}})
    r = env.authorize()
    assert r.status_code == 403
    problem = r.json()
    assert problem["code"] == "AGENT_NOT_REGISTERED"
    assert problem["details"]["stage"] == "identify" and problem["details"]["receipt_id"]
    action = env.client.get(f"/v1/actions/{problem['details']['action_id']}", headers=env.h("admin")).json()
    assert action["status"] == "denied"
    register(env, "1", H1)
    ok = env.authorize()
    assert ok.status_code == 201, ok.text
    stages = [s["name"] for s in ok.json()["decision"]["stages"]]
    assert stages[0] == "identify"


def test_instruction_hash_mismatch_denies_or_holds(env: Env) -> None:
    register(env, "1", H1)
    register(env, "2", H2)
    activate(env, {"agents": {"strict": True, "on_instruction_mismatch": "deny"}})
    # newest version (2) is compared when agent_version is absent
    r = env.authorize(instruction_hash=H1)
    assert r.status_code == 403 and r.json()["code"] == "INSTRUCTION_HASH_MISMATCH"
    assert env.authorize(instruction_hash=H1, agent_version="1").status_code == 201
    assert env.authorize(instruction_hash=H2).status_code == 201
    unknown = env.authorize(agent_version="9")
    assert unknown.status_code == 403 and unknown.json()["code"] == "AGENT_NOT_REGISTERED"
    missing = env.client.post("/v1/actions", headers=env.h("agent"), json={
        "action_type": "wire_transfer", "payload": {"amount_minor": 1, "currency": "EUR", "beneficiary": "X"}})
    assert missing.json()["code"] == "INSTRUCTION_HASH_MISMATCH"

    activate(env, {"agents": {"strict": True, "on_instruction_mismatch": "require_approval"}})
    held = env.authorize(instruction_hash="sha256:changed")
    assert held.status_code == 201
    assert held.json()["status"] == "pending_approval"
    assert held.json()["decision"]["reason"] == "INSTRUCTION_HASH_MISMATCH"


def test_registry_off_without_agents_config(env: Env) -> None:
    assert env.authorize().status_code == 201  # demo bundle has no agents section


def test_agents_are_tenant_isolated(env: Env) -> None:
    register(env, "1", H1)
    other = env.new_tenant()
    h = {"Authorization": f"Bearer {other['admin']}"}
    assert env.client.get("/v1/agents/payments-agent", headers=h).status_code == 404
    assert env.client.delete("/v1/agents/payments-agent", headers=h).status_code == 404
    assert env.client.get("/v1/agents", headers=h).json()["data"] == []
