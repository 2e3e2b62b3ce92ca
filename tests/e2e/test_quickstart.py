"""docs/quickstart.md, run as written: examples/quickstart/quickstart.sh against a fresh
data directory on a free port, ending with ``warrantor verify`` saying VERIFIED."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from support import free_port

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "examples" / "quickstart" / "quickstart.sh"


def test_the_quickstart_doc_is_the_script() -> None:
    doc = (ROOT / "docs" / "quickstart.md").read_text()
    assert SCRIPT.read_text() in doc
    assert (ROOT / "examples" / "quickstart" / "agent.py").read_text() in doc


def test_quickstart_runs_to_a_verified_receipt(tmp_path: Path) -> None:
    if shutil.which("jq") is None:
        if os.environ.get("CI"):
            pytest.fail("jq is missing: apt-get install jq")
        pytest.skip("jq is missing: apt-get install jq")
    done = subprocess.run(
        ["bash", str(SCRIPT)], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "PORT": str(free_port()), "DIR": str(tmp_path / "data")},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert any(line.startswith("receipt: rcpt_") for line in lines)
    assert any(line.startswith("denied: AMOUNT_CAP receipt: rcpt_") for line in lines)
    assert lines[-1] == "VERIFIED"
    assert (tmp_path / "data.keys.json").stat().st_mode & 0o077 == 0  # the keys file is private
