"""Simulation: replay a candidate bundle over recorded actions; report changes; write nothing."""

from __future__ import annotations

from support import WIRE, Env
from warrantor.demo import demo_bundle

STRICTER = demo_bundle()["cedar"] + """
@id("wire-cap-small") @effect("deny") @reason("SMALL_CAP") @message("No wires over 50 EUR")
forbid (principal, action == Action::"wire_transfer", resource)
when { context.payload.amount_minor > 5000 };
"""


def upload(env: Env, cedar: str) -> str:
    r = env.client.post("/v1/policies", json={**demo_bundle(), "cedar": cedar}, headers=env.h("admin"))
    assert r.status_code == 201, r.text
    return str(r.json()["bundle_hash"])


def test_simulation_reports_every_changed_decision_with_counts(env: Env) -> None:
    small = env.authorize(payload={**WIRE, "amount_minor": 1000}).json()
    medium = env.authorize(payload={**WIRE, "amount_minor": 9000}).json()
    held = env.authorize(payload={**WIRE, "amount_minor": 6_000_000}).json()
    assert held["status"] == "pending_approval"
    candidate = upload(env, STRICTER)
    before = env.client.get("/v1/actions", headers=env.h("admin")).json()["pagination"]["total"]

    r = env.client.post("/v1/policies/simulate", json={"bundle_hash": candidate}, headers=env.h("auditor"))
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["replayed"] == 3 and report["changed"] == 2
    changed = {c["action_id"]: c for c in report["changes"]}
    assert set(changed) == {medium["action_id"], held["action_id"]}
    assert changed[medium["action_id"]]["old"]["effect"] == "allow"
    assert changed[medium["action_id"]]["new"]["effect"] == "deny"
    assert "wire-cap-small" in changed[medium["action_id"]]["new"]["rules"]
    assert report["transitions"] == {"allow->deny": 1, "require_approval->deny": 1}
    assert report["rules"]["wire-cap-small"] == {"matched": 2, "changed": 2}
    assert small["action_id"] not in changed
    after = env.client.get("/v1/actions", headers=env.h("admin")).json()["pagination"]["total"]
    assert after == before  # nothing written


def test_simulation_time_range_and_limit(env: Env) -> None:
    env.authorize(payload={**WIRE, "amount_minor": 9000})
    candidate = upload(env, STRICTER)
    future = {"bundle_hash": candidate, "from": "2999-01-01T00:00:00Z"}
    assert env.client.post("/v1/policies/simulate", json=future, headers=env.h("admin")).json()["replayed"] == 0
    bad = env.client.post("/v1/policies/simulate", headers=env.h("admin"),
                          json={"bundle_hash": candidate, "from": "yesterday"})
    assert bad.status_code == 422 and bad.json()["code"] == "INVALID_TIME"
    assert env.client.post("/v1/policies/simulate", headers=env.h("admin"),
                           json={"bundle_hash": candidate, "limit": 0}).status_code == 422


def test_simulation_is_for_admins_and_auditors_of_the_bundle_tenant(env: Env) -> None:
    candidate = upload(env, STRICTER)
    assert env.client.post("/v1/policies/simulate", json={"bundle_hash": candidate},
                           headers=env.h("agent")).status_code == 403
    other = env.new_tenant()
    r = env.client.post("/v1/policies/simulate", json={"bundle_hash": candidate},
                        headers={"Authorization": f"Bearer {other['admin']}"})
    assert r.status_code == 404
