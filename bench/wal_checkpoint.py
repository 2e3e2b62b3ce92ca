"""Same-run comparison: open-loop authorize latency with SQLite's automatic WAL checkpoint
(inside the committing write) against the background checkpointer (``store/db.py``).

For each round and each tree (``--before`` is a checkout of the commit before the change,
made with ``git worktree add``), a fresh ``warrantor serve --demo`` is driven at saturation
by wrk for 10 s (so the WAL is large, as after a burst), then at a fixed offered rate by the
open-loop driver (``bench/openloop.py``) for ``--seconds``. Trees alternate within a round so
that the machine's background load falls on both.

Run: ``git worktree add /tmp/before <commit>`` then
``.venv/bin/python bench/wal_checkpoint.py --before /tmp/before`` (writes
bench/results/wal_checkpoint.json).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _server import AUTHORIZE_LUA, ROOT, free_port, start_server, stop_server
from harness import machine_facts
from openloop import HttpConnection, open_loop, summarize
from run import AUTHORIZE_BODY, agent_key, post_builder, wrk


def one(tree: Path, rate: float, seconds: float, tmp: Path) -> dict[str, Any]:
    port = free_port()
    data = tmp / f"{tree.name}-{port}"
    env = {"PYTHONPATH": str(tree / "src")}
    proc = start_server(data, port, env=env)
    try:
        key = agent_key(data)
        script = tmp / "authorize.lua"
        script.write_text(AUTHORIZE_LUA % key)
        burst = wrk(f"http://127.0.0.1:{port}", 10, 64, script)[0]
        build = post_builder(port, AUTHORIZE_BODY, {"Authorization": f"Bearer {key}"})

        async def go() -> dict[str, Any]:
            samples = await open_loop(lambda: HttpConnection.open("127.0.0.1", port, build), rate=rate,
                                      duration=seconds, connections=32, timeout=seconds + 60)
            out = summarize(samples, rate)
            out["requests_over_50ms"] = sum(1 for s in samples if s.latency > 0.05)
            return out

        import uvloop

        result = uvloop.run(go())
        result["burst_rps"] = burst["rps"]
        return result
    finally:
        stop_server(proc)


def _commit(tree: Path) -> str:
    import subprocess

    return subprocess.run(["git", "-C", str(tree), "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=False).stdout.strip()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True, help="a checkout of the commit before the change")
    parser.add_argument("--after", type=Path, default=ROOT, help="a checkout with the change (default: this tree)")
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "wal_checkpoint.json")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-wal-"))
    trees = {"before": args.before.resolve(), "after": args.after.resolve()}
    runs: dict[str, list[dict[str, Any]]] = {"before": [], "after": []}
    for i in range(args.rounds):
        order = ["before", "after"] if i % 2 == 0 else ["after", "before"]
        for name in order:
            r = one(trees[name], args.rate, args.seconds, tmp)
            runs[name].append(r)
            print(f"[bench] round {i + 1} {name}: p50 {r['latency_ms']['p50']} ms, p99 {r['latency_ms']['p99']} ms, "
                  f"max {r['latency_ms']['max']} ms, >50 ms {r['requests_over_50ms']}", file=sys.stderr)
    summary = {name: {"p99_ms_median": statistics.median(r["latency_ms"]["p99"] for r in rs),
                      "p50_ms_median": statistics.median(r["latency_ms"]["p50"] for r in rs),
                      "max_ms_median": statistics.median(r["latency_ms"]["max"] for r in rs)}
               for name, rs in runs.items()}
    out = {"benchmark": "wal_checkpoint", "finished": datetime.now(UTC).isoformat(timespec="seconds"),
           "trees": {name: _commit(path) for name, path in trees.items()},
           "command": f".venv/bin/python bench/wal_checkpoint.py --before {args.before} --after {args.after} "
                      f"--rate {args.rate:g} "
                      f"--seconds {args.seconds:g} --rounds {args.rounds}",
           "machine": machine_facts(ROOT), "load_average_end": list(os.getloadavg()),
           "summary": summary, "runs": runs}
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
