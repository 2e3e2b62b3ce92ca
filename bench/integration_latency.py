"""Log integration latency under load: time from sequencing an entry to its signed checkpoint.

Starts ``warrantor serve --demo`` (SQLite, one process) on a free loopback port with a given
``WARRANTOR_INTEGRATE_INTERVAL_MS``, sends ``--requests`` authorizations (allowed wire
transfers, each a warrant and a log entry) from ``--concurrency`` client threads, waits for
the log to catch up, then reports:

- from the database, exactly: for every entry, the creation time of the first checkpoint
  that includes it minus the entry's ``created_at`` (both stamped by the server): p50, p90,
  p99, max;
- from ``/metrics``: the ``warrantor_log_integration_latency_seconds`` histogram (count,
  mean, and the bucket that holds p50/p99), the figure an operator sees;
- the baseline: the configured interval, the latency bound by construction is about one
  interval plus the time to sign, timestamp and commit a checkpoint.

    .venv/bin/python bench/integration_latency.py [--requests 2000] [--concurrency 16] [--intervals 500,100]

Writes bench/results/integration_latency.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from _server import ROOT, free_port, start_server, stop_server

WIRE = {"amount_minor": 1000, "currency": "EUR", "beneficiary": "ACME GmbH"}


def drive(url: str, key: str, requests: int, concurrency: int) -> float:
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as client:
        def one(i: int) -> None:
            body = {"action_type": "wire_transfer", "details": f"bench {i}", "payload": WIRE}
            r = client.post("/v1/actions", json=body)
            if r.status_code != 201:
                raise RuntimeError(r.text)

        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            list(pool.map(one, range(requests)))
        return time.perf_counter() - started


def wait_integrated(url: str, db: Path, timeout: float = 30) -> None:
    con = sqlite3.connect(db)
    try:
        size = con.execute("SELECT value FROM counters WHERE name = 'log_size'").fetchone()[0]
    finally:
        con.close()
    deadline = time.monotonic() + timeout
    while httpx.get(f"{url}/v1/log/checkpoint?format=json").json()["size"] < size:
        if time.monotonic() > deadline:
            raise RuntimeError("the log did not catch up")
        time.sleep(0.05)


def _ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace(" ", "T"))


def exact_latencies(db: Path) -> list[float]:
    """Per entry: first checkpoint containing it minus the entry's created_at (seconds)."""
    con = sqlite3.connect(db)
    try:
        entries = con.execute("SELECT idx, created_at FROM log_entries ORDER BY idx").fetchall()
        checkpoints = con.execute("SELECT size, created_at FROM checkpoints ORDER BY size").fetchall()
    finally:
        con.close()
    out, j = [], 0
    for idx, created in entries:
        while checkpoints[j][0] <= idx:
            j += 1
        out.append((_ts(checkpoints[j][1]) - _ts(created)).total_seconds())
    return out


def histogram(url: str) -> dict[str, Any]:
    text = httpx.get(f"{url}/metrics").text
    name = "warrantor_log_integration_latency_seconds"
    buckets = []
    count = total = 0.0
    for line in text.splitlines():
        if line.startswith(f"{name}_bucket"):
            le = line.split('le="')[1].split('"')[0]
            buckets.append((float(le), float(line.split()[-1])))
        elif line.startswith(f"{name}_count"):
            count = float(line.split()[-1])
        elif line.startswith(f"{name}_sum"):
            total = float(line.split()[-1])

    def bucket_for(q: float) -> float:
        return next(le for le, c in buckets if c >= q * count)

    return {"count": int(count), "mean_s": round(total / count, 4) if count else None,
            "p50_bucket_le_s": bucket_for(0.5), "p99_bucket_le_s": bucket_for(0.99)}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 4)


def run(interval_ms: int, requests: int, concurrency: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        port = free_port()
        proc = start_server(data_dir, port, env={"WARRANTOR_INTEGRATE_INTERVAL_MS": str(interval_ms)})
        url = f"http://127.0.0.1:{port}"
        try:
            key = json.loads((data_dir / "demo.json").read_text())["agent_key"]
            seconds = drive(url, key, requests, concurrency)
            wait_integrated(url, data_dir / "warrantor.db")
            metrics = histogram(url)
            checkpoints = httpx.get(f"{url}/v1/log/checkpoint?format=json").json()["size"]
        finally:
            stop_server(proc)
        latencies = exact_latencies(data_dir / "warrantor.db")
    return {
        "interval_ms": interval_ms,
        "baseline_bound_s": interval_ms / 1000,
        "requests": requests,
        "concurrency": concurrency,
        "authorize_rate_per_s": round(requests / seconds, 1),
        "log_size": checkpoints,
        "exact": {"p50_s": pct(latencies, 0.5), "p90_s": pct(latencies, 0.9), "p99_s": pct(latencies, 0.99),
                  "max_s": round(max(latencies), 4), "mean_s": round(statistics.fmean(latencies), 4)},
        "metrics_histogram": metrics,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--intervals", default="500,100", help="comma-separated integrate intervals in ms")
    args = parser.parse_args()
    results = [run(int(ms), args.requests, args.concurrency) for ms in args.intervals.split(",")]
    doc = {
        "benchmark": "log integration latency under load (entry sequenced -> in a signed, timestamped checkpoint)",
        "command": " ".join(["bench/integration_latency.py", *sys.argv[1:]]),
        "machine": {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count()},
        "results": results,
    }
    out = ROOT / "bench" / "results" / "integration_latency.json"
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps(doc, indent=2))


if __name__ == "__main__":
    main()
