"""The API as data: one ``Call`` per endpoint, and the retry rule, shared by both clients.

``Client`` and ``AsyncClient`` differ only in how they wait for I/O; what to send, how to
read the answer and whether a failure may be retried is decided here, without I/O, so the
two cannot drift apart: ``ClientConfig`` turns a ``Call`` into the arguments of httpx's
``request`` and an answer (or its absence) into a delay before the next attempt, and
``read`` turns the final answer into the result or its Warrantor error.

Retry rule: a request is retried (``retries`` times, exponential backoff with jitter, a
``Retry-After`` header honoured up to ``MAX_DELAY``) on a transport error or a 502/503/504
answer, and only when repeating it cannot do anything twice: every GET, and
``POST /v1/actions``, which always carries an ``Idempotency-Key`` so the server replays the
first answer. Notarize and approval decisions are never retried: a repeat after a lost
answer would be refused (``INVALID_ACTION_STATE``, ``ALREADY_RESOLVED``), not duplicated,
but the caller should see the first failure rather than that refusal.
"""

from __future__ import annotations

import random
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypedDict, TypeVar
from urllib.parse import quote

import httpx

from warrantor import __version__
from warrantor.client._errors import error_from_response, retry_after_seconds, wrap_transport
from warrantor.client._models import (
    ActionDetail,
    ActionPage,
    ApprovalResult,
    Authorization,
    ExecuteResult,
    NotarizeResult,
)
from warrantor.errors import WarrantorError

T = TypeVar("T")

RETRY_STATUSES = frozenset({502, 503, 504})
BASE_DELAY = 0.2
MAX_DELAY = 5.0
MAX_WAIT = 60.0  # the server's ceiling for ``?wait=``
USER_AGENT = f"warrantor-python/{__version__}"


class IntentFields(TypedDict, total=False):
    """Optional fields of ``POST /v1/actions`` besides type, details, payload and key."""

    agent_id: str
    agent_version: str
    model_id: str
    model_version: str
    instruction_hash: str
    parent_action_id: str
    endpoint_url: str
    scope: str
    resource: str
    authorization_id: str
    run_id: str
    usage: dict[str, int]
    context: dict[str, Any]
    labels: list[str]
    require_approval: bool
    approvers: list[str]


def _identity(body: Any) -> Any:
    return body


@dataclass(frozen=True)
class Call(Generic[T]):
    """One request: what to send, whether a retry is safe, and how to read a 2xx body."""

    method: str
    path: str
    parse: Callable[[Any], T]
    json: Mapping[str, Any] | None = None
    params: Mapping[str, Any] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    retryable: bool = False
    authenticated: bool = True
    extra_timeout: float = 0.0  # added to the read timeout for long polls


def segment(value: str) -> str:
    """A path segment, percent-encoded so an id can never change the route."""
    return quote(str(value), safe="")


def new_idempotency_key() -> str:
    return "sdk_" + secrets.token_hex(16)


def retry_delay(call: Call[Any], attempt: int, retries: int, retry_after: float | None = None) -> float | None:
    """Seconds to wait before attempt ``attempt + 1``, or None when no retry is allowed."""
    if not call.retryable or attempt >= retries:
        return None
    if retry_after is not None:
        return min(retry_after, MAX_DELAY)
    return random.uniform(0, min(MAX_DELAY, BASE_DELAY * 2**attempt))  # noqa: S311 - jitter, not a secret


@dataclass(frozen=True)
class ClientConfig:
    """One client's key, timeout and retry budget, and what they make of each ``Call``."""

    api_key: str
    timeout: float
    retries: int

    def http_options(self, base_url: str) -> dict[str, Any]:
        """Keyword arguments for ``httpx.Client`` or ``httpx.AsyncClient`` (besides the transport)."""
        return {"base_url": base_url, "timeout": self.timeout, "headers": {"User-Agent": USER_AGENT}}

    def request_options(self, call: Call[Any]) -> dict[str, Any]:
        """Keyword arguments for httpx's ``request``: the key unless the call is anonymous, and
        the read timeout stretched by the call's long poll."""
        headers = dict(call.headers)
        if call.authenticated:
            headers["Authorization"] = f"Bearer {self.api_key}"
        timeout = httpx.Timeout(self.timeout, read=self.timeout + call.extra_timeout)
        return {"method": call.method, "url": call.path, "json": call.json, "params": call.params,
                "headers": headers, "timeout": timeout}

    def delay_after_error(self, call: Call[Any], attempt: int, exc: httpx.TransportError) -> float:
        """Seconds to wait after attempt ``attempt`` got no answer; raises ``TransportError``
        when no retry is allowed."""
        delay = retry_delay(call, attempt, self.retries)
        if delay is None:
            raise wrap_transport(exc, exc.request) from exc
        return delay

    def delay_after_answer(self, call: Call[Any], attempt: int, response: httpx.Response) -> float | None:
        """Seconds to wait after attempt ``attempt`` got ``response``, or None: ``read`` it."""
        if response.status_code not in RETRY_STATUSES:
            return None
        return retry_delay(call, attempt, self.retries, retry_after_seconds(response))


def authorize(
    action_type: str, details: str, payload: Mapping[str, Any] | None,
    idempotency_key: str | None, fields: Mapping[str, Any],
) -> Call[Authorization]:
    body = {"action_type": action_type, "details": details, "payload": dict(payload or {})}
    body.update({k: v for k, v in fields.items() if v is not None})
    return Call(
        "POST", "/v1/actions", Authorization.from_json, json=body,
        headers={"Idempotency-Key": idempotency_key or new_idempotency_key()}, retryable=True,
    )


def get_action(action_id: str, wait: float | None, status: str | None = None) -> Call[ActionDetail]:
    """With ``wait``, a long poll; with ``status`` too, it answers at once if the action has
    already left that status (no waiting for a change that already happened)."""
    params: dict[str, Any] | None = {"wait": min(wait, MAX_WAIT)} if wait else None
    if params is not None and status is not None:
        params["status"] = status
    return Call(
        "GET", f"/v1/actions/{segment(action_id)}", ActionDetail.from_json,
        params=params, retryable=True, extra_timeout=min(wait or 0.0, MAX_WAIT),
    )


def notarize(
    action_id: str, outcome: str, outcome_details: str | None,
    executed: Mapping[str, Any] | None, usage: Mapping[str, int] | None,
    evidence_grade: str | None = None, witness: Mapping[str, str] | None = None,
) -> Call[NotarizeResult]:
    body: dict[str, Any] = {"outcome": outcome}
    fields = (("outcome_details", outcome_details), ("executed", executed), ("usage", usage),
              ("evidence_grade", evidence_grade), ("witness", witness))
    for key, value in fields:
        if value is not None:
            body[key] = dict(value) if isinstance(value, Mapping) else value
    return Call("POST", f"/v1/actions/{segment(action_id)}/notarize", NotarizeResult.from_json, json=body)


EXECUTE_WAIT = 60.0  # the server's default deadline for one execution is 30 s


def execute(action_id: str, timeout: float | None) -> Call[ExecuteResult]:
    """Warrantor sends the action's HTTP request itself; never retried (a repeat is 409, and
    after a lost answer the action's status says what happened)."""
    return Call("POST", f"/v1/actions/{segment(action_id)}/execute", ExecuteResult.from_json,
                extra_timeout=EXECUTE_WAIT if timeout is None else timeout)


def list_actions(page: int, per_page: int, filters: Mapping[str, str | None]) -> Call[ActionPage]:
    params: dict[str, Any] = {"page": page, "per_page": per_page}
    params.update({k: v for k, v in filters.items() if v is not None})
    return Call("GET", "/v1/actions", ActionPage.from_json, params=params, retryable=True)


def approval(code: str) -> Call[dict[str, Any]]:
    """Review a held action by its approval code; the code is the credential, no API key."""
    return Call("GET", f"/v1/approvals/{segment(code)}", _identity, retryable=True, authenticated=False)


def decide(code: str, decision: str, reason: str | None) -> Call[ApprovalResult]:
    body: dict[str, Any] = {"decision": decision}
    if reason is not None:
        body["reason"] = reason
    return Call(
        "POST", f"/v1/approvals/{segment(code)}/confirm", ApprovalResult.from_json,
        json=body, authenticated=False,
    )


def confirm(nonce: str, approved: bool, ttl_seconds: int | None) -> Call[dict[str, Any]]:
    """Relay an end user's answer to a confirmation nonce (single use: not retried)."""
    body: dict[str, Any] = {"approved": approved}
    if ttl_seconds is not None:
        body["ttl_seconds"] = ttl_seconds
    return Call("POST", f"/v1/confirmations/{segment(nonce)}", _identity, json=body)


def _outlooks(body: Any) -> dict[str, dict[str, Any]]:
    return {o["action_type"]: o for o in body["outlooks"]}


def policy_outlook(action_types: list[str]) -> Call[dict[str, dict[str, Any]]]:
    """What the active bundle can decide for each action type, by type (a read: retryable)."""
    return Call("POST", "/v1/policies/outlook", _outlooks, json={"action_types": action_types}, retryable=True)


def get_json(path: str, *, authenticated: bool = True) -> Call[dict[str, Any]]:
    return Call("GET", path, _identity, retryable=True, authenticated=authenticated)


def keys() -> Call[list[dict[str, Any]]]:
    return Call("GET", "/v1/keys", lambda body: list(body["keys"]), retryable=True, authenticated=False)


def trust() -> Call[dict[str, Any]]:
    return get_json("/v1/trust", authenticated=False)


def receipt(receipt_id: str) -> Call[dict[str, Any]]:
    return get_json(f"/v1/receipts/{segment(receipt_id)}")


def receipt_bundle(receipt_id: str) -> Call[dict[str, Any]]:
    return get_json(f"/v1/receipts/{segment(receipt_id)}/bundle")


def read(call: Call[T], response: httpx.Response) -> T:
    """The parsed body of a 2xx answer; any other answer raises its Warrantor error."""
    if response.is_error:
        raise error_from_response(response)
    try:
        body = response.json()
    except ValueError as exc:
        raise WarrantorError(
            f"expected a JSON body from {call.method} {call.path}, "
            f"got {response.headers.get('content-type')!r}",
            code="UNEXPECTED_RESPONSE", status=response.status_code,
        ) from exc
    return call.parse(body)
