"""Time and id seams, injected everywhere so expiry and golden files are deterministic."""

from __future__ import annotations

import base64
import os
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
    raw = base64.b32encode(_POOL.take((nchars * 5 + 7) // 8)).decode()
    return raw[:nchars].translate(_CROCKFORD)


class _RandomPool:
    """``os.urandom`` in 4 KiB draws, handed out in slices, each byte once.

    The output is the kernel CSPRNG's, unchanged; only the system calls are batched (one per
    ~150 ids instead of one per id, which showed in the request path's profile). A fork
    (``serve --workers``) must never share a buffer: the pool refills after one, so parent
    and child never hand out the same bytes.
    """

    _SIZE = 4096

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buf = b""
        self._pos = 0
        self._pid = os.getpid()

    def take(self, n: int) -> bytes:
        with self._lock:
            if self._pid != os.getpid() or self._pos + n > len(self._buf):
                self._buf, self._pos, self._pid = os.urandom(max(self._SIZE, n)), 0, os.getpid()
            out = self._buf[self._pos:self._pos + n]
            self._pos += n
            return out


_POOL = _RandomPool()


class RandomIds:
    """Ids with 130 random bits: unguessable, so an id is never a credential leak."""

    def new(self, prefix: str) -> str:
        return f"{prefix}_{random_token(130)}"


def isoformat(ts: datetime) -> str:
    """RFC 3339 with milliseconds and a ``Z``: the one timestamp format on the wire."""
    if ts.tzinfo is not UTC:
        ts = ts.astimezone(UTC)
    return ts.isoformat(timespec="milliseconds")[:-6] + "Z"  # "+00:00" -> "Z"


def parse_time(text: str) -> datetime:
    """Parse an RFC 3339 timestamp; naive times are refused (ambiguous in evidence)."""
    ts = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    if ts.tzinfo is None:
        raise ValueError(f"expected a timestamp with a timezone, got {text!r}")
    return ts.astimezone(UTC)
