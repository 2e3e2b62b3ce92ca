"""API keys never mint humans: a machine can neither choose nor learn a human's password.

Tried as a compromised tenant-admin key would: create an approver with a password it
chose, reset a real approver's password to one it knows, dig the set-password link out of
any answer it gets. And what a person relies on: the mailed link works once, expires,
is voided by a newer one, the page is safe to open, and a user who never set a password
still decides by the personal code mailed to them.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from support import WIRE, Env, bearer, make_env
from warrantor.domain.clock import FixedClock
from warrantor.errors import WarrantorError
from warrantor.service.approval.invitations import INVITATION_TTL

PASSWORD = "correct horse battery staple"
MACHINE = "the key's own password"  # what a compromised admin key would like to set
BIG = {**WIRE, "amount_minor": 6_000_000}


def invite(env: Env, email: str, *, key: dict[str, str] | None = None, **extra: Any) -> Any:
    return env.client.post("/v1/users", headers=key or env.h("admin"), json={
        "email": email, "name": email.split("@", maxsplit=1)[0].title(), "roles": ["approver"],
        "groups": ["finance-leads"], **extra})


def login_status(env: Env, email: str, password: str) -> int:
    return TestClient(env.client.app).post("/v1/sessions", json={"email": email, "password": password}).status_code


def accept(env: Env, token: str, password: str = PASSWORD) -> Any:
    return env.client.post(f"/v1/invitations/{token}", json={"password": password})


def users(env: Env) -> dict[str, dict[str, Any]]:
    return {u["email"]: u for u in env.client.get("/v1/users", headers=env.h("admin")).json()["data"]}


def held(env: Env) -> str:
    r = env.authorize(payload=dict(BIG))
    assert r.status_code == 201 and r.json()["status"] == "pending_approval", r.text
    return str(r.json()["action_id"])


# -- the machine cannot choose a password -------------------------------------------------
def test_an_admin_key_creating_a_user_with_a_password_is_422_and_nothing_is_written(env: Env) -> None:
    before = users(env)
    for password in (MACHINE, "short"):  # the rule comes before the strength check
        r = invite(env, "mallory@example.com", password=password)
        assert r.status_code == 422, r.text
        assert r.json()["code"] == "PASSWORD_NOT_ALLOWED_FOR_API_KEYS"
        assert r.json()["details"] == {"field": "password"}
    assert users(env) == before
    assert env.mail.sent == []
    assert login_status(env, "mallory@example.com", MACHINE) == 401


def test_an_admin_key_reset_with_a_password_is_422_and_changes_nothing(env: Env) -> None:
    user_id = env.add_user("alice@example.com", groups=("finance-leads",), password=PASSWORD)
    alice = TestClient(env.client.app)
    assert alice.post("/v1/sessions", json={"email": "alice@example.com", "password": PASSWORD}).status_code == 201
    mails = len(env.mail.sent)
    r = env.client.post(f"/v1/users/{user_id['user_id']}/password", headers=env.h("admin"), json={"password": MACHINE})
    assert r.status_code == 422 and r.json()["code"] == "PASSWORD_NOT_ALLOWED_FOR_API_KEYS"
    assert r.json()["details"] == {"field": "password"}
    assert alice.get("/v1/sessions/current").status_code == 200  # her session lives on
    assert login_status(env, "alice@example.com", MACHINE) == 401
    assert login_status(env, "alice@example.com", PASSWORD) == 201
    assert len(env.mail.sent) == mails


def test_the_key_never_sees_the_link_only_the_mailbox_does(env: Env) -> None:
    created = invite(env, "alice@example.com")
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["password_set"] is False
    assert set(body["invitation"]) == {"sent_to", "expires_at"} and body["invitation"]["sent_to"] == "alice@example.com"
    token = env.mail.invitation_token("alice@example.com")
    reset = env.client.post(f"/v1/users/{body['user_id']}/password", headers=env.h("admin"))
    assert reset.status_code == 200, reset.text
    second = env.mail.invitation_token("alice@example.com")
    answers = [created.text, reset.text, env.client.get("/v1/users", headers=env.h("admin")).text,
               env.client.get("/v1/approvers", headers=env.h("admin")).text]
    for text in answers:
        for secret in (token, second, "/invite/"):
            assert secret not in text
    mail = env.mail.sent[0]
    assert mail["to"] == "alice@example.com" and mail["tenant_id"] == env.tenant_id
    assert f"http://127.0.0.1:8080/invite/{token}" in mail["body"]
    assert len(token) == 32  # 160 random bits, Crockford base32
    with env.services.store.read() as repo:  # stored only as its sha256
        stored = [r[0] for r in repo.conn.exec_driver_sql("SELECT token_hash FROM user_invitations").fetchall()]
    assert stored == [hashlib.sha256(second.encode()).hexdigest()]


# -- the link ------------------------------------------------------------------------------
def test_the_invited_user_logs_in_only_after_setting_the_password(env: Env) -> None:
    invite(env, "alice@example.com")
    for guess in (PASSWORD, "!", ""):
        assert login_status(env, "alice@example.com", guess or "x") == 401
    token = env.mail.invitation_token("alice@example.com")
    weak = accept(env, token, "short")
    assert weak.status_code == 422 and weak.json()["code"] == "WEAK_PASSWORD"  # the link still works after
    r = accept(env, token)
    assert r.status_code == 200, r.text
    assert r.json()["user"]["email"] == "alice@example.com" and r.json()["user"]["password_set"] is True
    assert r.headers["referrer-policy"] == "no-referrer" and r.headers["cache-control"] == "no-store"
    assert users(env)["alice@example.com"]["password_set"] is True
    assert login_status(env, "alice@example.com", PASSWORD) == 201


def test_a_link_works_once(store_env: Env) -> None:
    env = store_env
    invite(env, "alice@example.com")
    token = env.mail.invitation_token("alice@example.com")
    assert accept(env, token).status_code == 200
    again = accept(env, token, "another long passphrase")
    assert again.status_code == 410 and again.json()["code"] == "INVITATION_USED"
    assert login_status(env, "alice@example.com", "another long passphrase") == 401
    unknown = accept(env, "0" * 32)
    assert unknown.status_code == 404 and unknown.json()["code"] == "INVITATION_NOT_FOUND"
    assert accept(env, "x" * 500).status_code == 404


def test_two_requests_racing_with_one_link_set_one_password(store_env: Env) -> None:
    env = store_env
    invite(env, "alice@example.com")
    token = env.mail.invitation_token("alice@example.com")
    start = threading.Barrier(2)
    results: dict[str, str] = {}

    def use(password: str) -> None:
        start.wait()
        try:
            env.services.invitations.accept(token, password)
            results[password] = "set"
        except WarrantorError as exc:
            results[password] = exc.code

    threads = [threading.Thread(target=use, args=(p,)) for p in ("first long passphrase", "second long passphrase")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(results.values()) == ["INVITATION_USED", "set"], results
    winner = next(p for p, outcome in results.items() if outcome == "set")
    loser = next(p for p in results if p != winner)
    assert login_status(env, "alice@example.com", winner) == 201
    assert login_status(env, "alice@example.com", loser) == 401


@pytest.fixture
def clock_env(tmp_path: Path) -> Iterator[tuple[Env, FixedClock]]:
    clock = FixedClock(datetime(2026, 3, 1, 9, 0, tzinfo=UTC))
    with make_env(tmp_path, services_kwargs={"clock": clock}) as env:
        yield env, clock


def test_a_link_expires(clock_env: tuple[Env, FixedClock]) -> None:
    env, clock = clock_env
    created = invite(env, "alice@example.com").json()
    assert created["invitation"]["expires_at"].startswith("2026-03-04T09:00:00")  # 72 hours
    token = env.mail.invitation_token("alice@example.com")
    clock.advance(INVITATION_TTL.total_seconds())
    late = accept(env, token)
    assert late.status_code == 410 and late.json()["code"] == "INVITATION_EXPIRED"
    assert login_status(env, "alice@example.com", PASSWORD) == 401
    # The admin sends a new link; that one works.
    assert env.client.post(f"/v1/users/{created['user_id']}/password", headers=env.h("admin")).status_code == 200
    assert accept(env, env.mail.invitation_token("alice@example.com")).status_code == 200


def test_a_newer_link_voids_the_older_one(env: Env) -> None:
    user_id = invite(env, "alice@example.com").json()["user_id"]
    first = env.mail.invitation_token("alice@example.com")
    assert env.client.post(f"/v1/users/{user_id}/password", headers=env.h("admin")).status_code == 200
    second = env.mail.invitation_token("alice@example.com")
    assert first != second
    old = accept(env, first)
    assert old.status_code == 404 and old.json()["code"] == "INVITATION_NOT_FOUND"
    assert accept(env, second).status_code == 200


def test_a_key_reset_voids_the_old_password_and_sessions_and_mails_a_link(env: Env) -> None:
    user_id = env.add_user("alice@example.com", groups=("finance-leads",), password=PASSWORD)["user_id"]
    alice = TestClient(env.client.app)
    assert alice.post("/v1/sessions", json={"email": "alice@example.com", "password": PASSWORD}).status_code == 201
    for _ in range(10):
        login_status(env, "alice@example.com", "a wrong guess, again")
    r = env.client.post(f"/v1/users/{user_id}/password", headers=env.h("admin"), json={})
    assert r.status_code == 200 and r.json()["password_set"] is False, r.text
    assert r.json()["invitation"]["sent_to"] == "alice@example.com"
    assert alice.get("/v1/sessions/current").status_code == 401
    assert login_status(env, "alice@example.com", PASSWORD) == 401  # the old password is gone (lock-out lifted)
    assert "reset your password" in env.mail.sent[-1]["body"]
    assert accept(env, env.mail.invitation_token("alice@example.com"), "a brand new passphrase").status_code == 200
    assert login_status(env, "alice@example.com", "a brand new passphrase") == 201


def test_setting_a_password_another_way_or_disabling_voids_the_link(env: Env) -> None:
    root = env.add_user("root@example.com", roles=("admin",), password=PASSWORD)
    assert root["user_id"]
    browser = TestClient(env.client.app)
    csrf = browser.post("/v1/sessions", json={"email": "root@example.com", "password": PASSWORD}).json()["csrf_token"]
    user_id = invite(env, "alice@example.com").json()["user_id"]
    token = env.mail.invitation_token("alice@example.com")
    # A logged-in admin (an accountable human) may set it directly; the link dies with that.
    r = browser.post(f"/v1/users/{user_id}/password", json={"password": "set by root, told in person"},
                     headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200 and r.json()["password_set"] is True, r.text
    assert accept(env, token).status_code == 404
    assert login_status(env, "alice@example.com", "set by root, told in person") == 201
    # A logged-in admin may also omit the password: the user gets a link.
    r = browser.post(f"/v1/users/{user_id}/password", headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200 and r.json()["password_set"] is False
    token = env.mail.invitation_token("alice@example.com")
    assert env.client.patch(f"/v1/users/{user_id}", headers=env.h("admin"), json={"disabled": True}).status_code == 200
    assert accept(env, token).status_code == 404
    refused = env.client.post(f"/v1/users/{user_id}/password", headers=env.h("admin"))
    assert refused.status_code == 409 and refused.json()["code"] == "USER_DISABLED"


def test_another_tenants_key_cannot_send_links_to_my_users(env: Env) -> None:
    other = env.new_tenant()
    user_id = env.add_user("alice@example.com", password=PASSWORD)["user_id"]
    mails = len(env.mail.sent)
    r = env.client.post(f"/v1/users/{user_id}/password", headers=bearer(other["admin"]))
    assert r.status_code == 404 and r.json()["code"] == "USER_NOT_FOUND"
    for role in ("agent", "app", "auditor"):
        assert env.client.post(f"/v1/users/{user_id}/password", headers=env.h(role)).status_code == 403
    assert len(env.mail.sent) == mails
    assert login_status(env, "alice@example.com", PASSWORD) == 201


# -- the page -----------------------------------------------------------------------------
def test_the_set_password_page_works_once_and_leaks_nothing(env: Env) -> None:
    invite(env, "alice@example.com")
    token = env.mail.invitation_token("alice@example.com")
    browser = TestClient(env.client.app)
    page = browser.get(f"/invite/{token}")
    assert page.status_code == 200 and "alice@example.com" in page.text and "Set your password" in page.text
    for r in (page, browser.get("/invite/" + "0" * 32)):
        assert r.headers["referrer-policy"] == "no-referrer" and r.headers["cache-control"] == "no-store"
        assert r.headers["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
    form = {"password": PASSWORD, "confirm_password": PASSWORD}
    typo = browser.post(f"/invite/{token}", data={**form, "confirm_password": PASSWORD + "!"})
    assert typo.status_code == 422 and "The two passwords differ." in typo.text
    weak = browser.post(f"/invite/{token}", data={"password": "short", "confirm_password": "short"})
    assert weak.status_code == 422 and "at least 12 characters" in weak.text
    done = browser.post(f"/invite/{token}", data=form)
    assert done.status_code == 200 and "Password set" in done.text, done.text
    assert done.headers["referrer-policy"] == "no-referrer"
    used = browser.get(f"/invite/{token}")
    assert used.status_code == 410 and "INVITATION_USED" in used.text
    assert browser.post(f"/invite/{token}", data=form).status_code == 410
    assert browser.get("/invite/" + "0" * 32).status_code == 404
    assert login_status(env, "alice@example.com", PASSWORD) == 201


# -- their own channel --------------------------------------------------------------------
def test_a_user_created_by_a_key_who_never_set_a_password_approves_by_the_mailed_code(env: Env) -> None:
    invite(env, "alice@example.com")  # in finance-leads, no password ever set
    action_id = held(env)
    code = env.code_for(action_id, "alice@example.com")
    r = env.client.post(f"/v1/approvals/{code}/confirm", json={"decision": "approve"})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "approved" and r.json()["approver"] == "alice@example.com"
    detail = env.client.get(f"/v1/actions/{action_id}", headers=env.h("agent")).json()
    assert detail["approvals"][0]["approver"] == "alice@example.com"
    assert detail["warrant"]["envelope"]["signatures"]
