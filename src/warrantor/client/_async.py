"""``AsyncClient``: the same API as ``Client``, over ``httpx.AsyncClient``.

Same ``Call``s, same retry rule, same errors; only the waiting differs. ``transport`` takes
any ``httpx.AsyncBaseTransport``: ``httpx.ASGITransport(app=...)`` runs the real app in
process with no network.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, ParamSpec, TypeVar, Unpack

import httpx

from warrantor.client import _calls
from warrantor.client._calls import Call, IntentFields
from warrantor.client._guard import (
    DetailsSpec,
    GuardSpec,
    PayloadSpec,
    executed_block,
    failure_details,
    failure_outcome,
    log_lost_report,
    now_rfc3339,
    require_cleared,
)
from warrantor.client._models import (
    ActionDetail,
    ActionPage,
    ApprovalResult,
    Authorization,
    ExecuteResult,
    NotarizeResult,
)
from warrantor.errors import WarrantorError

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")


class AsyncClient:
    """An asyncio Warrantor client. Use it as ``async with``, or ``await aclose()``."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
        retries: int = 2,
    ) -> None:
        self._config = _calls.ClientConfig(api_key, timeout, max(0, retries))
        self._http = httpx.AsyncClient(transport=transport, **self._config.http_options(base_url))

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- actions -----------------------------------------------------------------------

    async def authorize(
        self,
        action_type: str,
        *,
        details: str = "",
        payload: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        **fields: Unpack[IntentFields],
    ) -> Authorization:
        """Ask to run an action. Denials raise ``ActionDeniedError``; retries replay."""
        return await self._send(_calls.authorize(action_type, details, payload, idempotency_key, fields))

    async def get_action(self, action_id: str, wait: float | None = None, status: str | None = None) -> ActionDetail:
        """The action; with ``wait``, long-poll up to that many seconds for a status change
        (with ``status``, from that status: at once if the action has already left it)."""
        return await self._send(_calls.get_action(action_id, wait, status))

    async def wait_for_decision(self, action_id: str, timeout: float) -> ActionDetail:
        """Long-poll until the action leaves ``pending_*`` or ``timeout`` seconds pass.

        Returns the action either way: check ``.pending`` (timed out) or ``.cleared``.
        """
        deadline = time.monotonic() + timeout
        detail = await self.get_action(action_id)
        while detail.pending and (remaining := deadline - time.monotonic()) > 0:
            detail = await self.get_action(action_id, wait=remaining, status=detail.status)
        return detail

    async def notarize(
        self,
        action_id: str,
        outcome: str = "completed",
        outcome_details: str | None = None,
        executed: Mapping[str, Any] | None = None,
        usage: Mapping[str, int] | None = None,
        *,
        evidence_grade: str | None = None,
        witness: Mapping[str, str] | None = None,
    ) -> NotarizeResult:
        """Report what ran; the server checks it against the warrant and mints the receipt.

        A gateway key that executed the call itself may send ``evidence_grade="witnessed"``
        with ``witness`` (``request_sha256``, ``response_sha256``, optional ``executor`` and
        ``target``); any other key gets ``PermissionDeniedError`` (``WITNESS_NOT_ALLOWED``).
        """
        call = _calls.notarize(action_id, outcome, outcome_details, executed, usage, evidence_grade, witness)
        return await self._send(call)

    async def execute(self, action_id: str, *, timeout: float | None = None) -> ExecuteResult:
        """``POST /v1/actions/{id}/execute``: Warrantor sends the ``http.request`` action's request
        itself, with any secrets the server injects, and notarizes it as witnessed (docs/execute.md).
        ``timeout``: extra seconds to wait for the answer (default 60). Never retried: after a
        ``TransportError``, ``get_action`` tells whether it ran (``executing``, ``notarized``, ...).
        """
        return await self._send(_calls.execute(action_id, timeout))

    async def list_actions(
        self,
        *,
        page: int = 1,
        per_page: int = 20,
        action_type: str | None = None,
        agent_id: str | None = None,
        status: str | None = None,
        created_after: str | None = None,
        created_before: str | None = None,
    ) -> ActionPage:
        filters = {"action_type": action_type, "agent_id": agent_id, "status": status,
                   "created_after": created_after, "created_before": created_before}
        return await self._send(_calls.list_actions(page, per_page, filters))

    # -- approvals (the code is the credential) --------------------------------------

    async def approval(self, code: str) -> dict[str, Any]:
        """What an approver sees for ``code``: the action, its rules, approvals so far."""
        return await self._send(_calls.approval(code))

    async def decide(self, code: str, decision: str, reason: str | None = None) -> ApprovalResult:
        """``decision`` is ``"approve"`` or ``"deny"``; a code decides once."""
        return await self._send(_calls.decide(code, decision, reason))

    async def confirm(self, nonce: str, approved: bool, ttl_seconds: int | None = None) -> dict[str, Any]:
        """``POST /v1/confirmations/{nonce}``: the end user's answer (app or admin keys; a gateway
        key only for its own agent's action, recorded as presence only)."""
        return await self._send(_calls.confirm(nonce, approved, ttl_seconds))

    # -- evidence ----------------------------------------------------------------------

    async def policy_outlook(self, action_types: list[str]) -> dict[str, dict[str, Any]]:
        """``POST /v1/policies/outlook``: for each action type, what the active bundle can decide
        for this key's agent without a payload (``effect``, ``certain``, ``possible``, ``rules``)."""
        return await self._send(_calls.policy_outlook(action_types))

    async def keys(self) -> list[dict[str, Any]]:
        """Published signing keys with their validity (retired keys included)."""
        return await self._send(_calls.keys())

    async def trust(self) -> dict[str, Any]:
        """The trust bundle an offline verifier needs (``GET /v1/trust``)."""
        return await self._send(_calls.trust())

    async def receipt(self, receipt_id: str) -> dict[str, Any]:
        return await self._send(_calls.receipt(receipt_id))

    async def receipt_bundle(self, receipt_id: str) -> dict[str, Any]:
        """The offline proof bundle for a receipt (``GET /v1/receipts/{id}/bundle``)."""
        return await self._send(_calls.receipt_bundle(receipt_id))

    # -- guard -------------------------------------------------------------------------

    def guard(
        self,
        action_type: str,
        *,
        payload: PayloadSpec = None,
        details: DetailsSpec = "",
        approval_timeout: float = 300.0,
        **fields: Unpack[IntentFields],
    ) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
        """Decorate a coroutine function so it runs only when Warrantor allows it."""
        spec = GuardSpec(action_type, payload, details, approval_timeout, fields)

        def decorate(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
            if not inspect.iscoroutinefunction(fn):
                raise TypeError(f"expected a coroutine function, got {fn!r}; use Client.guard")

            @functools.wraps(fn)
            async def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
                return await self._run_guarded(spec, fn, args, kwargs)

            return guarded

        return decorate

    async def _run_guarded(self, spec: GuardSpec, fn: Callable[..., Awaitable[R]], args: tuple[Any, ...],
                     kwargs: dict[str, Any]) -> R:
        payload, details = spec.intent(fn, args, kwargs)
        auth = await self.authorize(spec.action_type, details=details, payload=payload, **spec.fields)
        if not auth.cleared:
            require_cleared(await self.wait_for_decision(auth.action_id, spec.approval_timeout))
        started_at = now_rfc3339()
        try:
            result = await fn(*args, **kwargs)
        except BaseException as exc:
            await self._report(auth.action_id, failure_outcome(exc), outcome_details=failure_details(exc))
            raise
        await self._report(auth.action_id, "completed",
                     executed=executed_block(spec.action_type, payload, started_at))
        return result

    async def _report(self, action_id: str, outcome: str, **report: Any) -> None:
        try:
            await self.notarize(action_id, outcome, **report)
        except WarrantorError as exc:
            log_lost_report(action_id, outcome, exc)

    # -- transport ---------------------------------------------------------------------

    async def _send(self, call: Call[T]) -> T:
        attempt = 0
        while True:
            delay: float | None
            try:
                response = await self._http.request(**self._config.request_options(call))
            except httpx.TransportError as exc:
                delay = self._config.delay_after_error(call, attempt, exc)
            else:
                if (delay := self._config.delay_after_answer(call, attempt, response)) is None:
                    return _calls.read(call, response)
            await asyncio.sleep(delay)
            attempt += 1
