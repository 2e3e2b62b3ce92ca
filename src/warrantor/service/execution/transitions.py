"""Moving a stored action through the lifecycle, inside a write job.

Every change of state goes through ``apply``: it asks the domain transition table,
compare-and-sets the status in the store (so two writers can never both win), and mints
the receipt when the new state is terminal, or the warrant when it is ``approved``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from warrantor.domain.lifecycle import Event, Status, is_terminal, transition
from warrantor.domain.model import Action
from warrantor.errors import ConflictError
from warrantor.service.context import Deps
from warrantor.service.proof.sealing import Sealed, record
from warrantor.store import Repo
from warrantor.store.sequencing import LogTicket


@dataclass(frozen=True)
class Applied:
    action_id: str
    status: Status
    receipt: Sealed | None = None
    warrant: Sealed | None = None
    logged: LogTicket | None = None  # the warrant's and/or receipt's log indices, in that order

    @property
    def receipt_log_index(self) -> int | None:
        """The receipt's log index; known once the write is sequenced, not inside the job
        (a response built there uses ``logged.fill``)."""
        return self.logged.last if self.receipt is not None and self.logged is not None else None

    def fill_receipt_index(self, target: dict[str, Any], key: str = "log_index") -> None:
        """Set ``target[key]`` to the receipt's log index once the write is sequenced."""
        if self.receipt is not None and self.logged is not None:
            self.logged.fill(target, key, self.logged.count - 1)

    def receipt_view(self) -> dict[str, Any] | None:
        """``{receipt_id, envelope, sequence, log_index}`` for a response built inside the
        write job: the envelope (signed with its record sequence number) and the log index
        are filled in when the write is sequenced, before the caller is answered."""
        if self.receipt is None:
            return None
        view: dict[str, Any] = {"receipt_id": self.receipt.evidence_id, "envelope": None, "sequence": None,
                                "log_index": None}
        self.receipt.when_sealed(lambda s: view.update(envelope=s.envelope.to_dict(), sequence=s.sequence))
        self.fill_receipt_index(view)
        return view


def warrant_digest(repo: Repo, action: Action) -> str | None:
    if action.warrant_id is None:
        return None
    ev = repo.get_evidence(action.tenant_id, action.warrant_id)
    return ev.envelope_digest if ev else None


def apply(
    deps: Deps,
    repo: Repo,
    action: Action,
    event: Event,
    now: datetime,
    *,
    reason_code: str | None = None,
    execution: dict[str, Any] | None = None,
    match: dict[str, Any] | None = None,
    extra_receipt: dict[str, Any] | None = None,
) -> Applied:
    target = transition(action.status, event)
    values: dict[str, Any] = {"status": target, "updated_at": now}
    if execution is not None:
        values["execution"] = execution
    approvals = repo.approvals_for(action.tenant_id, action.id)
    sealed_receipt = sealed_warrant = None
    if target is Status.APPROVED:
        not_after = now + timedelta(seconds=deps.limits.warrant_ttl_seconds)
        sealed_warrant = deps.sealer.warrant(
            tenant_id=action.tenant_id,
            action_id=action.id,
            intent=action.committed_intent,  # what evidence signs: no erasable value
            intent_digest=action.intent_digest,
            decision=action.decision,
            approvals=approvals,
            parent=action.parent,
            issued_at=now,
            not_after=not_after,
        )
        values.update(warrant_id=sealed_warrant.evidence_id, warrant_expires_at=not_after)
    if is_terminal(target):
        sealed_receipt = deps.sealer.receipt(
            tenant_id=action.tenant_id,
            action_id=action.id,
            status=target.value,
            intent_digest=action.intent_digest,
            decision=action.decision,
            approvals=approvals,
            parent=action.parent,
            issued_at=now,
            warrant_digest=warrant_digest(repo, action),
            execution=execution,
            match=match,
            reason_code=reason_code,
            extra=extra_receipt,
        )
        values["receipt_id"] = sealed_receipt.evidence_id
    if not repo.update_action(action.tenant_id, action.id, action.status, **values):
        raise ConflictError(
            f"action {action.id} changed state concurrently", code="INVALID_ACTION_STATE"
        )
    for hook in deps.transition_hooks:
        hook(repo, action, target, execution, now)
    deps.events.emit(repo, action.tenant_id, f"action.{_event_name(target)}", {
        "action_id": action.id, "status": target.value, "action_type": action.action_type,
        "agent_id": action.agent_id, "reason_code": reason_code,
    })
    sealed = [s for s in (sealed_warrant, sealed_receipt) if s is not None]
    logged = record(repo, [(s, action.tenant_id, action.id) for s in sealed], now) if sealed else None
    return Applied(action.id, target, sealed_receipt, sealed_warrant, logged)


def _event_name(status: Status) -> str:
    """Webhook event names: ``action.approved``, ``action.denied`` (any denial), ..."""
    if status in (Status.DENIED, Status.DENIED_BY_HUMAN, Status.DENIED_BY_USER):
        return "denied"
    return status.value
