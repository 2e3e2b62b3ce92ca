"""What the gateway does with one ``tools/list`` or ``tools/call``, independent of transport.

``tools/call`` is a Warrantor action, in this order:

1. The tool must exist upstream without clashing with another (``upstreams``), the
   arguments must nest at most 64 levels (checked before anything recursive reads them) and
   match its declared input schema; otherwise a tool error, and nothing is authorized or sent.
2. Authorize ``upstream.action_type(tool)`` with the arguments as the payload. The agent is
   the one the gateway's key is bound to; nothing in the call can name another.
3. Denied (or any refusal from Warrantor, or Warrantor unreachable): a tool error naming
   the rule and the receipt; the upstream never sees the call.
4. Held for a human: the client is shown the held action's console page (URL-mode
   elicitation, where the client supports it), then the call waits up to
   ``approval.wait_seconds`` for the decision. Still pending: a tool error that says so, with
   the link and the action id. Calling again with the *same* arguments continues the same
   action (the approval binds to the intent digest, i.e. to these exact arguments), for as
   long as the gateway remembers it (``held``: bounded); other arguments are a new action.
   The link never carries an approval code: the client is the agent's side, and the page
   asks the approver to log in.
   Held for the end user's confirmation (a grant's ``confirm`` scope): a client with
   form-mode elicitation is asked to confirm, and its answer is relayed to Warrantor as
   *presence only* (recorded ``via: "mcp-elicitation"``); other clients get a pending result,
   and the app's own confirmation stays the strong path.
5. Allowed or approved: the gateway forwards the call, then notarizes it itself as
   ``witnessed`` evidence, with digests of the request it sent and the reply it got. A tool
   error is ``failed``; a refusal by the upstream is ``failed``; a timeout, a broken
   connection or an unreadable reply is ``unknown`` (the action becomes ``uncertain``: the
   side effect may have happened).

The client gets the upstream's result, with ``_meta["io.warrantor/evidence"]`` naming the
action, its status and the receipt.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import jsonschema
import mcp_types as types

from warrantor.client import ActionDetail, AsyncClient, TransportError
from warrantor.errors import ActionDeniedError, WarrantorError
from warrantor.evidence.canonical import digest
from warrantor.evidence.jsontext import MAX_JSON_DEPTH
from warrantor.mcp_gateway.config import GatewayConfig
from warrantor.mcp_gateway.held import HeldCall, HeldCalls
from warrantor.mcp_gateway.upstreams import CallOutcome, ExposedTool, Upstreams
from warrantor.policy._scan import json_depth

log = logging.getLogger(__name__)

META_KEY = "io.warrantor/evidence"
APPROVAL_META_KEY = "io.warrantor/approval"
APPROVAL_INPUT = "warrantor_approval"
EXECUTOR = "warrantor-mcp-gateway"
PENDING = frozenset({"pending_approval", "pending_confirmation"})
CONFIRM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"confirm": {"type": "boolean", "title": "Confirm", "description": "Let this call run"}},
    "required": ["confirm"],
}
MAX_DETAILS = 2000


@dataclass
class Interaction:
    """What the client can do while a call is held, as the transport found out.

    ``mode``: ``elicit`` (the server may send an ``elicitation/create`` request: handshake-era
    sessions with URL elicitation), ``input_required`` (2026-07-28 clients with URL
    elicitation: the tool answers ``InputRequiredResult`` and the client calls again with the
    responses), ``none`` (the client gets a pending tool result with the link).
    """

    mode: Literal["elicit", "input_required", "none"] = "none"
    url: bool = False  # the client declared URL-mode elicitation
    form: bool = False  # the client declared form-mode elicitation
    responses: Mapping[str, Any] | None = None  # input_required: the client's answers on this call
    elicit_url: Callable[[str, str, str], Awaitable[str]] | None = None  # (message, url, id) -> action
    elicit_form: Callable[[str, dict[str, Any]], Awaitable[types.ElicitResult]] | None = None

    @property
    def responded(self) -> bool:
        return bool(self.responses) and APPROVAL_INPUT in (self.responses or {})


class Gateway:
    def __init__(self, config: GatewayConfig, upstreams: Upstreams, warrantor: AsyncClient) -> None:
        self._config = config
        self._upstreams = upstreams
        self._wr = warrantor
        self._tools: dict[str, ExposedTool] = {}
        self._validators: dict[str, Any] = {}
        # (tool, arguments digest) -> the held action those exact arguments continue
        self._held = HeldCalls(config.max_held_calls)
        # one lock per (tool, arguments digest) while calls use it: [lock, callers]
        self._locks: dict[tuple[str, str], list[Any]] = {}

    # -- tools/list ---------------------------------------------------------------------
    async def list_tools(self) -> list[types.Tool]:
        """Upstream tools minus those the active policy denies outright for this agent;
        those that may need approval say so in ``_meta`` and their description."""
        tools = await self._refresh()
        outlooks = await self._wr.policy_outlook(sorted({t.action_type for t in tools}))
        listed = []
        for exposed in tools:
            outlook = outlooks.get(exposed.action_type)
            if outlook is None:
                raise WarrantorError(f"the policy outlook has no entry for {exposed.action_type!r}",
                                     code="OUTLOOK_INCOMPLETE")
            if outlook["effect"] == "deny" and outlook["certain"]:
                continue
            listed.append(self._present(exposed, outlook))
        return listed

    def _present(self, exposed: ExposedTool, outlook: Mapping[str, Any]) -> types.Tool:
        tool = exposed.tool.model_copy(update={"name": exposed.name})
        approval = ("always" if outlook["effect"] == "require_approval"
                    else "sometimes" if "require_approval" in outlook["possible"] else None)
        meta = {**(tool.meta or {}), APPROVAL_META_KEY: {"action_type": exposed.action_type, "approval": approval}}
        description = tool.description or ""
        if approval is not None:
            note = ("Every call needs a human's approval." if approval == "always"
                    else "Some calls need a human's approval.")
            description = f"{description}\n\n[Warrantor] {note}".strip()
        return tool.model_copy(update={"meta": meta, "description": description})

    async def _refresh(self) -> list[ExposedTool]:
        tools = await self._upstreams.tools()
        self._tools = {t.name: t for t in tools}
        return tools

    # -- tools/call ---------------------------------------------------------------------
    async def call_tool(
        self, name: str, arguments: Mapping[str, Any] | None, interaction: Interaction,
    ) -> types.CallToolResult | types.InputRequiredResult:
        tool = self._tools.get(name)
        if tool is None:
            await self._refresh()
            tool = self._tools.get(name)
        if tool is None:
            refused = self._upstreams.refused.get(name)
            return _error(f"Unknown tool {name!r}." if refused is None else
                          f"The gateway refuses the tool {name!r}: {refused}.", None)
        args = dict(arguments or {})
        if json_depth(args, MAX_JSON_DEPTH) > MAX_JSON_DEPTH:  # before any recursive check sees them
            return _error(f"The arguments are nested deeper than {MAX_JSON_DEPTH} levels of arrays and objects, "
                          f"more than Warrantor accepts; nothing was authorized or sent.", None)
        if (problem := self._check_arguments(tool, args)) is not None:
            return _error(problem, None)
        try:  # the arguments must be JSON Warrantor can sign: no integers beyond 2**53, no lone surrogates
            key = (tool.name, digest(args))
        except (ValueError, RecursionError) as exc:
            return _error(f"The arguments cannot be authorized: {exc}", None)
        entry = self._locks.setdefault(key, [asyncio.Lock(), 0])
        entry[1] += 1
        try:
            async with entry[0]:  # identical calls take turns: one held action, never two
                return await self._call_locked(tool, args, key, interaction)
        finally:
            entry[1] -= 1
            if entry[1] == 0 and self._locks.get(key) is entry:
                del self._locks[key]

    async def _call_locked(
        self, tool: ExposedTool, args: dict[str, Any], key: tuple[str, str], interaction: Interaction,
    ) -> types.CallToolResult | types.InputRequiredResult:
        held = self._held.get(key)
        if held is None:
            started = await self._start(tool, args, key)
            if not isinstance(started, HeldCall):
                return started
            held = started
        if held.nonce is not None:
            return await self._confirm_call(tool, args, key, held, interaction)
        return await self._held_call(tool, args, key, held, interaction)

    async def _start(
        self, tool: ExposedTool, args: dict[str, Any], key: tuple[str, str],
    ) -> types.CallToolResult | HeldCall:
        """Authorize a new call: its final result (denied, refused, executed) or the held
        action it continues as."""
        grant: dict[str, Any] = {}
        rule = tool.upstream.scopes.get(tool.tool.name)
        if rule is not None:
            resource = rule.resource_for(args)
            if resource is None:
                return _error(f"The arguments lack what the resource {rule.resource!r} of scope "
                              f"{rule.scope!r} needs.", None)
            grant = {"authorization_id": self._config.authorization_id, "scope": rule.scope, "resource": resource}
        try:
            auth = await self._wr.authorize(
                tool.action_type, details=f"MCP tools/call {tool.upstream.name}/{tool.tool.name}",
                payload=args, **grant,
            )
        except ActionDeniedError as exc:
            return _denied(exc)
        except TransportError as exc:
            return _error(f"Warrantor could not be reached, so the call was not made: {exc.message}", None)
        except WarrantorError as exc:
            return _error(f"Warrantor refused the call ({exc.code}): {exc.message}", None)
        if auth.status == "authorized":
            return await self._execute(tool, args, auth.action_id)
        confirmation = auth.confirmation if auth.status == "pending_confirmation" else None
        nonce = str(confirmation["confirm_nonce"]) if confirmation else None
        return self._held.hold(key, auth.action_id, (confirmation or auth.approval or {}).get("expires_at"), nonce)

    async def _confirm_call(
        self, tool: ExposedTool, args: dict[str, Any], key: tuple[str, str], held: HeldCall,
        interaction: Interaction,
    ) -> types.CallToolResult | types.InputRequiredResult:
        """The end user's confirmation through a form elicitation: presence only."""
        action_id, nonce = held.action_id, held.nonce
        assert nonce is not None  # only a call held for confirmation comes here
        message = (f"Confirm this call to {tool.name}? Arguments: {_short(args)}. "
                   f"(Warrantor records your answer as given through this client.)")
        answer: Any = None
        if interaction.form and interaction.mode == "input_required":
            if not interaction.responded:
                return types.InputRequiredResult(
                    input_requests={APPROVAL_INPUT: types.ElicitRequest(params=types.ElicitRequestFormParams(
                        message=message, requested_schema=CONFIRM_SCHEMA))},
                    request_state=action_id,
                )
            answer = (interaction.responses or {}).get(APPROVAL_INPUT)
        elif interaction.form and interaction.elicit_form is not None and not held.elicited:
            held.elicited = True
            try:  # bounded: a client that never answers must not hold the call forever
                answer = await asyncio.wait_for(interaction.elicit_form(message, CONFIRM_SCHEMA),
                                                self._config.approval_wait_seconds)
            except Exception as exc:  # the client could not ask; the pending result says what to do
                log.info("form elicitation for %s failed: %r", action_id, exc)
        verdict = _confirmation(answer)
        if verdict is not None:
            try:
                await self._wr.confirm(nonce, verdict)
            except WarrantorError as exc:
                log.info("relaying the confirmation of %s failed: %s", action_id, exc)
        try:
            detail = await self._wr.wait_for_decision(
                action_id, timeout=self._config.approval_wait_seconds if verdict is None else 5.0)
        except WarrantorError as exc:
            return _error(f"Warrantor could not report on held action {action_id} ({exc.code}); "
                          f"call again with the same arguments to continue.", {"action_id": action_id})
        if detail.status in PENDING:
            return _error(f"This call needs the end user's confirmation (action {action_id}); it was not "
                          f"given here. Call again with the same arguments once the user has confirmed in the app.",
                          {"action_id": action_id, "status": detail.status})
        self._held.forget(key)
        if detail.status == "approved":
            return await self._execute(tool, args, action_id)
        return _ended(detail)

    async def _held_call(
        self, tool: ExposedTool, args: dict[str, Any], key: tuple[str, str], held: HeldCall,
        interaction: Interaction,
    ) -> types.CallToolResult | types.InputRequiredResult:
        action_id = held.action_id
        url = f"{self._config.console_url}/console/actions/{action_id}"
        message = (f"Warrantor is holding this call to {tool.name} for a human's approval. "
                   f"An approver can decide at {url} (approvers log in with their own account).")
        if interaction.url and interaction.mode == "input_required" and not interaction.responded:
            return types.InputRequiredResult(
                input_requests={APPROVAL_INPUT: types.ElicitRequest(
                    params=types.ElicitRequestURLParams(message=message, url=url))},
                request_state=action_id,
            )
        wait = self._config.approval_wait_seconds
        if interaction.url and interaction.elicit_url is not None and not held.elicited:
            held.elicited = True
            started = time.monotonic()
            try:  # the approver may decide while the client shows the page; a client that never
                # answers must not hold the call longer than the wait for a decision would
                await asyncio.wait_for(interaction.elicit_url(message, url, action_id), wait)
            except Exception as exc:  # the client could not show it; the pending result still has the link
                log.info("URL elicitation for %s failed: %r", action_id, exc)
            wait = max(0.0, wait - (time.monotonic() - started))
        try:
            detail = await self._wr.wait_for_decision(action_id, timeout=wait)
        except WarrantorError as exc:
            return _error(f"Warrantor could not report on held action {action_id} ({exc.code}); "
                          f"call again with the same arguments to continue.", {"action_id": action_id})
        if detail.status in PENDING:
            return _pending(detail, url)
        self._held.forget(key)
        if detail.status == "approved":
            return await self._execute(tool, args, action_id)
        return _ended(detail)

    async def _execute(self, tool: ExposedTool, args: dict[str, Any], action_id: str) -> types.CallToolResult:
        request_digest = "sha256:" + digest({"name": tool.tool.name, "arguments": args})
        executed_at = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        call = await self._upstreams.call(tool, args)
        if call.outcome == CallOutcome.COMPLETED:
            assert call.result is not None
            seen: Any = call.result.model_dump(mode="json", by_alias=True, exclude_none=True)
            outcome = "failed" if call.result.is_error else "completed"
            details = _text(call.result)[:MAX_DETAILS] if call.result.is_error else None
        else:
            seen = {"gateway_error": call.error}
            outcome = "failed" if call.outcome == CallOutcome.REFUSED else "unknown"
            details = (call.error or "")[:MAX_DETAILS]
        evidence: dict[str, Any] = {"action_id": action_id}
        try:
            result = await self._wr.notarize(
                action_id, outcome, outcome_details=details,
                executed={"action_type": tool.action_type, "payload": args, "executed_at": executed_at,
                          "executed_by": EXECUTOR},
                evidence_grade="witnessed",
                witness={"request_sha256": request_digest, "response_sha256": "sha256:" + digest(seen),
                         "executor": EXECUTOR, "target": f"mcp:{tool.upstream.name}/{tool.tool.name}"},
            )
            evidence |= {"status": result.status, "evidence_grade": result.evidence_grade,
                         "receipt_id": (result.receipt or {}).get("receipt_id")}
        except WarrantorError as exc:
            # The call ran; only its record failed. Say so rather than hide the result.
            log.error("notarizing %s failed after the upstream call: %s", action_id, exc)
            evidence |= {"status": "not_notarized", "error": exc.code}
        if call.outcome == CallOutcome.COMPLETED:
            assert call.result is not None
            return call.result.model_copy(update={"meta": {**(call.result.meta or {}), META_KEY: evidence}})
        if call.outcome == CallOutcome.REFUSED:
            return _error(f"The upstream server refused the call: {call.error}", evidence)
        return _error(f"The call to {tool.name} did not complete and may or may not have run: {call.error}. "
                      f"Warrantor records action {action_id} as uncertain.", evidence)

    def _check_arguments(self, tool: ExposedTool, args: dict[str, Any]) -> str | None:
        validator = self._validators.get(tool.name)
        schema = tool.tool.input_schema
        if validator is None or validator.schema is not schema:
            cls = jsonschema.validators.validator_for(schema)
            try:
                cls.check_schema(schema)
            except jsonschema.SchemaError as exc:
                return f"The upstream tool {tool.name} declares an invalid input schema: {exc.message}"
            validator = cls(schema)
            self._validators[tool.name] = validator
        error = jsonschema.exceptions.best_match(validator.iter_errors(args))
        if error is None:
            return None
        where = "/".join(str(p) for p in error.absolute_path) or "(arguments)"
        return f"The arguments do not match {tool.name}'s input schema at {where}: {error.message}"


def _confirmation(answer: Any) -> bool | None:
    """True/False from an accepted or declined form answer; None when there is no answer."""
    if not isinstance(answer, types.ElicitResult):
        return None
    if answer.action == "decline":
        return False
    if answer.action == "accept" and answer.content is not None:
        value = answer.content.get("confirm")
        if isinstance(value, bool):
            return value
    return None


def _short(args: dict[str, Any], limit: int = 300) -> str:
    import json

    text = json.dumps(args, sort_keys=True, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _text(result: types.CallToolResult) -> str:
    return "\n".join(block.text for block in result.content if isinstance(block, types.TextContent))


def _error(text: str, evidence: dict[str, Any] | None) -> types.CallToolResult:
    result = types.CallToolResult(content=[types.TextContent(type="text", text=text)], is_error=True)
    return result.model_copy(update={"meta": {META_KEY: evidence}}) if evidence else result


def _denied(exc: ActionDeniedError) -> types.CallToolResult:
    details = exc.details or {}
    rules = ", ".join(str(r.get("id", r)) if isinstance(r, dict) else str(r) for r in details.get("rules") or [])
    reason = details.get("reason") or exc.code
    text = f"Denied by Warrantor ({reason}{'; rule ' + rules if rules else ''}): {exc.message}."
    if details.get("receipt_id"):
        text += f" Receipt {details['receipt_id']}."
    return _error(text, {"status": "denied", "reason": reason, "rules": details.get("rules"),
                         "receipt_id": details.get("receipt_id"), "stage": details.get("stage")})


def _pending(detail: ActionDetail, url: str) -> types.CallToolResult:
    text = (f"This call is held for a human's approval (action {detail.action_id}, status {detail.status}). "
            f"An approver can decide at {url}. Call the tool again with exactly the same arguments to "
            f"continue once it is approved; different arguments are a new request.")
    return _error(text, {"action_id": detail.action_id, "status": detail.status, "approval_url": url})


def _ended(detail: ActionDetail) -> types.CallToolResult:
    receipt = (detail.receipt or {}).get("receipt_id")
    reason = (detail.raw.get("decision") or {}).get("reason") or detail.raw.get("reason_code") or detail.status
    text = f"Warrantor did not allow this call: the action ended {detail.status} ({reason})."
    if receipt:
        text += f" Receipt {receipt}."
    return _error(text, {"action_id": detail.action_id, "status": detail.status, "receipt_id": receipt})
