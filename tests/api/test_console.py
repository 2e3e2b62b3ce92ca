"""The web console through its forms, on the real app (the browser tests drive Chromium).

What a person relies on: pages need a login and show only their tenant; the login form
and every console form reject a missing CSRF token; approving from the inbox gives the
agent its warrant; the detail page explains the decision and checks signatures; the
overview and log pages render; and anyone can verify a proof bundle publicly.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient

from support import WIRE, Env
from warrantor.server.console import charts, present

PASSWORD = "correct horse battery staple"
BIG = {**WIRE, "amount_minor": 6_000_000}


def user(env: Env, email: str, roles: list[str] | None = None, groups: list[str] | None = None) -> None:
    """Created by the admin key; the person sets PASSWORD with the mailed link."""
    r = env.client.post("/v1/users", headers=env.h("admin"), json={
        "email": email, "name": email.split("@", maxsplit=1)[0].title(),
        "roles": roles or ["approver"], "groups": ["finance-leads"] if groups is None else groups,
    })
    assert r.status_code == 201, r.text
    env.accept_invitation(email, PASSWORD)


def hidden(page: str, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]*)"', page)
    assert match, f"no hidden field {name}"
    return match.group(1)


def console_login(env: Env, email: str, password: str = PASSWORD) -> TestClient:
    client = TestClient(env.client.app)
    form = client.get("/console/login")
    r = client.post("/console/login", data={
        "email": email, "password": password, "login_token": hidden(form.text, "login_token"), "next": "/console",
    }, follow_redirects=False)
    assert r.status_code == 303, r.text
    return client


def csrf_of(client: TestClient, path: str = "/console/approvals") -> str:
    return hidden(client.get(path).text, "csrf_token")


def held(env: Env, **payload: Any) -> str:
    r = env.authorize(payload={**BIG, **payload})
    assert r.status_code == 201 and r.json()["status"] == "pending_approval", r.text
    return str(r.json()["action_id"])


def test_root_redirects_to_the_console_and_pages_need_a_login(env: Env) -> None:
    anon = TestClient(env.client.app)
    assert anon.get("/", follow_redirects=False).headers["location"] == "/console"
    for path in ("/console", "/console/approvals", "/console/actions", "/console/log", "/console/actions/act_x"):
        r = anon.get(path, follow_redirects=False)
        assert r.status_code == 303, path
        assert r.headers["location"].startswith("/console/login?next=/console"), path


def test_login_form_sets_the_cookie_and_rejects_a_missing_token(env: Env) -> None:
    user(env, "alice@example.com")
    client = TestClient(env.client.app)
    page = client.get("/console/login")
    assert page.status_code == 200 and "Log in" in page.text
    assert "default-src 'none'" in page.headers["content-security-policy"]
    forged = TestClient(env.client.app).post("/console/login", data={
        "email": "alice@example.com", "password": PASSWORD, "login_token": "guess"}, follow_redirects=False)
    assert forged.status_code == 403 and "CSRF_FAILED" in forged.text
    bad = client.post("/console/login", data={
        "email": "alice@example.com", "password": "wrong password!", "login_token": hidden(page.text, "login_token"),
    }, follow_redirects=False)
    assert bad.status_code == 401 and "wrong" in bad.text
    ok = client.post("/console/login", data={
        "email": "alice@example.com", "password": PASSWORD, "login_token": hidden(bad.text, "login_token"),
        "next": "https://evil.example/",
    }, follow_redirects=False)
    assert ok.status_code == 303 and ok.headers["location"] == "/console"  # no open redirect
    assert "warrantor_session" in client.cookies


def test_console_forms_reject_a_missing_or_wrong_csrf_token(env: Env) -> None:
    user(env, "alice@example.com")
    action_id = held(env)
    client = console_login(env, "alice@example.com")
    for path in ("approve", "deny", "cosign"):
        for token in ("", "wrong-token"):
            r = client.post(f"/console/actions/{action_id}/{path}", data={"csrf_token": token, "reason": "x"},
                            follow_redirects=False)
            assert r.status_code == 403 and "CSRF_FAILED" in r.text, (path, token)
    logout = client.post("/console/logout", data={"csrf_token": "nope"}, follow_redirects=False)
    assert logout.status_code == 403
    assert env.client.get(f"/v1/actions/{action_id}", headers=env.h("agent")).json()["status"] == "pending_approval"


def test_inbox_explains_the_hold_and_approving_gives_the_agent_a_warrant(env: Env) -> None:
    user(env, "alice@example.com")
    action_id = held(env)
    client = console_login(env, "alice@example.com")
    inbox = client.get("/console/approvals")
    assert inbox.status_code == 200
    page = inbox.text
    assert action_id in page
    assert "wire-approval-50k" in page and "Amount exceeds 50,000 EUR" in page
    assert "60,000.00 EUR" in page and "ACME GmbH" in page
    assert "0 of 1" in page
    r = client.post(f"/console/actions/{action_id}/approve", data={
        "csrf_token": hidden(page, "csrf_token"), "reason": "invoice checked", "back": "inbox"},
        follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/console/approvals?flash=approved"
    assert "Approval recorded" in client.get(r.headers["location"]).text
    detail = env.client.get(f"/v1/actions/{action_id}", headers=env.h("agent")).json()
    assert detail["status"] == "approved" and detail["warrant"] is not None
    assert detail["approvals"][0] | {} == {**detail["approvals"][0], "approver": "alice@example.com", "via": "console"}


def test_deny_without_reason_is_refused_with_a_message(env: Env) -> None:
    user(env, "alice@example.com")
    action_id = held(env)
    client = console_login(env, "alice@example.com")
    r = client.post(f"/console/actions/{action_id}/deny", data={"csrf_token": csrf_of(client), "back": "inbox"},
                    follow_redirects=False)
    assert r.headers["location"].endswith("flash=REASON_REQUIRED")
    assert "Give a reason" in client.get(r.headers["location"]).text


def test_a_non_approver_sees_the_action_but_no_buttons(env: Env) -> None:
    user(env, "eve@example.com", groups=["comms-reviewers"])
    action_id = held(env)
    client = console_login(env, "eve@example.com")
    page = client.get("/console/approvals").text
    assert action_id in page and "You are not one of its approvers" in page
    assert 'data-testid="approve"' not in page
    r = client.post(f"/console/actions/{action_id}/approve", data={"csrf_token": csrf_of(client)},
                    follow_redirects=False)
    assert r.headers["location"].endswith("flash=NOT_AN_APPROVER")


def test_detail_page_explains_the_decision_and_verifies_the_signatures(env: Env) -> None:
    user(env, "alice@example.com")
    action_id = held(env)
    client = console_login(env, "alice@example.com")
    client.post(f"/console/actions/{action_id}/approve", data={"csrf_token": csrf_of(client)})
    client.post(f"/console/actions/{action_id}/cosign",
                data={"csrf_token": csrf_of(client), "statement": "Looks right"})
    r = env.client.post(f"/v1/actions/{action_id}/notarize", headers=env.h("agent"), json={
        "outcome": "completed", "executed": {"action_type": "wire_transfer", "payload": BIG}})
    assert r.status_code == 200, r.text
    page = client.get(f"/console/actions/{action_id}")
    assert page.status_code == 200
    text = page.text
    for expected in ("Pipeline", "policy", "wire-approval-50k", "Warrant", "Receipt", "notarized",
                     "alice@example.com", "Looks right", "Raw JSON"):
        assert expected in text, expected
    assert text.count("✓ signature verifies") == 3  # warrant, receipt, cosignature
    assert "does not verify" not in text
    assert "No parent" in text


def test_detail_page_follows_the_parent_chain(env: Env) -> None:
    user(env, "alice@example.com")
    parent = env.authorize().json()["action_id"]
    child = env.authorize(parent_action_id=parent).json()["action_id"]
    client = console_login(env, "alice@example.com")
    page = client.get(f"/console/actions/{child}").text
    assert f"/console/actions/{parent}" in page


def test_explorer_filters_and_pages(env: Env) -> None:
    user(env, "audrey@example.com", roles=["auditor"], groups=[])
    held(env)
    for _ in range(26):
        assert env.authorize().status_code == 201
    client = console_login(env, "audrey@example.com")
    first = client.get("/console/actions")
    assert first.status_code == 200 and "27 actions" in first.text and "Page 1 of 2" in first.text
    pending = client.get("/console/actions?status=pending_approval").text
    assert "1 action match" in pending and "60,000.00 EUR to ACME GmbH" in pending
    assert "0 actions" in client.get("/console/actions?agent_id=nobody").text
    assert client.get("/console/actions?status=bogus&page=2").status_code == 200


def test_overview_and_log_pages_render_charts_and_status(env: Env) -> None:
    user(env, "alice@example.com")
    held(env)
    env.authorize()
    env.authorize(payload={**WIRE, "amount_minor": 200_000_000})
    client = console_login(env, "alice@example.com")
    page = client.get("/console")
    assert page.status_code == 200
    assert page.text.count("<svg class=\"chart\"") >= 2
    assert "Decisions by effect" in page.text and "Waiting for approval" in page.text
    assert "<title>" in page.text  # hover text on the bars
    log = client.get("/console/log")
    assert log.status_code == 200 and "Entries sequenced" in log.text


def test_unknown_action_is_a_404_page(env: Env) -> None:
    user(env, "alice@example.com")
    client = console_login(env, "alice@example.com")
    r = client.get("/console/actions/act_doesnotexist")
    assert r.status_code == 404 and "Not found" in r.text


def test_static_files_are_served_and_nothing_else(env: Env) -> None:
    anon = TestClient(env.client.app)
    css = anon.get("/console/static/console.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert anon.get("/console/static/..%2F..%2Fapp.py").status_code == 404
    assert anon.get("/console/static/secret.txt").status_code == 404


def test_public_verify_page_checks_a_real_receipt(env: Env) -> None:
    r = env.authorize()
    action_id = r.json()["action_id"]
    r = env.client.post(f"/v1/actions/{action_id}/notarize", headers=env.h("agent"), json={
        "outcome": "completed", "executed": {"action_type": "wire_transfer", "payload": WIRE}})
    receipt_id = r.json()["receipt"]["receipt_id"]
    bundle = env.client.get(f"/v1/receipts/{receipt_id}/bundle", headers=env.h("agent"))
    if bundle.status_code == 409:  # not yet in a checkpoint: the integrator runs in the background
        import time

        time.sleep(1.5)
        bundle = env.client.get(f"/v1/receipts/{receipt_id}/bundle", headers=env.h("agent"))
    assert bundle.status_code == 200, bundle.text
    trust = env.client.get("/v1/trust").text
    anon = TestClient(env.client.app)
    assert "Verify evidence" in anon.get("/console/verify").text
    ok = anon.post("/console/verify", data={"bundle_text": bundle.text, "trust_text": trust})
    assert ok.status_code == 200
    assert "verdict-ok" in ok.text and "Verified" in ok.text
    assert ok.text.count('class="pass"') >= 5 and 'class="fail"' not in ok.text

    tampered = bundle.text.replace('"index": ', '"index": 1', 1) if '"index": 0' in bundle.text else bundle.text[:-40]
    bad = anon.post("/console/verify", data={"bundle_text": tampered, "trust_text": trust})
    assert bad.status_code == 200 and "Not verified" in bad.text

    upload = anon.post("/console/verify", files={
        "bundle_file": ("bundle.json", bundle.content, "application/json"),
        "trust_file": ("trust.json", trust.encode(), "application/json")})
    assert "verdict-ok" in upload.text
    junk = anon.post("/console/verify", data={"bundle_text": "{not json", "trust_text": trust})
    assert junk.status_code == 200 and "could not be read" in junk.text


@pytest.mark.parametrize(("minor", "currency", "text"), [
    (6_000_000, "EUR", "60,000.00 EUR"), (150, "jpy", "150 JPY"), (-5, "USD", "-0.05 USD"),
    (1234, "KWD", "1.234 KWD"), ("12", "EUR", None), (True, "EUR", None),
])
def test_money_formatting(minor: Any, currency: str, text: str | None) -> None:
    assert present.money(minor, currency) == text


def test_charts_escape_text_and_scale_to_the_data() -> None:
    days = [{"day": "2024-03-01", "counts": {"allow": 3, "deny": 1, "<script>": 2}},
            {"day": "2024-03-02", "counts": {}}]
    svg = str(charts.decisions_chart(days))
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    assert svg.count("<rect") == 3
    assert charts.nice_max(0) == 4 and charts.nice_max(7) == 10 and charts.nice_max(130) == 200


def test_decision_counts_per_day_on_both_stores(store_env: Env) -> None:
    from datetime import timedelta

    from warrantor.store import repo_humans

    env = store_env
    held(env)
    env.authorize()
    env.authorize()
    env.authorize(payload={**WIRE, "amount_minor": 200_000_000})
    now = env.services.deps.clock.now()
    with env.services.store.read() as repo:
        rows = repo_humans.decisions_by_day(repo, env.tenant_id, now - timedelta(days=1))
        none = repo_humans.decisions_by_day(repo, "ten_other", now - timedelta(days=1))
    today = now.strftime("%Y-%m-%d")
    assert sorted(rows) == [(today, "allow", 2), (today, "deny", 1), (today, "require_approval", 1)]
    assert none == []
