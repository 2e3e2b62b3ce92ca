"""Row codecs shared by every ``repo_*`` module: JSON columns and UTC timestamps.

JSON is stored compact with sorted keys, so equal documents are equal text. SQLite hands
back naive datetimes; everything is stored in UTC, so naive means UTC.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import orjson


def dumps(value: Any) -> str:
    """Compact, sorted keys, UTF-8 as is: ``orjson`` writes it (the request path stores
    several documents per action), the standard library where orjson cannot (integers
    beyond 64 bits, nesting past 255 levels)."""
    try:
        return orjson.dumps(value, option=_ORJSON).decode("utf-8")
    except orjson.JSONEncodeError:
        return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


_ORJSON = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS


def loads(text: str | bytes) -> Any:
    """A JSON column back: ``orjson`` (several KB per action, read in the writer thread on
    every transition), the standard library for what orjson refuses and ``json`` reads
    (lone surrogates, integers beyond 64 bits)."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utc_required(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
