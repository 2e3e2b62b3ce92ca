"""Policy bundles: upload, list, fetch, activate, dry-run, outlook."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from warrantor.domain.clock import isoformat
from warrantor.domain.model import Role
from warrantor.server.deps import Caller, Svc
from warrantor.server.routes.actions import intent_from
from warrantor.server.schemas import ActivateIn, EvaluateIn, OutlookIn, OutlookOut, PolicyIn
from warrantor.service.tenancy import require_role

router = APIRouter(tags=["policies"])
READERS = (Role.ADMIN, Role.AUDITOR)


@router.post("/v1/policies", status_code=201)
def upload_policy(body: PolicyIn, svc: Svc, caller: Caller) -> dict[str, Any]:
    """Validate and store a bundle; 422 ``POLICY_INVALID`` lists every problem."""
    tenant_id = require_role(caller, Role.ADMIN)
    bundle, created = svc.policies.upload(
        tenant_id, {"cedar": body.cedar, "schema": body.schema_, "config": body.config}
    )
    return {
        "bundle_hash": bundle.hash,
        "created": created,
        "policies": [
            {"id": p.id, "effect": p.effect, "reason": p.reason, "message": p.message}
            for p in bundle.policies
        ],
    }


@router.get("/v1/policies")
def list_policies(svc: Svc, caller: Caller) -> dict[str, Any]:
    tenant_id = require_role(caller, *READERS)
    rows = svc.policies.list(tenant_id)
    return {"data": [{**r, "created_at": isoformat(r["created_at"])} for r in rows]}


@router.get("/v1/policies/{bundle_hash}")
def get_policy(bundle_hash: str, svc: Svc, caller: Caller) -> dict[str, Any]:
    """The archived bundle, byte for byte as hashed (for replay by auditors)."""
    tenant_id = require_role(caller, *READERS)
    bundle = svc.policies.get(tenant_id, bundle_hash)
    return {"bundle_hash": bundle.hash, "bundle": bundle.to_dict()}


@router.post("/v1/policies/{bundle_hash}/activate")
def activate_policy(bundle_hash: str, svc: Svc, caller: Caller, body: ActivateIn | None = None) -> dict[str, Any]:
    tenant_id = require_role(caller, Role.ADMIN)
    result = svc.policies.activate(tenant_id, bundle_hash, (body or ActivateIn()).mode)
    return {**result, "activated_at": isoformat(result["activated_at"])}


@router.post("/v1/policies/evaluate")
def evaluate_policy(body: EvaluateIn, svc: Svc, caller: Caller) -> dict[str, Any]:
    """Dry-run one hypothetical action; nothing is written."""
    tenant_id = require_role(caller, Role.ADMIN, Role.AUDITOR, Role.AGENT)
    return svc.authorizer.explain(tenant_id, intent_from(body.action), body.bundle_hash)


@router.post("/v1/policies/outlook", response_model=OutlookOut)
def policy_outlook(body: OutlookIn, svc: Svc, caller: Caller) -> dict[str, Any]:
    """For each action type: what the enforcing bundle's Cedar policies can decide for one
    agent, without a payload (docs/guardrails.md, "Outlook"). A gateway hides the types that
    are ``deny`` and ``certain`` and marks those whose ``possible`` has ``require_approval``.
    Budgets, rate limits, detectors, the endpoint allowlist, grants and the agent registry
    are not part of it. Nothing is written."""
    tenant_id = require_role(caller, Role.ADMIN, Role.AUDITOR, Role.AGENT)
    return svc.policies.outlook(tenant_id, caller, body.agent_id, body.action_types)
