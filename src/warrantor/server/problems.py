"""RFC 9457 problem documents: the one place errors become HTTP responses.

Every error body is ``application/problem+json`` with ``type``, ``title``, ``status``,
``detail``, a stable upper-case ``code`` and the ``request_id``. Unexpected exceptions
become a bare 500 that leaks nothing but the request id (the log has the rest).
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

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
        return problem_response(
            exc.status, exc.code, exc.message, request_id_of(request),
            title=exc.title, details=exc.details or None, headers=exc.headers or None,
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
            return problem_response(
                400, "MALFORMED_JSON", "expected a JSON object as the request body: " + errors[0]["msg"],
                request_id_of(request), title="Malformed JSON", details={"errors": errors},
            )
        summary = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors[:5])
        return problem_response(
            422, "VALIDATION_ERROR", summary, request_id_of(request),
            title="Invalid request", details={"errors": errors},
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        code = _HTTP_CODES.get(exc.status_code, f"HTTP_{exc.status_code}")
        return problem_response(exc.status_code, code, str(exc.detail), request_id_of(request))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error in request %s", request_id_of(request))
        return problem_response(
            500, "INTERNAL_ERROR", "an unexpected error occurred; quote the request_id when reporting it",
            request_id_of(request), title="Internal error",
        )


def _error(e: Any) -> dict[str, Any]:
    loc = [p for p in e.get("loc", ()) if p != "body"]
    return {"loc": loc, "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
