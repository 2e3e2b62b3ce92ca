"""Users, sessions and human decisions over the JSON API, on the real app.

What a person relies on: a login that sets a safe cookie and can be undone; wrong
passwords and guessing refused; CSRF enforced; API keys never acting as humans; only the
listed approvers deciding; a quorum of distinct people; one cosignature per person; and no
user reaching another tenant's actions.
"""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from support import WIRE, Env, bearer
from warrantor.demo import demo_bundle

PASSWORD = "correct horse battery staple"
BIG = {**WIRE, "amount_minor": 6_000_000}


def make_user(env: Env, email: str, *, roles: list[str] | None = None, groups: list[str] | None = None,
              admin_key: str | None = None) -> dict[str, Any]:
    """Created by an admin key (no password from a machine); the person sets PASSWORD
    with the link mailed to them."""
    headers = bearer(admin_key) if admin_key else env.h("admin")
    r = env.client.post("/v1/users", headers=headers, json={
        "email": email, "name": email.split("@", maxsplit=1)[0].title(),
        "roles": roles or ["approver"], "groups": groups if groups is not None else ["finance-leads"],
    })
    assert r.status_code == 201, r.text
    env.accept_invitation(email, PASSWORD)
    body: dict[str, Any] = r.json()
    return body


def login(env: Env, email: str, password: str = PASSWORD) -> tuple[TestClient, str]:
    """A separate browser-like client with its own cookie jar; returns it and the CSRF token."""
    client = TestClient(env.client.app)
    r = client.post("/v1/sessions", json={"email": email, "password": password})
    assert r.status_code == 201, r.text
    return client, r.json()["csrf_token"]


def held(env: Env, **body: Any) -> str:
    r = env.authorize(payload=dict(BIG), **body)
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "pending_approval"
    return str(r.json()["action_id"])


def test_create_user_never_returns_the_hash_and_lists_users(env: Env) -> None:
    user = make_user(env, "Alice@Example.com")
    assert user["email"] == "alice@example.com"
    assert user["roles"] == ["approver"] and user["groups"] == ["finance-leads"]
    assert not any("hash" in k for k in user) and "argon2" not in str(user)
    listed = env.client.get("/v1/users", headers=env.h("admin")).json()["data"]
    assert [u["email"] for u in listed] == [env.approver, "alice@example.com"]  # the demo's approver first
    assert [u["password_set"] for u in listed] == [True, True]
    assert "argon2" not in str(listed)
    again = env.client.post("/v1/users", headers=env.h("admin"), json={
        "email": "alice@example.com", "name": "A", "roles": ["admin"]})
    assert again.status_code == 409 and again.json()["code"] == "EMAIL_TAKEN"


def test_only_tenant_admins_create_users_and_bad_input_is_422(env: Env) -> None:
    body = {"email": "bob@example.com", "name": "Bob", "roles": ["approver"]}
    assert env.client.post("/v1/users", headers=env.h("agent"), json=body).status_code == 403
    assert env.client.post("/v1/users", json=body).status_code == 401
    role = env.client.post("/v1/users", headers=env.h("admin"), json={**body, "roles": ["root"]})
    assert role.status_code == 422
    reserved = env.client.post("/v1/users", headers=env.h("admin"), json={**body, "groups": ["tenant-admins"]})
    assert reserved.status_code == 422 and reserved.json()["code"] == "INVALID_GROUP"
    mail = env.client.post("/v1/users", headers=env.h("admin"), json={**body, "email": "not-an-email"})
    assert mail.status_code == 422 and mail.json()["code"] == "INVALID_EMAIL"


def test_login_sets_a_safe_cookie_and_logout_ends_the_session(env: Env) -> None:
    make_user(env, "alice@example.com")
    client = TestClient(env.client.app)
    r = client.post("/v1/sessions", json={"email": "ALICE@example.com", "password": PASSWORD})
    assert r.status_code == 201, r.text
    cookie = r.headers["set-cookie"]
    assert cookie.startswith("warrantor_session=")
    for attribute in ("HttpOnly", "SameSite=lax", "Path=/"):
        assert attribute.lower() in cookie.lower()
    assert "secure" not in cookie.lower()  # the test deployment's public URL is http
    csrf = r.json()["csrf_token"]
    me = client.get("/v1/sessions/current")
    assert me.status_code == 200 and me.json()["user"]["email"] == "alice@example.com"
    session_id = client.cookies["warrantor_session"]

    assert client.delete("/v1/sessions/current").status_code == 403  # no CSRF header
    assert client.delete("/v1/sessions/current", headers={"X-CSRF-Token": csrf}).status_code == 204
    assert client.get("/v1/sessions/current").status_code == 401
    # The old cookie value is dead on the server, not just forgotten by the client.
    replay = TestClient(env.client.app, cookies={"warrantor_session": session_id})
    assert replay.get("/v1/sessions/current").status_code == 401


def test_the_session_id_is_stored_only_as_a_hash(env: Env) -> None:
    make_user(env, "alice@example.com")
    client, _ = login(env, "alice@example.com")
    session_id = client.cookies["warrantor_session"]
    with env.services.store.read() as repo:
        rows = repo.conn.exec_driver_sql("SELECT id_hash FROM user_sessions").fetchall()
    assert len(rows) == 1 and rows[0][0] != session_id and len(rows[0][0]) == 64


def test_bad_password_and_unknown_email_get_the_same_401(env: Env) -> None:
    make_user(env, "alice@example.com")
    wrong = env.client.post("/v1/sessions", json={"email": "alice@example.com", "password": "x" * 20})
    unknown = env.client.post("/v1/sessions", json={"email": "nobody@example.com", "password": PASSWORD})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json()["code"] == unknown.json()["code"] == "INVALID_CREDENTIALS"
    assert wrong.json()["detail"] == unknown.json()["detail"]
    assert "set-cookie" not in wrong.headers


def test_repeated_failures_lock_the_email_even_for_the_right_password(env: Env) -> None:
    make_user(env, "alice@example.com")
    for _ in range(10):
        r = env.client.post("/v1/sessions", json={"email": "alice@example.com", "password": "wrong password!"})
        assert r.status_code == 401
    locked = env.client.post("/v1/sessions", json={"email": "alice@example.com", "password": PASSWORD})
    assert locked.status_code == 429
    assert locked.json()["code"] == "LOGIN_RATE_LIMITED"
    assert int(locked.headers["retry-after"]) > 0
    # Another account is not affected.
    make_user(env, "bob@example.com")
    assert env.client.post("/v1/sessions", json={"email": "bob@example.com", "password": PASSWORD}).status_code == 201


def test_human_endpoints_refuse_api_keys(env: Env) -> None:
    action_id = held(env)
    for role in ("admin", "agent", "app", "auditor"):
        for path, body in (("approve", {}), ("deny", {"reason": "no"}), ("cosign", {})):
            r = env.client.post(f"/v1/actions/{action_id}/{path}", json=body, headers=env.h(role))
            assert r.status_code == 403, (role, path, r.text)
            assert r.json()["code"] == "HUMAN_SESSION_REQUIRED"
    anonymous = TestClient(env.client.app).post(f"/v1/actions/{action_id}/approve", json={})
    assert anonymous.status_code == 401 and anonymous.json()["code"] == "HUMAN_SESSION_REQUIRED"


def test_an_api_key_next_to_a_session_cookie_is_still_refused(env: Env) -> None:
    make_user(env, "alice@example.com")
    client, csrf = login(env, "alice@example.com")
    action_id = held(env)
    r = client.post(f"/v1/actions/{action_id}/approve", json={},
                    headers={"X-CSRF-Token": csrf, **env.h("admin")})
    assert r.status_code == 403 and r.json()["code"] == "HUMAN_SESSION_REQUIRED"


def test_csrf_token_is_required_for_decisions(env: Env) -> None:
    make_user(env, "alice@example.com")
    client, csrf = login(env, "alice@example.com")
    action_id = held(env)
    missing = client.post(f"/v1/actions/{action_id}/approve", json={})
    wrong = client.post(f"/v1/actions/{action_id}/approve", json={}, headers={"X-CSRF-Token": csrf[:-1] + "0"})
    assert missing.status_code == wrong.status_code == 403
    assert missing.json()["code"] == wrong.json()["code"] == "CSRF_FAILED"
    status = env.client.get(f"/v1/actions/{action_id}", headers=env.h("agent")).json()["status"]
    assert status == "pending_approval"


def test_an_approver_in_the_group_approves_and_the_agent_gets_a_warrant(env: Env) -> None:
    make_user(env, "alice@example.com")
    client, csrf = login(env, "alice@example.com")
    action_id = held(env)
    r = client.post(f"/v1/actions/{action_id}/approve", json={"reason": "invoice checked"},
                    headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200, r.text
    assert r.json() == {"action_id": action_id, "status": "approved", "approver": "alice@example.com",
                        "approvals": 1, "quorum": 1}
    detail = env.client.get(f"/v1/actions/{action_id}", headers=env.h("agent")).json()
    assert detail["warrant"]["envelope"]["signatures"]
    assert detail["approvals"][0]["approver"] == "alice@example.com"
    assert detail["approvals"][0]["via"] == "console"
    assert detail["approvals"][0]["reason"] == "invoice checked"
    again = client.post(f"/v1/actions/{action_id}/approve", json={}, headers={"X-CSRF-Token": csrf})
    assert again.status_code == 409 and again.json()["code"] == "ALREADY_RESOLVED"


def test_a_deny_needs_a_reason_and_ends_the_action_with_a_receipt(env: Env) -> None:
    make_user(env, "alice@example.com")
    client, csrf = login(env, "alice@example.com")
    action_id = held(env)
    no_reason = client.post(f"/v1/actions/{action_id}/deny", json={}, headers={"X-CSRF-Token": csrf})
    assert no_reason.status_code == 422 and no_reason.json()["code"] == "REASON_REQUIRED"
    r = client.post(f"/v1/actions/{action_id}/deny", json={"reason": "unknown beneficiary"},
                    headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200 and r.json()["status"] == "denied_by_human"
    detail = env.client.get(f"/v1/actions/{action_id}", headers=env.h("agent")).json()
    assert detail["receipt"]["receipt_id"].startswith("rcpt_")


def test_users_outside_the_approver_list_are_refused(env: Env) -> None:
    make_user(env, "eve@example.com", groups=["comms-reviewers"])
    make_user(env, "audrey@example.com", roles=["auditor"], groups=["finance-leads"])
    action_id = held(env)
    for email in ("eve@example.com", "audrey@example.com"):
        client, csrf = login(env, email)
        r = client.post(f"/v1/actions/{action_id}/approve", json={}, headers={"X-CSRF-Token": csrf})
        assert r.status_code == 403 and r.json()["code"] == "NOT_AN_APPROVER", email


def test_admins_decide_when_tenant_admins_are_listed(env: Env) -> None:
    make_user(env, "root@example.com", roles=["admin"], groups=[])
    r = env.authorize(require_approval=True, approvers=["tenant-admins"])  # no rule names approvers
    assert r.json()["approval"]["approvers"] == ["tenant-admins"], r.text
    action_id = r.json()["action_id"]
    client, csrf = login(env, "root@example.com")
    r = client.post(f"/v1/actions/{action_id}/approve", json={}, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200 and r.json()["status"] == "approved"


def _quorum_bundle() -> dict[str, Any]:
    bundle = demo_bundle()
    bundle["cedar"] = bundle["cedar"].replace(
        '@approvers("finance-leads") @quorum("1")\nforbid (principal, action == Action::"wire_transfer", resource)\n'
        'when { context.payload.currency == "EUR"',
        '@approvers("finance-leads,tenant-admins") @quorum("2")\n'
        'forbid (principal, action == Action::"wire_transfer", resource)\n'
        'when { context.payload.currency == "EUR"',
    )
    assert '@quorum("2")' in bundle["cedar"]
    return bundle


def test_a_quorum_of_two_needs_two_distinct_people(env: Env) -> None:
    make_user(env, "alice@example.com")
    make_user(env, "root@example.com", roles=["admin"], groups=[])
    r = env.client.post("/v1/policies", json=_quorum_bundle(), headers=env.h("admin"))
    assert r.status_code in (200, 201), r.text
    bundle_hash = r.json()["bundle_hash"]
    r = env.client.post(f"/v1/policies/{bundle_hash}/activate", json={"mode": "enforce"}, headers=env.h("admin"))
    assert r.status_code == 200, r.text
    action_id = held(env)
    assert env.client.get(f"/v1/actions/{action_id}", headers=env.h("agent")).json()["approval"]["quorum"] == 2

    alice, alice_csrf = login(env, "alice@example.com")
    first = alice.post(f"/v1/actions/{action_id}/approve", json={}, headers={"X-CSRF-Token": alice_csrf})
    assert first.json() | {} == {**first.json(), "status": "pending_approval", "approvals": 1, "quorum": 2}
    # The same person again, even from a second session, does not count twice.
    alice2, alice2_csrf = login(env, "alice@example.com")
    twice = alice2.post(f"/v1/actions/{action_id}/approve", json={}, headers={"X-CSRF-Token": alice2_csrf})
    assert twice.status_code == 409
    root, root_csrf = login(env, "root@example.com")
    second = root.post(f"/v1/actions/{action_id}/approve", json={}, headers={"X-CSRF-Token": root_csrf})
    assert second.status_code == 200 and second.json()["status"] == "approved"
    assert second.json()["approvals"] == 2
    detail = env.client.get(f"/v1/actions/{action_id}", headers=env.h("agent")).json()
    approvers = {a["approver"] for a in detail["approvals"]}
    assert approvers == {"alice@example.com", "root@example.com"}


def test_cosign_once_per_person_and_shown_on_the_action(env: Env) -> None:
    make_user(env, "alice@example.com")
    make_user(env, "audrey@example.com", roles=["auditor"], groups=[])
    action_id = held(env)
    alice, csrf = login(env, "alice@example.com")
    r = alice.post(f"/v1/actions/{action_id}/cosign", json={"statement": "I reviewed the invoice"},
                   headers={"X-CSRF-Token": csrf})
    assert r.status_code == 201, r.text
    assert r.json()["envelope"]["payloadType"] == "application/vnd.in-toto+json"
    again = alice.post(f"/v1/actions/{action_id}/cosign", json={}, headers={"X-CSRF-Token": csrf})
    assert again.status_code == 409 and again.json()["code"] == "ALREADY_COSIGNED"
    audrey, audrey_csrf = login(env, "audrey@example.com")
    assert audrey.post(f"/v1/actions/{action_id}/cosign", headers={"X-CSRF-Token": audrey_csrf}).status_code == 201
    cosigs = env.client.get(f"/v1/actions/{action_id}", headers=env.h("auditor")).json()["cosignatures"]
    assert [c["email"] for c in cosigs] == ["alice@example.com", "audrey@example.com"]
    assert cosigs[0]["statement"] == "I reviewed the invoice"
    assert cosigs[0]["log_index"] is not None


def test_the_cosignature_is_signed_by_a_published_key_and_names_the_user(env: Env) -> None:
    from warrantor.evidence.dsse import Envelope, verify_envelope

    make_user(env, "alice@example.com")
    action_id = held(env)
    alice, csrf = login(env, "alice@example.com")
    body = alice.post(f"/v1/actions/{action_id}/cosign", json={}, headers={"X-CSRF-Token": csrf}).json()
    envelope = Envelope.from_dict(body["envelope"])
    keys = env.services.deps.keyring.trusted_keys()
    assert verify_envelope(envelope, keys) is not None
    statement = envelope.statement()
    assert statement["predicateType"] == "urn:warrantor:predicate:cosignature:v1"
    assert statement["predicate"]["signer"]["email"] == "alice@example.com"
    assert statement["subject"][0]["name"] == f"action:{action_id}"


def test_a_user_of_another_tenant_cannot_see_or_decide(env: Env) -> None:
    other = env.new_tenant()
    make_user(env, "alice@example.com")
    make_user(env, "mallory@example.com", roles=["admin", "approver"], admin_key=other["admin"])
    action_id = held(env)
    mallory, csrf = login(env, "mallory@example.com")
    for path, body in (("approve", {}), ("deny", {"reason": "x"}), ("cosign", {})):
        r = mallory.post(f"/v1/actions/{action_id}/{path}", json=body, headers={"X-CSRF-Token": csrf})
        assert r.status_code == 404, (path, r.text)
    theirs = [u["email"] for u in mallory.get("/v1/users").json()["data"]]
    assert "mallory@example.com" in theirs and "alice@example.com" not in theirs and env.approver not in theirs
    page = mallory.get(f"/console/actions/{action_id}")
    assert page.status_code == 404
    inbox = mallory.get("/console/approvals")
    assert inbox.status_code == 200 and action_id not in inbox.text
    assert env.client.get(f"/v1/actions/{action_id}", headers=env.h("agent")).json()["status"] == "pending_approval"


def test_a_logged_in_admin_creates_users_with_the_csrf_header(env: Env) -> None:
    make_user(env, "root@example.com", roles=["admin"], groups=[])
    root, csrf = login(env, "root@example.com")
    body = {"email": "carol@example.com", "name": "Carol", "password": PASSWORD, "roles": ["approver"]}
    assert root.post("/v1/users", json=body).status_code == 403
    weak = root.post("/v1/users", json={**body, "password": "short"}, headers={"X-CSRF-Token": csrf})
    assert weak.status_code == 422 and weak.json()["code"] == "WEAK_PASSWORD"
    r = root.post("/v1/users", json=body, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 201 and r.json()["tenant_id"] == env.tenant_id
    assert r.json()["password_set"] is True and "invitation" not in r.json()
    login(env, "carol@example.com")  # an accountable human chose it: it works at once
    make_user(env, "alice@example.com")
    alice, alice_csrf = login(env, "alice@example.com")
    refused = alice.post("/v1/users", json={**body, "email": "dave@example.com"}, headers={"X-CSRF-Token": alice_csrf})
    assert refused.status_code == 403
