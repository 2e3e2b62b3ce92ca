"""The offline verifier: checks a proof bundle against a trust bundle, check by check.

Rules (docs/offline-verification.md):

1. ``signature``: a DSSE signature over the PAE verifies under a key in the trust bundle
   (matched by key id, so a foreign key never verifies).
2. ``key_validity``: the statement's ``predicate.issued_at`` (RFC 3339) lies within the
   validity period of the key that signed.
3. ``subject_digest``: the one subject is named ``action:<id>`` with a 64-hex sha256; it
   equals the expected digest when one is given; when the predicate has an ``intent``
   object, ``sha256(JCS(intent))`` equals the subject digest.
4. ``inclusion``: ``leaf_hash(sha256(canonical envelope))`` is at the bundle's index in the
   tree whose size and root the checkpoint states (RFC 9162 section 2.1.3.2).
5. ``checkpoint_signature``: the checkpoint is a C2SP signed note by the trusted log key,
   with the trusted origin.
6. ``timestamp``: the RFC 3161 token covers the checkpoint note text, chains to the TSA
   root, and its genTime is not before ``issued_at``. A trust bundle with a TSA root
   requires a token; one without a root skips this check.
7. ``replay``: only when a replay callable is given (re-evaluates the archived decision).
8. ``trust``: only when a pinned trust bundle is given. The bundle's keys are then trusted
   only as far as signed rotation statements lead from the pinned keys
   (``warrantor.verify.trust``); a key that appears without one fails this check and
   cannot pass ``signature``.
9. ``witnesses``: only when the trust bundle names witnesses. At least ``witness_quorum``
   distinct trusted witnesses have a valid C2SP tlog-cosignature on the checkpoint's note;
   cosignatures by unknown keys are ignored, and a failing one does not count.

Every check runs even when an earlier one failed, so the report lists them all. The
verifier reads only its arguments: no network, no clock, no server code.

Many bundles, one run: bundles of one batch usually share a checkpoint, so its signature,
its RFC 3161 token and the pinning of the trust bundle are the same work for each of them.
A ``VerifyCache`` passed to every ``verify_bundle`` call of a run (``verify_bundles`` does
this) remembers those results. It remembers only what passed, under the complete input
that was verified (the note text with the log key and origin; the token bytes with the
checkpoint body and the TSA root; the pinned and the offered trust bundles), so a hit
returns exactly what verifying again would, and an input that differs in one byte is
verified afresh. The envelope's own checks (signature, validity, subject, inclusion) run
for every bundle. Without a cache each call verifies everything itself.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from warrantor.errors import EvidenceError
from warrantor.evidence.canonical import digest
from warrantor.evidence.checkpoint import (
    Checkpoint,
    NoteVerifier,
    SignedNote,
    open_checkpoint,
    parse_signed_note,
    verify_cosignature,
)
from warrantor.evidence.dsse import Envelope, verify_envelope
from warrantor.evidence.keys import VerifyKey
from warrantor.evidence.merkle import leaf_hash, verify_inclusion
from warrantor.evidence.proofs import ProofBundle, TrustBundle, entry_for
from warrantor.evidence.tsa import verify_timestamp
from warrantor.verify.trust import PinnedTrust, pin_trust

_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class CheckResult:
    """What a replay callable returns."""

    ok: bool
    detail: str = ""


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "detail": self.detail}


@dataclass(frozen=True)
class Report:
    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    def check(self, name: str) -> Check:
        return next(c for c in self.checks if c.name == name)

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "checks": [c.to_dict() for c in self.checks]}


Replay = Callable[[dict[str, Any]], CheckResult]


class VerifyCache:
    """Results one verification run already established, keyed by the exact inputs.

    Only successes are stored (a failure raises before anything is remembered), except
    for pinning, which is a pure function of its two bundles and is stored as computed.
    Each table is emptied when it reaches ``max_entries``, which bounds the memory of a
    long run. Not thread-safe: one run, one thread.
    """

    def __init__(self, max_entries: int = 4096) -> None:
        self._max = max_entries
        self._notes: dict[str, SignedNote] = {}
        self._bodies: dict[str, Checkpoint] = {}
        self._checkpoints: dict[tuple[str, NoteVerifier, str], Checkpoint] = {}
        self._timestamps: dict[tuple[bytes, bytes, str], datetime] = {}
        self._cosignatures: dict[tuple[str, NoteVerifier], int] = {}
        self._pins: dict[tuple[TrustBundle, TrustBundle], PinnedTrust] = {}

    def _put(self, table: dict[Any, Any], key: Any, value: Any) -> None:
        if len(table) >= self._max:
            table.clear()
        table[key] = value

    def note(self, text: str) -> SignedNote:
        """``parse_signed_note(text)`` (syntax only; raises ``ValueError``)."""
        note = self._notes.get(text)
        if note is None:
            note = parse_signed_note(text)
            self._put(self._notes, text, note)
        return note

    def checkpoint_body(self, text: str) -> Checkpoint:
        """The checkpoint a note states, parsed, not verified (raises ``ValueError``)."""
        checkpoint = self._bodies.get(text)
        if checkpoint is None:
            checkpoint = Checkpoint.from_body(self.note(text).body)
            self._put(self._bodies, text, checkpoint)
        return checkpoint

    def open_checkpoint(self, text: str, verifier: NoteVerifier, origin: str) -> Checkpoint:
        """``open_checkpoint(text, verifier, origin=origin)``, verified once per input."""
        key = (text, verifier, origin)
        checkpoint = self._checkpoints.get(key)
        if checkpoint is None:
            checkpoint = open_checkpoint(text, verifier, origin=origin)
            self._put(self._checkpoints, key, checkpoint)
        return checkpoint

    def verify_timestamp(self, token: bytes, data: bytes, root_pem: str) -> datetime:
        """``verify_timestamp(token, data, root_pem)``, verified once per input."""
        key = (token, data, root_pem)
        gen_time = self._timestamps.get(key)
        if gen_time is None:
            gen_time = verify_timestamp(token, data, root_pem)
            self._put(self._timestamps, key, gen_time)
        return gen_time

    def cosignature(self, text: str, witness: NoteVerifier) -> int:
        """``verify_cosignature(text, witness)``, verified once per input."""
        key = (text, witness)
        timestamp = self._cosignatures.get(key)
        if timestamp is None:
            timestamp = verify_cosignature(text, witness)
            self._put(self._cosignatures, key, timestamp)
        return timestamp

    def pin(self, pinned: TrustBundle, offered: TrustBundle) -> PinnedTrust:
        """``pin_trust(pinned, offered)``, computed once per pair of bundles."""
        key = (pinned, offered)
        pin = self._pins.get(key)
        if pin is None:
            pin = pin_trust(pinned, offered)
            self._put(self._pins, key, pin)
        return pin


@dataclass
class _Context:
    """What the checks learn from each other; ``None`` where an earlier step failed."""

    envelope: Envelope
    trust: TrustBundle
    cache: VerifyCache
    statement: dict[str, Any] | None = None
    key: VerifyKey | None = None
    issued_at: datetime | None = None
    notes: dict[str, str] = field(default_factory=dict)


def _run(name: str, check: Callable[[], str]) -> Check:
    """Run one check: it returns a detail on success and raises ``EvidenceError`` on failure."""
    try:
        return Check(name, True, check())
    except (EvidenceError, ValueError, TypeError, KeyError, AttributeError) as exc:
        return Check(name, False, getattr(exc, "message", None) or str(exc))


def _load_statement(ctx: _Context) -> None:
    try:
        ctx.statement = ctx.envelope.statement()
        issued = ctx.statement["predicate"]["issued_at"]
        ctx.issued_at = _parse_rfc3339(issued)
    except (ValueError, TypeError, KeyError) as exc:
        ctx.notes["statement"] = f"expected an in-toto statement with predicate.issued_at: {exc}"


def _parse_rfc3339(value: Any) -> datetime:
    if not isinstance(value, str):
        raise ValueError(f"expected an RFC 3339 string, got {value!r}")
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError(f"expected a time zone in {value!r}")
    return parsed


def _check_signature(ctx: _Context) -> str:
    ctx.key = verify_envelope(ctx.envelope, ctx.trust.signing_keys)
    if ctx.key is None:
        ids = ", ".join(s.keyid[:16] for s in ctx.envelope.signatures)
        raise EvidenceError(f"no signature verifies under a trusted key (keyids: {ids})")
    return f"signed by key {ctx.key.keyid}"


def _check_key_validity(ctx: _Context) -> str:
    if ctx.issued_at is None:
        raise EvidenceError(ctx.notes.get("statement", "no issued_at"))
    if ctx.key is None:
        raise EvidenceError("no trusted key signed the envelope")
    if not ctx.key.valid_at(ctx.issued_at):
        raise EvidenceError(
            f"expected issued_at within [{ctx.key.not_before}, {ctx.key.not_after}], "
            f"got {ctx.issued_at.isoformat()}"
        )
    return f"issued_at {ctx.issued_at.isoformat()} within the key's validity"


def _check_subject(ctx: _Context, expected: str | None) -> str:
    if ctx.statement is None:
        raise EvidenceError(ctx.notes.get("statement", "no statement"))
    subjects = ctx.statement.get("subject")
    if not isinstance(subjects, list) or len(subjects) != 1:
        raise EvidenceError("expected exactly one subject")
    name, sha = subjects[0].get("name"), subjects[0].get("digest", {}).get("sha256")
    if not isinstance(name, str) or not name.startswith("action:"):
        raise EvidenceError(f"expected a subject named 'action:<id>', got {name!r}")
    if not isinstance(sha, str) or not _HEX64.fullmatch(sha):
        raise EvidenceError(f"expected a 64-hex sha256 subject digest, got {sha!r}")
    if expected is not None and sha != expected.lower():
        raise EvidenceError(f"expected subject digest {expected}, got {sha}")
    intent = ctx.statement.get("predicate", {}).get("intent")
    if isinstance(intent, dict) and digest(intent) != sha:
        raise EvidenceError(f"expected sha256(JCS(intent)) = {sha}, got {digest(intent)}")
    return f"{name} sha256:{sha}"


def _unverified_checkpoint(bundle: ProofBundle, cache: VerifyCache) -> Checkpoint:
    try:
        return cache.checkpoint_body(bundle.checkpoint)
    except ValueError as exc:
        raise EvidenceError(f"expected a checkpoint note: {exc}") from exc


def _check_inclusion(bundle: ProofBundle, cache: VerifyCache) -> str:
    checkpoint = _unverified_checkpoint(bundle, cache)
    if checkpoint.size != bundle.tree_size:
        raise EvidenceError(
            f"expected the checkpoint size {checkpoint.size}, bundle says {bundle.tree_size}"
        )
    leaf = leaf_hash(entry_for(bundle.envelope))
    proof = bundle.inclusion_proof
    if not verify_inclusion(leaf, bundle.log_index, bundle.tree_size, proof, checkpoint.root_hash):
        raise EvidenceError(
            f"entry at index {bundle.log_index} does not verify against the checkpoint root"
        )
    return f"index {bundle.log_index} of {bundle.tree_size}"


def _check_checkpoint(bundle: ProofBundle, trust: TrustBundle, cache: VerifyCache) -> str:
    checkpoint = cache.open_checkpoint(bundle.checkpoint, trust.log_verifier, trust.log_origin)
    return f"{checkpoint.origin} size {checkpoint.size} signed by {trust.log_verifier.name}"


def _check_timestamp(bundle: ProofBundle, ctx: _Context) -> str:
    root = ctx.trust.tsa_root_pem
    if root is None:
        return "skipped: the trust bundle has no TSA root"
    if bundle.timestamp_token is None:
        raise EvidenceError("expected an RFC 3161 token for the checkpoint, got none")
    body = ctx.cache.note(bundle.checkpoint).body.encode()
    gen_time = ctx.cache.verify_timestamp(bundle.timestamp_token, body, root)
    if ctx.issued_at is None:
        raise EvidenceError("token verifies, but the statement has no issued_at to compare")
    if gen_time < ctx.issued_at:
        raise EvidenceError(
            f"expected genTime >= issued_at {ctx.issued_at.isoformat()}, got {gen_time.isoformat()}"
        )
    return f"genTime {gen_time.isoformat()}"


def _check_witnesses(bundle: ProofBundle, trust: TrustBundle, cache: VerifyCache) -> str:
    note = cache.note(bundle.checkpoint)
    valid: list[str] = []
    missing: list[str] = []
    invalid: list[str] = []
    for witness in trust.witnesses:
        if not any(witness.matches(s) for s in note.signatures):
            missing.append(witness.name)
            continue
        try:
            cache.cosignature(bundle.checkpoint, witness)
        except EvidenceError:
            invalid.append(witness.name)
        else:
            valid.append(witness.name)
    seen = f"{len(valid)} of {len(trust.witnesses)} trusted witnesses cosigned"
    named = "".join(f"; {label}: {', '.join(names)}" for label, names in
                    (("valid", valid), ("missing", missing), ("invalid", invalid)) if names)
    if len(valid) < trust.witness_quorum:
        raise EvidenceError(f"expected cosignatures by at least {trust.witness_quorum} trusted witnesses, "
                            f"{seen}{named}")
    return f"{seen} (quorum {trust.witness_quorum}){named}"


def _check_replay(replay: Replay, ctx: _Context) -> str:
    if ctx.statement is None:
        raise EvidenceError(ctx.notes.get("statement", "no statement"))
    result = replay(ctx.statement)
    if not result.ok:
        raise EvidenceError(result.detail or "replay disagrees with the recorded decision")
    return result.detail or "replay matches the recorded decision"


def _envelope_checks(ctx: _Context, expected: str | None) -> list[Check]:
    _load_statement(ctx)
    return [
        _run("signature", lambda: _check_signature(ctx)),
        _run("key_validity", lambda: _check_key_validity(ctx)),
        _run("subject_digest", lambda: _check_subject(ctx, expected)),
    ]


def verify_bundle(
    bundle: ProofBundle,
    trust: TrustBundle,
    *,
    expected_subject_digest: str | None = None,
    replay: Replay | None = None,
    pinned: TrustBundle | None = None,
    cache: VerifyCache | None = None,
) -> Report:
    """Run every check on ``bundle``; the report says which passed. With ``pinned``,
    ``trust`` counts only as far as the pinned bundle vouches for it (rule 8). With
    ``cache``, results for checkpoints and trust already verified in this run are reused."""
    cache = VerifyCache() if cache is None else cache
    pin_check: list[Check] = []
    if pinned is not None:
        pin = cache.pin(pinned, trust)
        trust = pin.trust
        pin_check.append(Check("trust", pin.ok, pin.detail()))
    ctx = _Context(bundle.envelope, trust, cache)
    checks = pin_check + _envelope_checks(ctx, expected_subject_digest)
    checks.append(_run("inclusion", lambda: _check_inclusion(bundle, cache)))
    checks.append(_run("checkpoint_signature", lambda: _check_checkpoint(bundle, trust, cache)))
    checks.append(_run("timestamp", lambda: _check_timestamp(bundle, ctx)))
    if trust.witnesses:
        checks.append(_run("witnesses", lambda: _check_witnesses(bundle, trust, cache)))
    if replay is not None:
        checks.append(_run("replay", lambda: _check_replay(replay, ctx)))
    return Report(tuple(checks))


def verify_bundles(
    bundles: Iterable[ProofBundle], trust: TrustBundle, *, pinned: TrustBundle | None = None
) -> list[Report]:
    """``verify_bundle`` for each bundle, sharing one ``VerifyCache``: the reports are the
    ones separate calls give."""
    cache = VerifyCache()
    return [verify_bundle(b, trust, pinned=pinned, cache=cache) for b in bundles]


def verify_envelope_only(
    envelope: Envelope, trust: TrustBundle, *, expected_subject_digest: str | None = None
) -> Report:
    """``signature``, ``key_validity`` and ``subject_digest`` for an envelope without log data
    (a warrant handed to an agent before it is logged)."""
    return Report(tuple(_envelope_checks(_Context(envelope, trust, VerifyCache()), expected_subject_digest)))


def format_report(report: Report) -> str:
    """One line per check, ``PASS``/``FAIL``, then the verdict."""
    width = max((len(c.name) for c in report.checks), default=0)
    lines = [
        f"{'PASS' if c.ok else 'FAIL'}  {c.name.ljust(width)}  {c.detail}" for c in report.checks
    ]
    lines.append("VERIFIED" if report.ok else "NOT VERIFIED")
    return "\n".join(lines) + "\n"
