"""A Warrantor process killed while it executes an HTTP request (docs/execute.md).

The request may have reached the upstream; nothing can tell. The action must never become
runnable again: it stays ``executing`` (a second execute is 409) until the sweep, after the
deadline has surely passed, makes it ``uncertain``; still never executable again.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from execute_upstream import upstream
from support import bearer, server_process

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "http"
SETTINGS = {
    "WARRANTOR_EXECUTE_ALLOW_PRIVATE": "127.0.0.1/32",
    "WARRANTOR_EXECUTE_DEADLINE_SECONDS": "2",
    "WARRANTOR_SWEEP_INTERVAL_SECONDS": "0.5",
}


def _status(url: str, key: str, action_id: str, wait: float = 0) -> str:
    r = httpx.get(f"{url}/v1/actions/{action_id}", params={"wait": wait}, headers=bearer(key), timeout=wait + 10)
    assert r.status_code == 200, r.text
    return str(r.json()["status"])


def test_a_process_killed_mid_flight_leaves_the_action_executing_then_uncertain(tmp_path: Path) -> None:
    with upstream() as up:
        with server_process(tmp_path, env=SETTINGS) as first:
            keys: dict[str, Any] = json.loads((tmp_path / "demo.json").read_text())
            admin, agent = keys["admin_key"], keys["agent_key"]
            bundle = {"cedar": (EXAMPLE / "http.cedar").read_text(),
                      "schema": (EXAMPLE / "http.cedarschema").read_text(),
                      "config": {"endpoints": {"strict": True, "allow": {"http.request": ["127.0.0.1"]}}}}
            r = httpx.post(f"{first.url}/v1/policies", json=bundle, headers=bearer(admin))
            assert r.status_code in (200, 201), r.text
            r = httpx.post(f"{first.url}/v1/policies/{r.json()['bundle_hash']}/activate",
                           json={"mode": "enforce"}, headers=bearer(admin))
            assert r.status_code == 200, r.text
            url = f"{up.base}/slow"
            r = httpx.post(f"{first.url}/v1/actions", headers=bearer(agent), json={
                "action_type": "http.request", "endpoint_url": url, "payload": {"method": "POST", "url": url}})
            assert r.status_code == 201 and r.json()["status"] == "authorized", r.text
            action_id = r.json()["action_id"]

            def execute() -> None:
                with contextlib.suppress(httpx.HTTPError):  # the server dies under it
                    httpx.post(f"{first.url}/v1/actions/{action_id}/execute", headers=bearer(agent), timeout=30)

            caller = threading.Thread(target=execute, daemon=True)
            caller.start()
            assert up.arrived.wait(20), "the execution never reached the upstream"
            first.kill()  # SIGKILL: the request is out, no answer recorded
            caller.join(30)
        with server_process(tmp_path, env=SETTINGS, demo=False) as second:
            again = httpx.post(f"{second.url}/v1/actions/{action_id}/execute", headers=bearer(agent), timeout=30)
            assert again.status_code == 409 and again.json()["code"] == "INVALID_ACTION_STATE", again.text
            assert again.json()["details"]["status"] in ("executing", "uncertain")
            deadline = time.monotonic() + 60
            while (status := _status(second.url, agent, action_id, wait=5)) == "executing":
                assert time.monotonic() < deadline, "the lost execution never became uncertain"
            assert status == "uncertain"
            detail = httpx.get(f"{second.url}/v1/actions/{action_id}", headers=bearer(admin)).json()
            assert detail["execution"]["error"] == "EXECUTION_LOST"
            assert detail["execution"]["executor"] == "warrantor-http"
            last = httpx.post(f"{second.url}/v1/actions/{action_id}/execute", headers=bearer(agent), timeout=30)
            assert last.status_code == 409 and last.json()["details"]["status"] == "uncertain"
        assert len(up.seen) == 1, "the request was sent more than once"
