"""The database goes away under a running ``warrantor serve`` and comes back.

While it is gone every request is a 503 problem document with the stable code
``STORAGE_UNAVAILABLE`` (and ``Retry-After``); nothing is half-written (every action row has
its warrant and its log entry, every retried request lands exactly once); once it is back
the same server process answers again and the log keeps integrating, with no restart.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from fault_servers import private_postgres

from support import WIRE, bearer, server_process


class Traffic:
    """Authorizations sent one after another from a thread, each with its own idempotency key."""

    def __init__(self, url: str, key: str) -> None:
        self.url, self.key = url, key
        self.results: list[tuple[str, int, dict[str, Any], httpx.Headers]] = []  # key, status, body, headers
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def body(self, idem: str) -> dict[str, Any]:
        return {"action_type": "wire_transfer", "details": "outage", "payload": WIRE, "idempotency_key": idem}

    def send(self, client: httpx.Client, idem: str) -> tuple[str, int, dict[str, Any], httpx.Headers]:
        r = client.post(f"{self.url}/v1/actions", json=self.body(idem), headers=bearer(self.key))
        return idem, r.status_code, r.json(), r.headers

    def _run(self) -> None:
        with httpx.Client(timeout=10) as client:
            i = 0
            while not self._stop.is_set():
                self.results.append(self.send(client, f"outage-{i}"))
                i += 1
                time.sleep(0.02)

    def count(self, status: int) -> int:
        return sum(1 for r in self.results if r[1] == status)

    def wait_for(self, status: int, n: int, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while self.count(status) < n:
            assert self._thread.is_alive() or not self._stop.is_set(), "traffic stopped"
            assert time.monotonic() < deadline, f"expected {n} answers {status}, got {self.results[-5:]}"
            time.sleep(0.02)

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=15)


@pytest.mark.postgres  # a private instance from the local PostgreSQL binaries, not the shared server
def test_database_outage_is_503_then_recovers_without_restart(tmp_path: Path) -> None:
    with private_postgres() as pg, server_process(tmp_path, pg.url) as server:
        keys = json.loads((tmp_path / "demo.json").read_text())
        with Traffic(server.url, keys["agent_key"]) as traffic:
            traffic.wait_for(201, 3)
            pg.stop()  # fast shutdown: in-flight transactions are aborted
            traffic.wait_for(503, 3)
            ready = httpx.get(f"{server.url}/readyz", timeout=10)
            assert ready.status_code == 503
            pg.start()  # same data, same port; the server is not restarted
            ok_before = traffic.count(201)
            traffic.wait_for(201, ok_before + 3)

        unavailable = [r for r in traffic.results if r[1] != 201]
        assert unavailable, "the outage produced no failed request"
        for _idem, status, body, headers in unavailable:
            assert status == 503, body
            assert headers["content-type"].startswith("application/problem+json")
            assert body["code"] == "STORAGE_UNAVAILABLE", body
            assert headers["retry-after"] == "1"

        admin = bearer(keys["admin_key"])
        with httpx.Client(timeout=10) as client:
            # Every acknowledged action is whole: authorized, with a warrant in the log.
            for _idem, status, body, _ in traffic.results:
                if status == 201:
                    got = client.get(f"{server.url}/v1/actions/{body['action_id']}", headers=admin).json()
                    assert got["status"] == "authorized" and got["warrant"]["log_index"] is not None
            # A refused request retried after the outage lands exactly once.
            for idem, _status, _body, _ in unavailable:
                assert traffic.send(client, idem)[1] == 201
            # The log integrates again: the last action's warrant gets a proof.
            last = traffic.send(client, unavailable[0][0])[2]
            deadline = time.monotonic() + 15
            while (proof := client.get(f"{server.url}/v1/warrants/{last['warrant_id']}/bundle",
                                       headers=admin)).status_code == 409 and time.monotonic() < deadline:
                time.sleep(0.2)
            assert proof.status_code == 200, proof.text

        sent = len(traffic.results)
        assert pg.query("SELECT count(*) FROM actions WHERE idempotency_key LIKE 'outage-%'") == [(sent,)]
        orphans = pg.query(
            "SELECT count(*) FROM actions a WHERE NOT EXISTS (SELECT 1 FROM evidence e"
            " JOIN log_entries l ON l.evidence_id = e.id WHERE e.action_id = a.id AND e.kind = 'warrant')"
        )
        assert orphans == [(0,)]
        (entries, top), (size,) = pg.query("SELECT count(*), max(idx) FROM log_entries")[0], \
            pg.query("SELECT value FROM counters WHERE name = 'log_size'")[0]
        assert entries == size == top + 1  # dense, no gap left by an aborted transaction
