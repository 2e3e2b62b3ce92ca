"""Pure ASGI middleware: request ids, the input rules every request passes, access metrics.

Pure ASGI (not ``BaseHTTPMiddleware``) so that it adds microseconds, not a task per request.

Every HTTP request body is read here in full, up to ``max_body_bytes``, before the app
sees any of it, then replayed to the app; so these rules hold for every route, in one
place, before anything parses or stores the input:

- a body over the limit is 413 ``PAYLOAD_TOO_LARGE``, whether it declared a
  ``Content-Length`` or arrived chunked (the app never reads a byte of it: a streamed body
  cut off inside the framework would otherwise surface as a 400);
- a JSON body (``application/json``, ``+json``, or no content type, which FastAPI reads as
  JSON) nested deeper than ``MAX_JSON_DEPTH`` (64) is 422 ``JSON_TOO_DEEP``, checked on the
  raw text (:mod:`warrantor.evidence.jsontext`);
- U+0000 anywhere a string can come from (a ``\u0000`` escape in a JSON body, ``%00`` in a
  form body or the query string, the decoded path, a header value) is 422
  ``NUL_CHARACTER``: PostgreSQL cannot store it and SQLite can, so refusing it here gives
  the same answer on both stores. Multipart bodies (file uploads to the stateless verify
  page) are not searched for NUL bytes.
"""

from __future__ import annotations

import time
from collections.abc import MutableMapping
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from warrantor.domain.clock import random_token
from warrantor.errors import ValidationError
from warrantor.evidence import jsontext
from warrantor.server.metrics import Metrics
from warrantor.server.problems import problem_response


class RequestContext:
    def __init__(self, app: ASGIApp, *, max_body_bytes: int, metrics: Metrics) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = "req_" + random_token(80)
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status_holder = {"status": 500}

        try:
            body = await self._checked_body(scope, receive)
        except ValidationError as exc:
            response = problem_response(exc.status, exc.code, exc.message, request_id, title=exc.title,
                                        details=exc.details or None, headers={"x-request-id": request_id})
            await response(scope, receive, send)
            self.metrics.observe(scope, exc.status, time.perf_counter() - started)
            return
        if body is None:  # the client left before its body was complete: nobody to answer
            self.metrics.observe(scope, 499, time.perf_counter() - started)
            return
        scope["state"]["raw_body"] = body  # for the line and column of a JSON syntax error

        replayed = False

        async def replay_receive() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                headers = list(message.get("headers", []))
                # A route may echo the caller's own id instead (AuthZEN's X-Request-ID).
                echoed = scope["state"].get("echo_request_id")
                headers.append((b"x-request-id", (echoed or request_id).encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, replay_receive, send_wrapper)
        finally:
            self.metrics.observe(scope, status_holder["status"], time.perf_counter() - started)


    async def _checked_body(self, scope: Scope, receive: Receive) -> bytes | None:
        """The body, read whole and checked (None if the client left); ``ValidationError``
        (413 or 422) when it breaks a rule of the module docstring."""
        limit = self.max_body_bytes
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            raise PayloadTooLargeError(f"expected a body of at most {limit} bytes, got {declared}")
        body, gone = await _read_body(receive, limit)
        if gone:
            return None
        if body is None:
            raise PayloadTooLargeError(f"expected a body of at most {limit} bytes")
        _check_input(scope, body)
        return body


class PayloadTooLargeError(ValidationError):
    code = "PAYLOAD_TOO_LARGE"
    status = 413
    title = "Payload too large"


async def _read_body(receive: Receive, limit: int) -> tuple[bytes | None, bool]:
    """The whole body (None past ``limit``), and whether the client disconnected first."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None, True
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None, False
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), False


def _check_input(scope: MutableMapping[str, Any], body: bytes) -> None:
    """The JSON depth and NUL rules of the module docstring; raises ``ValidationError``."""
    if "\x00" in scope.get("path", ""):
        raise jsontext.NulCharacterError("the path contains a NUL character (%00)")
    query = scope.get("query_string", b"")
    if b"%00" in query or b"\x00" in query:
        raise jsontext.NulCharacterError("the query string contains a NUL character (%00)")
    content_type = b""
    for name, value in scope.get("headers", []):
        if b"\x00" in value:
            raise jsontext.NulCharacterError(f"the {name.decode('latin-1')} header contains a NUL character")
        if name == b"content-type":
            content_type = value.lower()
    if not body:
        return
    if not content_type or b"json" in content_type:
        jsontext.check_no_nul(body, "the request body")
        jsontext.check_depth(body, "the request body")
    elif content_type.startswith(b"application/x-www-form-urlencoded") and (b"%00" in body or b"\x00" in body):
        raise jsontext.NulCharacterError("the form contains a NUL character (%00)")


def _content_length(scope: MutableMapping[str, Any]) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
