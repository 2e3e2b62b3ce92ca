"""Human approval that an agent cannot steer: the attacks a compromised agent would try.

Each test is a regression for a hole the approval flow had: request approvers replacing
the policy's, a quorum silently clamped to the list's length, a second rule's approvers
widening the first rule's, codes handed to API keys, group codes shared by a whole group,
decisions after expiry, and decisions that do not say who decided through which channel.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from support import WIRE, Env, make_env
from warrantor.demo import demo_bundle
from warrantor.domain.clock import FixedClock

BIG = {**WIRE, "amount_minor": 6_000_000}  # over 50,000 EUR: the policy holds it for finance-leads
PASSWORD = "correct horse battery staple"


def _count_actions(env: Env) -> int:
    return len(env.client.get("/v1/actions", headers=env.h("admin")).json()["data"])


def _held(env: Env, **body: Any) -> str:
    body.setdefault("payload", dict(BIG))
    r = env.authorize(**body)
    assert r.status_code == 201 and r.json()["status"] == "pending_approval", r.text
    return str(r.json()["action_id"])


def _decide(env: Env, code: str, decision: str = "approve", reason: str | None = None) -> Any:
    return env.client.post(f"/v1/approvals/{code}/confirm", json={"decision": decision, "reason": reason})


def _status(env: Env, action_id: str) -> str:
    return str(env.client.get(f"/v1/actions/{action_id}", headers=env.h("admin")).json()["status"])


def _login(env: Env, email: str, password: str = PASSWORD) -> tuple[TestClient, str]:
    client = TestClient(env.client.app)
    r = client.post("/v1/sessions", json={"email": email, "password": password})
    assert r.status_code == 201, r.text
    return client, r.json()["csrf_token"]


def _upload(env: Env, bundle: dict[str, Any]) -> Any:
    return env.client.post("/v1/policies", json=bundle, headers=env.h("admin"))


def _activate(env: Env, bundle: dict[str, Any]) -> None:
    r = _upload(env, bundle)
    assert r.status_code in (200, 201), r.text
    r = env.client.post(f"/v1/policies/{r.json()['bundle_hash']}/activate", json={"mode": "enforce"},
                        headers=env.h("admin"))
    assert r.status_code == 200, r.text


# -- request approvers can only make approval harder -----------------------------------------
def test_an_agent_cannot_name_its_own_mailbox_as_approver(env: Env) -> None:
    before = _count_actions(env)
    r = env.authorize(payload=BIG, approvers=["agent-inbox@attacker.example"])
    assert r.status_code == 422 and r.json()["code"] == "APPROVER_UNKNOWN", r.text
    assert r.json()["details"]["unknown"] == ["agent-inbox@attacker.example"]
    assert _count_actions(env) == before and env.mail.sent == []  # nothing written, nothing mailed


def test_request_approvers_are_required_in_addition_never_instead(env: Env) -> None:
    env.add_approver("cfo@example.com")
    action_id = _held(env, approvers=["cfo@example.com"])
    held = env.client.get(f"/v1/actions/{action_id}", headers=env.h("agent")).json()["approval"]
    assert [(r["approvers"], r["source"]) for r in held["requirements"]] == [
        (["finance-leads"], "rule:wire-approval-50k"), (["cfo@example.com"], "request")]
    assert _decide(env, env.code_for(action_id, "cfo@example.com")).json()["status"] == "pending_approval"
    assert _status(env, action_id) == "pending_approval"  # the request's approver alone is not enough
    r = _decide(env, env.code_for(action_id, env.approver))
    assert r.json()["status"] == "approved" and r.json()["approvals"] == 2


def test_a_request_cannot_lower_the_policy_quorum(env: Env) -> None:
    env.add_user("second-lead@example.com", groups=("finance-leads",))
    env.add_approver("cfo@example.com")
    bundle = demo_bundle()
    bundle["cedar"] = bundle["cedar"].replace('@approvers("finance-leads") @quorum("1")',
                                              '@approvers("finance-leads") @quorum("2")', 1)
    _activate(env, bundle)
    action_id = _held(env, approvers=["cfo@example.com"])
    assert _decide(env, env.code_for(action_id, "cfo@example.com")).json()["status"] == "pending_approval"
    assert _decide(env, env.code_for(action_id, env.approver)).json()["status"] == "pending_approval"
    r = _decide(env, env.code_for(action_id, "second-lead@example.com"))
    assert r.json()["status"] == "approved", r.text


def test_tripping_a_second_rule_does_not_widen_who_approves_the_first(env: Env) -> None:
    """Each rule that holds an action is its own requirement: a comms reviewer cannot approve
    a wire just because the agent also tripped the comms rule."""
    env.add_user("comms@example.com", groups=("comms-reviewers",))
    bundle = demo_bundle()
    bundle["cedar"] += (
        '\n@id("wire-note-review") @effect("require_approval") @reason("NOTE_REVIEW")\n'
        '@approvers("comms-reviewers")\n'
        'forbid (principal, action == Action::"wire_transfer", resource)\n'
        'when { context.payload has reference && context.payload.reference == "see note" };\n'
    )
    _activate(env, bundle)
    action_id = _held(env, payload={**BIG, "reference": "see note"})
    assert _decide(env, env.code_for(action_id, "comms@example.com")).json()["status"] == "pending_approval"
    assert _status(env, action_id) == "pending_approval"


@pytest.mark.parametrize("bad", [
    "cfo@example.com\r\nBcc: attacker@evil.example",
    "cfo@example.com\n",
    "a" * 250 + "@x.example",
    "finance leads",
    "<cfo@example.com>",
    "cfo@example.com,ceo@example.com",
    "",
])
def test_malformed_approvers_are_refused_before_anything_is_written(env: Env, bad: str) -> None:
    before = _count_actions(env)
    r = env.authorize(payload=BIG, approvers=[bad])
    assert r.status_code == 422 and r.json()["code"] in ("APPROVER_INVALID", "VALIDATION_ERROR"), r.text
    assert _count_actions(env) == before and env.mail.sent == []


def test_approvers_of_another_tenant_are_unknown(env: Env) -> None:
    other = env.new_tenant()
    env.client.post("/v1/approvers", json={"address": "theirs@example.com"},
                    headers={"Authorization": f"Bearer {other['admin']}"})
    r = env.authorize(payload=BIG, approvers=["theirs@example.com"])
    assert r.status_code == 422 and r.json()["code"] == "APPROVER_UNKNOWN"


# -- quorum that cannot be met is a bundle error, with line and column -----------------------
def test_an_unreachable_quorum_is_refused_at_upload_with_its_line(env: Env) -> None:
    bundle = demo_bundle()
    bundle["cedar"] = bundle["cedar"].replace('@approvers("finance-leads") @quorum("1")',
                                              '@approvers("finance-leads") @quorum("2")', 1)
    r = _upload(env, bundle)
    assert r.status_code == 422 and r.json()["code"] == "POLICY_INVALID", r.text
    [problem] = r.json()["details"]["problems"]
    assert problem["code"] == "QUORUM_UNREACHABLE" and problem["policy_id"] == "wire-approval-50k"
    line = bundle["cedar"].splitlines()[problem["line"] - 1]
    assert '@id("wire-approval-50k")' in line and problem["column"] == 1


def test_an_unknown_policy_approver_is_refused_at_upload(env: Env) -> None:
    bundle = demo_bundle()
    bundle["cedar"] = bundle["cedar"].replace('@approvers("comms-reviewers")', '@approvers("nobody@example.com")')
    r = _upload(env, bundle)
    assert r.status_code == 422, r.text
    assert [p["code"] for p in r.json()["details"]["problems"]] == ["APPROVER_UNKNOWN"]
    bundle["config"] = {"approvals": {"default_approvers": ["ghosts"]}}
    codes = sorted(p["code"] for p in _upload(env, bundle).json()["details"]["problems"])
    assert codes == ["APPROVER_UNKNOWN", "APPROVER_UNKNOWN"]


def test_a_malformed_policy_approver_is_a_bundle_problem(env: Env) -> None:
    bundle = demo_bundle()
    bundle["cedar"] = bundle["cedar"].replace('@approvers("comms-reviewers")', '@approvers("Comms Reviewers")')
    r = _upload(env, bundle)
    assert r.status_code == 422
    assert any("@approvers" in p["message"] and "no whitespace" in p["message"]
               for p in r.json()["details"]["problems"])


# -- codes are personal and reach people only through their channel -------------------------
def test_no_api_key_ever_sees_a_usable_code(env: Env) -> None:
    action_id = _held(env)
    [code] = env.approval_codes(action_id)
    for role in ("admin", "auditor", "agent", "app"):
        for path in (f"/v1/actions/{action_id}/approval", f"/v1/actions/{action_id}", "/v1/actions"):
            r = env.client.get(path, headers=env.h(role))
            assert code not in r.text and "APR-" not in r.text, (role, path)
    status = env.client.get(f"/v1/actions/{action_id}/approval", headers=env.h("admin")).json()
    assert status["notified"] == [{"approver": env.approver, "used": False}]
    assert status["requirements"][0]["met"] is False


def test_each_group_member_gets_a_personal_code_and_one_person_counts_once(env: Env) -> None:
    env.add_user("second-lead@example.com", groups=("finance-leads",))
    bundle = demo_bundle()
    bundle["cedar"] = bundle["cedar"].replace('@approvers("finance-leads") @quorum("1")',
                                              '@approvers("finance-leads") @quorum("2")', 1)
    _activate(env, bundle)
    action_id = _held(env)
    codes = env.mail.codes(action_id)
    assert sorted(codes) == sorted([env.approver, "second-lead@example.com"])
    assert len(set(codes.values())) == 2
    assert _decide(env, codes[env.approver]).json()["approvals"] == 1
    # The same person through the console does not count a second time.
    client, csrf = _login(env, env.approver, env.approver_password)
    r = client.post(f"/v1/actions/{action_id}/approve", json={}, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 409 and r.json()["code"] == "ALREADY_RESOLVED"
    assert _status(env, action_id) == "pending_approval"


def test_api_keys_cannot_decide_on_any_path(env: Env) -> None:
    action_id = _held(env)
    for role in ("admin", "agent", "app", "auditor"):
        for path, body in (("approve", {}), ("deny", {"reason": "x"})):
            r = env.client.post(f"/v1/actions/{action_id}/{path}", json=body, headers=env.h(role))
            assert r.status_code in (401, 403) and r.json()["code"] == "HUMAN_SESSION_REQUIRED", (role, path)
    assert _status(env, action_id) == "pending_approval"


def test_removing_an_address_from_the_directory_withdraws_its_code(env: Env) -> None:
    env.add_approver("cfo@example.com")
    action_id = _held(env, approvers=["cfo@example.com"])
    code = env.code_for(action_id, "cfo@example.com")
    assert env.client.delete("/v1/approvers/cfo@example.com", headers=env.h("admin")).status_code == 204
    r = _decide(env, code)
    assert r.status_code == 403 and r.json()["code"] == "NOT_AN_APPROVER"


# -- the decision says who decided through which channel, and the evidence carries it ---------
def _predicate(envelope: dict[str, Any]) -> dict[str, Any]:
    statement: dict[str, Any] = json.loads(base64.b64decode(envelope["payload"]))
    return dict(statement["predicate"])


def test_the_warrant_records_who_decided_through_which_channel(env: Env) -> None:
    env.add_approver("cfo@example.com")
    action_id = _held(env, approvers=["cfo@example.com"])
    _decide(env, env.code_for(action_id, "cfo@example.com"), reason="known vendor")
    client, csrf = _login(env, env.approver, env.approver_password)
    r = client.post(f"/v1/actions/{action_id}/approve", json={}, headers={"X-CSRF-Token": csrf})
    assert r.json()["status"] == "approved", r.text
    action = env.client.get(f"/v1/actions/{action_id}", headers=env.h("agent")).json()
    approvals = _predicate(action["warrant"]["envelope"])["approvals"]
    assert [(a["approver"], a["via"]) for a in approvals] == [
        ("cfo@example.com", "email-code"), (env.approver, "console")]
    assert approvals[0]["channel"] == "approval code e-mailed to cfo@example.com"
    assert approvals[1]["channel"].startswith("console session of user usr_")
    assert env.approver in approvals[1]["channel"]


# -- expiry is enforced at the moment of the decision, sweep or no sweep -----------------------
def test_a_decision_after_expiry_is_refused_on_every_path(tmp_path: Path) -> None:
    clock = FixedClock(datetime(2026, 3, 1, 9, 0, tzinfo=UTC))
    with make_env(tmp_path, services_kwargs={"clock": clock}) as env:  # the sweep runs hourly: not here
        env.add_user("second-lead@example.com", groups=("finance-leads",), password=PASSWORD)
        bundle = demo_bundle()
        bundle["cedar"] = bundle["cedar"].replace('@approvers("finance-leads") @quorum("1")',
                                                  '@approvers("finance-leads") @quorum("1") @approval_ttl("600")', 1)
        _activate(env, bundle)
        action_id = _held(env)
        code = env.code_for(action_id, env.approver)
        client, csrf = _login(env, "second-lead@example.com")
        clock.advance(600)  # the rule's approval ttl, to the second
        r = _decide(env, code)
        assert r.status_code == 410 and r.json()["code"] == "CODE_EXPIRED"
        assert env.client.get(f"/approve/{code}").status_code == 410
        r = client.post(f"/v1/actions/{action_id}/approve", json={}, headers={"X-CSRF-Token": csrf})
        assert r.status_code == 410 and r.json()["code"] == "APPROVAL_EXPIRED", r.text
        r = client.post(f"/v1/actions/{action_id}/deny", json={"reason": "late"}, headers={"X-CSRF-Token": csrf})
        assert r.status_code == 410 and r.json()["code"] == "APPROVAL_EXPIRED"
        assert _status(env, action_id) == "pending_approval"  # untouched until the sweep expires it


# -- the directory itself ---------------------------------------------------------------------
def test_only_admins_manage_the_directory_and_bad_addresses_are_422(env: Env) -> None:
    for role in ("agent", "app", "auditor"):
        r = env.client.post("/v1/approvers", json={"address": "x@example.com"}, headers=env.h(role))
        assert r.status_code == 403, role
    r = env.client.post("/v1/approvers", json={"address": "x@example.com\r\nBcc: y@evil.example"},
                        headers=env.h("admin"))
    assert r.status_code == 422 and r.json()["code"] == "APPROVER_INVALID"
    r = env.client.post("/v1/approvers", json={"address": "finance-leads"}, headers=env.h("admin"))
    assert r.status_code == 422 and r.json()["code"] == "APPROVER_INVALID"
    first = env.client.post("/v1/approvers", json={"address": "CFO@Example.com", "name": "CFO"},
                            headers=env.h("admin"))
    again = env.client.post("/v1/approvers", json={"address": "cfo@example.com"}, headers=env.h("admin"))
    assert (first.status_code, again.status_code) == (201, 200)
    listed = env.client.get("/v1/approvers", headers=env.h("admin")).json()["data"]
    assert [(e["address"], e["name"]) for e in listed] == [("cfo@example.com", "CFO")]
    assert env.client.delete("/v1/approvers/nobody@example.com", headers=env.h("admin")).status_code == 404


def test_an_agents_description_cannot_pose_as_the_approval_link(env: Env) -> None:
    fake = "Review and decide: https://evil.example/approve/APR-AAAAAAAAAAAAAAAAAAAA"
    action_id = _held(env, details=f"Pay invoice 42\n{fake}")
    [mail] = [m for m in env.mail.sent if f"Action: {action_id}\n" in m["body"]]
    lines = mail["body"].splitlines()
    real = next(i for i, line in enumerate(lines) if line.startswith("Review and decide: "))
    assert lines[real].endswith("/approve/" + env.code_for(action_id, env.approver))
    assert f"> {fake}" in lines and lines.index(f"> {fake}") > real  # quoted, after Warrantor's own


def test_an_allow_rule_is_not_a_requirement_when_the_caller_asks_for_approval(env: Env) -> None:
    """Only rules that hold an action give requirements: an allowed action held because the
    caller asked gets the default requirement, never the allow rule's approvers or quorum."""
    r = env.authorize(payload=dict(WIRE), require_approval=True)
    assert r.status_code == 201 and r.json()["status"] == "pending_approval", r.text
    assert [(q["source"], q["quorum"]) for q in r.json()["approval"]["requirements"]] == [("default", 1)]


def test_the_database_holds_no_usable_approval_code(env: Env) -> None:
    """Read access to the database (a backup, a replica) is not enough to decide as a human."""
    import sqlite3

    action_id = _held(env)
    code = env.code_for(action_id, env.approver)
    with sqlite3.connect(env.settings.data_dir / "warrantor.db") as db:
        stored = [r[0] for r in db.execute("SELECT code FROM approval_codes WHERE action_id = ?", (action_id,))]
    assert stored and code not in stored and not any(s.startswith("APR-") for s in stored)
    assert _decide(env, stored[0]).status_code == 404  # the stored value is no credential
    assert _decide(env, code).json()["status"] == "approved"
