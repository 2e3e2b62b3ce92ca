"""Warrantor for the OpenAI Agents SDK (``openai-agents``): function tools whose calls are
authorized, held, run and notarized through the SDK's own tool hooks.

    tools = WarrantorTools(Gate(client, console_url=WARRANTOR_URL))
    pay = tools.tool(send_payment, ToolAction("wire_transfer", payload=lambda a: {...}))
    agent = Agent(name="payments", tools=[pay], model=...)
    result = await Runner.run(agent, "Pay invoice 42")
    while result.interruptions:                  # held by Warrantor: the SDK's approval interruption
        state = result.to_state()
        await tools.settle(state, timeout=300)   # approve / reject as Warrantor decided
        result = await Runner.run(agent, state)

Each call goes through four SDK hooks, in the SDK's order:

1. ``needs_approval`` (called with the parsed arguments): validate them against the tool's
   schema, then authorize with Warrantor. Held: ``True``, so the run stops with a
   ``ToolApprovalItem`` in ``result.interruptions`` (``decision(item)`` gives the action id
   and console link). Allowed or refused: ``False``.
2. The tool input guardrail: allows the call only if Warrantor says it is cleared *now*
   (``authorized``, or ``approved`` after a hold), whatever ``RunState.approve`` said;
   otherwise it rejects the call with a message the model sees (``reject_content``): the
   policy's denial with its receipt, a human's denial, "still held", or Warrantor
   unreachable.
3. The tool itself (``on_invoke_tool``): runs only for a call the guardrail cleared in this
   process, with the same arguments that were authorized. An exception is notarized
   ``failed`` (class name only) and the model sees an error message; cancellation is
   notarized ``unknown`` and propagates.
4. The tool output guardrail: notarizes ``completed`` with the ``executed`` block and the
   result digest; its ``output_info`` (in ``result.tool_output_guardrail_results``) and
   ``report(call_id)`` carry the action id and receipt id.

``settle(state)`` waits (up to ``timeout``) for Warrantor's decision on each held call of
the state and applies it: ``state.approve(item)`` when approved, ``state.reject(item,
rejection_message=...)`` when denied or expired; calls still pending, or whose state
Warrantor could not report, stay interrupted.
Approving an item without Warrantor does not run it: the input guardrail asks Warrantor.

Per-call state lives in this object, in this process: resume a run with the same
``WarrantorTools`` that started it (a call resumed elsewhere is rejected, not run).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agents import (
    FunctionTool,
    RunContextWrapper,
    RunState,
    ToolApprovalItem,
    ToolGuardrailFunctionOutput,
    ToolInputGuardrail,
    ToolInputGuardrailData,
    ToolOutputGuardrail,
    ToolOutputGuardrailData,
)
from agents.function_schema import FuncSchema, function_schema
from agents.tool_context import ToolContext
from pydantic import ValidationError

from warrantor.adapters._core import (
    Decision,
    Gate,
    Report,
    ToolAction,
    Verdict,
    call_tool_function,
)
from warrantor.client._guard import now_rfc3339

__all__ = ["WarrantorTools"]


@dataclass
class _Call:
    """One tool call between the SDK's hooks."""

    tool: str
    action: ToolAction
    args: dict[str, Any]
    payload: dict[str, Any]
    decision: Decision
    cleared: bool = False
    started_at: str | None = None
    ran: bool = False
    report: Report | None = None


class WarrantorTools:
    """Makes Warrantor-gated ``FunctionTool``s and settles their approval interruptions."""

    def __init__(self, gate: Gate) -> None:
        self.gate = gate
        self._calls: dict[str, _Call] = {}

    # -- for the host ------------------------------------------------------------------

    def tool(
        self, fn: Callable[..., Any], action: ToolAction, *, name: str | None = None,
        description: str | None = None,
    ) -> FunctionTool:
        """A ``FunctionTool`` for ``fn`` (sync or async; its signature is the tool's schema)."""
        schema = function_schema(fn, name_override=name, description_override=description)

        async def needs_approval(_ctx: RunContextWrapper[Any], params: dict[str, Any], call_id: str) -> bool:
            return await self._authorize(schema, action, params, call_id)

        async def on_invoke(ctx: ToolContext[Any], arguments: str) -> Any:
            return await self._invoke(fn, schema, ctx, arguments)

        return FunctionTool(
            name=schema.name,
            description=schema.description or "",
            params_json_schema=schema.params_json_schema,
            on_invoke_tool=on_invoke,
            strict_json_schema=schema.strict_json_schema,
            needs_approval=needs_approval,
            tool_input_guardrails=[ToolInputGuardrail(self._check, name="warrantor_authorization")],
            tool_output_guardrails=[ToolOutputGuardrail(self._notarize, name="warrantor_notarize")],
        )

    def decision(self, interruption: ToolApprovalItem) -> Decision | None:
        """Warrantor's decision behind an approval interruption (action id, console link),
        or None when the interruption is not one of this object's calls."""
        call = self._calls.get(interruption.call_id or "")
        return call.decision if call is not None and call.tool == interruption.tool_name else None

    def report(self, call_id: str) -> Report | None:
        """The notarization of a call that ran (receipt id), once the output guardrail ran."""
        call = self._calls.get(call_id)
        return call.report if call is not None else None

    async def settle(self, state: RunState[Any], *, timeout: float = 0.0) -> list[Decision]:
        """Apply Warrantor's decisions to ``state``'s held calls, waiting up to ``timeout``
        seconds for each; returns them in order. Other interruptions are left alone."""
        decisions = []
        for item in state.get_interruptions():
            call = self._calls.get(item.call_id or "")
            if call is None or call.tool != item.tool_name or call.decision.action_id is None:
                continue
            decision = call.decision
            if decision.held:
                decision = await self.gate.await_decision(decision.action_id or "", timeout)
            if decision.status == "unavailable":
                decisions.append(decision)      # Warrantor did not answer: the call stays held
                continue
            call.decision = decision
            if decision.allowed:
                state.approve(item)
            elif decision.refused:
                state.reject(item, rejection_message=decision.message)
            decisions.append(decision)
        return decisions

    # -- the SDK's hooks ---------------------------------------------------------------

    async def _authorize(self, schema: FuncSchema, action: ToolAction, params: dict[str, Any], call_id: str) -> bool:
        known = self._calls.get(call_id)
        if known is not None and known.tool == schema.name and known.args == params and known.decision.held:
            # Re-evaluated on resume while still unresolved in the SDK: ask Warrantor again.
            known.decision = await self.gate.current(known.decision.action_id or "")
            return known.decision.held
        try:
            schema.params_pydantic_model(**params)
            payload, details = action.intent(params)
        except (ValidationError, KeyError, TypeError, ValueError) as exc:
            decision = Decision(Verdict.REFUSED, "invalid", f"The arguments do not fit {schema.name}, so the call "
                                f"was not made: {exc}", code="INVALID_ARGUMENTS")
            self._calls[call_id] = _Call(schema.name, action, dict(params), {}, decision)
            return False
        decision = await self.gate.authorize(action, payload, details)
        self._calls[call_id] = _Call(schema.name, action, dict(params), payload, decision)
        return decision.held

    async def _check(self, data: ToolInputGuardrailData) -> ToolGuardrailFunctionOutput:
        ctx = data.context
        call = self._calls.get(ctx.tool_call_id)
        if call is None or call.tool != ctx.tool_name:
            return ToolGuardrailFunctionOutput.reject_content(
                "Warrantor has no authorization for this call in this process, so it was not made.")
        if _parse(ctx.tool_arguments) != call.args:
            return ToolGuardrailFunctionOutput.reject_content(
                "The call's arguments changed after Warrantor authorized it, so it was not made.")
        if call.decision.held or (call.decision.allowed and call.decision.status != "authorized"):
            # Held, and the SDK says approved: only Warrantor's word counts.
            call.decision = await self.gate.verify(call.decision.action_id or "", call.action, call.payload)
        if not call.decision.allowed:
            return ToolGuardrailFunctionOutput.reject_content(call.decision.message, call.decision.as_dict())
        call.cleared = True
        return ToolGuardrailFunctionOutput.allow(call.decision.as_dict())

    async def _invoke(self, fn: Callable[..., Any], schema: FuncSchema, ctx: ToolContext[Any], arguments: str) -> Any:
        call = self._calls.get(ctx.tool_call_id)
        if call is None or not call.cleared or call.ran or call.decision.action_id is None:
            return "Warrantor has not cleared this call, so it was not made."
        call.cleared = False
        args = _parse(arguments)
        if args != call.args:
            return "The call's arguments changed after Warrantor authorized it, so it was not made."
        positional, keywords = schema.to_call_args(schema.params_pydantic_model(**args))
        if schema.takes_context:
            positional = [ctx, *positional]
        call.started_at = now_rfc3339()
        call.ran = True
        try:
            return await call_tool_function(fn, *positional, **keywords)
        except asyncio.CancelledError as exc:
            call.report = await self.gate.report_unknown(call.decision.action_id, exc)
            raise
        except Exception as exc:
            call.report = await self.gate.report_failed(call.decision.action_id, exc)
            return (f"{schema.name} failed ({type(exc).__name__}); Warrantor recorded action "
                    f"{call.decision.action_id} as failed.")

    async def _notarize(self, data: ToolOutputGuardrailData) -> ToolGuardrailFunctionOutput:
        call = self._calls.get(data.context.tool_call_id)
        if call is None or not call.ran or call.decision.action_id is None:
            return ToolGuardrailFunctionOutput.allow()
        if call.report is None:
            call.report = await self.gate.report_completed(
                call.decision.action_id, call.action.action_type, call.payload, call.started_at or now_rfc3339(),
                data.output,
            )
        return ToolGuardrailFunctionOutput.allow({"warrantor": call.report.as_dict()})


def _parse(arguments: str) -> Any:
    try:
        return json.loads(arguments or "{}")
    except ValueError:
        return None
