"""Approval mail is sent off the request path, per tenant, with timeouts.

A real SMTP server (aiosmtpd) on loopback plays the deployment's relay. One SMTP URL serves
every tenant, so "a tenant's bad addresses" are recipients whose ``RCPT TO`` the server
stalls on (until the test releases it) or rejects with 550.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterator
from email import message_from_bytes
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from fault_servers import free_port

from warrantor.service.approval.notify import SmtpMailer


class Relay:
    """Accepts mail, stalls on ``*@stall.example`` until released, rejects ``*@reject.example``."""

    def __init__(self) -> None:
        self.delivered: list[tuple[list[str], bytes]] = []
        self.stalls = 0  # RCPT TO commands currently stalled
        self.stalled_total = 0
        self.rejected: list[str] = []
        self.release = threading.Event()

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if address.endswith("@stall.example"):
            self.stalls += 1
            self.stalled_total += 1
            try:
                while not self.release.is_set():
                    await asyncio.sleep(0.02)
            finally:
                self.stalls -= 1
            return "451 4.4.1 try again later"
        if address.endswith("@reject.example"):
            self.rejected.append(address)
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.delivered.append((list(envelope.rcpt_tos), envelope.content))
        return "250 Message accepted"

    def recipients(self) -> list[str]:
        return [to for tos, _ in self.delivered for to in tos]


@pytest.fixture
def relay() -> Iterator[tuple[Relay, str]]:
    handler = Relay()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, f"smtp://127.0.0.1:{port}"
    finally:
        handler.release.set()
        controller.stop()


def _eventually(check: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_a_tenants_stalling_and_rejected_addresses_do_not_delay_another_tenants_mail(
    relay: tuple[Relay, str], caplog: pytest.LogCaptureFixture,
) -> None:
    server, url = relay
    caplog.set_level(logging.WARNING, logger="warrantor.service.approval.notify")
    # A timeout far longer than the test: B's mail must not depend on A's timing out.
    mailer = SmtpMailer(url, timeout=60, retries=2, base_delay=0.05)
    try:
        mailer.send("cfo@stall.example", "Approval needed", "link A1", tenant_id="ten_A")
        mailer.send("nobody@reject.example", "Approval needed", "link A2", tenant_id="ten_A")
        mailer.send("cto@a.example", "Approval needed", "link A3", tenant_id="ten_A")
        _eventually(lambda: server.stalls == 1, "tenant A's first message to stall")
        mailer.send("cfo@b.example", "Approval needed", "link B", tenant_id="ten_B")
        _eventually(lambda: "cfo@b.example" in server.recipients(), "tenant B's mail")
        assert server.stalls == 1 and "cto@a.example" not in server.recipients()  # A is still stuck

        server.release.set()  # the stalled recipient is now refused temporarily (451)
        _eventually(lambda: mailer.pending() == 0, "tenant A's queue to settle")
    finally:
        mailer.close()
    assert sorted(server.recipients()) == ["cfo@b.example", "cto@a.example"]
    assert server.rejected == ["nobody@reject.example"]  # 550 is final: not retried
    assert server.stalled_total == 2  # 451 is temporary: retried, then given up
    text = caplog.text
    assert "nobody@reject.example (tenant ten_A) refused for good" in text
    assert "cfo@stall.example (tenant ten_A) dropped after 2 attempts" in text
    assert "link A" not in text  # the log never carries a mail body (it holds approval links)


def test_a_server_that_never_answers_costs_one_timeout_per_attempt(
    relay: tuple[Relay, str], caplog: pytest.LogCaptureFixture,
) -> None:
    server, url = relay
    caplog.set_level(logging.WARNING, logger="warrantor.service.approval.notify")
    mailer = SmtpMailer(url, timeout=0.3, retries=2, base_delay=0.05, workers=1)
    try:
        mailer.send("cfo@stall.example", "s", "b", tenant_id="ten_A")
        mailer.send("cto@a.example", "s", "b", tenant_id="ten_A")
        _eventually(lambda: "cto@a.example" in server.recipients(), "the message after the stalled one")
        _eventually(lambda: mailer.pending() == 0, "the stalled message to be given up")
    finally:
        mailer.close()
    assert server.stalled_total == 2
    assert "cfo@stall.example (tenant ten_A) dropped after 2 attempts: SMTPServerDisconnected" in caplog.text \
        or "cfo@stall.example (tenant ten_A) dropped after 2 attempts: TimeoutError" in caplog.text


def test_a_full_queue_drops_the_oldest_message_and_says_so(
    relay: tuple[Relay, str], caplog: pytest.LogCaptureFixture,
) -> None:
    server, url = relay
    mailer = SmtpMailer(url, timeout=60, retries=1, max_queue=2)
    try:
        mailer.send("cfo@stall.example", "s", "b", tenant_id="ten_A")  # in flight, stuck
        _eventually(lambda: server.stalls == 1, "the first message to stall")
        for i in range(4):
            mailer.send(f"user{i}@a.example", "s", "b", tenant_id="ten_A")
        server.release.set()
        _eventually(lambda: mailer.pending() == 0, "the queue to drain")
    finally:
        mailer.close()
    assert sorted(server.recipients()) == ["user2@a.example", "user3@a.example"]
    assert caplog.text.count("mail queue of tenant ten_A is full (2); dropped the oldest message") == 2


def test_header_injection_is_not_sent_and_does_not_raise(relay: tuple[Relay, str]) -> None:
    server, url = relay
    mailer = SmtpMailer(url, timeout=5)
    try:
        mailer.send("cfo@a.example\r\nBcc: thief@evil.example", "s", "b", tenant_id="ten_A")
        mailer.send("cfo@a.example", "Approval\r\nBcc: thief@evil.example", "b", tenant_id="ten_A")
        _eventually(lambda: mailer.pending() == 0 and len(server.delivered) == 1, "the second message")
    finally:
        mailer.close()
    (tos, raw), = server.delivered
    assert tos == ["cfo@a.example"]
    msg = message_from_bytes(raw)
    assert msg["Bcc"] is None and msg["Subject"] == "Approval Bcc: thief@evil.example"
