"""Without SMTP, ``warrantor serve`` writes approval mails to its log (the development
mailer), says so at start-up, and the link it logs works: the README walkthrough needs no
mail server."""

from __future__ import annotations

import json
import logging
import re
import time
from pathlib import Path

import httpx
import pytest

from support import WIRE, bearer, server_process
from warrantor.service.approval.notify import DevMailer

LINK = re.compile(r"(http://\S+/approve/(APR-[A-Z0-9]+))")


def test_serve_without_smtp_logs_the_approval_link(tmp_path: Path) -> None:
    with server_process(tmp_path) as server:
        demo = json.loads((tmp_path / "demo.json").read_text())
        r = httpx.post(f"{server.url}/v1/actions", headers=bearer(demo["agent_key"]), json={
            "action_type": "wire_transfer", "details": "Pay invoice 42",
            "payload": {**WIRE, "amount_minor": 6_000_000},
        })
        assert r.status_code == 201 and r.json()["status"] == "pending_approval", r.text
        deadline = time.monotonic() + 10
        while not LINK.search(server.log_text()):
            assert time.monotonic() < deadline, server.log_text()
            time.sleep(0.05)
        log = server.log_text()
        assert "development mailer: WARRANTOR_SMTP_URL is not set, so e-mail is NOT delivered" in log
        record = log[log.index("development mailer, not delivered"):]
        assert record.startswith(f"development mailer, not delivered: to={demo['console_email']} ")
        assert "subject=Approval needed: wire_transfer" in record
        link, code = LINK.search(record).groups()  # type: ignore[union-attr]
        assert link.startswith(server.url)
        page = httpx.get(f"{server.url}/v1/approvals/{code}")
        assert page.status_code == 200 and page.json()["action_id"] == r.json()["action_id"]


def test_a_mail_body_cannot_forge_log_lines(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="warrantor.devmail")
    DevMailer().send("a@b.example\rFAKE", "s\x1b[2J", "line one\nline two\r\nINFO forged record", tenant_id="t")
    (record,) = caplog.records
    message = record.getMessage()
    assert message.splitlines() == [
        "development mailer, not delivered: to=a@b.example\\x0dFAKE tenant=t subject=s\\x1b[2J",
        "    line one",
        "    line two\\x0d",
        "    INFO forged record",
    ]
