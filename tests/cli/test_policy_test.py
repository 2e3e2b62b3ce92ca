"""``warrantor policy test DIR CASES.yaml``: offline decisions, the server's own, in a table."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from support import Env
from warrantor.cli.bundle_dir import read_bundle_dir
from warrantor.cli.main import main as cli

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "policy" / "payments"
CASES = ROOT / "examples" / "policy" / "payments-cases.yaml"
WIRE = {"amount_minor": 100000, "currency": "EUR", "beneficiary": "ACME GmbH"}


def _test(capsys: Any, cases: Path, *flags: str, bundle: Path = EXAMPLE) -> tuple[int, str, str]:
    code = cli(["policy", "test", str(bundle), str(cases), *flags])
    out, err = capsys.readouterr()
    return code, out, err


def _cases(tmp_path: Path, cases: Any) -> Path:
    path = tmp_path / "cases.yaml"
    path.write_text(yaml.safe_dump(cases) if not isinstance(cases, str) else cases)
    return path


def test_the_example_cases_pass(capsys: Any) -> None:
    code, out, err = _test(capsys, CASES)
    assert code == 0, out
    n = len(yaml.safe_load(CASES.read_text()))
    assert out.count("\nPASS ") == n and f"{n} passed, 0 failed, 0 errors" in out
    assert "budgets or rate limits" in out  # the example config has a budget: said not to be evaluated
    assert err == ""
    code, out, _ = _test(capsys, CASES, "--json")
    result = json.loads(out)
    assert code == 0 and result["ok"] is True and result["passed"] == n
    assert all(c["result"] == "pass" and c["got"]["evaluation_hash"] for c in result["cases"]
               if c["got"]["stage"] != "detectors")


def test_a_mismatch_fails_the_run_and_says_what_differs(tmp_path: Path, capsys: Any) -> None:
    cases = _cases(tmp_path, [
        {"name": "small wire", "intent": {"action_type": "wire_transfer", "payload": WIRE},
         "expect": {"effect": "allow"}},
        {"name": "big wire thought fine", "intent": {"action_type": "wire_transfer",
                                                     "payload": {**WIRE, "amount_minor": 6_000_000}},
         "expect": {"effect": "allow"}},
        {"name": "wrong rule", "intent": {"action_type": "wire_transfer",
                                          "payload": {**WIRE, "amount_minor": 200_000_000}},
         "expect": {"effect": "deny", "rules": ["wire-approval-50k"], "reason": "AMOUNT_CAP"}},
        {"name": "wrong reason", "intent": {"action_type": "wire_transfer", "payload": {**WIRE, "currency": "USD"}},
         "expect": {"effect": "require_approval", "reason": "APPROVAL_THRESHOLD", "stage": "policy"}},
    ])
    code, out, _ = _test(capsys, cases)
    assert code == 1
    assert "1 passed, 3 failed, 0 errors" in out
    assert "-> effect: expected allow, got require_approval" in out
    assert "-> rules: expected ['wire-approval-50k'], got ['wire-cap-1m']" in out
    assert "-> reason: expected APPROVAL_THRESHOLD, got UNSUPPORTED_CURRENCY" in out
    code, out, _ = _test(capsys, cases, "--json")
    result = json.loads(out)
    assert code == 1 and result["ok"] is False
    assert [c["result"] for c in result["cases"]] == ["pass", "fail", "fail", "fail"]


def test_intents_the_api_refuses_or_that_need_a_server_are_errors(tmp_path: Path, capsys: Any) -> None:
    cases = _cases(tmp_path, [
        {"name": "float amount", "intent": {"action_type": "wire_transfer", "payload": {**WIRE, "amount_minor": 1.5}},
         "expect": {"effect": "deny"}},
        {"name": "unknown field", "intent": {"action_type": "wire_transfer", "payload": WIRE, "amount": 1},
         "expect": {"effect": "allow"}},
        {"name": "under a grant", "intent": {"action_type": "refund", "authorization_id": "auth_x", "scope": "refunds",
                                             "resource": "order:1", "payload": {}}, "expect": {"effect": "allow"}},
        {"name": "amount as text", "expect": {"effect": "deny"},
         "intent": {"action_type": "wire_transfer", "payload": {**WIRE, "amount_minor": "1000"}}},
    ])
    code, out, _ = _test(capsys, cases, "--json")
    assert code == 1
    result = json.loads(out)
    assert result["errors"] == 4
    errors = [c["error"] for c in result["cases"]]
    assert "INVALID_INTENT" in errors[0]  # a float: the policy stage's own refusal (422)
    assert errors[1].startswith("intent.amount:")
    assert "needs server state" in errors[2]
    assert errors[3].startswith("PAYLOAD_SCHEMA_MISMATCH: payload.amount_minor: expected Long, got string")


def test_decisions_are_the_servers_evaluate_decisions(env: Env, capsys: Any) -> None:
    """Every example case, decided offline and by POST /v1/policies/evaluate on the same
    bundle: the same effect, stage, reason, rules and evaluation hash."""
    r = env.client.post("/v1/policies", json=read_bundle_dir(EXAMPLE).raw, headers=env.h("admin"))
    assert r.status_code == 201, r.text
    bundle_hash = r.json()["bundle_hash"]
    code, out, _ = _test(capsys, CASES, "--json")
    assert code == 0
    result = json.loads(out)
    assert result["bundle_hash"] == bundle_hash
    for case, offline in zip(yaml.safe_load(CASES.read_text()), result["cases"], strict=True):
        r = env.client.post("/v1/policies/evaluate", json={"action": case["intent"], "bundle_hash": bundle_hash},
                            headers=env.h("admin"))
        assert r.status_code == 200, r.text
        server = r.json()["decision"]
        got = offline["got"]
        assert (got["effect"], got["stage"], got["reason"], got["evaluation_hash"]) == (
            server["effect"], server["stage"], server["reason"], server["evaluation_hash"]), case["name"]
        assert got["matched"] == [rule["id"] for rule in server["rules"]], case["name"]


def test_an_invalid_bundle_runs_no_case(tmp_path: Path, capsys: Any) -> None:
    bundle = tmp_path / "bundle"
    shutil.copytree(EXAMPLE, bundle)
    (bundle / "refunds.cedar").write_text('// refunds\n@id("r") @reason("R")\npermit (principal, action, resource)\n')
    code, out, _ = _test(capsys, CASES, bundle=bundle)
    assert code == 1
    assert "no case was run" in out
    # Cedar sees one text: the missing ';' surfaces in the next file, and the hint names the cause
    assert f"{bundle / 'wires.cedar'}:3:1: cedar: unexpected token" in out
    assert f"hint: {bundle / 'refunds.cedar'}:2:1: this file's last policy has no ';'" in out
    code, out, _ = _test(capsys, CASES, "--json", bundle=bundle)
    assert json.loads(out)["hints"][0]["file"] == str(bundle / "refunds.cedar")


@pytest.mark.parametrize(("cases", "message"), [
    ("{}", "expected a non-empty YAML list of cases"),
    ("- [1, 2]", "expected a mapping with name, intent, expect"),
    ("- {name: a, intent: {action_type: x}, expect: {effect: maybe}}", "expected expect.effect in allow"),
    ("- {name: a, intent: {action_type: x}, expect: {effect: allow, rule: [x]}}", "unknown expect keys ['rule']"),
    ("- {name: a, intent: {action_type: x}, expect: {effect: allow}}\n"
     "- {name: a, intent: {action_type: x}, expect: {effect: allow}}", "duplicate name 'a'"),
    ("- {name: a, intent: [}", "invalid YAML"),
])
def test_a_malformed_cases_file_is_a_usage_error(tmp_path: Path, capsys: Any, cases: str, message: str) -> None:
    code, _, err = _test(capsys, _cases(tmp_path, cases))
    assert code == 2 and message in err
    code, out, _ = _test(capsys, _cases(tmp_path, cases), "--json")
    assert code == 2 and message in json.loads(out)["error"]


def test_a_missing_cases_file_is_a_usage_error(tmp_path: Path, capsys: Any) -> None:
    code, _, err = _test(capsys, tmp_path / "nope.yaml")
    assert code == 2 and "cannot read" in err
