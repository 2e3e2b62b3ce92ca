"""Operator and tenant-admin endpoints: tenants and API keys."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from warrantor.domain.clock import isoformat
from warrantor.domain.model import Role
from warrantor.server.deps import Caller, Svc
from warrantor.server.schemas import ApiKeyIn, TenantIn
from warrantor.service.tenancy import require_operator, require_role

router = APIRouter(tags=["tenancy"])


@router.post("/v1/tenants", status_code=201)
def create_tenant(body: TenantIn, svc: Svc, caller: Caller) -> dict[str, Any]:
    """Create a tenant (operator key only)."""
    require_operator(caller)
    tenant = svc.tenancy.create_tenant(body.name)
    return {"tenant_id": tenant.id, "name": tenant.name, "created_at": isoformat(tenant.created_at)}


def _key_response(svc: Svc, tenant_id: str, body: ApiKeyIn) -> dict[str, Any]:
    key, secret = svc.tenancy.create_api_key(tenant_id, body.role, body.agent_id)
    return {
        "key_id": key.id,
        "key": secret,
        "tenant_id": key.tenant_id,
        "role": key.role.value,
        "agent_id": key.agent_id,
        "created_at": isoformat(key.created_at),
    }


@router.post("/v1/tenants/{tenant_id}/api-keys", status_code=201)
def create_tenant_key(tenant_id: str, body: ApiKeyIn, svc: Svc, caller: Caller) -> dict[str, Any]:
    """Create an API key in any tenant (operator key only). The key is shown once."""
    require_operator(caller)
    return _key_response(svc, tenant_id, body)


@router.post("/v1/api-keys", status_code=201)
def create_own_key(body: ApiKeyIn, svc: Svc, caller: Caller) -> dict[str, Any]:
    """A tenant admin creates a key in its own tenant. The key is shown once."""
    tenant_id = require_role(caller, Role.ADMIN)
    return _key_response(svc, tenant_id, body)
