"""Signing key rotation: old evidence keeps verifying, new evidence uses the new key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from support import WIRE, Env, make_env
from warrantor.cli.main import main as cli
from warrantor.evidence.proofs import ProofBundle, TrustBundle
from warrantor.verify import verify_bundle


@pytest.fixture
def fast(tmp_path: Path) -> Any:
    with make_env(tmp_path, integrate_interval_ms=50) as env:
        yield env


def _receipt_bundle(env: Env) -> ProofBundle:
    receipt_id = env.authorize(payload={**WIRE, "amount_minor": 200_000_000}).json()["details"]["receipt_id"]
    r = env.client.get(f"/v1/receipts/{receipt_id}/bundle", headers=env.h("auditor"))
    assert r.status_code == 200, r.text
    return ProofBundle.from_dict(r.json())


def test_evidence_signed_before_rotation_still_verifies_after_it(fast: Env) -> None:
    before = _receipt_bundle(fast)
    old_keyid = before.envelope.signatures[0].keyid
    new_keyid = fast.services.rotate_signing_key()
    assert new_keyid != old_keyid
    after = _receipt_bundle(fast)
    assert after.envelope.signatures[0].keyid == new_keyid
    warrant = fast.authorize().json()["warrant"]
    assert warrant["signatures"][0]["keyid"] == new_keyid

    trust = TrustBundle.from_dict(fast.client.get("/v1/trust").json())  # fetched after the rotation
    assert verify_bundle(before, trust).ok
    assert verify_bundle(after, trust).ok

    keys = {k["keyid"]: k for k in fast.client.get("/v1/keys").json()["keys"]}
    assert keys[old_keyid]["status"] == "retired" and keys[old_keyid]["not_after"] is not None
    assert keys[new_keyid]["status"] == "active" and keys[new_keyid]["not_after"] is None
    published = {k.keyid: k for k in trust.signing_keys}
    assert published[old_keyid].not_after is not None
    assert published[new_keyid].not_before is not None


def test_the_retired_key_cannot_vouch_for_evidence_dated_after_its_retirement(fast: Env) -> None:
    """key_validity: a stolen retired key signing 'new' evidence is caught."""
    before = _receipt_bundle(fast)
    fast.services.rotate_signing_key()
    _receipt_bundle(fast)
    trust = fast.client.get("/v1/trust").json()
    for key in trust["signing_keys"]:
        if key["keyid"] == before.envelope.signatures[0].keyid:
            key["not_after"] = "2000-01-01T00:00:00Z"
    report = verify_bundle(before, TrustBundle.from_dict(trust))
    assert report.check("signature").ok and not report.check("key_validity").ok


def test_keys_rotate_command(tmp_path: Path, capsys: Any) -> None:
    with make_env(tmp_path) as env:
        first = env.services.deps.keyring.active.keyid
    assert cli(["keys", "rotate", "--data-dir", str(tmp_path)]) == 0
    assert "new signing key" in capsys.readouterr().out
    with make_env(tmp_path, integrate_interval_ms=50) as env:
        assert env.services.deps.keyring.active.keyid != first
        assert _receipt_bundle(env).envelope.signatures[0].keyid != first
        statuses = {k["keyid"]: k["status"] for k in env.client.get("/v1/keys").json()["keys"]}
        assert statuses[first] == "retired"


def test_a_rotation_while_the_server_runs_applies_to_its_next_signature(fast: Env, tmp_path: Path, capsys: Any) -> None:
    """``warrantor keys rotate`` in another process, the server not restarted: evidence it
    signs afterwards uses the new key and verifies (signed with the retired key after the
    rotation instant, it would fail ``key_validity``)."""
    first = fast.services.deps.keyring.active.keyid
    assert cli(["keys", "rotate", "--data-dir", str(fast.settings.data_dir)]) == 0
    capsys.readouterr()
    after = _receipt_bundle(fast)
    assert after.envelope.signatures[0].keyid != first
    trust = fast.client.get("/v1/trust").json()
    report = verify_bundle(after, TrustBundle.from_dict(trust))
    assert report.check("signature").ok and report.check("key_validity").ok, report
