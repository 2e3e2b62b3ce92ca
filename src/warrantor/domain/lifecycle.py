"""The action lifecycle as one transition table.

Rules (docs/architecture.md):

- ``POST /v1/actions`` creates an action straight into ``authorized``,
  ``pending_approval``, ``pending_confirmation`` or ``denied``; that is the ``CREATE``
  event, decided by the authorization pipeline.
- A held action is resolved by humans (``APPROVE`` / ``DENY_BY_HUMAN``), by the end user
  (``CONFIRM`` / ``DENY_BY_USER``), or by the clock (``EXPIRE``).
- Only ``authorized`` and ``approved`` actions may run; reporting the outcome
  (``NOTARIZE_*``) ends them. ``uncertain`` waits for a later report that resolves it.
- Warrantor runs an ``http.request`` itself (``POST /v1/actions/{id}/execute``,
  docs/execute.md): ``EXECUTE`` claims the action (``executing``), and only Warrantor's
  own result (``EXECUTED_*``) moves it on. ``executing`` accepts no report, no second
  execution and no expiry; an execution that never reports back (a crash mid-flight) is
  ``EXECUTED_UNKNOWN``: ``uncertain``, never runnable again.
- An ``authorized`` or ``approved`` action whose warrant lapsed unexecuted ``EXPIRE``\\ s.
- Terminal states accept no event at all. Each terminal state mints exactly one receipt.

Any pair not in the table raises ``InvalidTransitionError`` (HTTP 409
``INVALID_ACTION_STATE``).
"""

from __future__ import annotations

from enum import StrEnum

from warrantor.errors import InvalidTransitionError


class Status(StrEnum):
    AUTHORIZED = "authorized"
    PENDING_APPROVAL = "pending_approval"
    PENDING_CONFIRMATION = "pending_confirmation"
    APPROVED = "approved"
    EXECUTING = "executing"
    UNCERTAIN = "uncertain"
    DENIED = "denied"
    DENIED_BY_HUMAN = "denied_by_human"
    DENIED_BY_USER = "denied_by_user"
    EXPIRED = "expired"
    NOTARIZED = "notarized"
    FAILED = "failed"
    DIVERGED = "diverged"


class Event(StrEnum):
    APPROVE = "approve"
    DENY_BY_HUMAN = "deny_by_human"
    CONFIRM = "confirm"
    DENY_BY_USER = "deny_by_user"
    EXPIRE = "expire"
    NOTARIZE_COMPLETED = "notarize_completed"
    NOTARIZE_FAILED = "notarize_failed"
    NOTARIZE_DIVERGED = "notarize_diverged"
    NOTARIZE_UNKNOWN = "notarize_unknown"
    EXECUTE = "execute"
    EXECUTED_COMPLETED = "executed_completed"
    EXECUTED_FAILED = "executed_failed"
    EXECUTED_UNKNOWN = "executed_unknown"


INITIAL_STATES: frozenset[Status] = frozenset(
    {Status.AUTHORIZED, Status.PENDING_APPROVAL, Status.PENDING_CONFIRMATION, Status.DENIED}
)

TERMINAL_STATES: frozenset[Status] = frozenset(
    {
        Status.DENIED,
        Status.DENIED_BY_HUMAN,
        Status.DENIED_BY_USER,
        Status.EXPIRED,
        Status.NOTARIZED,
        Status.FAILED,
        Status.DIVERGED,
    }
)

_EXECUTION_OUTCOMES = {
    Event.NOTARIZE_COMPLETED: Status.NOTARIZED,
    Event.NOTARIZE_FAILED: Status.FAILED,
    Event.NOTARIZE_DIVERGED: Status.DIVERGED,
    Event.NOTARIZE_UNKNOWN: Status.UNCERTAIN,
}

TRANSITIONS: dict[tuple[Status, Event], Status] = {
    (Status.PENDING_APPROVAL, Event.APPROVE): Status.APPROVED,
    (Status.PENDING_APPROVAL, Event.DENY_BY_HUMAN): Status.DENIED_BY_HUMAN,
    (Status.PENDING_APPROVAL, Event.EXPIRE): Status.EXPIRED,
    (Status.PENDING_CONFIRMATION, Event.CONFIRM): Status.APPROVED,
    (Status.PENDING_CONFIRMATION, Event.DENY_BY_USER): Status.DENIED_BY_USER,
    (Status.PENDING_CONFIRMATION, Event.EXPIRE): Status.EXPIRED,
    (Status.AUTHORIZED, Event.EXPIRE): Status.EXPIRED,
    (Status.APPROVED, Event.EXPIRE): Status.EXPIRED,
    **{(Status.AUTHORIZED, event): target for event, target in _EXECUTION_OUTCOMES.items()},
    **{(Status.APPROVED, event): target for event, target in _EXECUTION_OUTCOMES.items()},
    (Status.AUTHORIZED, Event.EXECUTE): Status.EXECUTING,
    (Status.APPROVED, Event.EXECUTE): Status.EXECUTING,
    (Status.EXECUTING, Event.EXECUTED_COMPLETED): Status.NOTARIZED,
    (Status.EXECUTING, Event.EXECUTED_FAILED): Status.FAILED,
    (Status.EXECUTING, Event.EXECUTED_UNKNOWN): Status.UNCERTAIN,
    # An uncertain outcome is resolved by a later report; it cannot stay unknown twice.
    **{
        (Status.UNCERTAIN, event): target
        for event, target in _EXECUTION_OUTCOMES.items()
        if event is not Event.NOTARIZE_UNKNOWN
    },
}


def transition(state: Status, event: Event) -> Status:
    """The state after ``event``, or ``InvalidTransitionError`` if the table forbids it."""
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise InvalidTransitionError(
            f"expected an action in a state that accepts {event.value!r}, got {state.value!r}",
            details={"status": state.value, "event": event.value},
        ) from None


def is_terminal(state: Status) -> bool:
    return state in TERMINAL_STATES
