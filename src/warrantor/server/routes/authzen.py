"""OpenID AuthZEN Authorization API 1.0 (docs/authzen.md): Warrantor as a policy decision point.

``POST /access/v1/evaluation`` and ``POST /access/v1/evaluations`` (Bearer agent, gateway or
admin key), ``GET /.well-known/authzen-configuration`` (public). An evaluation is mapped to
the body of ``POST /v1/actions`` and authorized by the same pipeline
(``service/authorization/authzen.py``):

- ``subject.id`` is the agent (an agent-bound key may name only its own agent: 403
  ``AGENT_MISMATCH``, before anything is evaluated); ``subject.properties`` may carry
  ``agent_version``, ``model_id``, ``model_version``, ``instruction_hash``;
- ``action.name`` is the action type;
- ``resource`` ``{type, id}`` is the intent's resource ``"<type>:<id>"``;
- ``context.payload`` is the payload (or ``action.properties`` when there is no
  ``context.payload``; both is ambiguous: 400); ``context.<field>`` for the other fields of
  ``POST /v1/actions`` (``details``, ``endpoint_url``, ``scope``, ``authorization_id``,
  ``run_id``, ``parent_action_id``, ``usage``, ``labels``, ``require_approval``,
  ``approvers``, ``idempotency_key``); every other context key goes into the intent's
  ``context``.

Bad input is 400 (the spec's Bad Request) with a code naming the entity
(``INVALID_SUBJECT``, ``INVALID_ACTION``, ``INVALID_RESOURCE``, ``INVALID_CONTEXT``,
``INVALID_EVALUATIONS``, ``INVALID_OPTIONS``, ``INVALID_REQUEST``) and ``details.field``
the path. Unknown top-level fields are ignored, as the spec requires. A caller's
``X-Request-ID`` is echoed in the response.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Request
from pydantic import ValidationError as SchemaError
from starlette.responses import Response

from warrantor.domain.model import Role
from warrantor.errors import PermissionDeniedError, ValidationError
from warrantor.server.deps import Caller, Svc
from warrantor.server.routes.actions import intent_from
from warrantor.server.schemas import ActionIn
from warrantor.service.authorization.authzen import EXECUTE_ALL, SEMANTICS, AccessEvaluator, Decided, Evaluation
from warrantor.service.authorization.intent import Intent
from warrantor.service.tenancy import require_role

MAX_EVALUATIONS = 100
_REQUEST_ID = re.compile(r"[\x21-\x7e]{1,128}")
# Fields of POST /v1/actions that an AuthZEN request carries in ``context``.
_CONTEXT_FIELDS = ("details", "endpoint_url", "scope", "authorization_id", "run_id", "parent_action_id",
                   "usage", "labels", "require_approval", "approvers", "idempotency_key")
_SUBJECT_PROPERTIES = ("agent_version", "model_id", "model_version", "instruction_hash")
_ENTITIES = ("subject", "action", "resource")


def _echo_request_id(request: Request) -> None:
    """The AuthZEN spec: a PDP answers with the ``X-Request-ID`` the PEP sent (the request
    middleware puts it on the response, errors included)."""
    value = request.headers.get("x-request-id")
    if value is not None and _REQUEST_ID.fullmatch(value):
        request.state.echo_request_id = value


router = APIRouter(tags=["authzen"], dependencies=[Depends(_echo_request_id)])

_SUBJECT_SCHEMA = {"type": "object", "required": ["type", "id"], "properties": {
    "type": {"type": "string", "minLength": 1, "maxLength": 255,
             "description": "not interpreted; \"agent\" reads best"},
    "id": {"type": "string", "maxLength": 200, "pattern": r"^[A-Za-z0-9][A-Za-z0-9_.:@\-]*$",
           "description": "the agent; an agent-bound key may name only its own"},
    "properties": {"type": ["object", "null"],
                   "description": "agent_version, model_id, model_version, instruction_hash"}}}
_RESOURCE_SCHEMA = {"type": "object", "required": ["type", "id"], "properties": {
    "type": {"type": "string", "minLength": 1, "maxLength": 255},
    "id": {"type": "string", "minLength": 1, "maxLength": 255}, "properties": {"type": ["object", "null"]}}}
_ACTION_SCHEMA = {"type": "object", "required": ["name"], "properties": {
    "name": {"type": "string", "maxLength": 128, "pattern": r"^[A-Za-z_][A-Za-z0-9_.:\-]*$",
             "description": "the action type"},
    "properties": {"type": ["object", "null"], "description": "the payload, when context.payload is absent"}}}
# Optional objects may be null (read as absent): PEPs often send null for what they omit.
_CONTEXT_SCHEMA = {"type": ["object", "null"], "properties": {"payload": {"type": "object"}},
                   "description": "payload, and the other fields of POST /v1/actions by name"}
_EVALUATION_SCHEMA = {"type": "object", "required": ["subject", "action", "resource"],
                      "properties": {"subject": _SUBJECT_SCHEMA, "action": _ACTION_SCHEMA,
                                     "resource": _RESOURCE_SCHEMA, "context": _CONTEXT_SCHEMA}}
_DECISION_SCHEMA = {"type": "object", "required": ["decision"],
                    "properties": {"decision": {"type": "boolean"}, "context": {"type": "object"}}}
_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "a missing or malformed field (INVALID_SUBJECT, ..., details.field) or malformed JSON"},
    401: {"description": "no or an unknown API key"},
    403: {"description": "FORBIDDEN_ROLE (app, auditor keys), AGENT_MISMATCH (another agent than the key's)"},
    404: {"description": "context.parent_action_id names no action of this tenant"},
    409: {"description": "DUPLICATE_REQUEST: context.idempotency_key was used for another request"},
    415: {"description": "a Content-Type other than JSON"},
    422: {"description": "a value the pipeline refuses (e.g. the payload for the bundle's schema)"},
    429: {"description": "RATE_LIMITED (single evaluation; in a batch it is that item's error)"},
}


def _request_body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def _bad(entity: str, path: str, message: str) -> ValidationError:
    code = f"INVALID_{entity.upper()}" if entity in (*_ENTITIES, "context", "evaluations", "options") \
        else "INVALID_REQUEST"
    return ValidationError(f"{path}: {message}", code=code, status=400, details={"field": path})


def _no_constant(name: str) -> Any:
    raise json.JSONDecodeError(f"expected a JSON number, got {name}", name, 0)


async def _json_object(request: Request) -> dict[str, Any]:
    content_type = request.headers.get("content-type", "")
    if content_type and "json" not in content_type.lower():
        raise ValidationError(f"expected Content-Type: application/json, got {content_type.split(';')[0]!r}",
                              code="UNSUPPORTED_MEDIA_TYPE", status=415)
    raw = await request.body()
    try:
        body = json.loads(raw, parse_constant=_no_constant)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        where = f" at line {exc.lineno} column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else ""
        raise ValidationError(f"expected a JSON object as the request body{where}: {exc}",
                              code="MALFORMED_JSON", status=400) from exc
    if not isinstance(body, dict):
        raise _bad("request", "(body)", f"expected a JSON object, got {type(body).__name__}")
    return body


def _object(value: Any, entity: str, path: str, *, required: bool = True) -> dict[str, Any] | None:
    if value is None:
        if required:
            raise _bad(entity, path, "is required")
        return None
    if not isinstance(value, dict):
        raise _bad(entity, path, f"expected an object, got {type(value).__name__}")
    return value


def _string(obj: dict[str, Any], key: str, entity: str, path: str, max_length: int = 255) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value or len(value) > max_length:
        got = "nothing" if value is None else repr(value)[:40] + ("..." if len(repr(value)) > 40 else "")
        raise _bad(entity, f"{path}.{key}", f"expected a non-empty string of at most {max_length} characters, "
                                            f"got {got}")
    return value


def to_evaluation(item: dict[str, Any], at: str = "") -> tuple[ActionIn, str, dict[str, str]]:
    """The ``POST /v1/actions`` body an AuthZEN evaluation stands for, the subject id and
    where each of its fields came from; 400 naming the field (prefixed with ``at``, e.g.
    ``evaluations[2].``) otherwise."""
    subject = _object(item.get("subject"), "subject", at + "subject")
    action = _object(item.get("action"), "action", at + "action")
    resource = _object(item.get("resource"), "resource", at + "resource")
    context = _object(item.get("context"), "context", at + "context", required=False) or {}
    assert subject is not None and action is not None and resource is not None
    _string(subject, "type", "subject", at + "subject")
    agent = _string(subject, "id", "subject", at + "subject")
    name = _string(action, "name", "action", at + "action")
    resource_name = f"{_string(resource, 'type', 'resource', at + 'resource')}:" \
                    f"{_string(resource, 'id', 'resource', at + 'resource')}"
    subject_props = _object(subject.get("properties"), "subject", at + "subject.properties", required=False) or {}
    action_props = _object(action.get("properties"), "action", at + "action.properties", required=False)
    _object(resource.get("properties"), "resource", at + "resource.properties", required=False)  # not read
    fields: dict[str, Any] = {"action_type": name, "agent_id": agent, "resource": resource_name}
    fields.update({k: subject_props[k] for k in _SUBJECT_PROPERTIES if k in subject_props})
    sources = {k: f"subject.properties.{k}" for k in _SUBJECT_PROPERTIES}
    if "payload" in context and action_props:
        raise _bad("action", at + "action.properties",
                   "expected the payload once: in context.payload, or in action.properties without it")
    if "payload" in context:
        fields["payload"], sources["payload"] = context["payload"], "context.payload"
    elif action_props is not None:
        fields["payload"], sources["payload"] = action_props, "action.properties"
    fields.update({k: context[k] for k in _CONTEXT_FIELDS if k in context})
    rest = {k: v for k, v in context.items() if k != "payload" and k not in _CONTEXT_FIELDS}
    if rest:
        fields["context"] = rest
    paths = {"agent_id": "subject.id", "action_type": "action.name", "resource": "resource",
             **{k: f"context.{k}" for k in (*_CONTEXT_FIELDS, "context")}, **sources}
    try:
        body = ActionIn.model_validate(fields)
    except SchemaError as exc:
        raise _schema_problem(exc, paths, at) from exc
    return body, agent, {k: at + v for k, v in paths.items()}


def _schema_problem(exc: SchemaError, paths: dict[str, str], at: str) -> ValidationError:
    error = exc.errors()[0]
    loc = [str(p) for p in error.get("loc", ())]
    field = loc[0] if loc else ""
    path = ".".join([paths.get(field, field), *loc[1:]]) if field else "(body)"
    if field == "context":  # the other context keys, given back under their own names
        path = ".".join(["context", *loc[1:]])
    return _bad(path.split(".", 1)[0], at + path, str(error.get("msg", "is invalid")))


def _evaluation(item: dict[str, Any], principal_agent: str | None, at: str = "") -> Evaluation:
    body, agent, paths = to_evaluation(item, at)
    if principal_agent is not None and agent != principal_agent:
        raise PermissionDeniedError(
            f"{at}subject.id: expected {principal_agent!r} (the agent this key is bound to), got {agent!r}",
            code="AGENT_MISMATCH", details={"field": f"{at}subject.id"})
    try:
        intent = intent_from(body)  # approvers are parsed here (422 APPROVER_INVALID)
    except ValidationError as exc:
        raise Evaluation(Intent(body.action_type), paths=paths).located(exc) from None
    return Evaluation(intent, body.idempotency_key, paths)


def _answer(decision: dict[str, Any]) -> Response:
    return Response(orjson.dumps(decision), media_type="application/json")


def _count(request: Request, decided: list[Decided]) -> None:
    for d in decided:
        request.app.state.metrics.decisions.labels(d.effect, d.stage).inc()


@router.post("/access/v1/evaluation", responses={200: {"content": {"application/json": {
    "schema": _DECISION_SCHEMA}}}, **_ERRORS}, openapi_extra=_request_body(_EVALUATION_SCHEMA))
async def access_evaluation(
    request: Request, svc: Svc, caller: Caller, body: Annotated[dict[str, Any], Depends(_json_object)],
) -> Response:
    """AuthZEN Access Evaluation: one subject/action/resource/context decision, recorded and
    receipted like ``POST /v1/actions`` (held: ``decision: false``, ``context.held``)."""
    require_role(caller, Role.AGENT, Role.ADMIN)
    evaluation = _evaluation(body, caller.agent_id)
    decided = await AccessEvaluator(svc.authorizer, svc.deps).evaluate(caller, evaluation)
    _count(request, [decided])
    return _answer(decided.decision)


_EVALUATIONS_SCHEMA = {
    "type": "object",
    "properties": {
        "subject": _SUBJECT_SCHEMA, "action": _ACTION_SCHEMA, "resource": _RESOURCE_SCHEMA, "context": _CONTEXT_SCHEMA,
        "evaluations": {"type": ["array", "null"], "maxItems": MAX_EVALUATIONS, "items": {"type": "object"}},
        "options": {"type": ["object", "null"], "properties": {"evaluations_semantic": {"enum": list(SEMANTICS)}}},
    },
}


@router.post("/access/v1/evaluations", responses={200: {"content": {"application/json": {"schema": {
    "oneOf": [_DECISION_SCHEMA, {"type": "object", "required": ["evaluations"], "properties": {
        "evaluations": {"type": "array", "items": _DECISION_SCHEMA}}}]}}}}, **_ERRORS},
    openapi_extra=_request_body(_EVALUATIONS_SCHEMA))
async def access_evaluations(
    request: Request, svc: Svc, caller: Caller, body: Annotated[dict[str, Any], Depends(_json_object)],
) -> Response:
    """AuthZEN Access Evaluations: a batch with top-level defaults, in order, under
    ``options.evaluations_semantic`` (``execute_all``, ``deny_on_first_deny``,
    ``permit_on_first_permit``). Every item is checked before any is evaluated."""
    require_role(caller, Role.AGENT, Role.ADMIN)
    items = body.get("evaluations")
    if items is not None and not isinstance(items, list):
        raise _bad("evaluations", "evaluations", f"expected an array, got {type(items).__name__}")
    options = _object(body.get("options"), "options", "options", required=False) or {}
    semantic = options.get("evaluations_semantic", EXECUTE_ALL)
    if semantic not in SEMANTICS:
        raise _bad("options", "options.evaluations_semantic", f"expected one of {', '.join(SEMANTICS)}, "
                                                               f"got {str(semantic)[:40]!r}")
    evaluator = AccessEvaluator(svc.authorizer, svc.deps)
    if not items:  # the spec: no (or an empty) evaluations array is a single evaluation
        decided = await evaluator.evaluate(caller, _evaluation(body, caller.agent_id))
        _count(request, [decided])
        return _answer(decided.decision)
    if len(items) > MAX_EVALUATIONS:
        raise _bad("evaluations", "evaluations", f"expected at most {MAX_EVALUATIONS} evaluations, got {len(items)}")
    evaluations = []
    for i, item in enumerate(items):
        at = f"evaluations[{i}]"
        _object(item, "evaluations", at)
        merged = {k: body[k] for k in (*_ENTITIES, "context") if k in body} | item  # an item's key overrides
        evaluations.append(_evaluation(merged, caller.agent_id, at + "."))
    decided_all = await evaluator.evaluate_all(caller, evaluations, semantic)
    _count(request, decided_all)
    return _answer({"evaluations": [d.decision for d in decided_all]})


@router.get("/.well-known/authzen-configuration", tags=["authzen"])
def authzen_configuration(svc: Svc) -> Response:
    """AuthZEN Policy Decision Point metadata (public)."""
    base = svc.deps.limits.public_url.rstrip("/")
    return Response(orjson.dumps({
        "policy_decision_point": base,
        "access_evaluation_endpoint": f"{base}/access/v1/evaluation",
        "access_evaluations_endpoint": f"{base}/access/v1/evaluations",
    }), media_type="application/json", headers={"Cache-Control": "public, max-age=300"})
