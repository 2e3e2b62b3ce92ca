"""Regenerate the evidence test vectors in this directory, deterministically.

    .venv/bin/python tests/vectors/generate.py

Every key comes from a fixed Ed25519 seed (Ed25519 signatures are deterministic, RFC 8032)
and every Merkle entry from a fixed rule, so running this twice writes the same bytes.
tests/unit/test_vectors.py checks that the code still reproduces each file byte for byte.
RFC 3161 tokens are not vectors: ECDSA signatures are randomized.
"""

from __future__ import annotations

import base64
import hashlib
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from warrantor.evidence.canonical import canonicalize, digest
from warrantor.evidence.checkpoint import (
    Checkpoint,
    NoteSigner,
    cosign,
    parse_signed_note,
    sign_note,
)
from warrantor.evidence.dsse import pae
from warrantor.evidence.keys import SigningKey, VerifyKey
from warrantor.evidence.merkle import MerkleTree, leaf_hash
from warrantor.evidence.proofs import ProofBundle, TrustBundle, entry_for
from warrantor.evidence.statement import RECEIPT_V1, make_statement, sign_statement

HERE = Path(__file__).parent
SIGNING_SEED = bytes(range(32))
LOG_SEED = bytes(range(32, 64))
WITNESS_SEED = bytes(range(64, 96))
FOREIGN_SEED = bytes(range(96, 128))
ORIGIN = "log.warrantor.example/vectors"
WITNESS = "witness.warrantor.example/w1"
ENTRY_RULE = "entry_i = sha256(uint64_big_endian(i)); leaf_i = sha256(0x00 || entry_i)"
MERKLE_SIZES = [31, 32, 33, 63, 64, 65, 100, 127, 128, 129, 255, 256, 257, 1000]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def entry(i: int) -> bytes:
    return hashlib.sha256(i.to_bytes(8, "big")).digest()


def tree(n: int) -> MerkleTree:
    return MerkleTree(leaf_hash(entry(i)) for i in range(n))


CANONICAL_INPUTS: list[Any] = [
    {"b": 1, "a": [True, False, None], "c": {"z": "", "y": 0}},
    {"\u20ac": "euro", "\r": "cr", "1": "one", "\U0001f600": "emoji", "\u00f6": "o-umlaut"},
    [0.1, 1e21, 1e-7, -0.0, 123456789012345, 2.5e-5, 1.0, 100],
    {"text": 'line\nbreak "quoted" back\\slash \u0007 bell \u2028 sep'},
    {"intent": {"tool": "payments.transfer", "args": {"amount": 100, "currency": "EUR"}}},
]


def canonical_json() -> dict[str, Any]:
    cases = [
        {"input": v, "canonical": canonicalize(v).decode(), "sha256": digest(v)}
        for v in CANONICAL_INPUTS
    ]
    return {"spec": "RFC 8785 (JCS); sha256 over the canonical UTF-8 bytes", "cases": cases}


def receipt_statement() -> dict[str, Any]:
    intent = CANONICAL_INPUTS[-1]["intent"]
    predicate = {"decision": "allow", "intent": intent, "issued_at": "2026-01-02T03:04:05Z"}
    return make_statement("action:act_vectors", digest(intent), RECEIPT_V1, predicate)


def dsse() -> dict[str, Any]:
    key = SigningKey.from_seed(SIGNING_SEED)
    envelope = sign_statement(receipt_statement(), key)
    return {
        "spec": "DSSE v1 over an in-toto Statement v1; Ed25519; keyid = hex sha256(public key)",
        "seed": SIGNING_SEED.hex(),
        "public_key": key.public_key.hex(),
        "keyid": key.keyid,
        "statement": receipt_statement(),
        "payload": envelope.payload.decode(),
        "pae_hex": pae(envelope.payload_type, envelope.payload).hex(),
        "envelope": envelope.to_dict(),
        "canonical_envelope": envelope.canonical_bytes().decode(),
        "log_entry": entry_for(envelope).hex(),
        "leaf_hash": leaf_hash(entry_for(envelope)).hex(),
    }


def inclusion_cases() -> list[tuple[int, int]]:
    small = [(i, n) for n in range(1, 21) for i in range(n)]
    big = [(i, n) for n in MERKLE_SIZES for i in sorted({0, 1, n // 2, n - 2, n - 1})]
    return small + big


def merkle_inclusion() -> dict[str, Any]:
    full = tree(max(MERKLE_SIZES))
    cases = [
        {
            "index": i,
            "tree_size": n,
            "leaf_hash": full._cached(0, i).hex(),
            "proof": [h.hex() for h in full.inclusion_proof(i, n)],
            "root": full.root(n).hex(),
        }
        for i, n in inclusion_cases()
    ]
    return {
        "spec": "RFC 6962 2.1.1 PATH; verify per RFC 9162 2.1.3.2",
        "entries": ENTRY_RULE,
        "cases": cases,
    }


def merkle_consistency() -> dict[str, Any]:
    full = tree(max(MERKLE_SIZES))
    pairs = [(m, n) for n in range(1, 21) for m in range(n + 1)]
    pairs += [(m, n) for n in MERKLE_SIZES for m in sorted({1, 2, n // 2, n - 1, n})]
    cases = [
        {
            "old_size": m,
            "new_size": n,
            "proof": [h.hex() for h in full.consistency_proof(m, n)],
            "old_root": full.root(m).hex(),
            "new_root": full.root(n).hex(),
        }
        for m, n in pairs
    ]
    return {
        "spec": "RFC 6962 2.1.2 PROOF; verify per RFC 9162 2.1.4.2",
        "entries": ENTRY_RULE,
        "cases": cases,
    }


def log_signer() -> NoteSigner:
    return NoteSigner(ORIGIN, SigningKey.from_seed(LOG_SEED))


def checkpoint() -> dict[str, Any]:
    t = tree(100)
    body = Checkpoint(ORIGIN, 100, t.root()).body()
    note = sign_note(body, [log_signer()])
    witness = SigningKey.from_seed(WITNESS_SEED)
    cosig = cosign(body, witness, WITNESS, 1767323045)
    cosigned = parse_signed_note(note).with_signatures([cosig]).to_text()
    return {
        "spec": "C2SP signed-note, tlog-checkpoint, tlog-cosignature/v1 (Ed25519)",
        "log_seed": LOG_SEED.hex(),
        "log_vkey": log_signer().vkey(),
        "origin": ORIGIN,
        "tree_size": 100,
        "root_hash": b64(t.root()),
        "body": body,
        "signed_note": note,
        "witness_seed": WITNESS_SEED.hex(),
        "witness_name": WITNESS,
        "witness_public_key": witness.public_key.hex(),
        "cosignature_timestamp": 1767323045,
        "cosigned_note": cosigned,
    }


def bundle_world() -> tuple[ProofBundle, TrustBundle]:
    """A proof bundle (no RFC 3161 token) and the trust bundle that verifies it."""
    envelope = sign_statement(receipt_statement(), SigningKey.from_seed(SIGNING_SEED))
    t = tree(20)
    index = t.append(leaf_hash(entry_for(envelope)))
    t.extend(leaf_hash(entry(i)) for i in range(21, 30))
    note = sign_note(Checkpoint(ORIGIN, t.size, t.root()).body(), [log_signer()])
    bundle = ProofBundle(envelope, index, t.size, tuple(t.inclusion_proof(index, t.size)), note)
    key = VerifyKey(
        SigningKey.from_seed(SIGNING_SEED).public_key, datetime(2025, 1, 1, tzinfo=UTC), None
    )
    return bundle, TrustBundle(ORIGIN, log_signer().verifier(), (key,), None)


def proof_bundle() -> dict[str, Any]:
    bundle, trust = bundle_world()
    return {
        "bundle": bundle.to_dict(),
        "tlog_proof": bundle.to_tlog_proof_text(),
        "trust": trust.to_dict(),
    }


def flip_hex(value: str, bit: int = 0) -> str:
    raw = bytearray(bytes.fromhex(value))
    raw[bit // 8] ^= 1 << (bit % 8)
    return raw.hex()


def tampered() -> dict[str, Any]:
    inc = merkle_inclusion()["cases"]
    good = next(c for c in inc if c["tree_size"] == 100 and c["index"] == 50)
    cons = next(
        c for c in merkle_consistency()["cases"] if (c["old_size"], c["new_size"]) == (50, 100)
    )
    cp = checkpoint()
    foreign = NoteSigner(ORIGIN, SigningKey.from_seed(FOREIGN_SEED))
    forked_body = Checkpoint(ORIGIN, 100, hashlib.sha256(b"fork").digest()).body()
    sig_line = cp["signed_note"].split("\n\n")[1]
    bundle = proof_bundle()
    tampered_payload = dict(bundle["bundle"])
    env = dict(tampered_payload["envelope"])
    env["payload"] = b64(base64.b64decode(env["payload"]).replace(b"allow", b"deny!"))
    tampered_payload["envelope"] = env
    return {
        "spec": "each case must fail verification; 'check' names the verifier check that fails",
        "inclusion": [
            {
                "name": "flipped-proof-hash",
                **good,
                "proof": [flip_hex(good["proof"][0]), *good["proof"][1:]],
            },
            {"name": "flipped-root", **good, "root": flip_hex(good["root"], 255)},
            {"name": "flipped-leaf", **good, "leaf_hash": flip_hex(good["leaf_hash"], 7)},
            {"name": "truncated-proof", **good, "proof": good["proof"][:-1]},
            {"name": "wrong-index", **good, "index": 51},
        ],
        "consistency": [
            {
                "name": "flipped-proof-hash",
                **cons,
                "proof": [*cons["proof"][:-1], flip_hex(cons["proof"][-1])],
            },
            {"name": "flipped-old-root", **cons, "old_root": flip_hex(cons["old_root"])},
            {
                "name": "swapped-roots",
                **cons,
                "old_root": cons["new_root"],
                "new_root": cons["old_root"],
            },
        ],
        "checkpoints": [
            {"name": "edited-size", "note": cp["signed_note"].replace("\n100\n", "\n101\n", 1)},
            {"name": "fork-signed-by-foreign-key", "note": sign_note(forked_body, [foreign])},
            {"name": "fork-with-log-signature-copied", "note": forked_body + "\n" + sig_line},
        ],
        "bundles": [
            {
                "name": "tampered-receipt",
                "bundle": tampered_payload,
                "failed_checks": ["signature", "key_validity", "inclusion"],
            },
        ],
    }


VECTORS: dict[str, Callable[[], dict[str, Any]]] = {
    "canonical_json.json": canonical_json,
    "dsse.json": dsse,
    "merkle_inclusion.json": merkle_inclusion,
    "merkle_consistency.json": merkle_consistency,
    "checkpoint.json": checkpoint,
    "proof_bundle.json": proof_bundle,
    "tampered.json": tampered,
}


def render(value: dict[str, Any]) -> str:
    return json.dumps(value, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def main() -> int:
    for name, build in VECTORS.items():
        (HERE / name).write_text(render(build()), encoding="utf-8")
        print(f"wrote {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
