"""The transparency log, proof bundles, the trust bundle, verification, execution confirmation.

Public (no credentials): ``GET /v1/log/checkpoint``, ``/v1/log/proof/inclusion``,
``/v1/log/proof/consistency``, ``/v1/log/entries``, ``POST /v1/log/cosignatures`` (only configured witnesses'
signatures are accepted), ``GET /v1/trust`` and ``POST /v1/verify``. Tenant API keys:
``GET /v1/receipts/{id}/bundle``, ``GET /v1/warrants/{id}/bundle`` and
``POST /v1/confirm-execution``. Formats: docs/offline-verification.md; proofs per RFC 9162
with base64 hashes.
"""

from __future__ import annotations

import base64
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Query
from pydantic import ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from warrantor.domain.model import Role
from warrantor.errors import ValidationError
from warrantor.evidence.proofs import ProofBundle, TrustBundle, timestamp_fields
from warrantor.server.deps import Caller, Svc
from warrantor.server.schemas import Strict
from warrantor.service.execution.confirm_execution import DEFAULT_WINDOW_SECONDS, MAX_WINDOW_SECONDS
from warrantor.service.tenancy import require_role
from warrantor.verify import verify_bundle

router = APIRouter(tags=["evidence"])
READERS = (Role.AGENT, Role.APP, Role.ADMIN, Role.AUDITOR)
NOTE_MEDIA_TYPE = "text/plain; charset=utf-8"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class _Strict(Strict):  # integral floats count as integers (schemas.Strict)
    model_config = ConfigDict(extra="forbid", strict=True)


class CosignatureIn(_Strict):
    size: int = Field(ge=0)
    cosignature: str = Field(min_length=8, max_length=4096, description="one C2SP tlog-cosignature line")


class VerifyIn(_Strict):
    bundle: dict[str, Any] | str = Field(description="a JSON proof bundle, or C2SP tlog-proof text")
    trust: dict[str, Any] | None = Field(default=None, description="a trust bundle; default: this server's")


class ExecutedActionIn(_Strict):
    type: str = Field(min_length=1, max_length=128)
    payload: dict[str, Any]
    executed_at: str = Field(min_length=1, max_length=64)
    executed_by: str = Field(min_length=1, max_length=200)


class ConfirmExecutionIn(_Strict):
    warrant: dict[str, Any]
    executed_action: ExecutedActionIn
    time_window_seconds: int = Field(default=DEFAULT_WINDOW_SECONDS, ge=1, le=MAX_WINDOW_SECONDS)


# -- the log ------------------------------------------------------------------------------
@router.get("/v1/log/checkpoint", responses={200: {"content": {"text/plain": {}}}})
def get_checkpoint(svc: Svc, format: Literal["note", "json"] = "note") -> Response:
    """The latest signed checkpoint (C2SP tlog-checkpoint), with any witness cosignatures."""
    t = svc.transparency
    latest = t.latest()
    note = t.note_with_cosignatures(latest)
    if format == "note":
        return Response(note, media_type=NOTE_MEDIA_TYPE)
    body = {"size": latest.size, "root_hash": _b64(latest.root_hash), "note": note,
            **timestamp_fields(latest.timestamp_token)}  # the bare token and it in a TimeStampResp
    return _json(body)


@router.get("/v1/log/proof/inclusion")
def inclusion_proof(svc: Svc, index: Annotated[int, Query(ge=0)], size: Annotated[int, Query(ge=1)]) -> dict[str, Any]:
    """RFC 9162 section 2.1.3 inclusion proof of leaf ``index`` in the tree of ``size``."""
    path = svc.transparency.inclusion(index, size)
    return {"leaf_index": index, "tree_size": size, "inclusion_path": [_b64(h) for h in path]}


@router.get("/v1/log/proof/consistency")
def consistency_proof(svc: Svc, old: Annotated[int, Query(ge=0)], new: Annotated[int, Query(ge=0)]) -> dict[str, Any]:
    """RFC 9162 section 2.1.4 consistency proof between tree sizes ``old`` and ``new``."""
    path = svc.transparency.consistency(old, new)
    return {"tree_size_1": old, "tree_size_2": new, "consistency_path": [_b64(h) for h in path]}


@router.get("/v1/log/entries")
def log_entries(
    svc: Svc, start: Annotated[int, Query(ge=0, le=2**62)] = 0, limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> dict[str, Any]:
    """Stored entries (sha256 of each logged envelope) from ``start``, below the latest
    checkpoint, so a monitor can recompute the tree and name an entry that changed."""
    page = svc.transparency.entries(start, limit)
    page["entries"] = [{"index": i, "entry": _b64(e)} for i, e in page["entries"]]
    return page


@router.post("/v1/log/cosignatures", status_code=201)
def add_cosignature(body: CosignatureIn, svc: Svc) -> dict[str, Any]:
    """A configured witness's C2SP tlog-cosignature line for a stored checkpoint."""
    return svc.transparency.add_cosignature(body.size, body.cosignature)


@router.get("/v1/trust")
def trust(svc: Svc) -> dict[str, Any]:
    """Everything an offline verifier needs: log origin and key, signing keys with their
    signed history, TSA root. ``warnings``, present only when there is one, names database
    rows the key files do not back (so an honest answer is exactly a trust bundle)."""
    bundle = svc.transparency.trust_bundle().to_dict()
    warnings = [f.to_dict() for f in svc.deps.keyring.row_findings()]
    return {**bundle, "warnings": warnings} if warnings else bundle


# -- proof bundles ----------------------------------------------------------------------
async def _bundle(svc: Svc, caller: Caller, evidence_id: str, kind: str, fmt: str) -> Response:
    tenant_id = require_role(caller, *READERS)
    await run_in_threadpool(svc.actions.require_evidence, caller, evidence_id, kind)  # agent keys: own only
    bundle: ProofBundle = await run_in_threadpool(svc.transparency.bundle, tenant_id, evidence_id, kind)
    if fmt == "tlog-proof":
        return Response(bundle.to_tlog_proof_text(), media_type=NOTE_MEDIA_TYPE)
    return _json(bundle.to_dict())


@router.get("/v1/receipts/{receipt_id}/bundle")
async def receipt_bundle(
    receipt_id: str, svc: Svc, caller: Caller, format: Literal["json", "tlog-proof"] = "json"
) -> Response:
    """The receipt with its inclusion proof, checkpoint and RFC 3161 token; 409 until integrated."""
    return await _bundle(svc, caller, receipt_id, "receipt", format)


@router.get("/v1/warrants/{warrant_id}/bundle")
async def warrant_bundle(
    warrant_id: str, svc: Svc, caller: Caller, format: Literal["json", "tlog-proof"] = "json"
) -> Response:
    """The warrant with its inclusion proof, checkpoint and RFC 3161 token; 409 until integrated."""
    return await _bundle(svc, caller, warrant_id, "warrant", format)


@router.post("/v1/verify")
def verify(body: VerifyIn, svc: Svc) -> dict[str, Any]:
    """Stateless verification of a proof bundle: the offline verifier's report, as JSON."""
    try:
        if isinstance(body.bundle, str):
            bundle = ProofBundle.from_tlog_proof_text(body.bundle)
        else:
            bundle = ProofBundle.from_dict(body.bundle)
        trust_bundle = TrustBundle.from_dict(body.trust) if body.trust else svc.transparency.trust_bundle()
    except (ValueError, TypeError, KeyError) as exc:
        raise ValidationError(f"expected a proof bundle and a trust bundle: {exc}", code="INVALID_BUNDLE") from exc
    return verify_bundle(bundle, trust_bundle).to_dict()


# -- execution confirmation ------------------------------------------------------------
@router.post("/v1/confirm-execution")
def confirm_execution(body: ConfirmExecutionIn, svc: Svc, caller: Caller) -> dict[str, Any]:
    """Present the warrant and what ran; get the execution integrity proof and a signed receipt."""
    executed = body.executed_action.model_dump()
    return svc.confirmer.confirm(caller, body.warrant, executed, body.time_window_seconds)


def _json(body: dict[str, Any]) -> Response:
    return Response(orjson.dumps(body), media_type="application/json")
