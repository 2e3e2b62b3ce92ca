"""examples/agent/agent.py, run as a user would: a child process against a real Warrantor
server, with its fake bank and mail providers on 127.0.0.1. An approver approves the held
invoice in the console while the example waits."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from adapter_support import Warrantor, require, warrantor_server

from support import bearer

require("pydantic_ai", "pydantic-ai")

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "agent" / "agent.py"


@pytest.fixture(scope="module")
def wr(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Warrantor]:
    with warrantor_server(tmp_path_factory.mktemp("warrantor")) as server:
        yield server


def pending(wr: Warrantor) -> list[dict[str, Any]]:
    r = httpx.get(f"{wr.url}/v1/actions?status=pending_approval", headers=bearer(wr.demo["admin_key"]), timeout=10)
    r.raise_for_status()
    return list(r.json()["data"])


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_the_example_agent_pays_what_warrantor_allows_after_approval(wr: Warrantor, tmp_path: Path) -> None:
    outbox = tmp_path / "outbox"
    proc = subprocess.Popen(
        [sys.executable, str(EXAMPLE), "--warrantor-url", wr.url, "--outbox", str(outbox),
         "--invoice", "ACME GmbH=1200.00=INV-1", "--invoice", "Globex AG=75000.00=INV-2",
         "--invoice", "Initech=1500000.00=INV-3", "--notify", "finance@example.com", "--approval-timeout", "60"],
        env={**os.environ, "WARRANTOR_API_KEY": wr.demo["agent_key"]},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (held := pending(wr)) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(held) == 1 and held[0]["action_type"] == "wire_transfer", held
        # Pydantic AI runs the model's three calls concurrently: INV-2 can be held before INV-1's
        # transfer reaches the bank, so wait for that transfer rather than assume it came first.
        while not lines(outbox / "bank.jsonl") and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert [t["reference"] for t in lines(outbox / "bank.jsonl")] == ["INV-1"]   # INV-2 waits
        wr.decide_in_console(held[0]["action_id"])
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert proc.returncode == 0, err
    assert f"/console/actions/{held[0]['action_id']}" in err
    summary = json.loads(out)
    transfers = lines(outbox / "bank.jsonl")
    assert [(t["reference"], t["amount_minor"]) for t in transfers] == [("INV-1", 120_000), ("INV-2", 7_500_000)]
    by_call = {p["tool_call_id"]: p for p in summary["payments"]}
    assert "POLICY_DENIED" in by_call["pay_INV-3"]["result"] and by_call["pay_INV-3"]["warrantor"] is None
    for ref in ("INV-1", "INV-2"):
        report = by_call[f"pay_{ref}"]["warrantor"]
        assert report["status"] == "notarized"
        assert wr.action(report["action_id"])["receipt"]["receipt_id"] == report["receipt_id"]
    assert by_call["pay_INV-2"]["warrantor"]["action_id"] == held[0]["action_id"]
    [mail] = lines(outbox / "mail.jsonl")                       # the @guard-ed summary e-mail
    assert mail["to"] == "finance@example.com" and summary["email"] == {"message_id": mail["id"]}
    assert summary["pending"] == []
    r = httpx.get(f"{wr.url}/v1/actions?action_type=send_email", headers=bearer(wr.demo["admin_key"]), timeout=10)
    assert [a["status"] for a in r.json()["data"]] == ["notarized"]
