"""Rate limits: 429 RATE_LIMITED with Retry-After, nothing written, per key and per agent."""

from __future__ import annotations

from typing import Any

from support import Env
from warrantor.demo import demo_bundle


def activate(env: Env, config: dict[str, Any]) -> None:
    r = env.client.post("/v1/policies", json={**demo_bundle(), "config": config}, headers=env.h("admin"))
    assert r.status_code == 201, r.text
    r = env.client.post(f"/v1/policies/{r.json()['bundle_hash']}/activate", headers=env.h("admin"))
    assert r.status_code == 200, r.text


def total_actions(env: Env) -> int:
    return int(env.client.get("/v1/actions", headers=env.h("admin")).json()["pagination"]["total"])


def test_per_key_bucket_refuses_with_retry_after_and_writes_nothing(env: Env) -> None:
    activate(env, {"rate_limits": {"per_key": {"rate_per_second": 0.01, "burst": 3}}})
    assert [env.authorize().status_code for _ in range(3)] == [201, 201, 201]
    r = env.authorize()
    assert r.status_code == 429
    assert r.json()["code"] == "RATE_LIMITED"
    assert 1 <= int(r.headers["Retry-After"]) <= 100
    assert total_actions(env) == 3
    # another key of the same tenant has its own bucket
    assert env.authorize(role="admin", agent_id="payments-agent").status_code == 201


def test_per_agent_bucket_is_shared_by_every_key_of_the_agent(env: Env) -> None:
    activate(env, {"rate_limits": {"per_agent": {"rate_per_second": 0.01, "burst": 2}}})
    assert env.authorize().status_code == 201
    assert env.authorize(role="admin", agent_id="payments-agent").status_code == 201
    assert env.authorize(role="admin", agent_id="payments-agent").status_code == 429
    assert env.authorize(role="admin", agent_id="other-agent").status_code == 201


def test_idempotent_replay_is_not_limited(env: Env) -> None:
    activate(env, {"rate_limits": {"per_key": {"rate_per_second": 0.01, "burst": 1}}})
    first = env.authorize(idempotency_key="k1")
    assert first.status_code == 201
    again = env.authorize(idempotency_key="k1")
    assert again.status_code == 201 and again.json()["action_id"] == first.json()["action_id"]


def test_buckets_are_per_tenant(env: Env) -> None:
    activate(env, {"rate_limits": {"per_agent": {"rate_per_second": 0.01, "burst": 1}}})
    assert env.authorize().status_code == 201
    assert env.authorize().status_code == 429
    other = env.new_tenant()  # demo policy: no rate limits, and its own 'payments-agent' bucket anyway
    r = env.client.post("/v1/actions", headers={"Authorization": f"Bearer {other['agent']}"}, json={
        "action_type": "wire_transfer", "payload": {"amount_minor": 1, "currency": "EUR", "beneficiary": "B"}})
    assert r.status_code == 201
