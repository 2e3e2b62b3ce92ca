"""What the HTTP benchmarks share: a real ``warrantor serve`` on a free loopback port, and
the wrk script that authorizes allowed wire transfers.

The server is started in a child process and stopped by PID (SIGTERM, then SIGKILL) with
``warrantor.cli.localserver``'s ``stop``; the port comes from its ``free_port``. The wait
stays here: it takes any ready URL (the ceiling app has ``/healthz``), has no log to show,
kills a server that is not ready in time and exits the benchmark (``SystemExit``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from warrantor.cli.localserver import free_port
from warrantor.cli.localserver import stop as stop_server

__all__ = ["AUTHORIZE_LUA", "OPERATOR", "ROOT", "SERVE", "free_port", "start_server", "stop_server", "wait_ready"]

ROOT = Path(__file__).resolve().parent.parent
OPERATOR = "wrt_benchoperatorbenchoperatorbench"

AUTHORIZE_LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %s"
local n = 0
request = function()
  n = n + 1
  local body = string.format('{"action_type":"wire_transfer","details":"bench %%d","instruction_hash":"sha256:ab",'
    .. '"payload":{"amount_minor":%%d,"currency":"EUR","beneficiary":"ACME GmbH"}}', n, 1000 + (n %% 997))
  return wrk.format(nil, "/v1/actions", nil, body)
end
response = function(status, headers, body)
  if status ~= 201 then io.stderr:write("unexpected status " .. status .. "\\n") end
end
"""


SERVE = [sys.executable, "-m", "warrantor.cli.main", "serve"]


def start_server(data_dir: Path, port: int, *, demo: bool = True,
                 env: dict[str, str] | None = None, serve: list[str] = SERVE,
                 ready_timeout: float = 30) -> subprocess.Popen[bytes]:
    """``serve`` is the command up to its flags: ``warrantor serve`` unless a launcher wraps it."""
    cmd = [*serve, "--host", "127.0.0.1", "--port", str(port),
           "--data-dir", str(data_dir), "--log-level", "warning", *(["--demo"] if demo else [])]
    child_env = {**os.environ, "WARRANTOR_OPERATOR_KEY": OPERATOR, **(env or {})}
    proc = subprocess.Popen(cmd, env=child_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    return wait_ready(proc, f"http://127.0.0.1:{port}/readyz", ready_timeout)


def wait_ready(proc: subprocess.Popen[bytes], url: str, timeout: float = 30) -> subprocess.Popen[bytes]:
    """Return ``proc`` once ``url`` answers 200; kill it if that takes longer than ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with status {proc.returncode} before it was ready")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.kill()
    proc.wait(timeout=10)
    raise SystemExit(f"server did not start within {timeout:.0f} s")
