"""End-user grants, ``POST /v1/check`` and ``POST /v1/confirmations/{nonce}``.

Request bodies are checked strictly here (unknown fields refused); the rules that need
more than a type (scope names, glob patterns, expiry in the future) are in
``service/authorization/grants.py``. See docs/grants.md.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter
from pydantic import ConfigDict, Field

from warrantor.server.deps import Caller, Svc
from warrantor.server.schemas import Strict

router = APIRouter(tags=["grants"])

_ID = r"^[A-Za-z0-9][A-Za-z0-9_.:@\-]*$"


class _Strict(Strict):  # integral floats count as integers (schemas.Strict)
    model_config = ConfigDict(extra="forbid", strict=True)


class ScopeIn(_Strict):
    scope: str = Field(min_length=1, max_length=128)
    decision: Literal["allow", "confirm"]
    resources: list[str] = Field(min_length=1, max_length=64)
    confirm_prompt_hint: str | None = Field(default=None, max_length=500)


class GrantIn(_Strict):
    agent_id: str = Field(min_length=1, max_length=200, pattern=_ID)
    subject: str = Field(min_length=1, max_length=200)
    scopes: list[ScopeIn] = Field(min_length=1, max_length=64)
    expires_at: str | None = Field(default=None, max_length=64)


class CheckIn(_Strict):
    authorization_id: str = Field(min_length=1, max_length=64)
    scope: str = Field(min_length=1, max_length=128)
    resource: str = Field(min_length=1, max_length=512)


class ConfirmationIn(_Strict):
    approved: bool
    ttl_seconds: int = Field(default=60, ge=1, le=300)


@router.post("/v1/grants", status_code=201)
def create_grant(body: GrantIn, svc: Svc, caller: Caller) -> dict[str, Any]:
    """Create a grant (role app or admin) -> ``authorization_id``."""
    scopes = [s.model_dump(exclude_none=True) for s in body.scopes]
    return svc.grants.create(caller, body.agent_id, body.subject, scopes, body.expires_at)


@router.get("/v1/grants/{grant_id}")
def get_grant(grant_id: str, svc: Svc, caller: Caller) -> dict[str, Any]:
    return svc.grants.get(caller, grant_id)


@router.delete("/v1/grants/{grant_id}")
def revoke_grant(grant_id: str, svc: Svc, caller: Caller) -> dict[str, Any]:
    """Revoke (idempotent): 200 with ``revoked_at``; 404 ``GRANT_NOT_FOUND``."""
    return svc.grants.revoke(caller, grant_id)


@router.post("/v1/check")
def check(body: CheckIn, svc: Svc, caller: Caller) -> dict[str, Any]:
    """``allow`` / ``deny`` / ``confirm`` (+ ``confirm_nonce``) for one scope and resource."""
    return svc.grants.check(caller, body.authorization_id, body.scope, body.resource)


@router.post("/v1/confirmations/{nonce}")
def confirm(nonce: str, body: ConfirmationIn, svc: Svc, caller: Caller) -> dict[str, Any]:
    """Resolve an end-user confirmation (role app or admin; a gateway key for its own agent's
    action, recorded as presence only: docs/grants.md). Any invalid nonce: 410
    ``CONFIRMATION_GONE``, the same body every time."""
    return svc.grants.confirm(caller, nonce, body.approved, body.ttl_seconds)
