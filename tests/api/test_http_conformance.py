"""The API as HTTP and OpenAPI tools expect it, and input errors that name the field.

- the OpenAPI document: Bearer and session security schemes, ``security`` on exactly the
  routes that authenticate, every error status a route can answer as a Problem body;
- ``WWW-Authenticate`` on every 401 (RFC 6750 ``error=`` where it fits), ``Allow`` on 405;
- integral numbers (``10.0``) taken where an integer is expected, and nothing else;
- counters named ``*_total``;
- malformed JSON with line and column, a missing or wrong field with its path, and a
  payload that breaks the bundle's schema refused as bad input (422) before anything is
  recorded, while genuine evaluation errors stay fail-closed denials.
"""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from support import WIRE, Env
from warrantor.demo import demo_bundle

PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}


@pytest.fixture
def spec(env: Env) -> dict[str, Any]:
    doc: dict[str, Any] = env.client.get("/openapi.json").json()
    return doc


def _ops(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(m.upper(), p, op) for p, ops in spec["paths"].items() for m, op in ops.items()]


# -- the OpenAPI document -------------------------------------------------------------------

def test_security_schemes_and_security_on_exactly_the_authenticated_routes(spec: dict[str, Any]) -> None:
    schemes = spec["components"]["securitySchemes"]
    assert schemes["bearer"] == {**schemes["bearer"], "type": "http", "scheme": "bearer"}
    assert schemes["session"]["in"] == "cookie" and schemes["session"]["name"] == "warrantor_session"
    assert "security" not in spec  # no global default: public routes are public
    security = {f"{m} {p}": op.get("security") for m, p, op in _ops(spec)}
    assert security["POST /v1/actions"] == [{"bearer": []}]
    assert security["GET /v1/receipts/{receipt_id}"] == [{"bearer": []}]
    assert security["POST /v1/actions/{action_id}/approve"] == [{"session": []}]  # humans only
    assert security["GET /v1/users"] == [{"bearer": []}, {"session": []}]  # an admin key or a logged-in admin
    for public in ("GET /v1/keys", "GET /v1/trust", "GET /healthz", "GET /v1/approvals/{code}",
                   "POST /v1/verify", "GET /v1/log/checkpoint", "POST /v1/sessions"):
        assert security[public] is None, public


def test_every_operation_documents_its_errors_as_problem_documents(spec: dict[str, Any]) -> None:
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    assert spec["components"]["schemas"]["Problem"]["required"] == [
        "type", "title", "status", "detail", "code", "request_id"]
    for method, path, op in _ops(spec):
        responses = op["responses"]
        for status in ("413", "422", "500"):  # the middleware's rules and the last resort, everywhere
            assert status in responses, (method, path, status)
        for status, response in responses.items():
            if int(status) >= 400:
                assert response["content"] == {"application/problem+json": {"schema": PROBLEM_REF}}, (path, status)
        if op.get("security"):
            assert {"401", "403"} <= set(responses), (method, path)
            assert "WWW-Authenticate" in responses["401"]["headers"]
        if "requestBody" in op:
            assert {"400", "415"} <= set(responses), (method, path)
        if "{" in path:
            assert "404" in responses, (method, path)
    by_name = {f"{m} {p}": op["responses"] for m, p, op in _ops(spec)}
    assert {"403", "409", "429"} <= set(by_name["POST /v1/actions"])
    assert {"409", "410"} <= set(by_name["POST /v1/approvals/{code}/confirm"])
    assert "Retry-After" in by_name["POST /v1/actions"]["429"]["headers"]
    assert set(by_name["GET /metrics"]["200"]["content"]) == {"text/plain"}


def test_the_error_and_media_type_tables_name_only_real_operations(spec: dict[str, Any]) -> None:
    """A renamed or removed route must not leave its documented errors behind silently."""
    from warrantor.server.openapi import MEDIA_TYPES, ROUTE_ERRORS

    operations = {f"{m} {p}" for m, p, _ in _ops(spec)}
    assert set(ROUTE_ERRORS) - operations == set()
    assert set(MEDIA_TYPES) - operations == set()


# -- WWW-Authenticate and Allow -------------------------------------------------------------

def test_every_401_says_how_to_authenticate(env: Env) -> None:
    r = env.client.get("/v1/actions")
    assert (r.status_code, r.json()["code"]) == (401, "UNAUTHORIZED")
    assert r.headers["www-authenticate"] == 'Bearer realm="warrantor"'  # RFC 6750: no error without a key
    r = env.client.get("/v1/actions", headers={"Authorization": "Bearer wrt_not_a_key"})
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith('Bearer realm="warrantor", error="invalid_token"')
    r = env.client.get("/v1/actions", headers={"Authorization": "Basic dXNlcjpwYXNz"})  # not a bearer key
    assert (r.status_code, r.headers["www-authenticate"]) == (401, 'Bearer realm="warrantor"')
    r = env.client.post("/v1/actions/act_x/approve", json={})  # humans only: a session
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Session ")
    r = env.client.get("/v1/users")  # an admin key or an admin's session
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith('Bearer realm="warrantor", Session ')
    r = env.client.post("/v1/sessions", json={"email": "nobody@example.com", "password": "wrong"})
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Session ")


def test_a_key_whose_role_may_not_call_a_route_gets_insufficient_scope(env: Env) -> None:
    r = env.client.post("/v1/policies", json={"cedar": "", "schema": ""}, headers=env.h("agent"))
    assert (r.status_code, r.json()["code"]) == (403, "FORBIDDEN_ROLE")
    assert 'error="insufficient_scope"' in r.headers["www-authenticate"]


def test_every_405_lists_the_methods_the_path_serves(env: Env) -> None:
    r = env.client.put("/v1/actions", headers=env.h("admin"))
    assert (r.status_code, r.headers["allow"]) == (405, "GET, POST")
    assert r.headers["content-type"].startswith("application/problem+json")
    assert env.client.request("TRACE", "/v1/actions/act_x/hold").headers["allow"] == "DELETE, POST"
    # a literal path is its own resource, not an instance of /v1/policies/{bundle_hash}
    assert env.client.request("OPTIONS", "/v1/policies/evaluate").headers["allow"] == "POST"


# -- integers as JSON Schema counts them ----------------------------------------------------

def test_an_integral_number_is_an_integer_and_nothing_else_is(env: Env) -> None:
    run = env.client.post("/v1/runs", json={}, headers=env.h("agent")).json()["run_id"]
    r = env.client.post(f"/v1/runs/{run}/usage", json={"tokens": 10.0, "cost_minor": 1e3}, headers=env.h("agent"))
    assert r.status_code == 200, r.text
    consumption = env.client.get(f"/v1/runs/{run}", headers=env.h("agent")).json()["consumption"]
    assert (consumption["tokens"], consumption["cost_minor"]) == (10, 1000)
    for bad in (10.5, True, "10", None):
        r = env.client.post(f"/v1/runs/{run}/usage", json={"tokens": bad}, headers=env.h("agent"))
        assert (r.status_code, r.json()["code"], r.json()["details"]["field"]) == (422, "VALIDATION_ERROR", "tokens")
    nested = env.authorize(payload=WIRE, usage={"tokens": 5.0})  # a nested model too
    assert nested.status_code == 201, nested.text


def test_an_integral_payload_amount_decides_exactly_like_the_integer(env: Env) -> None:
    exact = env.client.post("/v1/policies/evaluate", json={"action": {"action_type": "wire_transfer",
                            "payload": {**WIRE, "amount_minor": 6_000_000}}}, headers=env.h("admin")).json()
    whole = env.client.post("/v1/policies/evaluate", json={"action": {"action_type": "wire_transfer",
                            "payload": {**WIRE, "amount_minor": 6_000_000.0}}}, headers=env.h("admin")).json()
    assert whole["decision"]["evaluation_hash"] == exact["decision"]["evaluation_hash"]
    assert whole["status"] == exact["status"] == "pending_approval"


# -- metrics ----------------------------------------------------------------------------------

def test_every_counter_is_named_total(env: Env) -> None:
    env.authorize()
    families = list(text_string_to_metric_families(env.client.get("/metrics").text))
    counters = {f.name: f for f in families if f.type == "counter"}
    assert {"warrantor_http_requests", "warrantor_decisions", "warrantor_store_write_batches",
            "warrantor_store_write_jobs"} <= set(counters)
    for family in counters.values():
        for sample in family.samples:
            assert sample.name.endswith(("_total", "_created")), sample.name
    jobs = next(s.value for s in counters["warrantor_store_write_jobs"].samples if s.name.endswith("_total"))
    assert jobs >= 1
    gauges = {f.name for f in families if f.type == "gauge"}
    assert not any(name.startswith("warrantor_store_write") for name in gauges)


# -- input errors name the field ------------------------------------------------------------

def test_malformed_json_gives_line_and_column(env: Env) -> None:
    h = {**env.h("agent"), "content-type": "application/json"}
    r = env.client.post("/v1/actions", content=b'{\n  "action_type": "wire_transfer",\n  "payload": {,}\n}', headers=h)
    body = r.json()
    assert (r.status_code, body["code"]) == (400, "MALFORMED_JSON")
    assert (body["details"]["line"], body["details"]["column"]) == (3, 15)
    assert "line 3, column 15" in body["detail"]


def test_a_missing_or_wrong_field_is_named_by_its_path(env: Env) -> None:
    r = env.client.post("/v1/actions", json={"payload": WIRE}, headers=env.h("agent"))
    assert (r.status_code, r.json()["details"]["field"]) == (422, "action_type")
    assert r.json()["details"]["expected"].startswith("a value")
    action = env.authorize().json()["action_id"]
    r = env.client.post(f"/v1/actions/{action}/notarize", json={"executed": {"payload": "x"}}, headers=env.h("agent"))
    assert (r.status_code, r.json()["details"]["field"], r.json()["details"]["expected"]) == (
        422, "executed.payload", "object")
    r = env.client.post("/v1/grants", json={"agent_id": "a", "subject": "u", "scopes": [{"decision": "allow"}]},
                        headers=env.h("admin"))
    assert (r.status_code, r.json()["details"]["field"]) == (422, "scopes[0].scope")
    r = env.client.get("/v1/webhooks/whk_x/deliveries?limit=nope", headers=env.h("admin"))
    assert (r.status_code, r.json()["details"]["field"]) == (422, "limit")


@pytest.mark.parametrize(("payload", "field", "expected", "got"), [
    ({**WIRE, "amount_minor": "6000000"}, "payload.amount_minor", "Long", "string"),
    ({"amount_minor": 1000, "currency": "EUR"}, "payload.beneficiary", "String", "nothing"),
    ({**WIRE, "currency": 978}, "payload.currency", "String", "integer"),
    ({**WIRE, "memo": "x"}, "payload.memo", "no such attribute", "string"),
])
def test_a_payload_that_breaks_the_bundles_schema_is_422_naming_the_field_and_nothing_is_recorded(
    env: Env, payload: dict[str, Any], field: str, expected: str, got: str
) -> None:
    env.services.integrator.cycle()
    size = env.client.get("/v1/log/checkpoint?format=json").json()["size"]
    r = env.authorize(payload=payload, idempotency_key="retry-me")
    body = r.json()
    assert (r.status_code, body["code"]) == (422, "PAYLOAD_SCHEMA_MISMATCH")
    assert body["details"]["field"] == field
    assert (body["details"]["expected"], body["details"]["got"]) == (expected, got)
    assert body["details"]["bundle_hash"] == env.bundle_hash
    assert "cedar" not in body["detail"].lower() and "{" not in body["detail"]  # no Cedar dump
    assert env.client.get("/v1/actions", headers=env.h("admin")).json()["pagination"]["total"] == 0
    env.services.integrator.cycle()
    assert env.client.get("/v1/log/checkpoint?format=json").json()["size"] == size  # no receipt was logged
    fixed = env.authorize(payload=WIRE, idempotency_key="retry-me")  # the key was not used up
    assert fixed.status_code == 201
    dry = env.client.post("/v1/policies/evaluate", json={"action": {"action_type": "wire_transfer",
                          "payload": payload}}, headers=env.h("admin"))
    assert (dry.status_code, dry.json()["details"]["field"]) == (422, field)  # the dry run says the same


def test_genuine_evaluation_errors_stay_fail_closed_denials_with_a_receipt(env: Env) -> None:
    # An action type the bundle does not declare is the policy's answer, not malformed input.
    r = env.authorize(action_type="delete_database", payload={})
    assert (r.status_code, r.json()["code"]) == (403, "POLICY_DENIED")
    assert r.json()["details"]["reason"] == "POLICY_ERROR" and r.json()["details"]["receipt_id"]


def test_a_malformed_payload_cannot_hide_what_the_detectors_stop(env: Env) -> None:
    """The attacker's test: a wrong-typed payload does not turn a detector's recorded denial
    into an unrecorded 422; the detectors run first and their denial keeps its receipt."""
    config = {"detectors": {"builtin": {"cards": "deny"}}}
    bundle = env.client.post("/v1/policies", json={**demo_bundle(), "config": config}, headers=env.h("admin")).json()
    env.client.post(f"/v1/policies/{bundle['bundle_hash']}/activate", headers=env.h("admin")).raise_for_status()
    r = env.authorize(details="card 4111 1111 1111 1111", payload={**WIRE, "amount_minor": "1000"})
    assert (r.status_code, r.json()["code"]) == (403, "CONTENT_SIGNATURE_MATCH")
    assert r.json()["details"]["receipt_id"]
    assert env.client.get("/v1/actions", headers=env.h("admin")).json()["pagination"]["total"] == 1
