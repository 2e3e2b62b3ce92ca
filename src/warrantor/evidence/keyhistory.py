"""Signing-key history: the signed statements that introduce every evidence signing key.

Rules (the trust anchor is the first key; everything after it must be vouched for):

1. A history is a list of DSSE envelopes over in-toto Statements with predicate type
   ``KEY_V1`` and subject ``key:<keyid>`` with digest ``sha256 = keyid`` (the key id is
   the hex sha256 of the raw public key, so the subject commits to the key itself).
2. Entry 0 is a ``genesis``: the first key, signed by itself, valid from ``not_before``.
3. Entry ``n > 0`` is a ``rotation`` with ``sequence = n``, naming ``previous_keyid`` (the
   key of entry ``n - 1``) and signed by that previous key. From ``not_before`` the new key
   signs and the previous one is retired: its validity ends at that instant. A key already
   retired in the trust being followed introduces no new key (its stolen private key could
   otherwise sign a backdated rotation to a key of the thief's).
4. Validity windows are derived from the statements alone. A key that no statement
   introduces is not trusted, whatever list it appears in.

``replay_history`` checks a complete history (what the server loads from its key files);
``follow_history`` starts from keys someone already trusts (a pinned trust bundle) and
accepts only the keys that a chain of rotations signed by those keys reaches. Neither
reads a clock, a file or the network.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from warrantor.errors import EvidenceError
from warrantor.evidence.dsse import Envelope, Signer, verify_envelope
from warrantor.evidence.keys import VerifyKey, key_id
from warrantor.evidence.statement import KEY_V1, make_statement, sign_statement

GENESIS, ROTATION = "genesis", "rotation"


def _time(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class KeyEvent:
    """One parsed (not yet verified) statement of a key history."""

    kind: str
    sequence: int
    keyid: str
    public_key: bytes
    not_before: datetime
    previous_keyid: str | None
    envelope: Envelope

    def describe(self) -> str:
        if self.kind == GENESIS:
            return f"genesis of key {self.keyid[:16]} at {_time(self.not_before)}"
        prev = (self.previous_keyid or "?")[:16]
        return f"rotation {prev} -> {self.keyid[:16]} at {_time(self.not_before)}"


def key_statement(
    kind: str, sequence: int, public_key: bytes, not_before: datetime, previous_keyid: str | None, signer: Signer
) -> Envelope:
    """Sign one history statement; ``signer`` is the key itself for a genesis, else the previous key."""
    keyid = key_id(public_key)
    predicate: dict[str, Any] = {
        "event": kind,
        "sequence": sequence,
        "keyid": keyid,
        "public_key": base64.b64encode(public_key).decode(),
        "not_before": _time(not_before),
        "previous_keyid": previous_keyid,
    }
    return sign_statement(make_statement(f"key:{keyid}", keyid, KEY_V1, predicate), signer)


def parse_event(envelope: Envelope) -> KeyEvent:
    """The statement's fields, shape-checked; raises ``EvidenceError`` naming what is wrong."""
    try:
        statement = envelope.statement()
        predicate = statement["predicate"]
        public_key = base64.b64decode(predicate["public_key"], validate=True)
        keyid = key_id(public_key)
        not_before = datetime.fromisoformat(predicate["not_before"])
        kind, sequence, previous = predicate["event"], predicate["sequence"], predicate["previous_keyid"]
        subject = statement["subject"]
    except (ValueError, TypeError, KeyError, binascii.Error) as exc:
        raise EvidenceError(f"expected a signing-key statement: {exc}") from exc
    if statement.get("predicateType") != KEY_V1:
        raise EvidenceError(f"expected predicate type {KEY_V1}, got {statement.get('predicateType')!r}")
    if subject != [{"name": f"key:{keyid}", "digest": {"sha256": keyid}}] or predicate.get("keyid") != keyid:
        raise EvidenceError(f"expected the statement's subject and keyid to name key {keyid}")
    if not_before.tzinfo is None or isinstance(sequence, bool) or not isinstance(sequence, int):
        raise EvidenceError("expected a time zone in not_before and an integer sequence")
    if kind == GENESIS and (sequence != 0 or previous is not None):
        raise EvidenceError("expected a genesis at sequence 0 without a previous key")
    if kind == ROTATION and (sequence < 1 or not isinstance(previous, str)):
        raise EvidenceError("expected a rotation at sequence >= 1 naming its previous key")
    if kind not in (GENESIS, ROTATION):
        raise EvidenceError(f"expected event 'genesis' or 'rotation', got {kind!r}")
    VerifyKey(public_key)  # length check
    return KeyEvent(kind, sequence, keyid, public_key, not_before, previous, envelope)


def replay_history(history: Sequence[Envelope]) -> list[VerifyKey]:
    """The keys of a complete history with their validity; raises ``EvidenceError`` at the
    first statement that breaks the chain (rules 2 and 3)."""
    keys: list[VerifyKey] = []
    for n, envelope in enumerate(history):
        event = parse_event(envelope)
        if event.sequence != n:
            raise EvidenceError(f"history entry {n}: expected sequence {n}, got {event.sequence}")
        if n == 0:
            if event.kind != GENESIS:
                raise EvidenceError("history entry 0: expected a genesis statement")
            signer = VerifyKey(event.public_key)
        else:
            prev = keys[-1]
            if event.kind != ROTATION or event.previous_keyid != prev.keyid:
                raise EvidenceError(f"history entry {n}: expected a rotation from key {prev.keyid}")
            if prev.not_before is not None and event.not_before < prev.not_before:
                raise EvidenceError(f"history entry {n}: the rotation predates the previous key")
            signer = prev
            keys[-1] = replace(prev, not_after=event.not_before)
        if verify_envelope(envelope, [signer]) is None:
            raise EvidenceError(f"history entry {n}: expected a signature by key {signer.keyid}")
        if any(k.keyid == event.keyid for k in keys):
            raise EvidenceError(f"history entry {n}: key {event.keyid} was introduced before")
        keys.append(VerifyKey(event.public_key, event.not_before, None))
    return keys


@dataclass(frozen=True)
class FollowResult:
    """The keys reached from the pinned ones, the statements used, and every problem seen."""

    keys: tuple[VerifyKey, ...]
    accepted: tuple[Envelope, ...]
    problems: tuple[str, ...]


def follow_history(
    pinned: Iterable[VerifyKey], history: Sequence[Envelope], offered: Iterable[VerifyKey] = ()
) -> FollowResult:
    """Extend the pinned keys along rotations signed by keys already trusted (rule 3).

    ``offered`` is the key list of the bundle the history came with: any key in it that no
    accepted statement reaches is reported, and so is one whose stated validity differs from
    what the statements say. Problems never add trust; they are for the report.
    """
    trusted: dict[str, VerifyKey] = {k.keyid: k for k in pinned}
    rotated_from: dict[str, str] = {}
    accepted: list[Envelope] = []
    problems: list[str] = []
    for n, envelope in enumerate(history):
        try:
            event = parse_event(envelope)
        except EvidenceError as exc:
            problems.append(f"key history entry {n}: {exc.message}")
            continue
        if event.kind == GENESIS:
            if event.keyid not in trusted:
                problems.append(f"key {event.keyid} appears in a genesis statement, not in the pinned trust")
            elif verify_envelope(envelope, [trusted[event.keyid]]) is not None:
                accepted.append(envelope)
            continue
        problem = _rotation_problem(event, trusted, rotated_from)
        if problem:
            problems.append(f"key {event.keyid}: {problem}")
            continue
        prev = trusted[event.previous_keyid or ""]
        end = event.not_before if prev.not_after is None else min(prev.not_after, event.not_before)
        trusted[prev.keyid] = replace(prev, not_after=end)
        rotated_from[prev.keyid] = event.keyid
        if event.keyid not in trusted:
            trusted[event.keyid] = VerifyKey(event.public_key, event.not_before, None)
        accepted.append(envelope)
    for key in offered:
        known = trusted.get(key.keyid)
        if known is None:
            problems.append(f"key {key.keyid} appears without a rotation statement signed by a trusted key")
        elif (key.not_before, key.not_after) != (known.not_before, known.not_after) and key.not_before is not None:
            problems.append(f"key {key.keyid}: the bundle states a validity its rotation statements do not")
    return FollowResult(tuple(trusted.values()), tuple(accepted), tuple(problems))


def _rotation_problem(event: KeyEvent, trusted: dict[str, VerifyKey], rotated_from: dict[str, str]) -> str | None:
    prev = trusted.get(event.previous_keyid or "")
    if prev is None:
        return f"rotation from key {event.previous_keyid} which is not trusted"
    if verify_envelope(event.envelope, [prev]) is None:
        return f"rotation statement not signed by its previous key {prev.keyid}"
    if rotated_from.get(prev.keyid, event.keyid) != event.keyid:
        return f"key {prev.keyid} was already rotated to {rotated_from[prev.keyid]}"
    if not prev.valid_at(event.not_before):
        return f"rotation at {_time(event.not_before)} is outside the validity of key {prev.keyid}"
    if prev.not_after is not None and event.keyid not in trusted:
        # The trust already says who replaced it: a stolen retired key cannot name another.
        return f"key {prev.keyid} was retired at {_time(prev.not_after)}; a rotation from it adds no new key"
    return None
