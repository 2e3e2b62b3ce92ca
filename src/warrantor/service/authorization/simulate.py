"""Simulation: replay a candidate bundle over recorded actions (docs/guardrails.md).

``POST /v1/policies/simulate`` takes a stored bundle's hash and a time range, and for every
recorded action in it (oldest first, at most ``limit``) evaluates the action's stored
canonical intent (``Intent.from_canonical``) with ``Authorizer.evaluate`` against the
candidate as the enforcing bundle. It reports each action whose effect would change (old
and new effect, stage, reason and rules), counts per effect transition and, per rule of the
candidate, how many replayed actions it matched and how many of those changed.

What it does not replay: write-time guards (budgets and rate limits depend on what else
was running then), so actions originally stopped at stage ``budget`` are counted as
``not_replayed`` and never reported as changes; and facts are today's (agent registry,
runs), not those at the time. Actions whose details were erased (retention, a request)
have no payload left to evaluate and are counted as ``not_replayed`` too. It writes nothing.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

from warrantor.domain.clock import isoformat
from warrantor.domain.model import Principal, Role
from warrantor.errors import ValidationError, WarrantorError
from warrantor.evidence.commitments import is_committed
from warrantor.service.authorization.authorize import Authorizer, Facts
from warrantor.service.authorization.intent import Intent
from warrantor.service.authorization.policies import ActivePolicy, Policies
from warrantor.service.context import Deps
from warrantor.service.tenancy import require_role
from warrantor.store import repo_guard as rg

MAX_LIMIT = 5000
DEFAULT_LIMIT = 1000
GUARD_STAGES = frozenset({"budget", "rate_limit"})


class Simulator:
    def __init__(self, deps: Deps, policies: Policies, authorizer: Authorizer) -> None:
        self._d = deps
        self._policies = policies
        self._authorizer = authorizer

    def simulate(self, principal: Principal, bundle_hash: str, start: datetime | None,
                 end: datetime | None, limit: int | None) -> dict[str, Any]:
        tenant_id = require_role(principal, Role.ADMIN, Role.AUDITOR)
        limit = DEFAULT_LIMIT if limit is None else limit
        if not 1 <= limit <= MAX_LIMIT:
            raise ValidationError(f"expected 1 <= limit <= {MAX_LIMIT}, got {limit}", code="INVALID_LIMIT")
        if start and end and end <= start:
            raise ValidationError("expected 'from' before 'to', got an empty range", code="INVALID_RANGE")
        bundle = self._policies.get(tenant_id, bundle_hash)
        candidate = {"enforce": ActivePolicy(self._policies.compiled(bundle), "enforce", self._d.clock.now())}
        report = _Report()
        with self._d.store.read() as repo:
            for action_id, intent_doc, decision, _created in rg.actions_in_range(repo, tenant_id, start, end, limit):
                if decision.get("stage") in GUARD_STAGES or is_committed(intent_doc):
                    report.skip()  # a guard's verdict, or details erased: nothing to replay
                    continue
                intent = Intent.from_canonical(intent_doc)
                facts = Facts(tenant_id, None, candidate)
                try:
                    for provider in self._authorizer.providers:
                        facts.extra[provider.name] = provider.read(repo, tenant_id, intent, facts)
                    draft = self._authorizer.evaluate(intent, facts)
                    new = {"effect": draft.effect.value, "stage": draft.stage, "reason": draft.reason,
                           "rules": [r["id"] for r in draft.rules]}
                except WarrantorError as exc:
                    new = {"effect": "deny", "stage": "validate", "reason": exc.code, "rules": []}
                report.add(action_id, decision, new)
        return {"bundle_hash": bundle.hash, "from": isoformat(start) if start else None,
                "to": isoformat(end) if end else None, **report.to_dict()}


class _Report:
    def __init__(self) -> None:
        self.replayed = 0
        self.not_replayed = 0
        self.changes: list[dict[str, Any]] = []
        self.transitions: Counter[str] = Counter()
        self.matched: Counter[str] = Counter()
        self.changed_by_rule: Counter[str] = Counter()

    def skip(self) -> None:
        self.not_replayed += 1

    def add(self, action_id: str, old: dict[str, Any], new: dict[str, Any]) -> None:
        self.replayed += 1
        old_rules = [r["id"] for r in old.get("rules") or []]
        self.matched.update(new["rules"])
        if old.get("effect") == new["effect"]:
            return
        self.transitions[f"{old.get('effect')}->{new['effect']}"] += 1
        self.changed_by_rule.update(new["rules"] or ["(none)"])
        self.changes.append({
            "action_id": action_id,
            "old": {"effect": old.get("effect"), "stage": old.get("stage"), "reason": old.get("reason"),
                    "rules": old_rules},
            "new": new,
        })

    def to_dict(self) -> dict[str, Any]:
        rules = sorted(set(self.matched) | set(self.changed_by_rule))
        return {
            "replayed": self.replayed,
            "not_replayed": self.not_replayed,
            "changed": len(self.changes),
            "transitions": dict(sorted(self.transitions.items())),
            "rules": {r: {"matched": self.matched[r], "changed": self.changed_by_rule[r]} for r in rules},
            "changes": self.changes,
        }
