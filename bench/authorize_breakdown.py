"""Where an authorization's time goes: the pieces, measured in-process, in the same run.

Medians over ``--n`` runs of each piece on the demo payments bundle and a ~0.5 KB wire
intent, with a baseline of one sha256 of the same canonical bytes:

- canonical JSON of the warrant statement: the fast ``json`` path vs the ``rfc8785`` reference;
- the Cedar decision (``PolicyEngine.evaluate``) and building its input;
- signing the warrant (DSSE over the in-toto statement, Ed25519);
- one whole authorization through the service (read, evaluate, sign, group-commit write
  with fsync), serially, on SQLite in a temporary directory.

    .venv/bin/python bench/authorize_breakdown.py [--n 2000]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import rfc8785

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from support import WIRE, make_env  # noqa: E402
from warrantor.evidence.canonical import canonicalize  # noqa: E402
from warrantor.policy.normalize import build_input  # noqa: E402
from warrantor.service.authorization.intent import Intent  # noqa: E402


def median_us(fn: Callable[[], Any], n: int) -> float:
    times = []
    for _ in range(n):
        t = time.perf_counter_ns()
        fn()
        times.append(time.perf_counter_ns() - t)
    return statistics.median(times) / 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "authorize_breakdown.json")
    args = parser.parse_args()
    with make_env(Path(tempfile.mkdtemp(prefix="warrantor-bench-"))) as env:
        svc = env.services
        principal = svc.tenancy.authenticate(env.keys["agent"])
        intent = Intent(action_type="wire_transfer", details="Pay invoice 42", payload=dict(WIRE),
                        agent_id="payments-agent", instruction_hash="sha256:" + "ab" * 32)
        warrant = env.authorize().json()["warrant"]
        from warrantor.evidence.dsse import Envelope

        statement = Envelope.from_dict(warrant).statement()
        body = canonicalize(statement)
        with svc.store.read() as repo:
            active = svc.policies.active(repo, env.tenant_id)["enforce"]
        inp = build_input(agent_id="payments-agent", action_type="wire_transfer", payload=dict(WIRE))
        signer = svc.deps.sealer
        pieces = {
            "sha256_of_statement_baseline": median_us(lambda: hashlib.sha256(body).digest(), args.n),
            "jcs_statement_fast_path": median_us(lambda: canonicalize(statement), args.n),
            "jcs_statement_rfc8785_reference": median_us(lambda: rfc8785.dumps(statement), args.n),
            "cedar_build_input": median_us(
                lambda: build_input(agent_id="payments-agent", action_type="wire_transfer", payload=dict(WIRE)),
                args.n),
            "cedar_decision": median_us(lambda: active.compiled.engine.evaluate(inp), args.n),
            "sign_warrant": median_us(lambda: signer.warrant(
                tenant_id=env.tenant_id, action_id="act_x", intent=statement["predicate"]["intent"],
                intent_digest="0" * 64, decision=statement["predicate"]["decision"], approvals=[],
                parent=None, issued_at=svc.deps.clock.now(), not_after=svc.deps.clock.now()), args.n),
            "authorize_serial_with_fsync": median_us(
                lambda: svc.authorizer.authorize(principal, intent, None), max(200, args.n // 10)),
        }
    result = {
        "benchmark": "authorize breakdown, in-process, medians in microseconds",
        "command": f".venv/bin/python bench/authorize_breakdown.py --n {args.n}",
        "machine": {"nproc": os.cpu_count(), "python": platform.python_version()},
        "statement_bytes": len(body),
        "median_us": {k: round(v, 1) for k, v in pieces.items()},
        "ratios_to_sha256_baseline": {k: round(v / pieces["sha256_of_statement_baseline"], 1)
                                      for k, v in pieces.items()},
        "jcs_speedup_fast_vs_reference": round(pieces["jcs_statement_rfc8785_reference"]
                                               / pieces["jcs_statement_fast_path"], 1),
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
