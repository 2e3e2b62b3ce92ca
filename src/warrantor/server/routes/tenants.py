"""Operator and tenant-admin endpoints: tenants and API keys.

- ``POST /v1/tenants``, ``POST|GET /v1/tenants/{id}/api-keys`` and ``DELETE
  /v1/tenants/{id}/api-keys/{key_id}``: the operator key, for any tenant.
- ``POST /v1/api-keys``: a tenant-admin API key creates a key in its own tenant.
- ``GET /v1/api-keys`` and ``DELETE /v1/api-keys/{key_id}``: a tenant-admin API key or a
  logged-in admin (with the CSRF header), for its own tenant only.

Listings never include a key or its hash; revocation takes effect on the next request.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from warrantor.domain.clock import isoformat
from warrantor.domain.model import ApiKey, Role
from warrantor.server.console.auth import AdminTenant
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


def key_view(key: ApiKey) -> dict[str, Any]:
    """What a listing shows of a key: never the key itself or its hash."""
    return {
        "key_id": key.id,
        "tenant_id": key.tenant_id,
        "role": key.role.value,
        "agent_id": key.agent_id,
        "label": key.label,
        "prefix": key.prefix,
        "created_at": isoformat(key.created_at),
        "revoked_at": isoformat(key.revoked_at) if key.revoked_at else None,
    }


def _key_response(svc: Svc, tenant_id: str, body: ApiKeyIn) -> dict[str, Any]:
    key, secret = svc.tenancy.create_api_key(tenant_id, body.role, body.agent_id, body.label)
    return {**key_view(key), "key": secret}


@router.post("/v1/tenants/{tenant_id}/api-keys", status_code=201)
def create_tenant_key(tenant_id: str, body: ApiKeyIn, svc: Svc, caller: Caller) -> dict[str, Any]:
    """Create an API key in any tenant (operator key only). The key is shown once."""
    require_operator(caller)
    return _key_response(svc, tenant_id, body)


@router.get("/v1/tenants/{tenant_id}/api-keys")
def list_tenant_keys(tenant_id: str, svc: Svc, caller: Caller) -> dict[str, Any]:
    """Every key of a tenant, revoked ones included (operator key only)."""
    require_operator(caller)
    return {"data": [key_view(k) for k in svc.tenancy.list_api_keys(tenant_id)]}


@router.delete("/v1/tenants/{tenant_id}/api-keys/{key_id}")
def revoke_tenant_key(tenant_id: str, key_id: str, svc: Svc, caller: Caller) -> dict[str, Any]:
    """Revoke a key of any tenant (operator key only); idempotent. 404 ``API_KEY_NOT_FOUND``."""
    require_operator(caller)
    return key_view(svc.tenancy.revoke_api_key(tenant_id, key_id))


@router.post("/v1/api-keys", status_code=201)
def create_own_key(body: ApiKeyIn, svc: Svc, caller: Caller) -> dict[str, Any]:
    """A tenant admin creates a key in its own tenant. The key is shown once."""
    tenant_id = require_role(caller, Role.ADMIN)
    return _key_response(svc, tenant_id, body)


@router.get("/v1/api-keys")
def list_own_keys(svc: Svc, tenant_id: AdminTenant) -> dict[str, Any]:
    """The tenant's keys (a tenant admin): ids, roles, bindings, labels; never the keys."""
    return {"data": [key_view(k) for k in svc.tenancy.list_api_keys(tenant_id)]}


@router.delete("/v1/api-keys/{key_id}")
def revoke_own_key(key_id: str, svc: Svc, tenant_id: AdminTenant) -> dict[str, Any]:
    """Revoke one of the tenant's keys at once; idempotent. Another tenant's key is 404."""
    return key_view(svc.tenancy.revoke_api_key(tenant_id, key_id))
