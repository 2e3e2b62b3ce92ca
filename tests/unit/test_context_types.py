"""The field a request gets wrong for the bundle's schema: read from both schema forms, named
as a JSON path with the declared type, and only when Cedar itself refused the context."""

from __future__ import annotations

from typing import Any

import pytest

from warrantor.demo import demo_bundle
from warrantor.policy import PolicyEngine, build_input, parse_bundle
from warrantor.policy.context_types import Mismatch, context_types, first_mismatch

TEXT_SCHEMA = """
// comments, annotations, namespaces and entities are skipped or followed
@doc("who acts")
entity Agent;
entity Resource in [Resource] = { owner?: String };
namespace Other { type Amount = Long; entity Thing; }
type Money = { amount_minor: Long, currency: String };
type Item = { sku: String, "qty": Long, tags?: Set<String> };
action "order", order_again appliesTo {
  principal: [Agent], resource: Resource,
  context: {
    payload: { total: Money, items: Set<Item>, gift?: Bool, @doc("x") note?: __cedar::String },
    details: String, scope: String, endpoint_host: String, labels: Set<String>,
    agent_version: String, model_id: String, model_version: String,
  },
};
action group;
action refund in [group] appliesTo { principal: Agent, resource: Resource, context: Refund };
type Refund = { payload: { amount: Other::Amount }, details: String };
"""

JSON_SCHEMA = {"": {
    "entityTypes": {"Agent": {}, "Resource": {}},
    "commonTypes": {"Money": {"type": "Record", "attributes": {
        "amount_minor": {"type": "Long"}, "currency": {"type": "EntityOrCommon", "name": "String"}}}},
    "actions": {"order": {"appliesTo": {"principalTypes": ["Agent"], "resourceTypes": ["Resource"], "context": {
        "type": "Record", "attributes": {
            "payload": {"type": "Record", "attributes": {
                "total": {"type": "Money"},
                "items": {"type": "Set", "element": {"type": "Record", "attributes": {
                    "sku": {"type": "String"}, "qty": {"type": "Long"},
                    "tags": {"type": "Set", "element": {"type": "String"}, "required": False}}}},
                "gift": {"type": "Boolean", "required": False}}},
            **{k: {"type": "String"} for k in ("details", "scope", "endpoint_host", "agent_version", "model_id",
                                                "model_version")},
            "labels": {"type": "Set", "element": {"type": "String"}}}}}}},
}}


def _context(payload: dict[str, Any]) -> dict[str, Any]:
    return build_input(agent_id="a", action_type="order", payload=payload).context


GOOD = {"total": {"amount_minor": 100, "currency": "EUR"}, "items": [{"sku": "a", "qty": 1, "tags": ["x"]}]}
CASES = [
    ({**GOOD, "total": {"amount_minor": "100", "currency": "EUR"}}, "payload.total.amount_minor", "Long", "string"),
    ({**GOOD, "total": {"amount_minor": 100}}, "payload.total.currency", "String", "nothing"),
    ({**GOOD, "items": [{"sku": "a", "qty": 1}, {"sku": "b", "qty": True}]}, "payload.items[1].qty", "Long",
     "boolean"),
    ({**GOOD, "items": [{"sku": "a", "qty": 1, "tags": [5]}]}, "payload.items[0].tags[0]", "String", "integer"),
    ({**GOOD, "gift": "yes"}, "payload.gift", "Bool", "string"),
    ({**GOOD, "surprise": 1}, "payload.surprise", "no such attribute", "integer"),
    ({**GOOD, "items": {"sku": "a"}}, "payload.items", "Set<a record {sku, qty, tags?}>", "object"),
]


@pytest.mark.parametrize("schema", [TEXT_SCHEMA, JSON_SCHEMA], ids=["cedar-text", "json"])
@pytest.mark.parametrize(("payload", "field", "expected", "got"), CASES)
def test_the_first_field_that_breaks_the_declared_context_is_named(
    schema: Any, payload: dict[str, Any], field: str, expected: str, got: str
) -> None:
    declared = context_types(schema)["order"]
    assert first_mismatch(declared, _context(payload)) == Mismatch(field, expected, got)


@pytest.mark.parametrize("schema", [TEXT_SCHEMA, JSON_SCHEMA], ids=["cedar-text", "json"])
def test_a_fitting_context_has_no_mismatch(schema: Any) -> None:
    assert first_mismatch(context_types(schema)["order"], _context(GOOD)) is None
    assert first_mismatch(context_types(schema)["order"], _context({**GOOD, "gift": True})) is None


def test_text_schemas_resolve_common_types_declared_later_and_in_namespaces() -> None:
    types = context_types(TEXT_SCHEMA)
    assert set(types) == {"order", "order_again", "refund"}  # `action group;` declares no context
    refund = types["refund"]
    assert refund[1]["payload"][0] == ("Record", {"amount": (("Long",), True)})


DEMO = parse_bundle(demo_bundle())
ENGINE = PolicyEngine(DEMO)


def test_the_engine_names_the_field_cedar_refused_and_still_denies_for_replay() -> None:
    inp = build_input(agent_id="a", action_type="wire_transfer",
                      payload={"amount_minor": "6000000", "currency": "EUR", "beneficiary": "x"})
    decision = ENGINE.evaluate(inp)
    assert (decision.effect, decision.reason) == ("deny", "POLICY_ERROR")  # what replay reproduces
    assert decision.mismatch == Mismatch("payload.amount_minor", "Long", "string")


def test_an_undeclared_action_type_is_a_plain_deny_without_a_mismatch() -> None:
    decision = ENGINE.evaluate(build_input(agent_id="a", action_type="delete_database", payload={}))
    assert (decision.effect, decision.reason, decision.mismatch) == ("deny", "POLICY_ERROR", None)


def test_an_integral_float_is_the_integer_and_decides_the_same() -> None:
    whole = build_input(agent_id="a", action_type="wire_transfer",
                        payload={"amount_minor": 6_000_000.0, "currency": "EUR", "beneficiary": "x"})
    exact = build_input(agent_id="a", action_type="wire_transfer",
                        payload={"amount_minor": 6_000_000, "currency": "EUR", "beneficiary": "x"})
    assert whole == exact
    assert ENGINE.evaluate(whole) == ENGINE.evaluate(exact)
    with pytest.raises(ValueError, match="floats are not supported"):
        build_input(agent_id="a", action_type="wire_transfer", payload={"amount_minor": 6_000_000.5})
