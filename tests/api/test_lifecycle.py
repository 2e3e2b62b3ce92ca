"""Approval codes, notarization outcomes, expiry, and every signature checked with /v1/keys."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from support import WIRE, Env, make_env
from warrantor.domain.clock import FixedClock
from warrantor.evidence.canonical import digest
from warrantor.evidence.dsse import Envelope, verify_envelope
from warrantor.evidence.keys import VerifyKey
from warrantor.server.settings import Settings

HELD = {**WIRE, "amount_minor": 6_000_000}


def published_keys(env: Env) -> list[VerifyKey]:
    keys = env.client.get("/v1/keys").json()["keys"]
    return [VerifyKey(base64.b64decode(k["public_key"])) for k in keys]


def statement(env: Env, envelope: dict[str, Any]) -> dict[str, Any]:
    parsed = Envelope.from_dict(envelope)
    assert verify_envelope(parsed, published_keys(env)) is not None, "signature must verify"
    return parsed.statement()


def notarize(env: Env, action_id: str, **body: Any) -> Any:
    return env.client.post(f"/v1/actions/{action_id}/notarize", json=body, headers=env.h("agent"))


def test_warrant_is_an_in_toto_statement_over_the_intent_digest(env: Env) -> None:
    body = env.authorize().json()
    st = statement(env, body["warrant"])
    assert st["_type"] == "https://in-toto.io/Statement/v1"
    assert st["predicateType"] == "urn:warrantor:predicate:warrant:v1"
    subject = st["subject"][0]
    assert subject["name"] == f"action:{body['action_id']}"
    assert subject["digest"]["sha256"] == digest(st["predicate"]["intent"])
    assert st["predicate"]["decision"]["evaluation_hash"] == body["decision"]["evaluation_hash"]
    keyid = body["warrant"]["signatures"][0]["keyid"]
    assert keyid == env.client.get("/v1/keys").json()["keys"][0]["keyid"]


def test_a_flipped_byte_breaks_the_warrant(env: Env) -> None:
    envelope = env.authorize().json()["warrant"]
    payload = bytearray(base64.b64decode(envelope["payload"]))
    payload[10] ^= 1
    tampered = Envelope.from_dict({**envelope, "payload": base64.b64encode(bytes(payload)).decode()})
    assert verify_envelope(tampered, published_keys(env)) is None


def test_deny_by_code_ends_denied_by_human_with_a_receipt(env: Env) -> None:
    action_id = env.authorize(payload=HELD).json()["action_id"]
    code = env.approval_codes(action_id)[0]
    review = env.client.get(f"/v1/approvals/{code}").json()
    assert review["payload"] == HELD and review["rules"][0]["id"] == "wire-approval-50k"
    r = env.client.post(f"/v1/approvals/{code}/confirm", json={"decision": "deny", "reason": "not today"})
    assert r.json()["status"] == "denied_by_human"
    detail = env.client.get(f"/v1/actions/{action_id}", headers=env.h("admin")).json()
    st = statement(env, detail["receipt"]["envelope"])
    assert st["predicate"]["status"] == "denied_by_human"
    assert st["predicate"]["approvals"][0]["reason"] == "not today"
    assert notarize(env, action_id, outcome="completed").json()["code"] == "INVALID_ACTION_STATE"


def test_code_errors_404_410_409(env: Env) -> None:
    assert env.client.get("/v1/approvals/APR-DOESNOTEXIST0000000").status_code == 404
    env.add_user("second-lead@example.com", groups=("finance-leads",))
    action_id = env.authorize(payload=HELD).json()["action_id"]
    first, second = env.approval_codes(action_id)  # one personal code per finance lead
    assert env.client.post(f"/v1/approvals/{first}/confirm", json={"decision": "approve"}).status_code == 200
    r = env.client.post(f"/v1/approvals/{first}/confirm", json={"decision": "approve"})
    assert (r.status_code, r.json()["code"]) == (410, "CODE_EXPIRED")
    r = env.client.post(f"/v1/approvals/{second}/confirm", json={"decision": "approve"})
    assert (r.status_code, r.json()["code"]) == (409, "ALREADY_RESOLVED")
    r = env.client.post(f"/v1/approvals/{second}/confirm", json={"decision": "maybe"})
    assert r.status_code == 422


def test_notarize_outcomes(env: Env) -> None:
    ok = env.authorize().json()["action_id"]
    r = notarize(env, ok, outcome="done")
    assert (r.status_code, r.json()["code"]) == (400, "INVALID_OUTCOME")
    r = notarize(env, ok, outcome="completed", outcome_details="bank ref 42")
    assert r.json()["status"] == "notarized" and r.json()["match"] is None
    receipt = statement(env, r.json()["receipt"]["envelope"])["predicate"]
    assert receipt["execution"]["outcome_details_sha256"]
    assert "bank ref 42" not in json.dumps(receipt)
    assert notarize(env, ok, outcome="completed").json()["code"] == "INVALID_ACTION_STATE"

    failed = env.authorize().json()["action_id"]
    assert notarize(env, failed, outcome="failed").json()["status"] == "failed"

    unsure = env.authorize().json()["action_id"]
    r = notarize(env, unsure, outcome="unknown")
    assert r.json()["status"] == "uncertain" and r.json()["receipt"] is None
    assert notarize(env, unsure, outcome="unknown").status_code == 409
    assert notarize(env, unsure, outcome="completed").json()["status"] == "notarized"


def test_execution_that_does_not_match_diverges(env: Env) -> None:
    action_id = env.authorize().json()["action_id"]
    executed = {"action_type": "wire_transfer", "payload": {**WIRE, "amount_minor": 999_999}}
    r = notarize(env, action_id, outcome="completed", executed=executed)
    assert r.json()["status"] == "diverged"
    assert r.json()["match"]["payload_consistent"] is False
    assert r.json()["match"]["action_type_match"] is True
    predicate = statement(env, r.json()["receipt"]["envelope"])["predicate"]
    assert predicate["status"] == "diverged" and predicate["reason_code"] == "EXECUTION_DIVERGED"
    late = env.authorize().json()["action_id"]
    r = notarize(env, late, executed={"action_type": "wire_transfer", "payload": WIRE,
                                      "executed_at": "2001-01-01T00:00:00Z"})
    assert r.json()["status"] == "diverged" and r.json()["match"]["within_time_window"] is False


@pytest.mark.parametrize(("executed_at", "status"), [
    ("2026-01-05T12:00:00Z", "notarized"),  # whole seconds, 400 ms "before" the warrant
    ("2026-01-05T11:59:55.400Z", "notarized"),  # exactly the default skew (5 s) early
    ("2026-01-05T11:59:55.399Z", "diverged"),
    ("2026-01-05T12:15:05.400Z", "notarized"),  # warrant validity (900 s) + skew, exactly
    ("2026-01-05T12:15:05.401Z", "diverged"),
])
def test_notarize_tolerates_clock_skew_at_both_ends(tmp_path: Path, executed_at: str, status: str) -> None:
    clock = FixedClock(datetime(2026, 1, 5, 12, 0, 0, 400_000, tzinfo=UTC))
    with make_env(tmp_path, services_kwargs={"clock": clock}) as env:
        action_id = env.authorize().json()["action_id"]
        r = notarize(env, action_id, executed={"action_type": "wire_transfer", "payload": WIRE,
                                               "executed_at": executed_at})
        assert r.json()["status"] == status, r.text
        assert r.json()["match"]["clock_skew_seconds"] == 5
        assert statement(env, r.json()["receipt"]["envelope"])["predicate"]["match"]["clock_skew_seconds"] == 5


def test_clock_skew_is_a_bounded_setting(tmp_path: Path) -> None:
    assert Settings().clock_skew_seconds == 5
    assert Settings.from_env({"WARRANTOR_CLOCK_SKEW_SECONDS": "0"}).clock_skew_seconds == 0
    assert Settings.from_env({"WARRANTOR_CLOCK_SKEW_SECONDS": "300"}).clock_skew_seconds == 300
    for bad in ("-1", "301", "five"):
        with pytest.raises(ValueError, match="WARRANTOR_CLOCK_SKEW_SECONDS"):
            Settings.from_env({"WARRANTOR_CLOCK_SKEW_SECONDS": bad})
    clock = FixedClock(datetime(2026, 1, 5, 12, 0, 0, 400_000, tzinfo=UTC))
    with make_env(tmp_path, services_kwargs={"clock": clock}, clock_skew_seconds=0) as env:
        action_id = env.authorize().json()["action_id"]
        r = notarize(env, action_id, executed={"action_type": "wire_transfer", "payload": WIRE,
                                               "executed_at": "2026-01-05T12:00:00Z"})
        assert (r.json()["status"], r.json()["match"]["clock_skew_seconds"]) == ("diverged", 0)


def test_held_actions_and_unused_warrants_expire_with_receipts(tmp_path: Path) -> None:
    clock = FixedClock(datetime(2026, 1, 5, 12, 0, tzinfo=UTC))
    with make_env(tmp_path, services_kwargs={"clock": clock}) as env:
        held = env.authorize(payload=HELD).json()["action_id"]
        unused = env.authorize().json()["action_id"]
        code = env.approval_codes(held)[0]
        clock.advance(900 + 3600 - 1)  # warrant validity + notarization grace, not yet over
        assert env.services.sweeper.sweep() == 0
        clock.advance(2)
        assert env.services.sweeper.sweep() == 1  # the unused warrant
        clock.advance(86400)
        r = env.client.get(f"/v1/approvals/{code}")
        assert (r.status_code, r.json()["code"]) == (410, "CODE_EXPIRED")
        assert env.services.sweeper.sweep() == 1  # the held action
        for action_id, reason in ((held, "APPROVAL_EXPIRED"), (unused, "WARRANT_EXPIRED")):
            detail = env.client.get(f"/v1/actions/{action_id}", headers=env.h("admin")).json()
            assert detail["status"] == "expired"
            assert statement(env, detail["receipt"]["envelope"])["predicate"]["reason_code"] == reason


def test_child_evidence_commits_to_the_parent(env: Env) -> None:
    parent = env.authorize().json()
    child = env.authorize(parent_action_id=parent["action_id"]).json()
    predicate = statement(env, child["warrant"])["predicate"]
    parent_digest = digest(parent["warrant"])
    assert predicate["parent"]["action_id"] == parent["action_id"]
    assert predicate["parent"]["evidence_digest"] == parent_digest
    chain = env.client.get(f"/v1/actions/{child['action_id']}/chain", headers=env.h("agent")).json()["chain"]
    assert [c["action_id"] for c in chain] == [child["action_id"], parent["action_id"]]


def test_legal_hold_on_and_off(env: Env) -> None:
    action_id = env.authorize().json()["action_id"]
    why = {"reason": "litigation 2026-17"}
    assert env.client.post(f"/v1/actions/{action_id}/hold", json=why, headers=env.h("agent")).status_code == 403
    assert env.client.post(f"/v1/actions/{action_id}/hold", json=why,
                           headers=env.h("auditor")).json()["legal_hold"] is True
    assert env.client.get(f"/v1/actions/{action_id}", headers=env.h("admin")).json()["legal_hold"] is True
    lifted = env.client.request("DELETE", f"/v1/actions/{action_id}/hold", json=why, headers=env.h("admin"))
    assert lifted.json()["legal_hold"] is False
