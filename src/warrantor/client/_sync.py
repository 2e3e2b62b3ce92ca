"""``Client``: the blocking SDK over ``httpx.Client``.

Every method builds a ``Call`` (``_calls``) and runs it through ``_send``, which applies
the retry rule and turns failures into Warrantor exceptions (``_errors``). ``transport``
is the seam: pass any ``httpx.BaseTransport`` (a real server is the default; tests use a
loopback server or ``httpx.MockTransport``).
"""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Callable, Mapping
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


class Client:
    """A blocking Warrantor client. Use it as a context manager, or call ``close()``."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
        retries: int = 2,
    ) -> None:
        self._config = _calls.ClientConfig(api_key, timeout, max(0, retries))
        self._http = httpx.Client(transport=transport, **self._config.http_options(base_url))

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- actions -----------------------------------------------------------------------

    def authorize(
        self,
        action_type: str,
        *,
        details: str = "",
        payload: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        **fields: Unpack[IntentFields],
    ) -> Authorization:
        """Ask to run an action. Denials raise ``ActionDeniedError``; retries replay."""
        return self._send(_calls.authorize(action_type, details, payload, idempotency_key, fields))

    def get_action(self, action_id: str, wait: float | None = None, status: str | None = None) -> ActionDetail:
        """The action; with ``wait``, long-poll up to that many seconds for a status change
        (with ``status``, from that status: at once if the action has already left it)."""
        return self._send(_calls.get_action(action_id, wait, status))

    def wait_for_decision(self, action_id: str, timeout: float) -> ActionDetail:
        """Long-poll until the action leaves ``pending_*`` or ``timeout`` seconds pass.

        Returns the action either way: check ``.pending`` (timed out) or ``.cleared``.
        """
        deadline = time.monotonic() + timeout
        detail = self.get_action(action_id)
        while detail.pending and (remaining := deadline - time.monotonic()) > 0:
            detail = self.get_action(action_id, wait=remaining, status=detail.status)
        return detail

    def notarize(
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
        return self._send(call)

    def execute(self, action_id: str, *, timeout: float | None = None) -> ExecuteResult:
        """``POST /v1/actions/{id}/execute``: Warrantor sends the ``http.request`` action's request
        itself, with any secrets the server injects, and notarizes it as witnessed (docs/execute.md).
        ``timeout``: extra seconds to wait for the answer (default 60). Never retried: after a
        ``TransportError``, ``get_action`` tells whether it ran (``executing``, ``notarized``, ...).
        """
        return self._send(_calls.execute(action_id, timeout))

    def list_actions(
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
        return self._send(_calls.list_actions(page, per_page, filters))

    # -- approvals (the code is the credential) --------------------------------------

    def approval(self, code: str) -> dict[str, Any]:
        """What an approver sees for ``code``: the action, its rules, approvals so far."""
        return self._send(_calls.approval(code))

    def decide(self, code: str, decision: str, reason: str | None = None) -> ApprovalResult:
        """``decision`` is ``"approve"`` or ``"deny"``; a code decides once."""
        return self._send(_calls.decide(code, decision, reason))

    def confirm(self, nonce: str, approved: bool, ttl_seconds: int | None = None) -> dict[str, Any]:
        """``POST /v1/confirmations/{nonce}``: the end user's answer (app or admin keys; a gateway
        key only for its own agent's action, recorded as presence only)."""
        return self._send(_calls.confirm(nonce, approved, ttl_seconds))

    # -- evidence ----------------------------------------------------------------------

    def policy_outlook(self, action_types: list[str]) -> dict[str, dict[str, Any]]:
        """``POST /v1/policies/outlook``: for each action type, what the active bundle can decide
        for this key's agent without a payload (``effect``, ``certain``, ``possible``, ``rules``)."""
        return self._send(_calls.policy_outlook(action_types))

    def keys(self) -> list[dict[str, Any]]:
        """Published signing keys with their validity (retired keys included)."""
        return self._send(_calls.keys())

    def trust(self) -> dict[str, Any]:
        """The trust bundle an offline verifier needs (``GET /v1/trust``)."""
        return self._send(_calls.trust())

    def receipt(self, receipt_id: str) -> dict[str, Any]:
        return self._send(_calls.receipt(receipt_id))

    def receipt_bundle(self, receipt_id: str) -> dict[str, Any]:
        """The offline proof bundle for a receipt (``GET /v1/receipts/{id}/bundle``)."""
        return self._send(_calls.receipt_bundle(receipt_id))

    # -- guard -------------------------------------------------------------------------

    def guard(
        self,
        action_type: str,
        *,
        payload: PayloadSpec = None,
        details: DetailsSpec = "",
        approval_timeout: float = 300.0,
        **fields: Unpack[IntentFields],
    ) -> Callable[[Callable[P, R]], Callable[P, R]]:
        """Decorate a function so it runs only when Warrantor allows it (see ``_guard``)."""
        spec = GuardSpec(action_type, payload, details, approval_timeout, fields)

        def decorate(fn: Callable[P, R]) -> Callable[P, R]:
            if inspect.iscoroutinefunction(fn):
                raise TypeError(f"expected a plain function, got coroutine function {fn.__name__}; "
                                "use AsyncClient.guard")

            @functools.wraps(fn)
            def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
                return self._run_guarded(spec, fn, args, kwargs)

            return guarded

        return decorate

    def _run_guarded(self, spec: GuardSpec, fn: Callable[..., R], args: tuple[Any, ...],
                     kwargs: dict[str, Any]) -> R:
        payload, details = spec.intent(fn, args, kwargs)
        auth = self.authorize(spec.action_type, details=details, payload=payload, **spec.fields)
        if not auth.cleared:
            require_cleared(self.wait_for_decision(auth.action_id, spec.approval_timeout))
        started_at = now_rfc3339()
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            self._report(auth.action_id, failure_outcome(exc), outcome_details=failure_details(exc))
            raise
        self._report(auth.action_id, "completed",
                     executed=executed_block(spec.action_type, payload, started_at))
        return result

    def _report(self, action_id: str, outcome: str, **report: Any) -> None:
        try:
            self.notarize(action_id, outcome, **report)
        except WarrantorError as exc:
            log_lost_report(action_id, outcome, exc)

    # -- transport ---------------------------------------------------------------------

    def _send(self, call: Call[T]) -> T:
        attempt = 0
        while True:
            delay: float | None
            try:
                response = self._http.request(**self._config.request_options(call))
            except httpx.TransportError as exc:
                delay = self._config.delay_after_error(call, attempt, exc)
            else:
                if (delay := self._config.delay_after_answer(call, attempt, response)) is None:
                    return _calls.read(call, response)
            time.sleep(delay)
            attempt += 1
