"""The authorization pipeline's vocabulary: the draft decision, stages, facts and guards.

``Authorizer`` (``authorize.py``) runs the pipeline; extensions (agent registry, grants,
budgets, rate limits, confirmations) plug in through these protocols:

- a ``FactProvider`` reads what its stage needs in the read phase (``facts.extra[name]``);
- a ``Stage`` raises the draft's effect with ``draft.hold(stage, effect, reason)``;
- a ``WriteGuard`` runs inside the write transaction and raises ``GuardStop`` to turn the
  outcome into a denial (with a halt receipt) or a hold, or a plain ``WarrantorError``
  (e.g. ``RateLimitedError``) to refuse with nothing written.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from warrantor.domain.model import ApprovalRequirement, Effect, Principal, strongest_effect
from warrantor.service.authorization.intent import Intent
from warrantor.service.authorization.policies import ActivePolicy
from warrantor.store import Repo


@dataclass(frozen=True)
class Outcome:
    """An HTTP-shaped result: status code and JSON body (a problem document when >= 400)."""

    status_code: int
    body: dict[str, Any]


class GuardStop(Exception):  # noqa: N818 - a control-flow signal, not an error
    """Raised by a write guard (budgets, rate limits) inside the write transaction.

    The transaction's savepoint rolls back; the authorizer then records the action with
    ``effect`` at ``stage`` (a halt receipt for deny) in a second write.
    """

    def __init__(self, stage: str, effect: Effect, reason: str, *, code: str | None = None,
                 details: dict[str, Any] | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(reason)
        self.stage, self.effect, self.reason = stage, effect, reason
        self.code = code or reason
        self.details = details or {}
        self.headers = headers or {}


class FactProvider(Protocol):
    """Reads what a stage needs (agent registry, grants) in the read phase."""

    name: str

    def read(self, repo: Repo, tenant_id: str, intent: Intent, facts: Facts) -> Any:
        """Read this provider's facts; ``facts`` holds what was read before (policies)."""
        ...


class Stage(Protocol):
    """One evaluation stage: may raise the draft's effect; returns a short outcome word."""

    name: str

    def run(self, draft: Draft, intent: Intent, facts: Facts) -> str: ...


class WriteGuard(Protocol):
    """Runs inside the write transaction before the action is inserted (budgets, rate
    limits, confirmations). Raises ``GuardStop`` to change the outcome."""

    name: str

    def reserve(self, repo: Repo, principal: Principal, action_id: str, intent: Intent,
                draft: Draft, now: datetime) -> None: ...


@dataclass
class Facts:
    tenant_id: str
    parent: dict[str, Any] | None
    policies: dict[str, ActivePolicy]
    extra: dict[str, Any] = field(default_factory=dict)
    # The action's commitment salt (evidence/commitments.py): it keys the digests of erasable
    # values that the decision carries (finding_hash, evaluation_hash). None in dry runs.
    salt: str | None = None

    @property
    def enforce(self) -> ActivePolicy | None:
        return self.policies.get("enforce")


@dataclass
class Draft:
    """The decision as the stages build it."""

    effect: Effect = Effect.ALLOW
    stage: str = "seal"
    reason: str | None = None
    rules: list[dict[str, Any]] = field(default_factory=list)
    stages: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    findings: list[dict[str, Any]] = field(default_factory=list)
    policy: dict[str, Any] | None = None
    evaluation_hash: str | None = None
    shadow: dict[str, Any] | None = None
    requirements: list[ApprovalRequirement] = field(default_factory=list)  # one per rule that held it
    default_approvers: tuple[str, ...] = ()  # the bundle's, for a hold no rule names approvers for
    approval_ttl_seconds: int | None = None
    confirmation: dict[str, Any] | None = None
    halt: dict[str, Any] | None = None
    deny_code: str | None = None

    def hold(self, stage: str, effect: Effect, reason: str) -> None:
        """Raise the effect if ``effect`` is stronger; the first stage to set it is kept."""
        if effect is not self.effect and strongest_effect([effect, self.effect]) is effect:
            self.effect, self.stage, self.reason = effect, stage, reason

    @property
    def stopped(self) -> bool:
        return self.effect is Effect.DENY

    def to_dict(self) -> dict[str, Any]:
        return {
            "effect": self.effect.value,
            "stage": self.stage,
            "reason": self.reason,
            "rules": self.rules,
            "policy": self.policy,
            "evaluation_hash": self.evaluation_hash,
            "findings": self.findings,
            "stages": self.stages,
            "shadow": self.shadow,
            "halt": self.halt,
        }


@dataclass
class _Bound:
    """A built-in stage: a bound method with a name."""

    name: str
    fn: Callable[[Draft, Intent, Facts], str]

    def run(self, draft: Draft, intent: Intent, facts: Facts) -> str:
        result: str = self.fn(draft, intent, facts)
        return result
