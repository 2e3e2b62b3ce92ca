"""Evaluate a policy bundle on one normalized input: every matching rule, fail closed.

docs/guardrails.md. Cedar answers Allow or Deny and, in its diagnostics, lists only the
policies that *determined* that answer: on Deny the satisfied ``forbid`` policies, on Allow
the satisfied ``permit`` policies. Warrantor needs both (a ``require_approval`` forbid
means nothing if no permit matched), so the engine prepares, once per bundle, a shadow
policy set in which every policy's effect is ``permit``, conditions unchanged. One Cedar
call on that set returns Allow with *every* satisfied policy in ``reasons`` and every
policy that failed at run time in ``errors``; the bundle's own annotations then decide:

- any error (a diagnostics error, a request the schema rejects, an exception from
  cedarpy) -> ``deny`` with the synthetic rule ``POLICY_ERROR``. Cedar itself would skip
  an erroring ``forbid`` and allow; Warrantor does not.
- a satisfied forbid -> its ``@effect``; precedence deny > require_approval > confirm.
  The effect only stands if a permit is satisfied too: with no permit, Cedar would deny
  even after an approval, so the decision is ``deny`` (``NO_MATCHING_PERMIT``).
- otherwise a satisfied permit -> ``allow``; nothing satisfied -> ``deny``.

Requests are evaluated with the bundle's schema, so a context that does not match the
action's declared context (an undeclared action type, a payload attribute of the wrong
type or not declared) is an error, hence a deny. When Cedar refuses to build the request
because its *context* breaks the schema, the decision also carries ``mismatch``: the first
field that does, and the type the schema declares (:mod:`~warrantor.policy.context_types`),
so that the live pipeline can refuse it as bad input (422 ``PAYLOAD_SCHEMA_MISMATCH``)
rather than record a denial; replay still sees the same deny. Policy set, schema and the empty entity
store are parsed once in the constructor. The shadow set is the bundle's text with each
``forbid`` effect keyword replaced by ``permit`` (same length, so positions do not move),
parsed by Cedar's text parser: never through Cedar's JSON form, whose conversion recurses
once per level of a condition and crashed the process on a long ``&&`` chain.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import cedarpy

from warrantor.evidence.canonical import digest
from warrantor.policy._scan import policy_head, scan
from warrantor.policy.bundle import MAX_NESTING, PolicyBundle, PolicyInfo
from warrantor.policy.context_types import Mismatch, Type, context_types, first_mismatch
from warrantor.policy.normalize import PolicyInput

PRECEDENCE = ("deny", "require_approval", "confirm", "allow")
POLICY_ERROR = "POLICY_ERROR"
NO_MATCHING_PERMIT = "NO_MATCHING_PERMIT"
_POLICY_REF = re.compile(r"`(policy\d+)`")
_BUILD_FAILED = "failed to build request"  # cedarpy: the request does not fit the schema


@dataclass(frozen=True)
class RuleMatch:
    id: str
    effect: str
    reason: str
    message: str
    approvers: tuple[str, ...] = ()
    quorum: int | None = None
    approval_ttl_seconds: int | None = None

    @classmethod
    def from_policy(cls, info: PolicyInfo) -> RuleMatch:
        return cls(
            info.id,
            info.effect,
            info.reason,
            info.message,
            info.approvers,
            info.quorum,
            info.approval_ttl_seconds,
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "effect": self.effect,
            "reason": self.reason,
            "message": self.message,
        }
        if self.approvers:
            out["approvers"] = list(self.approvers)
        if self.quorum is not None:
            out["quorum"] = self.quorum
        if self.approval_ttl_seconds is not None:
            out["approval_ttl_seconds"] = self.approval_ttl_seconds
        return out


@dataclass(frozen=True)
class PolicyDecision:
    effect: str  # allow | deny | require_approval | confirm
    rules: tuple[RuleMatch, ...]  # deciding rules first, then the other matches
    errors: tuple[str, ...] = ()
    mismatch: Mismatch | None = None  # the request's context breaks the schema (then effect is deny)

    @property
    def reason(self) -> str:
        if self.errors:
            return POLICY_ERROR
        for rule in self.rules:
            if rule.effect == self.effect:
                return rule.reason
        return NO_MATCHING_PERMIT if self.effect == "deny" else self.effect.upper()

    @property
    def deciding_rules(self) -> tuple[RuleMatch, ...]:
        return tuple(r for r in self.rules if r.effect == self.effect)

    def to_dict(self) -> dict[str, Any]:
        return {
            "effect": self.effect,
            "reason": self.reason,
            "rules": [r.to_dict() for r in self.rules],
            "errors": list(self.errors),
        }


def _error_decision(errors: list[str], matched: tuple[RuleMatch, ...] = (),
                    mismatch: Mismatch | None = None) -> PolicyDecision:
    rule = RuleMatch(
        POLICY_ERROR, "deny", POLICY_ERROR, "policy evaluation failed: " + "; ".join(errors)
    )
    return PolicyDecision("deny", (rule, *matched), tuple(errors), mismatch)


class PolicyEngine:
    """A bundle prepared for evaluation; thread-safe (cedarpy handles are immutable)."""

    def __init__(self, bundle: PolicyBundle) -> None:
        self.bundle = bundle
        self._policies = cedarpy.PolicySet.from_str(_all_permit(bundle.cedar))
        self._schema = cedar_schema(bundle.schema)
        # Built with the schema, so the schema's action entities and their groups are
        # present: without them `action in Action::"group"` never matched a member and a
        # forbid written that way silently did nothing (fail open).
        self._entities = cedarpy.Entities.from_json_str("[]", self._schema)
        self._info = {p.cedar_id: p for p in bundle.policies}
        self._names = {p.cedar_id: p.id for p in bundle.policies}
        self._contexts: dict[str, Type] | None = None  # read from the schema when first needed

    def evaluate(self, inp: PolicyInput) -> PolicyDecision:
        try:
            result = cedarpy.is_authorized(
                inp.to_dict(), self._policies, self._entities, schema=self._schema
            )
            diagnostics = result.diagnostics
            matched = self._matches(diagnostics.reasons)
            errors = [self._rename(e) for e in diagnostics.errors]
            if result.decision is cedarpy.Decision.NoDecision and not errors:
                errors = ["cedar returned no decision"]
        except Exception as exc:
            return _error_decision([f"{type(exc).__name__}: {exc}"])
        if errors:
            return _error_decision(errors, matched, self._mismatch(inp, errors))
        return _decide(matched)

    def _mismatch(self, inp: PolicyInput, errors: list[str]) -> Mismatch | None:
        """The field that breaks the schema, when Cedar could not build the request because
        of its context (an undeclared action or principal type is the policy's answer, not
        a malformed request, and stays a plain deny)."""
        if not any(e.startswith(_BUILD_FAILED) and "context" in e for e in errors):
            return None
        try:
            if self._contexts is None:
                self._contexts = context_types(self.bundle.schema)
            declared = self._contexts.get(inp.action_type)
            found = first_mismatch(declared, inp.context) if declared is not None else None
        except Exception:  # the explanation is best effort; the refusal is Cedar's
            found = None
        return found or Mismatch("payload", f"the context the bundle's schema declares for {inp.action_type}",
                                 "a value that does not fit it")

    def _matches(self, reasons: list[str]) -> tuple[RuleMatch, ...]:
        infos = sorted(
            (self._info[r] for r in reasons),
            key=lambda p: (PRECEDENCE.index(p.effect), int(p.cedar_id[6:])),
        )
        return tuple(RuleMatch.from_policy(p) for p in infos)

    def _rename(self, error: str) -> str:
        """cedarpy names policies ``policy<N>``; show the bundle's ``@id`` instead."""
        return _POLICY_REF.sub(lambda m: f"`{self._names.get(m[1], m[1])}`", error)


def cedar_schema(schema: str | dict[str, Any]) -> cedarpy.Schema:
    """A bundle's schema (a JSON object, JSON text or Cedar schema text) as cedarpy's handle."""
    if isinstance(schema, dict):
        return cedarpy.Schema.from_json_str(json.dumps(schema))
    if schema.lstrip().startswith("{"):
        return cedarpy.Schema.from_json_str(schema)
    return cedarpy.Schema.from_str(schema)


def _all_permit(cedar: str) -> str:
    """The policy text with every ``forbid`` effect turned into ``permit``."""
    out = list(cedar)
    for stmt in scan(cedar, max_depth=MAX_NESTING):
        effect, _ = policy_head(cedar, stmt)
        start, end = stmt.tokens[effect]
        out[start:end] = "permit"
    return "".join(out)


def _decide(matched: tuple[RuleMatch, ...]) -> PolicyDecision:
    if not any(r.effect == "allow" for r in matched):
        return PolicyDecision("deny", matched)
    return PolicyDecision(matched[0].effect, matched)


def evaluation_hash(bundle_hash: str, inp: PolicyInput, decision: PolicyDecision, salt: str | None = None) -> str:
    """Hex sha256 of the RFC 8785 form of the bundle hash, the input and the outcome, and
    with ``salt`` the salt too.

    An authorization passes its action's commitment salt (``evidence/commitments.py``): the
    input holds the payload, and a hash of a guessable payload signed into evidence would
    confirm a guess after the payload is erased; the salt is erased with it. Dry runs,
    which record nothing, pass none."""
    rules = sorted((r.id, r.effect) for r in decision.rules)
    doc: dict[str, Any] = {
        "bundle_hash": bundle_hash,
        "input": inp.to_dict(),
        "effect": decision.effect,
        "rules": [{"id": i, "effect": e} for i, e in rules],
    }
    if salt is not None:
        doc["salt"] = salt
    return digest(doc)
