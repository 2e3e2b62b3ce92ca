"""The offline verifier: each kind of tampering is caught by the check named for it."""

import dataclasses
import hashlib
import itertools
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from warrantor.evidence.canonical import digest
from warrantor.evidence.checkpoint import (
    Checkpoint,
    NoteSignature,
    NoteSigner,
    parse_signed_note,
    sign_note,
)
from warrantor.evidence.dsse import Envelope
from warrantor.evidence.keys import SigningKey, VerifyKey
from warrantor.evidence.merkle import MerkleTree, leaf_hash
from warrantor.evidence.proofs import ProofBundle, TrustBundle, entry_for
from warrantor.evidence.statement import RECEIPT_V1, make_statement, sign_statement
from warrantor.evidence.tsa import BuiltinTSA, TSAChain, generate_chain
from warrantor.verify import (
    CheckResult,
    Report,
    VerifyCache,
    format_report,
    verifier,
    verify_bundle,
    verify_bundles,
    verify_envelope_only,
)
from warrantor.verify.cli import main

ORIGIN = "log.warrantor.example/test"
NAMES = [
    "signature",
    "key_validity",
    "subject_digest",
    "inclusion",
    "checkpoint_signature",
    "timestamp",
]
NOW = datetime.now(UTC).replace(microsecond=0)
ISSUED = NOW - timedelta(minutes=1)
SIGNING_KEY = SigningKey.from_seed(b"\x11" * 32)
LOG = NoteSigner(ORIGIN, SigningKey.from_seed(b"\x22" * 32))
INTENT = {"tool": "payments.transfer", "args": {"amount": 100, "currency": "EUR"}}


@pytest.fixture(scope="module")
def tsa_chain() -> TSAChain:
    return generate_chain("Warrantor Test TSA", now=NOW)  # tokens are stamped at NOW, fixed at import


def receipt(
    intent: dict[str, Any] = INTENT,
    issued: datetime = ISSUED,
    key: SigningKey = SIGNING_KEY,
    action: str = "act_1",
) -> Envelope:
    predicate = {
        "decision": "allow",
        "intent": intent,
        "issued_at": issued.isoformat().replace("+00:00", "Z"),
    }
    return sign_statement(
        make_statement(f"action:{action}", digest(intent), RECEIPT_V1, predicate), key
    )


@dataclasses.dataclass
class World:
    bundle: ProofBundle
    trust: TrustBundle
    tree: MerkleTree
    tsa: BuiltinTSA


def stamp(tsa: BuiltinTSA, note: str) -> bytes:
    return tsa.timestamp(parse_signed_note(note).body.encode())


def build_world(
    tsa_chain: TSAChain, envelope: Envelope | None = None, index: int = 5, size: int = 11
) -> World:
    envelope = envelope or receipt()
    tree = MerkleTree()
    for i in range(size):
        entry = entry_for(envelope) if i == index else hashlib.sha256(b"%d" % i).digest()
        tree.append(leaf_hash(entry))
    note = sign_note(Checkpoint(ORIGIN, size, tree.root()).body(), [LOG])
    counter = itertools.count(1)
    tsa = BuiltinTSA(tsa_chain, lambda: next(counter), lambda: NOW)
    bundle = ProofBundle(
        envelope, index, size, tuple(tree.inclusion_proof(index, size)), note, stamp(tsa, note)
    )
    key = VerifyKey(SIGNING_KEY.public_key, ISSUED - timedelta(days=1), None)
    trust = TrustBundle(ORIGIN, LOG.verifier(), (key,), tsa_chain.root_cert_pem.decode())
    return World(bundle, trust, tree, tsa)


@pytest.fixture
def world(tsa_chain: TSAChain) -> World:
    return build_world(tsa_chain)


def failed(report: Report) -> set[str]:
    return {c.name for c in report.checks if not c.ok}


def test_genuine_bundle_passes_every_check_in_order(world: World) -> None:
    report = verify_bundle(world.bundle, world.trust)
    assert [c.name for c in report.checks] == NAMES
    assert report.ok, format_report(report)


def test_tampered_receipt_fails_signature_and_inclusion(world: World) -> None:
    statement = json.loads(world.bundle.envelope.payload)
    statement["predicate"]["decision"] = "deny"
    payload = json.dumps(statement).encode()
    envelope = dataclasses.replace(world.bundle.envelope, payload=payload)
    report = verify_bundle(dataclasses.replace(world.bundle, envelope=envelope), world.trust)
    assert failed(report) == {"signature", "key_validity", "inclusion"}


def test_foreign_signing_key_fails_signature(world: World) -> None:
    foreign = receipt(key=SigningKey.from_seed(b"\x33" * 32))
    report = verify_bundle(build_world_with(world, foreign), world.trust)
    assert "signature" in failed(report)
    assert "no signature verifies" in report.check("signature").detail


def build_world_with(world: World, envelope: Envelope) -> ProofBundle:
    """A bundle whose log genuinely contains ``envelope`` (so only signing can fail)."""
    tree = MerkleTree(world.tree._levels[0][i * 32 : i * 32 + 32] for i in range(world.tree.size))
    index = tree.append(leaf_hash(entry_for(envelope)))
    note = sign_note(Checkpoint(ORIGIN, tree.size, tree.root()).body(), [LOG])
    return ProofBundle(
        envelope,
        index,
        tree.size,
        tuple(tree.inclusion_proof(index, tree.size)),
        note,
        stamp(world.tsa, note),
    )


def test_foreign_key_with_a_forged_keyid_still_fails(world: World) -> None:
    foreign = receipt(key=SigningKey.from_seed(b"\x33" * 32))
    sig = dataclasses.replace(foreign.signatures[0], keyid=SIGNING_KEY.keyid)
    forged = dataclasses.replace(foreign, signatures=(sig,))
    assert "signature" in failed(verify_bundle(build_world_with(world, forged), world.trust))


def test_truncated_proof_fails_inclusion(world: World) -> None:
    bundle = dataclasses.replace(world.bundle, inclusion_proof=world.bundle.inclusion_proof[:-1])
    assert failed(verify_bundle(bundle, world.trust)) == {"inclusion"}


def test_forked_checkpoint_signed_by_another_key_fails(world: World) -> None:
    rogue = NoteSigner(ORIGIN, SigningKey.from_seed(b"\x44" * 32))
    other_root = hashlib.sha256(b"fork").digest()
    note = sign_note(Checkpoint(ORIGIN, world.bundle.tree_size, other_root).body(), [rogue])
    bundle = dataclasses.replace(
        world.bundle, checkpoint=note, timestamp_token=stamp(world.tsa, note)
    )
    report = verify_bundle(bundle, world.trust)
    assert failed(report) == {"inclusion", "checkpoint_signature"}
    assert "found none" in report.check("checkpoint_signature").detail


def test_forked_checkpoint_with_a_wrong_signature_by_the_log_key_fails(world: World) -> None:
    body = Checkpoint(ORIGIN, world.bundle.tree_size, hashlib.sha256(b"fork").digest()).body()
    genuine = parse_signed_note(world.bundle.checkpoint).signatures[0]
    note = parse_signed_note(world.bundle.checkpoint)
    forged = dataclasses.replace(note, body=body, signatures=(genuine,)).to_text()
    bundle = dataclasses.replace(
        world.bundle, checkpoint=forged, timestamp_token=stamp(world.tsa, forged)
    )
    report = verify_bundle(bundle, world.trust)
    assert failed(report) == {"inclusion", "checkpoint_signature"}
    assert "does not verify" in report.check("checkpoint_signature").detail


def test_rewritten_entry_fails_inclusion_only(world: World) -> None:
    other = receipt(intent={"tool": "payments.transfer", "args": {"amount": 9999}})
    report = verify_bundle(dataclasses.replace(world.bundle, envelope=other), world.trust)
    assert failed(report) == {"inclusion"}


def test_moved_index_fails_inclusion(world: World) -> None:
    bundle = dataclasses.replace(world.bundle, log_index=world.bundle.log_index + 1)
    assert failed(verify_bundle(bundle, world.trust)) == {"inclusion"}


def test_checkpoint_size_must_match_the_bundle(world: World) -> None:
    bundle = dataclasses.replace(world.bundle, tree_size=world.bundle.tree_size + 1)
    report = verify_bundle(bundle, world.trust)
    assert failed(report) == {"inclusion"}
    assert "size" in report.check("inclusion").detail


def test_issued_after_key_retirement_fails_key_validity(world: World) -> None:
    retired = VerifyKey(SIGNING_KEY.public_key, None, ISSUED - timedelta(seconds=1))
    trust = dataclasses.replace(world.trust, signing_keys=(retired,))
    assert failed(verify_bundle(world.bundle, trust)) == {"key_validity"}


def test_retired_key_still_verifies_what_it_signed_while_valid(world: World) -> None:
    retired = VerifyKey(SIGNING_KEY.public_key, ISSUED - timedelta(days=9), ISSUED)
    trust = dataclasses.replace(world.trust, signing_keys=(retired,))
    assert verify_bundle(world.bundle, trust).ok


def test_intent_that_does_not_hash_to_the_subject_fails_subject_digest(
    tsa_chain: TSAChain,
) -> None:
    predicate = {"decision": "allow", "intent": {"tool": "x"}, "issued_at": ISSUED.isoformat()}
    statement = make_statement("action:act_2", digest(INTENT), RECEIPT_V1, predicate)
    w = build_world(tsa_chain, sign_statement(statement, SIGNING_KEY))
    assert failed(verify_bundle(w.bundle, w.trust)) == {"subject_digest"}


def test_expected_subject_digest_is_enforced(world: World) -> None:
    assert verify_bundle(world.bundle, world.trust, expected_subject_digest=digest(INTENT)).ok
    report = verify_bundle(world.bundle, world.trust, expected_subject_digest="0" * 64)
    assert failed(report) == {"subject_digest"}


def test_subject_must_name_an_action(tsa_chain: TSAChain) -> None:
    predicate = {"issued_at": ISSUED.isoformat()}
    statement = make_statement("policy:p1", digest(INTENT), RECEIPT_V1, predicate)
    w = build_world(tsa_chain, sign_statement(statement, SIGNING_KEY))
    assert failed(verify_bundle(w.bundle, w.trust)) == {"subject_digest"}


def test_missing_timestamp_fails_when_the_trust_bundle_has_a_tsa(world: World) -> None:
    bundle = dataclasses.replace(world.bundle, timestamp_token=None)
    assert failed(verify_bundle(bundle, world.trust)) == {"timestamp"}


def test_timestamp_is_optional_without_a_tsa_root(world: World) -> None:
    trust = dataclasses.replace(world.trust, tsa_root_pem=None)
    bundle = dataclasses.replace(world.bundle, timestamp_token=None)
    report = verify_bundle(bundle, trust)
    assert report.ok and "skipped" in report.check("timestamp").detail


def test_timestamp_over_another_checkpoint_fails(world: World) -> None:
    other = sign_note(Checkpoint(ORIGIN, 3, world.tree.root(3)).body(), [LOG])
    bundle = dataclasses.replace(world.bundle, timestamp_token=stamp(world.tsa, other))
    assert failed(verify_bundle(bundle, world.trust)) == {"timestamp"}


def test_timestamp_before_issuance_fails(tsa_chain: TSAChain) -> None:
    w = build_world(tsa_chain, receipt(issued=NOW + timedelta(seconds=1)))
    report = verify_bundle(w.bundle, w.trust)
    assert failed(report) == {"timestamp"}
    assert "genTime" in report.check("timestamp").detail


def test_checkpoint_with_extra_witness_signature_still_verifies(world: World) -> None:
    note = parse_signed_note(world.bundle.checkpoint)
    extra = NoteSignature("witness.example/w1", b"\x01\x02\x03\x04", b"\x00" * 72)
    text = note.with_signatures([extra]).to_text()
    bundle = dataclasses.replace(world.bundle, checkpoint=text)
    assert verify_bundle(bundle, world.trust).ok


def test_replay_runs_last_and_can_fail(world: World) -> None:
    seen: list[dict[str, Any]] = []

    def replay(statement: dict[str, Any]) -> CheckResult:
        seen.append(statement)
        return CheckResult(False, "policy now says deny")

    report = verify_bundle(world.bundle, world.trust, replay=replay)
    assert [c.name for c in report.checks] == [*NAMES, "replay"]
    assert failed(report) == {"replay"}
    assert seen[0]["predicate"]["decision"] == "allow"


def test_every_check_runs_even_when_all_fail(world: World) -> None:
    garbage = Envelope(
        "application/vnd.in-toto+json", b"not json", world.bundle.envelope.signatures
    )
    bundle = dataclasses.replace(world.bundle, envelope=garbage, checkpoint="junk")
    report = verify_bundle(bundle, world.trust)
    assert [c.name for c in report.checks] == NAMES
    assert failed(report) == set(NAMES)


def test_envelope_only_verification_for_warrants(world: World) -> None:
    report = verify_envelope_only(world.bundle.envelope, world.trust)
    assert [c.name for c in report.checks] == NAMES[:3]
    assert report.ok
    foreign = receipt(key=SigningKey.from_seed(b"\x33" * 32))
    assert failed(verify_envelope_only(foreign, world.trust)) == {"signature", "key_validity"}


def test_format_report_has_one_line_per_check(world: World) -> None:
    bundle = dataclasses.replace(world.bundle, inclusion_proof=())
    lines = format_report(verify_bundle(bundle, world.trust)).splitlines()
    assert lines[0].startswith("PASS  signature")
    assert lines[3].startswith("FAIL  inclusion")
    assert lines[-1] == "NOT VERIFIED"


def test_bundles_round_trip_through_json_and_tlog_proof_text(world: World) -> None:
    bundle = world.bundle
    assert ProofBundle.from_dict(json.loads(json.dumps(bundle.to_dict()))) == bundle
    text = bundle.to_tlog_proof_text()
    assert text.startswith("c2sp.org/tlog-proof@v1\nextra ")
    assert f"\nindex {bundle.log_index}\n" in text
    assert text.endswith(bundle.checkpoint)
    assert ProofBundle.from_tlog_proof_text(text) == bundle
    assert TrustBundle.from_dict(json.loads(json.dumps(world.trust.to_dict()))) == world.trust


def test_bundle_json_has_the_documented_shape(world: World) -> None:
    data = world.bundle.to_dict()
    assert set(data) == {"envelope", "log"}
    assert set(data["log"]) == {
        "index",
        "tree_size",
        "inclusion_proof",
        "checkpoint",
        "timestamp_token",
        "timestamp_response",
    }
    trust = world.trust.to_dict()
    assert set(trust) == {"log", "signing_keys", "tsa"}  # no witnesses named: no "witnesses"
    forms = {"public_key_pem", "jwk", "sslib_keyid"}
    assert set(trust["signing_keys"][0]) == {"keyid", "public_key", "not_before", "not_after", *forms}
    assert set(trust["log"]) == {"origin", "verifier_key", *forms}
    assert set(trust["tsa"]) == {"root_certificate", *forms}
    assert trust["signing_keys"][0]["not_after"] is None


def test_trust_bundle_rejects_a_keyid_that_does_not_match_the_key(world: World) -> None:
    data = world.trust.to_dict()
    data["signing_keys"][0]["keyid"] = "00" * 32
    with pytest.raises(ValueError, match="keyid"):
        TrustBundle.from_dict(data)


def test_proof_bundle_rejects_an_index_outside_the_tree(world: World) -> None:
    data = world.bundle.to_dict()
    data["log"]["index"] = data["log"]["tree_size"]
    with pytest.raises(ValueError, match="index"):
        ProofBundle.from_dict(data)


def write_inputs(tmp_path: Path, world: World, bundle_text: str) -> list[str]:
    (tmp_path / "bundle").write_text(bundle_text)
    (tmp_path / "trust.json").write_text(world.trust.to_json())
    return [str(tmp_path / "bundle"), "--trust", str(tmp_path / "trust.json")]


def test_cli_passes_a_json_bundle(world: World, tmp_path: Path, capsys: Any) -> None:
    assert main(write_inputs(tmp_path, world, world.bundle.to_json())) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "VERIFIED"


def test_cli_reads_tlog_proof_text_and_prints_json(
    world: World, tmp_path: Path, capsys: Any
) -> None:
    args = write_inputs(tmp_path, world, world.bundle.to_tlog_proof_text())
    assert main([*args, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["ok"] is True


def test_cli_exits_1_on_a_failed_check(world: World, tmp_path: Path, capsys: Any) -> None:
    bundle = dataclasses.replace(world.bundle, inclusion_proof=())
    assert main(write_inputs(tmp_path, world, bundle.to_json())) == 1
    assert "FAIL  inclusion" in capsys.readouterr().out


def test_cli_exits_2_on_unreadable_input(world: World, tmp_path: Path) -> None:
    assert main(write_inputs(tmp_path, world, "{not json")) == 2
    assert main([str(tmp_path / "missing"), "--trust", str(tmp_path / "trust.json")]) == 2


def test_any_flipped_byte_of_the_json_bundle_is_caught(world: World) -> None:
    """A flipped byte either makes the bundle unreadable or fails a named check."""
    text = world.bundle.to_json().encode()
    for i in range(0, len(text), 7):
        flipped = bytearray(text)
        flipped[i] ^= 0x01
        try:
            bundle = ProofBundle.from_json(bytes(flipped).decode())
        except (ValueError, UnicodeDecodeError):
            continue
        if bundle == world.bundle:  # e.g. a flip inside JSON whitespace or key order
            continue
        assert not verify_bundle(bundle, world.trust).ok, f"byte {i} flipped undetected"


def test_verifier_imports_no_server_framework_or_http_code() -> None:
    code = (
        "import sys, warrantor.verify, warrantor.verify.cli, warrantor.evidence.proofs;"
        "bad = [m for m in sys.modules if m.split('.')[0] in "
        "{'httpx', 'fastapi', 'starlette', 'sqlalchemy', 'psycopg', 'uvicorn'} or "
        "m.startswith(('warrantor.service', 'warrantor.store', 'warrantor.server',"
        " 'warrantor.client', 'warrantor.cli'))];"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


# -- one verification run over many bundles (VerifyCache) ---------------------------------


def batch(tsa_chain: TSAChain, receipts: int = 4) -> tuple[list[ProofBundle], TrustBundle, BuiltinTSA]:
    """``receipts`` receipts logged in one tree under one checkpoint and one token."""
    envelopes = [receipt(action=f"act_{i}", intent={**INTENT, "n": i}) for i in range(receipts)]
    tree = MerkleTree(leaf_hash(entry_for(e)) for e in envelopes)
    note = sign_note(Checkpoint(ORIGIN, tree.size, tree.root()).body(), [LOG])
    counter = itertools.count(1)
    tsa = BuiltinTSA(tsa_chain, lambda: next(counter), lambda: NOW)
    token = stamp(tsa, note)
    bundles = [
        ProofBundle(e, i, tree.size, tuple(tree.inclusion_proof(i, tree.size)), note, token)
        for i, e in enumerate(envelopes)
    ]
    key = VerifyKey(SIGNING_KEY.public_key, ISSUED - timedelta(days=1), None)
    return bundles, TrustBundle(ORIGIN, LOG.verifier(), (key,), tsa_chain.root_cert_pem.decode()), tsa


def tampered_variants(bundle: ProofBundle, tsa: BuiltinTSA) -> list[ProofBundle]:
    """Bundles that share all but one input with ``bundle``, each of which must fail."""
    note = bundle.checkpoint
    sig_at = note.index("\u2014")
    forged_sig = note[: sig_at + 30] + ("A" if note[sig_at + 30] != "A" else "B") + note[sig_at + 31 :]
    other_root = sign_note(Checkpoint(ORIGIN, bundle.tree_size, b"\x07" * 32).body(), [LOG])
    token = bytearray(bundle.timestamp_token or b"")
    token[-5] ^= 0x01
    return [
        dataclasses.replace(bundle, checkpoint=forged_sig),
        dataclasses.replace(bundle, checkpoint=other_root),
        dataclasses.replace(bundle, checkpoint=other_root, timestamp_token=stamp(tsa, other_root)),
        dataclasses.replace(bundle, timestamp_token=bytes(token)),
        dataclasses.replace(bundle, timestamp_token=stamp(tsa, other_root)),
        dataclasses.replace(bundle, timestamp_token=None),
        dataclasses.replace(bundle, envelope=receipt(action="act_other")),
    ]


def test_a_shared_cache_gives_exactly_the_reports_of_separate_runs(tsa_chain: TSAChain) -> None:
    """Genuine bundles first (the cache fills with their checkpoint and token), then
    bundles differing in one input: each report equals the one a fresh run gives."""
    bundles, trust, tsa = batch(tsa_chain)
    other_trust = dataclasses.replace(trust, log_origin="log.warrantor.example/other")
    inputs = [(b, trust) for b in bundles]
    inputs += [(b, trust) for b in tampered_variants(bundles[0], tsa)]
    inputs += [(bundles[1], other_trust), (bundles[2], trust)]
    cache = VerifyCache()
    shared = [verify_bundle(b, t, cache=cache) for b, t in inputs]
    assert shared == [verify_bundle(b, t) for b, t in inputs]
    assert [r.ok for r in shared] == [True] * len(bundles) + [False] * 8 + [True]
    assert verify_bundles(bundles, trust) == shared[: len(bundles)]


def test_a_warm_cache_never_accepts_a_flipped_byte_of_the_checkpoint(tsa_chain: TSAChain) -> None:
    bundles, trust, _ = batch(tsa_chain, receipts=1)
    cache = VerifyCache()
    assert verify_bundle(bundles[0], trust, cache=cache).ok
    note = bundles[0].checkpoint.encode()
    for i in range(len(note)):
        flipped = bytearray(note)
        flipped[i] ^= 0x01
        try:
            text = bytes(flipped).decode()
        except UnicodeDecodeError:
            continue
        report = verify_bundle(dataclasses.replace(bundles[0], checkpoint=text), trust, cache=cache)
        assert not report.ok, f"byte {i} of the checkpoint flipped undetected"


def test_a_checkpoint_and_its_token_are_verified_once_per_run(
    tsa_chain: TSAChain, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ten receipts under one checkpoint: one signature check of the checkpoint and one
    RFC 3161 verification, not ten; without a shared cache, ten of each."""
    calls = {"checkpoint": 0, "timestamp": 0}

    def counting(name: str, real: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            calls[name] += 1
            return real(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(verifier, "open_checkpoint", counting("checkpoint", verifier.open_checkpoint))
    monkeypatch.setattr(verifier, "verify_timestamp", counting("timestamp", verifier.verify_timestamp))
    bundles, trust, _ = batch(tsa_chain, receipts=10)
    assert all(r.ok for r in verify_bundles(bundles, trust))
    assert calls == {"checkpoint": 1, "timestamp": 1}
    assert all(verify_bundle(b, trust).ok for b in bundles)
    assert calls == {"checkpoint": 11, "timestamp": 11}


def test_pinning_is_computed_once_per_run_and_reported_for_every_bundle(tsa_chain: TSAChain) -> None:
    bundles, trust, _ = batch(tsa_chain, receipts=3)
    foreign = dataclasses.replace(trust, signing_keys=(*trust.signing_keys, VerifyKey(b"\x05" * 32)))
    reports = verify_bundles(bundles, foreign, pinned=trust)
    assert reports == [verify_bundle(b, foreign, pinned=trust) for b in bundles]
    assert all(r.check("trust").ok is False and r.check("signature").ok for r in reports)


def test_a_small_cache_that_empties_itself_gives_the_same_reports(tsa_chain: TSAChain) -> None:
    first, trust, tsa = batch(tsa_chain, receipts=2)
    second = [dataclasses.replace(b, timestamp_token=stamp(tsa, b.checkpoint)) for b in first]
    cache = VerifyCache(max_entries=1)
    bundles = [first[0], second[0], first[1], second[1], first[0]]
    assert [verify_bundle(b, trust, cache=cache) for b in bundles] == [verify_bundle(b, trust) for b in bundles]


def test_cli_verifies_several_bundles_in_one_run(world: World, tmp_path: Path, capsys: Any) -> None:
    args = write_inputs(tmp_path, world, world.bundle.to_json())
    bad = dataclasses.replace(world.bundle, inclusion_proof=())
    (tmp_path / "bad").write_text(bad.to_json())
    assert main([args[0], args[0], *args[1:]]) == 0
    out = capsys.readouterr().out
    assert out.count("== ") == 2 and out.splitlines()[-1] == "2 of 2 bundles VERIFIED"
    assert main([args[0], str(tmp_path / "bad"), *args[1:], "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] is False
    assert [b["ok"] for b in doc["bundles"]] == [True, False]
    assert doc["bundles"][1]["bundle"] == str(tmp_path / "bad")
    assert main([args[0], str(tmp_path / "missing"), *args[1:]]) == 2


def test_warrantor_verify_passes_several_bundles_and_replay_takes_one(
    world: World, tmp_path: Path, capsys: Any
) -> None:
    from warrantor.cli.main import main as warrantor

    bundle, _, trust = write_inputs(tmp_path, world, world.bundle.to_json())
    assert warrantor(["verify", bundle, bundle, "--trust", trust]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "2 of 2 bundles VERIFIED"
    assert warrantor(["verify", bundle, bundle, "--trust", trust, "--replay"]) == 2
    assert "--replay takes one bundle" in capsys.readouterr().err
