"""CPU per authorization in process, with and without the HTTP layer, hot route on and off.

One demo deployment (SQLite in a temporary directory), one app per mode over the same
services, and the same allowed wire transfer three ways, each ``--requests`` times as
concurrent tasks on one event loop (so group commits batch as under load):

- ``asgi hot``: the ASGI app (request middleware, router, ``authorize_hot``), no socket;
- ``asgi fastapi``: the same app built with ``hot_routes=False`` (the FastAPI route);
- ``direct``: ``Authorizer.authorize_async`` on a body parsed by pydantic, no HTTP at all.

CPU time of the whole process (event loop and writer thread) per request, median of
``--rounds`` alternating rounds. No uvicorn and no sockets: ``bench/run.py`` measures those.

    .venv/bin/python bench/authorize_inprocess.py --requests 600 --rounds 5
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _server import OPERATOR

ROOT = Path(__file__).resolve().parent.parent


def _body(n: int) -> bytes:
    return json.dumps({"action_type": "wire_transfer", "details": f"bench {n}", "instruction_hash": "sha256:ab",
                       "payload": {"amount_minor": 1000 + n % 997, "currency": "EUR",
                                   "beneficiary": "ACME GmbH"}}).encode()


async def _measure(args: argparse.Namespace) -> dict[str, Any]:
    os.environ["WARRANTOR_OPERATOR_KEY"] = OPERATOR
    from warrantor.cli.bootstrap import prepare
    from warrantor.server.app import create_app
    from warrantor.server.routes.actions import intent_from
    from warrantor.server.schemas import ActionIn
    from warrantor.server.settings import Settings

    data = Path(tempfile.mkdtemp()) / "data"
    settings = Settings.from_env(data_dir=data, demo=True)
    services = prepare(settings, out=io.StringIO())
    hot, fastapi = create_app(settings, services=services), create_app(settings, services=services, hot_routes=False)
    key = json.loads((data / "demo.json").read_text())["agent_key"]
    principal = services.tenancy.authenticate(key)
    counter = [0]

    def asgi(app: Any) -> Callable[[], Awaitable[None]]:
        async def call() -> None:
            counter[0] += 1
            body = _body(counter[0])
            scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
                     "scheme": "http", "path": "/v1/actions", "raw_path": b"/v1/actions", "query_string": b"",
                     "root_path": "", "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80),
                     "headers": [(b"host", b"bench"), (b"content-type", b"application/json"),
                                 (b"authorization", f"Bearer {key}".encode()),
                                 (b"content-length", str(len(body)).encode())]}
            sent: list[dict[str, Any]] = []

            async def receive() -> dict[str, Any]:
                return {"type": "http.request", "body": body, "more_body": False}

            async def send(message: dict[str, Any]) -> None:
                sent.append(message)

            await app(scope, receive, send)
            if sent[0]["status"] != 201:
                raise SystemExit(f"expected 201, got {sent[0]['status']}: {sent[1:]}")
        return call

    async def direct() -> None:
        counter[0] += 1
        parsed = ActionIn.model_validate_json(_body(counter[0]))
        await services.authorizer.authorize_async(principal, intent_from(parsed), None)

    modes = {"asgi hot": asgi(hot), "asgi fastapi": asgi(fastapi), "direct": direct}
    samples: dict[str, list[float]] = {m: [] for m in modes}
    async with hot.router.lifespan_context(hot):
        for fn in modes.values():  # warm-up
            for _ in range(50):
                await fn()
        for _ in range(args.rounds):
            for mode, fn in modes.items():
                started = time.process_time()
                await asyncio.gather(*[fn() for _ in range(args.requests)])
                samples[mode].append((time.process_time() - started) / args.requests * 1e6)
    services.store.close()
    return {mode: {"median_us": round(statistics.median(v), 1), "rounds_us": [round(x, 1) for x in v]}
            for mode, v in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=600)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "authorize_inprocess.json")
    args = parser.parse_args()
    result = asyncio.run(_measure(args))
    doc = {"benchmark": "authorize_inprocess", "unit": "CPU us per authorization (whole process)",
           "finished": datetime.now(UTC).isoformat(timespec="seconds"),
           "command": (f".venv/bin/python bench/authorize_inprocess.py --requests {args.requests} "
                       f"--rounds {args.rounds}"),
           "result": result}
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
