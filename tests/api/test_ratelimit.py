"""Rate limits: 429 RATE_LIMITED with Retry-After, nothing written, per key and per agent; the
one-statement bucket take stores exactly what ``policy.limits.take`` decides."""

from __future__ import annotations

import random
from typing import Any

from support import Env
from warrantor.demo import demo_bundle
from warrantor.policy.limits import GRACE_SECONDS, take
from warrantor.store import Repo
from warrantor.store import repo_guard as rg


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


def _bucket_cases() -> list[tuple[float, float, float, float, int]]:
    """(tokens, updated_at, now, rate_per_second, burst): boundaries, then seeded random states."""
    t0 = 1_795_334_449.81251
    cases = [
        (0.0, t0, t0, 1.0, 1), (1.0, t0, t0, 1.0, 1), (0.5, t0, t0 + 0.5, 1.0, 3),
        (1 - GRACE_SECONDS * 2.5, t0, t0, 2.5, 5), (1 - 2 * GRACE_SECONDS * 2.5, t0, t0, 2.5, 5),
        (0.0, t0, t0 + 0.1, 10.0, 2), (2.0, t0 + 5, t0, 1.0, 2), (0.25, t0, t0 - 3, 0.5, 4),
        (99_999.0, t0, t0 + 1e-6, 100_000.0, 100_000), (0.0, t0, t0 + 3e9, 1e190, 7),
    ]
    rnd = random.Random(20261122)
    for _ in range(300):
        burst = rnd.choice([1, 2, 3, 40, 100_000])
        rate = rnd.choice([0.001, 0.01, 0.3, 1.0, 3.7, 50.0, 100_000.0])
        tokens = rnd.choice([0.0, rnd.uniform(0, 1), rnd.uniform(0, burst), float(burst)])
        updated = t0 + rnd.uniform(-100, 100)
        now = updated + rnd.choice([0.0, rnd.uniform(0, 1e-3), rnd.uniform(0, 2), rnd.uniform(-1, 0)])
        cases.append((tokens, updated, now, rate, burst))
    return cases


def test_one_statement_bucket_take_stores_exactly_what_take_decides(store_env: Env) -> None:
    """The allowed path's SQL arithmetic equals ``policy.limits.take`` bit for bit, both stores."""
    cases = _bucket_cases()

    def job(repo: Repo) -> list[tuple[bool, tuple[float, float], tuple[float, float]]]:
        out = []
        for i, (tokens, updated, now, rate, burst) in enumerate(cases):
            key = f"case-{i}"
            rg.lock_bucket(repo, store_env.tenant_id, "key", key, burst, updated)
            rg.set_bucket(repo, store_env.tenant_id, "key", key, tokens, updated)
            fresh = take(float(burst), now, now, rate, burst).tokens
            allowed = rg.take_from_bucket(repo, store_env.tenant_id, "key", key, fresh_tokens=fresh, now=now,
                                          rate_per_second=rate, burst=burst, grace=GRACE_SECONDS * rate, cost=1)
            stored = rg.lock_bucket(repo, store_env.tenant_id, "key", key, burst, now)
            created = rg.take_from_bucket(repo, store_env.tenant_id, "key", key + "-new", fresh_tokens=fresh,
                                          now=now, rate_per_second=rate, burst=burst,
                                          grace=GRACE_SECONDS * rate, cost=1)
            assert created
            out.append((allowed, stored, rg.lock_bucket(repo, store_env.tenant_id, "key", key + "-new", burst, now)))
        return out

    results = store_env.services.store.write(job)
    refused = 0
    for (tokens, updated, now, rate, burst), (allowed, stored, new) in zip(cases, results, strict=True):
        expected = take(tokens, updated, now, rate, burst)
        assert allowed is expected.allowed, (tokens, updated, now, rate, burst)
        if allowed:
            assert stored == (expected.tokens, max(now, updated)), (tokens, updated, now, rate, burst)
        else:
            refused += 1
            assert stored == (tokens, updated)  # a refusal changes nothing
        assert new == (take(float(burst), now, now, rate, burst).tokens, now)
    assert 0 < refused < len(cases)
