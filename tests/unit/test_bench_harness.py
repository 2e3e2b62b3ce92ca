"""The benchmark harness reports what it measured: ratios, targets and verdicts from synthetic
figures, and the open-loop driver counts waiting time against the server (coordinated omission).

No assertion here depends on how fast this machine is: the open-loop checks compare recorded
timestamps with each other, never with a time budget.
"""

import asyncio
import itertools
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from harness import Figure, Target, render_table, results_document
from openloop import HttpConnection, Sample, http_request, open_loop, percentile, schedule, summarize
from run import build_figures


def test_figures_compute_ratio_target_and_verdict() -> None:
    ceiling = 1000.0
    figures = [
        Figure("a", "authorize", 450.0, "req/s", ceiling, "ceiling", Target(">=", 0.40)),
        Figure("b", "authorize slow", 300.0, "req/s", ceiling, "ceiling", Target(">=", 0.40)),
        Figure("c", "p99", 20.0, "ms", 2.0, "ceiling p99", Target("<", 25, on="value")),
        Figure("d", "p99 slow", 30.0, "ms", None, "", Target("<", 25, on="value")),
        Figure("e", "pg", None, "req/s", None, "", Target(">=", 1.7), note="PostgreSQL unreachable"),
        Figure("f", "proof", 14.0, "us", 0.5, "one sha256"),
    ]
    assert [f.verdict for f in figures] == ["pass", "miss", "pass", "miss", "n/a", "-"]
    assert figures[0].ratio == pytest.approx(0.45)
    assert figures[2].ratio == pytest.approx(10.0)  # a value target still reports its ratio
    assert figures[3].ratio is None

    table = render_table(figures).splitlines()
    assert table[0].split() == ["figure", "value", "target", "ratio", "to", "baseline", "verdict"]
    assert "450 req/s" in table[2] and "0.45 of ceiling" in table[2] and table[2].endswith("pass")
    assert ">= 0.4x" in table[3] and table[3].endswith("miss")
    assert "< 25 ms" in table[4]
    assert "not measured: PostgreSQL unreachable" in table[6] and table[6].endswith("n/a")

    doc = results_document(figures, command="bench/run.py --quick", mode="quick", machine={"cores": 2},
                           scenarios={"x": 1}, errors={"postgres": "boom"}, started="s", finished="f")
    doc = json.loads(json.dumps(doc))  # what is written is plain JSON
    assert doc["summary"] == {"pass": 2, "miss": 2, "n/a": 1}
    assert doc["command"] == "bench/run.py --quick" and doc["machine"] == {"cores": 2}
    first = doc["figures"][0]
    assert first["ratio"] == 0.45 and first["verdict"] == "pass"
    assert first["target"] == {"op": ">=", "bound": 0.4, "on": "ratio", "text": ">= 0.4x"}
    assert doc["figures"][4]["value"] is None and doc["figures"][4]["target"]["text"] == ">= 1.7x"


def _wrk(rps: float, p50: float = 5.0, p99: float = 20.0) -> dict[str, float]:
    return {"rps": rps, "p50_ms": p50, "p99_ms": p99}


def test_the_table_divides_each_figure_by_its_own_baseline() -> None:
    details = {
        "ceiling": {"saturation_64": {"median": _wrk(4000)}},
        "sqlite": {
            "authorize_16": {"median": _wrk(1800)},
            "authorize_64": {"median": _wrk(1500)},
            "full_flow_64": {"median_complete_actions_per_s": 700.0},
            "open_loop_half": {"offered_rate": 900.0, "achieved_rate": 899.0,
                               "latency_ms": {"p50": 3.0, "p99": 24.0}, "send_lag_ms": {"p99": 1.0}},
            "open_loop_half_ceiling": {"latency_ms": {"p50": 1.0, "p99": 4.0}},
            "integrator": {"achieved_actions_per_s": 400.0, "integrator_core_pct": 6.0, "process_core_pct": 100.0,
                           "load": "wrk -c16 at saturation"},
        },
        "postgres": {"workers_1": {"median": _wrk(300)}, "workers_2": {"median": _wrk(540)}},
        "decision": {"small": {"recorded_actions": 1001, "latency": _wrk(100, p50=4.0)},
                     "large": {"recorded_actions": 1_000_001, "latency": _wrk(90, p50=4.4)}},
    }
    figs = {f.key: f for f in build_figures(details, {"offline": "RuntimeError: no receipts\ntraceback"})}
    assert figs["authorize_sqlite_16"].ratio == pytest.approx(0.45) and figs["authorize_sqlite_16"].verdict == "pass"
    assert figs["authorize_sqlite_64"].verdict == "miss"  # 0.375 of the ceiling
    assert figs["full_flow"].ratio == pytest.approx(0.175) and figs["full_flow"].verdict == "miss"
    assert figs["open_loop_p99"].value == 24.0 and figs["open_loop_p99"].verdict == "pass"
    assert figs["open_loop_p99"].ratio == pytest.approx(6.0)
    assert figs["authorize_pg_2"].ratio == pytest.approx(1.8) and figs["authorize_pg_2"].verdict == "pass"
    assert figs["decision_large"].ratio == pytest.approx(1.1) and figs["decision_large"].verdict == "pass"
    assert "1,000,001" in figs["decision_large"].name
    # Below 1,000 actions/s the row says so instead of pretending.
    assert figs["integrator_cpu"].verdict == "miss" and "400" in figs["integrator_cpu"].name
    assert "below 1,000/s" in figs["integrator_cpu"].note
    # A failed phase: its rows are not measured and carry the error's first line.
    assert figs["verify_with_rfc3161"].value is None and figs["verify_with_rfc3161"].verdict == "n/a"
    assert figs["verify_with_rfc3161"].note == "RuntimeError: no receipts"


def test_percentiles_are_nearest_rank_and_latency_counts_from_the_schedule() -> None:
    values = [float(v) for v in range(1, 1001)]
    assert percentile(values, 50) == 500.0
    assert percentile(values, 99) == 990.0
    assert percentile(values, 99.9) == 999.0
    assert percentile([7.0], 99) == 7.0
    assert schedule(200, 0.05) == [0.0, 0.005, 0.01, 0.015, 0.02, 0.025, 0.03, 0.035, 0.04, 0.045]

    # One request stalled 100 ms; the nine behind it waited for it. From the schedule, they
    # were all slow; measured from when they were sent (a closed loop) they were not.
    samples = [Sample(0.0, 0.0, 0.1, 200)] + [Sample(0.01 * i, 0.1, 0.1 + 0.001 * i, 200) for i in range(1, 10)]
    summary = summarize(samples, rate=100)
    assert summary["requests"] == 10 and summary["errors"] == 0
    assert summary["latency_ms"]["p50"] == pytest.approx(55.0)  # latencies 100, 91, 82, ..., 19 ms
    assert summary["latency_ms"]["max"] == pytest.approx(100.0)
    assert summary["send_lag_ms"]["max"] == pytest.approx(90.0)
    failed = summarize([Sample(0.0, 0.0, 0.002, 503), Sample(0.01, 0.01, 0.012, 0)], rate=100)
    assert failed["ok"] == 0 and failed["errors"] == 2


class _StallFirst:
    """A fake server connection: the first request waits until released, the rest answer at once."""

    def __init__(self, release: asyncio.Event) -> None:
        self.release = release

    async def send(self, index: int) -> int:
        if index == 0:
            await self.release.wait()
        return 200

    async def close(self) -> None:
        return None


def test_open_loop_keeps_its_schedule_and_charges_the_wait_to_the_server() -> None:
    async def scenario() -> list[Sample]:
        release = asyncio.Event()

        async def connect() -> _StallFirst:
            return _StallFirst(release)

        async def release_after_schedule() -> None:
            while len(asyncio.all_tasks()) < 2 + 20:  # the driver, this task and all 20 requests exist
                await asyncio.sleep(0.001)
            release.set()

        releaser = asyncio.create_task(release_after_schedule())
        samples = await open_loop(connect, rate=1000, duration=0.02, connections=1, timeout=30)
        await releaser
        return samples

    samples = asyncio.run(scenario())
    assert len(samples) == 20
    by_schedule = sorted(samples, key=lambda s: s.scheduled)
    gaps = [b.scheduled - a.scheduled for a, b in itertools.pairwise(by_schedule)]
    assert gaps == pytest.approx([0.001] * 19)  # the schedule did not wait for the stalled server
    stalled = by_schedule[0]
    for s in by_schedule[1:]:
        # One connection: each waited for the stalled request; that wait is in its latency.
        assert s.sent >= stalled.done
        assert s.latency == s.done - s.scheduled >= stalled.done - s.scheduled > 0
        assert s.latency >= s.send_lag
    assert all(s.status == 200 for s in samples)


def test_http_connection_reads_content_length_and_chunked_responses() -> None:
    answers = [
        b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"id\":\"a\"}\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n3;x=1\r\nefg\r\n0\r\n\r\n",
    ]

    async def scenario() -> list[tuple[int, bytes]]:
        seen: list[bytes] = []

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            for answer in answers:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                seen.append(await reader.readexactly(length))
                writer.write(answer)
                await writer.drain()
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        build = lambda i: http_request("POST", "/v1/actions", "h", {"X-N": str(i)}, b'{"n":%d}' % i)  # noqa: E731
        conn = await HttpConnection.open("127.0.0.1", port, build)
        out = []
        for i in range(2):
            out.append((await conn.send(i), conn.last_body))
        await conn.close()
        server.close()
        await server.wait_closed()
        assert seen == [b'{"n":0}', b'{"n":1}']
        return out

    assert asyncio.run(scenario()) == [(201, b'{"id":"a"}\n'), (200, b"abcdefg")]
