"""Webhook targets that go down, hang, and come back.

Actions never wait for webhooks (events are outbox rows written with the change); the
dispatcher retries for longer than an outage of many backoff periods, drains the backlog as
soon as the endpoint answers again, and an endpoint that hangs holds up nobody else.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fault_servers import Child, received

from support import WIRE, Env, bearer
from warrantor.service.recordkeeping.webhooks import WebhookDispatcher

BIG = {**WIRE, "amount_minor": 6_000_000}  # held for approval: one action.pending_approval event


def _eventually(check: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _subscribe(env: Env, url: str, key: str | None = None) -> str:
    r = env.client.post("/v1/webhooks", json={"url": url, "events": ["action.pending_approval"]},
                        headers=bearer(key) if key else env.h("admin"))
    assert r.status_code == 201, r.text
    return str(r.json()["webhook_id"])


def _deliveries(env: Env, hook: str, key: str | None = None) -> list[dict[str, Any]]:
    r = env.client.get(f"/v1/webhooks/{hook}/deliveries", headers=bearer(key) if key else env.h("admin"))
    return list(r.json()["data"])


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[Child]:
    """A receiver process writing what it gets to a file; the test stops and starts it."""
    c = Child("receiver", tmp_path / "received.jsonl")
    c.start()
    yield c
    c.stop()


@pytest.fixture
def quiet(env: Env) -> Env:
    env.services.webhook_dispatcher.stop()  # each test runs its own dispatcher thread
    return env


def _dispatcher(env: Env, **kwargs: Any) -> WebhookDispatcher:
    d = WebhookDispatcher(env.services.deps, **({"interval": 0.05, "timeout": 5.0} | kwargs))
    d.start()
    return d


def test_an_outage_longer_than_many_retries_still_drains(quiet: Env, receiver: Child) -> None:
    env = quiet
    hook = _subscribe(env, receiver.url)
    d = _dispatcher(env, base_delay=0.05, factor=2.0, max_delay=0.2)
    try:
        receiver.stop()
        actions = [env.authorize(payload=BIG) for _ in range(3)]
        assert [r.status_code for r in actions] == [201, 201, 201]  # actions do not wait for webhooks
        # Keep the target down for many retries (five used to be the end of it).
        _eventually(lambda: all(x["attempts"] >= 8 for x in _deliveries(env, hook)), "eight failed attempts each")
        assert {x["status"] for x in _deliveries(env, hook)} == {"pending"}
        receiver.start()
        _eventually(lambda: {x["status"] for x in _deliveries(env, hook)} == {"delivered"}, "the backlog to drain")
    finally:
        d.close()
    got = received(receiver.arg)
    assert sorted(r["body"]["data"]["action_id"] for r in got) == sorted(a.json()["action_id"] for a in actions)


def test_the_backlog_is_due_at_once_when_the_endpoint_answers_again(quiet: Env, receiver: Child) -> None:
    env = quiet
    hook = _subscribe(env, receiver.url)
    d = _dispatcher(env, base_delay=120.0)  # a failed delivery would wait two minutes
    try:
        receiver.stop()
        waiting = [env.authorize(payload=BIG).json()["action_id"] for _ in range(3)]
        _eventually(lambda: all(x["attempts"] == 1 for x in _deliveries(env, hook)), "one failed attempt each")
        receiver.start()
        fresh = env.authorize(payload=BIG).json()["action_id"]  # the first delivery that succeeds again
        _eventually(lambda: len(received(receiver.arg)) == 4, "the waiting deliveries")
    finally:
        d.close()
    assert sorted(r["body"]["data"]["action_id"] for r in received(receiver.arg)) == sorted([*waiting, fresh])


class Hang:
    """Accepts connections and never answers, until closed."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/hooks"
        self.held: list[socket.socket] = []
        self.closed = False
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)

    def close(self) -> None:
        self.closed = True
        self.sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept(); close() alone does not
        self.sock.close()
        self._thread.join(timeout=5)
        for conn in self.held:
            conn.close()


def test_a_hanging_endpoint_does_not_delay_another_tenants_webhooks(quiet: Env, receiver: Child) -> None:
    env = quiet
    hang = Hang()
    other = env.new_tenant()
    _subscribe(env, hang.url)
    _subscribe(env, receiver.url, key=other["admin"])
    d = _dispatcher(env, timeout=60.0)
    try:
        for _ in range(3):
            env.authorize(payload=BIG)
        _eventually(lambda: len(hang.held) == 1, "the hanging endpoint to be called")
        mine = env.client.post("/v1/actions", json={"action_type": "wire_transfer", "details": "x", "payload": BIG},
                               headers=bearer(other["agent"])).json()["action_id"]
        _eventually(lambda: len(received(receiver.arg)) == 1, "the other tenant's webhook")
        assert len(hang.held) == 1 and not hang.closed  # the first request to it still hangs
    finally:
        hang.close()
        d.close()
    assert received(receiver.arg)[0]["body"]["data"]["action_id"] == mine
