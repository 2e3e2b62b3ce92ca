"""No statement of the authorize path or of the periodic sweeps reads a whole table.

Decision latency must not grow with the number of recorded actions: every statement an
authorization runs (key lookup, idempotency, parent, agent registry, run, rate limits,
budgets, inserts, log sequencing) and every statement the background loops run while it
happens (expiry sweep, integrator, webhooks) must find its rows through an index. SQLite's
``EXPLAIN QUERY PLAN`` says ``SCAN <table>`` for a full table scan; the benchmark with 10^6
actions is ``bench/decision_latency.py``.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from support import make_env
from warrantor.demo import demo_bundle

INSTRUCTIONS = "sha256:" + "ab" * 32
GUARDED = {
    "budgets": [
        {"id": "daily-count", "metric": "count", "scope": "tenant", "window": "calendar_day",
         "limit": 10**12, "on_exceed": "deny"},
        {"id": "hourly-wires", "metric": "payload.amount_minor", "scope": "agent", "window": "1h",
         "limit": 10**15, "on_exceed": "deny"},
    ],
    "rate_limits": {"per_key": {"rate_per_second": 1000, "burst": 1000},
                    "per_agent": {"rate_per_second": 1000, "burst": 1000}},
    "agents": {"strict": True},
}
_CONTROL = re.compile(r"^\s*(BEGIN|COMMIT|ROLLBACK|SAVEPOINT|RELEASE|PRAGMA)\b", re.I)
_FULL_SCAN = re.compile(r"^SCAN (\w+)$")  # "SCAN t USING INDEX ..." reads in index order (LIMIT)


@contextmanager
def recorded_sql() -> Iterator[tuple[list[str], list[bool]]]:
    """Every statement run on SQLite connections opened meanwhile, while ``on[0]`` is True."""
    statements: list[str] = []
    on = [False]

    def hook(dbapi_conn: Any, _record: object) -> None:
        if isinstance(dbapi_conn, sqlite3.Connection):
            dbapi_conn.set_trace_callback(lambda sql: statements.append(sql) if on[0] else None)

    sa.event.listen(sa.engine.Engine, "connect", hook)
    try:
        yield statements, on
    finally:
        sa.event.remove(sa.engine.Engine, "connect", hook)


def full_scans(db: Path, statements: list[str]) -> dict[str, list[str]]:
    con = sqlite3.connect(db)
    try:
        found: dict[str, list[str]] = {}
        for sql in dict.fromkeys(statements):
            if _CONTROL.match(sql):
                continue
            plan = [row[-1] for row in con.execute("EXPLAIN QUERY PLAN " + sql)]
            scans = [line for line in plan if _FULL_SCAN.match(line)]
            if scans:
                found[" ".join(sql.split())[:200]] = scans
        return found
    finally:
        con.close()


def test_authorize_and_the_sweeps_use_indexes_only(tmp_path: Path) -> None:
    with recorded_sql() as (statements, on), make_env(tmp_path) as env:
        admin = env.h("admin")
        r = env.client.post("/v1/agents", headers=admin, json={
            "agent_id": "payments-agent", "version": "1", "model_id": "m", "instruction_hash": INSTRUCTIONS})
        assert r.status_code == 201, r.text
        r = env.client.post("/v1/policies", headers=admin,
                            json={**demo_bundle(), "config": {**demo_bundle().get("config", {}), **GUARDED}})
        assert r.status_code == 201, r.text
        r = env.client.post(f"/v1/policies/{r.json()['bundle_hash']}/activate", headers=admin,
                            json={"mode": "enforce"})
        assert r.status_code == 200, r.text
        run_id = env.client.post("/v1/runs", headers=env.h("agent"), json={}).json()["run_id"]
        guarded = {"run_id": run_id, "agent_version": "1", "instruction_hash": INSTRUCTIONS}
        parent = env.authorize(**guarded).json()
        assert parent["status"] == "authorized", parent
        on[0] = True
        r = env.authorize(**guarded, parent_action_id=parent["action_id"], headers={"Idempotency-Key": "k-1"})
        assert r.status_code == 201 and r.json()["status"] == "authorized", r.text
        env.services.sweeper.sweep()
        env.services.integrator.cycle()
        on[0] = False
        db = env.settings.data_dir / "warrantor.db"
        assert any("INSERT INTO actions" in s for s in statements)  # the write was recorded too
        assert any("warrant_expires_at <" in s for s in statements)  # and the expiry sweep
        assert full_scans(db, statements) == {}
