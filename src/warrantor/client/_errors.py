"""Turning HTTP failures back into Warrantor's exception tree.

The server renders every ``WarrantorError`` as RFC 9457 problem+json with a stable
``code``; ``error_from_response`` maps that ``code`` (and the status) back to the same
class with ``warrantor.errors.error_class_for``, so a caller catches ``ActionDeniedError``
whether the policy ran in process or behind HTTP. The client adds two errors of its own:

    WarrantorError                      (warrantor.errors)
     +-- ...                            every server error, by ``code``
     +-- TransportError                 TRANSPORT_ERROR: no HTTP answer (connect, read, timeout)
     +-- ApprovalTimeoutError           APPROVAL_TIMEOUT: a guard gave up waiting for a human

Not here: retry decisions (``_calls``) and I/O (``_sync``, ``_async``).
"""

from __future__ import annotations

from typing import Any

import httpx

from warrantor.errors import RateLimitedError, WarrantorError, error_class_for


class TransportError(WarrantorError):
    """No HTTP answer arrived: connection refused or reset, timeout, protocol error.

    Wraps the ``httpx`` exception (``__cause__``); ``details`` names the method and URL.
    """

    code = "TRANSPORT_ERROR"
    status = 503
    title = "Transport error"


class ApprovalTimeoutError(WarrantorError):
    """A guarded call waited ``approval_timeout`` seconds and the action is still pending.

    The action stays pending on the server (a human may still decide); the guarded function
    was not called.
    """

    code = "APPROVAL_TIMEOUT"
    status = 408
    title = "Approval timeout"


def wrap_transport(exc: httpx.HTTPError, request: httpx.Request) -> TransportError:
    return TransportError(
        f"expected an HTTP response from {request.method} {request.url}, got {type(exc).__name__}: {exc}",
        details={"method": request.method, "url": str(request.url)},
    )


def error_from_response(response: httpx.Response) -> WarrantorError:
    """The exception for a non-2xx response: the problem document's class, code and details."""
    problem = problem_document(response)
    code = str(problem.get("code") or f"HTTP_{response.status_code}")
    cls = error_class_for(code, response.status_code)
    message = str(problem.get("detail") or problem.get("title") or response.reason_phrase)
    details = dict(problem.get("details") or {})
    if problem.get("request_id"):
        details.setdefault("request_id", problem["request_id"])
    headers = {k: v for k, v in response.headers.items() if k.lower() == "retry-after"}
    error = cls(message, code=code, status=response.status_code, details=details, headers=headers)
    if isinstance(error, RateLimitedError):
        error.retry_after = retry_after_seconds(response)  # type: ignore[attr-defined]
    return error


def retry_after_seconds(response: httpx.Response) -> float | None:
    """``Retry-After`` in seconds (RFC 9110 allows an HTTP date; we read delta-seconds only)."""
    value = response.headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def problem_document(response: httpx.Response) -> dict[str, Any]:
    """The answer's JSON object (a problem document on an error); ``{}`` for any other body.
    The CLI's ``Api`` reads its errors through this too."""
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
