"""``POST /v1/actions`` is served by a plain Starlette route (``routes.actions.authorize_hot``)
in front of the FastAPI route. It must answer exactly as the FastAPI route would, for
friendly and hostile requests alike: the same app with ``hot_routes=False`` is the
reference, over the same services."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from support import Env
from warrantor.server.app import create_app

GOOD = {"action_type": "wire_transfer", "details": "Pay ACME", "instruction_hash": "sha256:ab",
        "payload": {"amount_minor": 1200, "currency": "EUR", "beneficiary": "ACME GmbH"}}
JSON = {"content-type": "application/json"}

# (name, headers without Authorization, body bytes, role or None for no key)
CASES: list[tuple[str, dict[str, str], bytes, str | None]] = [
    ("malformed JSON", JSON, b'{"action_type": "wire_transfer",\n "payload": {', "agent"),
    ("malformed JSON, no key", JSON, b"{nope", None),
    ("empty body", JSON, b"", "agent"),
    ("a JSON array", JSON, b"[1, 2]", "agent"),
    ("a JSON string", JSON, b'"wire_transfer"', "agent"),
    ("null", JSON, b"null", "agent"),
    ("text/plain", {"content-type": "text/plain"}, json.dumps(GOOD).encode(), "agent"),
    ("no content type", {}, json.dumps(GOOD).encode(), "agent"),
    ("form content type", {"content-type": "application/x-www-form-urlencoded"}, b"a=1", "agent"),
    ("no key", JSON, json.dumps(GOOD).encode(), None),
    ("unknown key", JSON, json.dumps(GOOD).encode(), "wrong"),
    ("operator key", JSON, json.dumps(GOOD).encode(), "operator"),
    ("approver-less role", JSON, json.dumps(GOOD).encode(), "auditor"),
    ("an unknown field", JSON, json.dumps({**GOOD, "amount": 5}).encode(), "agent"),
    ("details of the wrong type", JSON, json.dumps({**GOOD, "details": 5}).encode(), "agent"),
    ("no action_type", JSON, json.dumps({k: v for k, v in GOOD.items() if k != "action_type"}).encode(), "agent"),
    ("a bad action_type", JSON, json.dumps({**GOOD, "action_type": "wire transfer!"}).encode(), "agent"),
    ("labels of the wrong type", JSON, json.dumps({**GOOD, "labels": "x"}).encode(), "agent"),
    ("a long Idempotency-Key", {**JSON, "idempotency-key": "k" * 300}, json.dumps(GOOD).encode(), "agent"),
    ("a long key and a bad body", {**JSON, "idempotency-key": "k" * 300}, b"[]", "agent"),
    ("keys that disagree", {**JSON, "idempotency-key": "a"}, json.dumps({**GOOD, "idempotency_key": "b"}).encode(),
     "agent"),
    ("+json content type", {"content-type": "application/merge-patch+json"}, json.dumps({**GOOD, "x": 1}).encode(),
     "agent"),
    ("a charset", {"content-type": "application/json; charset=utf-8"}, b'{"action_type": 1}', "agent"),
    ("NaN", JSON, b'{"action_type": "wire_transfer", "payload": {"amount_minor": NaN}}', "agent"),
    ("a huge integer", JSON, b'{"action_type": "wire_transfer", "payload": {"amount_minor": 1' + b"0" * 30 + b"}}",
     "agent"),
    ("an integral float", JSON, b'{"action_type": "wire_transfer", "payload": {"amount_minor": 1200.0}}', "agent"),
    ("too deep", JSON, b'{"payload": ' + b"[" * 100 + b"]" * 100 + b"}", "agent"),
    ("a NUL escape", JSON, b'{"action_type": "wire_transfer", "details": "a\\u0000b"}', "agent"),
    ("invalid UTF-8", JSON, b'{"action_type": "wire_transfer", "details": "\xff"}', "agent"),
    ("approvers nobody knows", JSON, json.dumps({**GOOD, "approvers": ["mallory@evil.example"]}).encode(), "agent"),
    ("another agent's id", JSON, json.dumps({**GOOD, "agent_id": "someone-else"}).encode(), "agent"),
]


def _headers(env: Env, headers: dict[str, str], role: str | None) -> dict[str, str]:
    out = dict(headers)
    if role == "wrong":
        out["authorization"] = "Bearer wrt_" + "x" * 32
    elif role == "operator":
        out.update(env.operator)
    elif role is not None:
        out.update(env.h(role))
    return out


def _comparable(response: Any) -> tuple[int, str | None, str | None, Any]:
    try:
        body = response.json()
    except ValueError:
        body = response.text
    if isinstance(body, dict):
        body.pop("request_id", None)
    return (response.status_code, response.headers.get("content-type"), response.headers.get("www-authenticate"),
            body)


@pytest.fixture
def reference(env: Env) -> TestClient:
    return TestClient(create_app(env.settings, services=env.services, hot_routes=False))


@pytest.mark.parametrize("name,headers,body,role", CASES, ids=[c[0] for c in CASES])
def test_the_hot_route_answers_every_refusal_like_fastapi(
    env: Env, reference: TestClient, name: str, headers: dict[str, str], body: bytes, role: str | None,
) -> None:
    sent = _headers(env, headers, role)
    hot = env.client.post("/v1/actions", content=body, headers=sent)
    ref = reference.post("/v1/actions", content=body, headers=sent)
    assert hot.status_code >= 400, (name, hot.status_code, hot.text)  # every case here is refused
    assert _comparable(hot) == _comparable(ref), name


@pytest.mark.parametrize("extra", [{}, {"payload": {**GOOD["payload"], "amount_minor": 9_000_000}},
                                   {"payload": {**GOOD["payload"], "amount_minor": 500_000_000}}],
                         ids=["allowed", "held", "denied"])
def test_the_hot_route_decides_like_fastapi(env: Env, reference: TestClient, extra: dict[str, Any]) -> None:
    answers = []
    for client in (env.client, reference):
        r = client.post("/v1/actions", json={**GOOD, **extra}, headers=env.h("agent"))
        body = r.json()
        answers.append((r.status_code, sorted(body), body.get("status"),
                        (body.get("decision") or body.get("details", {})).get("reason")))
    assert answers[0] == answers[1]


def test_the_hot_route_replays_an_idempotent_request_made_through_fastapi(env: Env, reference: TestClient) -> None:
    key = {"Idempotency-Key": "hot-route-replay"}
    first = reference.post("/v1/actions", json=GOOD, headers={**env.h("agent"), **key})
    again = env.client.post("/v1/actions", json=GOOD, headers={**env.h("agent"), **key})
    assert first.status_code == again.status_code == 201
    assert again.json()["action_id"] == first.json()["action_id"]


def test_the_operation_is_still_documented_once(env: Env) -> None:
    spec = env.client.get("/openapi.json").json()
    assert "post" in spec["paths"]["/v1/actions"] and "requestBody" in spec["paths"]["/v1/actions"]["post"]
    assert env.authorize().status_code == 201
    metrics = env.client.get("/metrics").text  # the hot route is labelled like the FastAPI route
    assert 'warrantor_http_requests_total{method="POST",route="/v1/actions",status="201"} 1.0' in metrics
