"""Authorize on PostgreSQL with two server processes against one, measured side by side.

Starts two ``warrantor serve --demo`` servers on two fresh PostgreSQL databases (created
through ``--admin-url`` and dropped afterwards): one with ``--workers 1``, one with
``--workers 2``. Both stay up for the whole run and ``wrk`` drives them in turns, round after
round (the order flips every round), so each round's one-worker and two-worker figures are
taken a few seconds apart: on a shared machine whose background load drifts, the ratio of
the medians is what can be compared between runs, not the absolute rates.

For every measurement it also records, from ``/proc``, the cores used by the server's
processes, by its database's PostgreSQL backends, by wrk and by the whole machine, and from
``pg_stat_activity`` (sampled every 20 ms) how many of the database's backends were waiting
on a lock: the writers of several processes queue on the ``log_size`` row lock while one of
them sequences and commits (``store/sequencing.py``).

    .venv/bin/python bench/postgres_scaling.py [--seconds 10] [--connections 16] [--rounds 3]
        [--admin-url postgresql://postgres@127.0.0.1:5432/postgres] [--out bench/results/x.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _server import AUTHORIZE_LUA, ROOT, free_port, start_server, stop_server
from authorize import median_of, run_wrk
from harness import machine_facts

_TICK = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def _machine_busy() -> float:
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (sum(values) - values[3] - values[4]) / _TICK


def _processes(server_pid: int, database: str) -> dict[int, str]:
    """The server and its worker processes, and the database's PostgreSQL backends."""
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError):
            continue
        pid = int(entry.name)
        if pid == server_pid or parent == server_pid:
            found[pid] = "server"
        elif cmd.startswith("postgres:") and f" {database} " in cmd:
            found[pid] = "postgres"
    return found


class Sampler:
    """CPU by group and lock waits of one database, while ``wrk`` drives one server."""

    def __init__(self, admin_url: str, server_pid: int, database: str) -> None:
        self._admin_url, self._server_pid, self._database = admin_url, server_pid, database
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample_locks, daemon=True)
        self._samples = self._waiting = 0

    def _sample_locks(self) -> None:
        with psycopg.connect(self._admin_url, autocommit=True) as conn:
            while not self._stop.is_set():
                row = conn.execute(
                    "SELECT count(*) FILTER (WHERE wait_event_type = 'Lock') FROM pg_stat_activity "
                    "WHERE datname = %s AND state = 'active'", (self._database,)).fetchone()
                self._samples += 1
                self._waiting += int(row[0]) if row else 0
                self._stop.wait(0.02)

    def _cpu(self, pids: dict[int, str]) -> dict[str, float]:
        out: dict[str, float] = {}
        for pid, group in pids.items():
            try:
                out[group] = out.get(group, 0.0) + _cpu_seconds(pid)
            except OSError:
                continue
        return out

    @contextmanager
    def measuring(self, result: dict[str, Any]) -> Iterator[None]:
        pids = _processes(self._server_pid, self._database)
        cpu0, busy0, children0, t0 = self._cpu(pids), _machine_busy(), os.times(), time.monotonic()
        self._thread.start()
        try:
            yield
        finally:
            self._stop.set()
            self._thread.join()
        wall = time.monotonic() - t0
        cpu1, busy1, children1 = self._cpu(pids), _machine_busy(), os.times()
        wrk = (children1.children_user + children1.children_system
               - children0.children_user - children0.children_system)
        result["cores"] = {
            **{group: round((cpu1.get(group, 0.0) - cpu0.get(group, 0.0)) / wall, 3) for group in cpu1},
            "wrk": round(wrk / wall, 3),
            "machine_busy": round((busy1 - busy0) / wall, 3),
        }
        result["backends_waiting_on_a_lock"] = round(self._waiting / max(self._samples, 1), 3)


@contextmanager
def database(admin_url: str) -> Iterator[tuple[str, str]]:
    name = f"warrantor_scaling_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name, admin_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "postgres_scaling.json")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is required: apt-get install wrk")
    tmp = Path(tempfile.mkdtemp(prefix="warrantor-scaling-"))
    servers: dict[int, tuple[Any, str, str, Path]] = {}
    rounds: dict[int, list[dict[str, Any]]] = {1: [], 2: []}
    try:
        with database(args.admin_url) as (db1, url1), database(args.admin_url) as (db2, url2):
            for workers, (name, url) in ((1, (db1, url1)), (2, (db2, url2))):
                data_dir, port = tmp / f"w{workers}", free_port()
                proc = start_server(data_dir, port, env={"WARRANTOR_DATABASE_URL": url,
                                                         "WARRANTOR_WORKERS": str(workers)})
                script = data_dir / "authorize.lua"
                script.write_text(AUTHORIZE_LUA % json.loads((data_dir / "demo.json").read_text())["agent_key"])
                servers[workers] = (proc, name, f"http://127.0.0.1:{port}", script)
            try:
                for _proc, _name, base, script in servers.values():
                    run_wrk(base, 3, args.connections, script)  # warm-up
                for i in range(args.rounds):
                    for workers in ((1, 2) if i % 2 == 0 else (2, 1)):
                        proc, name, base, script = servers[workers]
                        result: dict[str, Any] = {}
                        with Sampler(args.admin_url, proc.pid, name).measuring(result):
                            result.update(run_wrk(base, args.seconds, args.connections, script))
                        rounds[workers].append(result)
            finally:
                for proc, *_ in servers.values():
                    stop_server(proc)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    medians: dict[int, dict[str, Any]] = {}
    for w in (1, 2):
        figures = median_of([{k: v for k, v in r.items() if isinstance(v, float)} for r in rounds[w]])
        cores = {g: statistics.median(r["cores"].get(g, 0.0) for r in rounds[w]) for g in rounds[w][0]["cores"]}
        used = cores.get("server", 0.0) + cores.get("postgres", 0.0)
        medians[w] = {**{k: round(v, 3) for k, v in figures.items()},
                      "cores": {g: round(c, 3) for g, c in cores.items()},
                      "authorizations_per_core_second": round(figures["rps"] / used, 1) if used else None}
    doc = {
        "benchmark": "authorize over HTTP on PostgreSQL: two server processes against one, side by side",
        "command": f".venv/bin/python bench/postgres_scaling.py --seconds {args.seconds} "
                   f"--connections {args.connections} --rounds {args.rounds}",
        "machine": machine_facts(ROOT),
        "load": {"tool": "wrk -t2", "connections": args.connections, "seconds": args.seconds, "rounds": args.rounds,
                 "order": "1 then 2 workers in even rounds, 2 then 1 in odd ones"},
        "workers_1_median": medians[1],
        "workers_2_median": medians[2],
        "ratio_2_to_1_rps": round(medians[2]["rps"] / medians[1]["rps"], 3),
        "target": "ratio >= 1.7",
        "rounds": {"workers_1": rounds[1], "workers_2": rounds[2]},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps({k: doc[k] for k in ("workers_1_median", "workers_2_median", "ratio_2_to_1_rps")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
