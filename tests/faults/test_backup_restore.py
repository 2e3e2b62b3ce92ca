"""docs/operations.md "Backups and restore", as written for SQLite: an online ``.backup``
of a running server's database plus its key files restores to a server that serves every
acknowledged action, and whose evidence still verifies offline."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from support import bearer, server_process

WIRE = {"amount_minor": 1000, "currency": "EUR", "beneficiary": "ACME GmbH"}


def test_an_online_backup_restores_every_acknowledged_action(tmp_path: Path) -> None:
    if shutil.which("sqlite3") is None:
        if os.environ.get("CI"):
            pytest.fail("the sqlite3 command is missing: apt-get install sqlite3")
        pytest.skip("the sqlite3 command is missing: apt-get install sqlite3")
    live, restored, backup = tmp_path / "live", tmp_path / "restored", tmp_path / "backup.db"
    live.mkdir()
    with server_process(live) as server:
        agent = bearer(json.loads((live / "demo.json").read_text())["agent_key"])
        ids = []
        for i in range(5):
            r = httpx.post(f"{server.url}/v1/actions", headers=agent, timeout=10,
                           json={"action_type": "wire_transfer", "payload": {**WIRE, "amount_minor": 1000 + i}})
            assert r.status_code == 201, r.text
            ids.append(r.json()["action_id"])
        # While the server runs: the documented command, then the key files.
        done = subprocess.run(["sqlite3", str(live / "warrantor.db"), f".backup '{backup}'"],
                              capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        warrant = httpx.get(f"{server.url}/v1/actions/{ids[0]}", headers=agent, timeout=10).json()["warrant"]
    shutil.copytree(live, restored, ignore=shutil.ignore_patterns("warrantor.db*", "server-*.log"))
    shutil.copy(backup, restored / "warrantor.db")

    with server_process(restored) as server:
        for action_id in ids:
            r = httpx.get(f"{server.url}/v1/actions/{action_id}", headers=agent, timeout=10)
            assert r.status_code == 200 and r.json()["status"] == "authorized", r.text
            assert r.json()["integrity"] == "ok", r.json().get("integrity_problems")
        bundle = httpx.get(f"{server.url}/v1/warrants/{warrant['warrant_id']}/bundle", headers=agent, timeout=30)
        assert bundle.status_code == 200, bundle.text
        (tmp_path / "bundle.json").write_text(bundle.text)
        (tmp_path / "trust.json").write_text(httpx.get(f"{server.url}/v1/trust", timeout=10).text)
    verified = subprocess.run(
        [sys.executable, "-m", "warrantor.cli.main", "verify", str(tmp_path / "bundle.json"),
         "--trust", str(tmp_path / "trust.json")], capture_output=True, text=True, timeout=60, check=False)
    assert verified.returncode == 0, verified.stdout + verified.stderr
