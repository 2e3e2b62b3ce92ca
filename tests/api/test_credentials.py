"""Credentials have a lifecycle: API keys listed and revoked at once, the operator key
retired when it changes, users disabled, deleted and their passwords changed or reset,
each ending the sessions it must end, and no tenant reaching another tenant's credentials.

Tried as an attacker would: a revoked key used again, another tenant's key or user id, a
disabled or deleted user's old cookie, a stolen session after a password change, a wrong
current password.
"""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from support import OPERATOR_KEY, Env, bearer

PASSWORD = "correct horse battery staple"
NEW_PASSWORD = "a different and longer passphrase"


def new_key(env: Env, role: str = "agent", *, headers: dict[str, str] | None = None, **body: Any) -> dict[str, Any]:
    r = env.client.post("/v1/api-keys", headers=headers or env.h("admin"), json={"role": role, **body})
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


def make_user(env: Env, email: str, roles: list[str], *, admin: dict[str, str] | None = None) -> str:
    """Created by an admin key (which never sets a password); the person sets PASSWORD
    with the link mailed to them."""
    r = env.client.post("/v1/users", headers=admin or env.h("admin"), json={
        "email": email, "name": email.split("@", maxsplit=1)[0].title(),
        "roles": roles, "groups": ["finance-leads"] if "approver" in roles else [],
    })
    assert r.status_code == 201, r.text
    env.accept_invitation(email, PASSWORD)
    return str(r.json()["user_id"])


def login(env: Env, email: str, password: str = PASSWORD) -> tuple[TestClient, str]:
    """A separate browser with its own cookie jar, logged in; returns it and its CSRF token."""
    client = TestClient(env.client.app)
    r = client.post("/v1/sessions", json={"email": email, "password": password})
    assert r.status_code == 201, r.text
    return client, str(r.json()["csrf_token"])


def attempt(env: Env, email: str, password: str) -> int:
    return TestClient(env.client.app).post("/v1/sessions", json={"email": email, "password": password}).status_code


# -- API keys ----------------------------------------------------------------------------
def test_the_key_listing_shows_ids_roles_bindings_and_labels_never_secrets(env: Env) -> None:
    created = new_key(env, agent_id="ops-bot", label="nightly reconciliation")
    assert created["key"].startswith("wrt_") and created["key_id"].startswith("key_")
    r = env.client.get("/v1/api-keys", headers=env.h("admin"))
    assert r.status_code == 200
    listed = {k["key_id"]: k for k in r.json()["data"]}
    assert len(listed) == 5  # the four demo keys and this one
    mine = listed[created["key_id"]]
    assert mine == {
        "key_id": created["key_id"], "tenant_id": env.tenant_id, "role": "agent", "agent_id": "ops-bot",
        "label": "nightly reconciliation", "prefix": created["key"][:10],
        "created_at": created["created_at"], "revoked_at": None,
    }
    text = r.text
    for secret in [created["key"], *env.keys.values()]:
        assert secret not in text
    assert "hash" not in text


def test_a_revoked_key_is_refused_by_the_very_next_request(store_env: Env) -> None:
    env = store_env
    created = new_key(env, agent_id="payments-agent")
    key = bearer(created["key"])
    assert env.client.get("/v1/actions", headers=key).status_code == 200  # used once: any cache is warm
    r = env.client.delete(f"/v1/api-keys/{created['key_id']}", headers=env.h("admin"))
    assert r.status_code == 200 and r.json()["revoked_at"] is not None
    again = env.client.get("/v1/actions", headers=key)
    assert again.status_code == 401 and again.json()["code"] == "INVALID_API_KEY"
    assert env.authorize(headers=key).status_code == 401
    # Revoking twice changes nothing; the listing shows when it happened.
    twice = env.client.delete(f"/v1/api-keys/{created['key_id']}", headers=env.h("admin"))
    assert twice.status_code == 200 and twice.json()["revoked_at"] == r.json()["revoked_at"]
    listed = {k["key_id"]: k for k in env.client.get("/v1/api-keys", headers=env.h("admin")).json()["data"]}
    assert listed[created["key_id"]]["revoked_at"] == r.json()["revoked_at"]


def test_a_lookup_that_races_a_revocation_is_not_cached(store_env: Env) -> None:
    """The attacker's timing: a request reads its key just before the revocation commits.
    It may pass (it was first), but the revoked key must not live on in a cache."""
    env = store_env
    created = new_key(env, agent_id="payments-agent")
    key = bearer(created["key"])
    tenancy = env.client.app.state.services.tenancy  # type: ignore[attr-defined]
    real_lookup = tenancy._lookup

    def lookup_then_revoke(token: str, digest: str) -> Any:
        found = real_lookup(token, digest)  # read while the key was live
        tenancy.revoke_api_key(env.tenant_id, created["key_id"])  # committed before this request ends
        return found

    tenancy._lookup = lookup_then_revoke
    try:
        assert env.client.get("/v1/actions", headers=key).status_code == 200
    finally:
        tenancy._lookup = real_lookup
    again = env.client.get("/v1/actions", headers=key)
    assert again.status_code == 401 and again.json()["code"] == "INVALID_API_KEY"


def test_a_tenant_admin_cannot_list_or_revoke_another_tenants_keys(env: Env) -> None:
    other = env.new_tenant()
    victim = new_key(env, headers=bearer(other["admin"]))
    r = env.client.delete(f"/v1/api-keys/{victim['key_id']}", headers=env.h("admin"))
    assert r.status_code == 404 and r.json()["code"] == "API_KEY_NOT_FOUND"
    unknown = env.client.delete("/v1/api-keys/key_doesnotexist", headers=env.h("admin"))
    assert unknown.status_code == 404 and unknown.json()["code"] == "API_KEY_NOT_FOUND"  # the same answer
    assert env.client.get("/v1/actions", headers=bearer(victim["key"])).status_code == 200  # still alive
    ids = {k["key_id"] for k in env.client.get("/v1/api-keys", headers=env.h("admin")).json()["data"]}
    assert victim["key_id"] not in ids
    # Nor through the operator's routes.
    assert env.client.get(f"/v1/tenants/{env.tenant_id}/api-keys", headers=env.h("admin")).status_code == 403
    path = f"/v1/tenants/{env.tenant_id}/api-keys/{victim['key_id']}"
    cross = env.client.delete(path, headers=bearer(other["admin"]))
    assert cross.status_code == 403


def test_only_admins_list_and_revoke_keys(env: Env) -> None:
    admin_key_id = next(k["key_id"] for k in env.client.get("/v1/api-keys", headers=env.h("admin")).json()["data"]
                        if k["role"] == "admin")
    for role in ("agent", "app", "auditor"):
        assert env.client.get("/v1/api-keys", headers=env.h(role)).status_code == 403
        assert env.client.delete(f"/v1/api-keys/{admin_key_id}", headers=env.h(role)).status_code == 403
    assert env.client.get("/v1/api-keys").status_code == 401
    assert env.client.get("/v1/api-keys", headers=env.operator).status_code == 403  # the operator has its own routes


def test_the_operator_lists_and_revokes_keys_of_any_tenant(env: Env) -> None:
    other = env.new_tenant()
    listed = env.client.get(f"/v1/tenants/{env.tenant_id}/api-keys", headers=env.operator)
    assert listed.status_code == 200
    assert {k["role"] for k in listed.json()["data"]} == {"admin", "agent", "app", "auditor"}
    agent_id = next(k["key_id"] for k in listed.json()["data"] if k["role"] == "agent")
    other_tenant = env.client.get("/v1/api-keys", headers=bearer(other["admin"])).json()["data"][0]["tenant_id"]
    wrong_tenant = env.client.delete(f"/v1/tenants/{other_tenant}/api-keys/{agent_id}", headers=env.operator)
    assert wrong_tenant.status_code == 404  # the key id must belong to the tenant named
    r = env.client.delete(f"/v1/tenants/{env.tenant_id}/api-keys/{agent_id}", headers=env.operator)
    assert r.status_code == 200 and r.json()["revoked_at"] is not None
    assert env.client.get("/v1/actions", headers=env.h("agent")).status_code == 401
    missing = env.client.get("/v1/tenants/ten_nope/api-keys", headers=env.operator)
    assert missing.status_code == 404 and missing.json()["code"] == "TENANT_NOT_FOUND"


def test_a_logged_in_admin_lists_and_revokes_keys_with_the_csrf_header(env: Env) -> None:
    make_user(env, "root@example.com", ["admin"])
    root, csrf = login(env, "root@example.com")
    created = new_key(env)
    assert root.get("/v1/api-keys").status_code == 200
    assert root.delete(f"/v1/api-keys/{created['key_id']}").status_code == 403  # no CSRF header
    assert root.delete(f"/v1/api-keys/{created['key_id']}", headers={"X-CSRF-Token": csrf}).status_code == 200
    assert env.client.get("/v1/actions", headers=bearer(created["key"])).status_code == 401


def test_a_changed_operator_key_retires_the_old_one(env: Env) -> None:
    assert env.client.get(f"/v1/tenants/{env.tenant_id}/api-keys", headers=env.operator).status_code == 200
    new = "wrt_" + "n" * 30
    env.services.tenancy.bootstrap_operator(new)  # what a restart with the new value runs
    old = env.client.get(f"/v1/tenants/{env.tenant_id}/api-keys", headers=bearer(OPERATOR_KEY))
    assert old.status_code == 401 and old.json()["code"] == "INVALID_API_KEY"
    assert env.client.get(f"/v1/tenants/{env.tenant_id}/api-keys", headers=bearer(new)).status_code == 200
    # A restart without the variable keeps the stored key rather than minting another.
    assert env.services.tenancy.bootstrap_operator(None) is None
    assert env.client.get(f"/v1/tenants/{env.tenant_id}/api-keys", headers=bearer(new)).status_code == 200


# -- users -------------------------------------------------------------------------------
def test_disabling_a_user_ends_their_session_at_once_and_blocks_login(env: Env) -> None:
    user_id = make_user(env, "alice@example.com", ["approver"])
    alice, _ = login(env, "alice@example.com")
    stolen = alice.cookies["warrantor_session"]
    r = env.client.patch(f"/v1/users/{user_id}", headers=env.h("admin"), json={"disabled": True})
    assert r.status_code == 200 and r.json()["disabled"] is True
    assert alice.get("/v1/sessions/current").status_code == 401
    replay = TestClient(env.client.app, cookies={"warrantor_session": stolen})
    assert replay.get("/v1/sessions/current").status_code == 401
    page = replay.get("/console/approvals", follow_redirects=False)
    assert page.status_code in (302, 303) and "/console/login" in page.headers["location"]
    assert attempt(env, "alice@example.com", PASSWORD) == 401  # the right password, still refused
    assert env.client.patch(f"/v1/users/{user_id}", headers=env.h("admin"), json={"disabled": False}).status_code == 200
    login(env, "alice@example.com")


def test_deleting_a_user_ends_their_session_and_frees_the_email(store_env: Env) -> None:
    env = store_env
    user_id = make_user(env, "alice@example.com", ["approver"])
    alice, _ = login(env, "alice@example.com")
    stolen = alice.cookies["warrantor_session"]
    assert env.client.delete(f"/v1/users/{user_id}", headers=env.h("admin")).status_code == 204
    replay = TestClient(env.client.app, cookies={"warrantor_session": stolen})
    assert replay.get("/v1/sessions/current").status_code == 401
    assert attempt(env, "alice@example.com", PASSWORD) == 401
    listed = env.client.get("/v1/users", headers=env.h("admin")).json()["data"]
    assert "alice@example.com" not in {u["email"] for u in listed}
    again = env.client.delete(f"/v1/users/{user_id}", headers=env.h("admin"))
    assert again.status_code == 404 and again.json()["code"] == "USER_NOT_FOUND"
    assert env.client.patch(f"/v1/users/{user_id}", headers=env.h("admin"), json={"disabled": False}).status_code == 404
    new_id = make_user(env, "alice@example.com", ["approver"])  # a new person may take the address
    assert new_id != user_id
    assert attempt(env, "alice@example.com", PASSWORD) == 201


def test_a_deleted_user_who_cosigned_keeps_the_signed_record(env: Env) -> None:
    user_id = make_user(env, "alice@example.com", ["approver"])
    action_id = env.authorize().json()["action_id"]
    alice, csrf = login(env, "alice@example.com")
    assert alice.post(f"/v1/actions/{action_id}/cosign", json={}, headers={"X-CSRF-Token": csrf}).status_code == 201
    assert env.client.delete(f"/v1/users/{user_id}", headers=env.h("admin")).status_code == 204
    cosigs = env.client.get(f"/v1/actions/{action_id}", headers=env.h("auditor")).json()["cosignatures"]
    assert [(c["user_id"], c["email"]) for c in cosigs] == [(user_id, "alice@example.com")]


def test_changing_your_password_ends_your_other_sessions_and_keeps_this_one(env: Env) -> None:
    make_user(env, "alice@example.com", ["approver"])
    laptop, csrf = login(env, "alice@example.com")
    phone, _ = login(env, "alice@example.com")  # say, a session an attacker stole
    old_cookie = laptop.cookies["warrantor_session"]
    body = {"current_password": PASSWORD, "new_password": NEW_PASSWORD}
    assert laptop.post("/v1/me/password", json=body).status_code == 403  # CSRF header required
    r = laptop.post("/v1/me/password", json=body, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200, r.text
    new_csrf = r.json()["csrf_token"]
    assert new_csrf != csrf and laptop.cookies["warrantor_session"] != old_cookie
    me = laptop.get("/v1/sessions/current")
    assert me.status_code == 200 and me.json()["csrf_token"] == new_csrf
    assert phone.get("/v1/sessions/current").status_code == 401
    replay = TestClient(env.client.app, cookies={"warrantor_session": old_cookie})
    assert replay.get("/v1/sessions/current").status_code == 401  # the old cookie is re-issued, not kept
    assert attempt(env, "alice@example.com", PASSWORD) == 401
    assert attempt(env, "alice@example.com", NEW_PASSWORD) == 201


def test_a_wrong_current_password_changes_nothing_and_counts_as_a_failed_login(env: Env) -> None:
    make_user(env, "alice@example.com", ["approver"])
    alice, csrf = login(env, "alice@example.com")
    body = {"current_password": "not my password at all", "new_password": NEW_PASSWORD}
    r = alice.post("/v1/me/password", json=body, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 403 and r.json()["code"] == "WRONG_PASSWORD"
    assert alice.get("/v1/sessions/current").status_code == 200  # the session is not ended by a typo
    weak = alice.post("/v1/me/password", json={"current_password": PASSWORD, "new_password": "short"},
                      headers={"X-CSRF-Token": csrf})
    assert weak.status_code == 422 and weak.json()["code"] == "WEAK_PASSWORD"
    for _ in range(9):  # a stolen cookie is no oracle for the password: the login throttle applies
        alice.post("/v1/me/password", json=body, headers={"X-CSRF-Token": csrf})
    limited = alice.post("/v1/me/password", json={**body, "current_password": PASSWORD}, headers={"X-CSRF-Token": csrf})
    assert limited.status_code == 429 and limited.json()["code"] == "LOGIN_RATE_LIMITED"
    assert attempt(env, "alice@example.com", NEW_PASSWORD) == 429
    assert env.client.post("/v1/me/password", json=body, headers=env.h("admin")).status_code == 403  # keys: never


def test_an_admin_reset_ends_the_users_sessions_and_lifts_the_lockout(env: Env) -> None:
    user_id = make_user(env, "alice@example.com", ["approver"])
    alice, _ = login(env, "alice@example.com")
    for _ in range(10):
        attempt(env, "alice@example.com", "a wrong password guess")
    assert attempt(env, "alice@example.com", PASSWORD) == 429
    root, csrf = login(env, env.approver, env.approver_password)  # a logged-in admin may choose it
    write = {"X-CSRF-Token": csrf}
    weak = root.post(f"/v1/users/{user_id}/password", headers=write, json={"password": "x"})
    assert weak.status_code == 422 and weak.json()["code"] == "WEAK_PASSWORD"
    r = root.post(f"/v1/users/{user_id}/password", headers=write, json={"password": NEW_PASSWORD})
    assert r.status_code == 200 and "password" not in str(r.json()).replace("password_", "")
    assert alice.get("/v1/sessions/current").status_code == 401
    assert attempt(env, "alice@example.com", PASSWORD) == 401
    assert attempt(env, "alice@example.com", NEW_PASSWORD) == 201


def test_roles_and_groups_change_and_apply_to_live_sessions(env: Env) -> None:
    make_user(env, "root@example.com", ["admin"])
    user_id = make_user(env, "alice@example.com", ["admin", "approver"])
    alice, _ = login(env, "alice@example.com")
    assert alice.get("/v1/users").status_code == 200
    r = env.client.patch(f"/v1/users/{user_id}", headers=env.h("admin"),
                         json={"roles": ["approver"], "groups": ["treasury"]})
    assert r.status_code == 200 and (r.json()["roles"], r.json()["groups"]) == (["approver"], ["treasury"])
    assert alice.get("/v1/users").status_code == 403  # the next request already sees the new roles
    for bad in ({}, {"roles": []}, {"roles": ["root"]}, {"groups": ["tenant-admins"]}, {"disabled": "yes"}):
        assert env.client.patch(f"/v1/users/{user_id}", headers=env.h("admin"), json=bad).status_code == 422, bad
    for role in ("agent", "app", "auditor"):
        assert env.client.patch(f"/v1/users/{user_id}", headers=env.h(role), json={"disabled": True}).status_code == 403


def test_the_last_admin_of_a_tenant_cannot_be_removed(store_env: Env) -> None:
    env = store_env
    root = make_user(env, "root@example.com", ["admin"])
    for user in env.client.get("/v1/users", headers=env.h("admin")).json()["data"]:
        if user["user_id"] != root and "admin" in user["roles"]:  # the demo approver: approver only from now
            r = env.client.patch(f"/v1/users/{user['user_id']}", headers=env.h("admin"), json={"roles": ["approver"]})
            assert r.status_code == 200, r.text
    session, csrf = login(env, "root@example.com")
    write = {"X-CSRF-Token": csrf}
    for r in (
        session.patch(f"/v1/users/{root}", json={"roles": ["approver"]}, headers=write),
        session.patch(f"/v1/users/{root}", json={"disabled": True}, headers=write),
        session.delete(f"/v1/users/{root}", headers=write),
        env.client.delete(f"/v1/users/{root}", headers=env.h("admin")),
    ):
        assert r.status_code == 409 and r.json()["code"] == "LAST_ADMIN", r.text
    assert session.get("/v1/sessions/current").status_code == 200
    second = make_user(env, "second@example.com", ["admin"])
    env.client.patch(f"/v1/users/{second}", headers=env.h("admin"), json={"disabled": True})
    assert session.delete(f"/v1/users/{root}", headers=write).status_code == 409  # a disabled admin does not count
    env.client.patch(f"/v1/users/{second}", headers=env.h("admin"), json={"disabled": False})
    assert session.delete(f"/v1/users/{root}", headers=write).status_code == 204
    assert session.get("/v1/sessions/current").status_code == 401


def test_another_tenants_users_are_out_of_reach(env: Env) -> None:
    other = env.new_tenant()
    victim = make_user(env, "alice@example.com", ["approver"])
    alice, _ = login(env, "alice@example.com")
    theirs = bearer(other["admin"])
    for r in (
        env.client.patch(f"/v1/users/{victim}", headers=theirs, json={"disabled": True}),
        env.client.delete(f"/v1/users/{victim}", headers=theirs),
        env.client.post(f"/v1/users/{victim}/password", headers=theirs),
    ):
        assert r.status_code == 404 and r.json()["code"] == "USER_NOT_FOUND", r.text
    assert alice.get("/v1/sessions/current").status_code == 200
    assert attempt(env, "alice@example.com", PASSWORD) == 201


def test_the_console_account_page_changes_the_password_with_the_form(env: Env) -> None:
    make_user(env, "alice@example.com", ["approver"])
    browser, csrf = login(env, "alice@example.com")
    other, _ = login(env, "alice@example.com")
    page = browser.get("/console/account")
    assert page.status_code == 200 and "Change password" in page.text and csrf in page.text
    form = {"csrf_token": csrf, "current_password": PASSWORD, "new_password": NEW_PASSWORD,
            "confirm_password": NEW_PASSWORD}
    forged = browser.post("/console/account/password", data={**form, "csrf_token": "x" * 32}, follow_redirects=False)
    assert forged.status_code == 403
    wrong = browser.post("/console/account/password", data={**form, "current_password": "not it, sorry"},
                         follow_redirects=False)
    assert wrong.status_code == 403 and "The current password is wrong." in wrong.text
    typo = browser.post("/console/account/password", data={**form, "confirm_password": NEW_PASSWORD + "!"},
                        follow_redirects=False)
    assert typo.status_code == 422 and attempt(env, "alice@example.com", PASSWORD) == 201  # nothing changed
    done = browser.post("/console/account/password", data=form, follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == "/console/account?flash=password_changed"
    assert "Password changed" in browser.get("/console/account?flash=password_changed").text
    assert other.get("/v1/sessions/current").status_code == 401
    assert attempt(env, "alice@example.com", NEW_PASSWORD) == 201


def test_a_disabled_or_deleted_users_mailed_approval_code_no_longer_decides(env: Env) -> None:
    alice = make_user(env, "alice@example.com", ["approver"])  # in finance-leads: gets a personal code
    bob = make_user(env, "bob@example.com", ["approver"])
    r = env.authorize(payload={"amount_minor": 6_000_000, "currency": "EUR", "beneficiary": "ACME GmbH"})
    assert r.status_code == 201 and r.json()["status"] == "pending_approval", r.text
    action_id = r.json()["action_id"]
    codes = env.mail.codes(action_id)
    assert {"alice@example.com", "bob@example.com"} <= set(codes)
    env.client.patch(f"/v1/users/{alice}", headers=env.h("admin"), json={"disabled": True})
    env.client.delete(f"/v1/users/{bob}", headers=env.h("admin"))
    for email in ("alice@example.com", "bob@example.com"):
        r = env.client.post(f"/v1/approvals/{codes[email]}/confirm", json={"decision": "approve"})
        assert r.status_code == 403 and r.json()["code"] == "NOT_AN_APPROVER", (email, r.text)
    assert env.client.get(f"/v1/actions/{action_id}", headers=env.h("admin")).json()["status"] == "pending_approval"
