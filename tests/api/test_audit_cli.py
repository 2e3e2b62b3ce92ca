"""``warrantor audit`` against a real server on loopback: consistency, inclusion, forks, rollbacks."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from support import WIRE, bearer, server_process
from warrantor.cli.main import main as cli
from warrantor.evidence.checkpoint import Checkpoint, NoteSigner
from warrantor.evidence.keys import SigningKey

FAST = {"WARRANTOR_INTEGRATE_INTERVAL_MS": "50"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    data_dir = tmp_path_factory.mktemp("audit-server")
    with server_process(data_dir, env=FAST) as handle:
        keys = json.loads((data_dir / "demo.json").read_text())
        yield handle.url, keys


def _authorize(url: str, keys: dict[str, str], n: int) -> list[str]:
    ids = []
    for i in range(n):
        r = httpx.post(f"{url}/v1/actions", headers=bearer(keys["agent_key"]),
                       json={"action_type": "wire_transfer", "details": f"audit {i}", "payload": WIRE})
        assert r.status_code == 201, r.text
        ids.append(r.json()["warrant_id"])
    return ids


def _bundle(url: str, keys: dict[str, str], warrant_id: str, path: Path) -> Path:
    for _ in range(50):
        r = httpx.get(f"{url}/v1/warrants/{warrant_id}/bundle", headers=bearer(keys["auditor_key"]), timeout=10)
        if r.status_code == 200:
            path.write_text(r.text)
            return path
        time.sleep(0.1)
    raise AssertionError(r.text)


def _audit(url: str, state: Path, *entries: Path) -> int:
    args = ["audit", "--server", url, "--state", str(state)]
    if entries:
        args += ["--entries", *map(str, entries)]
    return cli(args)


def test_a_monitor_follows_a_growing_log_and_reverifies_entries(server: Any, tmp_path: Path, capsys: Any) -> None:
    url, keys = server
    state = tmp_path / "state.json"
    assert _audit(url, state) == 0
    first = json.loads(state.read_text())
    assert first["trust"]["log"]["origin"] == "warrantor.local/log"
    warrants = _authorize(url, keys, 3)
    bundles = [_bundle(url, keys, w, tmp_path / f"{w}.json") for w in warrants]
    _authorize(url, keys, 2)
    time.sleep(0.3)
    assert _audit(url, state, *bundles) == 0
    out = capsys.readouterr().out
    assert "PASS  consistency" in out and out.count("PASS  entry") == 3 and "LOG CONSISTENT" in out
    grown = Checkpoint.from_body(json.loads(state.read_text())["checkpoint"]["body"])
    assert grown.size > Checkpoint.from_body(first["checkpoint"]["body"]).size


def _rewrite_checkpoint(state: Path, **changes: Any) -> str:
    doc = json.loads(state.read_text())
    cp = Checkpoint.from_body(doc["checkpoint"]["body"])
    forged = Checkpoint(cp.origin, changes.get("size", cp.size), changes.get("root", cp.root_hash))
    doc["checkpoint"]["body"] = forged.body()
    text = json.dumps(doc)
    state.write_text(text)
    return text


def test_a_forked_checkpoint_in_the_state_is_detected(server: Any, tmp_path: Path, capsys: Any) -> None:
    url, keys = server
    state = tmp_path / "state.json"
    _authorize(url, keys, 2)
    time.sleep(0.3)
    assert _audit(url, state) == 0
    forked = _rewrite_checkpoint(state, root=b"\x13" * 32)  # the monitor saw a different history
    _authorize(url, keys, 1)
    time.sleep(0.3)
    assert _audit(url, state) == 1
    assert "FAIL  consistency" in capsys.readouterr().out
    assert state.read_text() == forked  # nothing is trusted after a failure


def test_a_rolled_back_log_is_detected(server: Any, tmp_path: Path, capsys: Any) -> None:
    url, _ = server
    state = tmp_path / "state.json"
    assert _audit(url, state) == 0
    _rewrite_checkpoint(state, size=10**9)
    assert _audit(url, state) == 1
    assert "rolled back" in capsys.readouterr().out


def test_a_swapped_log_key_is_detected_with_pinned_trust(server: Any, tmp_path: Path, capsys: Any) -> None:
    url, _ = server
    state = tmp_path / "state.json"
    assert _audit(url, state) == 0
    doc = json.loads(state.read_text())
    impostor = NoteSigner(doc["trust"]["log"]["origin"], SigningKey.from_seed(b"i" * 32))
    doc["trust"]["log"]["verifier_key"] = impostor.vkey()
    for form in ("public_key_pem", "jwk", "sslib_keyid"):  # a stale form alone is refused outright
        doc["trust"]["log"].pop(form)                       # (tests/unit/test_keyforms.py)
    state.write_text(json.dumps(doc))
    assert _audit(url, state) == 1
    assert "FAIL  checkpoint_signature" in capsys.readouterr().out


def test_an_entry_that_is_not_in_the_log_fails(server: Any, tmp_path: Path, capsys: Any) -> None:
    url, keys = server
    bundle = _bundle(url, keys, _authorize(url, keys, 1)[0], tmp_path / "b.json")
    doc = json.loads(bundle.read_text())
    doc["log"]["inclusion_proof"] = [base64.b64encode(b"\x00" * 32).decode()] * len(doc["log"]["inclusion_proof"])
    bundle.write_text(json.dumps(doc))
    assert _audit(url, tmp_path / "state.json", bundle) == 1
    assert "FAIL  entry b.json" in capsys.readouterr().out


def test_the_audit_command_runs_as_a_process(server: Any, tmp_path: Path) -> None:
    url, _ = server
    state = str(tmp_path / "s.json")
    command = [sys.executable, "-m", "warrantor.cli.main", "audit", "--server", url, "--state", state]
    done = subprocess.run(command, check=False, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "LOG CONSISTENT" in done.stdout
    unreachable = [*command[:5], "http://127.0.0.1:9", *command[6:]]
    assert subprocess.run(unreachable, check=False, capture_output=True, timeout=60).returncode == 2
