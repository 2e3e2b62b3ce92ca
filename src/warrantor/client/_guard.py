"""The ``guard`` decorator's rules, shared by ``Client.guard`` and ``AsyncClient.guard``.

Around a guarded call:

1. Authorize ``action_type`` with a payload built from the call's arguments (by default
   the bound arguments by name; or ``payload=`` a dict or a function of the same
   arguments). A denial raises ``ActionDeniedError`` and the function is not called.
2. ``pending_approval`` / ``pending_confirmation``: wait (long-polls, at most
   ``approval_timeout`` seconds) for the decision. Still pending: ``ApprovalTimeoutError``;
   denied by a human or user, or expired: ``ActionDeniedError`` with ``code``
   ``DENIED_BY_HUMAN`` / ``DENIED_BY_USER`` / ``EXPIRED`` and the receipt id in
   ``details``. The function is not called in either case.
3. Cleared: call the function, then notarize. It returned: ``completed`` with
   ``executed = {action_type, payload, executed_at}`` (``executed_at`` = when the call
   started). It raised an ``Exception``: ``failed``, with only the exception's class
   name as ``outcome_details`` (messages may carry secrets), and the exception is
   re-raised. It was interrupted (``KeyboardInterrupt``, task cancellation): ``unknown``,
   since the side effect may or may not have happened, and the interruption propagates.

If the report itself cannot be delivered (transport error, 5xx, or a refusal such as an
expired warrant), the guard does not raise: the side effect already happened, and an
exception would invite the caller to run it again. Reporting ``unknown`` instead would be
wrong (the outcome is known) and would fail the same way. The guard logs the lost report
at ERROR on the ``warrantor.client`` logger with the action id and outcome, so an operator
can notarize it later with ``client.notarize``; the function's own result or exception
is what the caller sees.

The agent-framework adapters (``warrantor.adapters``) report what ran by the same rules
and use these helpers for it.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from warrantor.client._errors import ApprovalTimeoutError
from warrantor.client._models import ActionDetail
from warrantor.errors import ActionDeniedError

log = logging.getLogger("warrantor.client")

PayloadSpec = Mapping[str, Any] | Callable[..., Mapping[str, Any]] | None
DetailsSpec = str | Callable[..., str]


@dataclass(frozen=True)
class GuardSpec:
    """What a guard authorizes: the action type, how to build payload and details."""

    action_type: str
    payload: PayloadSpec = None
    details: DetailsSpec = ""
    approval_timeout: float = 300.0
    fields: Mapping[str, Any] = field(default_factory=dict)

    def intent(
        self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[dict[str, Any], str]:
        """The payload and details for one call of ``fn``."""
        if callable(self.payload):
            payload = dict(self.payload(*args, **kwargs))
        elif self.payload is not None:
            payload = dict(self.payload)
        else:
            bound = inspect.signature(fn).bind(*args, **kwargs)
            bound.apply_defaults()
            payload = dict(bound.arguments)
        details = self.details(*args, **kwargs) if callable(self.details) else self.details
        return payload, details


def require_cleared(detail: ActionDetail) -> None:
    """Raise unless a waited-for action may run now."""
    if detail.cleared:
        return
    if detail.pending:
        raise ApprovalTimeoutError(
            f"expected a decision on {detail.action_id}, got {detail.status} after the approval timeout",
            details={"action_id": detail.action_id, "status": detail.status},
        )
    raise ActionDeniedError(
        f"expected {detail.action_id} to be approved, got {detail.status}",
        code=detail.status.upper(),
        details={"action_id": detail.action_id, "status": detail.status, "receipt_id": detail.receipt_id},
    )


def now_rfc3339() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def executed_block(action_type: str, payload: Mapping[str, Any], started_at: str) -> dict[str, Any]:
    return {"action_type": action_type, "payload": dict(payload), "executed_at": started_at}


def failure_outcome(exc: BaseException) -> str:
    """``failed`` when the function raised an ``Exception``; ``unknown`` when it was
    interrupted, since the side effect may or may not have happened."""
    return "failed" if isinstance(exc, Exception) else "unknown"


def failure_details(exc: BaseException) -> str:
    """Only the class name: an exception's message may carry secrets."""
    return type(exc).__name__


def log_lost_report(action_id: str, outcome: str, exc: Exception, logger: logging.Logger = log) -> None:
    logger.error(
        "could not notarize action %s as %s: %s; notarize it later with client.notarize",
        action_id, outcome, exc, exc_info=exc,
    )
