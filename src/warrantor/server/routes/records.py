"""Records: legal holds, retention, erasure on request, the audit export (docs/records.md).

``POST``/``DELETE /v1/actions/{id}/hold`` (admin, auditor; body ``{"reason"}``),
``GET``/``PUT /v1/retention`` and ``POST /v1/retention/run`` (admin; auditors read),
``POST /v1/erasures`` (admin), ``GET /v1/export?from=&to=`` (auditor, admin; JSON Lines).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.responses import StreamingResponse

from warrantor.server.deps import Caller, Svc
from warrantor.server.params import time_param
from warrantor.server.schemas import Strict

router = APIRouter(tags=["records"])
NDJSON = "application/x-ndjson"


class _Strict(Strict):  # integral floats count as integers (schemas.Strict)
    model_config = ConfigDict(extra="forbid", strict=True)


class HoldIn(_Strict):
    reason: str = Field(min_length=1, max_length=2000, description="why the hold is set or lifted (signed, logged)")


class RetentionIn(_Strict):
    details_days: int | None = Field(description="days an action's payload details are kept after it was created; "
                                                 "null keeps them until erased on request")


class ErasureIn(_Strict):
    subject: str | None = Field(default=None, min_length=1, max_length=200,
                                description="an end user: the actions under every grant to this subject")
    agent_id: str | None = Field(default=None, min_length=1, max_length=200, description="or one agent's actions")
    reason: str = Field(min_length=1, max_length=2000, description="why (signed into the erasure receipt)")


@router.post("/v1/actions/{action_id}/hold")
def set_hold(action_id: str, body: HoldIn, svc: Svc, caller: Caller) -> dict[str, Any]:
    """Set a legal hold: the action's details are kept whatever the retention; recorded,
    signed and logged with who and why. 409 ``ACTION_ERASED`` once the details are gone."""
    return svc.records.set_legal_hold(caller, action_id, True, body.reason)


@router.delete("/v1/actions/{action_id}/hold")
def lift_hold(action_id: str, body: HoldIn, svc: Svc, caller: Caller) -> dict[str, Any]:
    """Lift a legal hold (recorded, signed and logged with who and why)."""
    return svc.records.set_legal_hold(caller, action_id, False, body.reason)


@router.get("/v1/retention")
def get_retention(svc: Svc, caller: Caller) -> dict[str, Any]:
    return svc.records.retention(caller)


@router.put("/v1/retention")
def put_retention(body: RetentionIn, svc: Svc, caller: Caller) -> dict[str, Any]:
    """How long payload details are kept; 422 ``INVALID_RETENTION`` outside 1..36500 days."""
    return svc.records.set_retention(caller, body.details_days)


@router.post("/v1/retention/run")
def run_retention(svc: Svc, caller: Caller) -> dict[str, Any]:
    """Run the retention job for this tenant now (it also runs periodically)."""
    return svc.records.run_retention(caller)


@router.post("/v1/erasures")
def erase(body: ErasureIn, svc: Svc, caller: Caller) -> dict[str, Any]:
    """Erase the details of every ended, unheld action of an end user or an agent, with a
    signed, logged erasure receipt listing what was erased by digest."""
    return svc.records.erase(caller, subject=body.subject, agent_id=body.agent_id, reason=body.reason)


@router.get("/v1/export", response_class=StreamingResponse, responses={200: {"content": {NDJSON: {}}}})
async def export(
    svc: Svc, caller: Caller,
    start: Annotated[str | None, Query(alias="from", max_length=64)] = None,
    end: Annotated[str | None, Query(alias="to", max_length=64)] = None,
) -> StreamingResponse:
    """The tenant's records of a period with their proofs, as JSON Lines (auditor, admin):
    verify with ``warrantor verify --export FILE --trust TRUST.json``."""
    lines = await run_in_threadpool(svc.exporter.export, caller, _export_time(start, "from"), _export_time(end, "to"))
    return StreamingResponse(lines, media_type=NDJSON,
                             headers={"Content-Disposition": 'attachment; filename="warrantor-export.jsonl"'})


def _export_time(value: str | None, name: str) -> datetime | None:
    return time_param(value, name, "INVALID_RANGE", details={"field": name})
