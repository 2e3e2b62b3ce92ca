"""The README walkthrough: authorize -> approve by code -> notarize, and a denial."""

from __future__ import annotations

from support import WIRE, Env


def test_authorize_approve_notarize_and_deny(store_env: Env) -> None:
    env = store_env
    big = {**WIRE, "amount_minor": 6_000_000}
    r = env.authorize(payload=big)
    assert r.status_code == 201, r.text
    held = r.json()
    assert held["status"] == "pending_approval"
    assert held["approval"]["approvers"] == ["finance-leads"]
    code = env.approval_codes(held["action_id"])[0]
    assert code.startswith("APR-")
    r = env.client.post(f"/v1/approvals/{code}/confirm", json={"decision": "approve"})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "approved"
    detail = env.client.get(f"/v1/actions/{held['action_id']}", headers=env.h("agent")).json()
    assert detail["warrant"]["envelope"]["payloadType"] == "application/vnd.in-toto+json"
    r = env.client.post(
        f"/v1/actions/{held['action_id']}/notarize",
        json={"outcome": "completed", "executed": {"action_type": "wire_transfer", "payload": big}},
        headers=env.h("agent"),
    )
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "notarized"
    assert r.json()["match"]["payload_consistent"] is True

    r = env.authorize(payload={**WIRE, "amount_minor": 200_000_000})
    assert r.status_code == 403
    problem = r.json()
    assert r.headers["content-type"].startswith("application/problem+json")
    assert problem["code"] == "POLICY_DENIED"
    assert problem["details"]["receipt_id"].startswith("rcpt_")
    assert problem["details"]["rules"][0]["id"] == "wire-cap-1m"
