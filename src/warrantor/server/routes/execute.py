"""``POST /v1/actions/{id}/execute``: Warrantor performs an authorized ``http.request``
itself and notarizes it as witnessed (docs/execute.md)."""

from __future__ import annotations

import orjson
from fastapi import APIRouter
from starlette.responses import Response

from warrantor.server.deps import Caller, Svc

router = APIRouter(tags=["actions"])


@router.post(
    "/v1/actions/{action_id}/execute",
    responses={
        403: {"description": "Refused before anything was sent (problem+json)"},
        404: {"description": "No such action for this key"},
        409: {"description": "Not executable now: INVALID_ACTION_STATE, NOT_EXECUTABLE, WARRANT_EXPIRED"},
    },
)
async def execute_action(action_id: str, svc: Svc, caller: Caller) -> Response:
    """Send the action's HTTP request once, record digests of what went out and came back,
    and notarize the outcome as ``witnessed``: ``notarized`` (2xx), ``failed`` (another status,
    or nothing sent) or ``uncertain`` (it may have run)."""
    result = await svc.executor.execute_async(caller, action_id)
    return Response(orjson.dumps(result), media_type="application/json")
