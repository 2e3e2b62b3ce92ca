"""The README walkthrough, run as written against a real server on loopback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from support import OPERATOR_KEY, server_process

ROOT = Path(__file__).resolve().parents[2]


def test_readme_walkthrough_runs_against_a_real_server(tmp_path: Path) -> None:
    with server_process(tmp_path, demo=False) as server:
        result = subprocess.run(
            ["bash", str(ROOT / "examples" / "walkthrough.sh")],
            env={**os.environ, "WARRANTOR_URL": server.url, "OPERATOR_KEY": OPERATOR_KEY,
                 "PYTHON": sys.executable, "WARRANTOR_LOG": str(server.log_path)},
            capture_output=True, text=True, timeout=120, check=False,
        )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "pending_approval" in out
    assert "approval link for lead@acme.example" in out  # read from the development mailer's log
    assert "'lead@acme.example', 'used': False" in out and "'code'" not in out  # no API key sees a code
    assert "approved" in out
    assert "'notarized'" in out
    assert "POLICY_DENIED" in out
    assert "('auditor reads', 'rcpt_" in out  # the auditor key the script made itself
    assert "warrant: signature by" in out and "receipt: signature by" in out
