"""Authorize throughput and latency over HTTP on SQLite, against a baseline in the same run.

Starts ``warrantor serve --demo`` (one uvicorn worker, SQLite WAL, synchronous=FULL) on a
free loopback port, then drives it with ``wrk`` (Debian package) from this machine:

- baseline: ``GET /healthz`` (the HTTP stack alone, same server, same connections);
- authorize: ``POST /v1/actions`` for an allowed wire transfer: parse, Cedar decision,
  DSSE warrant signature, action + evidence + log entry committed through group commit.

Each scenario runs ``--rounds`` times; the JSON reports medians of throughput and latency
percentiles, the ratio authorize/baseline, and the group-commit batch size observed.

    .venv/bin/python bench/authorize.py [--seconds 10] [--connections 16] [--rounds 3]

Note: wrk and the server share the machine's two cores, so absolute numbers are lower
than on a dedicated server; the ratio to the baseline is the figure to compare.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
from _server import AUTHORIZE_LUA, ROOT, free_port, start_server, stop_server

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def parse_wrk(out: str) -> dict[str, float]:
    result: dict[str, float] = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}  # type: ignore[union-attr]
    for pct, value, unit in re.findall(r"^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s)\s*$", out, re.M):
        result[f"p{pct}_ms"] = float(value) * _UNITS[unit]
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    result["non_2xx"] = float(errors.group(1)) if errors else 0.0
    return result


def run_wrk(url: str, seconds: int, connections: int, script: Path | None) -> dict[str, float]:
    cmd = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency"]
    if script is not None:
        cmd += ["-s", str(script)]
    out = subprocess.run([*cmd, url], check=True, capture_output=True, text=True).stdout
    return parse_wrk(out)


def median_of(runs: list[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def group_commit_stats(base: str) -> dict[str, float]:
    text = httpx.get(f"{base}/metrics").text
    batches = float(re.search(r"^warrantor_store_write_batches_total ([\d.e+]+)$", text, re.M).group(1))  # type: ignore[union-attr]
    jobs = float(re.search(r"^warrantor_store_write_jobs_total ([\d.e+]+)$", text, re.M).group(1))  # type: ignore[union-attr]
    return {"batches": batches, "jobs": jobs, "jobs_per_batch": jobs / batches if batches else 0.0}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "authorize.json")
    parser.add_argument("--database-url", default=None, help="an EMPTY PostgreSQL database (default: SQLite)")
    parser.add_argument("--workers", type=int, default=1, help="server processes (more than one needs PostgreSQL)")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is required: apt-get install wrk")
    data_dir = Path(tempfile.mkdtemp(prefix="warrantor-bench-"))
    port = free_port()
    env = {"WARRANTOR_WORKERS": str(args.workers)}
    if args.database_url:
        env["WARRANTOR_DATABASE_URL"] = args.database_url
    proc = start_server(data_dir, port, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        keys = json.loads((data_dir / "demo.json").read_text())
        script = data_dir / "authorize.lua"
        script.write_text(AUTHORIZE_LUA % keys["agent_key"])
        run_wrk(f"{base}/healthz", 2, args.connections, None)  # warm-up
        run_wrk(base, 2, args.connections, script)
        baseline, authorize = [], []
        for _ in range(args.rounds):
            baseline.append(run_wrk(f"{base}/healthz", args.seconds, args.connections, None))
            authorize.append(run_wrk(base, args.seconds, args.connections, script))
        gc = group_commit_stats(base)
    finally:
        stop_server(proc)
        shutil.rmtree(data_dir, ignore_errors=True)
    b, a = median_of(baseline), median_of(authorize)
    result = {
        "benchmark": "authorize over HTTP: " + (
            f"PostgreSQL, {args.workers} worker(s)" if args.database_url
            else "SQLite WAL (synchronous=FULL), one uvicorn worker"),
        "command": f".venv/bin/python bench/authorize.py --seconds {args.seconds} "
        + (f"--database-url {args.database_url} --workers {args.workers} " if args.database_url else "")
        + f"--out {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out} "
        f"--connections {args.connections} --rounds {args.rounds}",
        "machine": {"nproc": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "load": {"tool": "wrk -t2", "connections": args.connections, "seconds": args.seconds, "rounds": args.rounds},
        "baseline_healthz_median": b,
        "authorize_median": a,
        "ratio_authorize_to_baseline_rps": a["rps"] / b["rps"],
        "group_commit": gc,
        "rounds": {"baseline": baseline, "authorize": authorize},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("baseline_healthz_median", "authorize_median",
                                              "ratio_authorize_to_baseline_rps", "group_commit")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
