"""``warrantor serve --workers N``: several processes on one PostgreSQL behave as one server."""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from support import WIRE, bearer, pg_database, server_process


@pytest.mark.postgres
def test_two_workers_share_idempotency_and_one_dense_log(tmp_path: Path) -> None:
    with pg_database() as url, server_process(tmp_path, url, args=("--workers", "2")) as server:
        keys = json.loads((tmp_path / "demo.json").read_text())
        agent = bearer(keys["agent_key"])

        def authorize(i: int) -> httpx.Response:
            body = {"action_type": "wire_transfer", "details": f"#{i}", "payload": WIRE,
                    "idempotency_key": f"k-{i % 20}"}
            return httpx.post(f"{server.url}/v1/actions", json=body, headers=agent, timeout=30)

        with ThreadPoolExecutor(16) as pool:
            responses = list(pool.map(authorize, range(60)))
        assert all(r.status_code in (201, 409) for r in responses), [r.text for r in responses if r.status_code >= 500]
        winners = {r.json()["action_id"] for r in responses if r.status_code == 201}
        assert len(winners) == 20  # one action per idempotency key, whichever worker answered
        indices = []
        for action_id in winners:
            detail = httpx.get(f"{server.url}/v1/actions/{action_id}", headers=bearer(keys["admin_key"])).json()
            indices.append(detail["warrant"]["log_index"])
        assert sorted(indices) == list(range(min(indices), min(indices) + 20))  # unique and dense


def test_several_workers_on_sqlite_are_refused_with_a_reason(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "warrantor.cli.main", "serve", "--data-dir", str(tmp_path), "--workers", "2"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 2
    assert "PostgreSQL" in result.stderr
