"""``warrantor serve`` on a port that is taken: one line naming the port and how to pick
another, a non-zero exit, no traceback, and nothing created in the data directory."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx

from support import server_process
from warrantor.cli.ports import listen_problem


def _serve(port: int, data_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "warrantor.cli.main", "serve", "--host", "127.0.0.1", "--port", str(port),
         "--data-dir", str(data_dir)],
        env={**os.environ, "WARRANTOR_OPERATOR_KEY": ""}, capture_output=True, text=True, timeout=60, check=False,
    )


def test_a_taken_port_is_one_clear_line_and_a_failing_exit(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _serve(port, tmp_path / "data")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"port {port} on 127.0.0.1 is already in use" in lines[0]
    assert "--port" in lines[0] and "make run PORT=" in lines[0]
    assert not (tmp_path / "data").exists()  # refused before any key or database was made


def test_a_free_port_has_no_problem_and_other_failures_are_named() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    assert listen_problem("127.0.0.1", free) is None
    assert "not an address of this machine" in (listen_problem("192.0.2.1", free) or "")  # TEST-NET-1


def test_a_second_server_on_the_same_sqlite_database_refuses_to_start(tmp_path: Path) -> None:
    """SQLite has one writer process, and the server relies on it (it caches live keys):
    a second ``serve`` on the same data directory says who holds it and exits."""
    data = tmp_path / "data"
    data.mkdir()
    with server_process(data, demo=False) as first:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        result = _serve(port, data)
        assert result.returncode == 1
        assert "Traceback" not in result.stderr + result.stdout
        assert f"already served by warrantor serve (pid {first.proc.pid})" in result.stderr
        assert "several processes need PostgreSQL" in result.stderr
        assert httpx.get(f"{first.url}/healthz", timeout=10).status_code == 200  # the first one serves on
    # Once the first has stopped, the database is free again.
    with server_process(data, demo=False) as again:
        assert httpx.get(f"{again.url}/healthz", timeout=10).status_code == 200
