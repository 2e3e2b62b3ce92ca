"""Public and operational endpoints: keys, receipts, health, readiness, metrics."""

from __future__ import annotations

import base64
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from warrantor.domain.clock import isoformat
from warrantor.domain.model import Role
from warrantor.errors import NotFoundError
from warrantor.evidence.keyforms import ed25519_public_key, key_forms
from warrantor.server.deps import Caller, Svc
from warrantor.server.problems import problem_response, request_id_of
from warrantor.service.execution.actions import sees_evidence
from warrantor.service.tenancy import require_role

router = APIRouter()


@router.get("/v1/keys", tags=["evidence"])
def list_keys(svc: Svc) -> dict[str, Any]:
    """Every signing key the key files hold, with the validity their signed history gives
    it; retired keys stay published. ``warnings`` names database rows the files do not back."""
    active = svc.deps.keyring.active.keyid
    return {
        "warnings": [f.to_dict() for f in svc.deps.keyring.row_findings()],
        "keys": [
            {
                "keyid": k.keyid,
                "algorithm": "ed25519",
                "public_key": base64.b64encode(k.public_key).decode(),
                **key_forms(ed25519_public_key(k.public_key)),  # PEM, JWK, securesystemslib key id
                "not_before": isoformat(k.not_before),
                "not_after": isoformat(k.not_after) if k.not_after else None,
                "status": "active" if k.keyid == active else "retired",
            }
            for k in svc.deps.keyring.trusted()
        ]
    }


@router.get("/v1/receipts/{receipt_id}", tags=["evidence"])
def get_receipt(receipt_id: str, svc: Svc, caller: Caller) -> dict[str, Any]:
    tenant_id = require_role(caller, Role.AGENT, Role.APP, Role.ADMIN, Role.AUDITOR)
    with svc.store.read() as repo:
        ev = repo.get_evidence(tenant_id, receipt_id)
        visible = ev is not None and sees_evidence(repo, caller, ev)  # agent keys: own actions only
    if ev is None or ev.kind != "receipt" or not visible:
        raise NotFoundError(f"no receipt {receipt_id!r}", code="NOT_FOUND")
    return {
        "receipt_id": ev.id,
        "action_id": ev.action_id,
        "envelope": ev.envelope,
        "envelope_digest": ev.envelope_digest,
        "log_index": ev.log_index,
        "created_at": isoformat(ev.created_at),
    }


@router.get("/healthz", tags=["ops"])
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", tags=["ops"])
def readyz(request: Request, svc: Svc) -> Response:
    """Ready when the store answers and the stored log still matches its signed checkpoints
    (else 503 ``LOG_INCONSISTENT`` naming the entries that changed)."""
    if not svc.store.ping():
        return problem_response(503, "NOT_READY", "the store does not answer", request_id_of(request))
    failure = svc.transparency.failure
    if failure is not None:
        return problem_response(503, "LOG_INCONSISTENT", failure, request_id_of(request))
    return Response(b'{"status":"ready"}', media_type="application/json")


@router.get("/metrics", tags=["ops"])
def metrics(request: Request, svc: Svc) -> Response:
    return Response(request.app.state.metrics.render(), media_type="text/plain; version=0.0.4")
