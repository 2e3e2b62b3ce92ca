"""Benchmark of warrantor.evidence.merkle on a tree of 10**6 entries.

Measures, as medians over many proofs at random indices and sizes on this machine:
building the tree (one-off), inclusion-proof and consistency-proof generation, and their
verification, against a baseline of one SHA-256 over 65 bytes (a node hash's input).
Also reports the peak resident memory of the process after building the tree.

Run: ``.venv/bin/python bench/merkle_proofs.py`` (writes bench/results/merkle_proofs.json).
Not measured: persistence, tiles, or anything about the server's log.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import random
import resource
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from warrantor.evidence.merkle import MerkleTree, leaf_hash, verify_consistency, verify_inclusion

RESULTS = Path(__file__).parent / "results" / "merkle_proofs.json"
N = 1_000_000
SAMPLES = 2000


def median_us(calls: list[Callable[[], object]]) -> float:
    samples = []
    for call in calls:
        started = time.perf_counter_ns()
        call()
        samples.append(time.perf_counter_ns() - started)
    return round(statistics.median(samples) / 1000, 2)


def main() -> int:
    rng = random.Random(6962)
    started = time.perf_counter()
    tree = MerkleTree(leaf_hash(hashlib.sha256(i.to_bytes(8, "big")).digest()) for i in range(N))
    build_s = time.perf_counter() - started
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    roots = {N: tree.root()}

    inc = [(rng.randrange(N), N) for _ in range(SAMPLES)]
    cons = [(rng.randrange(1, N), N) for _ in range(SAMPLES)]
    for m, _ in cons:
        roots[m] = tree.root(m)
    inc_proofs = [tree.inclusion_proof(i, n) for i, n in inc]
    cons_proofs = [tree.consistency_proof(m, n) for m, n in cons]
    leaves = [tree._cached(0, i) for i, _ in inc]
    node_input = b"\x01" + bytes(64)

    results: dict[str, Any] = {
        "command": ".venv/bin/python bench/merkle_proofs.py",
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "when": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "tree_size": N,
        "samples": SAMPLES,
        "build_seconds": round(build_s, 2),
        "peak_rss_mb_after_build": round(rss_mb, 1),
        "median_us": {
            "baseline_one_sha256": median_us(
                [lambda: hashlib.sha256(node_input).digest()] * SAMPLES
            ),
            "inclusion_proof_generate": median_us(
                [lambda i=i, n=n: tree.inclusion_proof(i, n) for i, n in inc]
            ),
            "inclusion_proof_verify": median_us(
                [
                    lambda k=k: verify_inclusion(leaves[k], inc[k][0], N, inc_proofs[k], roots[N])
                    for k in range(SAMPLES)
                ]
            ),
            "consistency_proof_generate": median_us(
                [lambda m=m, n=n: tree.consistency_proof(m, n) for m, n in cons]
            ),
            "consistency_proof_verify": median_us(
                [
                    lambda k=k: verify_consistency(
                        cons[k][0], N, cons_proofs[k], roots[cons[k][0]], roots[N]
                    )
                    for k in range(SAMPLES)
                ]
            ),
        },
        "median_proof_hashes": {
            "inclusion": statistics.median(len(p) for p in inc_proofs),
            "consistency": statistics.median(len(p) for p in cons_proofs),
        },
    }
    assert all(
        verify_inclusion(leaves[k], inc[k][0], N, inc_proofs[k], roots[N]) for k in range(SAMPLES)
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
