"""SCITT exports (RFC 9943, RFC 9942) checked with an independent COSE library (pycose)
and the trust bundle alone: the signed statement verifies with a signing key of the trust
bundle, the receipt with the log key over the Merkle root this test recomputes from the
leaf and the inclusion proof (RFC 9162 section 2.1.3.2, written out below), and that root is
the one the log's signed checkpoint names."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import cbor2
import pytest
from pycose.headers import KID, Algorithm, ContentType
from pycose.keys import OKPKey
from pycose.keys.curves import Ed25519
from pycose.messages import Sign1Message

from support import WIRE, Env, bearer
from warrantor.evidence.checkpoint import NoteVerifier, open_checkpoint
from warrantor.evidence.dsse import Envelope, verify_envelope
from warrantor.evidence.keys import VerifyKey

BIG = {"amount_minor": 200_000_000, "currency": "EUR", "beneficiary": "ACME GmbH"}
RECEIPTS, VDS, VDP, CWT_CLAIMS = 394, 395, 396, 15


def root_from_inclusion_proof(leaf: bytes, index: int, size: int, path: list[bytes]) -> bytes:
    """RFC 9162 section 2.1.3.2, step by step: the root the proof leads to from ``leaf``."""
    def node(left: bytes, right: bytes) -> bytes:
        return hashlib.sha256(b"\x01" + left + right).digest()

    assert 0 <= index < size
    fn, sn, r = index, size - 1, leaf
    for p in path:
        assert sn != 0, "the proof is longer than the tree is deep"
        if fn % 2 == 1 or fn == sn:
            r = node(p, r)
            while fn % 2 == 0 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node(r, p)
        fn, sn = fn >> 1, sn >> 1
    assert sn == 0, "the proof is shorter than the tree is deep"
    return r


def okp(raw: bytes) -> OKPKey:
    return OKPKey(crv=Ed25519, x=raw)


def trust(env: Env) -> dict[str, Any]:
    body: dict[str, Any] = env.client.get("/v1/trust").json()
    return body


def log_key(bundle: dict[str, Any]) -> bytes:
    x = bundle["log"]["jwk"]["x"]
    return base64.urlsafe_b64decode(x + "=" * (-len(x) % 4))


def signing_key(bundle: dict[str, Any], kid: bytes) -> bytes:
    [entry] = [k for k in bundle["signing_keys"] if k["keyid"] == kid.hex()]
    return base64.b64decode(entry["public_key"])


def denied_receipt(env: Env) -> str:
    r = env.authorize(payload=BIG)
    assert r.status_code == 403
    receipt_id: str = r.json()["details"]["receipt_id"]
    return receipt_id


def export(env: Env, kind: str, evidence_id: str, role: str = "agent", fmt: str | None = None) -> Any:
    query = f"?format={fmt}" if fmt else ""
    return env.client.get(f"/v1/{kind}s/{evidence_id}/scitt{query}", headers=env.h(role))


def check_transparent_statement(env: Env, raw: bytes, evidence_id: str) -> dict[str, Any]:
    """Everything a SCITT relying party checks, with pycose and the trust bundle only."""
    bundle = trust(env)
    statement = Sign1Message.decode(raw)
    # The signed statement: EdDSA by a signing key of the trust bundle, CWT claims per RFC 9943.
    assert statement.phdr[Algorithm].identifier == -8
    assert statement.phdr[ContentType] == "application/vnd.dsse.envelope.v1+json"
    claims = statement.phdr[CWT_CLAIMS]
    assert claims[1] == bundle["log"]["origin"]
    statement.key = okp(signing_key(bundle, statement.phdr[KID]))
    assert statement.verify_signature()
    # Its payload is the logged DSSE envelope, itself signed by the same key, about this action.
    envelope = Envelope.from_dict(json.loads(statement.payload))
    keys = [VerifyKey(base64.b64decode(k["public_key"])) for k in bundle["signing_keys"]]
    assert verify_envelope(envelope, keys) is not None
    assert claims[2] == envelope.statement()["subject"][0]["name"]
    assert claims[2].startswith("action:")
    # The receipt: RFC9162_SHA256, the proof in the unprotected header, the root detached.
    [receipt_bytes] = statement.uhdr[RECEIPTS]
    receipt = Sign1Message.decode(receipt_bytes)
    assert receipt.phdr[VDS] == 1 and receipt.phdr[Algorithm].identifier == -8
    assert receipt.phdr[CWT_CLAIMS][1] == bundle["log"]["origin"] and receipt.phdr[CWT_CLAIMS][2] == claims[2]
    assert receipt.payload is None  # detached: the verifier must recompute the root
    [proof] = receipt.uhdr[VDP][-1]
    size, index, path = cbor2.loads(proof)
    entry = hashlib.sha256(statement.payload).digest()  # the log entry: SHA-256 of the payload
    leaf = hashlib.sha256(b"\x00" + entry).digest()
    root = root_from_inclusion_proof(leaf, index, size, path)
    receipt.key = okp(log_key(bundle))
    assert receipt.phdr[KID] == hashlib.sha256(log_key(bundle)).digest()
    assert receipt.verify_signature(detached_payload=root)
    return {"statement": statement, "receipt": receipt, "root": root, "size": size, "index": index,
            "path": path, "leaf": leaf, "envelope": envelope}


def test_a_receipt_exports_as_a_transparent_statement_that_pycose_verifies(env: Env) -> None:
    receipt_id = denied_receipt(env)
    r = export(env, "receipt", receipt_id)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/scitt-statement+cose"
    checked = check_transparent_statement(env, r.content, receipt_id)
    # The DSSE envelope is the receipt as GET /v1/receipts/{id} serves it.
    stored = env.client.get(f"/v1/receipts/{receipt_id}", headers=env.h("agent")).json()
    assert checked["envelope"].to_dict() == stored["envelope"]


def test_a_warrant_exports_too(env: Env) -> None:
    r = env.authorize()
    warrant_id = r.json()["warrant_id"]
    exported = export(env, "warrant", warrant_id)
    assert exported.status_code == 200, exported.text
    checked = check_transparent_statement(env, exported.content, warrant_id)
    assert checked["envelope"].statement()["predicateType"] == "urn:warrantor:predicate:warrant:v1"


def test_the_json_form_names_every_part_consistently(env: Env) -> None:
    receipt_id = denied_receipt(env)
    body = export(env, "receipt", receipt_id, fmt="json").json()
    checked = check_transparent_statement(env, base64.b64decode(body["transparent_statement"]), receipt_id)
    assert body["receipt_id"] == receipt_id
    assert body["content_type"] == "application/vnd.dsse.envelope.v1+json"
    assert body["log"]["index"] == checked["index"] and body["log"]["tree_size"] == checked["size"]
    assert base64.b64decode(body["log"]["root_hash"]) == checked["root"]
    assert base64.b64decode(body["log"]["entry"]) == hashlib.sha256(checked["statement"].payload).digest()
    # The root is the one the log key signed in its C2SP checkpoint at that size.
    note = open_checkpoint(body["log"]["checkpoint"], NoteVerifier.from_vkey(trust(env)["log"]["verifier_key"]))
    assert note.size == checked["size"] and note.root_hash == checked["root"]
    signed = Sign1Message.decode(base64.b64decode(body["signed_statement"]))
    assert signed.uhdr == {}  # a signed statement as registered: empty unprotected header
    assert body["statement_kid"] == signed.phdr[KID].hex()
    assert body["receipt_kid"] == hashlib.sha256(log_key(trust(env))).hexdigest()
    bare = export(env, "receipt", receipt_id, fmt="receipt")
    assert bare.headers["content-type"] == "application/scitt-receipt+cose"
    receipt = Sign1Message.decode(bare.content)
    receipt.key = okp(log_key(trust(env)))
    assert receipt.verify_signature(detached_payload=checked["root"])


def test_tampering_fails_each_check(env: Env) -> None:
    receipt_id = denied_receipt(env)
    checked = check_transparent_statement(env, export(env, "receipt", receipt_id).content, receipt_id)
    bundle = trust(env)
    statement, receipt = checked["statement"], checked["receipt"]
    # Another payload under the same signature.
    forged = Sign1Message.decode(statement.encode(tag=True, sign=False))
    forged.payload = statement.payload.replace(b'"payloadType"', b'"payloadtype"')
    forged.key = okp(signing_key(bundle, statement.phdr[KID]))
    assert not forged.verify_signature()
    # Another entry (a different envelope) leads to another root: the receipt fails.
    other = hashlib.sha256(b"\x00" + hashlib.sha256(b"another envelope").digest()).digest()
    wrong_root = root_from_inclusion_proof(other, checked["index"], checked["size"], checked["path"])
    assert not receipt.verify_signature(detached_payload=wrong_root)
    # The receipt is the log key's, not a signing key's; the statement is not the log key's.
    receipt.key = okp(signing_key(bundle, statement.phdr[KID]))
    assert not receipt.verify_signature(detached_payload=checked["root"])
    statement.key = okp(log_key(bundle))
    assert not statement.verify_signature()


def test_the_readers_are_those_of_the_proof_bundles(env: Env) -> None:
    receipt_id = denied_receipt(env)
    for role in ("agent", "admin", "auditor"):
        assert export(env, "receipt", receipt_id, role).status_code == 200
    # Another agent's key, another tenant's key, the wrong kind, an unknown id: 404.
    r = env.client.post("/v1/api-keys", headers=env.h("admin"), json={"role": "agent", "agent_id": "treasury-agent"})
    other_agent = r.json()["key"]
    r = env.client.get(f"/v1/receipts/{receipt_id}/scitt", headers=bearer(other_agent))
    assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
    other_tenant = env.new_tenant()
    assert env.client.get(f"/v1/receipts/{receipt_id}/scitt", headers=bearer(other_tenant["admin"])).status_code == 404
    assert export(env, "warrant", receipt_id).status_code == 404
    assert export(env, "receipt", "rcpt_unknown").status_code == 404
    assert env.client.get(f"/v1/receipts/{receipt_id}/scitt").status_code == 401


@pytest.mark.parametrize("fmt", ["cbor", "tlog-proof", ""])
def test_an_unknown_format_is_a_4xx_naming_it(env: Env, fmt: str) -> None:
    receipt_id = denied_receipt(env)
    r = env.client.get(f"/v1/receipts/{receipt_id}/scitt?format={fmt}", headers=env.h("agent"))
    assert 400 <= r.status_code < 500
    assert "format" in r.text


def test_exports_sign_but_log_nothing(env: Env) -> None:
    warrant_id = env.authorize(payload=WIRE).json()["warrant_id"]
    assert export(env, "warrant", warrant_id).status_code == 200
    with env.services.store.read() as repo:
        before = repo.counter("log_size")
    for fmt in ("cose", "json", "receipt"):
        assert export(env, "warrant", warrant_id, fmt=fmt).status_code == 200
    with env.services.store.read() as repo:
        assert repo.counter("log_size") == before


def test_the_docs_example_runs_as_written(env: Env, tmp_path: Any, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    text = (Path(__file__).resolve().parents[2] / "docs" / "scitt.md").read_text()
    [block] = re.findall(r"```python\n(.*?)```", text, re.S)
    receipt_id = denied_receipt(env)
    (tmp_path / "trust.json").write_text(json.dumps(trust(env)))
    (tmp_path / "receipt.scitt").write_bytes(export(env, "receipt", receipt_id, role="auditor").content)
    monkeypatch.chdir(tmp_path)
    exec(compile(block, "docs/scitt.md", "exec"), {})
    assert capsys.readouterr().out.strip() == "urn:warrantor:predicate:receipt:v1"
    # And it refuses a statement whose payload was changed.
    raw = (tmp_path / "receipt.scitt").read_bytes()
    (tmp_path / "receipt.scitt").write_bytes(raw.replace(b'"payloadType"', b'"payloadtype"'))
    with pytest.raises(AssertionError):
        exec(compile(block, "docs/scitt.md", "exec"), {})
