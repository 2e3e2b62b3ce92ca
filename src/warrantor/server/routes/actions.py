"""Actions: authorize, read, long-poll, notarize, chain, approval codes (legal hold: records.py)."""

from __future__ import annotations

import asyncio
import email.message
import json
import time
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Header, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from pydantic import Field, TypeAdapter
from pydantic import ValidationError as PydanticValidationError
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response
from starlette.routing import Route

from warrantor.domain.approvers import parse_approvers
from warrantor.domain.lifecycle import Status, is_terminal
from warrantor.domain.model import ActionFilter, Principal, Role
from warrantor.errors import ValidationError
from warrantor.server.deps import Caller, Svc, authenticate
from warrantor.server.params import time_param
from warrantor.server.problems import render_stored_problem, request_id_of
from warrantor.server.schemas import ActionIn, NotarizeIn
from warrantor.service.authorization.intent import Intent
from warrantor.service.services import Services
from warrantor.service.tenancy import require_role

router = APIRouter(tags=["actions"])


def intent_from(body: ActionIn) -> Intent:
    return Intent(
        action_type=body.action_type,
        details=body.details,
        payload=body.payload,
        agent_id=body.agent_id,
        agent_version=body.agent_version,
        model_id=body.model_id,
        model_version=body.model_version,
        instruction_hash=body.instruction_hash,
        parent_action_id=body.parent_action_id,
        endpoint_url=body.endpoint_url,
        scope=body.scope,
        resource=body.resource,
        authorization_id=body.authorization_id,
        run_id=body.run_id,
        usage=body.usage.model_dump(exclude_none=True) if body.usage else None,
        context=body.context,
        labels=tuple(sorted(set(body.labels))),
        require_approval=body.require_approval,
        approvers=parse_approvers(body.approvers) if body.approvers is not None else None,
    )


def _json(body: dict[str, Any], status: int, request: Request) -> Response:
    return Response(
        orjson.dumps({**body, "request_id": request_id_of(request)}),
        status_code=status,
        media_type="application/json",
    )


@router.post("/v1/actions", status_code=201, responses={403: {"description": "Denied (problem+json)"}})
async def authorize_action(
    body: ActionIn,
    request: Request,
    svc: Svc,
    caller: Caller,
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
) -> Response:
    """Authorize an intended action: 201 authorized (+ warrant) or pending_approval; 403 denied.

    Requests are served by ``authorize_hot`` (the same steps without FastAPI's per-request
    machinery); this route defines the operation for the OpenAPI document and is the
    reference ``tests/api/test_hot_route.py`` compares the hot route with."""
    return await _authorize(body, request, svc, caller, idempotency_key)


_IDEMPOTENCY_HEADER: TypeAdapter[str | None] = TypeAdapter(Annotated[str | None, Field(max_length=255)])
_ACTION_IN: TypeAdapter[ActionIn] = TypeAdapter(ActionIn)


async def authorize_hot(request: Request) -> Response:
    """``POST /v1/actions`` as a plain Starlette route, mounted in front of the FastAPI one.

    The hottest route: FastAPI's per-request work (endpoint introspection, dependency
    solving, exit stacks, telemetry hooks) cost about a third of an authorization's CPU in
    process, against a twelfth here (``bench/authorize_inprocess.py``). The
    steps and their order are FastAPI's, so every answer is the same: the JSON body is
    parsed first (a syntax error is ``MALFORMED_JSON``), then the API key (401), then the
    ``Idempotency-Key`` header and the body are validated together, and their errors go to
    the app's ``RequestValidationError`` handler as FastAPI would raise them."""
    request.scope["route"] = HOT_ROUTE  # what the access metrics label it by (FastAPI's router does not set it)
    body = await _json_body(request)
    svc: Services = request.app.state.services
    caller = authenticate(request)
    errors: list[dict[str, Any]] = []
    header = request.headers.get("idempotency-key")
    try:
        _IDEMPOTENCY_HEADER.validate_python(header)
    except PydanticValidationError as exc:
        errors += [{**e, "loc": ("header", "idempotency-key", *e["loc"])} for e in exc.errors(include_url=False)]
    parsed: ActionIn | None = None
    if body is _NO_BODY:
        errors.append({"type": "missing", "loc": ("body",), "msg": "Field required", "input": None})
    else:
        try:
            parsed = _ACTION_IN.validate_python(body, from_attributes=True)  # as FastAPI validates a body
        except PydanticValidationError as exc:
            errors += [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
    if errors or parsed is None:
        raise RequestValidationError(errors, body=None if body is _NO_BODY else body)
    return await _authorize(parsed, request, svc, caller, header)


HOT_ROUTE = Route("/v1/actions", authorize_hot, methods=["POST"], include_in_schema=False)
_NO_BODY = object()


async def _json_body(request: Request) -> Any:
    """The body as FastAPI reads it for a JSON body parameter: parsed when the content
    type is ``application/json`` or ``+json``, the raw bytes under any other content type
    (or none), ``_NO_BODY`` when empty; a syntax error is FastAPI's ``json_invalid``."""
    raw = await request.body()
    if not raw:
        return _NO_BODY
    content_type = request.headers.get("content-type")
    if content_type:
        message = email.message.Message()
        message["content-type"] = content_type
        subtype = message.get_content_subtype()
        if message.get_content_maintype() == "application" and (subtype == "json" or subtype.endswith("+json")):
            try:
                return json.loads(raw)
            except json.JSONDecodeError as exc:
                raise RequestValidationError(
                    [{"type": "json_invalid", "loc": ("body", exc.pos), "msg": "JSON decode error", "input": {},
                      "ctx": {"error": exc.msg}}], body=exc.doc) from exc
            except Exception as exc:  # not UTF-8, for one
                raise HTTPException(status_code=400, detail="There was an error parsing the body") from exc
    return raw


async def _authorize(body: ActionIn, request: Request, svc: Services, caller: Principal,
                     idempotency_key: str | None) -> Response:
    key = idempotency_key or body.idempotency_key
    if idempotency_key and body.idempotency_key and idempotency_key != body.idempotency_key:
        raise ValidationError(
            "expected the Idempotency-Key header and idempotency_key field to agree",
            code="IDEMPOTENCY_KEY_MISMATCH",
        )
    outcome = await svc.authorizer.authorize_async(caller, intent_from(body), key)
    decision = outcome.body.get("decision") or {}
    details = outcome.body.get("details") or {}
    request.app.state.metrics.decisions.labels(
        decision.get("effect", "deny"), decision.get("stage", details.get("stage", ""))
    ).inc()
    if outcome.status_code >= 400:
        return render_stored_problem(outcome.body, request_id_of(request))
    return _json(outcome.body, outcome.status_code, request)


@router.get("/v1/actions")
def list_actions(
    svc: Svc,
    caller: Caller,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    per_page: Annotated[int, Query(ge=1, le=100)] = 20,
    action_type: str | None = None,
    agent_id: str | None = None,
    status: str | None = None,
    created_after: str | None = None,
    created_before: str | None = None,
    legal_hold: Annotated[str | None, Query(max_length=5)] = None,
) -> dict[str, Any]:
    if status is not None and status not in {s.value for s in Status}:
        raise ValidationError(f"expected a known status, got {status!r}", code="INVALID_FILTER")
    if legal_hold not in (None, "true", "false"):
        raise ValidationError(f"legal_hold: expected true or false, got {legal_hold!r}", code="INVALID_FILTER",
                              details={"field": "legal_hold"})
    flt = ActionFilter(
        action_type=action_type,
        agent_id=agent_id,
        status=status,
        created_after=time_param(created_after, "created_after", "INVALID_FILTER"),
        created_before=time_param(created_before, "created_before", "INVALID_FILTER"),
        legal_hold=None if legal_hold is None else legal_hold == "true",
    )
    return svc.actions.list(caller, flt, page, per_page)


@router.get("/v1/actions/{action_id}")
async def get_action(
    action_id: str,
    svc: Svc,
    caller: Caller,
    wait: Annotated[float, Query(ge=0, le=60)] = 0,
    status: Annotated[str | None, Query(max_length=40)] = None,
) -> dict[str, Any]:
    """Action detail; ``?wait=N`` long-polls up to N seconds for a status change.

    With ``?status=S`` (the status the caller last saw, e.g. ``pending_approval``) the answer
    comes at once when the action has already left S, so a caller that missed the change
    never waits for a second one; without it, the wait is for a change from the status the
    action has when the request arrives."""
    if status is not None and status not in {s.value for s in Status}:
        raise ValidationError(f"expected status to be a known action status, got {status!r}",
                              code="INVALID_FILTER", details={"field": "status"})
    first: dict[str, Any] = await run_in_threadpool(svc.actions.get, caller, action_id)
    if wait <= 0 or is_terminal(Status(first["status"])) or (status is not None and first["status"] != status):
        return first
    notifier = svc.deps.notifier
    deadline = time.monotonic() + wait
    seen = notifier.version(action_id)
    while (remaining := deadline - time.monotonic()) > 0:
        seen = await notifier.wait_async(action_id, seen, min(0.5, remaining))
        current: dict[str, Any] = await run_in_threadpool(svc.actions.get, caller, action_id)
        if current["status"] != first["status"]:
            return current
        await asyncio.sleep(0)
    return first


@router.post("/v1/actions/{action_id}/notarize")
async def notarize_action(action_id: str, body: NotarizeIn, svc: Svc, caller: Caller) -> Response:
    """Report the outcome; checks the execution against the warrant and mints the receipt."""
    result = await svc.notarizer.notarize_async(caller, action_id, body.model_dump(exclude_none=True))
    return Response(orjson.dumps(result), media_type="application/json")


@router.get("/v1/actions/{action_id}/approval")
def approval_status(action_id: str, svc: Svc, caller: Caller) -> dict[str, Any]:
    """The approval request: approvers, requirements, who was notified and the progress.

    Never a usable code: codes reach people only through their own channel, and an API key
    is a machine, never an approver."""
    tenant_id = require_role(caller, Role.ADMIN, Role.AUDITOR)
    return svc.approvals.status(tenant_id, action_id)


@router.get("/v1/actions/{action_id}/chain")
def action_chain(action_id: str, svc: Svc, caller: Caller) -> dict[str, Any]:
    return svc.actions.chain(caller, action_id)

