"""POST /v1/confirm-execution: the warrant itself, what ran, and an execution integrity proof."""

from __future__ import annotations

import base64
import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from support import WIRE, Env, make_env
from warrantor.domain.clock import FixedClock, isoformat, parse_time
from warrantor.domain.lifecycle import TERMINAL_STATES, Status
from warrantor.evidence.canonical import digest, sha256_hex
from warrantor.evidence.dsse import Envelope
from warrantor.evidence.keys import SigningKey
from warrantor.evidence.proofs import ProofBundle, TrustBundle
from warrantor.evidence.statement import sign_statement
from warrantor.service.execution.confirm_execution import ended_status
from warrantor.store import UniqueViolationError
from warrantor.store import repo_evidence as rq
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
                                      "within_time_window": True, "time_window_seconds": 300,
                                      "clock_skew_seconds": 5}
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
    late = isoformat(issued + timedelta(seconds=66))  # window 60 + clock skew 5, and 1 more
    r = _confirm(env, authorized["warrant"], _executed(authorized, executed_at=late), time_window_seconds=60)
    assert r.json()["match_details"] == {"action_type_match": True, "payload_consistent": True,
                                         "within_time_window": False, "time_window_seconds": 60,
                                         "clock_skew_seconds": 5}
    early = _warrant(env)
    before = isoformat(parse_time(early["created_at"]) - timedelta(seconds=6))
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


# -- exactly once: one warrant, one confirmation, whatever wraps it -------------------------
def _sig(keyid: str, raw: bytes) -> dict[str, str]:
    return {"keyid": keyid, "sig": base64.b64encode(raw).decode()}


def _confirmed_receipts(env: Env, action_id: str) -> int:
    with env.services.store.read() as repo:
        evidence = repo.evidence_for_action(env.tenant_id, action_id)
    statuses = [Envelope.from_dict(e.envelope).statement()["predicate"].get("status") for e in evidence]
    return statuses.count("confirmed")


def test_a_rewrapped_warrant_is_refused_naming_the_signature_it_adds(store_env: Env) -> None:
    env = store_env
    authorized = _warrant(env)
    warrant = authorized["warrant"]
    real = warrant["signatures"][0]
    statement = Envelope.from_dict(warrant).statement()
    unknown = sign_statement(statement, SigningKey.from_seed(b"x" * 32)).to_dict()["signatures"][0]
    tricks = [
        ("junk signature appended", [real, _sig(real["keyid"], b"\x00" * 64)], "UNVERIFIED", 1),
        ("junk key id appended", [real, _sig("junk", b"junk")], "UNVERIFIED", 1),
        ("real signature repeated", [real, real], "DUPLICATE", 1),
        ("empty signature prepended", [{"keyid": "", "sig": ""}, real], "UNVERIFIED", 0),
        ("unknown key's signature appended", [real, unknown], "UNVERIFIED", 1),
    ]

    def refused_every_trick() -> None:
        for name, signatures, kind, index in tricks:
            r = _confirm(env, {**warrant, "signatures": signatures}, _executed(authorized))
            assert (r.status_code, r.json()["code"]) == (422, f"INTEGRITY_{kind}_SIGNATURE"), name
            assert r.json()["details"]["field"] == f"warrant.signatures[{index}]", name

    refused_every_trick()  # a re-wrapped warrant is not a first confirmation either
    assert _confirm(env, warrant, _executed(authorized)).status_code == 200
    refused_every_trick()
    again = _confirm(env, warrant, _executed(authorized))
    assert (again.status_code, again.json()["code"]) == (409, "INTEGRITY_ALREADY_CONFIRMED")
    assert _confirmed_receipts(env, authorized["action_id"]) == 1


def test_the_database_keys_a_confirmation_by_the_signed_statement(store_env: Env) -> None:
    """Two rows for one statement are refused by the store itself, whatever envelope digest
    they carry: the guarantee holds across processes that each passed the application check."""
    env = store_env
    now = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)

    def insert(execution_id: str, warrant_digest: str) -> None:
        row = rq.Confirmation(execution_id, env.tenant_id, "5" * 64, warrant_digest, "wrt_1", "act_1",
                              f"rcpt_{execution_id}", "1" * 64, True, now)
        env.services.store.write(lambda repo: rq.insert_confirmation(repo, row))

    insert("exec_1", "a" * 64)
    with pytest.raises(UniqueViolationError):
        insert("exec_2", "b" * 64)


def test_a_warrant_whose_action_ended_cannot_be_confirmed(env: Env) -> None:
    reports = [
        ({"outcome": "completed"}, "notarized"),
        ({"outcome": "failed"}, "failed"),
        ({"outcome": "completed", "executed": {"payload": {**WIRE, "amount_minor": 1}}}, "diverged"),
    ]
    for report, status in reports:
        authorized = _warrant(env)
        path = f"/v1/actions/{authorized['action_id']}/notarize"
        assert env.client.post(path, json=report, headers=env.h("agent")).json()["status"] == status
        r = _confirm(env, authorized["warrant"], _executed(authorized))
        assert (r.status_code, r.json()["code"]) == (409, "ACTION_ALREADY_ENDED"), status
        assert r.json()["details"] == {"action_id": authorized["action_id"], "status": status}
        assert _confirmed_receipts(env, authorized["action_id"]) == 0


def test_a_lapsed_warrant_cannot_be_confirmed_even_before_the_sweep(tmp_path: Path) -> None:
    clock = FixedClock(datetime(2026, 1, 5, 12, 0, tzinfo=UTC))
    with make_env(tmp_path, services_kwargs={"clock": clock}) as env:
        in_grace, lapsed = _warrant(env), _warrant(env)
        clock.advance(900 + 3600 - 1)  # warrant validity + notarization grace, not yet over
        assert _confirm(env, in_grace["warrant"], _executed(in_grace)).status_code == 200
        clock.advance(2)
        for _ in ("before the sweep", "after the sweep"):
            r = _confirm(env, lapsed["warrant"], _executed(lapsed))
            assert (r.status_code, r.json()["code"]) == (409, "ACTION_ALREADY_ENDED")
            assert r.json()["details"]["status"] == "expired"
            env.services.sweeper.sweep()
        detail = env.client.get(f"/v1/actions/{lapsed['action_id']}", headers=env.h("admin")).json()
        assert detail["status"] == "expired"


def test_every_ended_state_refuses_a_confirmation(env: Env) -> None:
    """Denied states carry no warrant through the API; the rule still covers them."""
    authorized = _warrant(env)
    with env.services.store.read() as repo:
        action = repo.get_action(env.tenant_id, authorized["action_id"])
    assert action is not None
    now = action.created_at
    for status in TERMINAL_STATES:
        assert ended_status(replace(action, status=status), now, 3600) == status.value
    for status in (Status.AUTHORIZED, Status.APPROVED, Status.UNCERTAIN):
        assert ended_status(replace(action, status=status), now, 3600) is None


# -- clock skew ------------------------------------------------------------------------------
ISSUED = datetime(2026, 1, 5, 12, 0, 0, 400_000, tzinfo=UTC)  # the server's clock: .400


@pytest.mark.parametrize(("executed_at", "inside"), [
    ("2026-01-05T12:00:00Z", True),  # whole seconds, 400 ms "before" the warrant
    ("2026-01-05T11:59:55.400Z", True),  # exactly the skew early
    ("2026-01-05T11:59:55.399Z", False),
    ("2026-01-05T12:01:05.400Z", True),  # window 60 s + skew, exactly
    ("2026-01-05T12:01:05.401Z", False),
])
def test_clock_skew_widens_the_window_by_the_setting(tmp_path: Path, executed_at: str, inside: bool) -> None:
    with make_env(tmp_path, services_kwargs={"clock": FixedClock(ISSUED)}) as env:
        authorized = _warrant(env)
        assert authorized["created_at"] == "2026-01-05T12:00:00.400Z"
        r = _confirm(env, authorized["warrant"], _executed(authorized, executed_at=executed_at),
                     time_window_seconds=60)
        assert r.status_code == 200, r.text
        assert (r.json()["match"], r.json()["match_details"]["clock_skew_seconds"]) == (inside, 5)
        receipt = Envelope.from_dict(r.json()["receipt"]["envelope"]).statement()["predicate"]
        assert receipt["status"] == ("confirmed" if inside else "diverged")
        assert receipt["match"]["clock_skew_seconds"] == 5


def test_a_zero_clock_skew_is_strict(tmp_path: Path) -> None:
    with make_env(tmp_path, services_kwargs={"clock": FixedClock(ISSUED)}, clock_skew_seconds=0) as env:
        authorized = _warrant(env)
        r = _confirm(env, authorized["warrant"], _executed(authorized, executed_at="2026-01-05T12:00:00Z"))
        assert (r.json()["match"], r.json()["match_details"]["clock_skew_seconds"]) == (False, 0)
