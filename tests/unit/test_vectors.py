"""The code reproduces the vector files in tests/vectors byte for byte, and each vector
checks out with the verification functions (tampered ones fail)."""

import base64
import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from warrantor.errors import EvidenceError
from warrantor.evidence.canonical import canonicalize
from warrantor.evidence.checkpoint import (
    COSIG_SIG_TYPE,
    NoteVerifier,
    open_checkpoint,
    sign_note,
    verify_cosignature,
)
from warrantor.evidence.dsse import Envelope, pae, verify_envelope
from warrantor.evidence.keys import SigningKey
from warrantor.evidence.merkle import verify_consistency, verify_inclusion
from warrantor.evidence.proofs import ProofBundle, TrustBundle
from warrantor.evidence.statement import sign_statement
from warrantor.verify import verify_bundle

VECTORS = Path(__file__).parent.parent / "vectors"


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("vector_generator", VECTORS / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GENERATOR = load_generator()


def vector(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((VECTORS / name).read_text(encoding="utf-8"))
    return data


@pytest.mark.parametrize("name", sorted(GENERATOR.VECTORS))
def test_vector_file_is_reproduced_byte_for_byte(name: str) -> None:
    want = (VECTORS / name).read_bytes()
    assert GENERATOR.render(GENERATOR.VECTORS[name]()).encode() == want


def test_canonical_json_vectors() -> None:
    for case in vector("canonical_json.json")["cases"]:
        assert canonicalize(case["input"]).decode() == case["canonical"]


def test_dsse_vector_signs_and_verifies() -> None:
    v = vector("dsse.json")
    key = SigningKey.from_seed(bytes.fromhex(v["seed"]))
    envelope = sign_statement(v["statement"], key)
    assert envelope.to_dict() == v["envelope"]
    assert pae(envelope.payload_type, envelope.payload).hex() == v["pae_hex"]
    parsed = Envelope.from_dict(v["envelope"])
    assert verify_envelope(parsed, [key.verify_key()]) is not None
    assert parsed.canonical_bytes().decode() == v["canonical_envelope"]


def test_merkle_inclusion_vectors_verify() -> None:
    for c in vector("merkle_inclusion.json")["cases"]:
        proof = [bytes.fromhex(h) for h in c["proof"]]
        leaf, root = bytes.fromhex(c["leaf_hash"]), bytes.fromhex(c["root"])
        assert verify_inclusion(leaf, c["index"], c["tree_size"], proof, root)


def test_merkle_consistency_vectors_verify() -> None:
    for c in vector("merkle_consistency.json")["cases"]:
        proof = [bytes.fromhex(h) for h in c["proof"]]
        old, new = bytes.fromhex(c["old_root"]), bytes.fromhex(c["new_root"])
        assert verify_consistency(c["old_size"], c["new_size"], proof, old, new)


def test_checkpoint_vector_opens_and_its_cosignature_verifies() -> None:
    v = vector("checkpoint.json")
    verifier = NoteVerifier.from_vkey(v["log_vkey"])
    checkpoint = open_checkpoint(v["signed_note"], verifier, origin=v["origin"])
    assert checkpoint.body() == v["body"]
    assert base64.b64encode(checkpoint.root_hash).decode() == v["root_hash"]
    witness = NoteVerifier(
        v["witness_name"], bytes.fromhex(v["witness_public_key"]), COSIG_SIG_TYPE
    )
    assert verify_cosignature(v["cosigned_note"], witness) == v["cosignature_timestamp"]
    assert open_checkpoint(v["cosigned_note"], verifier).size == v["tree_size"]


def test_checkpoint_vector_is_what_the_log_key_signs() -> None:
    v = vector("checkpoint.json")
    signer = GENERATOR.log_signer()
    assert sign_note(v["body"], [signer]) == v["signed_note"]


def test_proof_bundle_vector_verifies_in_both_encodings() -> None:
    v = vector("proof_bundle.json")
    trust = TrustBundle.from_dict(v["trust"])
    bundle = ProofBundle.from_dict(v["bundle"])
    assert ProofBundle.from_tlog_proof_text(v["tlog_proof"]) == bundle
    assert verify_bundle(bundle, trust).ok


def test_tampered_merkle_vectors_fail() -> None:
    v = vector("tampered.json")
    for c in v["inclusion"]:
        proof = [bytes.fromhex(h) for h in c["proof"]]
        ok = verify_inclusion(
            bytes.fromhex(c["leaf_hash"]),
            c["index"],
            c["tree_size"],
            proof,
            bytes.fromhex(c["root"]),
        )
        assert not ok, c["name"]
    for c in v["consistency"]:
        proof = [bytes.fromhex(h) for h in c["proof"]]
        ok = verify_consistency(
            c["old_size"],
            c["new_size"],
            proof,
            bytes.fromhex(c["old_root"]),
            bytes.fromhex(c["new_root"]),
        )
        assert not ok, c["name"]


def test_tampered_checkpoint_vectors_fail() -> None:
    verifier = NoteVerifier.from_vkey(vector("checkpoint.json")["log_vkey"])
    for c in vector("tampered.json")["checkpoints"]:
        with pytest.raises(EvidenceError):
            open_checkpoint(c["note"], verifier)


def test_tampered_bundle_vectors_fail_the_named_checks() -> None:
    trust = TrustBundle.from_dict(vector("proof_bundle.json")["trust"])
    for c in vector("tampered.json")["bundles"]:
        report = verify_bundle(ProofBundle.from_dict(c["bundle"]), trust)
        assert sorted(x.name for x in report.checks if not x.ok) == sorted(c["failed_checks"])
