"""Time and id seams, injected everywhere so expiry and golden files are deterministic."""

from __future__ import annotations

import base64
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


_RFC4648 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_CROCKFORD = str.maketrans(_RFC4648, "0123456789abcdefghjkmnpqrstvwxyz")  # lower case, no i l o u


def random_token(nbits: int) -> str:
    """At least ``nbits`` of CSPRNG output as ``ceil(nbits / 5)`` Crockford base32 characters."""
    nchars = (nbits + 4) // 5
    raw = base64.b32encode(secrets.token_bytes((nchars * 5 + 7) // 8)).decode()
    return raw[:nchars].translate(_CROCKFORD)


class RandomIds:
    """Ids with 130 random bits: unguessable, so an id is never a credential leak."""

    def new(self, prefix: str) -> str:
        return f"{prefix}_{random_token(130)}"


def isoformat(ts: datetime) -> str:
    """RFC 3339 with milliseconds and a ``Z``: the one timestamp format on the wire."""
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


def parse_time(text: str) -> datetime:
    """Parse an RFC 3339 timestamp; naive times are refused (ambiguous in evidence)."""
    ts = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    if ts.tzinfo is None:
        raise ValueError(f"expected a timestamp with a timezone, got {text!r}")
    return ts.astimezone(UTC)
