"""Pure ASGI middleware: request ids, body size limit, access metrics.

Pure ASGI (not ``BaseHTTPMiddleware``) so that it adds microseconds, not a task per request.
"""

from __future__ import annotations

import time
from collections.abc import MutableMapping
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from warrantor.domain.clock import random_token
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

        declared = _content_length(scope)
        if declared is not None and declared > self.max_body_bytes:
            response = problem_response(
                413, "PAYLOAD_TOO_LARGE",
                f"expected a body of at most {self.max_body_bytes} bytes, got {declared}", request_id,
            )
            await response(scope, receive, send)
            self.metrics.observe(scope, 413, time.perf_counter() - started)
            return

        received = 0
        too_large = False

        async def limited_receive() -> Message:
            nonlocal received, too_large
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    too_large = True
                    raise _BodyTooLargeError
            return message

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, limited_receive, send_wrapper)
        except _BodyTooLargeError:
            response = problem_response(
                413, "PAYLOAD_TOO_LARGE", f"expected a body of at most {self.max_body_bytes} bytes", request_id,
            )
            await response(scope, receive, send_wrapper)
        finally:
            self.metrics.observe(scope, status_holder["status"], time.perf_counter() - started)
        del too_large


class _BodyTooLargeError(Exception):
    pass


def _content_length(scope: MutableMapping[str, Any]) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
