"""Finding the id of a JSON-RPC request too deep to parse: only the top level's scalar members,
never a nested value, whatever the strings and the nesting hold."""

from __future__ import annotations

import pytest

pytest.importorskip("mcp")

from warrantor.mcp_gateway.unreadable import top_level_members

DEEP = "[" * 100_000 + "]" * 100_000
ID_METHOD = frozenset({"id", "method"})


@pytest.mark.parametrize(("text", "found"), [
    ('{"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": ' + DEEP + "}",
     {"id": 7, "method": "tools/call"}),
    ('{"params": {"id": "inner", "x": ' + DEEP + '}, "method": "m", "id": "late"}',
     {"id": "late", "method": "m"}),  # an id inside params is not the request's
    ('{"method": "m", "note": "} ] \\" { [ \\\\", "id": -3}', {"id": -3, "method": "m"}),  # brackets in strings
    ('{"id": {"a": 1}, "method": ["m"]}', {}),  # nested values are never read
    ('{"method": "m", "id": 5, "params": {"a": [1, 2', {"id": 5, "method": "m"}),  # cut off after the id
    ('{"method": "m", "id": 5, "params": "unterminated' + '\\"' * 10_000, {"id": 5, "method": "m"}),
    ("not json at all", {}),
    ("[1, 2, 3]", {}),
], ids=["deep params", "id after params", "brackets in strings", "nested id", "truncated", "unterminated string",
        "not json", "an array"])
def test_top_level_members(text: str, found: dict[str, object]) -> None:
    assert top_level_members(text, ID_METHOD) == found
