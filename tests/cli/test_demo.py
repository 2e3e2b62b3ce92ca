"""``warrantor demo``: the scripted agent, end to end, on its own server and on a given one.

Each run is a real ``warrantor`` process; the story's receipts are verified in it offline.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from support import OPERATOR_KEY, bearer, server_process

STEPS = ["allow", "approval", "confirmation", "denial", "budget", "diverged"]
CHECKS = ["signature", "key_validity", "subject_digest", "inclusion", "checkpoint_signature", "timestamp"]


def _demo(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "warrantor.cli.main", "demo", *args], capture_output=True,
                          text=True, timeout=timeout, check=False)


def test_the_demo_runs_every_step_on_its_own_server_and_stops_it() -> None:
    done = _demo("--json")
    assert done.returncode == 0, done.stdout + done.stderr
    story = json.loads(done.stdout)
    assert story["ok"] is True and story["started_server"] is True
    assert [s["step"] for s in story["steps"]] == STEPS
    final = {s["step"]: s["receipt_status"] for s in story["steps"]}
    assert final == {"allow": "notarized", "approval": "notarized", "confirmation": "notarized",
                     "denial": "denied", "budget": "denied", "diverged": "diverged"}
    decisions = {s["step"]: s["decision"] for s in story["steps"]}
    assert decisions["approval"]["rules"] == ["wire-approval-50k"]
    assert decisions["confirmation"]["reason"] == "USER_CONFIRMATION_REQUIRED"
    assert (decisions["denial"]["code"], decisions["denial"]["rules"]) == ("POLICY_DENIED", ["wire-cap-1m"])
    assert decisions["budget"]["code"] == "BUDGET_EXHAUSTED"
    for step in story["steps"]:
        assert step["receipt_id"].startswith("rcpt_") and step["problems"] == []
        assert step["verification"]["ok"] is True
        assert [c["name"] for c in step["verification"]["checks"]] == CHECKS
    approval = next(s for s in story["steps"] if s["step"] == "approval")
    assert any(line.startswith("an approver approves:") and "POST /v1/sessions" in line for line in approval["story"])
    # the server it started is gone: its process and its port
    with pytest.raises(ProcessLookupError):
        os.kill(story["server_pid"], 0)
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{story['server']}/readyz", timeout=2)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    data_dir = tmp_path_factory.mktemp("demo-server")
    with server_process(data_dir, env={"WARRANTOR_INTEGRATE_INTERVAL_MS": "100"}) as handle:
        yield {"url": handle.url, **json.loads((data_dir / "demo.json").read_text())}


def _pending(server: dict[str, Any]) -> set[str]:
    r = httpx.get(f"{server['url']}/v1/actions", params={"status": "pending_approval", "per_page": 100},
                  headers=bearer(server["admin_key"]))
    assert r.status_code == 200, r.text
    return {a["action_id"] for a in r.json()["data"]}


def _approve_as_console_user(server: dict[str, Any], action_id: str) -> None:
    with httpx.Client(base_url=server["url"]) as human:
        r = human.post("/v1/sessions", json={"email": server["console_email"], "password": server["console_password"]})
        assert r.status_code == 201, r.text
        r = human.post(f"/v1/actions/{action_id}/approve", json={"reason": "looked at it"},
                       headers={"X-CSRF-Token": r.json()["csrf_token"]})
        assert r.status_code == 200, r.text


def _demo_keys(server: dict[str, Any], admin_key: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{server['url']}/v1/api-keys", headers=bearer(admin_key))
    return [k for k in r.json()["data"] if k["label"] == "warrantor demo"]


def test_on_a_given_server_a_human_approves_and_the_tenant_is_left_as_it_was(server: dict[str, Any],
                                                                             tmp_path: Path) -> None:
    before = _pending(server)
    out = tmp_path / "out.txt"
    with open(out, "w") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "warrantor.cli.main", "demo", "--server", server["url"],
                                 "--api-key", server["admin_key"], "--approval-timeout", "60"],
                                stdout=fh, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (held := _pending(server) - before):
            assert proc.poll() is None and time.monotonic() < deadline, out.read_text()
            time.sleep(0.2)
        _approve_as_console_user(server, held.pop())
        assert proc.wait(timeout=60) == 0, out.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = out.read_text()
    assert "6 of 6 steps behaved as expected, every receipt verified offline." in text
    assert f"an approver approves: a human in finance-leads, in the console at {server['url']}/console/actions/" in text
    assert text.count("VERIFIED (signature, key_validity, subject_digest, inclusion") == 6
    # the bundle enforced before is enforced again; the demo's keys are revoked
    listed = httpx.get(f"{server['url']}/v1/policies", headers=bearer(server["admin_key"])).json()["data"]
    assert {b["bundle_hash"] for b in listed if b["active_mode"] == "enforce"} == {server["bundle_hash"]}
    keys = _demo_keys(server, server["admin_key"])
    assert len(keys) == 2 and all(k["revoked_at"] for k in keys)


def test_a_step_that_does_not_behave_fails_the_demo(server: dict[str, Any]) -> None:
    done = _demo("--server", server["url"], "--api-key", server["admin_key"], "--approval-timeout", "2", "--json")
    assert done.returncode == 1, done.stdout + done.stderr
    story = json.loads(done.stdout)
    assert story["ok"] is False
    results = {s["step"]: s["ok"] for s in story["steps"]}
    assert results == {**dict.fromkeys(STEPS, True), "approval": False}
    approval = next(s for s in story["steps"] if s["step"] == "approval")
    assert approval["problems"] == ["status after the approval: expected approved, got pending_approval"]


def test_a_tenant_without_the_approvers_is_a_clear_failure_and_leaves_no_key(server: dict[str, Any]) -> None:
    op = bearer(OPERATOR_KEY)
    tenant = httpx.post(f"{server['url']}/v1/tenants", json={"name": "Empty"}, headers=op).json()["tenant_id"]
    admin = httpx.post(f"{server['url']}/v1/tenants/{tenant}/api-keys", json={"role": "admin"},
                       headers=op).json()["key"]
    done = _demo("--server", server["url"], "--api-key", admin, "--json")
    assert done.returncode == 1
    result = json.loads(done.stdout)
    assert result["ok"] is False and "APPROVER_UNKNOWN" in result["error"]
    keys = _demo_keys(server, admin)
    assert len(keys) == 2 and all(k["revoked_at"] for k in keys)


def test_usage_errors() -> None:
    done = _demo("--server", "http://127.0.0.1:9", "--json")
    assert done.returncode == 2 and "--server and --api-key go together" in json.loads(done.stdout)["error"]
