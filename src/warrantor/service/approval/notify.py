"""Telling people and waiting callers that something happened.

- ``Notifier``: in-process wake-ups for long-polling readers (``GET /v1/actions/{id}?wait=N``).
  Readers in other processes fall back to polling the store, so it is an optimization,
  never the source of truth.
- ``Mailer``: approval e-mails. ``send`` only queues and never blocks on the network.
  ``SmtpMailer`` (``WARRANTOR_SMTP_URL``) delivers from per-tenant queues with timeouts,
  retries and round-robin workers, so one tenant's unreachable or stalling recipients never
  delay another tenant's mail. ``DevMailer`` (no SMTP configured) writes each message to the
  log ``warrantor.devmail`` instead: for development and the walkthrough only.
  ``NullMailer`` keeps messages in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import smtplib
import socket
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass
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
    def send(self, to: str, subject: str, body: str, *, tenant_id: str | None = None) -> None:
        """Hand a message over for delivery and return at once: never blocks on the network
        and never raises for one bad message (the caller has already committed)."""
        ...


class NullMailer:
    """Keeps messages in memory (a default for code that sends no mail)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, str]] = []

    def send(self, to: str, subject: str, body: str, *, tenant_id: str | None = None) -> None:
        self.sent.append((to, subject, body))


_CONTROL = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F) if c != 0x0A}


def _printable(text: str) -> str:
    """Control characters (CR, ESC, ...) escaped, so a message cannot forge log lines."""
    return text.translate(_CONTROL)


class DevMailer:
    """No SMTP server configured: each message goes to the log ``warrantor.devmail``.

    For development and the README walkthrough only: the log then holds working approval
    links, so whoever reads the server log can approve. ``announce()`` says so at start-up.
    Each message is one WARNING record (visible at any log level): recipient, tenant and
    subject on the first line, the body indented below it with control characters escaped.
    """

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self._log = logger or logging.getLogger("warrantor.devmail")

    def announce(self) -> None:
        self._log.warning(
            "development mailer: WARRANTOR_SMTP_URL is not set, so e-mail is NOT delivered; approval "
            "mails (recipient, subject, approval link) and set-password links are written to this log "
            "instead. Anyone who can read this log can approve and set invited users' passwords; set "
            "WARRANTOR_SMTP_URL in production."
        )

    def send(self, to: str, subject: str, body: str, *, tenant_id: str | None = None) -> None:
        indented = "\n".join("    " + line for line in _printable(body).splitlines())
        self._log.warning("development mailer, not delivered: to=%s tenant=%s subject=%s\n%s",
                          _printable(to), tenant_id or "-", _printable(subject), indented)


@dataclass
class _Mail:
    tenant: str
    to: str
    msg: EmailMessage
    attempts: int = 0
    not_before: float = 0.0  # time.monotonic() before which it is not retried


class SmtpMailer:
    """Plain SMTP (``smtp://host:port``) or SMTP over TLS (``smtps://``), sent off the request path.

    - ``send`` only queues: one bounded queue per tenant (``max_queue`` messages). When a
      tenant's queue is full the *oldest* message is dropped, with an ERROR log line naming
      its recipient: newer approval requests are the ones still worth reading.
    - Up to ``workers`` threads deliver; a tenant has at most one message in flight, and
      tenants take turns (round robin), so a tenant whose messages hang or fail holds at most
      one worker at a time and never delays another tenant's mail.
    - Every network operation (connect, each SMTP command) times out after ``timeout``
      seconds. A temporary failure (timeout, refused connection, 4xx) is retried up to
      ``retries`` attempts with exponential backoff (``base_delay`` doubling, at most
      ``max_delay``); a permanent one (5xx, e.g. an unknown recipient) is not retried. A
      message given up on is logged at ERROR (recipient and reason, never the body).
    - Queues live in memory: messages still queued when the process stops are lost.
    - Worker threads start on demand and end after ``idle_seconds`` without work.
    """

    def __init__(
        self, url: str, sender: str = "warrantor@localhost", *, timeout: float = 10.0, retries: int = 5,
        base_delay: float = 1.0, max_delay: float = 300.0, max_queue: int = 100, workers: int = 4,
        idle_seconds: float = 5.0,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError(f"expected an smtp://host:port URL, got {url!r}")
        if not (timeout > 0 and retries >= 1 and max_queue >= 1 and workers >= 1):
            raise ValueError("expected a positive timeout, retries, max_queue and workers")
        self._host = parts.hostname
        self._port = parts.port or (465 if parts.scheme == "smtps" else 25)
        self._tls = parts.scheme == "smtps"
        self._sender = sender
        self._timeout, self._retries = timeout, retries
        self._base_delay, self._max_delay = base_delay, max_delay
        self._max_queue, self._workers, self._idle = max_queue, workers, idle_seconds
        self._cv = threading.Condition()
        self._queues: dict[str, deque[_Mail]] = {}
        self._order: deque[str] = deque()  # tenants with queued mail, in turn order
        self._busy: set[str] = set()  # tenants with a message in flight
        self._live = self._waiting = 0
        self._threads: list[threading.Thread] = []
        self._connections: set[smtplib.SMTP] = set()
        self._closed = False

    # -- the request path --------------------------------------------------------------
    def send(self, to: str, subject: str, body: str, *, tenant_id: str | None = None) -> None:
        try:
            msg = self._message(to, subject, body)
        except ValueError as exc:
            log.error("not sending mail to %r (tenant %s): %s", to[:200], tenant_id or "-", exc)
            return
        tenant = tenant_id or ""
        with self._cv:
            if self._closed:
                log.error("mailer closed; mail to %s (tenant %s) dropped", to, tenant or "-")
                return
            queue = self._queues.get(tenant)
            if queue is None:
                queue = self._queues[tenant] = deque()
                self._order.append(tenant)
            if len(queue) >= self._max_queue:
                dropped = queue.popleft()
                log.error("mail queue of tenant %s is full (%d); dropped the oldest message, to %s",
                          tenant or "-", self._max_queue, dropped.to)
            queue.append(_Mail(tenant, to, msg))
            if self._waiting == 0 and self._live < self._workers:
                self._spawn()
            self._cv.notify()

    def _message(self, to: str, subject: str, body: str) -> EmailMessage:
        if any(c in to for c in "\r\n") or "@" not in to or len(to) > 320:
            raise ValueError("expected one e-mail address")
        msg = EmailMessage()
        msg["From"] = self._sender
        msg["To"] = to
        msg["Subject"] = " ".join("".join(c if c.isprintable() else " " for c in subject).split())[:250]
        msg.set_content(body)
        return msg

    # -- workers -----------------------------------------------------------------------
    def _spawn(self) -> None:
        self._live += 1
        thread = threading.Thread(target=self._work, name=f"warrantor-mailer-{self._live}", daemon=True)
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()

    def _work(self) -> None:
        try:
            while (mail := self._next()) is not None:
                self._attempt(mail)
        finally:
            with self._cv:
                self._live -= 1

    def _next(self) -> _Mail | None:
        """The next message of the next tenant in turn that is due and not in flight."""
        with self._cv:
            idle_since = time.monotonic()
            while not self._closed:
                now = time.monotonic()
                wake_at: float | None = None
                for _ in range(len(self._order)):
                    tenant = self._order[0]
                    self._order.rotate(-1)  # whoever goes now goes to the back of the line
                    if tenant in self._busy:
                        continue
                    queue = self._queues[tenant]
                    for i, mail in enumerate(queue):
                        if mail.not_before <= now:
                            del queue[i]
                            self._busy.add(tenant)
                            return mail
                        wake_at = mail.not_before if wake_at is None else min(wake_at, mail.not_before)
                if not self._order and now - idle_since >= self._idle:
                    return None
                wait = self._idle if wake_at is None else max(0.0, wake_at - now)
                self._waiting += 1
                self._cv.wait(min(wait, self._idle))
                self._waiting -= 1
            return None

    def _forget_if_empty(self, tenant: str) -> None:
        if not self._queues[tenant] and tenant not in self._busy:
            del self._queues[tenant]
            self._order.remove(tenant)

    def _attempt(self, mail: _Mail) -> None:
        mail.attempts += 1
        try:
            self._deliver(mail.msg)
        except (OSError, smtplib.SMTPException) as exc:
            self._failed(mail, exc)
        finally:
            with self._cv:
                self._busy.discard(mail.tenant)
                if mail.tenant in self._queues:
                    self._forget_if_empty(mail.tenant)
                self._cv.notify_all()

    def _failed(self, mail: _Mail, exc: BaseException) -> None:
        reason = f"{type(exc).__name__}: {exc}"[:300]
        if _permanent(exc):
            log.error("mail to %s (tenant %s) refused for good, not retried: %s", mail.to, mail.tenant or "-", reason)
            return
        if mail.attempts >= self._retries:
            log.error("mail to %s (tenant %s) dropped after %d attempts: %s",
                      mail.to, mail.tenant or "-", mail.attempts, reason)
            return
        delay = min(self._max_delay, self._base_delay * 2 ** (mail.attempts - 1))
        log.warning("mail to %s (tenant %s) failed (%s), attempt %d; retrying in %.0f s",
                    mail.to, mail.tenant or "-", reason, mail.attempts, delay)
        mail.not_before = time.monotonic() + delay
        with self._cv:
            if self._closed:
                return
            queue = self._queues.get(mail.tenant)
            if queue is None:
                queue = self._queues[mail.tenant] = deque()
                self._order.append(mail.tenant)
            queue.appendleft(mail)

    def _deliver(self, msg: EmailMessage) -> None:
        smtp = smtplib.SMTP_SSL(timeout=self._timeout) if self._tls else smtplib.SMTP(timeout=self._timeout)
        with self._cv:
            if self._closed:
                raise smtplib.SMTPServerDisconnected("the mailer is closed")
            self._connections.add(smtp)
        try:
            smtp.connect(self._host, self._port)
            smtp.send_message(msg)
            with contextlib.suppress(OSError, smtplib.SMTPException):  # accepted already: no retry
                smtp.quit()
        finally:
            with self._cv:
                self._connections.discard(smtp)
            smtp.close()

    # -- tests and shutdown ------------------------------------------------------------
    def pending(self) -> int:
        """Messages queued or in flight."""
        with self._cv:
            return sum(len(q) for q in self._queues.values()) + len(self._busy)

    def close(self, timeout: float = 5.0) -> None:
        """Stop: messages in flight are aborted, queued ones dropped (and counted in the log)."""
        with self._cv:
            self._closed = True
            dropped = sum(len(q) for q in self._queues.values())
            self._queues.clear()
            self._order.clear()
            for smtp in self._connections:
                if smtp.sock is not None:
                    with contextlib.suppress(OSError):
                        smtp.sock.shutdown(socket.SHUT_RDWR)  # unblocks a worker waiting on the server
            self._cv.notify_all()
            threads = list(self._threads)
        if dropped:
            log.error("mailer closed with %d undelivered messages", dropped)
        deadline = time.monotonic() + timeout
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))


def _permanent(exc: BaseException) -> bool:
    """A 5xx answer: the server will not take this message however often we try."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return all(code >= 500 for code, _ in exc.recipients.values())
    return isinstance(exc, smtplib.SMTPResponseException) and exc.smtp_code >= 500
