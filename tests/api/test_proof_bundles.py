"""Proof bundles: what an auditor holding only ``GET /v1/trust`` can verify, and what it catches."""

from __future__ import annotations

import base64
import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from support import WIRE, Env, make_env
from warrantor.cli.main import main as cli
from warrantor.evidence.canonical import digest, sha256_hex
from warrantor.evidence.checkpoint import Checkpoint, NoteSigner, sign_note
from warrantor.evidence.dsse import Envelope
from warrantor.evidence.keys import SigningKey
from warrantor.evidence.proofs import ProofBundle, TrustBundle
from warrantor.verify import verify_bundle


@pytest.fixture
def fast(tmp_path: Path) -> Any:
    with make_env(tmp_path, integrate_interval_ms=50) as env:
        yield env


def _denied_receipt(env: Env) -> str:
    r = env.authorize(payload={**WIRE, "amount_minor": 200_000_000})
    assert r.status_code == 403
    receipt_id: str = r.json()["details"]["receipt_id"]
    return receipt_id


def _bundle(env: Env, kind: str, evidence_id: str, role: str = "auditor") -> dict[str, Any]:
    r = env.client.get(f"/v1/{kind}s/{evidence_id}/bundle", headers=env.h(role))
    assert r.status_code == 200, r.text
    doc: dict[str, Any] = r.json()
    return doc


def _write(path: Path, doc: Any) -> Path:
    path.write_text(json.dumps(doc) if not isinstance(doc, str) else doc)
    return path


def _warrantor(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "warrantor.cli.main", *args]
    return subprocess.run(command, check=False, capture_output=True, text=True, timeout=60)


def test_an_auditor_with_only_the_trust_bundle_verifies_a_receipt_offline(fast: Env, tmp_path: Path) -> None:
    receipt_id = _denied_receipt(fast)
    bundle = _write(tmp_path / "receipt.json", _bundle(fast, "receipt", receipt_id))
    trust = _write(tmp_path / "trust.json", fast.client.get("/v1/trust").json())  # public, no key
    done = _warrantor("verify", str(bundle), "--trust", str(trust))
    assert done.returncode == 0, done.stdout + done.stderr
    for check in ("signature", "key_validity", "subject_digest", "inclusion", "checkpoint_signature", "timestamp"):
        assert f"PASS  {check}" in done.stdout
    assert done.stdout.rstrip().endswith("VERIFIED")


def test_tlog_proof_text_form_verifies_too(fast: Env, tmp_path: Path) -> None:
    receipt_id = _denied_receipt(fast)
    r = fast.client.get(f"/v1/receipts/{receipt_id}/bundle?format=tlog-proof", headers=fast.h("agent"))
    assert r.status_code == 200 and r.text.startswith("c2sp.org/tlog-proof@v1\n")
    trust = _write(tmp_path / "trust.json", fast.client.get("/v1/trust").json())
    assert cli(["verify", str(_write(tmp_path / "r.proof", r.text)), "--trust", str(trust)]) == 0


def _flip_payload(doc: dict[str, Any]) -> dict[str, Any]:
    payload = bytearray(base64.b64decode(doc["envelope"]["payload"]))
    payload[payload.index(b'"denied"') + 1] ^= 0x01
    return {**doc, "envelope": {**doc["envelope"], "payload": base64.b64encode(bytes(payload)).decode()}}


def _foreign_trust(trust: dict[str, Any]) -> dict[str, Any]:
    other = SigningKey.from_seed(b"f" * 32).verify_key()
    key = {"keyid": other.keyid, "public_key": other.public_key_b64(), "not_before": None, "not_after": None}
    return {**trust, "signing_keys": [key]}


def _truncate_proof(doc: dict[str, Any]) -> dict[str, Any]:
    return {**doc, "log": {**doc["log"], "inclusion_proof": doc["log"]["inclusion_proof"][:-1]}}


def _forked_checkpoint(doc: dict[str, Any]) -> dict[str, Any]:
    """Same origin and size, another root, signed by a key that is not the log's."""
    cp = Checkpoint.from_body(doc["log"]["checkpoint"].split("\n\n")[0] + "\n")
    fork = Checkpoint(cp.origin, cp.size, b"\x42" * 32)
    note = sign_note(fork.body(), [NoteSigner(cp.origin, SigningKey.from_seed(b"k" * 32))])
    return {**doc, "log": {**doc["log"], "checkpoint": note}}


@pytest.mark.parametrize(
    ("tamper", "failing_check"),
    [
        (lambda d, t: (_flip_payload(d), t), "signature"),
        (lambda d, t: (d, _foreign_trust(t)), "signature"),
        (lambda d, t: (_truncate_proof(d), t), "inclusion"),
        (lambda d, t: (_forked_checkpoint(d), t), "checkpoint_signature"),
    ],
    ids=["tampered-receipt", "foreign-key", "truncated-proof", "forked-checkpoint"],
)
def test_tampering_is_caught_by_a_named_check(fast: Env, tmp_path: Path, tamper: Any, failing_check: str) -> None:
    doc, trust = tamper(_bundle(fast, "receipt", _denied_receipt(fast)), fast.client.get("/v1/trust").json())
    report = verify_bundle(ProofBundle.from_dict(doc), TrustBundle.from_dict(trust))
    assert not report.ok
    assert not report.check(failing_check).ok
    bundle, trust_file = _write(tmp_path / "b.json", doc), _write(tmp_path / "t.json", trust)
    assert cli(["verify", str(bundle), "--trust", str(trust_file)]) == 1


def test_a_rewritten_evidence_row_fails_inclusion(fast: Env) -> None:
    receipt_id = _denied_receipt(fast)
    _bundle(fast, "receipt", receipt_id)  # integrated before the rewrite
    other = _denied_receipt(fast)
    with fast.services.store.read() as repo:
        forged = repo.get_evidence(fast.tenant_id, other)
    assert forged is not None  # a genuinely signed envelope, put in the wrong row
    db = sqlite3.connect(fast.settings.data_dir / "warrantor.db")
    db.execute("UPDATE evidence SET envelope_json = ? WHERE id = ?", (json.dumps(forged.envelope), receipt_id))
    db.commit()
    db.close()
    report = verify_bundle(ProofBundle.from_dict(_bundle(fast, "receipt", receipt_id)),
                           TrustBundle.from_dict(fast.client.get("/v1/trust").json()))
    assert report.check("signature").ok and not report.check("inclusion").ok


def test_warrant_bundle_and_stateless_verify_endpoint(fast: Env) -> None:
    warrant_id = fast.authorize().json()["warrant_id"]
    doc = _bundle(fast, "warrant", warrant_id, role="agent")
    assert set(doc) == {"envelope", "log"}
    assert set(doc["log"]) == {"index", "tree_size", "inclusion_proof", "checkpoint", "timestamp_token",
                               "timestamp_response"}
    report = fast.client.post("/v1/verify", json={"bundle": doc}).json()
    assert report["ok"] is True and len(report["checks"]) == 6
    bad = fast.client.post("/v1/verify", json={"bundle": _truncate_proof(doc)}).json()
    assert bad["ok"] is False
    assert [c["name"] for c in bad["checks"] if not c["ok"]] == ["inclusion"]
    foreign_trust = _foreign_trust(fast.client.get("/v1/trust").json())
    foreign = fast.client.post("/v1/verify", json={"bundle": doc, "trust": foreign_trust})
    assert foreign.json()["ok"] is False
    r = fast.client.post("/v1/verify", json={"bundle": {"envelope": {}}})
    assert (r.status_code, r.json()["code"]) == (422, "INVALID_BUNDLE")


def test_bundles_are_tenant_scoped(fast: Env) -> None:
    receipt_id = _denied_receipt(fast)
    other = fast.new_tenant()
    r = fast.client.get(f"/v1/receipts/{receipt_id}/bundle", headers={"Authorization": f"Bearer {other['auditor']}"})
    assert r.status_code == 404
    warrant_id = fast.authorize().json()["warrant_id"]
    assert fast.client.get(f"/v1/receipts/{warrant_id}/bundle", headers=fast.h("agent")).status_code == 404
    assert fast.client.get(f"/v1/warrants/{warrant_id}/bundle").status_code == 401


def test_not_yet_integrated_is_409_with_retry_after(fast: Env) -> None:
    fast.services.integrator.stop()
    warrant_id = fast.authorize().json()["warrant_id"]
    r = fast.client.get(f"/v1/warrants/{warrant_id}/bundle", headers=fast.h("agent"))
    assert (r.status_code, r.json()["code"]) == (409, "NOT_YET_INTEGRATED")
    assert r.headers["retry-after"] == "1"
    fast.services.integrator.start()
    assert fast.client.get(f"/v1/warrants/{warrant_id}/bundle", headers=fast.h("agent")).status_code == 200


def _policy_file(env: Env, tmp_path: Path, bundle_hash: str) -> Path:
    doc = env.client.get(f"/v1/policies/{bundle_hash}", headers=env.h("auditor")).json()
    return _write(tmp_path / "policy.json", doc)


def test_replay_reproduces_a_warrants_decision(fast: Env, tmp_path: Path, capsys: Any) -> None:
    authorized = fast.authorize().json()
    bundle = _write(tmp_path / "w.json", _bundle(fast, "warrant", authorized["warrant_id"]))
    trust = _write(tmp_path / "t.json", fast.client.get("/v1/trust").json())
    policy = _policy_file(fast, tmp_path, fast.bundle_hash)
    args = ["verify", str(bundle), "--trust", str(trust), "--replay", "--policy", str(policy)]
    # The warrant signs only the committed intent (salted digests of the payload details):
    # the action's detail supplies the intent and its salt.
    assert cli(args) == 1
    assert "pass --intent" in capsys.readouterr().out
    detail = fast.client.get(f"/v1/actions/{authorized['action_id']}", headers=fast.h("auditor")).json()
    assert cli([*args, "--intent", str(_write(tmp_path / "action.json", detail))]) == 0
    assert "PASS  replay" in capsys.readouterr().out


def test_replay_fails_under_another_policy_or_without_the_intent(fast: Env, tmp_path: Path, capsys: Any) -> None:
    warrant_id = fast.authorize().json()["warrant_id"]
    trust = _write(tmp_path / "t.json", fast.client.get("/v1/trust").json())
    policy = json.loads(_policy_file(fast, tmp_path, fast.bundle_hash).read_text())
    policy["bundle"]["cedar"] = policy["bundle"]["cedar"] + "\n// edited\n"
    edited = _write(tmp_path / "edited.json", policy)
    bundle = _write(tmp_path / "w.json", _bundle(fast, "warrant", warrant_id))
    assert cli(["verify", str(bundle), "--trust", str(trust), "--replay", "--policy", str(edited)]) == 1
    assert "FAIL  replay" in capsys.readouterr().out
    receipt = _write(tmp_path / "r.json", _bundle(fast, "receipt", _denied_receipt(fast)))
    original = _policy_file(fast, tmp_path, fast.bundle_hash)
    assert cli(["verify", str(receipt), "--trust", str(trust), "--replay", "--policy", str(original)]) == 1
    assert "--intent" in capsys.readouterr().out


def test_replay_of_a_receipt_with_its_intent(fast: Env, tmp_path: Path, capsys: Any) -> None:
    receipt_id = _denied_receipt(fast)
    with fast.services.store.read() as repo:
        ev = repo.get_evidence(fast.tenant_id, receipt_id)
        assert ev is not None and ev.action_id is not None
        action = repo.get_action(fast.tenant_id, ev.action_id)
    assert action is not None
    intent = _write(tmp_path / "intent.json", {"intent": action.intent, "intent_salt": action.details_salt})
    receipt = _write(tmp_path / "r.json", _bundle(fast, "receipt", receipt_id))
    trust = _write(tmp_path / "t.json", fast.client.get("/v1/trust").json())
    policy = _policy_file(fast, tmp_path, fast.bundle_hash)
    args = ["verify", str(receipt), "--trust", str(trust), "--replay", "--policy", str(policy)]
    assert cli([*args, "--intent", str(intent)]) == 0
    other = _write(tmp_path / "other.json", {"intent": {**action.intent, "details": "something else"},
                                             "intent_salt": action.details_salt})
    assert cli([*args, "--intent", str(other)]) == 1
    assert "expected an intent with sha256" in capsys.readouterr().out


def test_a_childs_evidence_commits_to_its_parents_envelope(fast: Env) -> None:
    parent = fast.authorize().json()
    child = fast.authorize(parent_action_id=parent["action_id"], details="follow-up").json()
    statement = Envelope.from_dict(child["warrant"]).statement()
    parent_digest = sha256_hex(Envelope.from_dict(parent["warrant"]).canonical_bytes())
    assert statement["predicate"]["parent"]["evidence_digest"] == parent_digest
    assert statement["predicate"]["parent"]["intent_digest"] == digest(
        Envelope.from_dict(parent["warrant"]).statement()["predicate"]["intent"]
    )
    chain = fast.client.get(f"/v1/actions/{child['action_id']}/chain", headers=fast.h("auditor")).json()["chain"]
    assert [c["action_id"] for c in chain] == [child["action_id"], parent["action_id"]]
    assert chain[1]["evidence"][0]["envelope_digest"] == parent_digest
