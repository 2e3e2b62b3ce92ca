"""The ceiling: the least work an authorize endpoint must do, served the way Warrantor is.

``POST /v1/actions`` does, per request, only the work no design can avoid:

1. parse the JSON body (orjson; the benchmark sends about 1 KB);
2. Ed25519-sign a small statement naming the body's SHA-256 (``cryptography``);
3. append the statement's leaf hash to an in-memory RFC 6962 tree
   (``warrantor.evidence.merkle.MerkleTree``, the tree Warrantor's log uses);
4. hand one row to a single writer thread that commits everything queued so far in one
   transaction (group commit) to SQLite in WAL mode with ``synchronous=FULL``, the pragmas
   Warrantor's store sets, and answer 201 only after that commit: the request awaits a
   future the writer completes, no thread-pool hop per request.

Nothing else: no authentication, policy, idempotency or tenancy, one Starlette route. It is
served with the same call as ``warrantor serve`` (``uvicorn.run(app, host=..., port=...,
log_level=..., access_log=False)``), so uvicorn's defaults pick the same event loop and HTTP
parser (uvloop and httptools, pinned in the server extra); ``GET /stack`` reports which ones
this process actually runs.

    .venv/bin/python bench/ceiling/app.py --port 8099 --data-dir /tmp/ceiling
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import queue
import secrets
import sqlite3
import sys
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import orjson
import uvicorn
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from warrantor.evidence.merkle import MerkleTree, leaf_hash

Row = tuple[str, int, bytes, bytes, float]
_Job = tuple[Row, asyncio.Future[None]]


class GroupCommitWriter:
    """One thread, one SQLite connection: takes every queued row, commits them together,
    then completes each row's future on the event loop (one callback per batch)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="ceiling-writer", daemon=True)
        self._loop: asyncio.AbstractEventLoop | None = None
        self.batches = 0
        self.rows = 0

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._thread.start()

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=10)

    async def write(self, row: Row) -> None:
        assert self._loop is not None
        future: asyncio.Future[None] = self._loop.create_future()
        self._queue.put((row, future))
        await future

    def _run(self) -> None:
        con = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=FULL")
        con.execute("CREATE TABLE IF NOT EXISTS actions (id TEXT PRIMARY KEY, leaf_index INTEGER NOT NULL,"
                    " body BLOB NOT NULL, envelope BLOB NOT NULL, created_at REAL NOT NULL)")
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                break
            batch = [first]
            while True:
                try:
                    job = self._queue.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    stopping = True
                    break
                batch.append(job)
            error: BaseException | None = None
            try:
                con.execute("BEGIN IMMEDIATE")
                con.executemany("INSERT INTO actions VALUES (?, ?, ?, ?, ?)", [row for row, _ in batch])
                con.execute("COMMIT")
                self.batches += 1
                self.rows += len(batch)
            except sqlite3.Error as exc:
                error = exc
                if con.in_transaction:
                    con.execute("ROLLBACK")
            assert self._loop is not None
            self._loop.call_soon_threadsafe(_settle, [future for _, future in batch], error)
        con.close()


def _settle(futures: list[asyncio.Future[None]], error: BaseException | None) -> None:
    for future in futures:
        if not future.done():
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(error)


def create_app(db_path: Path) -> Starlette:
    key = Ed25519PrivateKey.generate()
    tree = MerkleTree()
    writer = GroupCommitWriter(db_path)

    async def authorize(request: Request) -> Response:
        body = await request.body()
        try:
            intent = orjson.loads(body)
        except orjson.JSONDecodeError:
            return Response(b'{"error":"expected JSON"}', status_code=400, media_type="application/json")
        if not isinstance(intent, dict):
            return Response(b'{"error":"expected an object"}', status_code=400, media_type="application/json")
        action_id = "act_" + secrets.token_hex(10)
        statement = orjson.dumps(
            {"action_id": action_id, "intent_sha256": hashlib.sha256(body).hexdigest(),
             "action_type": intent.get("action_type"), "issued_at": time.time()},
            option=orjson.OPT_SORT_KEYS,
        )
        signature = key.sign(statement)
        envelope = orjson.dumps({"payload": base64.b64encode(statement).decode(),
                                 "sig": base64.b64encode(signature).decode()})
        index = tree.append(leaf_hash(envelope))
        await writer.write((action_id, index, body, envelope, time.time()))
        return Response(orjson.dumps({"action_id": action_id, "log_index": index, "warrant": envelope.decode()}),
                        status_code=201, media_type="application/json")

    async def healthz(_request: Request) -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    async def stack(_request: Request) -> Response:
        loop = type(asyncio.get_running_loop())
        http = "httptools" if "uvicorn.protocols.http.httptools_impl" in sys.modules else "h11"
        return Response(orjson.dumps({
            "loop": f"{loop.__module__}.{loop.__qualname__}", "http": http,
            "tree_size": tree.size, "batches": writer.batches, "rows": writer.rows,
        }), media_type="application/json")

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        writer.start(asyncio.get_running_loop())
        try:
            yield
        finally:
            writer.stop()

    return Starlette(routes=[Route("/v1/actions", authorize, methods=["POST"]), Route("/healthz", healthz),
                             Route("/stack", stack)], lifespan=lifespan)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8099)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args()
    args.data_dir.mkdir(parents=True, exist_ok=True)
    app = create_app(args.data_dir / "ceiling.db")
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, access_log=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
