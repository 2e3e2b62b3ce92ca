"""POST /v1/confirm-execution: the warrant itself, what ran, and an execution integrity proof."""

from __future__ import annotations

import base64
import threading
from datetime import timedelta
from typing import Any

from support import WIRE, Env
from warrantor.domain.clock import isoformat, parse_time
from warrantor.evidence.canonical import digest, sha256_hex
from warrantor.evidence.dsse import Envelope
from warrantor.evidence.keys import SigningKey
from warrantor.evidence.proofs import ProofBundle, TrustBundle
from warrantor.evidence.statement import sign_statement
from warrantor.verify import verify_bundle


def _warrant(env: Env) -> dict[str, Any]:
    r = env.authorize()
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


def _executed(authorized: dict[str, Any], **changes: Any) -> dict[str, Any]:
    executed = {"type": "wire_transfer", "payload": dict(WIRE), "executed_at": authorized["created_at"],
                "executed_by": "core-banking"}
    return {**executed, **changes}


def _confirm(env: Env, warrant: dict[str, Any], executed: dict[str, Any], role: str = "agent", **extra: Any) -> Any:
    body = {"warrant": warrant, "executed_action": executed, **extra}
    return env.client.post("/v1/confirm-execution", json=body, headers=env.h(role))


def test_a_matching_execution_gets_a_signed_integrity_proof(env: Env) -> None:
    authorized = _warrant(env)
    executed = _executed(authorized)
    r = _confirm(env, authorized["warrant"], executed)
    assert r.status_code == 200, r.text
    proof = r.json()
    assert proof["authorization_id"] == authorized["warrant_id"]
    assert proof["match"] is True and proof["verified"] is True
    assert proof["match_details"] == {"action_type_match": True, "payload_consistent": True,
                                      "within_time_window": True, "time_window_seconds": 300}
    warrant_digest = sha256_hex(Envelope.from_dict(authorized["warrant"]).canonical_bytes())
    assert proof["integrity_hash"] == digest({"warrant_digest": warrant_digest, "executed_action": executed})
    predicate = Envelope.from_dict(proof["receipt"]["envelope"]).statement()["predicate"]
    assert predicate["status"] == "confirmed"
    assert predicate["integrity_hash"] == proof["integrity_hash"]
    assert predicate["warrant_digest"] == warrant_digest
    assert proof["execution_id"].startswith("exec_") and proof["confirmed_at"].endswith("Z")
    bundle = env.client.get(f"/v1/receipts/{proof['receipt']['receipt_id']}/bundle", headers=env.h("auditor"))
    trust = TrustBundle.from_dict(env.client.get("/v1/trust").json())
    assert verify_bundle(ProofBundle.from_dict(bundle.json()), trust).ok


def test_mismatches_are_reported_and_the_receipt_says_diverged(env: Env) -> None:
    cases = [
        ({"payload": {**WIRE, "amount_minor": 5000}}, "payload_consistent"),
        ({"type": "refund"}, "action_type_match"),
    ]
    for change, failing in cases:
        authorized = _warrant(env)
        r = _confirm(env, authorized["warrant"], _executed(authorized, **change))
        assert r.status_code == 200, r.text
        assert r.json()["match"] is False
        assert r.json()["match_details"][failing] is False
        receipt = Envelope.from_dict(r.json()["receipt"]["envelope"]).statement()["predicate"]
        assert (receipt["status"], receipt["reason_code"]) == ("diverged", "EXECUTION_DIVERGED")


def test_time_window_bounds_the_execution(env: Env) -> None:
    authorized = _warrant(env)
    issued = parse_time(authorized["created_at"])
    late = isoformat(issued + timedelta(seconds=61))
    r = _confirm(env, authorized["warrant"], _executed(authorized, executed_at=late), time_window_seconds=60)
    assert r.json()["match_details"] == {"action_type_match": True, "payload_consistent": True,
                                         "within_time_window": False, "time_window_seconds": 60}
    early = _warrant(env)
    before = isoformat(parse_time(early["created_at"]) - timedelta(seconds=1))
    assert _confirm(env, early["warrant"], _executed(early, executed_at=before)).json()["match"] is False
    for window in (0, 86_401):
        r = _confirm(env, _warrant(env)["warrant"], _executed(authorized), time_window_seconds=window)
        assert r.status_code == 422


def test_a_bad_signature_or_a_foreign_key_is_an_invalid_attestation(env: Env) -> None:
    authorized = _warrant(env)
    flipped = dict(authorized["warrant"])
    payload = bytearray(base64.b64decode(flipped["payload"]))
    payload[-3] ^= 0x01
    flipped["payload"] = base64.b64encode(bytes(payload)).decode()
    statement = Envelope.from_dict(authorized["warrant"]).statement()
    foreign = sign_statement(statement, SigningKey.from_seed(b"x" * 32)).to_dict()
    for warrant in (flipped, foreign, {"payloadType": "x", "payload": "!!", "signatures": []}):
        r = _confirm(env, warrant, _executed(authorized))
        assert (r.status_code, r.json()["code"]) == (422, "INTEGRITY_INVALID_ATTESTATION"), r.text


def test_a_receipt_is_not_a_warrant(env: Env) -> None:
    r = env.authorize(payload={**WIRE, "amount_minor": 200_000_000})
    receipt_id = r.json()["details"]["receipt_id"]
    receipt = env.client.get(f"/v1/receipts/{receipt_id}", headers=env.h("agent")).json()["envelope"]
    r = _confirm(env, receipt, _executed({"created_at": "2026-01-01T00:00:00Z"}))
    assert (r.status_code, r.json()["code"]) == (422, "INTEGRITY_INVALID_ATTESTATION")


def test_another_tenants_warrant_is_refused(env: Env) -> None:
    authorized = _warrant(env)
    other = env.new_tenant()
    body = {"warrant": authorized["warrant"], "executed_action": _executed(authorized)}
    r = env.client.post("/v1/confirm-execution", json=body, headers={"Authorization": f"Bearer {other['admin']}"})
    assert (r.status_code, r.json()["code"]) == (422, "INTEGRITY_INVALID_ATTESTATION")
    assert _confirm(env, authorized["warrant"], _executed(authorized)).status_code == 200  # still unconfirmed


def test_only_agents_and_admins_confirm(env: Env) -> None:
    authorized = _warrant(env)
    for role in ("app", "auditor"):
        assert _confirm(env, authorized["warrant"], _executed(authorized), role=role).status_code == 403
    assert env.client.post("/v1/confirm-execution", json={}).status_code in (401, 422)


def test_a_warrant_is_confirmed_exactly_once_even_concurrently(store_env: Env) -> None:
    env = store_env
    authorized = _warrant(env)
    first = _confirm(env, authorized["warrant"], _executed(authorized))
    assert first.status_code == 200
    again = _confirm(env, authorized["warrant"], _executed(authorized), role="admin")
    assert (again.status_code, again.json()["code"]) == (409, "INTEGRITY_ALREADY_CONFIRMED")

    racing = _warrant(env)
    barrier = threading.Barrier(8)
    codes: list[int] = []

    def go() -> None:
        barrier.wait()
        codes.append(_confirm(env, racing["warrant"], _executed(racing)).status_code)

    threads = [threading.Thread(target=go) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(codes) == [200] + [409] * 7
