"""The built-in evaluation stages: detectors, endpoint allowlist, Cedar policy (and shadow).

Pure functions of the draft, the intent and the facts read for it: nothing is written.
The policy stage is also what replay uses (``decide``), so a recorded decision can be
re-evaluated exactly as it was made.
"""

from __future__ import annotations

import re
from typing import Any

from warrantor.domain.approvers import TENANT_ADMINS
from warrantor.domain.model import ApprovalRequirement, Effect
from warrantor.errors import ValidationError
from warrantor.policy.detectors import strongest
from warrantor.policy.endpoints import EndpointError, TLSPinMismatchError, check_pin, parse_endpoint
from warrantor.policy.engine import PolicyDecision, evaluation_hash
from warrantor.policy.http_request import HTTP_ACTION, cedar_payload, explicitly_allowed, parse_http_request
from warrantor.policy.normalize import PolicyInput, build_input
from warrantor.service.authorization.intent import Intent
from warrantor.service.authorization.pipeline import Draft, Facts
from warrantor.service.authorization.policies import ActivePolicy

_FIELD = re.compile(r"[A-Za-z_][\w]*(\.[^.\s:\[\]]+|\[\d+\]|\[\])*")  # payload.a[0].b: where a message starts


def detectors_stage(draft: Draft, intent: Intent, facts: Facts) -> str:
    enforce = facts.enforce
    if enforce is None or not enforce.compiled.detectors.enabled:
        return "skipped"
    findings = enforce.compiled.detectors.scan(intent.details, intent.payload or {}, intent.context or {},
                                               salt=facts.salt)
    draft.findings = [f.to_dict() for f in findings]
    mode = strongest(findings)
    if mode == "deny":
        draft.hold("detectors", Effect.DENY, "CONTENT_SIGNATURE_MATCH")
    elif mode == "require_approval":
        draft.hold("detectors", Effect.REQUIRE_APPROVAL, "CONTENT_SIGNATURE_MATCH")
    return mode or "pass"


def endpoint_stage(draft: Draft, intent: Intent, facts: Facts) -> str:
    enforce = facts.enforce
    # A request Warrantor may send itself (docs/execute.md): its shape is checked first (422
    # INVALID_HTTP_REQUEST), and only a host the allowlist names for it explicitly passes.
    http = parse_http_request(intent.payload, intent.endpoint_url) if intent.action_type == HTTP_ACTION else None
    if enforce is None or intent.endpoint_url is None:
        return "skipped"
    if http is not None:
        verdict = explicitly_allowed(enforce.compiled.endpoints, http)
    else:
        verdict = enforce.compiled.endpoints.check(intent.action_type, intent.endpoint_url)
    if not verdict.allowed:
        draft.hold("endpoint", Effect.DENY, verdict.reason or "ENDPOINT_NOT_ALLOWED")
        return "deny"
    pins = enforce.compiled.endpoints.pins_for(verdict.host) if verdict.host else ()
    if pins:
        endpoint = parse_endpoint(intent.endpoint_url)
        try:
            check_pin(endpoint.host, endpoint.port, pins)
        except TLSPinMismatchError:
            draft.hold("endpoint", Effect.DENY, "ENDPOINT_TLS_MISMATCH")
            return "deny"
    return "pass"


def policy_stage(draft: Draft, intent: Intent, facts: Facts) -> str:
    enforce = facts.enforce
    if enforce is None:
        draft.hold("policy", Effect.DENY, "NO_ACTIVE_POLICY")
        draft.rules.append(
            {"id": "NO_ACTIVE_POLICY", "effect": "deny", "reason": "NO_ACTIVE_POLICY",
             "message": "no policy bundle is active in enforce mode for this tenant"}
        )
        return "deny"
    decision, inp = decide(intent, enforce)
    if decision.mismatch is not None:  # bad input, not a decision: refused before anything is recorded
        m = decision.mismatch
        raise ValidationError(
            m.message, code="PAYLOAD_SCHEMA_MISMATCH",
            details={"field": m.field, "expected": m.expected, "got": m.got,
                     "action_type": intent.action_type, "bundle_hash": enforce.bundle.hash},
        )
    draft.policy = {"bundle_hash": enforce.bundle.hash, "mode": "enforce"}
    draft.evaluation_hash = evaluation_hash(enforce.bundle.hash, inp, decision, facts.salt)
    draft.rules = [r.to_dict() for r in decision.rules]
    effect = Effect(decision.effect)
    if effect is not Effect.ALLOW:
        draft.hold("policy", effect, decision.reason)
    # Each rule that holds the action is its own requirement: widening one rule's approvers
    # with another's would let an agent that trips a second rule pick who approves the first.
    draft.default_approvers = enforce.bundle.config.approvals.default_approvers
    # An allow rule holds nothing: an action the caller asked to hold gets the default requirement.
    for rule in decision.deciding_rules if effect is not Effect.ALLOW else ():
        approvers = rule.approvers or draft.default_approvers or (TENANT_ADMINS,)
        draft.requirements.append(ApprovalRequirement(approvers, rule.quorum or 1, f"rule:{rule.id}"))
        if rule.approval_ttl_seconds:
            draft.approval_ttl_seconds = rule.approval_ttl_seconds
    if draft.approval_ttl_seconds is None:
        draft.approval_ttl_seconds = enforce.bundle.config.approvals.default_ttl_seconds
    return str(decision.effect)


def decide(intent: Intent, active: ActivePolicy) -> tuple[PolicyDecision, PolicyInput]:
    payload = intent.payload or {}
    if intent.action_type == HTTP_ACTION:  # Cedar sees a fixed, typed view of the request
        payload = cedar_payload(parse_http_request(intent.payload, intent.endpoint_url))
    try:
        inp = build_input(
            agent_id=intent.agent_id,
            action_type=intent.action_type,
            payload=payload,
            details=intent.details,
            scope=intent.scope or "",
            resource=intent.resource,
            endpoint_url=intent.endpoint_url,
            labels=intent.labels,
            agent_version=intent.agent_version or "",
            model_id=intent.model_id or "",
            model_version=intent.model_version or "",
        )
    except (ValueError, EndpointError) as exc:
        field = str(exc).split(":", 1)[0] if ":" in str(exc) else ""
        raise ValidationError(str(exc), code="INVALID_INTENT",
                              details={"field": field} if _FIELD.fullmatch(field) else None) from exc
    return active.compiled.engine.evaluate(inp), inp


def shadow_decision(intent: Intent, shadow: ActivePolicy, salt: str | None = None) -> dict[str, Any]:
    try:
        decision, inp = decide(intent, shadow)
    except ValidationError as exc:
        return {"bundle_hash": shadow.bundle.hash, "effect": "deny", "reason": exc.code}
    return {
        "bundle_hash": shadow.bundle.hash,
        "effect": decision.effect,
        "reason": decision.reason,
        "rules": [r.id for r in decision.rules],
        "evaluation_hash": evaluation_hash(shadow.bundle.hash, inp, decision, salt),
    }
