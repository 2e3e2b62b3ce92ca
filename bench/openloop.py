"""An open-loop HTTP load generator: requests leave on a fixed schedule, whatever the server does.

Used by ``bench/run.py`` for "latency at a fixed offered rate" (Debian has no ``wrk2``).

Rules (what makes it safe from coordinated omission):

- Request ``i`` is *scheduled* at ``t0 + i / rate``. The schedule never waits for the server.
- Its latency is ``done - scheduled``: time spent waiting for a free connection, or because
  the driver itself was late to send, counts against the server, as a user arriving at that
  instant would see it. A closed-loop tool (wrk) instead measures from the moment it sends,
  so a stalled server makes it send less and hides the stall.
- ``sent - scheduled`` (the send lag) is reported separately: a large send lag with an idle
  server means the *driver* could not keep up, and the figure should not be trusted.
- Connections come from a fixed pool (HTTP/1.1 keep-alive, one request at a time on each);
  waiters are served first come, first served, so requests keep their schedule order.

The HTTP client is deliberately minimal (status line, headers, a body by Content-Length or
chunked) so the driver spends little CPU on the two cores it shares with the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class Sample:
    """One request: when it was due, when it was written, when its response was complete."""

    scheduled: float
    sent: float
    done: float
    status: int  # 0: the request failed (connection error)

    @property
    def latency(self) -> float:
        return self.done - self.scheduled

    @property
    def send_lag(self) -> float:
        return self.sent - self.scheduled


class Connection(Protocol):
    async def send(self, index: int) -> int: ...

    async def close(self) -> None: ...


def schedule(rate: float, duration: float) -> list[float]:
    """Offsets (seconds from the start) of every request: ``rate * duration`` of them, evenly spaced."""
    if rate <= 0 or duration <= 0:
        raise ValueError(f"expected a positive rate and duration, got {rate} and {duration}")
    return [i / rate for i in range(round(rate * duration))]


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in [0, 100]) of ``values``; the value a reader can find in the data."""
    if not values:
        raise ValueError("expected at least one value")
    ordered = sorted(values)
    rank = max(1, math.ceil(round(len(ordered) * q / 100, 9)))  # round: 1000 * 99.9 is not exact
    return ordered[rank - 1]


def summarize(samples: Sequence[Sample], rate: float) -> dict[str, Any]:
    """Latency percentiles (ms, from the scheduled time), send lag, errors and the achieved rate."""
    if not samples:
        raise ValueError("expected at least one sample")
    ok = [s for s in samples if 200 <= s.status < 300]
    latencies = [s.latency * 1000 for s in samples]
    lags = [s.send_lag * 1000 for s in samples]
    span = max(s.done for s in samples) - min(s.scheduled for s in samples)
    return {
        "offered_rate": rate,
        "requests": len(samples),
        "ok": len(ok),
        "errors": len(samples) - len(ok),
        "achieved_rate": round(len(ok) / span, 1) if span > 0 else 0.0,
        "latency_ms": {f"p{q:g}": round(percentile(latencies, q), 3) for q in (50, 90, 99, 99.9)}
        | {"max": round(max(latencies), 3)},
        "send_lag_ms": {"p50": round(percentile(lags, 50), 3), "p99": round(percentile(lags, 99), 3),
                        "max": round(max(lags), 3)},
    }


async def open_loop(
    connect: Callable[[], Awaitable[Connection]],
    *,
    rate: float,
    duration: float,
    connections: int,
    clock: Callable[[], float] = time.perf_counter,
    timeout: float = 60.0,
) -> list[Sample]:
    """Send ``rate * duration`` requests on schedule over a pool of ``connections``; return every sample.

    A request whose connection fails is recorded with status 0 and the connection replaced.
    Gives up ``timeout`` seconds after the last scheduled send (raises ``TimeoutError``).
    """
    pool: asyncio.Queue[Connection] = asyncio.Queue()
    for _ in range(connections):
        pool.put_nowait(await connect())
    samples: list[Sample] = []

    async def one(index: int, scheduled: float) -> None:
        conn = await pool.get()
        sent = clock()
        try:
            status = await conn.send(index)
        except (OSError, asyncio.IncompleteReadError, ValueError):
            status = 0
            await conn.close()
            conn = await connect()
        samples.append(Sample(scheduled, sent, clock(), status))
        pool.put_nowait(conn)

    offsets = schedule(rate, duration)
    start = clock() + 0.01
    tasks = []
    for index, offset in enumerate(offsets):
        due = start + offset
        delay = due - clock()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(index, due)))
    try:
        await asyncio.wait_for(asyncio.gather(*tasks), timeout)
    finally:
        while not pool.empty():
            await pool.get_nowait().close()
    return samples


class HttpConnection:
    """One keep-alive HTTP/1.1 connection sending ``build(index)`` and reading the whole response."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 build: Callable[[int], bytes]) -> None:
        self._reader, self._writer, self._build = reader, writer, build
        self.last_body = b""

    @classmethod
    async def open(cls, host: str, port: int, build: Callable[[int], bytes]) -> HttpConnection:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer, build)

    async def send(self, index: int) -> int:
        self._writer.write(self._build(index))
        status, self.last_body = await read_response(self._reader)
        return status

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """Status and body of one HTTP/1.1 response (Content-Length or chunked)."""
    status_line = await reader.readuntil(b"\r\n")
    parts = status_line.split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
        raise ValueError(f"expected an HTTP/1.x status line, got {status_line[:80]!r}")
    status = int(parts[1])
    length, chunked = 0, False
    while (line := await reader.readuntil(b"\r\n")) != b"\r\n":
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value.strip())
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if not chunked:
        return status, await reader.readexactly(length)
    body = bytearray()
    while size := int((await reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16):
        body += await reader.readexactly(size)
        await reader.readexactly(2)
    while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers
        pass
    return status, bytes(body)


def http_request(method: str, path: str, host: str, headers: dict[str, str], body: bytes = b"") -> bytes:
    """The bytes of one HTTP/1.1 request (keep-alive)."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", *(f"{k}: {v}" for k, v in headers.items())]
    if body or method in {"POST", "PUT", "PATCH"}:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body
