"""How long this machine's disk takes to fsync: what every group commit waits for.

A 4 KiB write and an ``fsync`` every 3 ms for ``--seconds`` on a file in the data
directory's file system (the repository's), the latency of each fsync recorded. The open-
loop figure of ``bench/run.py`` (p99 at half capacity) is bounded below by the slowest
fsyncs: one stalled commit holds every request queued behind it, the ceiling's as well.

    .venv/bin/python bench/fsync_probe.py --seconds 20
"""

from __future__ import annotations

import argparse
import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def probe(seconds: float, directory: Path) -> dict[str, float]:
    path = directory / ".fsync-probe"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    latencies: list[float] = []
    try:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            os.write(fd, b"x" * 4096)
            started = time.perf_counter()
            os.fsync(fd)
            latencies.append(time.perf_counter() - started)
            time.sleep(0.003)
    finally:
        os.close(fd)
        path.unlink(missing_ok=True)
    latencies.sort()
    n = len(latencies)

    def pct(q: float) -> float:
        return round(latencies[min(n - 1, int(n * q))] * 1e3, 3)

    return {"fsyncs": n, "p50_ms": pct(0.5), "p99_ms": pct(0.99), "p99_9_ms": pct(0.999),
            "max_ms": round(latencies[-1] * 1e3, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "fsync_probe.json")
    args = parser.parse_args()
    result = probe(args.seconds, ROOT)
    doc = {"benchmark": "fsync_probe", "finished": datetime.now(UTC).isoformat(timespec="seconds"),
           "command": f".venv/bin/python bench/fsync_probe.py --seconds {args.seconds:g}", "result": result}
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
