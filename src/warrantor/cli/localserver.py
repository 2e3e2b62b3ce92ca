"""A throwaway ``warrantor serve --demo`` for ``warrantor demo``: a temporary data directory,
SQLite, a free loopback port; stopped by its PID (SIGTERM, then SIGKILL) and its directory
removed when the block ends, whatever happened.

The child gets none of the caller's ``WARRANTOR_*`` variables: a demo must never reach a
real database or reuse a real operator key.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

START_TIMEOUT_SECONDS = 60.0


@dataclass(frozen=True)
class LocalServer:
    url: str
    pid: int
    data_dir: Path
    demo: dict[str, Any]  # <data dir>/demo.json: the demo tenant's keys and console login


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def local_server() -> Iterator[LocalServer]:
    with tempfile.TemporaryDirectory(prefix="warrantor-demo-") as tmp:
        data_dir = Path(tmp) / "data"
        port = free_port()
        cmd = [sys.executable, "-m", "warrantor.cli.main", "serve", "--host", "127.0.0.1", "--port", str(port),
               "--data-dir", str(data_dir), "--demo", "--log-level", "warning"]
        env = {k: v for k, v in os.environ.items() if not k.startswith("WARRANTOR_")}
        env["WARRANTOR_INTEGRATE_INTERVAL_MS"] = "100"  # receipts reach a checkpoint sooner
        log_path = Path(tmp) / "server.log"
        with open(log_path, "wb") as log:  # a file, not a pipe nobody reads
            proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)  # noqa: S603
        try:
            url = f"http://127.0.0.1:{port}"
            wait_ready(proc, url, log_path)
            demo = json.loads((data_dir / "demo.json").read_text())
            yield LocalServer(url, proc.pid, data_dir, demo)
        finally:
            stop(proc)


def wait_ready(proc: subprocess.Popen[bytes], url: str, log_path: Path, *,
               timeout: float = START_TIMEOUT_SECONDS, name: str = "the demo server") -> None:
    """Return once ``url``/readyz answers 200; raise with the log's tail if the process exits
    or ``timeout`` seconds pass (the tests' servers use this too)."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            tail = log_path.read_text(encoding="utf-8", errors="replace")[-2000:]
            raise RuntimeError(f"{name} exited with status {proc.returncode}:\n{tail}")
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name} did not become ready within {timeout:g} s")
        time.sleep(0.1)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after 10 s: the process is gone when this returns."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
