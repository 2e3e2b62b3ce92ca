"""Request parameters several routes read the same way: an optional RFC 3339 time.

Each route keeps its own stable error code for a malformed value (``INVALID_FILTER`` on the
action list, ``INVALID_TIME`` on a simulation, ``INVALID_RANGE`` on the export); only the
parsing and the message are shared. Not here: which times a route accepts (ranges and order
are the services' to check).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from warrantor.domain.clock import parse_time
from warrantor.errors import ValidationError


def time_param(value: str | None, name: str, code: str, *, details: dict[str, Any] | None = None) -> datetime | None:
    """``value`` as a time, None when absent; anything but RFC 3339 is 422 ``code`` naming ``name``."""
    if value is None:
        return None
    try:
        return parse_time(value)
    except ValueError as exc:
        raise ValidationError(f"{name}: expected an RFC 3339 timestamp, got {value!r}", code=code,
                              details=details) from exc
