"""Decision latency after 10^3 and after 10^6 recorded actions, on SQLite or PostgreSQL.

Starts ``warrantor serve --demo`` on a fresh data dir (and, with ``--database-url``, an EMPTY
PostgreSQL database), and puts every read and guard of the authorize path to work: the
demo policy with two budgets, two rate limits and a strict agent registry (a registered
agent version), a run, a parent action and an Idempotency-Key on every request. Then:

1. records actions over HTTP until the store holds ``--small`` (10^3), and measures
   ``--requests`` authorizations one after another on one keep-alive connection: the
   latency a single caller sees, from sending the request to the decision with its warrant;
2. stops the server and seeds actions by bulk SQL (``INSERT ... SELECT`` over a generated
   series, no Python per row) until the store holds ``--large`` (10^6): per action an
   ``actions`` row (real intent and decision, status ``notarized``, unique id and
   Idempotency-Key, created one second apart before the first real one), its warrant in
   ``evidence`` (a short stand-in envelope), its ``log_entries`` row at the next dense
   index, and its two ``budget_ledger`` rows; ``counters.log_size`` grows to match;
3. starts the server again (the integrator signs a checkpoint over the seeded entries),
   waits until they are integrated, warms up, and measures the same way.

The figure is the ratio of the medians (target: at most 1.2); p90 and p99 are reported
too. The machine is shared: compare ratios from one run.

    .venv/bin/python bench/decision_latency.py [--database-url postgresql://.../EMPTY_DB]
        [--small 1000] [--large 1000000] [--requests 1000] [--out bench/results/x.json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _server import ROOT, free_port, start_server, stop_server
from budgets import ON_CONFIG
from harness import machine_facts

from warrantor.demo import demo_bundle

CONFIG = {**ON_CONFIG, "agents": {"strict": True}}  # and a registered agent version
INSTRUCTIONS = "sha256:" + "ab" * 32
STAND_IN = '{"seeded":true}'

# Dialect pieces of the seed; everything else is the same SQL on both.
_SQL = {
    "sqlite": {
        "series": "WITH RECURSIVE s(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM s WHERE i < :n - 1) ",
        "from": "FROM s",
        "pad": "printf('%010d', i)",
        "entry": "randomblob(32)",
        "ts": "strftime('%Y-%m-%d %H:%M:%f', :t0, '-' || (:n - i) || ' seconds') || '000'",
        "hex": "lower(hex(l.entry))",
    },
    "postgresql": {
        "series": "",
        "from": "FROM generate_series(0, :n - 1) AS s(i)",
        "pad": "lpad(i::text, 10, '0')",
        "entry": "sha256(convert_to('seed ' || i, 'UTF8'))",
        "ts": "CAST(:t0 AS timestamptz) - make_interval(secs => :n - i)",
        "hex": "encode(l.entry, 'hex')",
    },
}


def seed(url: str, n: int) -> dict[str, Any]:
    """Record ``n`` more actions by bulk SQL, shaped like the oldest real authorized action."""
    engine = sa.create_engine(url)
    d = _SQL[engine.dialect.name]
    started = time.monotonic()
    try:
        with engine.begin() as conn:
            template = conn.execute(sa.text(
                "SELECT id, created_at FROM actions WHERE warrant_id IS NOT NULL ORDER BY created_at LIMIT 1")).one()
            size = conn.execute(sa.text("SELECT value FROM counters WHERE name = 'log_size'")).scalar_one()
            params = {"n": n, "size": size, "t0": str(template.created_at), "a": template.id}
            conn.execute(sa.text(
                d["series"] + "INSERT INTO log_entries (idx, entry, evidence_id, created_at) "
                f"SELECT :size + i, {d['entry']}, 'wrt_seed' || {d['pad']}, {d['ts']} {d['from']}"), params)
            seeded = "FROM log_entries l WHERE l.idx >= :size"
            conn.execute(sa.text(
                "INSERT INTO evidence (id, tenant_id, kind, action_id, envelope_json, envelope_digest, log_index, "
                "timestamp_token, created_at) "
                f"SELECT l.evidence_id, a.tenant_id, 'warrant', 'act_seed' || substr(l.evidence_id, 9), :stand_in, "
                f"{d['hex']}, l.idx, NULL, l.created_at "
                f"{seeded.replace('FROM log_entries l', 'FROM log_entries l, actions a')} AND a.id = :a"),
                {**params, "stand_in": STAND_IN})
            conn.execute(sa.text(
                "INSERT INTO actions (id, tenant_id, status, action_type, agent_id, run_id, parent_action_id, "
                "parent_json, api_key_id, intent_json, intent_digest, decision_json, idempotency_key, request_hash, "
                "response_status, response_json, warrant_id, warrant_expires_at, receipt_id, execution_json, "
                "legal_hold, created_at, updated_at) "
                "SELECT 'act_seed' || substr(l.evidence_id, 9), a.tenant_id, 'notarized', a.action_type, a.agent_id, "
                "a.run_id, NULL, NULL, a.api_key_id, a.intent_json, a.intent_digest, a.decision_json, "
                "'seed-' || l.idx, a.request_hash, a.response_status, :stand_in, l.evidence_id, l.created_at, NULL, "
                ":stand_in, a.legal_hold, l.created_at, l.created_at "
                f"{seeded.replace('FROM log_entries l', 'FROM log_entries l, actions a')} AND a.id = :a"),
                {**params, "stand_in": STAND_IN})
            ledger = conn.execute(sa.text(
                "INSERT INTO budget_ledger (id, tenant_id, budget_id, scope_key, window_key, metric, action_id, "
                "run_id, amount, state, bucket_start, created_at, updated_at) "
                "SELECT 'bgt_seed' || substr(l.evidence_id, 9) || '_' || b.budget_id, b.tenant_id, b.budget_id, "
                "b.scope_key, b.window_key, b.metric, 'act_seed' || substr(l.evidence_id, 9), b.run_id, b.amount, "
                "b.state, b.bucket_start, l.created_at, l.created_at "
                f"{seeded.replace('FROM log_entries l', 'FROM log_entries l, budget_ledger b')} AND b.action_id = :a"),
                params).rowcount
            conn.execute(sa.text("UPDATE counters SET value = value + :n WHERE name = 'log_size'"), params)
        if engine.dialect.name == "postgresql":
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(sa.text("VACUUM ANALYZE"))  # as autovacuum would, in time
        else:
            with engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        with engine.connect() as conn:
            total = conn.execute(sa.text("SELECT count(*) FROM actions")).scalar_one()
    finally:
        engine.dispose()
    return {"seeded": n, "ledger_rows": ledger, "actions_total": total, "log_size": size + n,
            "seconds": round(time.monotonic() - started, 1)}


class Caller:
    """One agent on one keep-alive connection, authorizing on the guarded path."""

    def __init__(self, base: str, keys: dict[str, str]) -> None:
        self.client = httpx.Client(base_url=base, timeout=60, headers={"Authorization": f"Bearer {keys['agent_key']}"})
        admin = {"Authorization": f"Bearer {keys['admin_key']}"}
        self.client.post("/v1/agents", headers=admin, json={
            "agent_id": "payments-agent", "version": "1", "model_id": "bench-model",
            "instruction_hash": INSTRUCTIONS})  # 409 after a restart: registered already
        r = self.client.post("/v1/policies", headers=admin,
                             json={**demo_bundle(), "config": {**demo_bundle().get("config", {}), **CONFIG}})
        r.raise_for_status()
        self.client.post(f"/v1/policies/{r.json()['bundle_hash']}/activate", headers=admin,
                         json={"mode": "enforce"}).raise_for_status()
        self.run_id = self.client.post("/v1/runs", json={}).raise_for_status().json()["run_id"]
        self.parent_id: str | None = None
        self.parent_id = self.authorize(0)
        self.failures = 0

    def authorize(self, i: int) -> str:
        body = {"action_type": "wire_transfer", "details": f"bench {i}", "instruction_hash": INSTRUCTIONS,
                "agent_version": "1", "run_id": self.run_id, "parent_action_id": self.parent_id,
                "payload": {"amount_minor": 1000 + i % 997, "currency": "EUR", "beneficiary": "ACME GmbH"}}
        r = self.client.post("/v1/actions", json=body, headers={"Idempotency-Key": uuid.uuid4().hex})
        if r.status_code != 201:
            self.failures += 1
            raise RuntimeError(f"authorize answered {r.status_code}: {r.text[:300]}")
        return str(r.json()["action_id"])

    def measure(self, warmup: int, requests: int) -> dict[str, float]:
        for i in range(warmup):
            self.authorize(i)
        took = []
        for i in range(requests):
            t = time.perf_counter()
            self.authorize(i)
            took.append((time.perf_counter() - t) * 1e3)
        took.sort()
        return {"requests": requests, "mean_ms": round(statistics.fmean(took), 3),
                **{f"p{p}_ms": round(took[min(len(took) - 1, int(len(took) * p / 100))], 3) for p in (50, 90, 99)},
                "max_ms": round(took[-1], 3)}

    def close(self) -> None:
        self.client.close()


def count_actions(url: str) -> int:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text("SELECT count(*) FROM actions")).scalar_one())
    finally:
        engine.dispose()


def wait_integrated(base: str, size: int, timeout: float) -> float:
    started = time.monotonic()
    while httpx.get(f"{base}/v1/log/checkpoint?format=json", timeout=60).json()["size"] < size:
        if time.monotonic() - started > timeout:
            raise RuntimeError(f"the seeded log entries were not integrated within {timeout:.0f} s")
        time.sleep(0.5)
    return round(time.monotonic() - started, 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=None, help="an EMPTY PostgreSQL database (default: SQLite)")
    parser.add_argument("--small", type=int, default=10**3)
    parser.add_argument("--large", type=int, default=10**6)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    store = "postgresql" if args.database_url else "sqlite"
    out = args.out or ROOT / "bench" / "results" / f"decision_latency_{store}.json"
    data_dir = Path(tempfile.mkdtemp(prefix="warrantor-decision-"))
    env = {"WARRANTOR_DATABASE_URL": args.database_url} if args.database_url else {}
    url = ("postgresql+psycopg://" + args.database_url.removeprefix("postgresql://") if args.database_url
           else f"sqlite:///{data_dir / 'warrantor.db'}")
    result: dict[str, Any] = {}
    try:
        port = free_port()
        proc = start_server(data_dir, port, env=env)
        try:
            caller = Caller(f"http://127.0.0.1:{port}", json.loads((data_dir / "demo.json").read_text()))
            for i in range(max(0, args.small - count_actions(url))):
                caller.authorize(i)
            small_n = count_actions(url)
            result["small"] = {"recorded_actions": small_n, "latency": caller.measure(args.warmup, args.requests)}
            caller.close()
        finally:
            stop_server(proc)
        seeded = seed(url, args.large - count_actions(url))
        port = free_port()
        proc = start_server(data_dir, port, env=env, ready_timeout=900)
        try:
            base = f"http://127.0.0.1:{port}"
            seeded["integrated_after_s"] = wait_integrated(base, seeded["log_size"], 900)
            caller = Caller(base, json.loads((data_dir / "demo.json").read_text()))
            result["large"] = {"recorded_actions": seeded["actions_total"], "seed": seeded,
                               "latency": caller.measure(args.warmup, args.requests)}
            caller.close()
        finally:
            stop_server(proc)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    small, large = result["small"]["latency"], result["large"]["latency"]
    doc = {
        "benchmark": f"decision latency after 10^3 and 10^6 recorded actions ({store})",
        "command": ".venv/bin/python bench/decision_latency.py "
        + (f"--database-url {args.database_url} " if args.database_url else "")
        + f"--small {args.small} --large {args.large} --requests {args.requests} --warmup {args.warmup}",
        "machine": machine_facts(ROOT),
        "path": "POST /v1/actions, one keep-alive connection, one request at a time; budgets (2), rate limits "
                "(2), strict agent registry, run, parent action and a new Idempotency-Key on every request",
        **result,
        "ratio_large_to_small": {k: round(large[k] / small[k], 3) for k in ("p50_ms", "p90_ms", "p99_ms", "mean_ms")},
        "target": "p50 ratio <= 1.2",
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps({k: doc[k] for k in ("small", "large", "ratio_large_to_small")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
