"""Human approval of held actions by single-use approval codes.

An approval code (``APR-`` + 100 random bits) is itself the credential: whoever holds it
may review the action and decide once. Rules:

- an unknown code is 404; a code already used or past its expiry is 410 ``CODE_EXPIRED``;
- an action that is no longer ``pending_approval`` is 409 ``ALREADY_RESOLVED``;
- ``approve`` counts towards the quorum (distinct approvers); reaching it moves the action
  to ``approved`` and mints the warrant;
- one ``deny`` ends the action as ``denied_by_human`` with a receipt (a veto).

Every decision is recorded with who, when, why and how (``via``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from warrantor.domain.clock import isoformat
from warrantor.domain.lifecycle import Event, Status
from warrantor.domain.model import Action, Approval, ApprovalCode
from warrantor.errors import ConflictError, GoneError, NotFoundError, ValidationError
from warrantor.service.context import Deps
from warrantor.service.transitions import Applied, apply
from warrantor.store import Repo

DECISIONS = ("approve", "deny")


@dataclass(frozen=True)
class DecisionResult:
    action_id: str
    status: Status
    approver: str
    approvals: int
    quorum: int


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
        assert action is not None and request is not None
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
            "approvals": sum(1 for a in approvals if a.decision == "approve"),
            "expires_at": isoformat(found.expires_at),
            "created_at": isoformat(action.created_at),
        }

    def decide_by_code(self, code: str, decision: str, reason: str | None) -> DecisionResult:
        if decision not in DECISIONS:
            raise ValidationError(
                f"expected decision 'approve' or 'deny', got {decision!r}", code="INVALID_DECISION"
            )
        now = self._d.clock.now()

        def job(repo: Repo) -> tuple[DecisionResult, Applied | None]:
            found = self._valid_code(repo, code, now)
            action = repo.get_action(found.tenant_id, found.action_id, for_update=True)
            assert action is not None
            if action.status is not Status.PENDING_APPROVAL:
                raise ConflictError(
                    f"expected a pending action, got one that is {action.status.value}",
                    code="ALREADY_RESOLVED",
                )
            if not repo.use_approval_code(code, now):
                raise GoneError("the approval code was already used", code="CODE_EXPIRED")
            return self._record(repo, action, found.approver, decision, reason, "code", now)

        result, _ = self._d.store.write(job)
        self._d.notifier.notify(result.action_id)
        return result

    def decide_by_user(
        self, tenant_id: str, action_id: str, approver: str, decision: str, reason: str | None,
        *, via: str = "console",
    ) -> DecisionResult:
        """A logged-in human's decision. The caller has checked that ``approver`` (the
        user's identity) is eligible for this action; quorum counts distinct approvers."""
        if decision not in DECISIONS:
            raise ValidationError(
                f"expected decision 'approve' or 'deny', got {decision!r}", code="INVALID_DECISION"
            )
        now = self._d.clock.now()

        def job(repo: Repo) -> tuple[DecisionResult, Applied | None]:
            action = repo.get_action(tenant_id, action_id, for_update=True)
            if action is None:
                raise NotFoundError(f"no action {action_id!r}", code="NOT_FOUND")
            if action.status is not Status.PENDING_APPROVAL:
                raise ConflictError(
                    f"expected a pending action, got one that is {action.status.value}",
                    code="ALREADY_RESOLVED",
                )
            return self._record(repo, action, approver, decision, reason, via, now)

        result, _ = self._d.store.write(job)
        self._d.notifier.notify(action_id)
        return result

    def _record(
        self, repo: Repo, action: Action, approver: str, decision: str, reason: str | None,
        via: str, now: datetime,
    ) -> tuple[DecisionResult, Applied | None]:
        if any(a.approver == approver for a in repo.approvals_for(action.tenant_id, action.id)):
            raise ConflictError(f"{approver} has already decided on this action", code="ALREADY_RESOLVED")
        repo.insert_approval(
            Approval(self._d.ids.new("apv"), action.tenant_id, action.id, approver, decision, reason, via, now)
        )
        request = repo.get_approval_request(action.tenant_id, action.id)
        assert request is not None
        approved = sum(1 for a in repo.approvals_for(action.tenant_id, action.id) if a.decision == "approve")
        applied = None
        if decision == "deny":
            applied = apply(self._d, repo, action, Event.DENY_BY_HUMAN, now, reason_code="DENIED_BY_HUMAN")
        elif approved >= request.quorum:
            applied = apply(self._d, repo, action, Event.APPROVE, now)
        status = applied.status if applied else action.status
        return DecisionResult(action.id, status, approver, approved, request.quorum), applied

    @staticmethod
    def _valid_code(repo: Repo, code: str, now: datetime) -> ApprovalCode:
        found = repo.get_approval_code(code) if code.startswith("APR-") and len(code) <= 64 else None
        if found is None:
            raise NotFoundError("no such approval code", code="NOT_FOUND")
        if found.used_at is not None or found.expires_at <= now:
            raise GoneError("the approval code was already used or has expired", code="CODE_EXPIRED")
        return found

    def codes_for_admin(self, tenant_id: str, action_id: str) -> dict[str, Any]:
        with self._d.store.read() as repo:
            action = repo.get_action(tenant_id, action_id)
            if action is None:
                raise NotFoundError(f"no action {action_id!r}", code="NOT_FOUND")
            request = repo.get_approval_request(tenant_id, action_id)
            codes = repo.approval_codes_for(tenant_id, action_id)
            approvals = repo.approvals_for(tenant_id, action_id)
        if request is None:
            raise NotFoundError("this action was never held for approval", code="NOT_FOUND")
        return {
            "action_id": action_id,
            "status": action.status.value,
            "approvers": list(request.approvers),
            "quorum": request.quorum,
            "expires_at": isoformat(request.expires_at),
            "codes": [
                {"approver": c.approver, "code": c.code, "used": c.used_at is not None}
                for c in codes
            ],
            "approvals": [
                {"approver": a.approver, "decision": a.decision, "reason": a.reason,
                 "via": a.via, "decided_at": isoformat(a.decided_at)}
                for a in approvals
            ],
        }
