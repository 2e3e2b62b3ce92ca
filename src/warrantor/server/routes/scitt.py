"""SCITT exports: ``GET /v1/receipts/{id}/scitt`` and ``GET /v1/warrants/{id}/scitt``.

The same readers as the proof bundles (an agent-bound key: its own agent's evidence only).
``format``: ``cose`` (default) the transparent statement, ``application/scitt-statement+cose``;
``receipt`` the bare COSE receipt, ``application/scitt-receipt+cose``; ``json`` every part
base64-encoded with the log position and the keys' ids (docs/scitt.md).
"""

from __future__ import annotations

import base64
from typing import Any, Literal

import orjson
from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from warrantor.evidence import cose
from warrantor.server.deps import Caller, Svc
from warrantor.server.routes.evidence import READERS
from warrantor.service.proof.scitt import (
    DSSE_CONTENT_TYPE,
    RECEIPT_MEDIA_TYPE,
    STATEMENT_MEDIA_TYPE,
    Scitt,
    ScittExport,
)
from warrantor.service.tenancy import require_role

router = APIRouter(tags=["evidence"])

Format = Literal["cose", "receipt", "json"]
_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "the transparent statement (cose), the receipt (receipt) or both as JSON (json)",
          "content": {STATEMENT_MEDIA_TYPE: {}, RECEIPT_MEDIA_TYPE: {}, "application/json": {}}},
    404: {"description": "no such warrant or receipt of this tenant, or not the caller's agent's (problem+json)"},
    409: {"description": "NOT_YET_INTEGRATED / NOT_YET_WITNESSED: not yet in a (witnessed) checkpoint"},
}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def _export(svc: Svc, caller: Caller, evidence_id: str, kind: str, fmt: Format) -> Response:
    tenant_id = require_role(caller, *READERS)
    await run_in_threadpool(svc.actions.require_evidence, caller, evidence_id, kind)  # agent keys: own only
    scitt = Scitt(svc.transparency, svc.deps.keyring, svc.deps.clock)
    export: ScittExport = await run_in_threadpool(scitt.export, tenant_id, evidence_id, kind)
    if fmt == "receipt":
        return Response(export.receipt.encode(), media_type=RECEIPT_MEDIA_TYPE)
    if fmt == "json":
        return Response(orjson.dumps(_json(export, kind, evidence_id)), media_type="application/json")
    return Response(export.transparent_statement.encode(), media_type=STATEMENT_MEDIA_TYPE)


def _json(export: ScittExport, kind: str, evidence_id: str) -> dict[str, Any]:
    b = export.bundle
    return {
        f"{kind}_id": evidence_id,
        "transparent_statement": _b64(export.transparent_statement.encode()),
        "signed_statement": _b64(export.signed_statement.encode()),
        "receipt": _b64(export.receipt.encode()),
        "content_type": DSSE_CONTENT_TYPE,
        "issuer": export.issuer,
        "subject": export.subject,
        "issued_at": export.issued_at,
        "statement_kid": export.signed_statement.header()[cose.KID].hex(),
        "receipt_kid": export.receipt.header()[cose.KID].hex(),
        "log": {
            "origin": export.issuer,
            "index": b.log_index,
            "tree_size": b.tree_size,
            "entry": _b64(export.entry),
            "root_hash": _b64(export.root),
            "inclusion_path": [_b64(h) for h in b.inclusion_proof],
            "checkpoint": b.checkpoint,
        },
    }


@router.get("/v1/receipts/{receipt_id}/scitt", responses=_RESPONSES)
async def receipt_scitt(receipt_id: str, svc: Svc, caller: Caller, format: Format = "cose") -> Response:
    """The receipt as a SCITT transparent statement: COSE_Sign1 over the DSSE envelope with
    a COSE receipt of its inclusion in the log (RFC 9943, RFC 9942)."""
    return await _export(svc, caller, receipt_id, "receipt", format)


@router.get("/v1/warrants/{warrant_id}/scitt", responses=_RESPONSES)
async def warrant_scitt(warrant_id: str, svc: Svc, caller: Caller, format: Format = "cose") -> Response:
    """The warrant as a SCITT transparent statement (see the receipt's)."""
    return await _export(svc, caller, warrant_id, "warrant", format)
