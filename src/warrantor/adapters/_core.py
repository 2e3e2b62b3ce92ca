"""What the three adapters share: a tool call as a Warrantor action, Warrantor's answer as a
``Decision``, and the report of what ran.

Each adapter asks the same three questions through its framework's own hooks:

1. ``Gate.authorize``: may this call run? The answer is a ``Decision``: ``allowed``
   (run it), ``held`` (a human must decide; the adapter surfaces the framework's
   interruption with the action id and console link) or ``refused`` (denied by policy,
   by a human, expired, already ended, or Warrantor could not be asked). It never raises
   a ``WarrantorError``: a Warrantor that cannot answer refuses the call (fail closed).
2. ``Gate.verify``: after a human was involved, what does Warrantor say *now*, and is
   the action the one this call would run (same action type, same payload)? The
   framework's own "approved" flag or resume value is never taken as the approval.
3. ``Gate.report_*``: notarize what ran: ``completed`` with the ``executed`` block and the
   result digest (``outcome_details = "result sha256:<hex>"``, which the receipt commits
   to through ``outcome_details_sha256``), ``failed`` with the exception's class name, or
   ``unknown`` when the call was interrupted. A report that cannot be delivered is logged
   at ERROR on ``warrantor.adapters`` and does not raise: the side effect already happened.

The report's pieces (``executed`` block, failure details, the lost-report log line) and the
cleared/pending statuses are the SDK's own (``warrantor.client._guard``, ``_models``), so the
guard decorator and the adapters cannot drift apart.

Not here: anything that imports a framework (one module per framework), or the server.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass, field, is_dataclass
from enum import StrEnum
from typing import Any

from warrantor.client import ActionDetail, AsyncClient, TransportError
from warrantor.client._guard import executed_block, failure_details, log_lost_report, now_rfc3339
from warrantor.client._models import CLEARED, PENDING
from warrantor.errors import ActionDeniedError, WarrantorError
from warrantor.evidence.canonical import CanonicalizationError, digest

log = logging.getLogger("warrantor.adapters")

PayloadBuilder = Callable[[Mapping[str, Any]], Mapping[str, Any]]
DetailsBuilder = str | Callable[[Mapping[str, Any]], str]

ENDED_BY_DECISION = {
    "denied": "DENIED",
    "denied_by_human": "DENIED_BY_HUMAN",
    "denied_by_user": "DENIED_BY_USER",
    "expired": "EXPIRED",
}


class Verdict(StrEnum):
    ALLOWED = "allowed"
    HELD = "held"
    REFUSED = "refused"


@dataclass(frozen=True)
class ToolAction:
    """How one tool's calls become Warrantor actions.

    ``payload`` builds the action's payload from the tool's arguments (by default the
    arguments themselves); it must give exactly what the policy's schema expects.
    ``details`` is a string or a function of the arguments. ``fields`` are the optional
    intent fields of ``POST /v1/actions`` (``agent_id``, ``model_id``, ``labels``, ...).
    """

    action_type: str
    payload: PayloadBuilder | None = None
    details: DetailsBuilder = ""
    fields: Mapping[str, Any] = field(default_factory=dict)

    def intent(self, args: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
        """The payload and details for one call with ``args``."""
        payload = dict(self.payload(args)) if self.payload is not None else dict(args)
        details = self.details(args) if callable(self.details) else self.details
        return payload, details


@dataclass(frozen=True)
class Decision:
    """Warrantor's answer for one call, in the terms an adapter acts on."""

    verdict: Verdict
    status: str
    message: str
    action_id: str | None = None
    code: str | None = None
    receipt_id: str | None = None
    console_url: str | None = None

    @property
    def allowed(self) -> bool:
        return self.verdict is Verdict.ALLOWED

    @property
    def held(self) -> bool:
        return self.verdict is Verdict.HELD

    @property
    def refused(self) -> bool:
        return self.verdict is Verdict.REFUSED

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe: what an interruption or deferred call carries to the host."""
        return {"verdict": self.verdict.value, "status": self.status, "message": self.message,
                "action_id": self.action_id, "code": self.code, "receipt_id": self.receipt_id,
                "console_url": self.console_url}


@dataclass(frozen=True)
class Report:
    """What notarizing one call produced (``status`` is ``not_notarized`` if it failed)."""

    action_id: str
    outcome: str
    status: str
    receipt_id: str | None = None
    result_sha256: str | None = None
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def jsonable(value: Any) -> Any:
    """The JSON form of a tool's result: pydantic models and dataclasses by their fields."""
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return dump(mode="json")
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    return value


def result_digest(value: Any) -> str:
    """``sha256:<hex>`` of the canonical JSON (RFC 8785) of the result's JSON form; a result
    JSON cannot carry (bytes, NaN, an arbitrary object) is digested as its ``repr``."""
    try:
        return "sha256:" + digest(jsonable(value))
    except (CanonicalizationError, TypeError, ValueError):
        return "sha256:" + digest(repr(value))


async def call_tool_function(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Await a coroutine function; run a plain function in a worker thread."""
    if inspect.iscoroutinefunction(fn):
        return await fn(*args, **kwargs)
    result = await asyncio.to_thread(fn, *args, **kwargs)
    return await result if inspect.isawaitable(result) else result


class Gate:
    """Warrantor as the adapters ask it: authorize, verify, report. One per agent process.

    ``console_url`` is where approvers open a held action (``<console_url>/console/actions/<id>``),
    usually the Warrantor URL the client talks to.
    """

    def __init__(self, client: AsyncClient, *, console_url: str) -> None:
        self.client = client
        self.console_url = console_url.rstrip("/")

    def link(self, action_id: str) -> str:
        return f"{self.console_url}/console/actions/{action_id}"

    # -- asking --------------------------------------------------------------------

    async def authorize(
        self, action: ToolAction, payload: Mapping[str, Any], details: str, *, idempotency_key: str | None = None,
    ) -> Decision:
        """Authorize one call. ``idempotency_key`` makes a repeat (a re-executed graph node)
        get the first answer; the status is then read again, since a replayed answer is
        the answer Warrantor gave then, not the action's state now."""
        try:
            auth = await self.client.authorize(
                action.action_type, details=details, payload=payload, idempotency_key=idempotency_key,
                **action.fields,
            )
        except ActionDeniedError as exc:
            return self._denied(exc)
        except WarrantorError as exc:
            return _unavailable(exc, "authorize")
        if idempotency_key is not None:
            return await self.current(auth.action_id)
        return self._from_status(auth.action_id, auth.status, None)

    async def current(self, action_id: str) -> Decision:
        """What Warrantor says about ``action_id`` now."""
        try:
            detail = await self.client.get_action(action_id)
        except WarrantorError as exc:
            return _unavailable(exc, "read", action_id)
        return self._from_detail(detail)

    async def await_decision(self, action_id: str, timeout: float) -> Decision:
        """Long-poll up to ``timeout`` seconds for a held action to be decided."""
        try:
            detail = await self.client.wait_for_decision(action_id, timeout=timeout)
        except WarrantorError as exc:
            return _unavailable(exc, "read", action_id)
        return self._from_detail(detail)

    async def verify(self, action_id: str, action: ToolAction, payload: Mapping[str, Any]) -> Decision:
        """The action's state now, refused unless it is this call's action: the same action
        type and the same payload (so an approval cannot be carried over to other arguments)."""
        try:
            detail = await self.client.get_action(action_id)
        except WarrantorError as exc:
            return _unavailable(exc, "read", action_id)
        intent = detail.raw.get("intent") or {}
        expected = _canonical(payload)
        same = expected is not None and _canonical(intent.get("payload")) == expected
        if detail.action_type != action.action_type or not same:
            return Decision(
                Verdict.REFUSED, detail.status, f"Warrantor action {action_id} is not this call's action "
                f"(its action type or payload differs), so the call was not made.",
                action_id=action_id, code="ACTION_MISMATCH", receipt_id=detail.receipt_id,
            )
        return self._from_detail(detail)

    # -- reporting -----------------------------------------------------------------

    async def report_completed(
        self, action_id: str, action_type: str, payload: Mapping[str, Any], started_at: str, result: Any,
    ) -> Report:
        digest_ = result_digest(result)
        return await self._notarize(
            action_id, "completed", f"result {digest_}", executed_block(action_type, payload, started_at), digest_,
        )

    async def report_failed(self, action_id: str, exc: BaseException) -> Report:
        return await self._notarize(action_id, "failed", failure_details(exc), None, None)

    async def report_unknown(self, action_id: str, exc: BaseException) -> Report:
        return await self._notarize(action_id, "unknown", failure_details(exc), None, None)

    async def run(
        self, action_id: str, action: ToolAction, payload: Mapping[str, Any], call: Callable[[], Awaitable[Any]],
    ) -> tuple[Any, Report]:
        """Run a cleared call and notarize it; the call's exception propagates after ``failed``
        (or ``unknown`` for an interruption) is reported."""
        started_at = now_rfc3339()
        try:
            result = await call()
        except Exception as exc:
            await self.report_failed(action_id, exc)
            raise
        except BaseException as exc:
            await self.report_unknown(action_id, exc)
            raise
        return result, await self.report_completed(action_id, action.action_type, payload, started_at, result)

    async def _notarize(
        self, action_id: str, outcome: str, details: str, executed: dict[str, Any] | None, digest_: str | None,
    ) -> Report:
        try:
            res = await self.client.notarize(action_id, outcome, outcome_details=details, executed=executed)
        except WarrantorError as exc:
            log_lost_report(action_id, outcome, exc, log)
            return Report(action_id, outcome, "not_notarized", None, digest_, exc.code)
        return Report(action_id, outcome, res.status, res.receipt_id, digest_)

    # -- reading answers ---------------------------------------------------------------

    def _denied(self, exc: ActionDeniedError) -> Decision:
        details = exc.details or {}
        rules = [r.get("message") for r in details.get("rules") or () if r.get("effect") == "deny"]
        why = "; ".join(str(r) for r in rules if r) or exc.message
        receipt = details.get("receipt_id")
        return Decision(
            Verdict.REFUSED, "denied", f"Warrantor denied this call ({exc.code}): {why}. Receipt {receipt}.",
            action_id=details.get("action_id"), code=exc.code, receipt_id=receipt,
        )

    def _from_detail(self, detail: ActionDetail) -> Decision:
        return self._from_status(detail.action_id, detail.status, detail.receipt_id)

    def _from_status(self, action_id: str, status: str, receipt_id: str | None) -> Decision:
        if status in CLEARED:
            return Decision(Verdict.ALLOWED, status, f"Warrantor {status} action {action_id}.", action_id=action_id)
        if status in PENDING:
            link = self.link(action_id)
            return Decision(
                Verdict.HELD, status, f"Warrantor is holding this call ({action_id}) for a human's approval; "
                f"an approver can decide at {link}.", action_id=action_id, console_url=link,
            )
        if status in ENDED_BY_DECISION:
            code = ENDED_BY_DECISION[status]
            who = {"denied_by_human": "an approver denied it", "denied_by_user": "the user denied it",
                   "expired": "nobody decided before it expired", "denied": "the policy denied it"}[status]
            return Decision(
                Verdict.REFUSED, status, f"Warrantor did not allow this call: {who} ({code}). "
                f"Action {action_id}, receipt {receipt_id}.", action_id=action_id, code=code, receipt_id=receipt_id,
            )
        return Decision(
            Verdict.REFUSED, status, f"Warrantor action {action_id} has already ended ({status}), so the call "
            f"was not made again. Receipt {receipt_id}.", action_id=action_id, code="ALREADY_ENDED",
            receipt_id=receipt_id,
        )


def _unavailable(exc: WarrantorError, what: str, action_id: str | None = None) -> Decision:
    reached = "could not be reached" if isinstance(exc, TransportError) else f"refused to {what} ({exc.code})"
    return Decision(
        Verdict.REFUSED, "unavailable", f"Warrantor {reached}, so the call was not made: {exc.message}",
        action_id=action_id, code=exc.code,
    )


def _canonical(value: Any) -> str | None:
    try:
        return digest(value)
    except (CanonicalizationError, TypeError, ValueError):
        return None
