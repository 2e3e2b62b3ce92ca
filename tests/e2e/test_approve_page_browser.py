"""The approval link from a real e-mail, opened in real Chromium (Debian's, never a
downloaded browser), against ``warrantor serve`` in a child process on loopback.

The story: an agent's wire transfer is held for ``cfo@example.com``; the server mails the
link over SMTP (an aiosmtpd inbox on a free port); the CFO opens it, with no login, sees the
payload and the rule that held it, types a reason and clicks Approve; the agent's action is
approved with a warrant. A screenshot goes to ``tests/artifacts/approve-page.png``.
"""

from __future__ import annotations

import email
import json
import re
import time
from collections.abc import Iterator
from email import policy
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from chromium import screenshot

from support import WIRE, bearer, free_port, server_process
from warrantor.demo import demo_bundle

LINK = re.compile(r"https?://\S+/approve/APR-[A-Za-z0-9_-]+")

pytestmark = pytest.mark.browser


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[bytes] = []

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        self.messages.append(envelope.content)  # type: ignore[attr-defined]
        return "250 OK"

    def wait_for_link(self, timeout: float = 10) -> str:
        deadline = time.monotonic() + timeout
        while not self.messages:
            assert time.monotonic() < deadline, "no approval e-mail arrived"
            time.sleep(0.05)
        mail = email.message_from_bytes(self.messages[0], policy=policy.default)
        assert mail["To"] == "cfo@example.com"
        body = mail.get_body(("plain",))
        assert body is not None
        found = LINK.search(body.get_content())
        assert found, body.get_content()
        return found.group(0)


@pytest.fixture
def smtp_inbox() -> Iterator[tuple[_Inbox, int]]:
    inbox, port = _Inbox(), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


def test_the_cfo_approves_from_the_link_in_the_email(
    tmp_path: Path, smtp_inbox: tuple[_Inbox, int], browser: Any,
) -> None:
    inbox, smtp_port = smtp_inbox
    with server_process(tmp_path, env={"WARRANTOR_SMTP_URL": f"smtp://127.0.0.1:{smtp_port}"}) as server:
        demo = json.loads((tmp_path / "demo.json").read_text())
        agent, admin = bearer(demo["agent_key"]), bearer(demo["admin_key"])
        with httpx.Client(base_url=server.url, timeout=20) as api:
            # The tenant's admin puts the CFO on the approver directory and names them in the policy.
            assert api.post("/v1/approvers", headers=admin, json={"address": "cfo@example.com"}).status_code == 201
            bundle = demo_bundle()
            bundle["cedar"] = bundle["cedar"].replace('@approvers("finance-leads") @quorum("1")',
                                                      '@approvers("cfo@example.com") @quorum("1")', 1)
            uploaded = api.post("/v1/policies", headers=admin, json=bundle)
            assert uploaded.status_code == 201, uploaded.text
            api.post(f"/v1/policies/{uploaded.json()['bundle_hash']}/activate", headers=admin,
                     json={"mode": "enforce"}).raise_for_status()
            r = api.post("/v1/actions", headers=agent, json={
                "action_type": "wire_transfer", "agent_id": "payments-agent",
                "details": "Pay invoice INV-2024-0042 for the annual licence",
                "payload": {**WIRE, "amount_minor": 6_000_000, "reference": "INV-2024-0042"}})
            assert r.status_code == 201 and r.json()["status"] == "pending_approval", r.text
            action_id = r.json()["action_id"]

            link = inbox.wait_for_link()
            assert link.startswith(f"{server.url}/approve/APR-")
            page = browser.new_page(viewport={"width": 1366, "height": 900})
            response = page.goto(link)
            assert response is not None and response.status == 200
            assert response.headers["referrer-policy"] == "no-referrer"
            text = page.inner_text("main")
            for shown in ("cfo@example.com", "60,000.00 EUR", "ACME GmbH", "wire-approval-50k",
                          "Amount exceeds 50,000 EUR", "0 of 1", action_id):
                assert shown in text, shown
            page.fill("textarea[name=reason]", "Invoice matches the signed contract")
            screenshot(page, "approve-page")

            page.click("[data-testid=approve]")
            result = page.locator("[data-testid=result]")
            assert "Approved: the agent now holds its warrant" in result.inner_text()
            screenshot(page, "approve-page-result")

            action = api.get(f"/v1/actions/{action_id}", headers=agent).json()
            assert action["status"] == "approved"
            assert action["warrant"]["envelope"]["signatures"]
            assert [(a["approver"], a["reason"]) for a in action["approvals"]] == [
                ("cfo@example.com", "Invoice matches the signed contract")]

            gone = page.goto(link)  # the link works once
            assert gone is not None and gone.status == 410
            assert "already used or has expired" in page.inner_text("main")
            screenshot(page, "approve-page-used")
