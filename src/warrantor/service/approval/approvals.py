"""Human decisions on held actions: by personal approval code, or by a logged-in user.

An approval code (``APR-`` + 100 random bits) is a personal credential: it is minted for one
human (an e-mail address the tenant knows, see ``service/approval/approvers.py``) and reaches them
only through their own channel (e-mail). Its holder may review the action and decide once,
recorded under that human. No API route ever returns a code. Rules:

- an unknown code is 404; a code already used or past its expiry is 410 ``CODE_EXPIRED``;
- a decision after the approval request expired is 410 ``APPROVAL_EXPIRED`` on every path
  (code, console, API), at the moment of the decision, whether or not the expiry sweep has
  run yet;
- the decider must still be one of the action's approvers when deciding (membership is
  resolved live): otherwise 403 ``NOT_AN_APPROVER``;
- an action that is no longer ``pending_approval`` is 409 ``ALREADY_RESOLVED``; one human
  decides once, whichever path they use (409 ``ALREADY_RESOLVED``);
- ``approve`` counts towards every requirement the human is a member of; when every
  requirement is met the action is ``approved`` and the warrant minted;
- one ``deny`` ends the action as ``denied_by_human`` with a receipt (a veto).

Every decision records who (the human's e-mail), when, why, how (``via``: ``email-code`` or
``console``) and through which channel (``channel``: the address the code was mailed to, or
the console user and session); the warrant or receipt carries the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from warrantor.domain.clock import isoformat
from warrantor.domain.lifecycle import Event, Status
from warrantor.domain.model import Action, Approval, ApprovalCode
from warrantor.errors import ConflictError, GoneError, NotFoundError, PermissionDeniedError, ValidationError
from warrantor.service.approval.approvers import TenantApprovers, progress
from warrantor.service.context import Deps
from warrantor.service.execution.transitions import Applied, apply
from warrantor.service.proof.sealing import approvals_view
from warrantor.store import Repo

DECISIONS = ("approve", "deny")


@dataclass(frozen=True)
class DecisionResult:
    action_id: str
    status: Status
    approver: str
    approvals: int
    quorum: int
    requirements: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class Decider:
    """Who decides and how they were reached: the recorded identity of a decision."""

    human: str  # the e-mail address the decision is recorded under
    via: str  # "email-code" | "console"
    channel: str


class Approvals:
    def __init__(self, deps: Deps) -> None:
        self._d = deps

    def review(self, code: str) -> dict[str, Any]:
        """What the holder of ``code`` may see before deciding."""
        with self._d.store.read() as repo:
            found = self._valid_code(repo, code, self._d.clock.now())
            action = repo.get_action(found.tenant_id, found.action_id)
            request = repo.get_approval_request(found.tenant_id, found.action_id)
            approvals = repo.approvals_for(found.tenant_id, found.action_id)
            people = TenantApprovers.load(repo, found.tenant_id)
        assert action is not None and request is not None
        state = progress(request, approvals, people)
        return {
            "action_id": action.id,
            "status": action.status.value,
            "action_type": action.action_type,
            "agent_id": action.agent_id,
            "details": action.intent.get("details", ""),
            "payload": action.intent.get("payload", {}),
            "endpoint_url": action.intent.get("endpoint_url"),
            "rules": action.decision.get("rules", []),
            "reason": action.decision.get("reason"),
            "approver": found.approver,
            "quorum": request.quorum,
            "approvals": state.approvals,
            "requirements": state.requirements,
            "expires_at": isoformat(found.expires_at),
            "created_at": isoformat(action.created_at),
        }

    def decide_by_code(self, code: str, decision: str, reason: str | None) -> DecisionResult:
        _check_decision(decision)
        now = self._d.clock.now()

        def job(repo: Repo) -> tuple[DecisionResult, Applied | None]:
            found = self._valid_code(repo, code, now)
            action = repo.get_action(found.tenant_id, found.action_id, for_update=True)
            assert action is not None
            _check_pending(action)
            if not repo.use_approval_code(code, now):
                raise GoneError("the approval code was already used", code="CODE_EXPIRED")
            who = Decider(found.approver, "email-code", f"approval code e-mailed to {found.approver}")
            return self._record(repo, action, who, decision, reason, now)

        result, _ = self._d.store.write(job)
        self._d.notifier.notify(result.action_id)
        return result

    def decide_by_user(
        self, tenant_id: str, action_id: str, who: Decider, decision: str, reason: str | None,
    ) -> DecisionResult:
        """A logged-in human's decision, recorded under ``who.human`` (the user's e-mail)."""
        _check_decision(decision)
        now = self._d.clock.now()

        def job(repo: Repo) -> tuple[DecisionResult, Applied | None]:
            action = repo.get_action(tenant_id, action_id, for_update=True)
            if action is None:
                raise NotFoundError(f"no action {action_id!r}", code="NOT_FOUND")
            _check_pending(action)
            return self._record(repo, action, who, decision, reason, now)

        result, _ = self._d.store.write(job)
        self._d.notifier.notify(action_id)
        return result

    def _record(
        self, repo: Repo, action: Action, who: Decider, decision: str, reason: str | None, now: datetime,
    ) -> tuple[DecisionResult, Applied | None]:
        request = repo.get_approval_request(action.tenant_id, action.id)
        assert request is not None
        if request.expires_at <= now:
            raise GoneError(
                f"the approval request expired at {isoformat(request.expires_at)}", code="APPROVAL_EXPIRED"
            )
        people = TenantApprovers.load(repo, action.tenant_id)
        if who.human not in people.everyone(request):
            raise PermissionDeniedError(
                f"expected one of the approvers {', '.join(request.approvers)}, got {who.human}",
                code="NOT_AN_APPROVER",
            )
        decided = repo.approvals_for(action.tenant_id, action.id)
        if any(a.approver == who.human for a in decided):
            raise ConflictError(f"{who.human} has already decided on this action", code="ALREADY_RESOLVED")
        mine = Approval(
            self._d.ids.new("apv"), action.tenant_id, action.id, who.human, decision, reason, who.via, now,
            who.channel,
        )
        repo.insert_approval(mine)
        state = progress(request, [*decided, mine], people)
        applied = None
        if decision == "deny":
            applied = apply(self._d, repo, action, Event.DENY_BY_HUMAN, now, reason_code="DENIED_BY_HUMAN")
        elif state.complete:
            applied = apply(self._d, repo, action, Event.APPROVE, now)
        status = applied.status if applied else action.status
        result = DecisionResult(
            action.id, status, who.human, state.approvals, request.quorum, tuple(state.requirements)
        )
        return result, applied

    @staticmethod
    def _valid_code(repo: Repo, code: str, now: datetime) -> ApprovalCode:
        found = repo.get_approval_code(code) if code.startswith("APR-") and len(code) <= 64 else None
        if found is None:
            raise NotFoundError("no such approval code", code="NOT_FOUND")
        if found.used_at is not None or found.expires_at <= now:
            raise GoneError("the approval code was already used or has expired", code="CODE_EXPIRED")
        return found

    def status(self, tenant_id: str, action_id: str) -> dict[str, Any]:
        """The approval request, who was asked and the progress; never a usable code."""
        with self._d.store.read() as repo:
            action = repo.get_action(tenant_id, action_id)
            if action is None:
                raise NotFoundError(f"no action {action_id!r}", code="NOT_FOUND")
            request = repo.get_approval_request(tenant_id, action_id)
            codes = repo.approval_codes_for(tenant_id, action_id)
            approvals = repo.approvals_for(tenant_id, action_id)
            people = TenantApprovers.load(repo, tenant_id)
        if request is None:
            raise NotFoundError("this action was never held for approval", code="NOT_FOUND")
        state = progress(request, approvals, people)
        return {
            "action_id": action_id,
            "status": action.status.value,
            "approvers": list(request.approvers),
            "quorum": request.quorum,
            "requirements": state.requirements,
            "approvals_count": state.approvals,
            "complete": state.complete,
            "expires_at": isoformat(request.expires_at),
            "notified": [{"approver": c.approver, "used": c.used_at is not None} for c in codes],
            "approvals": approvals_view(approvals),
        }


def _check_decision(decision: str) -> None:
    if decision not in DECISIONS:
        raise ValidationError(
            f"expected decision 'approve' or 'deny', got {decision!r}", code="INVALID_DECISION"
        )


def _check_pending(action: Action) -> None:
    if action.status is not Status.PENDING_APPROVAL:
        raise ConflictError(
            f"expected a pending action, got one that is {action.status.value}", code="ALREADY_RESOLVED"
        )
