"""``warrantor policy simulate DIR --server URL --api-key KEY`` against a real server process:
the bundle is uploaded (not activated) and replayed over the recorded actions."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from support import WIRE, bearer, server_process
from warrantor.cli.main import main as cli

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "policy" / "payments"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    data_dir = tmp_path_factory.mktemp("simulate-server")
    with server_process(data_dir) as handle:
        demo = json.loads((data_dir / "demo.json").read_text())
        actions = {}
        for name, amount in (("small", 100_000), ("medium", 2_000_000), ("large", 6_000_000)):
            r = httpx.post(f"{handle.url}/v1/actions", headers=bearer(demo["agent_key"]),
                           json={"action_type": "wire_transfer", "details": name,
                                 "payload": {**WIRE, "amount_minor": amount}})
            assert r.status_code == 201, r.text
            actions[name] = r.json()["action_id"]
        yield {"url": handle.url, "admin": demo["admin_key"], "agent": demo["agent_key"],
               "enforced": demo["bundle_hash"], "actions": actions}


@pytest.fixture
def stricter(tmp_path: Path) -> Path:
    """The example bundle with the approval threshold lowered from 50,000 to 10,000 EUR."""
    bundle = tmp_path / "stricter"
    shutil.copytree(EXAMPLE, bundle)
    wires = bundle / "wires.cedar"
    wires.write_text(wires.read_text().replace("amount_minor > 5000000", "amount_minor > 1000000"))
    return bundle


def _simulate(capsys: Any, bundle: Path, server: dict[str, Any], *flags: str, key: str | None = None) -> tuple[
        int, str, str]:
    code = cli(["policy", "simulate", str(bundle), "--server", server["url"], "--api-key", key or server["admin"],
                *flags])
    out, err = capsys.readouterr()
    return code, out, err


def test_a_stricter_bundle_reports_the_decision_it_would_change(server: dict[str, Any], stricter: Path,
                                                                capsys: Any) -> None:
    code, out, _ = _simulate(capsys, stricter, server, "--json")
    assert code == 0, out
    report = json.loads(out)
    assert report["ok"] is True and report["uploaded"]["activated"] is False
    assert report["replayed"] == 3 and report["changed"] == 1
    assert report["transitions"] == {"allow->require_approval": 1}
    (change,) = report["changes"]
    assert change["action_id"] == server["actions"]["medium"]
    assert change["new"]["rules"][0] == "wire-approval-50k"  # the rule keeps its id; its threshold moved
    # uploaded, not activated: the demo bundle is still the one enforced
    listed = httpx.get(f"{server['url']}/v1/policies", headers=bearer(server["admin"])).json()["data"]
    modes = {b["bundle_hash"]: b["active_mode"] for b in listed}
    assert modes[report["bundle_hash"]] is None and modes[server["enforced"]] == "enforce"

    code, out, _ = _simulate(capsys, stricter, server)
    assert code == 0
    assert "1 decision would change" in out and "allow -> require_approval" in out
    assert server["actions"]["medium"] in out and "(not activated)" in out


def test_the_same_bundle_changes_nothing_and_since_limits_the_replay(server: dict[str, Any], capsys: Any) -> None:
    code, out, _ = _simulate(capsys, EXAMPLE, server, "--json")
    assert code == 0
    assert json.loads(out)["changed"] == 0
    code, out, _ = _simulate(capsys, EXAMPLE, server, "--since", "2999-01-01T00:00:00Z", "--json")
    assert code == 0 and json.loads(out)["replayed"] == 0


def test_problems_only_the_server_can_see_are_mapped_to_their_file(server: dict[str, Any], tmp_path: Path,
                                                                   capsys: Any) -> None:
    bundle = tmp_path / "unknown-approver"
    shutil.copytree(EXAMPLE, bundle)
    email = bundle / "email.cedar"
    email.write_text(email.read_text().replace('@approvers("comms-reviewers")', '@approvers("nobody-here")'))
    line = next(n for n, text in enumerate(email.read_text().splitlines(), 1) if '@id("email-external")' in text)
    code, out, _ = _simulate(capsys, bundle, server)
    assert code == 1
    assert f"{email}:{line}:1: cedar: @approvers:" in out and "(APPROVER_UNKNOWN)" in out
    code, out, _ = _simulate(capsys, bundle, server, "--json")
    assert code == 1 and json.loads(out)["problems"][0]["code"] == "APPROVER_UNKNOWN"


def test_refusals_and_usage_errors(server: dict[str, Any], capsys: Any) -> None:
    code, out, err = _simulate(capsys, EXAMPLE, server, "--json", key=server["agent"])
    assert code == 1
    assert json.loads(out)["error"]["code"] == "FORBIDDEN_ROLE" and "FORBIDDEN_ROLE" in err
    code, _, err = _simulate(capsys, EXAMPLE, server, "--since", "last tuesday")
    assert code == 2 and "--since" in err
    code, _, err = _simulate(capsys, EXAMPLE, {**server, "url": "http://127.0.0.1:9"})
    assert code == 1 and "UNREACHABLE" in err
