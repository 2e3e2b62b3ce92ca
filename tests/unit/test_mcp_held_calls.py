"""The gateway's memory of held calls stays bounded: ended, expired and oldest entries go,
and the same arguments keep finding their held action until then."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

pytest.importorskip("mcp")

from warrantor.mcp_gateway.held import DEFAULT_MAX_AGE_SECONDS, GRACE_SECONDS, HeldCalls

NOW = 1_800_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


def at(seconds: float) -> str:
    """Warrantor's ``expires_at`` for ``NOW + seconds``."""
    return datetime.fromtimestamp(NOW + seconds, UTC).isoformat().replace("+00:00", "Z")


def test_the_same_key_finds_its_action_until_forgotten() -> None:
    held = HeldCalls(10, Clock())
    held.hold(("t", "d1"), "act_1", at(60), nonce="n1")
    found = held.get(("t", "d1"))
    assert found is not None and (found.action_id, found.nonce, found.elicited) == ("act_1", "n1", False)
    assert held.get(("t", "d2")) is None
    held.forget(("t", "d1"))
    assert held.get(("t", "d1")) is None and len(held) == 0


def test_the_oldest_entries_go_first_past_the_cap() -> None:
    held = HeldCalls(3, Clock())
    for i in range(1000):
        held.hold(("t", f"d{i}"), f"act_{i}", at(60))
    assert len(held) == 3
    assert [held.get(("t", f"d{i}")) is not None for i in (996, 997, 998, 999)] == [False, True, True, True]
    held.hold(("t", "d997"), "act_again", at(60))  # held again: now the newest
    held.hold(("t", "new"), "act_new", at(60))
    assert held.get(("t", "d998")) is None and held.get(("t", "d997")) is not None


def test_entries_go_once_their_approval_expiry_and_the_grace_are_past() -> None:
    clock = Clock()
    held = HeldCalls(100, clock)
    held.hold(("t", "short"), "act_s", at(10))
    held.hold(("t", "long"), "act_l", at(1000))
    held.hold(("t", "unknown"), "act_u", None)  # no expiry given: the default age
    clock.now = NOW + 10 + GRACE_SECONDS
    assert held.get(("t", "short")) is not None  # the deadline itself still counts
    clock.now += 1
    assert held.get(("t", "short")) is None and held.get(("t", "long")) is not None and len(held) == 2
    clock.now = NOW + 1000 + GRACE_SECONDS + 1
    assert held.get(("t", "long")) is None and held.get(("t", "unknown")) is not None
    clock.now = NOW + DEFAULT_MAX_AGE_SECONDS + 1
    assert held.get(("t", "unknown")) is None and len(held) == 0


@pytest.mark.parametrize("expires_at", ["not a time", "2027-01-15T10:00:00", ""], ids=["garbage", "naive", "empty"])
def test_an_expiry_without_an_offset_gets_the_default_age(expires_at: str) -> None:
    clock = Clock()
    held = HeldCalls(10, clock)
    held.hold(("t", "d"), "act", expires_at)
    clock.now = NOW + DEFAULT_MAX_AGE_SECONDS - 1
    assert held.get(("t", "d")) is not None
    clock.now = NOW + DEFAULT_MAX_AGE_SECONDS + 1
    assert held.get(("t", "d")) is None
