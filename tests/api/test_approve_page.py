"""The approval-link page ``/approve/{code}`` through the real app: what the approver sees,
deciding by form, the error pages (404, 410, 409, 422) and the headers that keep the code
in the URL from leaking (no-referrer, no-store, no framing)."""

from __future__ import annotations

from typing import Any

from support import WIRE, Env
from warrantor.demo import demo_bundle

BIG = {**WIRE, "amount_minor": 6_000_000, "reference": "INV-2024-0042"}


def _held(env: Env, **body: Any) -> tuple[str, str]:
    r = env.authorize(payload=BIG, **body)
    assert r.status_code == 201 and r.json()["status"] == "pending_approval", r.text
    action_id = r.json()["action_id"]
    return action_id, env.approval_codes(action_id)[0]


def _codes(env: Env, action_id: str) -> dict[str, str]:
    return env.mail.codes(action_id)


def _activate_quorum_of_two(env: Env) -> None:
    env.add_user("second-lead@example.com", groups=("finance-leads",))
    bundle = demo_bundle()
    bundle["cedar"] = bundle["cedar"].replace('@approvers("finance-leads") @quorum("1")',
                                              '@approvers("finance-leads") @quorum("2")')
    r = env.client.post("/v1/policies", json=bundle, headers=env.h("admin"))
    assert r.status_code in (200, 201), r.text
    r = env.client.post(f"/v1/policies/{r.json()['bundle_hash']}/activate", json={"mode": "enforce"},
                        headers=env.h("admin"))
    assert r.status_code == 200, r.text


def _action(env: Env, action_id: str) -> dict[str, Any]:
    r = env.client.get(f"/v1/actions/{action_id}", headers=env.h("agent"))
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def _assert_code_headers(r: Any) -> None:
    assert r.headers["referrer-policy"] == "no-referrer"
    assert r.headers["cache-control"] == "no-store"
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
    assert r.headers["x-frame-options"] == "DENY"


def test_the_page_shows_what_the_approver_decides_on(env: Env) -> None:
    action_id, code = _held(env, details="Pay invoice INV-2024-0042 for the annual licence")
    r = env.client.get(f"/approve/{code}")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    page = r.text
    for shown in ("wire transfer", "payments-agent", "Pay invoice INV-2024-0042 for the annual licence",
                  "60,000.00 EUR", "ACME GmbH", "INV-2024-0042",  # the payload as a table
                  "wire-approval-50k", "APPROVAL_THRESHOLD", "Amount exceeds 50,000 EUR",  # the rule
                  "0 of 1", env.approver, action_id, 'name="decision" value="approve"',
                  'name="decision" value="deny"'):
        assert shown in page, shown
    assert "csrf_token" not in page  # the code is the credential; no login, no session
    _assert_code_headers(r)


def test_approving_by_the_form_gives_the_agent_its_warrant(env: Env) -> None:
    action_id, code = _held(env)
    r = env.client.post(f"/approve/{code}", data={"decision": "approve", "reason": "Invoice matches"})
    assert r.status_code == 200, r.text
    assert "Approved: the agent now holds its warrant" in r.text and action_id in r.text
    _assert_code_headers(r)
    action = _action(env, action_id)
    assert action["status"] == "approved"
    assert action["warrant"]["envelope"]["signatures"]
    assert [(a["decision"], a["reason"], a["via"]) for a in action["approvals"]] == [
        ("approve", "Invoice matches", "email-code")]
    assert action["approvals"][0]["approver"] == env.approver
    assert action["approvals"][0]["channel"] == f"approval code e-mailed to {env.approver}"


def test_a_denial_needs_a_reason_and_ends_the_action(env: Env) -> None:
    action_id, code = _held(env)
    r = env.client.post(f"/approve/{code}", data={"decision": "deny", "reason": "   "})
    assert r.status_code == 422
    assert "REASON_REQUIRED" in r.text and "Give a reason when you deny" in r.text
    assert 'name="decision" value="deny"' in r.text  # the form again, the code still valid
    assert _action(env, action_id)["status"] == "pending_approval"

    r = env.client.post(f"/approve/{code}", data={"decision": "deny", "reason": "Unknown beneficiary"})
    assert r.status_code == 200
    assert "Denied: a signed receipt records your decision" in r.text
    action = _action(env, action_id)
    assert action["status"] == "denied_by_human"
    assert action["receipt"]["receipt_id"]


def test_a_used_code_shows_the_gone_page(env: Env) -> None:
    _, code = _held(env)
    assert env.client.post(f"/approve/{code}", data={"decision": "approve"}).status_code == 200
    for r in (env.client.get(f"/approve/{code}"),
              env.client.post(f"/approve/{code}", data={"decision": "approve"})):
        assert r.status_code == 410
        assert "CODE_EXPIRED" in r.text and "already used or has expired" in r.text
        assert 'name="decision"' not in r.text
        _assert_code_headers(r)


def test_an_action_decided_elsewhere_shows_the_conflict_page(env: Env) -> None:
    env.add_approver("alice@example.com")
    action_id, _ = _held(env, approvers=["alice@example.com"])
    codes = _codes(env, action_id)
    lead, alice = codes[env.approver], codes["alice@example.com"]
    assert env.client.post(f"/approve/{lead}", data={"decision": "deny", "reason": "no"}).status_code == 200
    r = env.client.post(f"/approve/{alice}", data={"decision": "approve"})
    assert r.status_code == 409 and "ALREADY_RESOLVED" in r.text and "already been decided" in r.text
    assert _action(env, action_id)["status"] == "denied_by_human"


def test_quorum_progress_is_shown_before_and_after_a_partial_approval(env: Env) -> None:
    _activate_quorum_of_two(env)
    action_id, _ = _held(env)
    codes = _codes(env, action_id)
    assert sorted(codes) == sorted([env.approver, "second-lead@example.com"])  # a personal code each
    mine, theirs = codes[env.approver], codes["second-lead@example.com"]
    page = env.client.get(f"/approve/{mine}").text
    assert env.approver in page and "second-lead@example.com" not in page and theirs not in page
    r = env.client.post(f"/approve/{mine}", data={"decision": "approve"})
    assert "Approval recorded: 1 of 2 approvals" in r.text
    assert "1 of 2" in env.client.get(f"/approve/{theirs}").text
    assert _action(env, action_id)["status"] == "pending_approval"


def test_unknown_and_malformed_codes_are_not_found(env: Env) -> None:
    for code in ("APR-nope", "not-a-code", "APR-" + "x" * 200):
        for r in (env.client.get(f"/approve/{code}"),
                  env.client.post(f"/approve/{code}", data={"decision": "approve"})):
            assert r.status_code == 404, (code, r.status_code)
            assert "Not found" in r.text and "NOT_FOUND" in r.text
            _assert_code_headers(r)


def test_a_bad_decision_is_refused_and_changes_nothing(env: Env) -> None:
    action_id, code = _held(env)
    r = env.client.post(f"/approve/{code}", data={"decision": "maybe"})
    assert r.status_code == 422 and "INVALID_DECISION" in r.text
    r = env.client.post(f"/approve/{code}", data={"decision": "approve", "reason": "x" * 2001})
    assert r.status_code == 422 and "at most 2000 characters" in r.text
    assert _action(env, action_id)["status"] == "pending_approval"
    assert env.client.get(f"/approve/{code}").status_code == 200


def test_a_code_shows_only_its_own_tenants_action(env: Env) -> None:
    mine, my_code = _held(env, details="ours")
    other = env.new_tenant()
    r = env.client.post("/v1/actions", headers={"Authorization": f"Bearer {other['agent']}"}, json={
        "action_type": "wire_transfer", "details": "theirs", "payload": BIG})
    theirs = r.json()["action_id"]
    page = env.client.get(f"/approve/{my_code}").text
    assert mine in page and theirs not in page and "theirs" not in page
