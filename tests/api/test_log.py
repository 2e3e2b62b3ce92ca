"""The transparency log over HTTP: checkpoints, RFC 9162 proofs, witnesses, integration, tamper detection."""

from __future__ import annotations

import base64
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from asn1crypto import cms

from support import Env, make_env
from warrantor.evidence.checkpoint import COSIG_SIG_TYPE, NoteVerifier, cosign, open_checkpoint, verify_cosignature
from warrantor.evidence.keys import SigningKey
from warrantor.evidence.merkle import leaf_hash, root_from_leaves, verify_consistency, verify_inclusion
from warrantor.evidence.proofs import TrustBundle
from warrantor.evidence.tsa import verify_timestamp
from warrantor.server.app import open_services
from warrantor.service.proof.transparency import LogInconsistentError


def _b(text: str) -> bytes:
    return base64.b64decode(text)


def _wait_for_size(env: Env, size: int, timeout: float = 5.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        doc: dict[str, Any] = env.client.get("/v1/log/checkpoint?format=json").json()
        if doc.get("size", -1) >= size or time.monotonic() > deadline:
            return doc
        time.sleep(0.05)


def _log_size(env: Env) -> int:
    with env.services.store.read() as repo:
        return repo.counter("log_size")


def _leaves(env: Env) -> list[bytes]:
    with env.services.store.read() as repo:
        return [leaf_hash(e) for e in repo.log_entries_from(0, 10_000)]


@pytest.fixture
def fast(tmp_path: Path) -> Any:
    witness = SigningKey.from_seed(b"w" * 32)
    vkey = NoteVerifier("witness.example", witness.public_key, COSIG_SIG_TYPE).to_vkey()
    with make_env(tmp_path, integrate_interval_ms=50, witness_keys=vkey) as env:
        env.extra["witness"] = witness
        yield env


def test_checkpoint_is_a_signed_note_with_a_token_over_its_body(fast: Env) -> None:
    fast.authorize()
    doc = _wait_for_size(fast, _log_size(fast))
    trust = TrustBundle.from_dict(fast.client.get("/v1/trust").json())
    r = fast.client.get("/v1/log/checkpoint")
    assert r.headers["content-type"].startswith("text/plain")
    checkpoint = open_checkpoint(r.text, trust.log_verifier, origin=trust.log_origin)
    assert checkpoint.size == doc["size"] and checkpoint.root_hash == _b(doc["root_hash"])
    assert checkpoint.root_hash == root_from_leaves(_leaves(fast)[: checkpoint.size])
    body = r.text.split("\n\n")[0] + "\n"
    assert trust.tsa_root_pem is not None
    verify_timestamp(_b(doc["timestamp_token"]), body.encode(), trust.tsa_root_pem)


def test_inclusion_and_consistency_proofs_verify_for_every_size(fast: Env) -> None:
    for i in range(6):
        fast.authorize(details=f"invoice {i}")
    size = _wait_for_size(fast, _log_size(fast))["size"]
    leaves = _leaves(fast)[:size]
    assert size >= 7  # the demo's policy activation plus six warrants
    for n in range(1, size + 1):
        root = root_from_leaves(leaves[:n])
        for index in range(n):
            doc = fast.client.get(f"/v1/log/proof/inclusion?index={index}&size={n}").json()
            path = [_b(h) for h in doc["inclusion_path"]]
            assert verify_inclusion(leaves[index], index, n, path, root), (index, n)
        for old in range(n + 1):
            doc = fast.client.get(f"/v1/log/proof/consistency?old={old}&new={n}").json()
            path = [_b(h) for h in doc["consistency_path"]]
            assert verify_consistency(old, n, path, root_from_leaves(leaves[:old]), root), (old, n)


@pytest.mark.parametrize(
    "query",
    [
        "inclusion?index=5&size=5",
        "inclusion?index=0&size=0",
        "inclusion?index=-1&size=2",
        "inclusion?index=0&size=999999",
        "inclusion?index=x&size=2",
        "inclusion?size=2",
        "consistency?old=3&new=2",
        "consistency?old=0&new=999999",
        "consistency?old=1&new=99999999999999999999999999",
    ],
)
def test_bad_proof_ranges_are_4xx_problems(fast: Env, query: str) -> None:
    _wait_for_size(fast, 1)
    r = fast.client.get(f"/v1/log/proof/{query}")
    assert 400 <= r.status_code < 500, r.text
    assert r.headers["content-type"].startswith("application/problem+json")


def test_witness_cosignature_is_accepted_and_served(fast: Env) -> None:
    doc = _wait_for_size(fast, 1)
    note = doc["note"]
    body = note.split("\n\n")[0] + "\n"
    witness = NoteVerifier("witness.example", fast.extra["witness"].public_key, COSIG_SIG_TYPE)
    line = cosign(body, fast.extra["witness"], "witness.example", 1_700_000_000).to_line()
    r = fast.client.post("/v1/log/cosignatures", json={"size": doc["size"], "cosignature": line})
    assert r.status_code == 201, r.text
    served = fast.client.get("/v1/log/checkpoint").text
    if fast.client.get("/v1/log/checkpoint?format=json").json()["size"] == doc["size"]:
        assert verify_cosignature(served, witness) == 1_700_000_000


def test_cosignatures_from_unknown_witnesses_or_bad_signatures_are_refused(fast: Env) -> None:
    doc = _wait_for_size(fast, 1)
    body = doc["note"].split("\n\n")[0] + "\n"
    stranger = cosign(body, SigningKey.from_seed(b"s" * 32), "witness.example", 1).to_line()
    r = fast.client.post("/v1/log/cosignatures", json={"size": doc["size"], "cosignature": stranger})
    assert (r.status_code, r.json()["code"]) == (422, "UNKNOWN_WITNESS")
    wrong_body = body.replace(doc["note"].split("\n")[1], "12345", 1)
    forged = cosign(wrong_body, fast.extra["witness"], "witness.example", 1).to_line()
    r = fast.client.post("/v1/log/cosignatures", json={"size": doc["size"], "cosignature": forged})
    assert (r.status_code, r.json()["code"]) == (422, "INVALID_COSIGNATURE")
    r = fast.client.post("/v1/log/cosignatures", json={"size": doc["size"], "cosignature": "not a line at all"})
    assert (r.status_code, r.json()["code"]) == (422, "INVALID_COSIGNATURE")


def test_integration_is_bounded_and_reported_in_metrics(env: Env) -> None:
    """Default settings: a new entry is in a signed checkpoint well within one second."""
    _wait_for_size(env, _log_size(env))
    started = time.monotonic()
    env.authorize()
    target = _log_size(env)
    doc = _wait_for_size(env, target, timeout=2)
    assert doc["size"] >= target
    assert time.monotonic() - started < 1.0
    metrics = env.client.get("/metrics").text
    assert "warrantor_log_integration_latency_seconds_count" in metrics
    count = next(ln for ln in metrics.splitlines() if ln.startswith("warrantor_log_integration_latency_seconds_count"))
    assert float(count.split()[-1]) >= 1
    assert f"warrantor_log_size {float(doc['size'])}" in metrics


def _serial(token_b64: str) -> int:
    info = cms.ContentInfo.load(_b(token_b64))["content"]["encap_content_info"]["content"].parsed
    return int(info["serial_number"].native)


def test_tsa_serial_numbers_are_unique_and_persisted(tmp_path: Path) -> None:
    serials = []
    for _ in range(2):  # a restart must not reuse a serial number
        with make_env(tmp_path, integrate_interval_ms=50) as env:
            env.authorize()
            serials.append(_serial(_wait_for_size(env, _log_size(env))["timestamp_token"]))
            env.authorize()
            serials.append(_serial(_wait_for_size(env, _log_size(env))["timestamp_token"]))
    assert len(set(serials)) == len(serials)
    assert serials == sorted(serials)


def test_a_rewritten_log_entry_is_detected_when_the_integrator_restarts(tmp_path: Path) -> None:
    with make_env(tmp_path, integrate_interval_ms=50) as env:
        env.authorize()
        _wait_for_size(env, _log_size(env))
        settings = env.settings
    db = sqlite3.connect(tmp_path / "warrantor.db")
    db.execute("UPDATE log_entries SET entry = ? WHERE idx = 0", (b"\x00" * 32,))
    db.commit()
    db.close()
    services = open_services(settings)
    try:
        with pytest.raises(LogInconsistentError, match="do not reproduce the root"):
            services.integrator.cycle()
        assert services.integrator.cycle() is None  # and it stays stopped
        with pytest.raises(LogInconsistentError):
            services.transparency.latest()
        with pytest.raises(LogInconsistentError):
            services.transparency.inclusion(0, 1)
    finally:
        services.store.close()


def test_a_rewritten_log_entry_makes_the_server_refuse_proofs(tmp_path: Path) -> None:
    with make_env(tmp_path, integrate_interval_ms=50) as env:
        env.authorize()
        _wait_for_size(env, _log_size(env))
    db = sqlite3.connect(tmp_path / "warrantor.db")
    db.execute("DELETE FROM log_entries WHERE idx = (SELECT MAX(idx) FROM log_entries)")
    db.commit()
    db.close()
    with make_env(tmp_path, integrate_interval_ms=50) as env:
        r = env.client.get("/v1/log/checkpoint")
        assert (r.status_code, r.json()["code"]) == (503, "LOG_INCONSISTENT")


def test_a_checkpoint_exists_as_soon_as_the_server_is_ready(env: Env) -> None:
    """Start-up integrates synchronously: an auditor's first look never finds a 404."""
    r = env.client.get("/v1/log/checkpoint?format=json")
    assert r.status_code == 200
    assert r.json()["size"] >= 1  # the demo bundle's activation is already in it


def test_responses_carry_the_log_index_their_evidence_was_given(env: Env) -> None:
    """Indices are assigned when the writer's batch ends, after the job that built the
    response; the notarize response still carries the receipt's stored index."""
    action_id = env.authorize().json()["action_id"]
    r = env.client.post(f"/v1/actions/{action_id}/notarize", json={"outcome": "completed"},
                        headers=env.h("agent"))
    assert r.status_code == 200, r.text
    stored = env.client.get(f"/v1/actions/{action_id}", headers=env.h("auditor")).json()
    assert r.json()["receipt"]["log_index"] == stored["receipt"]["log_index"] > stored["warrant"]["log_index"]
