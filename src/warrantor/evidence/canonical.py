"""Canonical JSON (RFC 8785, JCS) and the digests built on it.

The intent digest of an action is ``sha256(JCS(intent))``; every signed statement commits
to canonical bytes so that two implementations agree on them byte for byte.

Two paths, one output:

- the common case — objects, arrays, strings, booleans, null and integers within
  ±(2**53 - 1), with object keys whose UTF-16 order equals their code-point order — is
  exactly ``json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False)``
  (RFC 8785 section 3.2.2: no whitespace, minimal escapes, integers as digits; section
  3.2.3: keys sorted by UTF-16 code units, which for such keys is code-point order), which
  runs in C; where ``orjson`` is installed (the server extra) it writes the same bytes about
  five times faster, and the standard library's encoder is the fallback (the light SDK and
  verifier install, and documents nested deeper than ``orjson``'s limit of 255 levels);
- anything else (floats, keys with characters at or above U+E000, lone surrogates, big
  integers) goes through the ``rfc8785`` package, which implements the ECMAScript number
  serialization and UTF-16 key sort — or refuses the value.

``tests/property/test_canonical_properties.py`` checks with Hypothesis that both paths give
the same bytes wherever the fast one is taken.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import rfc8785

from warrantor.errors import ValidationError

try:
    import orjson
except ImportError:  # the SDK and verifier install: the standard library's encoder alone
    orjson = None  # type: ignore[assignment]

_MAX_SAFE_INTEGER = 2**53 - 1
_ENCODER = json.JSONEncoder(ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False)


class CanonicalizationError(ValidationError, ValueError):
    """A value JSON cannot carry exactly; as input, a 422 ``NOT_CANONICAL_JSON``."""

    code = "NOT_CANONICAL_JSON"


def canonicalize(value: Any) -> bytes:
    """RFC 8785 bytes of a JSON value (dict, list, str, int, float, bool, None).

    Raises ``CanonicalizationError`` (a ``ValueError``) for values JSON cannot carry
    exactly: NaN, integers beyond 2**53 - 1, lone surrogates, non-string keys.
    """
    if _plain(value):
        return _plain_bytes(value)
    try:
        return rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, TypeError, UnicodeError) as exc:
        raise CanonicalizationError(
            f"expected JSON that canonicalizes exactly (RFC 8785: integers within ±(2**53 - 1), "
            f"finite numbers, valid Unicode), got: {exc}"
        ) from exc


def _plain_bytes(value: Any) -> bytes:
    """The common case's bytes (module docstring); both encoders give the same."""
    if orjson is not None:
        try:
            return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
        except orjson.JSONEncodeError:  # nested deeper than orjson allows
            pass
    return _ENCODER.encode(value).encode("utf-8")


def _plain_str(text: str, *, key: bool) -> bool:
    if text.isascii():
        return True
    # Keys: UTF-16 order differs from code-point order only from U+E000 up (surrogate
    # pairs sort below U+E000..U+FFFF). Values: lone surrogates cannot be UTF-8 encoded.
    limit = "\ue000" if key else "\U0010ffff"
    return all(c < "\ud800" or ("\udfff" < c <= limit) for c in text)


def _plain(value: Any) -> bool:
    """True when ``json`` alone produces the RFC 8785 form of ``value``.

    Iterative, with the common types tested first: it walks every value the request path
    signs or hashes (several times per authorization), and the recursive form with a
    generator per container was about a fifth of the authorize path's own CPU."""
    stack = [value]
    pop, extend = stack.pop, stack.extend
    while stack:
        item = pop()
        kind = type(item)
        if kind is str:
            if not item.isascii() and not _plain_str(item, key=False):
                return False
        elif kind is dict:
            for key in item:
                if type(key) is not str or (not key.isascii() and not _plain_str(key, key=True)):
                    return False
            extend(item.values())
        elif kind is int:
            if not -_MAX_SAFE_INTEGER <= item <= _MAX_SAFE_INTEGER:
                return False
        elif kind is list or kind is tuple:
            extend(item)
        elif not (item is None or item is True or item is False):
            return False
    return True


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def digest(value: Any) -> str:
    """Hex sha256 of the canonical form of ``value``."""
    return sha256_hex(canonicalize(value))
