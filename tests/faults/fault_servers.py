"""Real processes the fault tests stop and start: a private PostgreSQL, an RFC 3161 TSA,
and a webhook receiver. Every process is started here and stopped by its PID.

Run as a script it is the TSA or the receiver:

    python fault_servers.py tsa <dir> <port>        # chain in <dir>, root at <dir>/root.pem
    python fault_servers.py receiver <file> <port>  # one JSON line per request in <file>
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Protocol, TypeVar

import pytest

HERE = Path(__file__).resolve()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes] | None = None, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout} s") from None
            time.sleep(0.05)


def stop_pid(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    """Stop one child we started, by its PID; SIGKILL if it does not go within 10 s."""
    if proc.poll() is None:
        os.kill(proc.pid, sig)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


class Child:
    """``python fault_servers.py <kind> <arg> <port>`` that can be stopped and started again."""

    def __init__(self, kind: str, arg: Path) -> None:
        self.kind, self.arg = kind, arg
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, str(HERE), self.kind, str(self.arg), str(self.port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port, self.proc)

    def stop(self) -> None:
        if self.proc is not None:
            stop_pid(self.proc)
            self.proc = None


class _Stoppable(Protocol):
    def start(self) -> None: ...
    def stop(self) -> None: ...


S = TypeVar("S", bound=_Stoppable)


@contextmanager
def running(server: S) -> Iterator[S]:
    """Start ``server``; stop it when the block ends, whatever happened."""
    server.start()
    try:
        yield server
    finally:
        server.stop()


def child(kind: str, arg: Path) -> AbstractContextManager[Child]:
    return running(Child(kind, arg))


# -- a private PostgreSQL -----------------------------------------------------------------
def _pg_bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    which = shutil.which("initdb")
    return Path(which).resolve().parent if which else None


class PrivatePostgres:
    """A throw-away PostgreSQL cluster on a free loopback port (trust auth, no fsync)."""

    def __init__(self, bindir: Path, root: Path) -> None:
        self.bindir, self.root = bindir, root
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        # PostgreSQL refuses to run as root: drop to the postgres user when we are root.
        self._as: dict[str, Any] = {"user": "postgres", "group": "postgres", "extra_groups": []} \
            if os.geteuid() == 0 else {}
        if self._as:
            shutil.chown(root, "postgres", "postgres")
        subprocess.run([str(bindir / "initdb"), "-D", str(root / "data"), "-A", "trust", "-U", "postgres",
                        "-N", "-E", "UTF8", "--locale=C", "--no-instructions"],
                       check=True, capture_output=True, timeout=60, **self._as)

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        with open(self.root / "server.log", "ab") as out:
            self.proc = subprocess.Popen(
                [str(self.bindir / "postgres"), "-D", str(self.root / "data"), "-p", str(self.port),
                 "-k", str(self.root), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"],
                stdout=out, stderr=subprocess.STDOUT, **self._as,
            )
        deadline = time.monotonic() + 20
        while not self.accepts():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("private PostgreSQL did not start: " + (self.root / "server.log").read_text())
            time.sleep(0.05)

    def accepts(self) -> bool:
        import psycopg

        try:
            psycopg.connect(self.url, connect_timeout=1).close()
        except psycopg.OperationalError:
            return False
        return True

    def stop(self) -> None:
        """Fast shutdown (SIGINT): clients are disconnected, nothing more is accepted."""
        if self.proc is not None:
            stop_pid(self.proc, signal.SIGINT)
            self.proc = None

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        import psycopg

        with psycopg.connect(self.url, connect_timeout=3) as conn:
            return list(conn.execute(sql).fetchall())  # type: ignore[arg-type]


@contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    bindir = _pg_bindir()
    if bindir is None or not (bindir / "postgres").exists():
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL server binaries (initdb, postgres) are missing in CI")
        pytest.skip("PostgreSQL server binaries (initdb, postgres) not found; install postgresql to run this test")
    root = Path(tempfile.mkdtemp(prefix="warrantor-pg-"))
    try:
        with running(PrivatePostgres(bindir, root)) as pg:
            yield pg
    finally:
        shutil.rmtree(root, ignore_errors=True)


# -- the TSA and the receiver, run as scripts ---------------------------------------------
def _serve_tsa(directory: Path, port: int) -> None:
    from datetime import UTC, datetime
    from itertools import count

    from warrantor.evidence.tsa import BuiltinTSA, TSAChain, generate_chain

    if not (directory / "root.pem").exists():
        chain = generate_chain("fault-test TSA")
        for name, data in (("root.pem", chain.root_cert_pem), ("tsa.pem", chain.tsa_cert_pem),
                           ("tsa.key", chain.tsa_key_pem)):
            (directory / name).write_bytes(data)
    chain = TSAChain(*((directory / n).read_bytes() for n in ("root.pem", "tsa.pem", "tsa.key")))
    serials = count(time.time_ns())  # unique across restarts
    tsa = BuiltinTSA(chain, lambda: next(serials), lambda: datetime.now(UTC))

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            answer = tsa.respond(self.rfile.read(int(self.headers["content-length"])))
            self.send_response(200)
            self.send_header("content-type", "application/timestamp-reply")
            self.send_header("content-length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args: Any) -> None:
            return None

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


def _serve_receiver(path: Path, port: int) -> None:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"]))
            with open(path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps({"id": self.headers["webhook-id"], "body": json.loads(body)}) + "\n")
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            return None

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


def received(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    complete = path.read_text(encoding="utf-8").split("\n")[:-1]  # a line still being written is left out
    return [json.loads(line) for line in complete]


if __name__ == "__main__":
    kind, arg, port_arg = sys.argv[1:4]
    {"tsa": _serve_tsa, "receiver": _serve_receiver}[kind](Path(arg), int(port_arg))
