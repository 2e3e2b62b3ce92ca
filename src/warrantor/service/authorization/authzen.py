"""OpenID AuthZEN Authorization API 1.0: decisions from the authorize pipeline (docs/authzen.md).

Every evaluation is an authorization like ``POST /v1/actions``: ``Authorizer.authorize_async``
decides it, records the action and signs its warrant (allowed) or receipt (denied). This
module turns the pipeline's outcome into an AuthZEN Decision, ``{"decision": bool,
"context": {...}}``:

- ``authorized`` is ``true``; ``denied`` is ``false``; a held action (``pending_approval``,
  ``pending_confirmation``) is ``false`` with ``context.held`` true and where to poll it;
- ``context`` carries Warrantor's ``action_id``, ``status``, ``effect``, ``stage``,
  ``reason``, the matching ``rules`` (ids) and the ``warrant_id`` or ``receipt_id``.

An evaluation sent again with the same ``idempotency_key`` (and the same request, else
409 ``DUPLICATE_REQUEST``) answers from the action's *current* status: ``true`` exactly
while it is ``authorized`` or ``approved`` with a live warrant, so a caller that was told
"held" asks again once a human approved, and a warrant that was used, denied or expired is
never ``true`` again.

Batches follow the spec's ``evaluations`` semantics: ``execute_all`` (default) evaluates
every item in order; ``deny_on_first_deny`` stops after the first ``false`` and
``permit_on_first_permit`` after the first ``true`` (items after it are neither evaluated
nor recorded). An error in one item (a rate limit, a payload the bundle's schema refuses)
is that item's ``false`` with ``context.error`` ``{status, code, message}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from warrantor.domain.lifecycle import Status
from warrantor.domain.model import Action, Principal
from warrantor.errors import WarrantorError
from warrantor.service.authorization.authorize import Authorizer, Outcome
from warrantor.service.authorization.intent import Intent
from warrantor.service.context import Deps

EXECUTE_ALL = "execute_all"
DENY_ON_FIRST_DENY = "deny_on_first_deny"
PERMIT_ON_FIRST_PERMIT = "permit_on_first_permit"
SEMANTICS = (EXECUTE_ALL, DENY_ON_FIRST_DENY, PERMIT_ON_FIRST_PERMIT)
_LIVE = (Status.AUTHORIZED, Status.APPROVED)
_HELD = (Status.PENDING_APPROVAL, Status.PENDING_CONFIRMATION)


@dataclass(frozen=True)
class Evaluation:
    """One access evaluation as the pipeline's input; ``paths`` names, for each field of
    the intent, where the AuthZEN request carried it (``payload`` -> ``context.payload``),
    so that an error the pipeline raises names the caller's field."""

    intent: Intent
    idempotency_key: str | None = None
    paths: Mapping[str, str] = field(default_factory=dict)

    def located(self, exc: WarrantorError) -> WarrantorError:
        """``exc`` with ``details.field`` as the AuthZEN request spells it."""
        where = exc.details.get("field") if exc.details else None
        if not isinstance(where, str) or not where:
            return exc
        head = where.split(".", 1)[0].split("[", 1)[0]  # payload.amount_minor, approvers[0]
        if head not in self.paths:
            return exc
        exc.details = {**exc.details, "field": self.paths[head] + where[len(head):]}
        return exc


@dataclass(frozen=True)
class Decided:
    """An AuthZEN Decision and, for metrics, the pipeline's effect and deciding stage."""

    decision: dict[str, Any]
    effect: str = "deny"
    stage: str = ""

    @property
    def permitted(self) -> bool:
        return bool(self.decision["decision"])


class AccessEvaluator:
    def __init__(self, authorizer: Authorizer, deps: Deps) -> None:
        self._authorizer, self._d = authorizer, deps

    async def evaluate(self, principal: Principal, evaluation: Evaluation) -> Decided:
        """One evaluation, recorded; a ``WarrantorError`` (bad input, rate limit) propagates."""
        try:
            outcome = await self._authorizer.authorize_async(principal, evaluation.intent,
                                                             evaluation.idempotency_key)
        except WarrantorError as exc:
            raise evaluation.located(exc) from None
        decided = _from_outcome(outcome)
        if evaluation.idempotency_key is not None and principal.tenant_id is not None:
            decided = self._current(principal.tenant_id, decided)
        return decided

    async def evaluate_all(self, principal: Principal, evaluations: list[Evaluation], semantic: str) -> list[Decided]:
        """A batch in order under ``semantic``; each item's error is that item's ``false``."""
        if semantic not in SEMANTICS:
            raise ValueError(f"expected one of {SEMANTICS}, got {semantic!r}")
        out: list[Decided] = []
        for evaluation in evaluations:
            try:
                decided = await self.evaluate(principal, evaluation)
            except WarrantorError as exc:
                if exc.status >= 500:
                    raise
                decided = Decided({"decision": False, "context": {"error": {
                    "status": exc.status, "code": exc.code, "message": exc.message,
                    **({"details": exc.details} if exc.details else {})}}})
            out.append(decided)
            if (semantic == DENY_ON_FIRST_DENY and not decided.permitted) or (
                    semantic == PERMIT_ON_FIRST_PERMIT and decided.permitted):
                break
        return out

    def _current(self, tenant_id: str, decided: Decided) -> Decided:
        """The decision as of the action's current status (for an idempotent re-ask)."""
        action_id = decided.decision["context"].get("action_id")
        if not action_id:
            return decided
        with self._d.store.read() as repo:
            action = repo.get_action(tenant_id, action_id)
        if action is None:
            return decided
        return _from_action(decided, action, self._d.clock.now())


def _rule_ids(rules: Any) -> list[str]:
    return [str(r["id"]) for r in rules or () if isinstance(r, dict) and r.get("id")]


def _from_outcome(outcome: Outcome) -> Decided:
    body = outcome.body
    if outcome.status_code >= 400:  # a denial: a problem document naming its receipt
        details = body.get("details") or {}
        context = {
            "action_id": details.get("action_id"), "status": Status.DENIED.value, "effect": "deny",
            "code": body.get("code"), "stage": details.get("stage"), "reason": details.get("reason"),
            "rules": _rule_ids(details.get("rules")), "receipt_id": details.get("receipt_id"),
            "message": body.get("detail"),
        }
        if details.get("halt"):
            context["halt"] = details["halt"]
        return Decided({"decision": False, "context": _compact(context)}, "deny", str(details.get("stage") or ""))
    decision = body.get("decision") or {}
    status = Status(body["status"])
    context = {
        "action_id": body["action_id"], "status": status.value, "effect": decision.get("effect"),
        "stage": decision.get("stage"), "reason": decision.get("reason"), "rules": _rule_ids(decision.get("rules")),
        "warrant_id": body.get("warrant_id"),
    }
    if status in _HELD:
        context.update(_held(body["action_id"], status))
        if status is Status.PENDING_APPROVAL and body.get("approval"):
            approval = body["approval"]
            context["approval"] = {k: approval.get(k) for k in ("approvers", "quorum", "expires_at")}
        if status is Status.PENDING_CONFIRMATION and body.get("confirmation"):
            context["confirmation"] = body["confirmation"]
    permitted = status is Status.AUTHORIZED
    return Decided({"decision": permitted, "context": _compact(context)},
                   str(decision.get("effect") or "deny"), str(decision.get("stage") or ""))


def _held(action_id: str, status: Status) -> dict[str, Any]:
    return {"held": True, "poll": f"/v1/actions/{action_id}?wait=30&status={status.value}"}


def _from_action(decided: Decided, action: Action, now: Any) -> Decided:
    """``decided`` brought up to the action's current status and evidence."""
    held = action.status in _HELD
    dropped = ("held", "poll", "status", "warrant_id") + (() if held else ("approval", "confirmation"))
    context = {k: v for k, v in decided.decision["context"].items() if k not in dropped}
    context["status"] = action.status.value
    live = action.status in _LIVE
    if live and action.warrant_expires_at is not None and action.warrant_expires_at <= now:
        live = False
        context["warrant_expired"] = True
    if action.warrant_id:
        context["warrant_id"] = action.warrant_id
    if action.receipt_id and not context.get("receipt_id") and action.status not in _LIVE:
        context["receipt_id"] = action.receipt_id
    if held:
        context.update(_held(action.id, action.status))
    return Decided({"decision": live, "context": _compact(context)}, decided.effect, decided.stage)


def _compact(context: dict[str, Any]) -> dict[str, Any]:
    """Absent values are omitted, not null (the spec's JSON payload considerations)."""
    return {k: v for k, v in context.items() if v is not None}
