"""Webhooks: endpoints, a durable outbox, and a dispatcher that signs and retries.

Signing follows Standard Webhooks (https://www.standardwebhooks.com/, spec
``standard-webhooks.md``): each request carries ``webhook-id`` (the delivery id, the same on
every retry, so receivers can deduplicate), ``webhook-timestamp`` (Unix seconds of this
attempt) and ``webhook-signature: v1,<base64 HMAC-SHA256(key, "<id>.<timestamp>.<body>")>``
where ``key`` is the base64 part of the endpoint's ``whsec_...`` secret. The body is
``{"type": <event>, "timestamp": <RFC 3339>, "data": {...}}``.

- ``WebhookEvents`` is the ``EventSink``: ``emit`` runs inside the caller's write
  transaction and inserts one outbox row per subscribed endpoint, so an event exists if
  and only if the change that caused it committed.
- ``WebhookDispatcher`` claims due rows (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so two
  server processes never claim the same row), POSTs them with httpx, records every
  attempt, and retries non-2xx answers and transport errors with exponential backoff up to
  ``max_attempts``. Redirects are not followed. A claim is a lease: after a crash mid-send
  the row is sent again once the lease runs out (at-least-once; ``webhook-id`` dedupes).

What it does not do: per-endpoint rate limiting, or address filtering of endpoint URLs
(only admins register endpoints; only ``http``/``https`` URLs are accepted).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import secrets
import threading
import time
from datetime import datetime, timedelta
from typing import Any

import httpx

from warrantor.domain.clock import isoformat
from warrantor.domain.model import Principal, Role
from warrantor.errors import NotFoundError, ValidationError
from warrantor.service.context import Deps
from warrantor.service.tenancy import require_role
from warrantor.store import Repo
from warrantor.store import repo_grants as rg
from warrantor.store.repo_grants import Attempt, Delivery, Endpoint

log = logging.getLogger(__name__)

EVENT_TYPES = (
    "action.pending_approval",
    "action.pending_confirmation",
    "action.approved",
    "action.denied",
    "action.expired",
    "action.notarized",
    "action.failed",
    "action.diverged",
    "run.halted",
)
SECRET_PREFIX = "whsec_"  # noqa: S105 - the prefix of every secret, not a secret


def new_secret() -> str:
    """``whsec_`` + base64 of 32 random bytes (the spec asks for 24 to 64)."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value for one attempt."""
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def parse_url(url: str) -> str:
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise ValidationError(f"expected an http(s) URL, got {url[:200]!r}", code="INVALID_WEBHOOK_URL") from exc
    if parsed.scheme not in ("http", "https") or not parsed.host or len(url) > 2048:
        raise ValidationError(f"expected an http(s) URL with a host, got {url[:200]!r}", code="INVALID_WEBHOOK_URL")
    return url


def parse_events(events: list[str]) -> tuple[str, ...]:
    unknown = [e for e in events if e not in EVENT_TYPES]
    if unknown or not events:
        raise ValidationError(
            f"expected one or more of {', '.join(EVENT_TYPES)}, got {unknown or events!r}",
            code="UNKNOWN_EVENT_TYPE",
        )
    return tuple(dict.fromkeys(events))


def endpoint_view(ep: Endpoint) -> dict[str, Any]:
    return {"webhook_id": ep.id, "url": ep.url, "events": list(ep.events), "created_at": isoformat(ep.created_at)}


def _time(value: datetime | None) -> str | None:
    return isoformat(value) if value else None


def delivery_view(d: Delivery, attempts: list[Attempt]) -> dict[str, Any]:
    return {
        "delivery_id": d.id, "event_type": d.event_type, "status": d.status, "attempts": d.attempts,
        "last_status_code": d.last_status_code, "last_error": d.last_error,
        "created_at": isoformat(d.created_at), "delivered_at": _time(d.delivered_at),
        "next_attempt_at": isoformat(d.next_attempt_at) if d.status == "pending" else None,
        "attempt_log": [
            {"attempt": a.attempt, "status_code": a.status_code, "error": a.error,
             "started_at": isoformat(a.started_at), "duration_ms": a.duration_ms}
            for a in attempts
        ],
    }


class Webhooks:
    """Endpoint management and the delivery log (tenant admins only)."""

    def __init__(self, deps: Deps) -> None:
        self._d = deps

    def create(self, principal: Principal, url: str, events: list[str]) -> dict[str, Any]:
        tenant_id = require_role(principal, Role.ADMIN)
        ep = Endpoint(self._d.ids.new("wh"), tenant_id, parse_url(url), parse_events(events), new_secret(),
                      self._d.clock.now())
        self._d.store.write(lambda repo: rg.insert_endpoint(repo, ep))
        return {**endpoint_view(ep), "secret": ep.secret}

    def list(self, principal: Principal) -> dict[str, Any]:
        tenant_id = require_role(principal, Role.ADMIN)
        with self._d.store.read() as repo:
            return {"data": [endpoint_view(ep) for ep in rg.list_endpoints(repo, tenant_id)]}

    def delete(self, principal: Principal, endpoint_id: str) -> None:
        tenant_id = require_role(principal, Role.ADMIN)
        now = self._d.clock.now()
        if not self._d.store.write(lambda repo: rg.delete_endpoint(repo, tenant_id, endpoint_id, now)):
            raise NotFoundError(f"no webhook {endpoint_id!r}", code="WEBHOOK_NOT_FOUND")

    def deliveries(self, principal: Principal, endpoint_id: str, limit: int = 50) -> dict[str, Any]:
        tenant_id = require_role(principal, Role.ADMIN)
        with self._d.store.read() as repo:
            if rg.get_endpoint(repo, tenant_id, endpoint_id) is None:
                raise NotFoundError(f"no webhook {endpoint_id!r}", code="WEBHOOK_NOT_FOUND")
            rows = rg.deliveries_for(repo, tenant_id, endpoint_id, limit)
        return {"webhook_id": endpoint_id, "data": [delivery_view(d, a) for d, a in rows]}


class WebhookEvents:
    """The ``EventSink``: one outbox row per subscribed endpoint, in the caller's transaction."""

    def __init__(self, deps: Deps) -> None:
        self._d = deps

    def emit(self, repo: Repo, tenant_id: str, event_type: str, data: dict[str, Any]) -> None:
        if event_type not in EVENT_TYPES:
            return
        endpoints = [ep for ep in rg.list_endpoints(repo, tenant_id) if event_type in ep.events]
        if not endpoints:
            return
        now = self._d.clock.now()
        body = json.dumps({"type": event_type, "timestamp": isoformat(now), "data": data},
                          separators=(",", ":"), sort_keys=True)
        for ep in endpoints:
            rg.insert_delivery(repo, self._d.ids.new("msg"), tenant_id, ep.id, event_type, body, now)


class WebhookDispatcher:
    """Delivers the outbox. ``run_once()`` for one pass; ``start()``/``stop()`` for a thread."""

    def __init__(self, deps: Deps, *, max_attempts: int = 5, base_delay: float = 2.0, factor: float = 4.0,
                 max_delay: float = 3600.0, timeout: float = 10.0, lease_seconds: float = 60.0,
                 batch: int = 50, interval: float = 1.0, transport: httpx.BaseTransport | None = None) -> None:
        self._d = deps
        self.max_attempts, self.base_delay, self.factor, self.max_delay = max_attempts, base_delay, factor, max_delay
        self._lease = timedelta(seconds=lease_seconds)
        self._batch, self._interval = batch, interval
        self._timeout, self._transport = timeout, transport
        self._client: httpx.Client | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def backoff(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        return float(min(self.max_delay, self.base_delay * self.factor ** (attempt - 1)))

    def run_once(self) -> int:
        now = self._d.clock.now()
        claimed = self._d.store.write(
            lambda repo: rg.claim_deliveries(repo, now, now + self._lease, self._batch)
        )
        for delivery, endpoint in claimed:
            self._deliver(delivery, endpoint)
        return len(claimed)

    def _deliver(self, delivery: Delivery, endpoint: Endpoint) -> None:
        started_at, t0 = self._d.clock.now(), time.monotonic()
        status_code, error = self._send(delivery, endpoint)
        duration_ms = int((time.monotonic() - t0) * 1000)
        now = self._d.clock.now()
        ok = status_code is not None and 200 <= status_code < 300
        if ok:
            status, next_at = "delivered", now
        elif delivery.attempts >= self.max_attempts:
            status, next_at = "failed", now
        else:
            status, next_at = "pending", now + timedelta(seconds=self.backoff(delivery.attempts))
        if not ok and error is None:
            error = f"expected a 2xx answer, got {status_code}"

        def job(repo: Repo) -> None:
            rg.record_attempt(repo, self._d.ids.new("wha"), delivery, status_code, error, started_at, duration_ms)
            rg.finish_delivery(repo, delivery, status=status, status_code=status_code, error=error,
                               next_attempt_at=next_at, now=now)

        self._d.store.write(job)

    def _send(self, delivery: Delivery, endpoint: Endpoint) -> tuple[int | None, str | None]:
        if httpx.URL(endpoint.url).scheme not in ("http", "https"):
            return None, "refused: only http and https URLs are delivered to"
        body = delivery.body.encode()
        ts = int(time.time())
        headers = {
            "content-type": "application/json",
            "webhook-id": delivery.id,
            "webhook-timestamp": str(ts),
            "webhook-signature": sign(endpoint.secret, delivery.id, ts, body),
        }
        if self._client is None:
            self._client = httpx.Client(timeout=self._timeout, follow_redirects=False, transport=self._transport,
                                        headers={"user-agent": "warrantor-webhooks"})
        try:
            response = self._client.post(endpoint.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            return None, f"{type(exc).__name__}: {exc}"[:500]
        return response.status_code, None

    # -- the thread --------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="warrantor-webhooks", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                busy = self.run_once() >= self._batch
            except Exception:
                log.exception("webhook dispatch pass failed")
                busy = False
            if not busy:
                self._stop.wait(self._interval)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=15)
            self._thread = None

    def close(self) -> None:
        self.stop()
        if self._client is not None:
            self._client.close()
