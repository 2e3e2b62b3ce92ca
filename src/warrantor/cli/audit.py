"""``warrantor audit --server URL --state FILE [--entries BUNDLE ...] [--trust TRUST.json]``.

A log monitor. Rules:

1. Trust is pinned: on the first run the trust bundle comes from ``--trust`` or
   ``GET /v1/trust`` and is saved in the state file; later runs use the saved one, so a
   server that swaps its log key is caught.
2. The new checkpoint (``GET /v1/log/checkpoint``) must be a signed note by the pinned log
   key with the pinned origin (``checkpoint_signature``).
3. It must extend the last checkpoint this monitor trusted: not smaller, and an RFC 9162
   consistency proof (``GET /v1/log/proof/consistency``) from the old size to the new one
   must verify against both roots (``consistency``). A forked or rolled-back log fails here.
4. With ``--entries``, each proof bundle must verify offline (``warrantor verify``'s checks)
   and its entry must be included in the new checkpoint (``inclusion``).
5. The state file is rewritten (atomically) only when every check passed.

Exit status: 0 all passed, 1 a check failed, 2 the server or an input could not be read.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from warrantor.errors import EvidenceError
from warrantor.evidence.checkpoint import Checkpoint, open_checkpoint
from warrantor.evidence.merkle import leaf_hash, verify_consistency, verify_inclusion
from warrantor.evidence.proofs import ProofBundle, TrustBundle, entry_for
from warrantor.verify import verify_bundle
from warrantor.verify.cli import load_bundle

EXIT_OK, EXIT_FAILED, EXIT_UNREADABLE = 0, 1, 2


@dataclass(frozen=True)
class Finding:
    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{'PASS' if self.ok else 'FAIL'}  {self.name}  {self.detail}"


class LogClient:
    """The few public endpoints a monitor reads."""

    def __init__(self, server: str, *, transport: httpx.BaseTransport | None = None) -> None:
        self._http = httpx.Client(base_url=server.rstrip("/"), timeout=30, transport=transport)

    def _get(self, path: str, **params: Any) -> httpx.Response:
        response = self._http.get(path, params=params or None)
        response.raise_for_status()
        return response

    def trust(self) -> dict[str, Any]:
        doc: dict[str, Any] = self._get("/v1/trust").json()
        return doc

    def checkpoint(self) -> str:
        return self._get("/v1/log/checkpoint").text

    def consistency(self, old: int, new: int) -> list[bytes]:
        doc = self._get("/v1/log/proof/consistency", old=old, new=new).json()
        return [base64.b64decode(h) for h in doc["consistency_path"]]

    def inclusion(self, index: int, size: int) -> list[bytes]:
        doc = self._get("/v1/log/proof/inclusion", index=index, size=size).json()
        return [base64.b64decode(h) for h in doc["inclusion_path"]]

    def close(self) -> None:
        self._http.close()


def _check_consistency(client: LogClient, old: Checkpoint | None, new: Checkpoint) -> Finding:
    if old is None:
        return Finding("consistency", True, f"first checkpoint trusted at size {new.size}")
    if new.size < old.size:
        return Finding("consistency", False, f"expected a size >= {old.size}, got {new.size}: rolled back")
    proof = client.consistency(old.size, new.size) if old.size not in (0, new.size) else []
    if not verify_consistency(old.size, new.size, proof, old.root_hash, new.root_hash):
        return Finding("consistency", False, f"size {new.size} does not extend the trusted size {old.size}: forked")
    return Finding("consistency", True, f"size {old.size} -> {new.size}")


def _check_entry(client: LogClient, bundle: ProofBundle, trust: TrustBundle, new: Checkpoint, name: str) -> Finding:
    report = verify_bundle(bundle, trust)
    failed = [c.name for c in report.checks if not c.ok]
    if failed:
        return Finding(f"entry {name}", False, f"offline checks failed: {', '.join(failed)}")
    if bundle.log_index >= new.size:
        return Finding(f"entry {name}", False, f"index {bundle.log_index} is beyond the log's size {new.size}")
    proof = client.inclusion(bundle.log_index, new.size)
    leaf = leaf_hash(entry_for(bundle.envelope))
    if not verify_inclusion(leaf, bundle.log_index, new.size, proof, new.root_hash):
        return Finding(f"entry {name}", False, f"not included at index {bundle.log_index} of size {new.size}")
    return Finding(f"entry {name}", True, f"index {bundle.log_index} included in size {new.size}")


def _load_state(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    state: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return state


def _save_state(path: Path, state: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def audit(client: LogClient, state_path: Path, entries: Sequence[Path], trust_path: Path | None) -> list[Finding]:
    """Run the rules of the module docstring; saves the state only when everything passed."""
    state = _load_state(state_path)
    if "trust" not in state:
        state["trust"] = json.loads(trust_path.read_text(encoding="utf-8")) if trust_path else client.trust()
    trust = TrustBundle.from_dict(state["trust"])
    note = client.checkpoint()
    try:
        new = open_checkpoint(note, trust.log_verifier, origin=trust.log_origin)
    except EvidenceError as exc:
        return [Finding("checkpoint_signature", False, exc.message)]
    findings = [Finding("checkpoint_signature", True, f"{new.origin} size {new.size}")]
    old = Checkpoint.from_body(state["checkpoint"]["body"]) if "checkpoint" in state else None
    findings.append(_check_consistency(client, old, new))
    for path in entries:
        findings.append(_check_entry(client, load_bundle(path), trust, new, path.name))
    if all(f.ok for f in findings):
        state["checkpoint"] = {"body": new.body(), "note": note}
        _save_state(state_path, state)
    return findings


def build_parser(*, add_help: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="warrantor audit", description="Monitor a Warrantor transparency log.", add_help=add_help
    )
    parser.add_argument("--server", required=True, help="the server's base URL")
    parser.add_argument(
        "--state", type=Path, required=True, help="JSON file keeping the pinned trust and last checkpoint"
    )
    parser.add_argument("--entries", type=Path, nargs="*", default=[], help="proof bundles to re-verify")
    parser.add_argument("--trust", type=Path, default=None, help="pin this trust bundle instead of GET /v1/trust")
    return parser


def main(argv: Sequence[str] | None = None, *, transport: httpx.BaseTransport | None = None) -> int:
    return run(build_parser().parse_args(argv), transport=transport)


def run(args: argparse.Namespace, *, transport: httpx.BaseTransport | None = None) -> int:
    client = LogClient(args.server, transport=transport)
    try:
        findings = audit(client, args.state, args.entries, args.trust)
    except (OSError, ValueError, KeyError, httpx.HTTPError) as exc:
        print(f"warrantor audit: cannot read input: {exc}", file=sys.stderr)
        return EXIT_UNREADABLE
    finally:
        client.close()
    for finding in findings:
        print(finding.line())
    ok = all(f.ok for f in findings)
    print("LOG CONSISTENT" if ok else "LOG CHECK FAILED")
    return EXIT_OK if ok else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
