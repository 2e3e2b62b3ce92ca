"""No budget overshoot under concurrency: two server processes share one PostgreSQL database.

Two real ``warrantor serve`` processes (uvicorn) run on the same data directory (so the same
signing keys) and a fresh PostgreSQL database. Sixty authorizations are fired at once,
split across both, against a tenant budget that allows exactly ``LIMIT``: exactly ``LIMIT``
are authorized and every other one is denied with ``CUMULATIVE_BUDGET_EXCEEDED``, for a
calendar window (one counter row) and a rolling ``1h`` window (bucket rows read under the
counter row's lock). Then a
per-agent rate limit is shared the same way: exactly ``burst`` requests get through.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from support import OPERATOR_KEY, bearer, pg_database, server_process
from warrantor.demo import demo_bundle

LIMIT = 17
REQUESTS = 60
WIRE = {"amount_minor": 1000, "currency": "EUR", "beneficiary": "ACME GmbH"}


@contextmanager
def two_servers(data_dir: Path, database_url: str) -> Iterator[list[str]]:
    """Two servers on one data directory and database, started one after the other: the
    first creates the keys and migrates."""
    with (server_process(data_dir, database_url, demo=False) as first,
          server_process(data_dir, database_url, demo=False) as second):
        yield [first.url, second.url]


def _tenant(url: str, config: dict[str, Any]) -> dict[str, str]:
    op = bearer(OPERATOR_KEY)
    tenant = httpx.post(f"{url}/v1/tenants", json={"name": "budget race"}, headers=op).json()["tenant_id"]
    keys = {
        role: httpx.post(f"{url}/v1/tenants/{tenant}/api-keys", headers=op,
                         json={"role": role, **({"agent_id": "racer"} if role == "agent" else {})}).json()["key"]
        for role in ("admin", "agent")
    }
    admin = bearer(keys["admin"])
    # The demo policy names these groups: someone must hold them before it can be uploaded.
    r = httpx.post(f"{url}/v1/users", headers=admin, json={
        "email": "lead@race.example", "name": "Lead", "roles": ["approver"],
        "groups": ["finance-leads", "comms-reviewers"]})
    assert r.status_code == 201, r.text
    r = httpx.post(f"{url}/v1/policies", json={**demo_bundle(), "config": config}, headers=admin)
    assert r.status_code == 201, r.text
    r = httpx.post(f"{url}/v1/policies/{r.json()['bundle_hash']}/activate", headers=admin)
    assert r.status_code == 200, r.text
    return keys


def _fire(urls: list[str], key: str, n: int) -> list[httpx.Response]:
    def one(i: int) -> httpx.Response:
        body = {"action_type": "wire_transfer", "details": f"race {i}", "payload": WIRE,
                "instruction_hash": "sha256:" + "ab" * 32}
        return httpx.post(f"{urls[i % 2]}/v1/actions", json=body, headers=bearer(key), timeout=60)

    with ThreadPoolExecutor(max_workers=30) as pool:
        return list(pool.map(one, range(n)))


@pytest.mark.postgres
@pytest.mark.parametrize("window", ["calendar_day", "1h"])
def test_two_processes_never_overshoot_a_budget(tmp_path: Path, window: str) -> None:
    config = {"budgets": [{"id": "race", "metric": "count", "scope": "tenant", "window": window,
                           "limit": LIMIT, "on_exceed": "deny"}]}
    with pg_database() as db, two_servers(tmp_path, db) as urls:
        keys = _tenant(urls[0], config)
        responses = _fire(urls, keys["agent"], REQUESTS)
        outcomes = Counter(
            "authorized" if r.status_code == 201 else r.json().get("code", str(r.status_code)) for r in responses
        )
        assert outcomes == {"authorized": LIMIT, "CUMULATIVE_BUDGET_EXCEEDED": REQUESTS - LIMIT}, outcomes
        budgets = httpx.get(f"{urls[1]}/v1/budgets", headers=bearer(keys["admin"])).json()["data"]
        assert budgets[0]["usage"][0]["consumed"] == LIMIT
        # both processes served traffic
        assert {str(r.request.url).split("/v1")[0] for r in responses} == set(urls)


@pytest.mark.postgres
def test_two_processes_share_one_rate_limit_bucket(tmp_path: Path) -> None:
    burst = 9
    config = {"rate_limits": {"per_agent": {"rate_per_second": 0.001, "burst": burst}}}
    with pg_database() as db, two_servers(tmp_path, db) as urls:
        keys = _tenant(urls[0], config)
        responses = _fire(urls, keys["agent"], 40)
        codes = Counter(r.status_code for r in responses)
        assert codes == {201: burst, 429: 40 - burst}, codes
        assert all(int(r.headers["Retry-After"]) >= 1 for r in responses if r.status_code == 429)
