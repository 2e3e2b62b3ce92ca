"""Reading actions: detail, list, long-poll, chain, and the expiry sweep (legal holds and
erasure: ``service/recordkeeping/records.py``).

An agent key bound to agent X reads only X's actions (``tenancy.sees_agent``): another
agent's action is 404 as if it did not exist, a list is always filtered to X (asking for
another agent is 403 ``AGENT_MISMATCH``), and a chain stops before the first ancestor that
is not X's (``truncated``).

Detail and list carry ``integrity`` (``service.integrity``): whether the stored intent
still matches the digest its evidence signs, checked against the key ring's trusted keys.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from warrantor.domain.clock import isoformat
from warrantor.domain.lifecycle import Event, Status, is_terminal
from warrantor.domain.model import Action, ActionFilter, Evidence, Principal, Role
from warrantor.errors import NotFoundError, ValidationError, WarrantorError
from warrantor.evidence.keys import VerifyKey
from warrantor.service.context import Deps
from warrantor.service.execution.transitions import apply
from warrantor.service.proof.integrity import check_actions
from warrantor.service.proof.sealing import approvals_view
from warrantor.service.recordkeeping.records import erased_view, hold_history
from warrantor.service.tenancy import bound_agent, require_role, sees_agent
from warrantor.store import Repo
from warrantor.store.repo_humans import cosignatures_view

log = logging.getLogger(__name__)

READ_ROLES = (Role.AGENT, Role.APP, Role.ADMIN, Role.AUDITOR)
MAX_WAIT_SECONDS = 60


def summary(action: Action) -> dict[str, Any]:
    return {
        "action_id": action.id,
        "action_type": action.action_type,
        "agent_id": action.agent_id,
        "status": action.status.value,
        "effect": action.decision.get("effect"),
        "stage": action.decision.get("stage"),
        "legal_hold": action.legal_hold,
        "erased_at": isoformat(action.erased_at) if action.erased_at else None,
        "parent_action_id": action.parent_action_id,
        "created_at": isoformat(action.created_at),
        "updated_at": isoformat(action.updated_at),
    }


def detail(repo: Repo, action: Action, keys: list[VerifyKey]) -> dict[str, Any]:
    recorded = repo.evidence_for_action(action.tenant_id, action.id)
    evidence = {e.id: e for e in recorded}
    request = repo.get_approval_request(action.tenant_id, action.id)
    out: dict[str, Any] = {
        **summary(action),
        **check_actions(repo, action.tenant_id, [action], keys)[action.id].to_dict(),
        # The full intent while its details are kept (the committed one after erasure), and
        # the salt that commits it: sha256(JCS(committed_intent(intent, salt))) = intent_digest.
        "intent": action.intent,
        "intent_salt": action.details_salt,
        "intent_digest": action.intent_digest,
        **erased_view(action),
        "legal_hold_history": hold_history(recorded),
        "decision": {k: v for k, v in action.decision.items() if v is not None},
        "approvals": approvals_view(repo.approvals_for(action.tenant_id, action.id)),
        "cosignatures": cosignatures_view(repo, action.tenant_id, action.id),
        "approval": None,
        "warrant": None,
        "receipt": None,
        "execution": action.execution,
        "warnings": action.response.get("warnings", []),
    }
    if request is not None:
        out["approval"] = {
            "approvers": list(request.approvers),
            "quorum": request.quorum,
            "requirements": [r.to_dict() for r in request.requirements],
            "expires_at": isoformat(request.expires_at),
        }
    for key, evidence_id in (("warrant", action.warrant_id), ("receipt", action.receipt_id)):
        ev = evidence.get(evidence_id) if evidence_id else None
        if ev is not None:
            out[key] = {
                f"{key}_id": ev.id,
                "envelope": ev.envelope,
                "envelope_digest": ev.envelope_digest,
                "log_index": ev.log_index,
                **({"sequence": ev.sequence} if key == "receipt" else {}),  # the tenant's record number
                "created_at": isoformat(ev.created_at),
            }
    if action.warrant_expires_at is not None:
        out["warrant_expires_at"] = isoformat(action.warrant_expires_at)
    return out


def sees_evidence(repo: Repo, principal: Principal, ev: Evidence) -> bool:
    """Whether ``principal`` may read ``ev``: an agent-bound key only its own actions' evidence."""
    if principal.agent_id is None:
        return True
    action = repo.get_action(ev.tenant_id, ev.action_id) if ev.action_id else None
    return action is not None and sees_agent(principal, action.agent_id)


class Actions:
    def __init__(self, deps: Deps) -> None:
        self._d = deps

    def require_evidence(self, principal: Principal, evidence_id: str, kind: str) -> None:
        """404 unless the principal may read this warrant or receipt (see ``sees_evidence``)."""
        tenant_id = require_role(principal, *READ_ROLES)
        if principal.agent_id is None:
            return
        with self._d.store.read() as repo:
            ev = repo.get_evidence(tenant_id, evidence_id)
            if ev is None or not sees_evidence(repo, principal, ev):
                raise NotFoundError(f"no {kind} {evidence_id!r}", code="NOT_FOUND")

    def get(self, principal: Principal, action_id: str) -> dict[str, Any]:
        tenant_id = require_role(principal, *READ_ROLES)
        with self._d.store.read() as repo:
            action = repo.get_action(tenant_id, action_id)
            if action is None or not sees_agent(principal, action.agent_id):
                raise NotFoundError(f"no action {action_id!r}", code="NOT_FOUND")
            return detail(repo, action, self._d.keyring.trusted_keys())

    def wait(self, principal: Principal, action_id: str, seconds: float) -> dict[str, Any]:
        """The action once its status changes, or as it is after ``seconds``.

        In-process changes wake the waiter at once; changes made by another process are
        seen by polling the store every half second.
        """
        seconds = min(max(seconds, 0.0), MAX_WAIT_SECONDS)
        seen = self._d.notifier.version(action_id)
        first = self.get(principal, action_id)
        if is_terminal(Status(first["status"])) or seconds == 0:
            return first
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            seen = self._d.notifier.wait(action_id, seen, min(0.5, remaining))
            current = self.get(principal, action_id)
            if current["status"] != first["status"]:
                return current
        return self.get(principal, action_id)

    def list(self, principal: Principal, flt: ActionFilter, page: int, per_page: int) -> dict[str, Any]:
        tenant_id = require_role(principal, *READ_ROLES)
        if page < 1 or not 1 <= per_page <= 100:
            raise ValidationError(
                f"expected page >= 1 and 1 <= per_page <= 100, got page={page}, per_page={per_page}",
                code="INVALID_PAGINATION",
            )
        if principal.agent_id is not None:
            flt = dataclasses.replace(flt, agent_id=bound_agent(principal, flt.agent_id))
        keys = self._d.keyring.trusted_keys()
        with self._d.store.read() as repo:
            result = repo.list_actions(tenant_id, flt, page, per_page)
            integrity = check_actions(repo, tenant_id, result.items, keys)
        return {
            "data": [{**summary(a), "integrity": integrity[a.id].status} for a in result.items],
            "pagination": {
                "page": result.page,
                "per_page": result.per_page,
                "total": result.total,
                "has_more": result.has_more,
            },
        }

    def chain(self, principal: Principal, action_id: str, max_depth: int = 64) -> dict[str, Any]:
        """The action and its ancestors, nearest first."""
        tenant_id = require_role(principal, *READ_ROLES)
        chain: list[dict[str, Any]] = []
        truncated = False
        with self._d.store.read() as repo:
            current: str | None = action_id
            while current is not None and len(chain) < max_depth:
                action = repo.get_action(tenant_id, current)
                if action is None or not sees_agent(principal, action.agent_id):
                    if not chain:
                        raise NotFoundError(f"no action {action_id!r}", code="NOT_FOUND")
                    truncated = action is not None
                    break
                item = summary(action)
                item["intent_digest"] = action.intent_digest
                item["parent"] = action.parent
                item["evidence"] = [
                    {"id": e.id, "kind": e.kind, "envelope_digest": e.envelope_digest, "log_index": e.log_index}
                    for e in repo.evidence_for_action(tenant_id, action.id)
                ]
                chain.append(item)
                current = action.parent_action_id
        return {"action_id": action_id, "chain": chain, "truncated": truncated}


class ExpirySweeper:
    """Ends held actions past their approval expiry and warrants never executed."""

    def __init__(self, deps: Deps) -> None:
        self._d = deps
        self.also: list[Callable[[], int]] = []  # further sweeps (lost executions), same schedule

    def sweep(self) -> int:
        done = self._expire_due()
        for extra in self.also:
            done += extra()
        return done

    def _expire_due(self) -> int:
        now = self._d.clock.now()
        with self._d.store.read() as repo:
            due = repo.due_for_expiry(now, self._d.limits.notarize_grace_seconds)
        done = 0
        for tenant_id, action_id, _status in due:
            try:
                self._d.store.write(functools.partial(self._expire, tenant_id=tenant_id, action_id=action_id, now=now))
                done += 1
            except WarrantorError as exc:  # moved concurrently: someone decided first
                log.info("expiry of %s skipped: %s", action_id, exc)
            self._d.notifier.notify(action_id)
        return done

    def _expire(self, repo: Repo, *, tenant_id: str, action_id: str, now: datetime) -> None:
        action = repo.get_action(tenant_id, action_id, for_update=True)
        if action is None:
            return
        reason = "APPROVAL_EXPIRED" if action.status in (
            Status.PENDING_APPROVAL, Status.PENDING_CONFIRMATION) else "WARRANT_EXPIRED"
        apply(self._d, repo, action, Event.EXPIRE, now, reason_code=reason)
