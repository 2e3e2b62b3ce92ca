"""An acknowledged write survives a crash: SIGKILL the server right after a 201."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from support import WIRE, bearer, pg_database, server_process


def _crash_and_check(tmp_path: Path, database_url: str | None) -> None:
    with server_process(tmp_path, database_url) as server:
        keys = json.loads((tmp_path / "demo.json").read_text())
        acknowledged = []
        for i in range(20):
            r = httpx.post(
                f"{server.url}/v1/actions",
                json={"action_type": "wire_transfer", "details": f"#{i}", "payload": WIRE},
                headers=bearer(keys["agent_key"]),
            )
            assert r.status_code == 201
            acknowledged.append(r.json()["action_id"])
        server.kill()
    with server_process(tmp_path, database_url) as server:
        for action_id in acknowledged:
            r = httpx.get(f"{server.url}/v1/actions/{action_id}", headers=bearer(keys["admin_key"]))
            assert r.status_code == 200, action_id
            assert r.json()["status"] == "authorized"
            assert r.json()["warrant"]["log_index"] is not None


def test_sqlite_acknowledged_actions_survive_sigkill(tmp_path: Path) -> None:
    _crash_and_check(tmp_path, None)


@pytest.mark.postgres
def test_postgres_acknowledged_actions_survive_sigkill(tmp_path: Path) -> None:
    with pg_database() as url:
        _crash_and_check(tmp_path, url)
