"""Benchmark of warrantor.verify: receipts verified per second, offline, on this machine.

Builds 200 receipts in a log of 10**4 entries with a signed checkpoint and, for each, a
proof bundle; then times ``verify_bundle`` over all of them, repeated RUNS times, and
reports the median rate. Two variants: with the RFC 3161 token check (the built-in TSA,
ECDSA P-256, verified by rfc3161-client) and without a TSA in the trust bundle. The
baseline in the same run is a bare Ed25519 verification of the same DSSE PAE bytes, the
floor under the ``signature`` check.

Run: ``.venv/bin/python bench/verify_offline.py`` (writes bench/results/verify_offline.json).
Not measured: reading files, JSON parsing, or the CLI's process start-up.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from warrantor.evidence.canonical import digest
from warrantor.evidence.checkpoint import Checkpoint, NoteSigner, parse_signed_note, sign_note
from warrantor.evidence.dsse import Envelope, pae
from warrantor.evidence.keys import SigningKey, VerifyKey
from warrantor.evidence.merkle import MerkleTree, leaf_hash
from warrantor.evidence.proofs import ProofBundle, TrustBundle, entry_for
from warrantor.evidence.statement import RECEIPT_V1, make_statement, sign_statement
from warrantor.evidence.tsa import BuiltinTSA, generate_chain
from warrantor.verify import verify_bundle

RESULTS = Path(__file__).parent / "results" / "verify_offline.json"
RECEIPTS = 200
LOG_SIZE = 10_000
RUNS = 7
ORIGIN = "log.warrantor.example/bench"


def receipt(i: int, key: SigningKey, issued: datetime) -> Envelope:
    intent = {"tool": "payments.refund", "args": {"order": f"ord_{i:06d}", "amount": 1000 + i}}
    predicate = {"decision": "allow", "intent": intent, "issued_at": issued.isoformat()}
    statement = make_statement(f"action:act_{i:06d}", digest(intent), RECEIPT_V1, predicate)
    return sign_statement(statement, key)


def build() -> tuple[list[ProofBundle], TrustBundle]:
    key, log = SigningKey.generate(), NoteSigner(ORIGIN, SigningKey.generate())
    now = datetime.now(UTC)
    envelopes = [receipt(i, key, now - timedelta(minutes=1)) for i in range(RECEIPTS)]
    tree = MerkleTree(leaf_hash(entry_for(e)) for e in envelopes)
    filler = (hashlib.sha256(i.to_bytes(8, "big")).digest() for i in range(LOG_SIZE - RECEIPTS))
    tree.extend(leaf_hash(e) for e in filler)
    note = sign_note(Checkpoint(ORIGIN, tree.size, tree.root()).body(), [log])
    chain = generate_chain("Bench TSA")
    serial = itertools.count(1)
    tsa = BuiltinTSA(chain, lambda: next(serial), lambda: now)
    token = tsa.timestamp(parse_signed_note(note).body.encode())
    bundles = [
        ProofBundle(e, i, tree.size, tuple(tree.inclusion_proof(i, tree.size)), note, token)
        for i, e in enumerate(envelopes)
    ]
    trust = TrustBundle(
        ORIGIN, log.verifier(), (VerifyKey(key.public_key),), chain.root_cert_pem.decode()
    )
    return bundles, trust


def rate(work: Callable[[], object]) -> float:
    """Median items per second over RUNS runs of ``work`` (which handles RECEIPTS items)."""
    work()
    samples = []
    for _ in range(RUNS):
        started = time.perf_counter()
        work()
        samples.append(RECEIPTS / (time.perf_counter() - started))
    return round(statistics.median(samples), 1)


def main() -> int:
    bundles, trust = build()
    no_tsa = dataclasses.replace(trust, tsa_root_pem=None)
    assert all(verify_bundle(b, trust).ok for b in bundles)
    public = Ed25519PublicKey.from_public_bytes(trust.signing_keys[0].public_key)
    signed = [
        (b.envelope.signatures[0].sig, pae(b.envelope.payload_type, b.envelope.payload))
        for b in bundles
    ]

    def bare_ed25519() -> None:
        for sig, message in signed:
            public.verify(sig, message)

    full = rate(lambda: [verify_bundle(b, trust) for b in bundles])
    without_tsa = rate(lambda: [verify_bundle(b, no_tsa) for b in bundles])
    baseline = rate(bare_ed25519)
    results = {
        "command": ".venv/bin/python bench/verify_offline.py",
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "when": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "receipts": RECEIPTS,
        "log_size": LOG_SIZE,
        "runs": RUNS,
        "median_per_second": {
            "verify_bundle_with_rfc3161": full,
            "verify_bundle_without_tsa": without_tsa,
            "baseline_bare_ed25519_verify_of_pae": baseline,
        },
        "median_us_per_receipt": {
            "verify_bundle_with_rfc3161": round(1e6 / full, 1),
            "verify_bundle_without_tsa": round(1e6 / without_tsa, 1),
            "baseline_bare_ed25519_verify_of_pae": round(1e6 / baseline, 1),
        },
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
