"""Trust anchors that a database row cannot change, and tampering that shows.

The attacker here can write any row (SQL on the database file) but holds no key file:
a signing key inserted as a row, and evidence signed with it, must be refused by every
reader (``/v1/keys``, ``/v1/trust``, confirm-execution, ``warrantor verify`` with the
server's trust or a pinned older one, ``warrantor audit``). A real rotation is followed.
Rewritten intents, log entries and checkpoints are named in the API, the console, the
audit and ``/readyz``.
"""

from __future__ import annotations

import base64
import json
import re
import sqlite3
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_console import console_login, user

from support import WIRE, Env, make_env
from warrantor.cli.audit import main as audit_main
from warrantor.cli.main import main as cli
from warrantor.domain.clock import isoformat
from warrantor.evidence.canonical import digest, sha256_hex
from warrantor.evidence.commitments import committed_intent
from warrantor.evidence.dsse import Envelope
from warrantor.evidence.keys import SigningKey
from warrantor.evidence.proofs import ProofBundle, TrustBundle
from warrantor.evidence.statement import RECEIPT_V1, WARRANT_V1, make_statement, sign_statement
from warrantor.verify import verify_bundle

ATTACKER = SigningKey.from_seed(b"a" * 32)


@pytest.fixture
def fast(tmp_path: Path) -> Iterator[Env]:
    with make_env(tmp_path, integrate_interval_ms=50, log_scrub_seconds=0.1) as env:
        yield env


def sql(env: Env, statement: str, *params: Any) -> list[Any]:
    """What an attacker with write access to the database (and nothing else) can do."""
    db = sqlite3.connect(env.settings.data_dir / "warrantor.db", timeout=10)
    try:
        rows = db.execute(statement, params).fetchall()
        db.commit()
        return rows
    finally:
        db.close()


def insert_key_row(env: Env, key: SigningKey) -> None:
    sql(env, "INSERT INTO signing_keys (keyid, public_key, not_before, not_after) VALUES (?, ?, ?, NULL)",
        key.keyid, key.public_key, "2000-01-01 00:00:00.000000")


def insert_evidence(env: Env, evidence_id: str, kind: str, action_id: str, envelope: Envelope) -> None:
    """A forged envelope recorded and sequenced in the log, as ``sequence_evidence`` would."""
    entry = sha256_hex(envelope.canonical_bytes())
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    db = sqlite3.connect(env.settings.data_dir / "warrantor.db", timeout=10)
    try:
        index = db.execute("SELECT value FROM counters WHERE name = 'log_size'").fetchone()[0]
        db.execute("UPDATE counters SET value = value + 1 WHERE name = 'log_size'")
        db.execute("INSERT INTO evidence (id, tenant_id, kind, action_id, envelope_json, envelope_digest, log_index,"
                   " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                   (evidence_id, env.tenant_id, kind, action_id, json.dumps(envelope.to_dict()), entry, index, now))
        db.execute("INSERT INTO log_entries (idx, entry, evidence_id, created_at) VALUES (?, ?, ?, ?)",
                   (index, bytes.fromhex(entry), evidence_id, now))
        db.commit()
    finally:
        db.close()


def write(path: Path, doc: Any) -> Path:
    path.write_text(json.dumps(doc))
    return path


def receipt_bundle(env: Env, receipt_id: str) -> dict[str, Any]:
    for _ in range(100):
        r = env.client.get(f"/v1/receipts/{receipt_id}/bundle", headers=env.h("auditor"))
        if r.status_code == 200:
            return dict(r.json())
        time.sleep(0.05)
    raise AssertionError(r.text)


def forged_receipt(env: Env, action_id: str, intent_digest: str) -> Envelope:
    predicate = {"receipt_id": "rcpt_forged", "tenant_id": env.tenant_id, "action_id": action_id,
                 "status": "notarized", "intent_digest": intent_digest, "decision": {"effect": "allow"},
                 "approvals": [], "issued_at": isoformat(datetime.now(UTC))}
    return sign_statement(make_statement(f"action:{action_id}", intent_digest, RECEIPT_V1, predicate), ATTACKER)


# -- the attacker who writes rows ---------------------------------------------------------
def test_a_signing_key_written_as_a_row_is_reported_and_never_trusted(fast: Env, tmp_path: Path,
                                                                      capsys: Any) -> None:
    pinned = write(tmp_path / "pinned.json", fast.client.get("/v1/trust").json())  # obtained before the attack
    action = fast.authorize().json()
    insert_key_row(fast, ATTACKER)
    signed_digest = Envelope.from_dict(action["warrant"]).statement()["subject"][0]["digest"]["sha256"]
    insert_evidence(fast, "rcpt_forged", "receipt", action["action_id"],
                    forged_receipt(fast, action["action_id"], signed_digest))
    forged = receipt_bundle(fast, "rcpt_forged")  # the server even serves a proof for it

    keys = fast.client.get("/v1/keys").json()
    assert ATTACKER.keyid not in {k["keyid"] for k in keys["keys"]}
    assert {"code": "UNTRUSTED_KEY_ROW", "keyid": ATTACKER.keyid}.items() <= keys["warnings"][0].items()
    trust_doc = fast.client.get("/v1/trust").json()
    assert ATTACKER.keyid not in {k["keyid"] for k in trust_doc["signing_keys"]}
    assert trust_doc["warnings"][0]["code"] == "UNTRUSTED_KEY_ROW"

    report = verify_bundle(ProofBundle.from_dict(forged), TrustBundle.from_dict(trust_doc))
    assert not report.ok and not report.check("signature").ok
    assert report.check("inclusion").ok  # it is in the log: only the key gives it away
    bundle, trust = write(tmp_path / "forged.json", forged), write(tmp_path / "trust.json", trust_doc)
    assert cli(["verify", str(bundle), "--trust", str(trust)]) == 1
    assert cli(["verify", str(bundle), "--trust", str(trust), "--pin", str(pinned)]) == 1
    assert "FAIL  signature" in capsys.readouterr().out

    # A server (or network) that offers the row's key in its trust bundle is caught by the pin.
    offered = {**trust_doc, "signing_keys": [*trust_doc["signing_keys"], {
        "keyid": ATTACKER.keyid, "public_key": base64.b64encode(ATTACKER.public_key).decode(),
        "not_before": "2000-01-01T00:00:00Z", "not_after": None}]}
    assert verify_bundle(ProofBundle.from_dict(forged), TrustBundle.from_dict(offered)).ok  # unpinned: believed
    assert cli(["verify", str(bundle), "--trust", str(write(tmp_path / "offered.json", offered)),
                "--pin", str(pinned)]) == 1
    out = capsys.readouterr().out
    assert re.search(f"FAIL  trust +key {ATTACKER.keyid} appears without a rotation statement", out)
    assert "FAIL  signature" in out and "NOT VERIFIED" in out


def test_confirm_execution_refuses_a_warrant_signed_by_a_row_key(fast: Env) -> None:
    action = fast.authorize().json()
    statement = Envelope.from_dict(action["warrant"]).statement()
    predicate = {**statement["predicate"], "warrant_id": "wrt_forged"}
    predicate["intent"] = {**predicate["intent"], "payload": {**WIRE, "amount_minor": 9_999_999}}
    forged = sign_statement(make_statement(f"action:{action['action_id']}", digest(predicate["intent"]),
                                           WARRANT_V1, predicate), ATTACKER)
    insert_key_row(fast, ATTACKER)
    insert_evidence(fast, "wrt_forged", "warrant", action["action_id"], forged)
    executed = {"type": "wire_transfer", "payload": predicate["intent"]["payload"],
                "executed_at": isoformat(datetime.now(UTC)), "executed_by": "bank-connector"}
    r = fast.client.post("/v1/confirm-execution", headers=fast.h("agent"),
                         json={"warrant": forged.to_dict(), "executed_action": executed})
    assert r.status_code == 422, r.text
    assert r.json()["code"].startswith("INTEGRITY_")


def test_a_pem_file_without_a_history_statement_is_not_trusted(tmp_path: Path) -> None:
    with make_env(tmp_path) as env:
        ATTACKER.save(tmp_path / "keys" / "signing" / f"{ATTACKER.keyid}.pem")
        assert ATTACKER.keyid not in {k.keyid for k in env.services.deps.keyring.trusted()}
        assert ATTACKER.keyid not in {k["keyid"] for k in env.client.get("/v1/keys").json()["keys"]}


def test_a_key_history_that_does_not_verify_stops_the_server(tmp_path: Path) -> None:
    with make_env(tmp_path):
        pass
    history = tmp_path / "keys" / "history.jsonl"
    doc = json.loads(history.read_text())
    doc["signatures"][0]["sig"] = base64.b64encode(ATTACKER.sign(b"x")).decode()
    history.write_text(json.dumps(doc) + "\n")
    from warrantor.service.proof.keyring import KeyHistoryError

    with pytest.raises(KeyHistoryError, match="does not verify"), make_env(tmp_path):
        pass


# -- a real rotation ----------------------------------------------------------------------
def through(env: Env, rewrite: Callable[[str, dict[str, Any]], dict[str, Any]] | None = None) -> httpx.MockTransport:
    """The app over an httpx transport, optionally rewriting JSON answers (a hostile network)."""

    def handle(request: httpx.Request) -> httpx.Response:
        r = env.client.request(request.method, request.url.path, params=request.url.params)
        if rewrite is not None and r.headers.get("content-type", "").startswith("application/json"):
            return httpx.Response(r.status_code, json=rewrite(request.url.path, r.json()))
        return httpx.Response(r.status_code, headers=r.headers, content=r.content)

    return httpx.MockTransport(handle)


def audit(env: Env, state: Path, *extra: str, rewrite: Any = None) -> int:
    return audit_main(["--server", "http://testserver", "--state", str(state), *extra],
                      transport=through(env, rewrite))


def test_a_rotation_is_signed_by_the_old_key_logged_and_followed_by_verify_and_audit(
        fast: Env, tmp_path: Path, capsys: Any) -> None:
    pinned_doc = fast.client.get("/v1/trust").json()
    pinned = write(tmp_path / "pinned.json", pinned_doc)
    state = tmp_path / "state.json"
    assert audit(fast, state, "--trust", str(pinned)) == 0
    old = fast.services.deps.keyring.active.keyid
    new = fast.services.rotate_signing_key()
    receipt_id = fast.authorize(payload={**WIRE, "amount_minor": 200_000_000}).json()["details"]["receipt_id"]
    bundle = write(tmp_path / "after.json", receipt_bundle(fast, receipt_id))

    current = fast.client.get("/v1/trust").json()
    history = TrustBundle.from_dict(current).key_history
    assert len(history) == 2 and history[1].signatures[0].keyid == old  # announced by the old key
    assert history[1].statement()["subject"][0]["name"] == f"key:{new}"
    trust = write(tmp_path / "trust.json", current)
    capsys.readouterr()
    assert cli(["verify", str(bundle), "--trust", str(pinned)]) == 1  # the old bundle alone knows no new key
    assert cli(["verify", str(bundle), "--trust", str(trust), "--pin", str(pinned)]) == 0
    assert re.search(f"PASS  trust +followed signed rotations to {new[:16]}", capsys.readouterr().out)

    assert audit(fast, state, "--entries", str(bundle)) == 0
    out = capsys.readouterr().out
    assert "PASS  trust" in out and "PASS  key_history  2 key statement(s) logged" in out
    assert new in {k["keyid"] for k in json.loads(state.read_text())["trust"]["signing_keys"]}

    def add_row_key(path: str, doc: dict[str, Any]) -> dict[str, Any]:
        if path != "/v1/trust":
            return doc
        key = {"keyid": ATTACKER.keyid, "public_key": base64.b64encode(ATTACKER.public_key).decode(),
               "not_before": "2000-01-01T00:00:00Z", "not_after": None}
        return {**doc, "signing_keys": [*doc["signing_keys"], key]}

    saved = state.read_text()
    assert audit(fast, state, rewrite=add_row_key) == 1
    assert f"FAIL  trust  key {ATTACKER.keyid} appears without a rotation statement" in capsys.readouterr().out
    assert state.read_text() == saved

    insert_key_row(fast, ATTACKER)
    assert audit(fast, state) == 1
    assert f"FAIL  signing_keys  UNTRUSTED_KEY_ROW: the signing_keys table names key {ATTACKER.keyid}" \
        in capsys.readouterr().out


# -- tamper visibility --------------------------------------------------------------------
def test_an_intent_rewritten_in_the_database_is_flagged_in_the_api_and_the_console(fast: Env) -> None:
    tampered = fast.authorize().json()
    untouched = fast.authorize().json()
    assert fast.client.get(f"/v1/actions/{tampered['action_id']}", headers=fast.h("admin")).json()["integrity"] == "ok"
    stored, salt = sql(fast, "SELECT details_json, details_salt FROM actions WHERE id = ?", tampered["action_id"])[0]
    values = json.loads(stored)
    values["payload"]["beneficiary"] = "Mallory Ltd"
    full = {**json.loads(sql(fast, "SELECT intent_json FROM actions WHERE id = ?", tampered["action_id"])[0][0]),
            **values}
    full.pop("commitments")
    committed = committed_intent(full, salt)  # covering its tracks, salt and all
    sql(fast, "UPDATE actions SET details_json = ?, intent_json = ?, intent_digest = ? WHERE id = ?",
        json.dumps(values), json.dumps(committed), digest(committed), tampered["action_id"])

    shown = fast.client.get(f"/v1/actions/{tampered['action_id']}", headers=fast.h("admin")).json()
    assert shown["integrity"] == "mismatch"
    assert any("no longer matches the signed digest" in p for p in shown["integrity_problems"])
    listed = {a["action_id"]: a["integrity"] for a in
              fast.client.get("/v1/actions", headers=fast.h("admin")).json()["data"]}
    assert (listed[tampered["action_id"]], listed[untouched["action_id"]]) == ("mismatch", "ok")

    user(fast, "auditor@example.com", roles=["auditor"])
    console = console_login(fast, "auditor@example.com")
    page = console.get(f"/console/actions/{tampered['action_id']}").text
    assert "integrity: mismatch" in page and "no longer matches the signed digest" in page
    assert "integrity: mismatch" not in console.get(f"/console/actions/{untouched['action_id']}").text


def test_an_action_with_nothing_signed_yet_is_unsigned_until_its_row_disagrees(fast: Env) -> None:
    held = fast.authorize(payload={**WIRE, "amount_minor": 6_000_000}).json()
    assert held["status"] == "pending_approval"
    url = f"/v1/actions/{held['action_id']}"
    assert fast.client.get(url, headers=fast.h("admin")).json()["integrity"] == "unsigned"
    sql(fast, "UPDATE actions SET intent_json = ? WHERE id = ?", json.dumps({"payload": {}}), held["action_id"])
    assert fast.client.get(url, headers=fast.h("admin")).json()["integrity"] == "mismatch"


def logged(env: Env, entries: int) -> None:
    """``entries`` actions authorized and integrated into a signed checkpoint."""
    for _ in range(entries - 1):
        env.authorize()
    receipt_bundle(env, env.authorize(payload={**WIRE, "amount_minor": 200_000_000}).json()["details"]["receipt_id"])


def test_audit_names_a_log_entry_altered_or_deleted_in_the_database(tmp_path: Path, capsys: Any) -> None:
    with make_env(tmp_path, integrate_interval_ms=50) as env:  # the server re-checks only every minute
        logged(env, 6)
        state = tmp_path / "state.json"
        assert audit(env, state) == 0
        sql(env, "UPDATE log_entries SET entry = ? WHERE idx = 3", b"\x07" * 32)
        sql(env, "DELETE FROM log_entries WHERE idx = 5")
        assert env.client.get("/readyz").status_code == 200  # the server has not looked yet
        assert audit(env, state) == 1
    out = capsys.readouterr().out
    assert "FAIL  log_entries  entry 3: leaf hash differs" in out
    assert "FAIL  log_entries  entry 5: missing (deleted)" in out
    assert "LOG CHECK FAILED" in out


def test_readyz_reports_a_log_that_no_longer_matches_its_checkpoint(fast: Env, tmp_path: Path,
                                                                    capsys: Any) -> None:
    logged(fast, 2)
    state = tmp_path / "state.json"
    assert audit(fast, state) == 0
    assert fast.client.get("/readyz").status_code == 200
    sql(fast, "UPDATE log_entries SET entry = ? WHERE idx = 1", b"\x07" * 32)
    deadline = time.monotonic() + 10
    while (r := fast.client.get("/readyz")).status_code == 200 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert r.status_code == 503
    assert r.json()["code"] == "LOG_INCONSISTENT" and "entry 1: leaf hash differs" in r.json()["detail"]
    # The server now refuses its log; a monitor still names the entry from what it saw before.
    capsys.readouterr()
    assert audit(fast, state) == 1
    out = capsys.readouterr().out
    assert "FAIL  checkpoint_signature  the server refuses to serve its log: LOG_INCONSISTENT" in out
    assert "FAIL  log_entries  entry 1: leaf hash differs" in out
