"""Canonical JSON (RFC 8785, JCS) and the digests built on it.

The intent digest of an action is ``sha256(JCS(intent))``; every signed statement commits
to canonical bytes so that two implementations agree on them byte for byte.
"""

from __future__ import annotations

import hashlib
from typing import Any

import rfc8785


def canonicalize(value: Any) -> bytes:
    """RFC 8785 bytes of a JSON value (dict, list, str, int, float, bool, None).

    Raises ``ValueError`` for values JSON cannot carry exactly (NaN, integers beyond
    2**53, non-string keys).
    """
    try:
        return rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, TypeError) as exc:
        raise ValueError(f"expected a JSON value that RFC 8785 can canonicalize: {exc}") from exc


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def digest(value: Any) -> str:
    """Hex sha256 of the canonical form of ``value``."""
    return sha256_hex(canonicalize(value))
