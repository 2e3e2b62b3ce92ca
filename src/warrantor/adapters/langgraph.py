"""Warrantor for LangGraph: a tool node whose held calls pause the graph with ``interrupt()``.

    node = WarrantorToolNode(Gate(client, console_url=WARRANTOR_URL), [(send_payment, PAYMENT)])
    builder.add_node("tools", node)                  # in place of langgraph.prebuilt.ToolNode
    graph = builder.compile(checkpointer=...)        # interrupts need a checkpointer
    out = await graph.ainvoke({"messages": [...]}, config)
    for held in out.get("__interrupt__", ()):        # {"warrantor": [{action_id, console_url, ...}]}
        ...                                          # an approver decides in the console
    out = await graph.ainvoke(Command(resume="decided"), config)

The node reads the tool calls of the last AI message in ``state["messages"]`` and answers
each with a ``ToolMessage`` (``artifact={"warrantor": ...}`` with the action id, and the
receipt id once it ran). For each call, in order:

1. Validate the arguments against the tool's schema, then authorize. With a checkpointer
   the ``Idempotency-Key`` is derived from the thread id, the task's checkpoint namespace
   and the tool call id, so the node's re-execution on resume gets the *same* action back
   (LangGraph re-runs a node from its start); the action's status is then read again.
2. While any call is held: ``interrupt({"warrantor": [...]})`` with every held call's
   action id, console link and arguments; no call of the node runs before none is held.
   On resume the value given in ``Command(resume=...)`` is ignored: each held action's
   state is read from Warrantor again (and must still be this call's action type and
   payload). Still held: the node interrupts again.
3. Run the cleared calls and notarize each (``completed`` with the result digest, or
   ``failed`` with the exception's class name); refused calls get an error ``ToolMessage``
   with Warrantor's reason and receipt, and never run.

A call whose action has already ended (a node re-executed after its tools ran, say, or a
thread forked from an old checkpoint) is not run again: its message says so.

The node is async: run the graph with ``ainvoke`` / ``astream``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.tools import BaseTool
from langgraph.config import get_config
from langgraph.types import interrupt
from pydantic import BaseModel, ValidationError

from warrantor.adapters._core import Decision, Gate, Report, ToolAction, Verdict, jsonable

__all__ = ["WarrantorToolNode"]


@dataclass
class _Call:
    id: str
    tool: BaseTool | None
    action: ToolAction | None
    args: dict[str, Any]
    payload: dict[str, Any]
    decision: Decision

    def held_view(self) -> dict[str, Any]:
        return {"tool_call_id": self.id, "tool": self.tool.name if self.tool else None, "args": self.args,
                **self.decision.as_dict()}


class WarrantorToolNode:
    """A LangGraph node running the last AI message's tool calls through Warrantor."""

    def __init__(self, gate: Gate, tools: Sequence[tuple[BaseTool, ToolAction]], *,
                 messages_key: str = "messages") -> None:
        self.gate = gate
        self.messages_key = messages_key
        self._tools = {tool.name: (tool, action) for tool, action in tools}

    async def __call__(self, state: Mapping[str, Any]) -> dict[str, list[ToolMessage]]:
        calls = [await self._authorize(call) for call in _tool_calls(state, self.messages_key)]
        while held := [c for c in calls if c.decision.held]:
            interrupt({"warrantor": [c.held_view() for c in held]})  # the resume value is not a decision
            for c in held:
                assert c.action is not None
                c.decision = await self.gate.verify(c.decision.action_id or "", c.action, c.payload)
        return {self.messages_key: [await self._answer(c) for c in calls]}

    async def _authorize(self, call: Mapping[str, Any]) -> _Call:
        call_id, name, args = str(call.get("id") or ""), str(call.get("name")), dict(call.get("args") or {})
        tool, action = self._tools.get(name, (None, None))
        if tool is None or action is None:
            return _Call(call_id, None, None, args, {}, _refusal(f"There is no tool named {name!r}.", "UNKNOWN_TOOL"))
        try:
            schema = tool.get_input_schema()
            if issubclass(schema, BaseModel):
                schema.model_validate(args)
            payload, details = action.intent(args)
        except (ValidationError, KeyError, TypeError, ValueError) as exc:
            return _Call(call_id, tool, action, args, {}, _refusal(
                f"The arguments do not fit {name}, so the call was not made: {exc}", "INVALID_ARGUMENTS"))
        decision = await self.gate.authorize(action, payload, details, idempotency_key=_idempotency_key(call_id))
        return _Call(call_id, tool, action, args, payload, decision)

    async def _answer(self, call: _Call) -> ToolMessage:
        if not call.decision.allowed or call.tool is None or call.action is None:
            return ToolMessage(call.decision.message, tool_call_id=call.id, status="error",
                               artifact={"warrantor": call.decision.as_dict()})
        tool = call.tool
        report: Report | None = None
        try:
            result, report = await self.gate.run(
                call.decision.action_id or "", call.action, call.payload, lambda: tool.ainvoke(call.args))
        except Exception as exc:
            return ToolMessage(
                f"{tool.name} failed ({type(exc).__name__}); Warrantor recorded action {call.decision.action_id} "
                f"as failed.", tool_call_id=call.id, status="error",
                artifact={"warrantor": {"action_id": call.decision.action_id, "outcome": "failed"}})
        return ToolMessage(_content(result), tool_call_id=call.id, name=tool.name,
                           artifact={"warrantor": report.as_dict()})


def _tool_calls(state: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    messages = state.get(key) or []
    for message in reversed(messages):
        if isinstance(message, AIMessage):
            return list(message.tool_calls)
    return []


def _idempotency_key(tool_call_id: str) -> str | None:
    """Stable across the node's re-executions in one thread; None without a checkpointer."""
    configurable = get_config().get("configurable") or {}
    thread = configurable.get("thread_id")
    if thread is None or not tool_call_id:
        return None
    namespace = configurable.get("checkpoint_ns", "")
    seed = json.dumps([str(thread), str(namespace), tool_call_id])
    return "langgraph_" + hashlib.sha256(seed.encode()).hexdigest()


def _refusal(message: str, code: str) -> Decision:
    return Decision(Verdict.REFUSED, "invalid", message, code=code)


def _content(result: Any) -> str:
    if isinstance(result, str):
        return result
    try:
        return json.dumps(jsonable(result))
    except (TypeError, ValueError):
        return str(result)
