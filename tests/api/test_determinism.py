"""Determinism: the same canonical input under the same bundle gives the same
``evaluation_hash``, byte for byte, across processes and across a server restart.
Authorizations key the hash with their action's salt (policy/engine.py): the same input and
salt give the same hash anywhere; dry runs are unsalted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from support import make_env

ACTION = {
    "action_type": "wire_transfer",
    "details": "Pay invoice 42 (déjà vu: ünïcode and emoji \U0001f4b8)",
    "payload": {"amount_minor": 6_000_001, "currency": "EUR", "beneficiary": "ACME GmbH", "reference": "INV-42"},
    "agent_id": "payments-agent",
    "agent_version": "7",
    "model_id": "gpt-4o",
    "endpoint_url": "https://API.bank.example.:443/v1/wires",
    "labels": ["PII", "FINANCIAL_DATA"],
}

# Computed in a fresh interpreter from the policy layer alone (no server, no store).
CHILD = """
import json, sys
from warrantor.demo import demo_bundle
from warrantor.policy.bundle import parse_bundle
from warrantor.policy.engine import PolicyEngine, evaluation_hash
from warrantor.policy.normalize import build_input
a = json.loads(sys.argv[1])
bundle = parse_bundle(demo_bundle())
inp = build_input(agent_id=a["agent_id"], action_type=a["action_type"], payload=a["payload"],
                  details=a["details"], scope="", resource=None, endpoint_url=a["endpoint_url"],
                  labels=tuple(sorted(a["labels"])), agent_version=a["agent_version"],
                  model_id=a["model_id"], model_version="")
decision = PolicyEngine(bundle).evaluate(inp)
print(json.dumps({"bundle_hash": bundle.hash, "evaluation_hash": evaluation_hash(bundle.hash, inp, decision),
                  "salted": [evaluation_hash(bundle.hash, inp, decision, salt) for salt in sys.argv[2:]]}))
"""


def _in_subprocess(*salts: str) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-c", CHILD, json.dumps(ACTION), *salts], capture_output=True, text=True,
                         check=True, env={"PYTHONHASHSEED": "12345", "PATH": ""})
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def _served(data_dir: Path) -> tuple[str, str, str, str]:
    """(bundle hash, evaluate's hash, authorize's hash, its salt) from a server on ``data_dir``."""
    with make_env(data_dir) as env:
        explained = env.client.post("/v1/policies/evaluate", json={"action": ACTION}, headers=env.h("admin"))
        assert explained.status_code == 200, explained.text
        authorized = env.client.post("/v1/actions", json=ACTION, headers=env.h("admin"))
        assert authorized.status_code == 201, authorized.text
        assert authorized.json()["status"] == "pending_approval"
        return (env.bundle_hash, explained.json()["decision"]["evaluation_hash"],
                authorized.json()["decision"]["evaluation_hash"], authorized.json()["intent_salt"])


def test_evaluation_hash_is_identical_across_processes_and_restarts(tmp_path: Path) -> None:
    first = _served(tmp_path)
    second = _served(tmp_path)  # the same data directory, a new app, store and engine cache
    child = _in_subprocess(first[3], second[3])
    assert first[:2] == second[:2] and first[3] != second[3]  # one salt per action
    bundle_hash, explained, authorized, _ = first
    assert explained == child["evaluation_hash"]  # the dry run: unsalted
    assert [authorized, second[2]] == child["salted"] and authorized != second[2] != explained
    assert bundle_hash == child["bundle_hash"]
    assert len(explained) == 64 and int(explained, 16) >= 0


def test_a_different_input_gives_a_different_hash(tmp_path: Path) -> None:
    with make_env(tmp_path) as env:
        hashes = set()
        for amount in (1000, 1001):
            action = {**ACTION, "payload": {**ACTION["payload"], "amount_minor": amount}}
            r = env.client.post("/v1/policies/evaluate", json={"action": action}, headers=env.h("admin"))
            hashes.add(r.json()["decision"]["evaluation_hash"])
        assert len(hashes) == 2
