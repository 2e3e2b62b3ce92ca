"""Benchmark of RFC 3161 tokens and of the log integrator's CPU, before and after, in one run.

1. Tokens: CPU time per ``BuiltinTSA.timestamp`` (the integrator's call) and per
   ``token_from_response`` (what ``RemoteTSA`` does with every answer), for the current code
   and for the code as it was before the DER templates (``src/warrantor/evidence/tsa.py`` at
   ``--before``, loaded from git into this process). Baseline in the same run: one bare
   ECDSA P-256 signature over 180 bytes, the floor under a token.
2. The integrator at 1,000 actions/s: with the default interval of 500 ms a cycle integrates
   500 new entries. A SQLite store in a temporary directory gets 500 sequenced entries (real
   DSSE receipts), then one ``Integrator.cycle()`` runs; the CPU time of the whole process
   during the cycle (the caller and the store's writer thread) is the cycle's cost. Repeated
   ``--cycles`` times per variant: the current TSA and the one before, each with
   ``timestamp_receipts`` off (one token per checkpoint, the default) and on (one token per
   checkpoint and one per receipt). Share of a core = cost per cycle x cycles per second.

Run: ``.venv/bin/python bench/tsa_token.py`` (writes bench/results/tsa_token.json).
Machine noise: figures are medians; compare ratios within one run.
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from warrantor.domain.clock import SystemClock
from warrantor.domain.model import Evidence, Tenant
from warrantor.evidence import tsa as current
from warrantor.evidence.canonical import digest
from warrantor.evidence.checkpoint import NoteSigner
from warrantor.evidence.keys import SigningKey
from warrantor.evidence.statement import RECEIPT_V1, make_statement, sign_statement
from warrantor.service.proof.timestamping import SerialSource
from warrantor.service.proof.transparency import Integrator, LogTree
from warrantor.store import Store
from warrantor.store.repo import evidence_values

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "tsa_token.json"
BEFORE = "7fdfbfa12133ba4336705110c9f26a3ae26bb2a7"  # last commit of tsa.py built with asn1crypto
ORIGIN = "log.warrantor.example/bench"


def load_before(commit: str) -> types.ModuleType:
    """``warrantor.evidence.tsa`` as it was at ``commit``, as a separate module."""
    source = subprocess.run(
        ["git", "show", f"{commit}:src/warrantor/evidence/tsa.py"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout
    spec = importlib.util.spec_from_loader("warrantor_tsa_before", loader=None)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    exec(compile(source, f"tsa.py@{commit[:7]}", "exec"), module.__dict__)
    return module


def cpu_us(work: Callable[[], object], n: int, runs: int) -> float:
    """Median over ``runs`` of the process CPU time per call of ``work``, in microseconds."""
    work()
    samples = []
    for _ in range(runs):
        started = time.process_time()
        for _ in range(n):
            work()
        samples.append((time.process_time() - started) / n * 1e6)
    return round(statistics.median(samples), 1)


def token_figures(before: types.ModuleType, n: int, runs: int) -> dict[str, Any]:
    chain = current.generate_chain("Bench TSA")
    serial = itertools.count(1)
    now = SystemClock().now
    new_tsa = current.BuiltinTSA(chain, lambda: next(serial), now)
    old_tsa = before.BuiltinTSA(chain, lambda: next(serial), now)
    data = b"log.warrantor.example/bench\n123456\nq2B7Cp3iSwx0lMcmZ1nSCw3ZyZ0RL7p1mcIdUQnLsXk=\n"
    response = new_tsa.respond(current.make_request(data))
    assert current.token_from_response(response) == before.token_from_response(response)
    key = ec.generate_private_key(ec.SECP256R1())
    signed_attributes = os.urandom(180)
    figures = {
        "timestamp_after_us": cpu_us(lambda: new_tsa.timestamp(data), n, runs),
        "timestamp_before_us": cpu_us(lambda: old_tsa.timestamp(data), max(5, n // 20), runs),
        "token_from_response_after_us": cpu_us(lambda: current.token_from_response(response), n, runs),
        "token_from_response_before_us": cpu_us(
            lambda: before.token_from_response(response), max(3, n // 100), runs
        ),
        "baseline_bare_ecdsa_p256_sign_us": cpu_us(
            lambda: key.sign(signed_attributes, ec.ECDSA(hashes.SHA256())), n, runs
        ),
    }
    for name in ("timestamp", "token_from_response"):
        figures[f"{name}_speedup"] = round(figures[f"{name}_before_us"] / figures[f"{name}_after_us"], 1)
    figures["timestamp_after_over_bare_sign"] = round(
        figures["timestamp_after_us"] / figures["baseline_bare_ecdsa_p256_sign_us"], 2
    )
    return figures


class Log:
    """A fresh SQLite deployment's log with a way to sequence receipts into it."""

    def __init__(self, directory: Path) -> None:
        self.store = Store(f"sqlite:///{directory / 'bench.db'}")
        self.store.migrate()
        self.clock = SystemClock()
        self.key = SigningKey.generate()
        self.count = 0
        created = self.clock.now()
        self.store.write(lambda repo: repo.insert_tenant(Tenant("t_bench", "bench", created)))

    def sequence(self, n: int) -> None:
        now = self.clock.now()
        rows = []
        for _ in range(n):
            self.count += 1
            intent = {"tool": "payments.refund", "args": {"order": f"ord_{self.count:07d}"}}
            predicate = {"decision": "allow", "intent": intent, "issued_at": now.isoformat()}
            statement = make_statement(f"action:act_{self.count:07d}", digest(intent), RECEIPT_V1, predicate)
            envelope = sign_statement(statement, self.key)
            rows.append(evidence_values(Evidence(
                f"rcp_{self.count:07d}", "t_bench", "receipt", None, envelope.to_dict(),
                digest(envelope.to_dict()), None, now,
            )))
        self.store.write(lambda repo: repo.sequence_evidence(rows, now))

    def close(self) -> None:
        self.store.close()


def integrator_cycle_ms(tsa_module: types.ModuleType, receipts: bool, entries: int, cycles: int) -> float:
    """Median process CPU per integrator cycle that integrates ``entries`` new entries."""
    with tempfile.TemporaryDirectory(prefix="warrantor-bench-") as tmp:
        log = Log(Path(tmp))
        try:
            chain = current.generate_chain("Bench TSA")
            tsa = tsa_module.BuiltinTSA(chain, SerialSource(log.store), log.clock.now)
            signer = NoteSigner(ORIGIN, SigningKey.generate())
            integrator = Integrator(log.store, LogTree(log.store, signer.verifier()), signer, tsa, log.clock,
                                    origin=ORIGIN, timestamp_receipts=receipts)
            integrator.ensure_initial()
            samples = []
            for _ in range(cycles + 1):
                log.sequence(entries)
                started = time.process_time()
                assert integrator.cycle() is not None
                samples.append((time.process_time() - started) * 1e3)
            return round(statistics.median(samples[1:]), 2)  # the first cycle warms up
        finally:
            log.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", default=BEFORE, help="commit of tsa.py to compare with")
    parser.add_argument("--tokens", type=int, default=400, help="tokens per timing run")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--rate", type=int, default=1000, help="actions per second to size a cycle")
    parser.add_argument("--interval-ms", type=int, default=500, help="WARRANTOR_INTEGRATE_INTERVAL_MS")
    parser.add_argument("--cycles", type=int, default=5)
    args = parser.parse_args()
    before = load_before(args.before)
    tokens = token_figures(before, args.tokens, args.runs)
    entries = args.rate * args.interval_ms // 1000
    per_second = 1000 / args.interval_ms
    integrator: dict[str, Any] = {"entries_per_cycle": entries, "cycles_per_second": per_second}
    variants = {"after": current, "before": before}
    for label, module in variants.items():
        for receipts in (False, True):
            mode = "token_per_checkpoint_and_receipt" if receipts else "token_per_checkpoint"
            cycles = args.cycles if label == "after" or not receipts else max(2, args.cycles // 2)
            ms = integrator_cycle_ms(module, receipts, entries, cycles)
            integrator[f"{mode}_{label}"] = {
                "cpu_ms_per_cycle": ms,
                "share_of_a_core": round(ms * per_second / 1000, 4),
            }
    results = {
        "command": " ".join([".venv/bin/python", "bench/tsa_token.py", *sys.argv[1:]]),
        "before_commit": args.before,
        "commit": subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                 check=False).stdout.strip(),
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "when": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "runs": args.runs,
        "tokens_cpu_median": tokens,
        "integrator_at_rate": {"actions_per_second": args.rate, "interval_ms": args.interval_ms,
                               "target_share_of_a_core": 0.05, **integrator},
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
