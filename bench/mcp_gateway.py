"""Benchmark: what the MCP gateway adds to one allowed ``tools/call``, against calling the
upstream MCP server directly, in the same run on the same machine.

Both paths use the official SDK's client over stdio and the project's tools server
(``examples/mcp/tools_server.py``, ``send_payment`` of 12.00 EUR, which appends one line to a
file and fsyncs it). Through the gateway each call is also: the schema check, ``POST
/v1/actions`` (policy, warrant, log entry, group commit), the upstream call, and ``POST
/v1/actions/{id}/notarize`` with the witnessed receipt; the Warrantor server is a real
``warrantor serve`` (SQLite) on loopback. Calls are sequential (one agent, one call at a
time: the latency an agent sees), after a warm-up; the two paths alternate in rounds so
that a slow moment of the machine falls on both.

Run: ``.venv/bin/python bench/mcp_gateway.py`` (writes bench/results/mcp_gateway.json;
``--calls`` per round, ``--rounds``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import httpx
from _server import ROOT, free_port, start_server, stop_server
from harness import machine_facts
from mcp import Client, StdioServerParameters
from mcp.client.stdio import get_default_environment

sys.path[:0] = [str(ROOT / "tests" / "gateway"), str(ROOT / "tests")]
from gateway_support import create_gateway_key, upload_mcp_policy  # noqa: E402

TOOLS_SERVER = ROOT / "examples" / "mcp" / "tools_server.py"
ARGS = {"amount_minor": 1200, "currency": "EUR", "beneficiary": "ACME GmbH"}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))]


async def timed_calls(params: StdioServerParameters, tool: str, calls: int, warmup: int) -> list[float]:
    async with Client(params, cache=None) as client:
        for _ in range(warmup):
            result = await client.call_tool(tool, ARGS)
            assert not result.is_error, result
        out = []
        for _ in range(calls):
            start = time.perf_counter()
            result = await client.call_tool(tool, ARGS)
            out.append((time.perf_counter() - start) * 1000)
            assert not result.is_error, result
        return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200, help="timed calls per path per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "mcp_gateway.json")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-mcp-"))
    outbox = tmp / "outbox"
    direct = StdioServerParameters(command=sys.executable, args=[str(TOOLS_SERVER), "--outbox", str(outbox)])
    port = free_port()
    proc = start_server(tmp / "warrantor", port)
    try:
        url = f"http://127.0.0.1:{port}"
        demo = json.loads((tmp / "warrantor" / "demo.json").read_text())
        upload_mcp_policy(url, demo["admin_key"])
        key = create_gateway_key(url, demo["admin_key"])
        config = tmp / "gateway.yaml"
        config.write_text(f"""
warrantor: {{url: {url}, api_key_env: BENCH_GATEWAY_KEY}}
upstreams:
  tools:
    command: [{json.dumps(sys.executable)}, {json.dumps(str(TOOLS_SERVER))}, --outbox, {json.dumps(str(outbox))}]
""")
        gateway = StdioServerParameters(
            command=sys.executable,
            args=["-m", "warrantor.cli.main", "mcp-gateway", "--config", str(config), "--stdio"],
            env={**get_default_environment(), "BENCH_GATEWAY_KEY": key},
        )
        rounds: list[dict[str, Any]] = []
        for i in range(args.rounds):
            d = anyio.run(timed_calls, direct, "send_payment", args.calls, 20)
            g = anyio.run(timed_calls, gateway, "send_payment", args.calls, 20)
            rounds.append({"direct_ms": d, "gateway_ms": g})
            print(f"[bench] round {i + 1}: direct p50 {statistics.median(d):.2f} ms, "
                  f"gateway p50 {statistics.median(g):.2f} ms", file=sys.stderr)
        receipts = httpx.get(f"{url}/v1/actions?per_page=1&status=notarized",
                             headers={"Authorization": f"Bearer {demo['admin_key']}"}, timeout=10).json()
    finally:
        stop_server(proc)

    direct_all = [x for r in rounds for x in r["direct_ms"]]
    gateway_all = [x for r in rounds for x in r["gateway_ms"]]
    summary = {
        "direct_p50_ms": round(statistics.median(direct_all), 3),
        "direct_p99_ms": round(percentile(direct_all, 99), 3),
        "gateway_p50_ms": round(statistics.median(gateway_all), 3),
        "gateway_p99_ms": round(percentile(gateway_all, 99), 3),
        "added_p50_ms": round(statistics.median(gateway_all) - statistics.median(direct_all), 3),
        "added_p99_ms": round(percentile(gateway_all, 99) - percentile(direct_all, 99), 3),
        "round_medians": [{"direct": round(statistics.median(r["direct_ms"]), 3),
                           "gateway": round(statistics.median(r["gateway_ms"]), 3)} for r in rounds],
        "notarized_actions": receipts["pagination"]["total"],  # every timed gateway call left a receipt
    }
    result = {
        "benchmark": "mcp_gateway",
        "command": f".venv/bin/python bench/mcp_gateway.py --calls {args.calls} --rounds {args.rounds}",
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_facts(ROOT),
        "calls_per_path": len(direct_all),
        "summary": summary,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
