"""Domain records: what the service reasons about, independent of rows and requests.

Frozen dataclasses; the store builds them from rows and the server renders them. JSON
documents that are evidence (intent, decision, execution) stay plain dicts of JSON values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from warrantor.domain.lifecycle import Status


class Role(StrEnum):
    """An API key's role. ``gateway`` is the key of a gateway that executes the calls of
    one agent itself: bound to that agent, it may do what that agent's key may do, and it
    alone may report ``witnessed`` evidence."""

    AGENT = "agent"
    APP = "app"
    ADMIN = "admin"
    AUDITOR = "auditor"
    GATEWAY = "gateway"

    @property
    def acts_as_agent(self) -> bool:
        """Agent and gateway keys: machines acting for an agent, with the same rights."""
        return self in (Role.AGENT, Role.GATEWAY)


class Effect(StrEnum):
    ALLOW = "allow"
    DENY = "deny"
    REQUIRE_APPROVAL = "require_approval"
    CONFIRM = "confirm"


EFFECT_PRECEDENCE = (Effect.DENY, Effect.REQUIRE_APPROVAL, Effect.CONFIRM, Effect.ALLOW)


def strongest_effect(effects: list[Effect]) -> Effect:
    """deny > require_approval > confirm > allow; an empty list allows."""
    for effect in EFFECT_PRECEDENCE:
        if effect in effects:
            return effect
    return Effect.ALLOW


@dataclass(frozen=True)
class Principal:
    """Who is calling: an API key of a tenant, or the operator (``tenant_id`` None)."""

    tenant_id: str | None
    role: Role | None
    key_id: str | None = None
    agent_id: str | None = None
    user_id: str | None = None

    @property
    def is_operator(self) -> bool:
        return self.tenant_id is None and self.user_id is None


@dataclass(frozen=True)
class Tenant:
    id: str
    name: str
    created_at: datetime


@dataclass(frozen=True)
class ApiKey:
    id: str
    tenant_id: str
    role: Role
    agent_id: str | None
    prefix: str
    created_at: datetime
    revoked_at: datetime | None = None
    label: str | None = None


@dataclass(frozen=True)
class Action:
    id: str
    tenant_id: str
    status: Status
    action_type: str
    agent_id: str | None
    run_id: str | None
    parent_action_id: str | None
    intent: dict[str, Any]
    intent_digest: str
    decision: dict[str, Any]
    idempotency_key: str | None
    request_hash: str
    response_status: int
    response: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    warrant_id: str | None = None
    warrant_expires_at: datetime | None = None
    receipt_id: str | None = None
    execution: dict[str, Any] | None = None
    legal_hold: bool = False
    api_key_id: str | None = None
    parent: dict[str, Any] | None = None
    # ``intent`` is the full canonical intent while the details are kept, the committed
    # intent (``evidence/commitments.py``) once they are erased; ``committed_intent`` is
    # always the committed one, whose digest is ``intent_digest``.
    committed_intent: dict[str, Any] = field(default_factory=dict)
    details_salt: str | None = None
    erased_at: datetime | None = None
    erasure_id: str | None = None

    @property
    def erased(self) -> bool:
        return self.erased_at is not None


@dataclass(frozen=True)
class ApprovalRequirement:
    """One condition a held action must meet: ``quorum`` distinct humans, each resolved by
    one of ``approvers`` (an e-mail, a group, ``tenant-admins``), have approved.

    ``source`` says where it came from: ``rule:<policy id>``, ``default`` (the bundle's
    default approvers) or ``request`` (an approver the agent named, required in addition).
    """

    approvers: tuple[str, ...]
    quorum: int
    source: str

    def to_dict(self) -> dict[str, Any]:
        return {"approvers": list(self.approvers), "quorum": self.quorum, "source": self.source}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ApprovalRequirement:
        return cls(tuple(raw["approvers"]), int(raw["quorum"]), str(raw["source"]))


@dataclass(frozen=True)
class ApprovalRequest:
    """A held action's approval conditions: every requirement must be met.

    ``approvers`` is the union of the requirements' approvers (who may decide at all) and
    ``quorum`` the largest single requirement (the fewest distinct humans that can finish).
    """

    action_id: str
    tenant_id: str
    approvers: tuple[str, ...]
    quorum: int
    expires_at: datetime
    created_at: datetime
    requirements: tuple[ApprovalRequirement, ...] = ()

    @classmethod
    def of(
        cls, action_id: str, tenant_id: str, requirements: tuple[ApprovalRequirement, ...],
        expires_at: datetime, created_at: datetime,
    ) -> ApprovalRequest:
        union: list[str] = []
        for req in requirements:
            union.extend(a for a in req.approvers if a not in union)
        quorum = max((r.quorum for r in requirements), default=1)
        return cls(action_id, tenant_id, tuple(union), quorum, expires_at, created_at, requirements)


@dataclass(frozen=True)
class ApprovalCode:
    code: str
    tenant_id: str
    action_id: str
    approver: str
    expires_at: datetime
    used_at: datetime | None


@dataclass(frozen=True)
class Approval:
    id: str
    tenant_id: str
    action_id: str
    approver: str
    decision: str
    reason: str | None
    via: str  # "email-code", "console", "confirmation", "mcp-elicitation"
    decided_at: datetime
    channel: str = ""  # who was reached how: "code e-mailed to x@y", "console session of user usr_..."


@dataclass(frozen=True)
class Evidence:
    """A signed envelope (warrant, receipt, policy activation, legal hold, erasure) and its
    place in the log."""

    id: str
    tenant_id: str
    kind: str
    action_id: str | None
    envelope: dict[str, Any]
    envelope_digest: str
    log_index: int | None
    created_at: datetime
    timestamp_token: bytes | None = None
    sequence: int | None = None  # receipts, legal holds, erasures: the tenant's record number


@dataclass(frozen=True)
class Page:
    items: list[Any]
    page: int
    per_page: int
    total: int

    @property
    def has_more(self) -> bool:
        return self.page * self.per_page < self.total


@dataclass(frozen=True)
class ActionFilter:
    action_type: str | None = None
    agent_id: str | None = None
    status: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    legal_hold: bool | None = None
    extra: dict[str, Any] = field(default_factory=dict)
