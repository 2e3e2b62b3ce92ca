"""The signed key history: replayed whole by the server, followed from a pin by auditors."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from warrantor.errors import EvidenceError
from warrantor.evidence.dsse import Envelope
from warrantor.evidence.keyhistory import GENESIS, ROTATION, follow_history, key_statement, replay_history
from warrantor.evidence.keys import SigningKey

T0 = datetime(2026, 1, 1, tzinfo=UTC)
A, B, C, MALLORY = (SigningKey.from_seed(bytes([i]) * 32) for i in (1, 2, 3, 9))


def genesis(key: SigningKey = A, at: datetime = T0) -> Envelope:
    return key_statement(GENESIS, 0, key.public_key, at, None, key)


def rotation(seq: int, new: SigningKey, old: SigningKey, at: datetime, signer: SigningKey | None = None) -> Envelope:
    return key_statement(ROTATION, seq, new.public_key, at, old.keyid, signer or old)


T1, T2 = T0 + timedelta(days=30), T0 + timedelta(days=60)
HISTORY = [genesis(), rotation(1, B, A, T1), rotation(2, C, B, T2)]


def test_a_history_gives_each_key_the_validity_its_statements_say() -> None:
    keys = replay_history(HISTORY)
    assert [(k.keyid, k.not_before, k.not_after) for k in keys] == [
        (A.keyid, T0, T1), (B.keyid, T1, T2), (C.keyid, T2, None)]


@pytest.mark.parametrize(("history", "message"), [
    ([rotation(1, B, A, T1)], "expected sequence 0"),
    ([genesis(), rotation(1, B, A, T1, signer=MALLORY)], "expected a signature by key"),
    ([genesis(), rotation(1, C, B, T1)], "expected a rotation from key"),
    ([genesis(), rotation(2, B, A, T1)], "expected sequence 1"),
    ([genesis(), rotation(1, B, A, T0 - timedelta(days=1))], "predates"),
    ([genesis(A, T0), rotation(1, A, A, T1)], "introduced before"),
])
def test_a_history_that_breaks_the_chain_is_refused(history: list[Envelope], message: str) -> None:
    with pytest.raises(EvidenceError, match=message):
        replay_history(history)


def test_a_pinned_key_reaches_later_keys_only_through_signed_rotations() -> None:
    pinned = replay_history(HISTORY[:1])
    offered = replay_history(HISTORY)
    result = follow_history(pinned, HISTORY, offered)
    assert not result.problems
    assert [(k.keyid, k.not_after) for k in result.keys] == [(A.keyid, T1), (B.keyid, T2), (C.keyid, None)]


def test_a_rotation_not_signed_by_a_trusted_key_adds_nothing() -> None:
    pinned = replay_history(HISTORY[:1])
    forged = [genesis(), rotation(1, MALLORY, A, T1, signer=MALLORY)]
    offered = [*pinned, replace(MALLORY.verify_key(), not_before=T1)]
    result = follow_history(pinned, forged, offered)
    assert MALLORY.keyid not in {k.keyid for k in result.keys}
    assert any("not signed by its previous key" in p for p in result.problems)
    assert any(f"key {MALLORY.keyid} appears without a rotation statement" in p for p in result.problems)


def test_a_second_rotation_from_the_same_key_is_a_fork() -> None:
    """A stolen old key cannot announce another successor once one is known."""
    forked = [genesis(), rotation(1, B, A, T1), rotation(1, MALLORY, A, T1)]
    result = follow_history(replay_history(HISTORY[:1]), forked)
    assert MALLORY.keyid not in {k.keyid for k in result.keys}
    assert any("already rotated" in p for p in result.problems)


def test_a_retired_key_cannot_rotate_after_its_retirement() -> None:
    pinned = [replace(A.verify_key(), not_before=T0, not_after=T1)]
    result = follow_history(pinned, [genesis(), rotation(1, MALLORY, A, T2)])
    assert MALLORY.keyid not in {k.keyid for k in result.keys}
    assert any("outside the validity" in p for p in result.problems)


def test_a_bundle_that_widens_a_keys_validity_is_reported() -> None:
    pinned = replay_history(HISTORY[:1])
    offered = [replace(k, not_after=None) for k in replay_history(HISTORY)]
    result = follow_history(pinned, HISTORY, offered)
    assert any(f"key {A.keyid}: the bundle states a validity" in p for p in result.problems)
    assert dict((k.keyid, k.not_after) for k in result.keys)[A.keyid] == T1  # the statements win


def test_a_stolen_retired_key_cannot_backdate_a_rotation_to_a_new_key() -> None:
    """A pin that already knows A was retired (A -> B at T1): a statement signed with A's
    stolen private key naming a new successor inside A's old validity adds no key."""
    pinned = replay_history(HISTORY)
    forged = [genesis(), rotation(1, MALLORY, A, T0 + timedelta(days=1))]
    offered = [*pinned, replace(MALLORY.verify_key(), not_before=T0 + timedelta(days=1))]
    result = follow_history(pinned, forged, offered)
    assert MALLORY.keyid not in {k.keyid for k in result.keys}
    assert any("was retired" in p for p in result.problems)
