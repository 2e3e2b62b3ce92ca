"""The SDK's error mapping, retry rule and public surface, with ``httpx.MockTransport``
as a scripted fake server (no app needed): what the client does with each kind of answer.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

import warrantor.client
from warrantor.client import AsyncClient, Client, TransportError
from warrantor.errors import (
    ActionDeniedError,
    ConflictError,
    GoneError,
    InvalidTransitionError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    StorageError,
    ValidationError,
    WarrantorError,
)

Handler = Callable[[httpx.Request], httpx.Response]


def test_public_names_are_pinned() -> None:
    assert sorted(warrantor.client.__all__) == [
        "ActionDetail", "ActionPage", "ApprovalResult", "ApprovalTimeoutError", "AsyncClient",
        "Authorization", "Client", "ExecuteResult", "IntentFields", "NotarizeResult", "TransportError",
    ]
    for name in warrantor.client.__all__:
        assert getattr(warrantor.client, name).__module__.startswith("warrantor.client")


def problem(status: int, code: str, **extra: Any) -> httpx.Response:
    body = {"type": "about:blank", "title": code, "status": status, "detail": f"{code} happened",
            "code": code, "request_id": "req_1", **extra}
    return httpx.Response(status, json=body, headers={"content-type": "application/problem+json"})


class Script:
    """A fake server answering from a list, recording what it was sent."""

    def __init__(self, *answers: httpx.Response | Exception) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    def client(self, retries: int = 2) -> Client:
        return Client("http://wr.test", "wrt_k", transport=httpx.MockTransport(self), retries=retries)


MAPPING = [
    (403, "POLICY_DENIED", ActionDeniedError),
    (403, "CONTENT_SIGNATURE_MATCH", ActionDeniedError),
    (403, "CUMULATIVE_BUDGET_EXCEEDED", ActionDeniedError),
    (403, "FORBIDDEN_ROLE", PermissionDeniedError),
    (404, "NOT_FOUND", NotFoundError),
    (409, "INVALID_ACTION_STATE", InvalidTransitionError),
    (409, "DUPLICATE_REQUEST", ConflictError),
    (410, "CODE_EXPIRED", GoneError),
    (422, "VALIDATION_ERROR", ValidationError),
    (400, "INVALID_OUTCOME", ValidationError),
    (418, "SOMETHING_NEW", WarrantorError),
]


@pytest.mark.parametrize(("status", "code", "cls"), MAPPING)
def test_problem_codes_map_to_the_servers_classes(status: int, code: str, cls: type[WarrantorError]) -> None:
    details = {"action_id": "act_1", "receipt_id": "rcpt_1"}
    with Script(problem(status, code, details=details)).client() as c, pytest.raises(cls) as caught:
        c.get_action("act_1")
    err = caught.value
    assert type(err) is cls
    assert (err.code, err.status, err.message) == (code, status, f"{code} happened")
    assert err.details == {**details, "request_id": "req_1"}


def test_rate_limited_carries_retry_after() -> None:
    answer = problem(429, "RATE_LIMITED")
    answer.headers["Retry-After"] = "7"
    with Script(answer).client() as c, pytest.raises(RateLimitedError) as caught:
        c.authorize("wire_transfer")
    assert caught.value.retry_after == 7.0  # type: ignore[attr-defined]
    assert caught.value.headers == {"retry-after": "7"}


def test_a_non_json_error_still_maps_by_status() -> None:
    with Script(httpx.Response(404, text="no")).client() as c, pytest.raises(NotFoundError) as caught:
        c.get_action("act_1")
    assert caught.value.code == "HTTP_404"


def test_a_non_json_success_is_an_unexpected_response() -> None:
    with Script(httpx.Response(200, text="<html>")).client() as c, pytest.raises(WarrantorError) as caught:
        c.keys()
    assert caught.value.code == "UNEXPECTED_RESPONSE"


OK_ACTION = httpx.Response(200, json={"action_id": "act_1", "status": "authorized"})


def test_get_is_retried_on_503_and_connection_errors() -> None:
    script = Script(problem(503, "STORAGE_UNAVAILABLE"), httpx.ConnectError("refused"), OK_ACTION)
    with script.client() as c:
        assert c.get_action("act_1").status == "authorized"
    assert len(script.requests) == 3


def test_retries_stop_after_the_budget() -> None:
    script = Script(httpx.ConnectError("refused"))
    with script.client(retries=1) as c, pytest.raises(TransportError) as caught:
        c.get_action("act_1")
    assert len(script.requests) == 2
    assert caught.value.code == "TRANSPORT_ERROR" and isinstance(caught.value, WarrantorError)
    assert isinstance(caught.value.__cause__, httpx.ConnectError)


def test_notarize_and_decide_are_never_retried() -> None:
    script = Script(problem(503, "STORAGE_UNAVAILABLE"))
    with script.client() as c:
        with pytest.raises(StorageError):
            c.notarize("act_1")
        with pytest.raises(StorageError):
            c.decide("APR-1", "approve")
    assert [r.url.path for r in script.requests] == ["/v1/actions/act_1/notarize", "/v1/approvals/APR-1/confirm"]


def test_4xx_is_never_retried() -> None:
    script = Script(problem(409, "DUPLICATE_REQUEST"))
    with script.client() as c, pytest.raises(ConflictError):
        c.authorize("wire_transfer")
    assert len(script.requests) == 1


def test_authorize_retries_with_one_key_and_each_call_gets_a_new_one() -> None:
    created = httpx.Response(201, json={"action_id": "act_1", "status": "authorized"})
    script = Script(httpx.ReadError("reset"), created, created)
    with script.client() as c:
        c.authorize("wire_transfer")
        c.authorize("wire_transfer", idempotency_key="mine")
    keys = [r.headers["idempotency-key"] for r in script.requests]
    assert keys[0] == keys[1] and keys[0].startswith("sdk_") and keys[2] == "mine"


def test_authorize_sends_only_the_fields_given() -> None:
    created = httpx.Response(201, json={"action_id": "act_1", "status": "authorized"})
    script = Script(created)
    with script.client() as c:
        c.authorize("send_email", details="hi", payload={"to": "a@example.com"}, agent_id="bot")
    assert json.loads(script.requests[0].content) == {
        "action_type": "send_email", "details": "hi", "payload": {"to": "a@example.com"}, "agent_id": "bot",
    }
    assert script.requests[0].headers["authorization"] == "Bearer wrt_k"


def test_approval_codes_are_the_credential_so_no_key_is_sent() -> None:
    script = Script(httpx.Response(200, json={"action_id": "act_1"}))
    with script.client() as c:
        c.approval("APR-1")
    assert "authorization" not in script.requests[0].headers


def test_ids_cannot_change_the_route() -> None:
    script = Script(OK_ACTION)
    with script.client() as c:
        c.get_action("../keys?x=1")
    assert script.requests[0].url.raw_path == b"/v1/actions/..%2Fkeys%3Fx%3D1"


def test_long_polls_extend_the_read_timeout() -> None:
    script = Script(OK_ACTION)
    with script.client() as c:
        c.get_action("act_1", wait=30)
    request = script.requests[0]
    assert request.url.params["wait"] == "30"
    assert request.extensions["timeout"]["read"] == 40.0


def test_async_client_maps_and_retries_the_same_way() -> None:
    script = Script(httpx.ConnectError("refused"), problem(403, "POLICY_DENIED", details={"receipt_id": "r"}))

    async def scenario() -> None:
        async with AsyncClient("http://wr.test", "k", transport=httpx.MockTransport(script)) as c:
            with pytest.raises(ActionDeniedError) as caught:
                await c.authorize("wire_transfer")
            assert caught.value.details["receipt_id"] == "r"

    asyncio.run(scenario())
    assert len(script.requests) == 2


def test_guard_refuses_the_wrong_kind_of_function() -> None:
    sync, asynchronous = Client("http://wr.test", "k"), AsyncClient("http://wr.test", "k")

    async def coro() -> None: ...

    def plain() -> None: ...

    with pytest.raises(TypeError, match=r"AsyncClient\.guard"):
        sync.guard("x")(coro)
    with pytest.raises(TypeError, match=r"use Client\.guard"):
        asynchronous.guard("x")(plain)  # type: ignore[arg-type]


def test_the_sdk_imports_no_server_code() -> None:
    """An agent installs the SDK without the server's stack: importing it must not pull it in."""
    import subprocess
    import sys

    probe = ("import sys, warrantor.client; print(sorted(m for m in sys.modules if m.split('.')[0] in "
             "('fastapi', 'starlette', 'sqlalchemy', 'pydantic') or m.startswith(('warrantor.server', "
             "'warrantor.service', 'warrantor.store'))))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
