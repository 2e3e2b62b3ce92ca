"""Time and id seams, injected everywhere so expiry and golden files are deterministic."""

from __future__ import annotations

import secrets
import threading
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class FixedClock:
    """A clock for tests: starts at ``start`` and moves only when told."""

    def __init__(self, start: datetime) -> None:
        self._now = start
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += timedelta(seconds=seconds)


class IdFactory(Protocol):
    def new(self, prefix: str) -> str:
        """A fresh unique id such as ``act_5Jd...``."""
        ...


_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lower case


def random_token(nbits: int) -> str:
    """``nbits`` (rounded up to a multiple of 5) of CSPRNG output in Crockford base32."""
    n = secrets.randbits(nbits + (-nbits % 5))
    chars = []
    for _ in range((nbits + 4) // 5):
        chars.append(_ALPHABET[n & 31])
        n >>= 5
    return "".join(chars)


class RandomIds:
    """Ids with 130 random bits: unguessable, so an id is never a credential leak."""

    def new(self, prefix: str) -> str:
        return f"{prefix}_{random_token(130)}"


class SequentialIds:
    """Deterministic ids for golden tests."""

    def __init__(self) -> None:
        self._n = 0
        self._lock = threading.Lock()

    def new(self, prefix: str) -> str:
        with self._lock:
            self._n += 1
            return f"{prefix}_{self._n:026d}"


def isoformat(ts: datetime) -> str:
    """RFC 3339 with milliseconds and a ``Z``: the one timestamp format on the wire."""
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


def parse_time(text: str) -> datetime:
    """Parse an RFC 3339 timestamp; naive times are refused (ambiguous in evidence)."""
    ts = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    if ts.tzinfo is None:
        raise ValueError(f"expected a timestamp with a timezone, got {text!r}")
    return ts.astimezone(UTC)
