"""Webhooks: endpoints, Standard Webhooks signatures checked by an independent verifier, a
real HTTP receiver on loopback, retries with backoff, the delivery log, isolation, and
claims that never hand one delivery to two senders."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from support import WIRE, Env, bearer
from warrantor.service.recordkeeping.webhooks import WebhookDispatcher
from warrantor.store import Store

BIG = {**WIRE, "amount_minor": 6_000_000}  # held for approval by the demo policy


class Receiver:
    """A loopback HTTP server that records requests and fails the first ``failures``."""

    def __init__(self, failures: int = 0, status: int = 500) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.failures, self.status = failures, status
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                with lock:
                    receiver.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                    failing = receiver.failures > 0
                    receiver.failures -= 1
                self.send_response(receiver.status if failing else 204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return None

        lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def verify(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """An independent Standard Webhooks verifier (spec section "Verifying webhook authenticity")."""
    key = base64.b64decode(secret.split("_", 1)[1])
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    if abs(time.time() - int(headers["webhook-timestamp"])) > 300:
        return False
    return any(
        version == "v1" and hmac.compare_digest(sig, expected)
        for version, _, sig in (part.partition(",") for part in headers["webhook-signature"].split(" "))
    )


def subscribe(env: Env, url: str, events: list[str], key: str | None = None) -> dict[str, Any]:
    # The tests drive their own dispatchers (fast backoff); the app's, if its lifespan
    # started one, must not claim deliveries behind their backs.
    env.services.webhook_dispatcher.stop()
    r = env.client.post("/v1/webhooks", json={"url": url, "events": events},
                        headers=bearer(key) if key else env.h("admin"))
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


def dispatcher(env: Env, **kwargs: Any) -> WebhookDispatcher:
    return WebhookDispatcher(env.services.deps, **({"base_delay": 0.05, "factor": 2.0, "timeout": 5.0} | kwargs))


def drain(d: WebhookDispatcher, until: Any, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not until():
        assert time.monotonic() < deadline, "deliveries did not settle in time"
        d.run_once()
        time.sleep(0.02)


def test_signed_delivery_of_a_pending_approval(env: Env, receiver: Receiver) -> None:
    hook = subscribe(env, receiver.url, ["action.pending_approval", "action.approved"])
    assert hook["webhook_id"].startswith("wh_")
    secret = hook["secret"]
    assert secret.startswith("whsec_") and len(base64.b64decode(secret[6:])) == 32
    held = env.authorize(payload=BIG).json()
    code = env.approval_codes(held["action_id"])[0]
    env.client.post(f"/v1/approvals/{code}/confirm", json={"decision": "approve"})
    d = dispatcher(env)
    drain(d, lambda: len(receiver.requests) >= 2)
    d.close()
    events = []
    for headers, body in receiver.requests:
        assert verify(secret, headers, body), headers
        assert headers["webhook-id"].startswith("msg_")
        assert headers["content-type"] == "application/json"
        assert not verify(secret, headers, body + b" ")  # a changed byte fails
        assert not verify("whsec_" + base64.b64encode(b"x" * 32).decode(), headers, body)
        doc = json.loads(body)
        assert doc["data"]["action_id"] == held["action_id"] and doc["timestamp"]
        events.append(doc["type"])
    assert sorted(events) == ["action.approved", "action.pending_approval"]


def test_only_subscribed_events_are_sent_and_denials_are_action_denied(env: Env, receiver: Receiver) -> None:
    subscribe(env, receiver.url, ["action.denied"])
    env.authorize()  # authorized: no event subscribed
    env.authorize(payload=BIG)  # pending_approval: not subscribed
    denied = env.authorize(payload={**WIRE, "amount_minor": 200_000_000})
    assert denied.status_code == 403
    d = dispatcher(env)
    drain(d, lambda: len(receiver.requests) >= 1)
    time.sleep(0.1)
    assert d.run_once() == 0
    d.close()
    assert len(receiver.requests) == 1
    doc = json.loads(receiver.requests[0][1])
    assert doc["type"] == "action.denied"
    assert doc["data"]["action_id"] == denied.json()["details"]["action_id"]
    assert doc["data"]["reason_code"] == "POLICY_DENIED"


def test_failed_deliveries_are_retried_with_backoff_and_logged(env: Env) -> None:
    flaky = Receiver(failures=2)
    try:
        hook = subscribe(env, flaky.url, ["action.pending_approval"])
        env.authorize(payload=BIG)
        d = dispatcher(env)
        assert d.backoff(1) == pytest.approx(0.05) and d.backoff(2) == pytest.approx(0.1)
        drain(d, lambda: len(flaky.requests) >= 3)
        d.close()
    finally:
        flaky.close()
    ids = {h["webhook-id"] for h, _ in flaky.requests}
    assert len(ids) == 1  # the same message id on every retry
    log = env.client.get(f"/v1/webhooks/{hook['webhook_id']}/deliveries", headers=env.h("admin")).json()
    delivery = log["data"][0]
    assert delivery["event_type"] == "action.pending_approval"
    assert delivery["status"] == "delivered" and delivery["attempts"] == 3 and delivery["delivered_at"]
    assert [a["status_code"] for a in delivery["attempt_log"]] == [500, 500, 204]
    assert [a["attempt"] for a in delivery["attempt_log"]] == [1, 2, 3]
    assert delivery["attempt_log"][0]["error"] and delivery["attempt_log"][0]["started_at"]


def test_retries_stop_after_max_attempts(env: Env) -> None:
    down = Receiver(failures=100, status=503)
    try:
        hook = subscribe(env, down.url, ["action.pending_approval"])
        env.authorize(payload=BIG)
        d = dispatcher(env, max_attempts=3)
        drain(d, lambda: len(down.requests) >= 3)
        time.sleep(0.3)
        assert d.run_once() == 0
        d.close()
    finally:
        down.close()
    assert len(down.requests) == 3
    delivery = env.client.get(f"/v1/webhooks/{hook['webhook_id']}/deliveries", headers=env.h("admin")).json()["data"][0]
    assert delivery["status"] == "failed" and delivery["last_status_code"] == 503


def test_an_unreachable_endpoint_records_the_transport_error(env: Env) -> None:
    gone = Receiver()
    url = gone.url
    gone.close()
    hook = subscribe(env, url, ["action.pending_approval"])
    env.authorize(payload=BIG)
    d = dispatcher(env, max_attempts=1)
    d.run_once()
    d.close()
    delivery = env.client.get(f"/v1/webhooks/{hook['webhook_id']}/deliveries", headers=env.h("admin")).json()["data"][0]
    assert delivery["status"] == "failed" and delivery["last_status_code"] is None
    assert "ConnectError" in delivery["attempt_log"][0]["error"]


def test_the_dispatcher_thread_delivers_in_the_background(env: Env, receiver: Receiver) -> None:
    subscribe(env, receiver.url, ["action.pending_approval"])
    d = dispatcher(env, interval=0.05)
    d.start()
    try:
        env.authorize(payload=BIG)
        deadline = time.monotonic() + 5
        while not receiver.requests and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        d.close()
    assert len(receiver.requests) == 1


def test_manage_endpoints(env: Env, receiver: Receiver) -> None:
    hook = subscribe(env, receiver.url, ["action.approved", "run.halted"])
    listed = env.client.get("/v1/webhooks", headers=env.h("admin")).json()["data"]
    assert listed == [{"webhook_id": hook["webhook_id"], "url": receiver.url,
                       "events": ["action.approved", "run.halted"], "created_at": hook["created_at"]}]
    assert "secret" not in listed[0]
    env.authorize(payload=BIG)
    r = env.client.delete(f"/v1/webhooks/{hook['webhook_id']}", headers=env.h("admin"))
    assert r.status_code == 204
    assert env.client.get("/v1/webhooks", headers=env.h("admin")).json()["data"] == []
    r = env.client.get(f"/v1/webhooks/{hook['webhook_id']}/deliveries", headers=env.h("admin"))
    assert r.status_code == 404 and r.json()["code"] == "WEBHOOK_NOT_FOUND"
    assert env.client.delete(f"/v1/webhooks/{hook['webhook_id']}", headers=env.h("admin")).status_code == 404


@pytest.mark.parametrize(("body", "code"), [
    ({"url": "ftp://example.com/x", "events": ["action.approved"]}, "INVALID_WEBHOOK_URL"),
    ({"url": "file:///etc/passwd", "events": ["action.approved"]}, "INVALID_WEBHOOK_URL"),
    ({"url": "http://", "events": ["action.approved"]}, "INVALID_WEBHOOK_URL"),
    ({"url": "not a url", "events": ["action.approved"]}, "INVALID_WEBHOOK_URL"),
    ({"url": "https://example.com/x", "events": ["action.exploded"]}, "UNKNOWN_EVENT_TYPE"),
    ({"url": "https://example.com/x", "events": []}, "VALIDATION_ERROR"),
    ({"url": "https://example.com/x", "events": ["action.approved"], "secret": "mine"}, "VALIDATION_ERROR"),
])
def test_bad_endpoints_are_422(env: Env, body: dict[str, Any], code: str) -> None:
    r = env.client.post("/v1/webhooks", json=body, headers=env.h("admin"))
    assert r.status_code == 422, r.text
    assert r.json()["code"] == code


def test_only_admins_manage_webhooks(env: Env) -> None:
    for role in ("agent", "app", "auditor"):
        r = env.client.post("/v1/webhooks", json={"url": "https://example.com", "events": ["action.approved"]},
                            headers=env.h(role))
        assert r.status_code == 403 and r.json()["code"] == "FORBIDDEN_ROLE"
        assert env.client.get("/v1/webhooks", headers=env.h(role)).status_code == 403


def test_tenants_see_and_receive_only_their_own(env: Env, receiver: Receiver) -> None:
    hook = subscribe(env, receiver.url, ["action.pending_approval"])
    other = env.new_tenant()
    assert env.client.get("/v1/webhooks", headers=bearer(other["admin"])).json()["data"] == []
    r = env.client.get(f"/v1/webhooks/{hook['webhook_id']}/deliveries", headers=bearer(other["admin"]))
    assert r.status_code == 404
    assert env.client.delete(f"/v1/webhooks/{hook['webhook_id']}", headers=bearer(other["admin"])).status_code == 404
    env.authorize(payload=BIG, headers=bearer(other["agent"]))
    d = dispatcher(env)
    assert d.run_once() == 0
    d.close()
    assert receiver.requests == []


def test_two_senders_on_separate_connections_never_send_one_delivery_twice(store_env: Env,
                                                                          receiver: Receiver) -> None:
    env = store_env
    subscribe(env, receiver.url, ["action.pending_approval"])
    for _ in range(12):
        env.authorize(payload=BIG)
    second_store = Store(env.settings.effective_database_url)
    senders = [dispatcher(env, batch=2),
               WebhookDispatcher(replace(env.services.deps, store=second_store), batch=2, base_delay=0.05)]
    barrier = threading.Barrier(2)

    def run(d: WebhookDispatcher) -> None:
        barrier.wait()
        deadline = time.monotonic() + 20
        while len(receiver.requests) < 12 and time.monotonic() < deadline:
            d.run_once()

    threads = [threading.Thread(target=run, args=(d,)) for d in senders]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for d in senders:
        d.close()
    second_store.close()
    ids = [h["webhook-id"] for h, _ in receiver.requests]
    assert len(ids) == 12 and len(set(ids)) == 12
