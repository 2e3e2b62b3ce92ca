"""The console in real Chromium (Debian's, never a downloaded browser), against a real
uvicorn server on loopback.

The story a person lives: an approver in finance-leads logs in, finds two held wire
transfers in the inbox, approves one and denies the other; the agent long-polling
``GET /v1/actions/{id}?wait=30`` gets its warrant within a second of the click; each
action's page shows its warrant or receipt with a verifying signature; the receipt's proof
bundle verifies on the public verification page. Screenshots go to ``tests/artifacts/``.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from chromium import screenshot

from support import OPERATOR_KEY, WIRE, bearer, make_settings
from warrantor.demo import demo_bundle
from warrantor.server.app import create_app, open_services

PASSWORD = "correct horse battery staple"
BIG = {**WIRE, "amount_minor": 6_000_000}

pytestmark = pytest.mark.browser


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Live:
    url: str
    admin: dict[str, str]
    agent: dict[str, str]

    def api(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=40)


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    """A real server on a free loopback port, with a tenant made over the HTTP API. No SMTP:
    the development mailer writes mail to the server log (kept in ``server.log``)."""
    port = _free_port()
    settings = make_settings(tmp_path, port=port, public_url=f"http://127.0.0.1:{port}")
    services = open_services(settings)
    log_path = tmp_path / "server.log"
    handler = logging.FileHandler(log_path, encoding="utf-8")
    logging.getLogger("warrantor.devmail").addHandler(handler)
    services.tenancy.bootstrap_operator(OPERATOR_KEY)
    server = uvicorn.Server(uvicorn.Config(create_app(settings, services=services), host="127.0.0.1",
                                           port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, name="uvicorn-e2e", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 15
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield _tenant(url, log_path)
    finally:
        logging.getLogger("warrantor.devmail").removeHandler(handler)
        handler.close()
        server.should_exit = True
        thread.join(timeout=15)
        services.store.close()


def _invitation_token(log_path: Path, email: str) -> str:
    """The set-password link the development mailer logged for ``email``, as an operator
    reading the server log would find it (the admin key that created the user never sees it)."""
    text = log_path.read_text(encoding="utf-8")
    mail = text[text.rindex(f"to={email} "):]
    found = re.search(r"^\s*Set your password: \S+/invite/([0-9a-z]+)$", mail, re.M)
    assert found, text
    return found.group(1)


def _tenant(url: str, log_path: Path) -> Live:
    with httpx.Client(base_url=url, timeout=20) as api:
        tenant = api.post("/v1/tenants", json={"name": "Acme Payments"}, headers=bearer(OPERATOR_KEY)).json()
        keys = {
            role: api.post(f"/v1/tenants/{tenant['tenant_id']}/api-keys", headers=bearer(OPERATOR_KEY),
                           json={"role": role, **({"agent_id": "payments-agent"} if role == "agent" else {})}
                           ).json()["key"]
            for role in ("admin", "agent")
        }
        admin = bearer(keys["admin"])
        # The approver first: a bundle whose approvers name nobody in the tenant is refused.
        # An admin key cannot choose her password: she sets it with the mailed link.
        r = api.post("/v1/users", headers=admin, json={
            "email": "fiona@acme.example", "name": "Fiona Lead",
            "roles": ["approver"], "groups": ["finance-leads", "comms-reviewers"]})
        assert r.status_code == 201, r.text
        token = _invitation_token(log_path, "fiona@acme.example")
        r = api.post(f"/v1/invitations/{token}", json={"password": PASSWORD})
        assert r.status_code == 200, r.text
        policy = demo_bundle()
        policy["config"] = {**policy["config"], "budgets": [
            {"id": "daily-wires", "metric": "payload.amount_minor", "scope": "tenant", "window": "1d",
             "limit": 50_000_000, "on_exceed": "deny"}]}
        bundle = api.post("/v1/policies", json=policy, headers=admin)
        assert bundle.status_code == 201, bundle.text
        activated = api.post(f"/v1/policies/{bundle.json()['bundle_hash']}/activate", json={"mode": "enforce"},
                             headers=admin)
        assert activated.status_code == 200, activated.text
    return Live(url, admin, bearer(keys["agent"]))


def _hold(live: Live, beneficiary: str, amount: int, details: str) -> str:
    with live.api() as api:
        r = api.post("/v1/actions", headers=live.agent, json={
            "action_type": "wire_transfer", "agent_id": "payments-agent", "details": details,
            "payload": {**BIG, "beneficiary": beneficiary, "amount_minor": amount, "reference": "INV-2024-0042"}})
    assert r.status_code == 201 and r.json()["status"] == "pending_approval", r.text
    return str(r.json()["action_id"])


class Waiter(threading.Thread):
    """An agent long-polling its action; records when the answer arrived."""

    def __init__(self, live: Live, action_id: str) -> None:
        super().__init__(daemon=True)
        self.live, self.action_id = live, action_id
        self.answer: dict[str, Any] | None = None
        self.answered_at = 0.0
        self.listening = threading.Event()

    def run(self) -> None:
        with self.live.api() as api:
            self.listening.set()
            r = api.get(f"/v1/actions/{self.action_id}", params={"wait": 30}, headers=self.live.agent)
        self.answered_at = time.monotonic()
        self.answer = r.json()


def test_approver_decides_from_the_inbox_and_the_agent_gets_its_warrant(live: Live, browser: Any) -> None:
    approve_id = _hold(live, "ACME GmbH", 6_000_000, "Pay invoice INV-2024-0042 for the annual licence")
    deny_id = _hold(live, "Unknown Shell Ltd", 9_850_000, "Urgent transfer requested by e-mail")
    page = browser.new_page(viewport={"width": 1366, "height": 768})

    page.goto(f"{live.url}/console/approvals")
    assert "/console/login" in page.url  # a login is needed first
    screenshot(page, "01-login")
    page.fill("input[name=email]", "fiona@acme.example")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live.url}/console/approvals")
    cookie = next(c for c in page.context.cookies() if c["name"] == "warrantor_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"

    card = page.locator(f"article[data-action-id='{approve_id}']")
    assert "60,000.00 EUR" in card.inner_text() and "wire-approval-50k" in card.inner_text()
    assert "0 of 1" in card.inner_text()
    screenshot(page, "02-inbox")

    waiter = Waiter(live, approve_id)
    waiter.start()
    waiter.listening.wait(5)
    time.sleep(0.5)  # the long poll is parked on the server
    card.locator("input[name=reason]").fill("Invoice matches the contract")
    clicked = time.monotonic()
    card.locator("[data-testid=approve]").click()
    waiter.join(timeout=10)
    assert waiter.answer is not None, "the long poll did not return"
    assert waiter.answer["status"] == "approved"
    assert waiter.answer["warrant"]["envelope"]["signatures"]
    assert waiter.answered_at - clicked < 1.0, f"warrant arrived {waiter.answered_at - clicked:.2f}s after the click"
    page.wait_for_selector(".flash-ok")

    deny_card = page.locator(f"article[data-action-id='{deny_id}']")
    deny_card.locator("input[name=reason]").fill("Beneficiary not on the vendor list")
    deny_card.locator("[data-testid=deny]").click()
    page.wait_for_selector(".flash-ok")
    assert page.locator("article.held").count() == 0
    screenshot(page, "03-inbox-empty")

    page.goto(f"{live.url}/console/actions/{approve_id}")
    screenshot(page, "04-approved-detail")
    text = page.inner_text("main")
    assert "✓ signature verifies" in text, text
    assert "Approved" in text and "Invoice matches the contract" in text

    page.goto(f"{live.url}/console/actions/{deny_id}")
    screenshot(page, "05-denied-detail")
    text = page.inner_text("main")
    assert "Denied By Human" in text or "denied by human" in text.lower()
    assert "Beneficiary not on the vendor list" in text
    receipt = page.locator(".evidence").nth(1)
    assert "✓ signature verifies" in receipt.inner_text() and "rcpt_" in receipt.inner_text()

    page.goto(f"{live.url}/console")
    assert page.locator("svg.chart").count() >= 2  # decisions and the daily-wires budget
    assert "daily-wires" in page.inner_text("main")
    screenshot(page, "06-overview")

    page.goto(f"{live.url}/console/actions")
    assert page.locator("tbody tr").count() == 2
    screenshot(page, "07-explorer")


def test_a_receipt_verifies_on_the_public_page(live: Live, browser: Any) -> None:
    action_id = _hold(live, "ACME GmbH", 6_000_000, "Pay invoice 42")
    with live.api() as api:
        login = api.post("/v1/sessions", json={"email": "fiona@acme.example", "password": PASSWORD})
        csrf = login.json()["csrf_token"]
        r = api.post(f"/v1/actions/{action_id}/deny", json={"reason": "duplicate"}, headers={"X-CSRF-Token": csrf})
        assert r.status_code == 200, r.text
        receipt_id = api.get(f"/v1/actions/{action_id}", headers=live.agent).json()["receipt"]["receipt_id"]
        bundle = api.get(f"/v1/receipts/{receipt_id}/bundle", headers=live.agent)
        for _ in range(20):
            if bundle.status_code == 200:
                break
            time.sleep(0.25)
            bundle = api.get(f"/v1/receipts/{receipt_id}/bundle", headers=live.agent)
        assert bundle.status_code == 200, bundle.text
        trust = api.get("/v1/trust").json()

    page = browser.new_page(viewport={"width": 1366, "height": 768})
    page.goto(f"{live.url}/console/verify")  # public: no login
    page.fill("textarea[name=bundle_text]", json.dumps(bundle.json(), indent=2))
    page.fill("textarea[name=trust_text]", json.dumps(trust, indent=2))
    page.click("[data-testid=verify]")
    verdict = page.locator("[data-testid=verdict]")
    assert "Verified" in verdict.inner_text() and "Not verified" not in verdict.inner_text()
    assert page.locator(".checks li.pass").count() >= 5 and page.locator(".checks li.fail").count() == 0
    screenshot(page, "08-verify-ok")

    tampered = bundle.json()
    tampered["envelope"]["payload"] = tampered["envelope"]["payload"][:-8] + "AAAAAAA="
    page.fill("textarea[name=bundle_text]", json.dumps(tampered))
    page.fill("textarea[name=trust_text]", json.dumps(trust))
    page.click("[data-testid=verify]")
    assert "Not verified" in page.locator("[data-testid=verdict]").inner_text()
    screenshot(page, "09-verify-tampered")

    page.goto(f"{live.url}/console/login")
    page.fill("input[name=email]", "fiona@acme.example")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.goto(f"{live.url}/console/log")
    assert "entries sequenced" in page.inner_text("main").lower()
    screenshot(page, "10-log")
