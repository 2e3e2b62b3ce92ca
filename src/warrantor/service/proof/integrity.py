"""Tamper visibility: does what the store says about an action still match what was signed?

Rules, for each action:

1. The stored committed intent hashes (sha256 of its canonical JSON) to the stored
   ``intent_digest``, and, while the details are kept, each stored erasable value matches
   its salted commitment (``evidence/commitments.py``). Once erased, only the digest is left
   to check.
2. Every signed envelope stored for the action (warrant, receipt, cosignature) verifies
   under a key the key ring trusts (key files, never rows), names ``action:<id>`` as its
   subject, and its subject digest equals the hash of rule 1; its stored
   ``envelope_digest`` and its log entry both equal sha256 of the envelope.
3. The warrant and receipt the action row points to exist.

``integrity`` is ``ok`` when every rule holds and something was signed, ``unsigned`` when
nothing has been signed for the action yet (only rule 1 applies), ``mismatch`` otherwise,
with ``integrity_problems`` saying what differs. The API and the console show the stored
data flagged as a mismatch, never as if it were valid.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from warrantor.domain.model import Action
from warrantor.evidence.canonical import digest, sha256_hex
from warrantor.evidence.commitments import disclosure_problems, split_intent
from warrantor.evidence.dsse import Envelope, verify_envelope
from warrantor.evidence.keys import VerifyKey
from warrantor.store import Repo
from warrantor.store import repo_trust as rt

OK, UNSIGNED, MISMATCH = "ok", "unsigned", "mismatch"


@dataclass(frozen=True)
class Integrity:
    status: str
    problems: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"integrity": self.status, "integrity_problems": list(self.problems)}


def check_actions(
    repo: Repo, tenant_id: str, actions: Sequence[Action], keys: Sequence[VerifyKey]
) -> dict[str, Integrity]:
    """The integrity of each action, by id, in three queries whatever the number of actions."""
    rows = rt.signed_rows(repo, tenant_id, [a.id for a in actions])
    entries = rt.log_entries_at(repo, sorted({r.log_index for r in rows if r.log_index is not None}))
    by_action: dict[str, list[rt.SignedRow]] = {}
    for row in rows:
        by_action.setdefault(row.action_id, []).append(row)
    return {a.id: _check(a, by_action.get(a.id, []), entries, keys) for a in actions}


def _check(action: Action, rows: Sequence[rt.SignedRow], entries: Mapping[int, bytes],
           keys: Sequence[VerifyKey]) -> Integrity:
    problems: list[str] = []
    try:
        computed = digest(action.committed_intent)
        if not action.erased and action.details_salt is not None:
            _, values = split_intent(action.intent)
            problems += [f"the stored {p}" for p in
                         disclosure_problems(action.committed_intent, values, action.details_salt)]
    except ValueError as exc:
        computed = ""
        problems.append(f"the stored intent cannot be canonicalized: {exc}")
    if computed and computed != action.intent_digest:
        problems.append(f"the stored intent hashes to {computed}, not to its recorded digest {action.intent_digest}")
    held = {r.id for r in rows}
    for kind, evidence_id in (("warrant", action.warrant_id), ("receipt", action.receipt_id)):
        if evidence_id is not None and evidence_id not in held:
            problems.append(f"the {kind} {evidence_id} is missing from the store")
    for row in rows:
        problems += [f"{row.kind} {row.id}: {p}" for p in _envelope_problems(action.id, computed, row, entries, keys)]
    if problems:
        return Integrity(MISMATCH, tuple(problems))
    return Integrity(OK if rows else UNSIGNED)


def _envelope_problems(action_id: str, intent_digest: str, row: rt.SignedRow, entries: Mapping[int, bytes],
                       keys: Sequence[VerifyKey]) -> list[str]:
    try:
        envelope = Envelope.from_dict(row.envelope)
        subject = envelope.statement()["subject"][0]
        name, signed = subject["name"], subject["digest"]["sha256"]
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        return [f"the stored envelope cannot be read: {exc}"]
    out = []
    if verify_envelope(envelope, keys) is None:
        out.append("its signature does not verify under a trusted key")
    if name != f"action:{action_id}":
        out.append(f"it is signed for {name!r}, not for this action")
    if intent_digest and signed != intent_digest:
        out.append(f"the stored intent no longer matches the signed digest {signed}")
    envelope_digest = sha256_hex(envelope.canonical_bytes())
    if row.envelope_digest != envelope_digest:
        out.append("its recorded envelope digest differs from the envelope")
    if row.log_index is not None:
        entry = entries.get(row.log_index)
        if entry is None:
            out.append(f"its log entry {row.log_index} is missing")
        elif entry.hex() != envelope_digest:
            out.append(f"its log entry {row.log_index} differs from the envelope")
    return out
