"""Warrantor's evidence read by other people's tools, from a live app: securesystemslib
(DSSE with the trust bundle's keys), openssl and rfc3161-client (the checkpoint's
time-stamp), and witness cosignatures with the quorum the trust bundle names."""

from __future__ import annotations

import base64
import copy
import io
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from rfc3161_client import VerificationError as TimestampVerificationError
from rfc3161_client import VerifierBuilder, decode_timestamp_response
from securesystemslib.dsse import Envelope as SslibEnvelope
from securesystemslib.exceptions import VerificationError
from securesystemslib.signer import SSlibKey

from support import WIRE, Env, make_env
from warrantor.evidence.checkpoint import COSIG_SIG_TYPE, NoteSignature, NoteVerifier, cosign
from warrantor.evidence.dsse import pae
from warrantor.evidence.keys import SigningKey
from warrantor.evidence.proofs import ProofBundle, TrustBundle
from warrantor.verify import verify_bundle
from warrantor.verify.cli import main as verify_main

DOC = Path(__file__).resolve().parents[2] / "docs" / "offline-verification.md"


@pytest.fixture
def fast(tmp_path: Path) -> Any:
    with make_env(tmp_path, integrate_interval_ms=50) as env:
        yield env


def _warrant(env: Env) -> dict[str, Any]:
    r = env.authorize()
    assert r.status_code == 201 and r.json()["status"] == "authorized", r.text
    return dict(r.json())


def _bundle(env: Env, kind: str, evidence_id: str, fmt: str = "json") -> Any:
    r = env.client.get(f"/v1/{kind}s/{evidence_id}/bundle?format={fmt}", headers=env.h("auditor"))
    assert r.status_code == 200, r.text
    return r.json() if fmt == "json" else r.text


# -- keys: securesystemslib with only the trust bundle ----------------------------------
def _sslib_keys(trust: dict[str, Any]) -> list[SSlibKey]:
    """The documented mapping: the PEM, with Warrantor's keyid (what signatures name)."""
    return [SSlibKey.from_crypto(load_pem_public_key(k["public_key_pem"].encode()), keyid=k["keyid"])
            for k in trust["signing_keys"]]


def test_securesystemslib_verifies_a_live_warrant_with_only_the_trust_bundle(fast: Env) -> None:
    warrant = _warrant(fast)["warrant"]
    trust = fast.client.get("/v1/trust").json()  # public: no key
    accepted = SslibEnvelope.from_dict(copy.deepcopy(warrant)).verify(_sslib_keys(trust), 1)
    assert list(accepted) == [warrant["signatures"][0]["keyid"]]
    statement = json.loads(SslibEnvelope.from_dict(copy.deepcopy(warrant)).payload)
    assert statement["predicateType"] == "urn:warrantor:predicate:warrant:v1"
    for key in trust["signing_keys"]:  # sslib_keyid is what from_crypto gives without keyid=
        assert SSlibKey.from_crypto(load_pem_public_key(key["public_key_pem"].encode())).keyid == key["sslib_keyid"]


def test_securesystemslib_refuses_a_tampered_warrant_and_a_key_posing_under_a_trusted_keyid(fast: Env) -> None:
    warrant = _warrant(fast)["warrant"]
    trust = fast.client.get("/v1/trust").json()
    payload = bytearray(base64.b64decode(warrant["payload"]))
    payload[payload.index(b'"allow"') + 1] ^= 0x01
    tampered = {**warrant, "payload": base64.b64encode(bytes(payload)).decode()}
    with pytest.raises(VerificationError):
        SslibEnvelope.from_dict(copy.deepcopy(tampered)).verify(_sslib_keys(trust), 1)
    attacker = SigningKey.from_seed(b"a" * 32)  # signs a statement, claiming the trusted keyid
    sig = attacker.sign(pae(warrant["payloadType"], bytes(payload)))
    forged = {**tampered, "signatures": [{"keyid": warrant["signatures"][0]["keyid"],
                                          "sig": base64.b64encode(sig).decode()}]}
    with pytest.raises(VerificationError):
        SslibEnvelope.from_dict(copy.deepcopy(forged)).verify(_sslib_keys(trust), 1)


def test_keys_and_trust_publish_the_same_forms_of_each_signing_key(fast: Env) -> None:
    keys = {k["keyid"]: k for k in fast.client.get("/v1/keys").json()["keys"]}
    trust = fast.client.get("/v1/trust").json()
    for entry in trust["signing_keys"]:
        published = keys[entry["keyid"]]
        for form in ("public_key_pem", "jwk", "sslib_keyid"):
            assert published[form] == entry[form]
        assert published["jwk"]["kid"] == entry["keyid"]
    assert trust["tsa"]["jwk"]["kty"] == "EC" and trust["tsa"]["jwk"]["crv"] == "P-256"
    root = x509.load_pem_x509_certificate(trust["tsa"]["root_certificate"].encode())
    assert load_pem_public_key(trust["tsa"]["public_key_pem"].encode()) == root.public_key()


# -- RFC 3161: the TimeStampResp as tools read it ---------------------------------------
def _need(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"{', '.join(missing)} missing in CI: the documented RFC 3161 commands cannot run")
        pytest.skip(f"{', '.join(missing)} not installed: the documented RFC 3161 commands cannot run here")


def _documented_openssl_block() -> str:
    blocks = re.findall(r"```sh\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    return next(b for b in blocks if "openssl ts -verify" in b)


def _receipt_files(env: Env, directory: Path) -> dict[str, Any]:
    r = env.authorize(payload={**WIRE, "amount_minor": 200_000_000})
    assert r.status_code == 403
    bundle = _bundle(env, "receipt", r.json()["details"]["receipt_id"])
    (directory / "receipt.json").write_text(json.dumps(bundle))
    (directory / "trust.json").write_text(json.dumps(env.client.get("/v1/trust").json()))
    return dict(bundle)


def _run(script: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=cwd, capture_output=True, text=True,
                          check=False, timeout=60)


def test_the_documented_openssl_command_verifies_a_live_bundle(fast: Env, tmp_path: Path) -> None:
    _need("openssl", "jq", "base64")
    bundle = _receipt_files(fast, tmp_path)
    done = _run(_documented_openssl_block(), tmp_path)
    assert done.returncode == 0 and "Verification: OK" in done.stdout, done.stdout + done.stderr
    assert (tmp_path / "checkpoint.txt").read_text() == bundle["log"]["checkpoint"].split("\n\n")[0] + "\n"


def test_the_documented_openssl_command_refuses_other_bytes(fast: Env, tmp_path: Path) -> None:
    _need("openssl", "jq", "base64")
    _receipt_files(fast, tmp_path)
    lines = _documented_openssl_block().strip().splitlines()
    assert _run("\n".join(lines[:-1]), tmp_path).returncode == 0  # extract the files
    origin, size, root, _ = (tmp_path / "checkpoint.txt").read_text().split("\n")
    (tmp_path / "checkpoint.txt").write_text(f"{origin}\n{int(size) + 1}\n{root}\n")  # another tree size
    done = _run(lines[-1], tmp_path)
    assert done.returncode != 0 and "Verification: OK" not in done.stdout


def test_rfc3161_client_reads_the_bundled_and_served_responses_as_is(fast: Env) -> None:
    r = fast.authorize(payload={**WIRE, "amount_minor": 200_000_000})
    bundle = _bundle(fast, "receipt", r.json()["details"]["receipt_id"])
    root = x509.load_pem_x509_certificate(fast.client.get("/v1/trust").json()["tsa"]["root_certificate"].encode())
    verifier = VerifierBuilder().add_root_certificate(root).build()
    body = bundle["log"]["checkpoint"].split("\n\n")[0].encode() + b"\n"
    response = decode_timestamp_response(base64.b64decode(bundle["log"]["timestamp_response"]))
    verifier.verify_message(response, body)
    assert response.time_stamp_token() == base64.b64decode(bundle["log"]["timestamp_token"])
    with pytest.raises(TimestampVerificationError):
        verifier.verify_message(response, body + b"x")
    served = fast.client.get("/v1/log/checkpoint?format=json").json()
    note_body = served["note"].split("\n\n")[0].encode() + b"\n"
    verifier.verify_message(decode_timestamp_response(base64.b64decode(served["timestamp_response"])), note_body)
    extra = fast.client.get(f"/v1/receipts/{r.json()['details']['receipt_id']}/bundle?format=tlog-proof",
                            headers=fast.h("auditor")).text.split("\n")[1].removeprefix("extra ")
    assert json.loads(base64.b64decode(extra))["timestamp_response"] == bundle["log"]["timestamp_response"]


def test_a_response_carrying_another_token_than_the_bundle_is_refused(fast: Env) -> None:
    r = fast.authorize(payload={**WIRE, "amount_minor": 200_000_000})
    bundle = _bundle(fast, "receipt", r.json()["details"]["receipt_id"])
    other = fast.client.get("/v1/log/checkpoint?format=json").json()
    fast.authorize(details="move the log on")
    deadline = time.monotonic() + 5
    while (newer := fast.client.get("/v1/log/checkpoint?format=json").json())["size"] <= other["size"]:
        assert time.monotonic() < deadline, "no newer checkpoint"
        time.sleep(0.05)
    assert newer["timestamp_token"] != bundle["log"]["timestamp_token"]
    swapped = {**bundle, "log": {**bundle["log"], "timestamp_response": newer["timestamp_response"]}}
    with pytest.raises(ValueError, match="timestamp_response"):
        ProofBundle.from_dict(swapped)


# -- witnesses: cosignatures in bundles, the quorum in the trust bundle ------------------
WITNESS_KEYS = {name: SigningKey.from_seed(seed * 32)
                for name, seed in (("w1.example", b"1"), ("w2.example", b"2"), ("w3.example", b"3"))}


def _vkey(name: str) -> str:
    return NoteVerifier(name, WITNESS_KEYS[name].public_key, COSIG_SIG_TYPE).to_vkey()


@pytest.fixture
def witnessed(tmp_path: Path) -> Any:
    vkeys = ",".join(_vkey(n) for n in WITNESS_KEYS)
    with make_env(tmp_path, integrate_interval_ms=50, witness_keys=vkeys, witness_quorum=2) as env:
        yield env


def _integrated(env: Env, warrant_id: str) -> dict[str, Any]:
    """The latest checkpoint once it covers the warrant (the bundle endpoint waits for that)."""
    r = env.client.get(f"/v1/warrants/{warrant_id}/bundle", headers=env.h("auditor"))
    assert r.status_code == 409 and r.json()["code"] == "NOT_YET_WITNESSED", r.text
    assert r.json()["details"]["witness_quorum"] == 2 and r.headers["Retry-After"]
    doc: dict[str, Any] = env.client.get("/v1/log/checkpoint?format=json").json()
    return doc


def _cosign(env: Env, checkpoint: dict[str, Any], name: str) -> None:
    body = checkpoint["note"].split("\n\n")[0] + "\n"
    line = cosign(body, WITNESS_KEYS[name], name, 1_767_323_045).to_line()
    r = env.client.post("/v1/log/cosignatures", json={"size": checkpoint["size"], "cosignature": line})
    assert r.status_code == 201, r.text


def _verify_files(tmp_path: Path, bundle: Any, trust: dict[str, Any], *extra: str) -> tuple[int, str]:
    bundle_path = tmp_path / "bundle"
    bundle_path.write_text(bundle if isinstance(bundle, str) else json.dumps(bundle))
    (tmp_path / "trust.json").write_text(json.dumps(trust))
    out = io.StringIO()
    code = verify_main([str(bundle_path), "--trust", str(tmp_path / "trust.json"), *extra], out=out)
    return code, out.getvalue()


def test_a_bundle_carries_its_checkpoints_cosignatures_and_verify_enforces_the_quorum(
    witnessed: Env, tmp_path: Path
) -> None:
    warrant_id = _warrant(witnessed)["warrant_id"]
    checkpoint = _integrated(witnessed, warrant_id)
    trust = witnessed.client.get("/v1/trust").json()
    assert trust["witnesses"]["quorum"] == 2
    assert [w["vkey"] for w in trust["witnesses"]["keys"]] == [_vkey(n) for n in WITNESS_KEYS]
    _cosign(witnessed, checkpoint, "w1.example")
    r = witnessed.client.get(f"/v1/warrants/{warrant_id}/bundle", headers=witnessed.h("auditor"))
    assert (r.status_code, r.json()["code"]) == (409, "NOT_YET_WITNESSED")  # one of two
    _cosign(witnessed, checkpoint, "w3.example")
    bundle = _bundle(witnessed, "warrant", warrant_id)
    assert bundle["log"]["tree_size"] == checkpoint["size"]
    assert "\u2014 w1.example " in bundle["log"]["checkpoint"] and "\u2014 w3.example " in bundle["log"]["checkpoint"]
    code, out = _verify_files(tmp_path, bundle, trust)
    assert code == 0, out
    assert re.search(r"PASS  witnesses +2 of 3 trusted witnesses cosigned \(quorum 2\)", out), out
    text = _bundle(witnessed, "warrant", warrant_id, "tlog-proof")
    assert text.endswith(bundle["log"]["checkpoint"])  # the tlog-proof form ends with the cosigned note
    assert _verify_files(tmp_path, text, trust)[0] == 0


def _without(note: str, name: str) -> str:
    return "".join(line for line in note.splitlines(keepends=True) if not line.startswith(f"\u2014 {name} "))


def test_too_few_valid_cosignatures_fail_the_witnesses_check(witnessed: Env, tmp_path: Path) -> None:
    warrant_id = _warrant(witnessed)["warrant_id"]
    checkpoint = _integrated(witnessed, warrant_id)
    _cosign(witnessed, checkpoint, "w1.example")
    _cosign(witnessed, checkpoint, "w2.example")
    bundle = _bundle(witnessed, "warrant", warrant_id)
    trust = witnessed.client.get("/v1/trust").json()
    body = bundle["log"]["checkpoint"].split("\n\n")[0] + "\n"
    dropped = _without(bundle["log"]["checkpoint"], "w2.example")
    # w2's name and key id with a flipped signature byte: present, and not valid.
    genuine = cosign(body, WITNESS_KEYS["w2.example"], "w2.example", 1)
    bad = NoteSignature(genuine.name, genuine.key_hash, genuine.signature[:-1] + bytes([genuine.signature[-1] ^ 1]))
    forged = dropped + bad.to_line()
    for note, says in ((dropped, "missing: w2.example"), (forged, "invalid: w2.example")):
        doc = {**bundle, "log": {**bundle["log"], "checkpoint": note}}
        report = verify_bundle(ProofBundle.from_dict(doc), TrustBundle.from_dict(trust))
        assert [c.name for c in report.checks if not c.ok] == ["witnesses"], report.to_dict()
        assert "expected cosignatures by at least 2 trusted witnesses, 1 of 3" in report.check("witnesses").detail
        assert says in report.check("witnesses").detail
        code, out = _verify_files(tmp_path, doc, trust)
        assert code == 1 and "FAIL  witnesses" in out


def test_a_trust_bundle_without_the_quorum_does_not_enforce_it_but_a_pin_does(witnessed: Env, tmp_path: Path) -> None:
    warrant_id = _warrant(witnessed)["warrant_id"]
    checkpoint = _integrated(witnessed, warrant_id)
    _cosign(witnessed, checkpoint, "w1.example")
    _cosign(witnessed, checkpoint, "w2.example")
    bundle = _bundle(witnessed, "warrant", warrant_id)
    pinned = witnessed.client.get("/v1/trust").json()
    one = {**bundle, "log": {**bundle["log"], "checkpoint": _without(bundle["log"]["checkpoint"], "w2.example")}}
    lowered = {**pinned, "witnesses": {**pinned["witnesses"], "quorum": 0}}
    code, out = _verify_files(tmp_path, one, lowered)
    assert code == 0 and "PASS  witnesses" in out and "(quorum 0)" in out
    (tmp_path / "pin.json").write_text(json.dumps(pinned))
    code, out = _verify_files(tmp_path, one, lowered, "--pin", str(tmp_path / "pin.json"))
    assert code == 1
    assert "FAIL  trust" in out and "witness keys or the witness quorum differ" in out
    assert "FAIL  witnesses" in out  # the pinned quorum, 2, is the one applied


def test_a_quorum_larger_than_the_witness_list_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="WARRANTOR_WITNESS_QUORUM"), \
            make_env(tmp_path, witness_keys=_vkey("w1.example"), witness_quorum=2):
        pass
    doc_trust = {"log": {"origin": "o", "verifier_key": NoteVerifier("o", b"\x01" * 32).to_vkey()},
                 "signing_keys": [], "tsa": None, "witnesses": {"quorum": 1, "keys": []}}
    with pytest.raises(ValueError, match="witness quorum"):
        TrustBundle.from_dict(doc_trust)
