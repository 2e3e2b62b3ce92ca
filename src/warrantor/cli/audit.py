"""``warrantor audit --server URL --state FILE [--entries BUNDLE ...] [--trust TRUST.json]``.

A log monitor. Rules:

1. Trust is pinned: on the first run the trust bundle comes from ``--trust`` or
   ``GET /v1/trust`` and is saved in the state file; later runs use the saved one, so a
   server that swaps its log key is caught.
2. ``trust``: the server's current ``GET /v1/trust`` is believed only as far as signed
   rotation statements lead from the pinned keys (``warrantor.verify.trust``): a key that
   appears without one, or a changed log key or TSA root, fails. ``signing_keys``: every
   database row the server reports as not backed by its key files fails. ``key_history``:
   every rotation statement followed must be in the log.
3. The new checkpoint (``GET /v1/log/checkpoint``) must be a signed note by the pinned log
   key with the pinned origin (``checkpoint_signature``). A server that refuses to serve
   it (503, its log no longer matches its checkpoints) fails this check with the server's
   reason, and the entries are still compared with those seen before (rule 5).
4. It must extend the last checkpoint this monitor trusted: not smaller, and an RFC 9162
   consistency proof (``GET /v1/log/proof/consistency``) from the old size to the new one
   must verify against both roots (``consistency``). A forked or rolled-back log fails here.
5. ``log_entries``: the stored entries (``GET /v1/log/entries``) must reproduce the new
   checkpoint's root, and each entry the monitor saw before must be unchanged: the state
   keeps the leaf hashes it verified (``STATE.leaves``), so a deleted or rewritten row is
   named ("entry 3: leaf hash differs").
6. With ``--entries``, each proof bundle must verify offline (``warrantor verify``'s checks)
   and its entry must be included in the new checkpoint (``inclusion``).
7. The state file (with the followed trust) and the leaves are rewritten (atomically) only
   when every check passed.

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
from warrantor.evidence.merkle import HASH_SIZE, MerkleTree, leaf_hash, verify_consistency, verify_inclusion
from warrantor.evidence.proofs import ProofBundle, TrustBundle, entry_for
from warrantor.verify import VerifyCache, verify_bundle
from warrantor.verify.cli import load_bundle
from warrantor.verify.trust import pin_trust

EXIT_OK, EXIT_FAILED, EXIT_UNREADABLE = 0, 1, 2
ENTRIES_PAGE = 10_000
MAX_NAMED = 20  # entries named one by one before the rest are counted


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

    def entries(self, size: int) -> dict[int, bytes]:
        """Every stored entry below ``size``, by index (a deleted row is absent)."""
        out: dict[int, bytes] = {}
        start = 0
        while start < size:
            doc = self._get("/v1/log/entries", start=start, limit=min(ENTRIES_PAGE, size - start)).json()
            out.update((int(e["index"]), base64.b64decode(e["entry"])) for e in doc["entries"])
            start += min(ENTRIES_PAGE, size - start)
        return out

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


def _check_entry(client: LogClient, bundle: ProofBundle, trust: TrustBundle, new: Checkpoint, name: str,
                 cache: VerifyCache) -> Finding:
    report = verify_bundle(bundle, trust, cache=cache)
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


def _check_trust(pinned: TrustBundle, offered: dict[str, Any]) -> tuple[list[Finding], TrustBundle]:
    """Rule 2: the pinned trust, extended by the rotations the server proves."""
    pin = pin_trust(pinned, TrustBundle.from_dict(offered))
    findings = [Finding("trust", pin.ok, pin.detail())]
    for warning in offered.get("warnings") or []:
        findings.append(Finding("signing_keys", False, f"{warning.get('code')}: {warning.get('detail')}"))
    return findings, pin.trust


def _check_history_logged(trust: TrustBundle, entries: dict[int, bytes]) -> Finding:
    logged = set(entries.values())
    missing = [e for e in trust.key_history if entry_for(e) not in logged]
    if missing:
        return Finding("key_history", False, f"{len(missing)} key statement(s) are not in the log")
    return Finding("key_history", True, f"{len(trust.key_history)} key statement(s) logged")


def _new_checkpoint(client: LogClient, trust: TrustBundle) -> tuple[Checkpoint | None, str, Finding]:
    """Rule 3."""
    try:
        note = client.checkpoint()
    except httpx.HTTPStatusError as exc:
        if exc.response.status_code != 503:
            raise
        try:
            problem = exc.response.json()
            reason = f"{problem.get('code')}: {problem.get('detail')}"
        except ValueError:
            reason = exc.response.text[:200]
        return None, "", Finding("checkpoint_signature", False, f"the server refuses to serve its log: {reason}")
    try:
        new = open_checkpoint(note, trust.log_verifier, origin=trust.log_origin)
    except EvidenceError as exc:
        return None, note, Finding("checkpoint_signature", False, exc.message)
    return new, note, Finding("checkpoint_signature", True, f"{new.origin} size {new.size}")


def _check_entries(
    entries: dict[int, bytes], seen: bytes, size: int, root: bytes | None
) -> tuple[list[Finding], bytes]:
    """Rule 5 for the first ``size`` entries (and their root, when a checkpoint gives one);
    returns the findings and the leaf hashes to keep when they pass."""
    problems = []
    leaves = bytearray()
    for index in range(size):
        entry = entries.get(index)
        if entry is None:
            problems.append(f"entry {index}: missing (deleted)")
            leaves += bytes(HASH_SIZE)
            continue
        leaf = leaf_hash(entry)
        if index * HASH_SIZE < len(seen) and seen[index * HASH_SIZE:(index + 1) * HASH_SIZE] != leaf:
            problems.append(f"entry {index}: leaf hash differs")
        leaves += leaf
    if not problems and root is not None and MerkleTree(
            [bytes(leaves[i:i + HASH_SIZE]) for i in range(0, len(leaves), HASH_SIZE)]).root() != root:
        problems.append(f"the stored entries do not reproduce the root of checkpoint {size}")
    if problems:
        more = [f"and {len(problems) - MAX_NAMED} more"] if len(problems) > MAX_NAMED else []
        return [Finding("log_entries", False, p) for p in problems[:MAX_NAMED] + more], bytes(leaves)
    return [Finding("log_entries", True, f"{size} entries unchanged and reproduce the checkpoint root")], bytes(leaves)


def _leaves_path(state_path: Path) -> Path:
    return state_path.with_name(state_path.name + ".leaves")


def _seen(state_path: Path) -> bytes:
    """The leaf hashes verified by the last successful run (empty on the first)."""
    path = _leaves_path(state_path)
    return path.read_bytes() if path.exists() else b""


def _load_state(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    state: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return state


def _save_state(path: Path, state: dict[str, Any]) -> None:
    _write_atomically(path, (json.dumps(state, indent=2) + "\n").encode())


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def audit(client: LogClient, state_path: Path, entries: Sequence[Path], trust_path: Path | None) -> list[Finding]:
    """Run the rules of the module docstring; saves the state only when everything passed."""
    state = _load_state(state_path)
    if "trust" not in state:
        pinned_doc = json.loads(trust_path.read_text(encoding="utf-8")) if trust_path else client.trust()
        state["trust"] = TrustBundle.from_dict(pinned_doc).to_dict()
    findings, trust = _check_trust(TrustBundle.from_dict(state["trust"]), client.trust())
    old = Checkpoint.from_body(state["checkpoint"]["body"]) if "checkpoint" in state else None
    new, note, finding = _new_checkpoint(client, trust)
    findings.append(finding)
    if new is None and finding.detail.startswith("the server refuses") and old is not None:
        return findings + _check_entries(client.entries(old.size), _seen(state_path), old.size, None)[0]
    if new is None:
        return findings
    findings.append(_check_consistency(client, old, new))
    stored = client.entries(new.size)
    entry_findings, leaves = _check_entries(stored, _seen(state_path), new.size, new.root_hash)
    findings += [*entry_findings, _check_history_logged(trust, stored)]
    cache = VerifyCache()  # entries sharing a checkpoint verify its signature and token once
    for path in entries:
        findings.append(_check_entry(client, load_bundle(path), trust, new, path.name, cache))
    if all(f.ok for f in findings):
        state["trust"] = trust.to_dict()
        state["checkpoint"] = {"body": new.body(), "note": note}
        _write_atomically(_leaves_path(state_path), leaves)
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
