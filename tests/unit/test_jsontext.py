"""The JSON depth and NUL checks read raw text exactly as a JSON parser would."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from warrantor.evidence import jsontext
from warrantor.evidence.jsontext import JsonTooDeepError, NulCharacterError, deeper_than


def _depth(value: Any) -> int:
    if isinstance(value, dict | list):
        children = value.values() if isinstance(value, dict) else value
        return 1 + max((_depth(c) for c in children), default=0)
    return 0


def _random_json(rng: random.Random, depth: int) -> Any:
    if depth == 0:
        return rng.choice(['[{"\\', '\\"]}', 1, None, "a\\\\[", "\u00e9{"])
    if rng.random() < 0.5:
        return [_random_json(rng, depth - 1) for _ in range(rng.randint(0, 3))]
    return {f"k{i}[{{": _random_json(rng, depth - 1) for i in range(rng.randint(0, 3))}


def test_depth_matches_the_parsed_value() -> None:
    rng = random.Random(8)
    for _ in range(500):
        value = _random_json(rng, rng.randint(0, 9))
        text = json.dumps(value, ensure_ascii=rng.random() < 0.5)
        for limit in range(9):
            assert deeper_than(text, limit) == (_depth(value) > limit), (text, limit)


@pytest.mark.parametrize("text", [
    '"' + '\\"' * 50_000,  # an unterminated string full of escaped quotes
    '"' + '\\"' * 50_000 + "\\",
    "[" * 70 + '"' + "]" * 70,
])
def test_text_that_is_not_json_is_left_to_the_parser(text: str) -> None:
    deeper_than(text)  # answers (without quadratic backtracking); json.loads refuses the text
    with pytest.raises(ValueError):
        json.loads(text)


def test_loads_refuses_deep_text_before_parsing() -> None:
    with pytest.raises(JsonTooDeepError) as info:
        jsontext.loads("[" * 100_000 + "]" * 100_000, "the bundle")
    assert info.value.code == "JSON_TOO_DEEP" and "the bundle" in info.value.message
    assert jsontext.loads("[" * 64 + "]" * 64) is not None


@pytest.mark.parametrize(("text", "nul"), [
    ('{"a": "x\\u0000"}', True),
    ('{"a\\u0000": 1}', True),
    ('{"a": "\\\\\\u0000"}', True),  # an escaped backslash, then a NUL escape
    ('{"a": "\\\\u0000"}', False),  # an escaped backslash, then the text u0000
    ('{"a": "\\u00001"}', True),
    ('{"a": "\\u0001"}', False),
])
def test_nul_escapes_are_found_exactly(text: str, nul: bool) -> None:
    parsed = json.loads(text)
    assert any("\u0000" in k or "\u0000" in str(v) for k, v in parsed.items()) == nul
    if nul:
        with pytest.raises(NulCharacterError):
            jsontext.check_no_nul(text)
    else:
        jsontext.check_no_nul(text)
