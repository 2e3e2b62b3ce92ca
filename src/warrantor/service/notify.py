"""Telling people and waiting callers that something happened.

- ``Notifier``: in-process wake-ups for long-polling readers (``GET /v1/actions/{id}?wait=N``).
  Readers in other processes fall back to polling the store, so it is an optimization,
  never the source of truth.
- ``Mailer``: approval e-mails over SMTP (``WARRANTOR_SMTP_URL``), sent after the commit by
  a background thread with retries; ``NullMailer`` when no SMTP server is configured.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import smtplib
import threading
import time
from collections import defaultdict
from email.message import EmailMessage
from typing import Protocol
from urllib.parse import urlsplit

log = logging.getLogger(__name__)


class Notifier:
    """Wake threads waiting for a change of one action."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._versions: dict[str, int] = defaultdict(int)
        self._async: dict[str, set[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = defaultdict(set)

    def version(self, key: str) -> int:
        with self._cond:
            return self._versions[key]

    def notify(self, key: str) -> None:
        with self._cond:
            self._versions[key] += 1
            self._cond.notify_all()
            waiters = list(self._async.get(key, ()))
        for loop, event in waiters:
            loop.call_soon_threadsafe(event.set)

    async def wait_async(self, key: str, seen: int, timeout: float) -> int:
        """``wait`` for the event loop: no thread is held while waiting."""
        event = asyncio.Event()
        entry = (asyncio.get_running_loop(), event)
        with self._cond:
            if self._versions[key] != seen:
                return self._versions[key]
            self._async[key].add(entry)
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except TimeoutError:
            pass
        finally:
            with self._cond:
                self._async[key].discard(entry)
                if not self._async[key]:
                    del self._async[key]
        return self.version(key)

    def wait(self, key: str, seen: int, timeout: float) -> int:
        """Block until ``key`` moves past version ``seen`` or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._versions[key] == seen:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            return self._versions[key]


class Mailer(Protocol):
    def send(self, to: str, subject: str, body: str) -> None:
        """Queue a message; delivery happens after the caller's commit, with retries."""
        ...


class NullMailer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str, str]] = []

    def send(self, to: str, subject: str, body: str) -> None:
        self.sent.append((to, subject, body))


class SmtpMailer:
    """Plain SMTP (``smtp://host:port``) with a sender thread and bounded retries."""

    def __init__(self, url: str, sender: str = "warrantor@localhost", retries: int = 5) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError(f"expected an smtp://host:port URL, got {url!r}")
        self._host = parts.hostname
        self._port = parts.port or (465 if parts.scheme == "smtps" else 25)
        self._tls = parts.scheme == "smtps"
        self._sender = sender
        self._retries = retries
        self._queue: queue.SimpleQueue[EmailMessage | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="warrantor-mailer", daemon=True)
        self._thread.start()

    def send(self, to: str, subject: str, body: str) -> None:
        msg = EmailMessage()
        msg["From"] = self._sender
        msg["To"] = to
        msg["Subject"] = subject
        msg.set_content(body)
        self._queue.put(msg)

    def _run(self) -> None:
        while (msg := self._queue.get()) is not None:
            for attempt in range(self._retries):
                try:
                    self._deliver(msg)
                    break
                except (OSError, smtplib.SMTPException) as exc:
                    log.warning("SMTP delivery to %s failed (%s), attempt %d", msg["To"], exc, attempt + 1)
                    time.sleep(min(30.0, 0.5 * 2**attempt))

    def _deliver(self, msg: EmailMessage) -> None:
        cls = smtplib.SMTP_SSL if self._tls else smtplib.SMTP
        with cls(self._host, self._port, timeout=10) as smtp:
            smtp.send_message(msg)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=5)
