"""Least privilege: an API key bound to agent X sees only what X did.

The demo agent key is bound to ``payments-agent``; a second key is bound to
``mallory-agent``, an agent of the same tenant that tries to read its neighbour's actions,
warrants, receipts and chains through every read route. Unbound keys (admin, auditor)
still see the whole tenant.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support import WIRE, Env, bearer, make_env

DENIED = {**WIRE, "amount_minor": 500_000_000}  # the demo policy denies this: a receipt at once


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    with make_env(tmp_path, integrate_interval_ms=50) as e:  # bundles need the entry in a checkpoint
        yield e


@pytest.fixture
def mallory(env: Env) -> dict[str, str]:
    r = env.client.post("/v1/api-keys", headers=env.h("admin"), json={"role": "agent", "agent_id": "mallory-agent"})
    assert r.status_code == 201, r.text
    return bearer(r.json()["key"])


def _authorized(env: Env, **body: Any) -> dict[str, Any]:
    r = env.authorize(**body)
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


def _receipt_id(env: Env, headers: dict[str, str]) -> str:
    r = env.authorize(payload=dict(DENIED), headers=headers)
    assert r.status_code == 403, r.text
    return str(r.json()["details"]["receipt_id"])


def test_an_agent_key_cannot_read_another_agents_action_or_chain(env: Env, mallory: dict[str, str]) -> None:
    victim = _authorized(env)["action_id"]
    for path in (f"/v1/actions/{victim}", f"/v1/actions/{victim}?wait=1", f"/v1/actions/{victim}/chain"):
        r = env.client.get(path, headers=mallory)
        assert r.status_code == 404 and r.json()["code"] == "NOT_FOUND", (path, r.text)
        assert env.client.get(path, headers=env.h("agent")).status_code == 200  # its own agent
        assert env.client.get(path, headers=env.h("auditor")).status_code == 200  # an unbound key


def test_an_agent_key_lists_only_its_own_actions_whatever_the_filter(env: Env, mallory: dict[str, str]) -> None:
    victim = _authorized(env)["action_id"]
    own = _authorized(env, headers=mallory)["action_id"]
    listed = env.client.get("/v1/actions", headers=mallory).json()
    assert [a["action_id"] for a in listed["data"]] == [own] and listed["pagination"]["total"] == 1
    for query in ("agent_id=payments-agent", "agent_id=", "agent_id=%20payments-agent"):
        r = env.client.get(f"/v1/actions?{query}", headers=mallory)
        assert r.status_code == 403 and r.json()["code"] == "AGENT_MISMATCH", (query, r.text)
    same = env.client.get("/v1/actions?agent_id=mallory-agent&status=authorized", headers=mallory).json()
    assert [a["action_id"] for a in same["data"]] == [own]
    everyone = env.client.get("/v1/actions", headers=env.h("admin")).json()["data"]
    assert {a["action_id"] for a in everyone} == {victim, own}


def test_an_agent_key_cannot_fetch_another_agents_warrant_or_receipt(env: Env, mallory: dict[str, str]) -> None:
    warrant_id = _authorized(env)["warrant_id"]
    receipt_id = _receipt_id(env, env.h("agent"))
    for path in (f"/v1/warrants/{warrant_id}/bundle", f"/v1/receipts/{receipt_id}/bundle",
                 f"/v1/receipts/{receipt_id}/bundle?format=tlog-proof", f"/v1/receipts/{receipt_id}"):
        r = env.client.get(path, headers=mallory)
        assert r.status_code == 404 and r.json()["code"] == "NOT_FOUND", (path, r.text)
        assert env.client.get(path, headers=env.h("agent")).status_code == 200, path
        assert env.client.get(path, headers=env.h("auditor")).status_code == 200, path
    own_receipt = _receipt_id(env, mallory)
    assert env.client.get(f"/v1/receipts/{own_receipt}", headers=mallory).status_code == 200


def test_a_chain_stops_before_another_agents_ancestor(env: Env, mallory: dict[str, str]) -> None:
    parent = _authorized(env)["action_id"]
    child = _authorized(env, headers=mallory, parent_action_id=parent)["action_id"]
    seen = env.client.get(f"/v1/actions/{child}/chain", headers=mallory).json()
    assert [c["action_id"] for c in seen["chain"]] == [child] and seen["truncated"] is True
    full = env.client.get(f"/v1/actions/{child}/chain", headers=env.h("auditor")).json()
    assert [c["action_id"] for c in full["chain"]] == [child, parent] and full["truncated"] is False


def test_a_shared_run_shows_an_agent_only_its_own_actions(env: Env, mallory: dict[str, str]) -> None:
    r = env.client.post("/v1/runs", headers=env.h("admin"), json={})
    assert r.status_code == 201, r.text
    run_id = r.json()["run_id"]
    victim = _authorized(env, run_id=run_id)["action_id"]
    own = _authorized(env, headers=mallory, run_id=run_id)["action_id"]
    seen = env.client.get(f"/v1/runs/{run_id}", headers=mallory).json()
    assert [a["action_id"] for a in seen["actions"]] == [own]
    full = env.client.get(f"/v1/runs/{run_id}", headers=env.h("admin")).json()
    assert {a["action_id"] for a in full["actions"]} == {victim, own}


def test_an_agent_key_cannot_open_a_run_in_another_agents_name(env: Env, mallory: dict[str, str]) -> None:
    r = env.client.post("/v1/runs", headers=mallory, json={"agent_id": "payments-agent"})
    assert r.status_code == 403 and r.json()["code"] == "AGENT_MISMATCH", r.text
    own = env.client.post("/v1/runs", headers=mallory, json={})
    assert own.status_code == 201, own.text
    assert own.json()["agent_id"] == "mallory-agent"  # the key's own agent


def test_reusing_another_agents_idempotency_key_reveals_nothing(env: Env, mallory: dict[str, str]) -> None:
    mine = env.authorize(idempotency_key="inv-42").json()["action_id"]
    again = env.authorize(idempotency_key="inv-42", details="something else")
    assert again.status_code == 409 and again.json()["details"]["action_id"] == mine  # its own agent: told
    r = env.client.post("/v1/actions", headers=mallory, json={
        "action_type": "wire_transfer", "payload": WIRE, "idempotency_key": "inv-42"})
    assert r.status_code == 409 and r.json()["code"] == "DUPLICATE_REQUEST"
    assert mine not in r.text
