"""RFC 9457 problem documents: the one place errors become HTTP responses.

Every error body is ``application/problem+json`` with ``type``, ``title``, ``status``,
``detail``, a stable upper-case ``code`` and the ``request_id``. Unexpected exceptions
become a bare 500 that leaks nothing but the request id (the log has the rest).
"""

from __future__ import annotations

import json
import logging
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import iter_route_contexts
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import Match

from warrantor.errors import WarrantorError

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
_HTTP_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    406: "NOT_ACCEPTABLE",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
}


def problem_type(code: str) -> str:
    return f"https://warrantor.dev/problems/{code.lower().replace('_', '-')}"


def request_id_of(request: Request) -> str:
    return str(request.scope.get("state", {}).get("request_id", ""))


def problem_response(
    status: int,
    code: str,
    detail: str,
    request_id: str,
    *,
    title: str | None = None,
    details: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    body: dict[str, Any] = {
        "type": problem_type(code),
        "title": title or code.replace("_", " ").capitalize(),
        "status": status,
        "detail": detail,
        "code": code,
        "request_id": request_id,
    }
    if details:
        body["details"] = details
    return Response(orjson.dumps(body), status_code=status, media_type=PROBLEM_JSON, headers=headers)


def render_stored_problem(body: dict[str, Any], request_id: str) -> Response:
    """A problem document stored with an action (denials), replayed with this request's id."""
    return Response(
        orjson.dumps({**body, "request_id": request_id}),
        status_code=int(body["status"]),
        media_type=PROBLEM_JSON,
    )


def install(app: FastAPI) -> None:
    @app.exception_handler(WarrantorError)
    async def _warrantor(request: Request, exc: WarrantorError) -> Response:
        if exc.status >= 500:
            log.error("request %s failed: %s", request_id_of(request), exc, exc_info=exc)
        headers = dict(exc.headers)
        if exc.status == 401 and "WWW-Authenticate" not in headers:
            headers["WWW-Authenticate"] = bearer_challenge(exc.code)
        elif exc.status == 403 and exc.code == "FORBIDDEN_ROLE" and request.headers.get("authorization"):
            headers.setdefault("WWW-Authenticate", bearer_challenge("insufficient_scope"))
        return problem_response(
            exc.status, exc.code, exc.message, request_id_of(request),
            title=exc.title, details=exc.details or None, headers=headers or None,
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        errors = [_error(e) for e in exc.errors()]
        content_type = request.headers.get("content-type", "")
        if request.url.path.startswith("/v1/") and content_type and "json" not in content_type.lower():
            return problem_response(
                415, "UNSUPPORTED_MEDIA_TYPE",
                f"expected Content-Type: application/json, got {content_type.split(';')[0]!r}",
                request_id_of(request), title="Unsupported media type",
            )
        if any(e["type"] in ("json_invalid", "json_type") for e in errors):
            where = _json_error_position(request)
            at = f" at line {where['line']}, column {where['column']}" if where else ""
            return problem_response(
                400, "MALFORMED_JSON", f"expected a JSON object as the request body{at}: " + _json_reason(exc),
                request_id_of(request), title="Malformed JSON", details={**where, "errors": errors},
            )
        summary = "; ".join(f"{field_path(e['loc']) or '(body)'}: {e['msg']}" for e in errors[:5])
        first: dict[str, Any] = errors[0] if errors else {"loc": [], "type": ""}
        details: dict[str, Any] = {"field": field_path(first["loc"])}
        if expected := _EXPECTED.get(str(first["type"])):
            details["expected"] = expected
        return problem_response(
            422, "VALIDATION_ERROR", summary, request_id_of(request),
            title="Invalid request", details={**details, "errors": errors},
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        code = _HTTP_CODES.get(exc.status_code, f"HTTP_{exc.status_code}")
        headers = dict(exc.headers or {})
        if exc.status_code == 405:  # every method the path serves, not only the first route's
            headers["Allow"] = ", ".join(allowed_methods(request))
        return problem_response(exc.status_code, code, str(exc.detail), request_id_of(request),
                                headers=headers or None)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error in request %s", request_id_of(request))
        return problem_response(
            500, "INTERNAL_ERROR", "an unexpected error occurred; quote the request_id when reporting it",
            request_id_of(request), title="Internal error",
        )


def _error(e: Any) -> dict[str, Any]:
    loc = list(e.get("loc", ()))
    if loc[:1] == ["body"]:
        loc = loc[1:]
    return {"loc": loc, "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}


# The JSON type a pydantic error type asks for, for ``details.expected``.
_EXPECTED = {
    "missing": "a value (the field is required)",
    "int_type": "integer", "int_parsing": "integer", "int_from_float": "integer",
    "string_type": "string", "bool_type": "boolean", "bool_parsing": "boolean",
    "dict_type": "object", "model_type": "object", "model_attributes_type": "object",
    "list_type": "array", "float_type": "number", "literal_error": "one of the listed values",
    "extra_forbidden": "no such field (unknown fields are refused)",
}


def field_path(loc: list[Any] | tuple[Any, ...]) -> str:
    """A pydantic location as a JSON path: ``["scopes", 0, "scope"]`` -> ``scopes[0].scope``;
    a query, path or header parameter is named without its location."""
    parts = list(loc)
    if parts[:1] in (["query"], ["path"], ["header"], ["cookie"]):
        parts = parts[1:]
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _json_error_position(request: Request) -> dict[str, int]:
    """Line and column (1-based) of the first syntax error in the request body, which the
    middleware kept (``scope.state.raw_body``); empty if it is not at hand."""
    body = request.scope.get("state", {}).get("raw_body")
    if not isinstance(body, bytes):
        return {}
    try:
        json.loads(body)
    except json.JSONDecodeError as exc:
        return {"line": exc.lineno, "column": exc.colno}
    except (UnicodeDecodeError, RecursionError, ValueError):
        return {}
    return {}


def _json_reason(exc: RequestValidationError) -> str:
    for e in exc.errors():
        ctx = e.get("ctx") or {}
        if ctx.get("error"):
            return str(ctx["error"])
    return str(exc.errors()[0].get("msg", "")) if exc.errors() else "not JSON"


BEARER_CHALLENGE = 'Bearer realm="warrantor"'
# A console session: not a registered HTTP authentication scheme, but RFC 9110 wants a
# challenge on every 401, and this one says where a session comes from.
SESSION_CHALLENGE = 'Session realm="warrantor", cookie="warrantor_session", login="/v1/sessions"'


def bearer_challenge(code: str) -> str:
    """``WWW-Authenticate`` for a 401 (RFC 9110 section 11.6.1) in RFC 6750's terms: no
    ``error`` when no key was sent, ``invalid_token`` for an unknown or revoked one, and
    ``insufficient_scope`` (on a 403) for a key whose role may not call the route. The
    console's own 401s (no session, a wrong password) challenge for a session instead."""
    if code in ("HUMAN_SESSION_REQUIRED", "INVALID_CREDENTIALS"):
        return SESSION_CHALLENGE
    if code == "INVALID_API_KEY":
        return f'{BEARER_CHALLENGE}, error="invalid_token", error_description="the API key is unknown or revoked"'
    if code == "insufficient_scope":
        return f'{BEARER_CHALLENGE}, error="insufficient_scope", error_description="the role does not allow this"'
    return BEARER_CHALLENGE


def allowed_methods(request: Request) -> list[str]:
    """The methods routes serve at the request's path (for ``Allow`` on a 405). A path that
    a route names literally (``/v1/policies/evaluate``) is that resource, as in OpenAPI,
    not also an instance of a template that would match it (``/v1/policies/{bundle_hash}``)."""
    literal: set[str] = set()
    templated: set[str] = set()
    scope = {**request.scope, "type": "http"}
    for route in iter_route_contexts(request.app.router.routes):
        match, _ = route.matches(scope)
        if match is not Match.NONE:
            (templated if "{" in (route.path_format or "") else literal).update(route.methods or ())
    return sorted(literal or templated)
