"""Authorize throughput with budgets and rate limits on vs off, in the same run.

Starts one ``warrantor serve`` (one uvicorn worker, SQLite WAL, synchronous=FULL) on a free
loopback port, creates a tenant through the operator key, and uploads two bundles that
differ only in their config:

- off: the demo payments bundle (no budgets, no rate limits);
- on: the same plus two budgets (``count`` per tenant per calendar day, and
  ``payload.amount_minor`` per agent over a rolling 1 h window) and both rate limits
  (per key and per agent), with limits high enough that nothing is refused, so the figure
  is the cost of the row locks, ledger rows and bucket updates on the allowed path.

Rounds alternate off/on (activating the bundle before each), driven by ``wrk`` with the
same Lua script; the JSON reports median throughput and latency per mode and the on/off
throughput ratio.

    .venv/bin/python bench/budgets.py [--seconds 8] [--connections 16] [--rounds 3]

wrk and the server share the machine's two cores; compare the ratio, not the absolutes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _server import AUTHORIZE_LUA, OPERATOR, ROOT, free_port, start_server, stop_server
from authorize import parse_wrk

from warrantor.demo import demo_bundle

ON_CONFIG = {
    "budgets": [
        {"id": "daily-count", "metric": "count", "scope": "tenant", "window": "calendar_day",
         "limit": 10**12, "on_exceed": "deny"},
        {"id": "hourly-wires", "metric": "payload.amount_minor", "scope": "agent", "window": "1h",
         "limit": 10**15, "on_exceed": "deny"},
    ],
    "rate_limits": {"per_key": {"rate_per_second": 100000, "burst": 100000},
                    "per_agent": {"rate_per_second": 100000, "burst": 100000}},
}
def setup(base: str) -> tuple[str, dict[str, str]]:
    """A tenant; returns the agent key and the bundle hash per mode."""
    op = {"Authorization": f"Bearer {OPERATOR}"}
    tenant = httpx.post(f"{base}/v1/tenants", json={"name": "bench"}, headers=op).json()["tenant_id"]

    def key(role: str, **extra: Any) -> str:
        r = httpx.post(f"{base}/v1/tenants/{tenant}/api-keys", json={"role": role, **extra}, headers=op)
        return str(r.json()["key"])

    admin = {"Authorization": f"Bearer {key('admin')}"}
    # The demo policy names these groups: someone must hold them before it can be uploaded.
    httpx.post(f"{base}/v1/users", headers=admin, json={
        "email": "lead@bench.example", "name": "Lead", "roles": ["approver"],
        "groups": ["finance-leads", "comms-reviewers"]}).raise_for_status()
    hashes = {}
    for mode, config in (("off", demo_bundle()["config"]), ("on", ON_CONFIG)):
        r = httpx.post(f"{base}/v1/policies", json={**demo_bundle(), "config": config}, headers=admin)
        r.raise_for_status()
        hashes[mode] = r.json()["bundle_hash"]
    hashes["admin"] = admin["Authorization"]
    return key("agent", agent_id="bench-agent"), hashes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "budgets.json")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is required: apt-get install wrk")
    data_dir = Path(tempfile.mkdtemp(prefix="warrantor-bench-budgets-"))
    port = free_port()
    proc = start_server(data_dir, port, demo=False)
    base = f"http://127.0.0.1:{port}"
    runs: dict[str, list[dict[str, float]]] = {"off": [], "on": []}
    try:
        agent_key, hashes = setup(base)
        script = data_dir / "authorize.lua"
        script.write_text(AUTHORIZE_LUA % agent_key)
        admin = {"Authorization": hashes["admin"]}
        for _ in range(args.rounds):
            for mode in ("off", "on"):
                httpx.post(f"{base}/v1/policies/{hashes[mode]}/activate", headers=admin).raise_for_status()
                cmd = ["wrk", "-t2", f"-c{args.connections}", f"-d{args.seconds}s", "--latency",
                       "-s", str(script), base]
                out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
                runs[mode].append(parse_wrk(out))
                print(mode, runs[mode][-1], flush=True)
        budgets = httpx.get(f"{base}/v1/budgets", headers=admin).json()
    finally:
        stop_server(proc)
    medians = {m: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for m, rs in runs.items()}
    result = {
        "benchmark": "authorize throughput, budgets + rate limits on vs off",
        "command": f".venv/bin/python bench/budgets.py --seconds {args.seconds} "
                   f"--connections {args.connections} --rounds {args.rounds}",
        "machine": {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count()},
        "config_on": ON_CONFIG,
        "median": medians,
        "ratio_on_off_rps": round(medians["on"]["rps"] / medians["off"]["rps"], 3),
        "rounds": runs,
        "budgets_after": budgets,
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({"median": medians, "ratio_on_off_rps": result["ratio_on_off_rps"]}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
