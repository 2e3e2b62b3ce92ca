"""Records: legal holds, retention with verifiable erasure, erasure on request, the audit
export and its offline verification, the SIEM stream (docs/records.md).

Erased content is looked for in the database itself, every table and column, not through
the API; every receipt of an erased action is verified offline after the erasure.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import sqlite3
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from test_console import console_login, user

from support import WIRE, Env, bearer, make_env
from warrantor.cli import export_verify
from warrantor.cli.main import main as cli
from warrantor.domain.clock import FixedClock, isoformat
from warrantor.evidence.canonical import digest
from warrantor.evidence.commitments import committed_intent
from warrantor.evidence.dsse import Envelope
from warrantor.evidence.proofs import ProofBundle
from warrantor.evidence.statement import ERASURE_V1, HOLD_V1
from warrantor.verify import verify_bundle
from warrantor.verify.export import read_lines, verify_export

DETAILS = "Pay invoice 4242 for Jane Roe"  # markers searched for in the database after erasure
BENEFICIARY = "Roe Consulting 7731"
CONTEXT_NOTE = "ctx-marker-5519"
REFUND = {"amount_minor": 1000, "currency": "EUR", "order_id": "o-1"}
MARKERS = (DETAILS, BENEFICIARY, CONTEXT_NOTE)
DAY = 86_400


@pytest.fixture
def rec(tmp_path: Path) -> Iterator[tuple[Env, FixedClock]]:
    clock = FixedClock(datetime.now(UTC).replace(microsecond=0))
    with make_env(tmp_path, integrate_interval_ms=50, services_kwargs={"clock": clock}) as env:
        yield env, clock


def sql(env: Env, query: str, *params: Any) -> list[tuple[Any, ...]]:
    with sqlite3.connect(env.settings.data_dir / "warrantor.db") as conn:
        return conn.execute(query, params).fetchall()


def marked_action(env: Env, **extra: Any) -> dict[str, Any]:
    """An authorized wire whose details, payload and context carry the markers."""
    r = env.authorize(details=DETAILS, payload={**WIRE, "beneficiary": BENEFICIARY},
                      context={"note": CONTEXT_NOTE}, **extra)
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


def notarize(env: Env, action_id: str) -> dict[str, Any]:
    r = env.client.post(f"/v1/actions/{action_id}/notarize", headers=env.h("agent"), json={
        "outcome": "completed", "outcome_details": f"done for {BENEFICIARY}",
        "executed": {"action_type": "wire_transfer", "payload": {**WIRE, "beneficiary": BENEFICIARY}}})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def ended_action(env: Env) -> dict[str, Any]:
    action = marked_action(env)
    return {**action, "receipt": notarize(env, action["action_id"])["receipt"]}


def hold(env: Env, action_id: str, on: bool = True, role: str = "auditor", reason: str = "case 2026-17") -> Any:
    return env.client.request("POST" if on else "DELETE", f"/v1/actions/{action_id}/hold",
                              json={"reason": reason}, headers=env.h(role))


def retention(env: Env, days: int | None) -> None:
    r = env.client.put("/v1/retention", json={"details_days": days}, headers=env.h("admin"))
    assert r.status_code == 200, r.text


def run_retention(env: Env) -> dict[str, Any]:
    r = env.client.post("/v1/retention/run", headers=env.h("admin"))
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


def detail(env: Env, action_id: str, role: str = "auditor") -> dict[str, Any]:
    out: dict[str, Any] = env.client.get(f"/v1/actions/{action_id}", headers=env.h(role)).json()
    return out


def export(env: Env, path: Path, role: str = "auditor", **params: str) -> Path:
    r = env.client.get("/v1/export", params=params, headers=env.h(role))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/x-ndjson")
    path.write_bytes(r.content)
    return path


def lines_of(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_bytes().splitlines()]


def trust_file(env: Env, path: Path) -> Path:
    path.write_text(env.client.get("/v1/trust").text)
    return path


def verify_cli(export_path: Path, trust: Path, capsys: Any) -> tuple[int, str]:
    code = cli(["verify", "--export", str(export_path), "--trust", str(trust)])
    return code, capsys.readouterr().out


# -- legal hold ----------------------------------------------------------------------------
def test_a_hold_is_a_signed_logged_record_of_who_and_why(rec: tuple[Env, FixedClock]) -> None:
    env, _ = rec
    action_id = ended_action(env)["action_id"]
    assert hold(env, action_id, role="agent").status_code == 403
    assert hold(env, action_id, reason="").status_code == 422
    set_ = hold(env, action_id).json()
    assert set_["changed"] is True and set_["legal_hold"] is True and set_["reason"] == "case 2026-17"
    assert set_["by"] == {"role": "auditor", "key_id": set_["by"]["key_id"], "user_id": None}
    assert set_["sequence"] == 2 and isinstance(set_["log_index"], int)  # the receipt was record 1
    again = hold(env, action_id).json()
    assert again == {"action_id": action_id, "legal_hold": True, "changed": False}  # nothing recorded
    lifted = hold(env, action_id, on=False, role="admin", reason="case closed").json()
    assert lifted["changed"] is True and lifted["sequence"] == 3

    history = detail(env, action_id)["legal_hold_history"]
    assert [(h["legal_hold"], h["reason"], h["by"]["role"], h["sequence"]) for h in history] == [
        (True, "case 2026-17", "auditor", 2), (False, "case closed", "admin", 3)]
    bundle = env.services.transparency.bundle(env.tenant_id, set_["hold_id"], "hold")
    report = verify_bundle(bundle, env.services.transparency.trust_bundle())
    assert report.ok, report.to_dict()
    statement = bundle.envelope.statement()
    assert statement["predicateType"] == HOLD_V1
    assert statement["subject"][0]["digest"]["sha256"] == detail(env, action_id)["intent_digest"]
    assert {k: statement["predicate"][k] for k in ("legal_hold", "reason", "sequence", "action_id")} == {
        "legal_hold": True, "reason": "case 2026-17", "sequence": 2, "action_id": action_id}


def test_holds_show_in_list_filters_and_the_console(rec: tuple[Env, FixedClock]) -> None:
    env, _ = rec
    held, free = marked_action(env)["action_id"], marked_action(env)["action_id"]
    assert hold(env, held).status_code == 200
    def listed(flag: str) -> list[str]:
        page = env.client.get(f"/v1/actions?legal_hold={flag}", headers=env.h("admin")).json()["data"]
        return [a["action_id"] for a in page]

    assert (listed("true"), listed("false")) == ([held], [free])
    r = env.client.get("/v1/actions?legal_hold=maybe", headers=env.h("admin"))
    assert r.status_code == 422 and r.json()["code"] == "INVALID_FILTER"

    user(env, "auditor@example.com", roles=["auditor"])
    console = console_login(env, "auditor@example.com")
    listed = console.get("/console/actions?legal_hold=true").text
    assert held in listed and free not in listed and "data-legal-hold" in listed
    page = console.get(f"/console/actions/{held}").text
    assert "data-legal-hold-history" in page and "case 2026-17" in page


# -- retention and erasure ----------------------------------------------------------------
def test_retention_erases_expired_details_and_a_hold_blocks_it(rec: tuple[Env, FixedClock]) -> None:
    env, clock = rec
    old, held, running = ended_action(env), ended_action(env), marked_action(env)
    assert hold(env, held["action_id"]).status_code == 200
    r = env.client.put("/v1/retention", json={"details_days": 0}, headers=env.h("admin"))
    assert r.status_code == 422 and r.json()["code"] == "INVALID_RETENTION"
    retention(env, 30)
    clock.advance(29 * DAY)
    assert run_retention(env)["erased"] == 0  # not expired yet
    clock.advance(2 * DAY)
    young = ended_action(env)
    first = run_retention(env)
    assert (first["erased"], first["held"], first["not_ended"]) == (1, 1, 1)
    assert [detail(env, a["action_id"])["erased_at"] is not None for a in (old, held, running, young)] == [
        True, False, False, False]
    assert detail(env, held["action_id"])["intent"]["details"] == DETAILS  # the hold kept it whole

    # The hold is lifted (the job looks back at it), the open action ends: both go next time.
    assert hold(env, held["action_id"], on=False, reason="released").status_code == 200
    notarize(env, running["action_id"])
    second = run_retention(env)
    assert second["erased"] == 2, second
    assert detail(env, young["action_id"])["erased_at"] is None


def test_a_hold_and_an_erasure_racing_never_both_win(rec: tuple[Env, FixedClock]) -> None:
    env, clock = rec
    action_id = ended_action(env)["action_id"]
    with env.services.store.read() as repo:
        stale = repo.get_action(env.tenant_id, action_id)  # what the job read: not held yet
    assert stale is not None and not stale.legal_hold
    assert hold(env, action_id).status_code == 200  # the hold lands between the job's read and its write
    views = env.services.records._erase(env.tenant_id, [stale], scope={"kind": "retention"}, reason="race",
                                        by={"role": "system"}, now=clock.now())
    assert views == []  # nothing erased, so no erasure receipt either
    assert detail(env, action_id)["intent"]["details"] == DETAILS
    assert sql(env, "SELECT count(*) FROM evidence WHERE kind = 'erasure'") == [(0,)]

    other = ended_action(env)["action_id"]
    with env.services.store.read() as repo:
        unheld = repo.get_action(env.tenant_id, other)
    assert unheld is not None
    env.services.records._erase(env.tenant_id, [unheld], scope={"kind": "retention"}, reason="race",
                                by={"role": "system"}, now=clock.now())
    tenant = env.tenant_id
    assert env.services.store.write(lambda repo: repo.set_legal_hold(tenant, other, True)) is False


def test_a_hold_after_erasure_is_too_late_and_so_is_a_replay(rec: tuple[Env, FixedClock]) -> None:
    env, clock = rec
    action = ended_action(env)
    retention(env, 1)
    clock.advance(2 * DAY)
    assert run_retention(env)["erased"] == 1
    r = hold(env, action["action_id"])
    assert r.status_code == 409 and r.json()["code"] == "ACTION_ERASED"
    assert "too late" in r.json()["detail"] and r.json()["details"]["erasure_id"]
    assert detail(env, action["action_id"])["legal_hold"] is False
    key = "inv-erased-1"
    first = env.authorize(idempotency_key=key)
    assert first.status_code == 201
    notarize(env, first.json()["action_id"])
    clock.advance(2 * DAY)
    run_retention(env)
    replay = env.authorize(idempotency_key=key)
    assert replay.status_code == 409 and replay.json()["code"] == "ACTION_ERASED"


def test_erased_details_are_gone_from_every_table(rec: tuple[Env, FixedClock]) -> None:
    env, clock = rec
    action = ended_action(env)
    key = "inv-gone-1"
    keyed = env.authorize(details=DETAILS, payload={**WIRE, "beneficiary": BENEFICIARY},
                          context={"note": CONTEXT_NOTE}, idempotency_key=key).json()
    notarize(env, keyed["action_id"])
    ids = (action["action_id"], keyed["action_id"])
    before = sql(env, "SELECT request_hash, response_json, details_json FROM actions WHERE id = ?", ids[1])[0]
    assert BENEFICIARY in before[1] or BENEFICIARY in before[2]  # what a replay would send back, or the details
    retention(env, 1)
    clock.advance(2 * DAY)
    assert run_retention(env)["erased"] == 2

    found = []
    for (table,) in sql(env, "SELECT name FROM sqlite_master WHERE type = 'table'"):
        for row in sql(env, f'SELECT * FROM "{table}"'):
            text = " ".join(str(v) if not isinstance(v, bytes) else v.decode("latin-1") for v in row)
            found += [(table, m) for m in MARKERS if m in text]
    assert found == []
    for action_id in ids:
        request_hash, response, values, salt, intent_digest = sql(
            env, "SELECT request_hash, response_json, details_json, details_salt, intent_digest FROM actions "
                 "WHERE id = ?", action_id)[0]
        assert (values, salt) == (None, None)
        assert request_hash == intent_digest != before[0]  # the unsalted request hash went too
        assert json.loads(response)["erased"] is True
    shown = detail(env, ids[0])
    assert shown["erased_fields"] == ["context", "details", "payload"] and shown["intent_salt"] is None
    assert set(shown["intent"]["commitments"]) == {"context", "details", "payload"}
    assert shown["integrity"] == "ok", shown["integrity_problems"]


def test_every_receipt_of_an_erased_action_still_verifies_offline(rec: tuple[Env, FixedClock], tmp_path: Path,
                                                                   capsys: Any) -> None:
    env, clock = rec
    action = ended_action(env)
    salt = detail(env, action["action_id"])["intent_salt"]
    retention(env, 1)
    clock.advance(2 * DAY)
    run_retention(env)
    trust = env.services.transparency.trust_bundle()
    assert detail(env, action["action_id"])["erased_at"] is not None
    for kind, evidence_id in (("warrant", action["warrant_id"]), ("receipt", action["receipt"]["receipt_id"])):
        doc = env.client.get(f"/v1/{kind}s/{evidence_id}/bundle", headers=env.h("auditor")).json()
        bundle = ProofBundle.from_dict(doc)
        report = verify_bundle(bundle, trust, expected_subject_digest=action["intent_digest"])
        assert report.ok, (kind, report.to_dict())
        path = tmp_path / f"{kind}.json"
        path.write_text(json.dumps(doc))
        assert cli(["verify", str(path), "--trust", str(trust_file(env, tmp_path / "t.json"))]) == 0
        assert "VERIFIED" in capsys.readouterr().out
    # An auditor who kept the request and the salt (an export made before) still links them.
    intent = {"action_type": "wire_transfer", "agent_id": "payments-agent", "context": {"note": CONTEXT_NOTE},
              "details": DETAILS, "instruction_hash": "sha256:" + "ab" * 32,
              "payload": {**WIRE, "beneficiary": BENEFICIARY}}
    assert digest(committed_intent(intent, salt)) == action["intent_digest"]
    receipt = Envelope.from_dict(action["receipt"]["envelope"]).statement()["predicate"]
    warrant = Envelope.from_dict(action["warrant"]).statement()["predicate"]
    assert receipt["execution"]["executed"]["payload_sha256"] == warrant["intent"]["commitments"]["payload"]
    assert DETAILS not in json.dumps(receipt) + json.dumps(warrant)

    user(env, "auditor@example.com", roles=["auditor"])
    page = console_login(env, "auditor@example.com").get(f"/console/actions/{action['action_id']}").text
    assert "data-erased" in page and "Details erased" in page and BENEFICIARY not in page


def test_erasure_on_request_for_a_subject_or_an_agent(rec: tuple[Env, FixedClock]) -> None:
    env, _ = rec

    def grant(subject: str) -> str:
        r = env.client.post("/v1/grants", headers=env.h("app"), json={
            "agent_id": "payments-agent", "subject": subject,
            "scopes": [{"scope": "refunds", "decision": "allow", "resources": ["order:*"]}]})
        assert r.status_code == 201, r.text
        return str(r.json()["authorization_id"])

    def refund(auth: str, order: str) -> str:
        r = env.authorize(action_type="refund", details=f"refund {order} for {DETAILS}",
                          payload={**REFUND, "order_id": order}, authorization_id=auth, scope="refunds",
                          resource=f"order:{order}")
        assert r.status_code == 201, r.text
        action_id = str(r.json()["action_id"])
        n = env.client.post(f"/v1/actions/{action_id}/notarize", headers=env.h("agent"), json={"outcome": "completed"})
        assert n.status_code == 200
        return action_id

    jane, john = grant("user-jane"), grant("user-john")
    janes = [refund(jane, "j1"), refund(jane, "j2")]
    johns = refund(john, "k1")
    held = refund(jane, "j3")
    assert hold(env, held).status_code == 200
    r = env.client.post("/v1/erasures", headers=env.h("auditor"), json={"subject": "user-jane", "reason": "GDPR"})
    assert r.status_code == 403
    r = env.client.post("/v1/erasures", headers=env.h("admin"), json={"reason": "GDPR"})
    assert r.status_code == 422 and r.json()["code"] == "INVALID_ERASURE_REQUEST"
    r = env.client.post("/v1/erasures", headers=env.h("admin"),
                        json={"subject": "user-jane", "reason": "GDPR art. 17 request 88"})
    assert r.status_code == 200, r.text
    done = r.json()
    assert done["erased"] == 2 and done["skipped"] == [{"action_id": held, "reason": "legal_hold"}]
    [erasure] = done["erasures"]
    assert sorted(erasure["action_ids"]) == sorted(janes) and erasure["sequence"] > 0
    assert [detail(env, a)["erased_at"] is not None for a in (*janes, johns, held)] == [True, True, False, False]

    bundle = env.services.transparency.bundle(env.tenant_id, erasure["erasure_id"], "erasure")
    statement = bundle.envelope.statement()
    predicate = statement["predicate"]
    assert statement["predicateType"] == ERASURE_V1 and predicate["reason"] == "GDPR art. 17 request 88"
    assert predicate["scope"] == {"kind": "subject"}  # the subject itself is not written into evidence
    assert "user-jane" not in bundle.envelope.payload.decode()
    listed = {e["action_id"]: e for e in predicate["erased"]}
    for action_id in janes:
        assert listed[action_id]["intent_digest"] == detail(env, action_id)["intent_digest"]
        assert listed[action_id]["commitments"] == detail(env, action_id)["intent"]["commitments"]
    assert statement["subject"][0] == {"name": f"erasure:{erasure['erasure_id']}",
                                       "digest": {"sha256": digest(predicate["erased"])}}
    checks = verify_bundle(bundle, env.services.transparency.trust_bundle()).checks
    assert all(c.ok for c in checks if c.name != "subject_digest")  # erasure:<id>, checked by the export

    by_agent = env.client.post("/v1/erasures", headers=env.h("admin"),
                               json={"agent_id": "payments-agent", "reason": "agent retired"}).json()
    assert by_agent["erased"] == 1  # john's; jane's are already erased, the held one is skipped
    assert {s["reason"] for s in by_agent["skipped"]} == {"already_erased", "legal_hold"}


# -- record sequence -------------------------------------------------------------------------
def test_record_numbers_are_gap_free_under_concurrent_authorizations(rec: tuple[Env, FixedClock]) -> None:
    env, _ = rec
    errors: list[str] = []

    def work(i: int) -> None:
        for j in range(6):
            if j % 2:  # a denial: a receipt at once
                r = env.authorize(payload={**WIRE, "amount_minor": 200_000_000 + i})
                ok = r.status_code == 403
            else:  # allowed, then notarized: a receipt at the end
                r = env.authorize()
                ok = r.status_code == 201 and env.client.post(
                    f"/v1/actions/{r.json()['action_id']}/notarize", headers=env.h("agent"),
                    json={"outcome": "completed"}).status_code == 200
            if not ok:
                errors.append(r.text)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    rows = sql(env, "SELECT tenant_seq, envelope_json FROM evidence WHERE tenant_id = ? AND kind = 'receipt'",
               env.tenant_id)
    seqs = sorted(r[0] for r in rows)
    assert seqs == list(range(1, 49))
    for seq, envelope in rows:  # the number is inside the signed statement
        assert Envelope.from_dict(json.loads(envelope)).statement()["predicate"]["sequence"] == seq
    assert sql(env, "SELECT count(*) FROM evidence WHERE kind = 'warrant' AND tenant_seq IS NOT NULL") == [(0,)]


# -- export ------------------------------------------------------------------------------------
def _period_with_everything(env: Env, clock: FixedClock) -> dict[str, Any]:
    ended = ended_action(env)
    denied = env.authorize(payload={**WIRE, "amount_minor": 200_000_000})
    assert denied.status_code == 403
    held = env.authorize(payload={**WIRE, "amount_minor": 6_000_000}).json()  # waits for approval: open
    approved = env.authorize(payload={**WIRE, "amount_minor": 7_000_000}).json()  # its warrant comes on approval
    code = env.approval_codes(approved["action_id"])[0]
    assert env.client.post(f"/v1/approvals/{code}/confirm", json={"decision": "approve"}).status_code == 200
    assert env.client.post(f"/v1/actions/{approved['action_id']}/notarize", headers=env.h("agent"),
                           json={"outcome": "completed"}).status_code == 200
    erased = ended_action(env)
    assert hold(env, ended["action_id"]).status_code == 200
    retention(env, 1)
    clock.advance(2 * DAY)
    run_retention(env)
    clock.advance(1)  # an export covers [from, to): to is now, after the last record
    return {"ended": ended, "denied": denied.json(), "open": held, "approved": approved, "erased": erased}


def test_an_export_proves_the_period_complete_after_erasures(rec: tuple[Env, FixedClock], tmp_path: Path,
                                                             capsys: Any) -> None:
    env, clock = rec
    made = _period_with_everything(env, clock)
    path = export(env, tmp_path / "export.jsonl")
    docs = lines_of(path)
    assert [d["type"] for d in docs[:2]] == ["trust", "range"] and docs[-1]["type"] == "manifest"
    records = [d for d in docs if d["type"] == "record"]
    assert [r["sequence"] for r in records] == list(range(1, len(records) + 1))
    assert {r["kind"] for r in records} == {"receipt", "hold", "erasure"}
    by_action = {r["action"]["action_id"]: r["action"] for r in records if r["action"]}
    assert by_action[made["ended"]["action_id"]]["intent"]["details"] == DETAILS  # held: kept
    gone = by_action[made["erased"]["action_id"]]
    assert gone["intent"] is None and gone["intent_salt"] is None and gone["erased_at"]
    assert gone["warrant"]["evidence_id"] == made["erased"]["warrant_id"]
    assert [d["action"]["action_id"] for d in docs if d["type"] == "open_action"] == [made["open"]["action_id"]]
    assert by_action[made["approved"]["action_id"]]["warrant"] is not None  # signed on approval, verified too
    assert BENEFICIARY not in json.dumps(gone)

    code, out = verify_cli(path, trust_file(env, tmp_path / "trust.json"), capsys)
    assert code == 0, out
    assert f"all {len(records)} records of 1..{len(records)} present and valid" in out
    assert "3 actions with erased details" in out and "VERIFIED" in out  # the denial's, the approved and erased


def test_an_export_with_a_line_removed_or_edited_fails_naming_the_sequence(rec: tuple[Env, FixedClock],
                                                                         tmp_path: Path, capsys: Any) -> None:
    env, clock = rec
    _period_with_everything(env, clock)
    path = export(env, tmp_path / "export.jsonl")
    trust = trust_file(env, tmp_path / "trust.json")
    raw = path.read_bytes().splitlines(keepends=True)
    index = {json.loads(line).get("sequence"): i for i, line in enumerate(raw) if b'"type":"record"' in line}

    removed = tmp_path / "removed.jsonl"
    removed.write_bytes(b"".join(line for i, line in enumerate(raw) if i != index[2]))
    code, out = verify_cli(removed, trust, capsys)
    assert code == 1 and "missing or invalid sequence numbers: 2" in out and "sequence 2: missing" in out

    last = max(index)
    truncated = tmp_path / "truncated.jsonl"  # the last record and the manifest cut off
    truncated.write_bytes(b"".join(raw[:index[last]]))
    code, out = verify_cli(truncated, trust, capsys)
    assert code == 1 and f"sequence {last}: missing" in out and "the export is truncated" in out

    for name, edit in (("payload", _edit_payload), ("envelope", _edit_envelope), ("id", _edit_id)):
        seq = 1 if name != "payload" else next(s for s, i in index.items() if json.loads(raw[i])["action"]
                                                and json.loads(raw[i])["action"]["intent"])
        edited = tmp_path / f"edited-{name}.jsonl"
        doc = json.loads(raw[index[seq]])
        edit(doc)
        lines = list(raw)
        lines[index[seq]] = json.dumps(doc, separators=(",", ":")).encode() + b"\n"
        edited.write_bytes(b"".join(lines))
        code, out = verify_cli(edited, trust, capsys)
        assert code == 1 and f"missing or invalid sequence numbers: {seq}" in out, (name, out)
        assert "FAIL  manifest" in out


def test_verify_export_draws_its_progress_bar_only_on_a_terminal(rec: tuple[Env, FixedClock], tmp_path: Path) -> None:
    env, clock = rec
    ended_action(env)
    clock.advance(1)
    args = argparse.Namespace(export=export(env, tmp_path / "export.jsonl"),
                              trust=trust_file(env, tmp_path / "trust.json"), json=True)

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal, pipe, out = Terminal(), io.StringIO(), io.StringIO()
    assert export_verify.run(args, out=out, err=terminal) == 0
    assert "verifying export.jsonl [" in terminal.getvalue() and "record 1" in terminal.getvalue()
    assert terminal.getvalue().endswith("\r\x1b[2K")  # erased before the report
    assert json.loads(out.getvalue())["ok"] is True
    assert export_verify.run(args, out=io.StringIO(), err=pipe) == 0 and pipe.getvalue() == ""


def _edit_payload(doc: dict[str, Any]) -> None:
    doc["action"]["intent"]["payload"]["amount_minor"] += 1


def _edit_envelope(doc: dict[str, Any]) -> None:
    statement = Envelope.from_dict(doc["envelope"]).statement()
    statement["predicate"]["status"] = "failed"
    doc["envelope"]["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()


def _edit_id(doc: dict[str, Any]) -> None:
    doc["evidence_id"] = doc["evidence_id"] + "x"  # the line no longer names what its statement signs


def test_export_tenant_isolation_roles_and_ranges(rec: tuple[Env, FixedClock], tmp_path: Path) -> None:
    env, clock = rec
    mine = ended_action(env)["action_id"]
    other = env.new_tenant()
    theirs = env.authorize(headers=bearer(other["agent"])).json()["action_id"]
    env.client.post(f"/v1/actions/{theirs}/notarize", headers=bearer(other["agent"]), json={"outcome": "completed"})
    clock.advance(1)
    r = env.client.get("/v1/export", headers=bearer(other["auditor"]))
    assert r.status_code == 200
    text = r.text
    assert theirs in text and mine not in text
    report = verify_export(read_lines(r.content.splitlines(keepends=True)), env.services.transparency.trust_bundle())
    assert report.ok and report.tenant_id != env.tenant_id and report.last == 1
    assert theirs not in export(env, tmp_path / "mine.jsonl").read_text()

    for role in ("agent", "app"):
        assert env.client.get("/v1/export", headers=env.h(role)).status_code == 403
    assert env.client.get("/v1/export", headers=env.h("admin")).status_code == 200
    now = datetime.now(UTC)
    bad = [({"from": isoformat(now), "to": isoformat(now - timedelta(hours=1))}, "from"),
           ({"to": isoformat(now + timedelta(days=3))}, "to"), ({"from": "yesterday"}, "from")]
    for params, field in bad:
        r = env.client.get("/v1/export", params=params, headers=env.h("auditor"))
        assert r.status_code == 422 and r.json()["code"] == "INVALID_RANGE", r.text
        assert r.json()["details"]["field"] == field


def test_consecutive_exports_meet_without_gap_or_overlap(rec: tuple[Env, FixedClock], tmp_path: Path) -> None:
    env, clock = rec
    ended_action(env)
    ended_action(env)
    clock.advance(60)
    middle = isoformat(clock.now())
    clock.advance(60)
    ended_action(env)
    clock.advance(60)
    first = lines_of(export(env, tmp_path / "a.jsonl", to=middle))[1]
    second = lines_of(export(env, tmp_path / "b.jsonl", **{"from": middle}))[1]
    assert (first["first_sequence"], first["last_sequence"]) == (1, 2)
    assert (second["first_sequence"], second["last_sequence"]) == (3, 3)


# -- the SIEM stream ---------------------------------------------------------------------------
def test_every_state_change_is_one_line_in_the_audit_file(tmp_path: Path) -> None:
    audit = tmp_path / "siem" / "audit.jsonl"
    with make_env(tmp_path / "data", audit_file=audit) as env:
        held = env.authorize(payload={**WIRE, "amount_minor": 6_000_000}).json()
        code = env.approval_codes(held["action_id"])[0]
        assert env.client.post(f"/v1/approvals/{code}/confirm", json={"decision": "approve"}).status_code == 200
        assert env.client.post(f"/v1/actions/{held['action_id']}/notarize", headers=env.h("agent"),
                               json={"outcome": "completed"}).status_code == 200
        assert hold(env, held["action_id"]).status_code == 200
        denied = env.authorize(payload={**WIRE, "amount_minor": 200_000_000}).json()
        assert env.services.audit_file is not None
        env.services.audit_file.drain_once()
        records = [json.loads(line) for line in audit.read_text().splitlines()]
    mine = [(r["event"], r.get("status")) for r in records if r.get("action_id") == held["action_id"]]
    assert mine == [("action.pending_approval", "pending_approval"), ("action.approved", "approved"),
                    ("action.notarized", "notarized"), ("action.legal_hold_set", None)]
    assert [r["event"] for r in records if r.get("action_id") == denied["details"]["action_id"]] == ["action.denied"]
    assert len({r["record_id"] for r in records}) == len(records)
    assert all(r["tenant_id"] == env.tenant_id and r["recorded_at"] for r in records)
    assert sql(env, "SELECT count(*) FROM audit_outbox") == [(0,)]  # every line written, then deleted


def test_audit_records_go_to_webhooks_subscribed_to_them(env: Env) -> None:
    r = env.client.post("/v1/webhooks", headers=env.h("admin"), json={"url": "http://127.0.0.1:9/siem",
                                                                      "events": ["audit.record"]})
    assert r.status_code == 201, r.text
    hook = r.json()["webhook_id"]
    action = marked_action(env)
    notarize(env, action["action_id"])
    deliveries = env.client.get(f"/v1/webhooks/{hook}/deliveries", headers=env.h("admin")).json()["data"]
    assert {d["event_type"] for d in deliveries} == {"audit.record"} and len(deliveries) == 2
    with sqlite3.connect(env.settings.data_dir / "warrantor.db") as conn:
        bodies = [json.loads(b) for (b,) in conn.execute("SELECT body FROM webhook_deliveries ORDER BY created_at")]
    assert [b["data"]["event"] for b in bodies] == ["action.authorized", "action.notarized"]
    assert all("\n" not in json.dumps(b) for b in bodies) and DETAILS not in json.dumps(bodies)
