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
  ``max_attempts`` (by default about a day: 2 s, 8 s, 32 s, ... capped at an hour). Redirects
  are not followed. A claim is a lease: after a crash mid-send the row is sent again once
  the lease runs out (at-least-once; ``webhook-id`` dedupes).

Faults stay local to their endpoint:

- Each endpoint's claimed deliveries are sent in order by one worker of a small pool, and
  an endpoint still busy is not claimed for again, so an endpoint that hangs (every request
  waits for ``timeout``) holds one worker, never the deliveries of other endpoints or
  tenants.
- After a failure the rest of that endpoint's claimed deliveries are not sent in that
  pass: each is recorded as a failed attempt ("not sent: ...") and waits as long as the
  failed one, so a dead endpoint costs one timeout per retry, not one per delivery.
- When an endpoint answers 2xx again after failing, its deliveries waiting for a retry are
  made due at once: the backlog drains on the next pass instead of each waiting out its
  backoff.

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
from concurrent.futures import ThreadPoolExecutor
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
    "audit.record",  # every state change as one audit record (service/recordkeeping/audit.py): the SIEM stream
)
AUDIT_EVENT = "audit.record"
AUDIT_CACHE_SECONDS = 2.0
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

    def __init__(self, deps: Deps, events: WebhookEvents | None = None) -> None:
        self._d = deps
        self._events = events

    def create(self, principal: Principal, url: str, events: list[str]) -> dict[str, Any]:
        tenant_id = require_role(principal, Role.ADMIN)
        ep = Endpoint(self._d.ids.new("wh"), tenant_id, parse_url(url), parse_events(events), new_secret(),
                      self._d.clock.now())
        def job(repo: Repo) -> None:
            rg.insert_endpoint(repo, ep)
            self._forget(tenant_id)  # in the job: the next event of any batch looks again

        self._d.store.write(job)
        return {**endpoint_view(ep), "secret": ep.secret}

    def _forget(self, tenant_id: str) -> None:
        if self._events is not None:
            self._events.forget(tenant_id)

    def list(self, principal: Principal) -> dict[str, Any]:
        tenant_id = require_role(principal, Role.ADMIN)
        with self._d.store.read() as repo:
            return {"data": [endpoint_view(ep) for ep in rg.list_endpoints(repo, tenant_id)]}

    def delete(self, principal: Principal, endpoint_id: str) -> None:
        tenant_id = require_role(principal, Role.ADMIN)
        now = self._d.clock.now()
        def job(repo: Repo) -> bool:
            self._forget(tenant_id)
            return rg.delete_endpoint(repo, tenant_id, endpoint_id, now)

        if not self._d.store.write(job):
            raise NotFoundError(f"no webhook {endpoint_id!r}", code="WEBHOOK_NOT_FOUND")

    def deliveries(self, principal: Principal, endpoint_id: str, limit: int = 50) -> dict[str, Any]:
        tenant_id = require_role(principal, Role.ADMIN)
        with self._d.store.read() as repo:
            if rg.get_endpoint(repo, tenant_id, endpoint_id) is None:
                raise NotFoundError(f"no webhook {endpoint_id!r}", code="WEBHOOK_NOT_FOUND")
            rows = rg.deliveries_for(repo, tenant_id, endpoint_id, limit)
        return {"webhook_id": endpoint_id, "data": [delivery_view(d, a) for d, a in rows]}


class WebhookEvents:
    """One outbox row per subscribed endpoint, in the caller's transaction.

    ``audit`` (``service/recordkeeping/audit.py``) is the state change as an audit record, delivered as an
    ``audit.record`` event to the endpoints subscribed to it. Whether a tenant has such an
    endpoint is remembered for ``AUDIT_CACHE_SECONDS``, so a change the webhooks never hear
    of (``action.authorized``, the hot path) costs no query: an endpoint registered in this
    process is seen at once (``forget``), one registered by another process within that time.
    """

    def __init__(self, deps: Deps) -> None:
        self._d = deps
        self._audited: dict[str, tuple[float, bool]] = {}
        self._lock = threading.Lock()

    def audit_subscribed(self, repo: Repo, tenant_id: str) -> bool:
        now = time.monotonic()
        with self._lock:
            hit = self._audited.get(tenant_id)
        if hit is not None and hit[0] > now:
            return hit[1]
        subscribed = any(AUDIT_EVENT in ep.events for ep in rg.list_endpoints(repo, tenant_id))
        with self._lock:
            self._audited[tenant_id] = (now + AUDIT_CACHE_SECONDS, subscribed)
        return subscribed

    def forget(self, tenant_id: str) -> None:
        """The tenant's endpoints changed: look again at the next event."""
        with self._lock:
            self._audited.pop(tenant_id, None)

    def emit(self, repo: Repo, tenant_id: str, event_type: str, data: dict[str, Any],
             audit: dict[str, Any] | None = None) -> None:
        wanted = event_type in EVENT_TYPES and event_type != AUDIT_EVENT
        if not wanted and audit is None:
            return
        now = self._d.clock.now()
        bodies = {}
        for ep in rg.list_endpoints(repo, tenant_id):
            for kind, payload in ((event_type, data if wanted else None), (AUDIT_EVENT, audit)):
                if payload is None or kind not in ep.events:
                    continue
                if kind not in bodies:
                    bodies[kind] = json.dumps({"type": kind, "timestamp": isoformat(now), "data": payload},
                                              separators=(",", ":"), sort_keys=True)
                rg.insert_delivery(repo, self._d.ids.new("msg"), tenant_id, ep.id, kind, bodies[kind], now)


class WebhookDispatcher:
    """Delivers the outbox. ``run_once()`` for one pass; ``start()``/``stop()`` for a thread."""

    def __init__(self, deps: Deps, *, max_attempts: int = 30, base_delay: float = 2.0, factor: float = 4.0,
                 max_delay: float = 3600.0, timeout: float = 10.0, lease_seconds: float = 60.0,
                 batch: int = 50, interval: float = 1.0, concurrency: int = 8,
                 transport: httpx.BaseTransport | None = None) -> None:
        self._d = deps
        self.max_attempts, self.base_delay, self.factor, self.max_delay = max_attempts, base_delay, factor, max_delay
        self._lease = timedelta(seconds=lease_seconds)
        self._batch, self._interval, self._concurrency = batch, interval, concurrency
        self._timeout, self._transport = timeout, transport
        self._client: httpx.Client | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._guard = threading.Lock()
        self._busy: set[str] = set()  # endpoints with deliveries in flight in this process
        self._failing: set[str] = set()  # endpoints whose last attempt here failed
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def backoff(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        return float(min(self.max_delay, self.base_delay * self.factor ** (attempt - 1)))

    def run_once(self, *, wait: bool = True) -> int:
        """Claim due deliveries and send them, one worker per endpoint. With ``wait`` (the
        default) return once they are settled; the background thread does not wait, so a
        hanging endpoint never holds up the next pass."""
        now = self._d.clock.now()
        with self._guard:
            busy = set(self._busy)
        claimed = self._d.store.write(
            lambda repo: rg.claim_deliveries(repo, now, now + self._lease, self._batch, busy)
        )
        groups: dict[str, list[tuple[Delivery, Endpoint]]] = {}
        for delivery, endpoint in claimed:
            groups.setdefault(endpoint.id, []).append((delivery, endpoint))
        with self._guard:
            self._busy.update(groups)
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self._concurrency, thread_name_prefix="warrantor-webhook")
            futures = [self._pool.submit(self._deliver_group, group) for group in groups.values()]
        if wait:
            for future in futures:
                future.result()
        return len(claimed)

    def _deliver_group(self, group: list[tuple[Delivery, Endpoint]]) -> None:
        """One endpoint's deliveries, in order; after a failure the rest wait with it."""
        endpoint = group[0][1]
        try:
            for i, (delivery, _) in enumerate(group):
                failed = self._deliver(delivery, endpoint)
                if failed is not None:
                    self._defer(group[i + 1:], failed)
                    return
        except Exception:  # the claims' leases run out and the rows are claimed again
            log.exception("webhook deliveries to %s failed to settle", endpoint.id)
            raise
        finally:
            with self._guard:
                self._busy.discard(endpoint.id)

    def _deliver(self, delivery: Delivery, endpoint: Endpoint) -> tuple[str, datetime, str] | None:
        """Send one delivery and record the attempt; on failure (status, next attempt, error)."""
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
        with self._guard:
            recovered = ok and (delivery.attempts > 1 or endpoint.id in self._failing)
            if ok:
                self._failing.discard(endpoint.id)
            else:
                self._failing.add(endpoint.id)

        def job(repo: Repo) -> None:
            rg.record_attempt(repo, self._d.ids.new("wha"), delivery, status_code, error, started_at, duration_ms)
            rg.finish_delivery(repo, delivery, status=status, status_code=status_code, error=error,
                               next_attempt_at=next_at, now=now)
            if recovered:
                woken = rg.wake_endpoint(repo, endpoint.tenant_id, endpoint.id, now)
                if woken:
                    log.info("webhook endpoint %s answers again; %d waiting deliveries are due now", endpoint.id, woken)

        self._d.store.write(job)
        return None if ok else (status, next_at, error or "failed")

    def _defer(self, rest: list[tuple[Delivery, Endpoint]], failed: tuple[str, datetime, str]) -> None:
        """Settle deliveries not sent because their endpoint just failed: one attempt each,
        due when the failed one is retried (or failed for good once out of attempts)."""
        if not rest:
            return
        _, next_at, error = failed
        now = self._d.clock.now()
        note = f"not sent: the endpoint failed just before ({error})"[:500]

        def job(repo: Repo) -> None:
            for delivery, _ in rest:
                status = "failed" if delivery.attempts >= self.max_attempts else "pending"
                rg.record_attempt(repo, self._d.ids.new("wha"), delivery, None, note, now, 0)
                rg.finish_delivery(repo, delivery, status=status, status_code=None, error=note,
                                   next_attempt_at=max(next_at, now) if status == "pending" else now, now=now)

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
        with self._guard:
            if self._client is None:
                self._client = httpx.Client(
                    timeout=self._timeout, follow_redirects=False, transport=self._transport,
                    headers={"user-agent": "warrantor-webhooks"},
                    limits=httpx.Limits(max_connections=self._concurrency * 2),
                )
            client = self._client
        try:
            response = client.post(endpoint.url, content=body, headers=headers)
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
            with self._guard:
                saturated = len(self._busy) >= self._concurrency
            try:
                busy = not saturated and self.run_once(wait=False) >= self._batch
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
        with self._guard:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        if self._client is not None:
            self._client.close()
