"""The tenant's approver directory: ``GET/POST /v1/approvers``, ``DELETE /v1/approvers/{address}``.

Addresses listed here (besides the tenant's console users and their groups) may be named as
approvers by policies and requests; they decide by the personal code e-mailed to them.
Tenant admins only (an admin API key or a logged-in admin); rules in ``service/approval/approvers.py``.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from pydantic import Field

from warrantor.server.console.auth import AdminTenant
from warrantor.server.deps import Svc
from warrantor.server.schemas import Strict

router = APIRouter(tags=["approvers"])


class ApproverIn(Strict):
    address: str = Field(min_length=3, max_length=254)
    name: str = Field(default="", max_length=200)


@router.get("/v1/approvers")
def list_approvers(svc: Svc, tenant_id: AdminTenant) -> dict[str, Any]:
    return {"data": svc.directory.list(tenant_id)}


@router.post("/v1/approvers", status_code=201)
def add_approver(body: ApproverIn, svc: Svc, tenant_id: AdminTenant, response: Response) -> dict[str, Any]:
    """Add an address (201), or return the existing entry (200). 422 ``APPROVER_INVALID``."""
    entry, created = svc.directory.add(tenant_id, body.address, body.name)
    if not created:
        response.status_code = 200
    return entry


@router.delete("/v1/approvers/{address}", status_code=204)
def remove_approver(address: str, svc: Svc, tenant_id: AdminTenant) -> Response:
    """Remove an address: it loses its say on every pending action at once. 404 if absent."""
    svc.directory.remove(tenant_id, address)
    return Response(status_code=204)
