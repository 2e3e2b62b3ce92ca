"""The fast canonicalization path gives exactly the bytes of the ``rfc8785`` reference."""

from __future__ import annotations

from typing import Any

import rfc8785
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from warrantor.evidence import canonical
from warrantor.evidence.canonical import canonicalize

SAFE = 2**53 - 1
text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)  # no lone surrogates
scalars = st.none() | st.booleans() | st.integers(-SAFE, SAFE) | text
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(text, children, max_size=5),
    max_leaves=30,
)


@settings(max_examples=2000)
@given(json_values)
def test_fast_path_equals_the_reference(value: Any) -> None:
    assert canonicalize(value) == rfc8785.dumps(value)


@settings(max_examples=1000)
@given(json_values)
def test_the_standard_library_path_gives_the_same_bytes(value: Any) -> None:
    """The light install (no orjson) writes the same bytes as the server."""
    assume(canonical._plain(value))
    assert canonical._ENCODER.encode(value).encode("utf-8") == rfc8785.dumps(value)


def test_documents_deeper_than_orjson_allows_still_canonicalize() -> None:
    deep: Any = 1
    for _ in range(150):  # 300 levels: past orjson's 255, within Python's recursion limit
        deep = {"a": [deep]}
    assert canonicalize(deep) == rfc8785.dumps(deep)


@given(st.dictionaries(st.sampled_from(["a", "\uffff", "\U0001f600", "\ue000", "z", "\u00e9"]), st.integers(0, 9)))
def test_keys_that_sort_differently_in_utf16_take_the_reference_path(value: dict[str, int]) -> None:
    assert canonicalize(value) == rfc8785.dumps(value)


def test_the_fast_path_is_taken_for_ordinary_documents() -> None:
    assert canonical._plain({"a": [1, "é", None, True], "b": {"c": -5}})
    assert not canonical._plain({"x": 1.5})
    assert not canonical._plain({"\U0001f600": 1})
    assert not canonical._plain(2**60)


def test_values_json_cannot_carry_exactly_are_refused() -> None:
    for bad in (float("nan"), 2**60, {1: "non-string key"}):
        try:
            canonicalize(bad)
        except ValueError:
            continue
        raise AssertionError(f"{bad!r} was accepted")


def test_control_characters_and_escapes_match() -> None:
    value = {"s": "\u0000\u001f\b\f\n\r\t\"\\/\u007f\u2028"}
    assert canonicalize(value) == rfc8785.dumps(value)
