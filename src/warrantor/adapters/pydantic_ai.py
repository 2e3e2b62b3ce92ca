"""Warrantor for Pydantic AI: a toolset whose held calls are deferred tool calls.

    toolset = WarrantorToolset(FunctionToolset([send_payment]), gate=Gate(client, console_url=URL),
                               actions={"send_payment": PAYMENT})
    agent = Agent(model, toolsets=[toolset], output_type=[str, DeferredToolRequests])
    result = await agent.run("Pay invoice 42")
    while isinstance(result.output, DeferredToolRequests):     # held by Warrantor
        decided = await toolset.settle(result.output, timeout=300)
        result = await agent.run(message_history=result.all_messages(), deferred_tool_results=decided)

``WarrantorToolset`` wraps any toolset (``WrapperToolset``, like Pydantic AI's own
``ApprovalRequiredToolset``); every tool in it needs a ``ToolAction`` in ``actions``, by tool
name (a tool without one is refused, not run). For each call, in ``call_tool``:

1. Not yet approved: authorize. Allowed: run and notarize. Denied, or Warrantor cannot be
   reached: ``ToolFailed`` with Warrantor's reason and receipt, which the model sees; the tool
   does not run. Held: ``ApprovalRequired(metadata={"warrantor": {...}})``, so the run ends
   with ``DeferredToolRequests`` whose ``metadata[tool_call_id]["warrantor"]`` has the action
   id and console link.
2. Resumed with ``DeferredToolResults`` that approve the call: the approval the host passed
   is not the decision. The action id is the one this toolset created (in this process) or,
   after a restart, the one in the results' metadata; either way Warrantor is asked now, and
   the action must be this call's action type and payload (``override_args`` that change the
   payload are refused). Approved: run and notarize. Still held: deferred again. Denied or
   expired: ``ToolFailed``. A call the host denies (``ToolDenied``) never reaches the tool.
3. The result is returned as a ``ToolReturn`` whose ``metadata`` (kept in the message
   history, not sent to the model) carries ``{"warrantor": report}``: action id, receipt id,
   result digest. ``report(tool_call_id)`` returns it too. A tool that raises is notarized
   ``failed`` and its exception propagates as Pydantic AI handles it.

``settle(requests, timeout=...)`` waits for Warrantor's decision on each held call and builds
the ``DeferredToolResults`` (Pydantic AI needs a result for every deferred call): approved
calls as approvals with their Warrantor metadata, denied or expired ones as ``ToolDenied``
with Warrantor's reason, and calls still held as approvals too, which only means "ask
Warrantor again": the toolset finds them still held and defers them again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic_ai import RunContext
from pydantic_ai.exceptions import ApprovalRequired, ToolFailed
from pydantic_ai.messages import ToolReturn
from pydantic_ai.tools import DeferredToolRequests, DeferredToolResults, ToolDenied
from pydantic_ai.toolsets import WrapperToolset
from pydantic_ai.toolsets.abstract import ToolsetTool

from warrantor.adapters._core import Decision, Gate, Report, ToolAction, Verdict

__all__ = ["WarrantorToolset"]

META_KEY = "warrantor"


@dataclass
class WarrantorToolset(WrapperToolset[Any]):
    """Every call to the wrapped toolset's tools goes through Warrantor first."""

    gate: Gate = field(kw_only=True)
    actions: Mapping[str, ToolAction] = field(kw_only=True)
    _held: dict[str, str] = field(default_factory=dict, init=False, repr=False)
    _reports: dict[str, Report] = field(default_factory=dict, init=False, repr=False)

    async def call_tool(self, name: str, tool_args: dict[str, Any], ctx: RunContext[Any],
                        tool: ToolsetTool[Any]) -> Any:
        action = self.actions.get(name)
        if action is None:
            raise ToolFailed(f"{name} has no Warrantor action configured, so the call was not made.")
        call_id = ctx.tool_call_id or ""
        try:
            payload, details = action.intent(tool_args)
        except (KeyError, TypeError, ValueError) as exc:
            raise ToolFailed(f"The arguments do not fit {name}, so the call was not made: {exc}") from exc
        if ctx.tool_call_approved:
            decision = await self._resumed(call_id, action, payload, ctx.tool_call_metadata)
        else:
            decision = await self.gate.authorize(action, payload, details)
        if decision.held and decision.action_id:
            self._held[call_id] = decision.action_id
            raise ApprovalRequired(metadata={META_KEY: decision.as_dict()})
        if not decision.allowed or decision.action_id is None:
            raise ToolFailed(decision.message)
        self._held.pop(call_id, None)
        result, report = await self.gate.run(
            decision.action_id, action, payload, lambda: self.wrapped.call_tool(name, tool_args, ctx, tool))
        self._reports[call_id] = report
        if isinstance(result, ToolReturn):   # the tool's own metadata is kept; a dict gets ours added
            if result.metadata is None or isinstance(result.metadata, dict):
                result.metadata = {**(result.metadata or {}), META_KEY: report.as_dict()}
            return result
        return ToolReturn(return_value=result, metadata={META_KEY: report.as_dict()})

    def report(self, tool_call_id: str) -> Report | None:
        """The notarization of a call that ran (action id, receipt id, result digest)."""
        return self._reports.get(tool_call_id)

    async def settle(self, requests: DeferredToolRequests, *, timeout: float = 0.0) -> DeferredToolResults:
        """Warrantor's decisions on ``requests``' held calls, as the results to resume with."""
        results = DeferredToolResults()
        for call in requests.approvals:
            meta = (requests.metadata.get(call.tool_call_id) or {}).get(META_KEY) or {}
            action_id = self._held.get(call.tool_call_id) or meta.get("action_id")
            if not action_id:
                continue        # not one of Warrantor's holds: the host decides
            decision = await self.gate.await_decision(str(action_id), timeout)
            if decision.refused:
                results.approvals[call.tool_call_id] = ToolDenied(decision.message)
            else:   # approved, or still held: call_tool asks Warrantor either way
                results.approvals[call.tool_call_id] = True
                results.metadata[call.tool_call_id] = {META_KEY: {**meta, **decision.as_dict()}}
        return results

    async def _resumed(self, call_id: str, action: ToolAction, payload: dict[str, Any], metadata: Any) -> Decision:
        ours = self._held.get(call_id)
        given = ((metadata or {}).get(META_KEY) or {}).get("action_id") if isinstance(metadata, Mapping) else None
        if ours is not None and given is not None and given != ours:
            return _refusal(f"The approval names Warrantor action {given}, but {ours} holds this call, "
                            f"so the call was not made.", "ACTION_MISMATCH")
        action_id = ours or given
        if not action_id:
            return _refusal("An approval arrived for a call Warrantor never held, so the call was not made.",
                            "NOT_HELD")
        return await self.gate.verify(str(action_id), action, payload)


def _refusal(message: str, code: str) -> Decision:
    return Decision(Verdict.REFUSED, "invalid", message, code=code)
