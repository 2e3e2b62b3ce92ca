"""The OpenAPI document as HTTP tools read it: every status a route can answer, with its body.

FastAPI documents a route's success response and a 422 of its own shape; Warrantor's
errors are RFC 9457 ``application/problem+json`` documents (``problems.py``), and they come
from places FastAPI cannot see: the request middleware (every route), the authentication
dependencies, and the services behind each route. This module builds the document once,
then adds to each operation

- ``security``: ``bearer`` (an API key) for routes that depend on the calling principal,
  ``session`` (the console's cookie) for human-only routes, either for the routes a
  tenant admin may call both ways, none on public routes;
- the error statuses it can produce, each a ``Problem`` body, from rules that follow the
  code (see ``error_statuses``) plus, per route, the statuses its service raises
  (``ROUTE_ERRORS``), with ``WWW-Authenticate`` documented on 401 and ``Retry-After`` on 429;
- the media types a route really sends where they are not JSON (``MEDIA_TYPES``).

``tests/api/test_http_conformance.py`` checks the result, and ``make fuzz`` (schemathesis)
checks every answer of a live server against it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute, iter_route_contexts

from warrantor.server import deps
from warrantor.server.console import auth
from warrantor.server.problems import PROBLEM_JSON

PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "title": "Problem",
    "description": "RFC 9457 problem details, with Warrantor's stable code and the request id",
    "required": ["type", "title", "status", "detail", "code", "request_id"],
    "properties": {
        "type": {"type": "string", "description": "a URI naming the problem type"},
        "title": {"type": "string"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string"},
        "code": {"type": "string", "pattern": "^[A-Z][A-Z0-9_]*$", "description": "stable, upper case"},
        "request_id": {"type": "string"},
        "details": {"type": "object", "description": "structured context, e.g. field (a JSON path), "
                                                     "expected, receipt_id, line and column"},
    },
}

SECURITY_SCHEMES: dict[str, Any] = {
    "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "wrt_... API key",
               "description": "An API key: Authorization: Bearer wrt_..."},
    "session": {"type": "apiKey", "in": "cookie", "name": auth.COOKIE,
                "description": "A console session from POST /v1/sessions; state-changing calls also "
                               "send its CSRF token in X-CSRF-Token"},
}

_DESCRIPTIONS = {
    400: "Bad request: malformed JSON (details.line, details.column) or a refused value",
    401: "No valid credentials (WWW-Authenticate names the scheme)",
    403: "Authenticated, but not allowed (role, agent binding, CSRF); or the action was denied",
    404: "Not found (or not visible to this key)",
    409: "Conflict with the current state",
    410: "Gone: an expired or used code, nonce or link",
    413: "The request body is larger than the server accepts",
    415: "The request body is not JSON",
    422: "Invalid input; details.field names the field",
    429: "Too many requests (Retry-After says when to try again)",
    500: "Unexpected error; quote the request_id",
    502: "The upstream call failed",
    503: "Storage unavailable, or not ready",
}

# Statuses a route's service raises beyond the rules in ``error_statuses``, from the code
# behind each route (``METHOD path``); routes added without an entry get the rules only.
ROUTE_ERRORS: dict[str, tuple[int, ...]] = {
    "POST /v1/actions": (403, 404, 409, 429),
    "POST /v1/actions/{action_id}/notarize": (400, 409),
    "POST /v1/actions/{action_id}/execute": (403, 409, 502, 503),
    "POST /v1/actions/{action_id}/approve": (409, 410),
    "POST /v1/actions/{action_id}/deny": (409, 410),
    "POST /v1/actions/{action_id}/cosign": (409,),
    "POST /v1/actions/{action_id}/hold": (409,),
    "DELETE /v1/actions/{action_id}/hold": (409,),
    "GET /v1/approvals/{code}": (410,),
    "POST /v1/approvals/{code}/confirm": (409, 410),
    "GET /v1/receipts/{receipt_id}/bundle": (409,),
    "GET /v1/warrants/{warrant_id}/bundle": (409,),
    "POST /v1/log/cosignatures": (403, 409),
    "POST /v1/confirm-execution": (409,),
    "POST /v1/confirmations/{nonce}": (409, 410),
    "POST /v1/agents": (409,),
    "POST /v1/policies/simulate": (404,),
    "POST /v1/policies/evaluate": (404,),
    "POST /v1/users": (409,),
    "PATCH /v1/users/{user_id}": (409,),
    "POST /v1/users/{user_id}/password": (409,),
    "POST /v1/invitations/{token}": (410,),
    "POST /v1/me/password": (429,),
    "POST /v1/sessions": (401, 429),
}

# Success responses that are not (only) JSON: ``METHOD path`` -> {status: media types}.
MEDIA_TYPES: dict[str, dict[int, tuple[str, ...]]] = {
    "GET /metrics": {200: ("text/plain",)},
    "GET /v1/log/checkpoint": {200: ("text/plain", "application/json")},
    "GET /v1/receipts/{receipt_id}/bundle": {200: ("application/json", "text/plain")},
    "GET /v1/warrants/{warrant_id}/bundle": {200: ("application/json", "text/plain")},
}

_KEY = frozenset({deps.principal})
_SESSION = frozenset({auth.human, auth.human_with_csrf})
_KEY_OR_SESSION = frozenset({auth.admin_tenant, auth.admin_caller})


def install(app: FastAPI) -> None:
    """Serve the completed document at ``/openapi.json`` (built once, on first use)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def document(app: FastAPI) -> dict[str, Any]:
    spec = get_openapi(title=app.title, version=app.version, summary=app.summary,
                       description=app.description, routes=app.routes)
    components = spec.setdefault("components", {})
    components.setdefault("schemas", {})["Problem"] = PROBLEM_SCHEMA
    components["securitySchemes"] = SECURITY_SCHEMES
    for route in api_routes(app):
        if not route.include_in_schema:
            continue
        for method in sorted(route.methods):
            operation = spec["paths"][route.path_format][method.lower()]
            _complete(operation, route, f"{method} {route.path_format}")
    _drop_unused_schemas(spec)
    return spec


def api_routes(app: FastAPI) -> list[Any]:
    """Every API route as served (FastAPI wraps included routers; their contexts read like
    the ``APIRoute`` with the router's settings applied)."""
    return [ctx for ctx in iter_route_contexts(app.routes) if isinstance(ctx.original_route, APIRoute)]


def _complete(operation: dict[str, Any], route: Any, name: str) -> None:
    security = security_of(route)
    if security:
        operation["security"] = security
    responses = operation.setdefault("responses", {})
    for status, media in MEDIA_TYPES.get(name, {}).items():
        entry = responses.setdefault(str(status), {"description": "OK"})
        schema = (entry.get("content") or {}).get("application/json", {}).get("schema", {})
        entry["content"] = {m: {"schema": schema} if m == "application/json" else {"schema": {"type": "string"}}
                            for m in media}
    for status in sorted(error_statuses(route, ROUTE_ERRORS.get(name, ()))):
        entry = responses.setdefault(str(status), {})
        entry["description"] = entry.get("description") or _DESCRIPTIONS.get(status, "Error")
        if entry["description"] in ("Validation Error", "Successful Response"):
            entry["description"] = _DESCRIPTIONS.get(status, "Error")
        entry["content"] = {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}
        if status == 401:
            entry["headers"] = {"WWW-Authenticate": {"schema": {"type": "string"}, "required": True,
                                                     "description": "the authentication scheme to use"}}
        if status == 429:
            entry["headers"] = {"Retry-After": {"schema": {"type": "integer"}, "required": False,
                                                "description": "seconds to wait"}}


def error_statuses(route: Any, extra: Iterable[int] = ()) -> set[int]:
    """The error statuses ``route`` can answer, from the rules every route follows:

    - any route: 413 and 422 (the middleware's body size, JSON depth and NUL rules apply to
      every request), 500 (an unexpected error);
    - a route that reads the store (every one but the liveness probe): 503;
    - a route that authenticates: 401 and 403;
    - a JSON body: 400 (malformed JSON) and 415 (another content type);
    - a path parameter: 404 (no such thing, or not visible to the caller);
    - a route's own declared error responses, and ``extra``.
    """
    calls = set(_calls(route.dependant))
    out = {413, 422, 500, *extra}
    if deps.services in calls:
        out.add(503)
    if calls & (_KEY | _SESSION | _KEY_OR_SESSION):
        out |= {401, 403}
    if route.body_field is not None:
        out |= {400, 415}
    if route.dependant.path_params:
        out.add(404)
    out |= {int(s) for s in (route.responses or {}) if str(s).isdigit() and int(s) >= 400}
    return out


def security_of(route: Any) -> list[dict[str, list[str]]]:
    """The OpenAPI ``security`` of a route, read from its authentication dependencies."""
    calls = set(_calls(route.dependant))
    if calls & _KEY_OR_SESSION:
        return [{"bearer": []}, {"session": []}]
    if calls & _SESSION:
        return [{"session": []}]
    if calls & _KEY:
        return [{"bearer": []}]
    return []


def _calls(dependant: Dependant) -> Iterable[Callable[..., Any]]:
    for dep in dependant.dependencies:
        if dep.call is not None:
            yield dep.call
        yield from _calls(dep)


def _drop_unused_schemas(spec: dict[str, Any]) -> None:
    """FastAPI's own 422 schemas, now that every 422 is a Problem."""
    text = repr(spec["paths"])
    schemas = spec["components"]["schemas"]
    for name in ("HTTPValidationError", "ValidationError"):
        if name in schemas and f"#/components/schemas/{name}'" not in text:
            del schemas[name]
