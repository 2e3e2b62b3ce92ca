"""Tools that would shadow one another (one exposed name, or one action type) are all refused
at listing time, each with its reason, and logged; the others are exposed."""

from __future__ import annotations

import logging
from types import MappingProxyType

import pytest

pytest.importorskip("mcp")

import mcp_types as types

from warrantor.mcp_gateway.config import Upstream
from warrantor.mcp_gateway.upstreams import ExposedTool, refuse_duplicates

A = Upstream("a", command=("x",))
B = Upstream("b", command=("x",))


def exposed(upstream: Upstream, tool: str, name: str | None = None) -> ExposedTool:
    return ExposedTool(name or tool, upstream, types.Tool(name=tool, input_schema={"type": "object"}))


def test_unique_tools_are_all_exposed() -> None:
    tools = [exposed(A, "pay"), exposed(A, "mail")]
    assert refuse_duplicates(tools) == (tools, {})


def test_one_exposed_name_twice_refuses_both(caplog: pytest.LogCaptureFixture) -> None:
    """An upstream that lists a tool twice (say on two pages): which one a call would reach
    is not the gateway's to guess."""
    first, second, other = exposed(A, "pay"), exposed(A, "pay"), exposed(A, "mail")
    with caplog.at_level(logging.ERROR):
        kept, refused = refuse_duplicates([first, second, other])
    assert kept == [other]
    assert refused == {"pay": "the exposed name 'pay' belongs to more than one upstream tool (a/pay, a/pay)"}
    assert "refusing to expose pay" in caplog.text


def test_one_action_type_twice_refuses_both() -> None:
    """The config maps delete_file to the action type send_email has by default: delete_file
    would be authorized under send_email's policy."""
    mapped = Upstream("a", command=("x",), action_types=MappingProxyType({"delete_file": "mcp.a.send_email"}))
    mail, delete, pay = exposed(mapped, "send_email"), exposed(mapped, "delete_file"), exposed(B, "pay", "b__pay")
    kept, refused = refuse_duplicates([mail, delete, pay])
    assert kept == [pay]
    assert set(refused) == {"send_email", "delete_file"}
    assert "action type 'mcp.a.send_email'" in refused["delete_file"] and "a/delete_file" in refused["send_email"]
