"""Untrusted JSON text: checked for depth and NUL characters before anything parses it.

One rule for every way JSON enters Warrantor (HTTP bodies in the server's middleware, proof
and trust bundles in ``warrantor verify``, the console's verify page and ``/v1/verify``,
DSSE payloads): the text is scanned *before* a recursive parser or any recursive code sees
it, so nesting cannot exhaust a stack or a recursion limit anywhere downstream.

- :func:`check_depth` measures nesting on the raw text: string literals are cut out with
  one regular expression (linear: a string runs to its closing quote or to the end of the
  text, so an unterminated one is not retried from every quote inside it), every other
  byte but ``[ ] { }`` is deleted, and the deepest point is the largest running sum of
  +1 per opening and -1 per closing bracket (``itertools.accumulate``, in C; text with at
  most 64 brackets in all is passed at once). Deeper than ``MAX_JSON_DEPTH`` (64) is
  :class:`JsonTooDeepError` (``JSON_TOO_DEEP``, 422). For valid JSON the answer is exact;
  text that is not JSON is left to the parser to refuse.
- :func:`check_no_nul` refuses a ``\\u0000`` escape anywhere (a key or a value):
  :class:`NulCharacterError` (``NUL_CHARACTER``, 422). PostgreSQL cannot store U+0000 in
  text, SQLite can: refusing it at the door gives the same answer on both stores.
- :func:`loads` is ``json.loads`` after :func:`check_depth`.

Both errors are ``ValueError`` too, so parsers that report ``ValueError`` as "cannot read
this input" (the verify CLI, the verify page) report these the same way.
"""

from __future__ import annotations

import json
import re
from itertools import accumulate
from typing import Any

from warrantor.errors import ValidationError

MAX_JSON_DEPTH = 64

_STRING = re.compile(rb'"[^"\\]*(?:\\(?:.|\Z)[^"\\]*)*(?:"|\Z)', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_STEPS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")  # +1 / -1 as signed bytes
_NUL_ESCAPE = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")


class JsonTooDeepError(ValidationError, ValueError):
    code = "JSON_TOO_DEEP"
    title = "JSON nested too deeply"


class NulCharacterError(ValidationError, ValueError):
    code = "NUL_CHARACTER"
    title = "NUL character in a string"


def _bytes(text: str | bytes) -> bytes:
    return text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass")


def deeper_than(text: str | bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether JSON text nests arrays and objects more than ``limit`` levels deep."""
    raw = _bytes(text)
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return False  # not enough brackets to be deeper, inside strings or not
    skeleton = _STRING.sub(b"", raw).translate(_STEPS, _NOT_BRACKETS)
    return max(accumulate(memoryview(skeleton).cast("b")), default=0) > limit


def check_depth(text: str | bytes, what: str = "the JSON", limit: int = MAX_JSON_DEPTH) -> None:
    if deeper_than(text, limit):
        raise JsonTooDeepError(
            f"{what} is nested deeper than {limit} levels of arrays and objects",
            details={"max_depth": limit},
        )


def check_no_nul(text: str | bytes, what: str = "the JSON") -> None:
    raw = _bytes(text)
    if b"\\u0000" in raw and _NUL_ESCAPE.search(raw):
        raise NulCharacterError(
            f"{what} contains a NUL character (\\u0000) in a string; strings must not contain U+0000"
        )


def loads(text: str | bytes, what: str = "the JSON") -> Any:
    """``json.loads`` of untrusted text, refused first if nested deeper than the limit."""
    check_depth(text, what)
    return json.loads(text)
