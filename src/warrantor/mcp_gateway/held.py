"""Which held action a retried ``tools/call`` continues: the gateway's memory of held calls, bounded.

A call held for a human is remembered by (exposed tool name, digest of its arguments), so
calling again with exactly the same arguments continues the same action (docs/mcp.md).
An agent can get any number of different calls held, so this memory is bounded three ways:

- an entry is dropped as soon as a call learns that its action has ended (approved and
  run, denied, expired);
- an entry is dropped once its approval's ``expires_at`` (as Warrantor answered the
  authorization) is ``GRACE_SECONDS`` past: an approval given just before that deadline
  leaves a warrant valid for Warrantor's ``warrant_ttl_seconds`` (15 minutes by default),
  which the hour of grace covers. Without an ``expires_at``, an entry lives
  ``DEFAULT_MAX_AGE_SECONDS``;
- at most ``max_entries`` (``approval.max_held_calls``) are kept: holding one more drops
  the oldest.

Forgetting fails closed: the same arguments then start a new held action that needs its own
approval (as after a restart of the gateway), never a call that runs without one.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

GRACE_SECONDS = 3600.0
DEFAULT_MAX_AGE_SECONDS = 86400.0 + GRACE_SECONDS  # Warrantor's default approval TTL, plus the grace

Key = tuple[str, str]  # (exposed tool name, digest of the arguments)


@dataclass
class HeldCall:
    """One held action and what the gateway already did about it."""

    action_id: str
    deadline: float  # the clock's time after which the entry is dropped
    nonce: str | None = None  # held for the end user's confirmation: the nonce to relay the answer with
    elicited: bool = False  # the client was already asked once (an elicitation per held action)


class HeldCalls:
    """The bounded map of the module docstring. ``clock`` is wall-clock seconds (it is compared
    with Warrantor's ``expires_at``)."""

    def __init__(self, max_entries: int, clock: Callable[[], float] = time.time) -> None:
        if max_entries < 1:
            raise ValueError(f"expected max_entries of at least 1, got {max_entries}")
        self._max = max_entries
        self._clock = clock
        self._entries: dict[Key, HeldCall] = {}  # insertion order is age: the first is the oldest
        self._earliest = math.inf  # no entry's deadline is before this

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Key) -> HeldCall | None:
        self._drop_expired()
        return self._entries.get(key)

    def hold(self, key: Key, action_id: str, expires_at: str | None, nonce: str | None = None) -> HeldCall:
        """Remember ``key`` as held by ``action_id``, dropping the oldest entries past the cap."""
        self._drop_expired()
        self._entries.pop(key, None)
        while len(self._entries) >= self._max:
            del self._entries[next(iter(self._entries))]
        entry = HeldCall(action_id, self._deadline(expires_at), nonce)
        self._entries[key] = entry
        self._earliest = min(self._earliest, entry.deadline)
        return entry

    def forget(self, key: Key) -> None:
        self._entries.pop(key, None)

    def _deadline(self, expires_at: str | None) -> float:
        try:
            when = datetime.fromisoformat(str(expires_at))
        except ValueError:  # none given, or not a timestamp
            when = None
        if when is None or when.tzinfo is None:
            return self._clock() + DEFAULT_MAX_AGE_SECONDS
        return when.timestamp() + GRACE_SECONDS

    def _drop_expired(self) -> None:
        """One pass over the entries, and only once the earliest deadline has come."""
        now = self._clock()
        if now <= self._earliest:
            return
        self._entries = {k: e for k, e in self._entries.items() if e.deadline >= now}
        self._earliest = min((e.deadline for e in self._entries.values()), default=math.inf)
