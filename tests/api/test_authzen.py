"""OpenID AuthZEN Authorization API 1.0: the spec's request and response shapes (its
examples, adapted to the demo policy's action types), every evaluation recorded and
receipted by the real pipeline, held actions, batch semantics, and the attacker's side
(another subject, malformed bodies, another tenant)."""

from __future__ import annotations

import copy
from typing import Any

import jsonschema
import pytest

from support import WIRE, Env, bearer
from warrantor.demo import demo_bundle

EVALUATION = "/access/v1/evaluation"
EVALUATIONS = "/access/v1/evaluations"
BIG = {"amount_minor": 200_000_000, "currency": "EUR", "beneficiary": "ACME GmbH"}  # over the 1M cap
HELD = {"amount_minor": 6_000_000, "currency": "EUR", "beneficiary": "ACME GmbH"}  # over 50k: approval
MAIL = {"to": "ops@example.com", "subject": "Weekly report"}

# The spec's JSON Schema of an Access Evaluation response (api/schemas/evaluation-response.schema.json).
DECISION_SCHEMA = {
    "type": "object", "required": ["decision"],
    "properties": {"decision": {"type": "boolean"}, "context": {"type": "object"}},
}
EVALUATIONS_RESPONSE_SCHEMA = {
    "type": "object", "required": ["evaluations"],
    "properties": {"evaluations": {"type": "array", "items": DECISION_SCHEMA}},
}

# The spec's "Example Request" (Access Evaluation API), adapted: the subject is the demo agent,
# the action one of payments.cedar's types, the payload in context.payload.
SPEC_REQUEST: dict[str, Any] = {
    "subject": {"type": "agent", "id": "payments-agent"},
    "resource": {"type": "account", "id": "123"},
    "action": {"name": "wire_transfer"},
    "context": {"time": "1985-10-26T01:22-07:00", "payload": WIRE},
}


def ask(env: Env, body: Any, role: str = "agent", path: str = EVALUATION, **headers: str) -> Any:
    return env.client.post(path, json=body, headers={**env.h(role), **headers})


def request(payload: dict[str, Any] | None = None, **changes: Any) -> dict[str, Any]:
    body = copy.deepcopy(SPEC_REQUEST)
    if payload is not None:
        body["context"]["payload"] = payload
    body.update(changes)
    return body


def action_count(env: Env) -> int:
    total: int = env.client.get("/v1/actions", headers=env.h("admin")).json()["pagination"]["total"]
    return total


def approve(env: Env, action_id: str) -> None:
    code = env.approval_codes(action_id)[0]
    r = env.client.post(f"/v1/approvals/{code}/confirm", json={"decision": "approve", "reason": "checked"})
    assert r.status_code == 200, r.text


# -- the spec's examples --------------------------------------------------------------------
def test_the_spec_example_request_is_authorized_recorded_and_warranted(env: Env) -> None:
    r = ask(env, SPEC_REQUEST, **{"X-Request-ID": "bfe9eb29-ab87-4ca3-be83-a1d5d8305716"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    assert r.headers["x-request-id"] == "bfe9eb29-ab87-4ca3-be83-a1d5d8305716"  # the PEP's id, echoed
    decision = r.json()
    jsonschema.validate(decision, DECISION_SCHEMA)
    assert decision["decision"] is True
    context = decision["context"]
    assert context["status"] == "authorized" and context["effect"] == "allow"
    assert "default-allow" in context["rules"]
    # Recorded like POST /v1/actions: the action, its intent as mapped, its warrant.
    action = env.client.get(f"/v1/actions/{context['action_id']}", headers=env.h("agent")).json()
    assert action["status"] == "authorized" and action["warrant"]["warrant_id"] == context["warrant_id"]
    assert action["intent"]["agent_id"] == "payments-agent"
    assert action["intent"]["action_type"] == "wire_transfer"
    assert action["intent"]["resource"] == "account:123"
    assert action["intent"]["payload"] == WIRE
    assert action["intent"]["context"] == {"time": "1985-10-26T01:22-07:00"}
    bundle = env.client.get(f"/v1/warrants/{context['warrant_id']}/bundle", headers=env.h("agent"))
    assert bundle.status_code == 200
    report = env.client.post("/v1/verify", json={"bundle": bundle.json()}).json()
    assert report["ok"] is True, report


def test_a_denial_is_decision_false_with_its_reasons_and_a_signed_receipt(env: Env) -> None:
    decision = ask(env, request(BIG)).json()
    assert decision["decision"] is False
    context = decision["context"]
    assert context["status"] == "denied" and context["effect"] == "deny"
    assert context["code"] == "POLICY_DENIED" and context["reason"] == "AMOUNT_CAP" and context["stage"] == "policy"
    assert "wire-cap-1m" in context["rules"]
    receipt = env.client.get(f"/v1/receipts/{context['receipt_id']}", headers=env.h("agent"))
    assert receipt.status_code == 200, receipt.text
    assert env.client.get(f"/v1/actions/{context['action_id']}", headers=env.h("agent")).json()["status"] == "denied"


def test_the_spec_evaluations_example_with_defaults_and_an_override(env: Env) -> None:
    """The spec's "Example of an HTTPS Access Evaluations Request": a top-level subject,
    context and action, three evaluations, the third overriding the action. Its response
    shape is the spec's: true, false, true, no top-level decision."""
    body = {
        "subject": {"type": "agent", "id": "payments-agent"},
        "context": {"time": "2024-05-31T15:22-07:00", "payload": WIRE},
        "action": {"name": "wire_transfer"},
        "evaluations": [
            {"resource": {"type": "document", "id": "boxcarring.md"}},
            {"resource": {"type": "document", "id": "subject-search.md"},
             "context": {"time": "2024-05-31T15:22-07:00", "payload": BIG}},
            {"action": {"name": "send_email"}, "resource": {"type": "document", "id": "resource-search.md"},
             "context": {"payload": MAIL}},
        ],
    }
    before = action_count(env)
    r = ask(env, body, path=EVALUATIONS)
    assert r.status_code == 200, r.text
    answer = r.json()
    jsonschema.validate(answer, EVALUATIONS_RESPONSE_SCHEMA)
    assert "decision" not in answer
    assert [e["decision"] for e in answer["evaluations"]] == [True, False, True]
    assert [e["context"]["status"] for e in answer["evaluations"]] == ["authorized", "denied", "authorized"]
    assert action_count(env) == before + 3
    third = env.client.get(f"/v1/actions/{answer['evaluations'][2]['context']['action_id']}", headers=env.h("agent"))
    assert third.json()["intent"]["action_type"] == "send_email"
    assert third.json()["intent"]["resource"] == "document:resource-search.md"
    assert "context" not in third.json()["intent"]  # the item's own context replaced the default


def _three(payloads: list[dict[str, Any]], semantic: str) -> dict[str, Any]:
    """The spec's "Evaluate read action for three documents using all three semantics"."""
    return {
        "subject": {"type": "agent", "id": "payments-agent"},
        "action": {"name": "wire_transfer"},
        "options": {"evaluations_semantic": semantic},
        "evaluations": [{"resource": {"type": "document", "id": str(i + 1)}, "context": {"payload": p}}
                        for i, p in enumerate(payloads)],
    }


def test_execute_all_answers_every_evaluation_in_order(env: Env) -> None:
    answer = ask(env, _three([WIRE, BIG, WIRE], "execute_all"), path=EVALUATIONS).json()
    assert [e["decision"] for e in answer["evaluations"]] == [True, False, True]


def test_deny_on_first_deny_stops_at_the_first_false_and_records_nothing_after_it(env: Env) -> None:
    before = action_count(env)
    answer = ask(env, _three([WIRE, BIG, WIRE], "deny_on_first_deny"), path=EVALUATIONS).json()
    assert [e["decision"] for e in answer["evaluations"]] == [True, False]  # the spec's response shape
    assert action_count(env) == before + 2


def test_permit_on_first_permit_stops_at_the_first_true(env: Env) -> None:
    before = action_count(env)
    answer = ask(env, _three([BIG, WIRE, WIRE], "permit_on_first_permit"), path=EVALUATIONS).json()
    assert [e["decision"] for e in answer["evaluations"]] == [False, True]
    assert action_count(env) == before + 2
    answer = ask(env, _three([WIRE, BIG, BIG], "permit_on_first_permit"), path=EVALUATIONS).json()
    assert [e["decision"] for e in answer["evaluations"]] == [True]  # the spec's example response


def test_without_evaluations_the_batch_endpoint_answers_one_decision(env: Env) -> None:
    for body in (request(), {**request(), "evaluations": []}):
        decision = ask(env, body, path=EVALUATIONS).json()
        jsonschema.validate(decision, DECISION_SCHEMA)
        assert decision["decision"] is True and "evaluations" not in decision


def test_an_error_in_one_item_is_that_items_false_and_counts_as_a_deny(env: Env) -> None:
    body = _three([WIRE, WIRE, WIRE], "execute_all")
    body["evaluations"][1]["context"]["parent_action_id"] = "act_doesnotexist"
    answer = ask(env, body, path=EVALUATIONS).json()
    assert [e["decision"] for e in answer["evaluations"]] == [True, False, True]
    assert answer["evaluations"][1]["context"]["error"]["status"] == 404
    body["options"]["evaluations_semantic"] = "deny_on_first_deny"
    answer = ask(env, body, path=EVALUATIONS).json()
    assert [e["decision"] for e in answer["evaluations"]] == [True, False]


# -- held actions ---------------------------------------------------------------------------
def test_a_held_action_is_false_until_approved_then_the_same_request_is_true(env: Env) -> None:
    body = request(HELD)
    body["context"]["idempotency_key"] = "gw-req-42"
    first = ask(env, body).json()
    assert first["decision"] is False
    context = first["context"]
    assert context["status"] == "pending_approval" and context["held"] is True
    assert context["effect"] == "require_approval" and "wire-approval-50k" in context["rules"]
    assert context["poll"] == f"/v1/actions/{context['action_id']}?wait=30&status=pending_approval"
    assert context["approval"]["approvers"] == ["finance-leads"]
    polled = env.client.get(context["poll"].replace("wait=30", "wait=0"), headers=env.h("agent"))
    assert polled.json()["status"] == "pending_approval"

    again = ask(env, body).json()  # asked again before anyone decided: still held, same action
    assert again["decision"] is False and again["context"]["action_id"] == context["action_id"]

    approve(env, context["action_id"])
    approved = ask(env, body).json()
    assert approved["decision"] is True
    assert approved["context"]["status"] == "approved" and approved["context"]["action_id"] == context["action_id"]
    assert approved["context"]["warrant_id"].startswith("wrt")
    assert "held" not in approved["context"]

    # Once the warrant is used, the same request is never true again.
    r = env.client.post(f"/v1/actions/{context['action_id']}/notarize", headers=env.h("agent"), json={
        "outcome": "completed", "executed": {"action_type": "wire_transfer", "payload": HELD}})
    assert r.status_code == 200, r.text
    used = ask(env, body).json()
    assert used["decision"] is False and used["context"]["status"] == "notarized"


def test_the_idempotency_key_covers_only_the_exact_request(env: Env) -> None:
    body = request(HELD)
    body["context"]["idempotency_key"] = "gw-req-43"
    held = ask(env, body).json()["context"]
    approve(env, held["action_id"])
    other = request({**HELD, "beneficiary": "Mallory Ltd"})
    other["context"]["idempotency_key"] = "gw-req-43"
    r = ask(env, other)
    assert r.status_code == 409 and r.json()["code"] == "DUPLICATE_REQUEST"


def test_a_confirm_rule_without_a_grant_is_held_for_a_human(env: Env) -> None:
    body = request({"amount_minor": 90_000, "currency": "EUR", "order_id": "o-1"}, action={"name": "refund"})
    decision = ask(env, body).json()
    assert decision["decision"] is False
    assert decision["context"]["effect"] == "confirm" and decision["context"]["held"] is True


# -- who may ask about whom -----------------------------------------------------------------
def test_an_agent_key_cannot_ask_about_another_agent(env: Env) -> None:
    before = action_count(env)
    r = ask(env, request(subject={"type": "agent", "id": "treasury-agent"}))
    assert r.status_code == 403
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["code"] == "AGENT_MISMATCH" and r.json()["details"]["field"] == "subject.id"
    # In a batch, one foreign subject refuses the whole request before anything is evaluated.
    body = _three([WIRE, WIRE, WIRE], "execute_all")
    body["evaluations"][2]["subject"] = {"type": "agent", "id": "treasury-agent"}
    r = ask(env, body, path=EVALUATIONS)
    assert r.status_code == 403 and r.json()["details"]["field"] == "evaluations[2].subject.id"
    assert action_count(env) == before


def test_a_gateway_key_asks_for_its_agent_only(env: Env) -> None:
    r = env.client.post("/v1/api-keys", headers=env.h("admin"), json={"role": "gateway", "agent_id": "payments-agent"})
    gateway = r.json()["key"]
    assert env.client.post(EVALUATION, json=request(), headers=bearer(gateway)).json()["decision"] is True
    foreign = request(subject={"type": "agent", "id": "treasury-agent"})
    r = env.client.post(EVALUATION, json=foreign, headers=bearer(gateway))
    assert r.status_code == 403 and r.json()["code"] == "AGENT_MISMATCH"


def test_an_admin_key_may_ask_about_any_agent_of_its_tenant(env: Env) -> None:
    decision = ask(env, request(subject={"type": "agent", "id": "treasury-agent"}), role="admin").json()
    assert decision["decision"] is True
    action = env.client.get(f"/v1/actions/{decision['context']['action_id']}", headers=env.h("admin")).json()
    assert action["agent_id"] == "treasury-agent"


@pytest.mark.parametrize("role", ["app", "auditor"])
def test_app_and_auditor_keys_cannot_ask(env: Env, role: str) -> None:
    r = ask(env, request(), role=role)
    assert r.status_code == 403 and r.json()["code"] == "FORBIDDEN_ROLE"


def test_no_key_is_401_and_the_request_id_is_still_echoed(env: Env) -> None:
    r = env.client.post(EVALUATION, json=request(), headers={"X-Request-ID": "pep-1"})
    assert r.status_code == 401
    assert r.headers["x-request-id"] == "pep-1"


def test_another_tenant_is_decided_and_recorded_in_that_tenant_alone(env: Env) -> None:
    # Tenant A: an approved action under idempotency key "shared-key".
    body = request(HELD)
    body["context"]["idempotency_key"] = "shared-key"
    held = ask(env, body).json()["context"]
    approve(env, held["action_id"])
    assert ask(env, body).json()["decision"] is True

    other = env.new_tenant()
    answer = env.client.post(EVALUATION, json=body, headers=bearer(other["admin"])).json()
    assert answer["decision"] is False  # B's own, fresh, held action: A's approval is not B's
    assert answer["context"]["status"] == "pending_approval"
    assert answer["context"]["action_id"] != held["action_id"]
    # Neither tenant sees the other's action.
    assert env.client.get(f"/v1/actions/{answer['context']['action_id']}", headers=env.h("admin")).status_code == 404
    r = env.client.get(f"/v1/actions/{held['action_id']}", headers=bearer(other["admin"]))
    assert r.status_code == 404


# -- malformed requests ---------------------------------------------------------------------
def _without(path: str) -> dict[str, Any]:
    body = request()
    *parents, last = path.split(".")
    node = body
    for p in parents:
        node = node[p]
    del node[last]
    return body


def _with(path: str, value: Any) -> dict[str, Any]:
    body = request()
    *parents, last = path.split(".")
    node = body
    for p in parents:
        node = node.setdefault(p, {})
    node[last] = value
    return body


MALFORMED = [
    (_without("subject"), "INVALID_SUBJECT", "subject"),
    (_without("subject.id"), "INVALID_SUBJECT", "subject.id"),
    (_without("subject.type"), "INVALID_SUBJECT", "subject.type"),
    (_with("subject.id", 42), "INVALID_SUBJECT", "subject.id"),
    (_with("subject.id", "bad agent id"), "INVALID_SUBJECT", "subject.id"),
    (_with("subject.properties", "v1"), "INVALID_SUBJECT", "subject.properties"),
    (_with("subject.properties.model_id", 4), "INVALID_SUBJECT", "subject.properties.model_id"),
    (_without("action"), "INVALID_ACTION", "action"),
    (_without("action.name"), "INVALID_ACTION", "action.name"),
    (_with("action.name", "drop table;"), "INVALID_ACTION", "action.name"),
    (_with("action.properties", {"amount_minor": 1}), "INVALID_ACTION", "action.properties"),
    (_without("resource"), "INVALID_RESOURCE", "resource"),
    (_without("resource.id"), "INVALID_RESOURCE", "resource.id"),
    (_with("resource.type", ""), "INVALID_RESOURCE", "resource.type"),
    (_with("resource.properties", "finance"), "INVALID_RESOURCE", "resource.properties"),
    (_with("context", ["time"]), "INVALID_CONTEXT", "context"),
    (_with("context.payload", [1, 2]), "INVALID_CONTEXT", "context.payload"),
    (_with("context.labels", "urgent"), "INVALID_CONTEXT", "context.labels"),
    (_with("context.require_approval", "yes"), "INVALID_CONTEXT", "context.require_approval"),
    (_with("context.usage", {"tokens": -1}), "INVALID_CONTEXT", "context.usage.tokens"),
    (_with("context.idempotency_key", ""), "INVALID_CONTEXT", "context.idempotency_key"),
]


@pytest.mark.parametrize(("body", "code", "field"), MALFORMED)
def test_malformed_evaluations_are_400_naming_the_field_and_record_nothing(
    env: Env, body: dict[str, Any], code: str, field: str
) -> None:
    before = action_count(env)
    r = ask(env, body)
    assert r.status_code == 400, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["code"] == code and r.json()["details"]["field"] == field, r.json()
    batch = {"evaluations": [request(), body]}
    r = ask(env, batch, path=EVALUATIONS)
    assert r.status_code == 400 and r.json()["details"]["field"] == f"evaluations[1].{field}", r.json()
    assert action_count(env) == before


@pytest.mark.parametrize(("body", "code", "field"), [
    ({"evaluations": "all"}, "INVALID_EVALUATIONS", "evaluations"),
    ({"evaluations": [SPEC_REQUEST, 7]}, "INVALID_EVALUATIONS", "evaluations[1]"),
    ({"evaluations": [SPEC_REQUEST] * 101}, "INVALID_EVALUATIONS", "evaluations"),
    ({"evaluations": [SPEC_REQUEST], "options": {"evaluations_semantic": "first_come"}},
     "INVALID_OPTIONS", "options.evaluations_semantic"),
    ({"evaluations": [SPEC_REQUEST], "options": []}, "INVALID_OPTIONS", "options"),
    ({"evaluations": [{"resource": {"type": "a", "id": "1"}}]}, "INVALID_SUBJECT", "evaluations[0].subject"),
])
def test_malformed_batches_are_400_naming_the_field(env: Env, body: Any, code: str, field: str) -> None:
    before = action_count(env)
    r = ask(env, body, path=EVALUATIONS)
    assert r.status_code == 400, r.text
    assert r.json()["code"] == code and r.json()["details"]["field"] == field
    assert action_count(env) == before


@pytest.mark.parametrize("path", [EVALUATION, EVALUATIONS])
def test_bodies_that_are_not_a_json_object(env: Env, path: str) -> None:
    headers = {**env.h("agent"), "Content-Type": "application/json"}
    for raw, code in ((b"[1, 2]", "INVALID_REQUEST"), (b'{"subject": ', "MALFORMED_JSON"),
                      (b'{"subject": NaN}', "MALFORMED_JSON"), (b"\xff\xfe", "MALFORMED_JSON")):
        r = env.client.post(path, content=raw, headers=headers)
        assert r.status_code == 400 and r.json()["code"] == code, (raw, r.text)
    r = env.client.post(path, content=b"subject=a", headers={**env.h("agent"), "Content-Type": "text/plain"})
    assert r.status_code == 415


def test_unknown_fields_are_ignored_as_the_spec_requires(env: Env) -> None:
    body = request()
    body["future_field"] = {"x": 1}
    body["subject"]["email"] = "agent@example.com"
    body["resource"]["properties"] = {"owner": "finance"}
    assert ask(env, body).json()["decision"] is True


def test_context_fields_map_to_the_intent(env: Env) -> None:
    body = request(subject={"type": "agent", "id": "payments-agent",
                            "properties": {"model_id": "gpt-4o", "instruction_hash": "sha256:" + "ab" * 32}})
    body["context"].update(details="Pay invoice 42", labels=["invoice"])
    context = ask(env, body).json()["context"]
    intent = env.client.get(f"/v1/actions/{context['action_id']}", headers=env.h("agent")).json()["intent"]
    assert intent["details"] == "Pay invoice 42" and intent["labels"] == ["invoice"]
    assert intent["model_id"] == "gpt-4o" and intent["instruction_hash"] == "sha256:" + "ab" * 32


def test_the_payload_may_come_as_action_properties(env: Env) -> None:
    body = request()
    del body["context"]["payload"]
    body["action"]["properties"] = BIG
    context = ask(env, body).json()["context"]
    assert context["reason"] == "AMOUNT_CAP"


# -- discovery ------------------------------------------------------------------------------
def test_the_well_known_metadata_names_both_endpoints(env: Env) -> None:
    r = env.client.get("/.well-known/authzen-configuration")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    metadata = r.json()
    base = env.settings.effective_public_url
    assert metadata == {
        "policy_decision_point": base,
        "access_evaluation_endpoint": f"{base}{EVALUATION}",
        "access_evaluations_endpoint": f"{base}{EVALUATIONS}",
    }
    for url in (metadata["access_evaluation_endpoint"], metadata["access_evaluations_endpoint"]):
        assert ask(env, request(), path=url.removeprefix(base)).json()["decision"] is True


def test_the_pipelines_own_refusals_name_the_authzen_field(env: Env) -> None:
    """A payload the bundle's schema refuses, or approvers that are no address, are the
    pipeline's 422s; their details.field is where the AuthZEN request carried the value."""
    r = ask(env, request({"amount_minor": "lots", "currency": "EUR", "beneficiary": "ACME GmbH"}))
    assert r.status_code == 422, r.text
    assert r.json()["details"]["field"].startswith("context.payload.amount_minor")
    body = request()
    del body["context"]["payload"]
    body["action"]["properties"] = {"currency": "EUR", "beneficiary": "ACME GmbH"}
    r = ask(env, body)
    assert r.status_code == 422 and r.json()["details"]["field"].startswith("action.properties.amount_minor")
    r = ask(env, _with("context.approvers", ["not an address\r\n"]))
    assert r.status_code == 422 and r.json()["details"]["field"].startswith("context.approvers"), r.json()
    batch = _three([WIRE, {"amount_minor": "lots", "currency": "EUR", "beneficiary": "X"}], "execute_all")
    error = ask(env, batch, path=EVALUATIONS).json()["evaluations"][1]["context"]["error"]
    assert error["status"] == 422 and error["details"]["field"].startswith("evaluations[1].context.payload")


def _activate(env: Env, config: dict[str, Any]) -> None:
    r = env.client.post("/v1/policies", json={**demo_bundle(), "config": config}, headers=env.h("admin"))
    assert r.status_code == 201, r.text
    r = env.client.post(f"/v1/policies/{r.json()['bundle_hash']}/activate", headers=env.h("admin"))
    assert r.status_code == 200, r.text


def test_budgets_and_rate_limits_apply_to_evaluations(env: Env) -> None:
    _activate(env, {"budgets": [{"id": "one", "metric": "count", "scope": "tenant", "window": "1d", "limit": 1,
                                 "on_exceed": "deny"}]})
    assert ask(env, request()).json()["decision"] is True
    over = ask(env, request()).json()
    assert over["decision"] is False and over["context"]["code"] == "CUMULATIVE_BUDGET_EXCEEDED"
    assert over["context"]["halt"]["limit"] == 1 and over["context"]["receipt_id"]

    _activate(env, {"rate_limits": {"per_key": {"rate_per_second": 0.01, "burst": 1}}})
    assert ask(env, request()).json()["decision"] is True
    r = ask(env, request())
    assert r.status_code == 429 and r.json()["code"] == "RATE_LIMITED" and "retry-after" in r.headers
    batch = ask(env, _three([WIRE, WIRE], "execute_all"), path=EVALUATIONS).json()
    assert [e["context"]["error"]["code"] for e in batch["evaluations"]] == ["RATE_LIMITED", "RATE_LIMITED"]
