"""Decision latency after 10^3 and after 10^6 recorded actions, on SQLite and PostgreSQL.

Puts every read and guard of the authorize path to work: the demo policy with two budgets,
two rate limits and a strict agent registry (a registered agent version), a run, a parent
action and a new Idempotency-Key on every request. Then:

1. starts ``warrantor serve --demo`` on a fresh data dir (for PostgreSQL, on a fresh database
   created through ``--admin-url`` and dropped afterwards), records actions over
   HTTP until the store holds ``--small`` (10^3), and stops it;
2. copies that deployment (the data dir; on PostgreSQL ``CREATE DATABASE ... TEMPLATE``) and
   seeds the copy by bulk SQL (``INSERT ... SELECT`` over a generated series, no Python per
   row) until it holds ``--large`` (10^6): per action an ``actions`` row (real intent and
   decision, status ``notarized``, unique id and Idempotency-Key, one second apart before the
   first real one), its warrant in ``evidence`` (a short stand-in envelope), its
   ``log_entries`` row at the next dense index and its two ``budget_ledger`` rows;
   ``counters.log_size`` grows to match;
3. starts both deployments side by side (the large one signs a checkpoint over the seeded
   entries first) and measures them in turns, ``--blocks`` blocks each, the order flipping
   every block: one keep-alive connection, one request at a time, the time from sending an
   authorization to its decision with the warrant. Interleaving keeps the machine's drifting
   background load out of the ratio.

The figure is the ratio of the medians (target: at most 1.2); p90 and p99 are reported too.
The large deployment's background work (expiry sweep, log scrub) shares the cores with the
small one and slows both; ``tests/contract/test_query_plans.py`` keeps table scans out of it.

    .venv/bin/python bench/decision_latency.py [--stores sqlite,postgresql] [--small 1000]
        [--large 1000000] [--requests 1000] [--blocks 5] [--out bench/results/decision_latency.json]
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

    def timed(self, requests: int) -> list[float]:
        """Milliseconds per authorization, one after another."""
        took = []
        for i in range(requests):
            t = time.perf_counter()
            self.authorize(i)
            took.append((time.perf_counter() - t) * 1e3)
        return took

    def close(self) -> None:
        self.client.close()


def summary(took: list[float]) -> dict[str, float]:
    took = sorted(took)
    return {"requests": len(took), "mean_ms": round(statistics.fmean(took), 3),
            **{f"p{p}_ms": round(took[min(len(took) - 1, int(len(took) * p / 100))], 3) for p in (50, 90, 99)},
            "max_ms": round(took[-1], 3)}


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


class Deployment:
    """A data dir and its database (SQLite inside the dir, or a PostgreSQL database)."""

    def __init__(self, data_dir: Path, admin_url: str | None, database: str | None) -> None:
        self.data_dir, self.admin_url, self.database = data_dir, admin_url, database
        if admin_url is not None and database is not None:
            database_url = admin_url.rsplit("/", 1)[0] + f"/{database}"
            self.url = "postgresql+psycopg://" + database_url.removeprefix("postgresql://")
            self.env = {"WARRANTOR_DATABASE_URL": database_url}
        else:
            self.url, self.env = f"sqlite:///{data_dir / 'warrantor.db'}", {}

    def _admin(self, sql: str) -> None:
        assert self.admin_url is not None
        engine = sa.create_engine("postgresql+psycopg://" + self.admin_url.removeprefix("postgresql://"),
                                  isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                conn.exec_driver_sql(sql)
        finally:
            engine.dispose()

    @staticmethod
    def create(data_dir: Path, admin_url: str | None) -> Deployment:
        database = f"warrantor_decision_{uuid.uuid4().hex[:10]}" if admin_url else None
        deployment = Deployment(data_dir, admin_url, database)
        if database is not None:
            deployment._admin(f'CREATE DATABASE "{database}"')
        return deployment

    def copy(self, data_dir: Path) -> Deployment:
        """The same deployment under another data dir (and database); the server must be stopped."""
        shutil.copytree(self.data_dir, data_dir)
        database = f"{self.database}_copy" if self.database else None
        other = Deployment(data_dir, self.admin_url, database)
        if database is not None:
            self._admin(f'CREATE DATABASE "{database}" TEMPLATE "{self.database}"')
        return other

    def start(self) -> tuple[Any, str]:
        port = free_port()
        return start_server(self.data_dir, port, env=self.env, ready_timeout=900), f"http://127.0.0.1:{port}"

    def keys(self) -> dict[str, str]:
        keys: dict[str, str] = json.loads((self.data_dir / "demo.json").read_text())
        return keys

    def drop(self) -> None:
        if self.database is not None:
            self._admin(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')


def measure(store: str, args: argparse.Namespace) -> dict[str, Any]:
    """One store: the small deployment, its seeded copy, both measured in alternating blocks."""
    tmp = Path(tempfile.mkdtemp(prefix="warrantor-decision-"))
    deployments: list[Deployment] = []
    took: dict[str, list[float]] = {"small": [], "large": []}
    try:
        small = Deployment.create(tmp / "small", args.admin_url if store == "postgresql" else None)
        deployments.append(small)
        proc, base = small.start()
        try:
            caller = Caller(base, small.keys())
            for i in range(max(0, args.small - count_actions(small.url))):
                caller.authorize(i)
            caller.close()
        finally:
            stop_server(proc)
        large = small.copy(tmp / "large")
        deployments.append(large)
        seeded = seed(large.url, args.large - count_actions(large.url))
        recorded = {"small": count_actions(small.url), "large": seeded["actions_total"]}
        servers = {"small": small.start(), "large": large.start()}
        try:
            seeded["integrated_after_s"] = wait_integrated(servers["large"][1], seeded["log_size"], 900)
            callers = {"small": Caller(servers["small"][1], small.keys()),
                       "large": Caller(servers["large"][1], large.keys())}
            for caller in callers.values():
                caller.timed(args.warmup)
            per_block = max(1, args.requests // args.blocks)
            for block in range(args.blocks):
                for name in (("small", "large") if block % 2 == 0 else ("large", "small")):
                    took[name] += callers[name].timed(per_block)
            for caller in callers.values():
                caller.close()
        finally:
            for proc, _base in servers.values():
                stop_server(proc)
    finally:
        for d in deployments:
            d.drop()
        shutil.rmtree(tmp, ignore_errors=True)
    latency = {name: summary(values) for name, values in took.items()}
    return {
        "small": {"recorded_actions": recorded["small"], "latency": latency["small"]},
        "large": {"recorded_actions": recorded["large"], "seed": seeded, "latency": latency["large"]},
        "ratio_large_to_small": {k: round(latency["large"][k] / latency["small"][k], 3)
                                 for k in ("p50_ms", "p90_ms", "p99_ms", "mean_ms")},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stores", default="sqlite,postgresql", help="sqlite, postgresql or both")
    parser.add_argument("--admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres",
                        help="PostgreSQL to create (and drop) the fresh databases in")
    parser.add_argument("--small", type=int, default=10**3)
    parser.add_argument("--large", type=int, default=10**6)
    parser.add_argument("--requests", type=int, default=1000, help="measured authorizations per deployment")
    parser.add_argument("--blocks", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "decision_latency.json")
    args = parser.parse_args()
    stores = [s for s in args.stores.split(",") if s]
    if not set(stores) <= {"sqlite", "postgresql"}:
        raise SystemExit(f"expected --stores among sqlite,postgresql, got {args.stores!r}")
    results = {store: measure(store, args) for store in stores}
    doc = {
        "benchmark": "decision latency after 10^3 and after 10^6 recorded actions",
        "command": f".venv/bin/python bench/decision_latency.py --stores {','.join(stores)} --small {args.small} "
                   f"--large {args.large} --requests {args.requests} --blocks {args.blocks} --warmup {args.warmup}",
        "machine": machine_facts(ROOT),
        "path": "POST /v1/actions, one keep-alive connection, one request at a time; budgets (2), rate limits "
                "(2), strict agent registry, run, parent action and a new Idempotency-Key on every request; "
                "the two deployments measured in alternating blocks",
        "target": "p50 ratio <= 1.2",
        **results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps({s: {k: results[s][k] for k in ("small", "large", "ratio_large_to_small")} for s in stores},
                     indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
