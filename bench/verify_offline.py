"""Benchmark of warrantor.verify: proof bundles verified per second, offline, on this machine.

A log of 10**4 entries holds 200 receipts. Three batches of their proof bundles, each
verified with the RFC 3161 check (built-in TSA, ECDSA P-256, verified by rfc3161-client)
and without a TSA in the trust bundle:

- ``one_checkpoint``: all 200 proven against the same signed checkpoint and token, as
  bundles fetched together are (the server proves against its latest checkpoint);
- ``twenty_per_checkpoint``: 10 checkpoints of 20 receipts each;
- ``one_per_checkpoint``: the worst case, every bundle with its own checkpoint and token.

Each batch is verified as one run (``verify_bundles``, one ``VerifyCache``: what
``warrantor verify`` does with several files) and, for comparison, one bundle per call
without a shared cache (what a script calling ``verify_bundle`` per bundle gets). The
baseline in the same run is a bare Ed25519 verification of the same DSSE PAE bytes, the
floor under the ``signature`` check; the target is a per-bundle rate of at least half of it.
Rates are per second of this process's CPU time (``time.process_time``), so that the other
processes on a busy machine do not count; each figure is the median of ``--runs`` rounds.

The code before the cache (``--before``, default the commit before it) then runs the same
batches in a child process from a ``git archive`` of that commit, so before and after come
from one run on one machine (each with its own Ed25519 baseline).

Run: ``.venv/bin/python bench/verify_offline.py`` (writes bench/results/verify_offline.json).
Not measured: reading files, JSON parsing, or the CLI's process start-up (about 0.2 s).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import itertools
import json
import os
import platform
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from io import BytesIO
from pathlib import Path
from typing import Any

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

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "verify_offline.json"
BEFORE = "eb621955c02cc366aaa0c8511e9ba4cae4a1900b"  # the verifier before VerifyCache
RECEIPTS = 200
LOG_SIZE = 10_000
ORIGIN = "log.warrantor.example/bench"
BATCHES = {"one_checkpoint": RECEIPTS, "twenty_per_checkpoint": 20, "one_per_checkpoint": 1}


def receipt(i: int, key: SigningKey, issued: datetime) -> Envelope:
    intent = {"tool": "payments.refund", "args": {"order": f"ord_{i:06d}", "amount": 1000 + i}}
    predicate = {"decision": "allow", "intent": intent, "issued_at": issued.isoformat()}
    statement = make_statement(f"action:act_{i:06d}", digest(intent), RECEIPT_V1, predicate)
    return sign_statement(statement, key)


def build() -> tuple[list[ProofBundle], TrustBundle]:
    """The ``one_checkpoint`` batch (``bench/run.py`` uses this) and its trust bundle."""
    batches, trust = build_batches()
    return batches["one_checkpoint"], trust


def build_batches() -> tuple[dict[str, list[ProofBundle]], TrustBundle]:
    """The three batches over one log: receipt ``i`` is entry ``i``; the batch with ``n``
    receipts per checkpoint proves group ``g`` against the checkpoint of size
    ``LOG_SIZE - (RECEIPTS // n - 1 - g)``."""
    key, log = SigningKey.from_seed(b"\x01" * 32), NoteSigner(ORIGIN, SigningKey.from_seed(b"\x02" * 32))
    now = datetime.now(UTC)
    envelopes = [receipt(i, key, now - timedelta(minutes=1)) for i in range(RECEIPTS)]
    tree = MerkleTree(leaf_hash(entry_for(e)) for e in envelopes)
    filler = (hashlib.sha256(i.to_bytes(8, "big")).digest() for i in range(LOG_SIZE - RECEIPTS))
    tree.extend(leaf_hash(e) for e in filler)
    chain = generate_chain("Bench TSA")
    serial = itertools.count(1)
    tsa = BuiltinTSA(chain, lambda: next(serial), lambda: now)
    signed: dict[int, tuple[str, bytes]] = {}

    def checkpoint(size: int) -> tuple[str, bytes]:
        if size not in signed:
            note = sign_note(Checkpoint(ORIGIN, size, tree.root(size)).body(), [log])
            signed[size] = (note, tsa.timestamp(parse_signed_note(note).body.encode()))
        return signed[size]

    batches = {}
    for name, per in BATCHES.items():
        groups = RECEIPTS // per
        bundles = []
        for i, envelope in enumerate(envelopes):
            size = LOG_SIZE - (groups - 1 - i // per)
            note, token = checkpoint(size)
            proof = tuple(tree.inclusion_proof(i, size))
            bundles.append(ProofBundle(envelope, i, size, proof, note, token))
        batches[name] = bundles
    trust = TrustBundle(ORIGIN, log.verifier(), (VerifyKey(key.public_key),), chain.root_cert_pem.decode())
    return batches, trust


def measure(runs: int) -> dict[str, Any]:
    """Median receipts per second of every workload, for the ``warrantor`` on sys.path."""
    try:
        from warrantor.verify import verify_bundles
    except ImportError:  # the code before VerifyCache: one bundle per call
        verify_bundles = None
    batches, trust = build_batches()
    no_tsa = dataclasses.replace(trust, tsa_root_pem=None)
    first = batches["one_checkpoint"]
    assert all(verify_bundle(b, trust).ok for bundles in batches.values() for b in bundles)
    public = Ed25519PublicKey.from_public_bytes(trust.signing_keys[0].public_key)
    signed = [(b.envelope.signatures[0].sig, pae(b.envelope.payload_type, b.envelope.payload)) for b in first]

    def bare_ed25519() -> None:
        for sig, message in signed:
            public.verify(sig, message)

    work: dict[str, Callable[[], object]] = {"baseline_bare_ed25519_verify_of_pae": bare_ed25519}
    for name, bundles in batches.items():
        for label, t in (("with_rfc3161", trust), ("without_tsa", no_tsa)):
            work[f"{name}_{label}_separate_calls"] = lambda b=bundles, t=t: [verify_bundle(x, t) for x in b]
            if verify_bundles is not None:
                work[f"{name}_{label}_one_run"] = lambda b=bundles, t=t: verify_bundles(b, t)
    samples: dict[str, list[float]] = {name: [] for name in work}
    for _ in range(runs):  # round-robin: a noisy moment hits every workload alike
        for name, run in work.items():
            started = time.process_time()  # CPU time: other processes' load does not count
            run()
            samples[name].append(RECEIPTS / (time.process_time() - started))
    return {name: round(statistics.median(values), 1) for name, values in samples.items()}


def measure_before(commit: str, runs: int) -> dict[str, Any]:
    """``measure`` in a child process running the code of ``commit``."""
    archive = subprocess.run(["git", "archive", commit, "src"], cwd=ROOT, capture_output=True, check=True).stdout
    with tempfile.TemporaryDirectory(prefix="warrantor-before-") as tmp:
        with tarfile.open(fileobj=BytesIO(archive)) as tar:
            tar.extractall(tmp, filter="data")
        env = {**os.environ, "PYTHONPATH": str(Path(tmp) / "src")}
        out = subprocess.run(
            [sys.executable, __file__, "--child", "--runs", str(runs)],
            env=env, capture_output=True, text=True, check=True,
        ).stdout
    result: dict[str, Any] = json.loads(out)
    return result


def ratios(rates: dict[str, float]) -> dict[str, float]:
    base = rates["baseline_bare_ed25519_verify_of_pae"]
    return {name: round(rate / base, 3) for name, rate in rates.items() if not name.startswith("baseline")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--before", default=BEFORE, help="commit to compare with ('' to skip)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.runs)))
        return 0
    after = measure(args.runs)
    before = measure_before(args.before, args.runs) if args.before else None
    results: dict[str, Any] = {
        "command": " ".join([".venv/bin/python", "bench/verify_offline.py", *sys.argv[1:]]),
        "commit": subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                 check=False).stdout.strip(),
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "when": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "receipts": RECEIPTS,
        "log_size": LOG_SIZE,
        "runs": args.runs,
        "target_ratio_to_bare_ed25519": 0.5,
        "median_per_second": after,
        "ratio_to_bare_ed25519": ratios(after),
        "median_us_per_receipt": {name: round(1e6 / rate, 1) for name, rate in after.items()},
    }
    if before is not None:
        results["before"] = {"commit": args.before, "median_per_second": before,
                             "ratio_to_bare_ed25519": ratios(before)}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
