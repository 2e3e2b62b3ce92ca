"""PolicyEngine and build_input: the decisions users rely on, every matching rule, fail closed."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from warrantor.demo import demo_bundle
from warrantor.policy import (
    PolicyDecision,
    PolicyEngine,
    PolicyInput,
    RuleMatch,
    build_input,
    endpoint_host,
    evaluation_hash,
    parse_bundle,
)

DEMO = parse_bundle(demo_bundle())
ENGINE = PolicyEngine(DEMO)


def wire(amount: int, currency: str = "EUR", **extra: Any) -> dict[str, Any]:
    return {"amount_minor": amount, "currency": currency, "beneficiary": "DE89 3704", **extra}


def decide(action: str, payload: dict[str, Any], engine: PolicyEngine = ENGINE) -> PolicyDecision:
    return engine.evaluate(build_input(agent_id="agent-1", action_type=action, payload=payload))


DEMO_CASES = [
    ("small wire", "wire_transfer", wire(10_000), "allow", "DEFAULT_ALLOW", ["default-allow"]),
    ("wire at 50k", "wire_transfer", wire(5_000_000), "allow", "DEFAULT_ALLOW", ["default-allow"]),
    (
        "wire over 50k",
        "wire_transfer",
        wire(5_000_001),
        "require_approval",
        "APPROVAL_THRESHOLD",
        ["wire-approval-50k", "default-allow"],
    ),
    (
        "wire over 1m",
        "wire_transfer",
        wire(100_000_001),
        "deny",
        "AMOUNT_CAP",
        ["wire-cap-1m", "wire-approval-50k", "default-allow"],
    ),
    (
        "wire with reference",
        "wire_transfer",
        wire(1, reference="inv-1"),
        "allow",
        "DEFAULT_ALLOW",
        ["default-allow"],
    ),
    (
        "wire in USD",
        "wire_transfer",
        wire(1, "USD"),
        "require_approval",
        "UNSUPPORTED_CURRENCY",
        ["wire-foreign-currency", "default-allow"],
    ),
    (
        "small refund",
        "refund",
        {"amount_minor": 50_000, "currency": "EUR", "order_id": "o1"},
        "allow",
        "DEFAULT_ALLOW",
        ["default-allow"],
    ),
    (
        "refund over 500",
        "refund",
        {"amount_minor": 50_001, "currency": "EUR", "order_id": "o1"},
        "confirm",
        "REFUND_CONFIRM",
        ["refund-confirm-500", "default-allow"],
    ),
    (
        "internal email",
        "send_email",
        {"to": "bob@example.com", "subject": "hi"},
        "allow",
        "DEFAULT_ALLOW",
        ["default-allow"],
    ),
    ("undeclared action", "delete_database", {}, "deny", "POLICY_ERROR", ["POLICY_ERROR"]),
    (
        "undeclared payload field",
        "wire_transfer",
        wire(1, memo="x"),
        "deny",
        "POLICY_ERROR",
        ["POLICY_ERROR"],
    ),
    (
        "missing payload field",
        "wire_transfer",
        {"amount_minor": 1, "currency": "EUR"},
        "deny",
        "POLICY_ERROR",
        ["POLICY_ERROR"],
    ),
    (
        "wrong payload type",
        "wire_transfer",
        wire(1, currency=978),
        "deny",
        "POLICY_ERROR",
        ["POLICY_ERROR"],
    ),
]


@pytest.mark.parametrize(
    ("name", "action", "payload", "effect", "reason", "rules"),
    DEMO_CASES,
    ids=[c[0] for c in DEMO_CASES],
)
def test_demo_bundle_decisions(
    name: str, action: str, payload: dict[str, Any], effect: str, reason: str, rules: list[str]
) -> None:
    decision = decide(action, payload)
    assert (decision.effect, decision.reason) == (effect, reason), decision
    assert [r.id for r in decision.rules] == rules


@pytest.mark.parametrize(
    "to",
    [
        "bob@evil.example",
        "a@evil.example,b@example.com",
        "a@evil.example; b@example.com",
        "Eve <e@evil.example> x@example.com",
        "@example.com",
        "a@evil.example\n@example.com",
        "a@evil.example@example.com",
        "x@sub.example.com",
        "bob@EXAMPLE.COM",
    ],
)
def test_email_outside_example_com_needs_approval(to: str) -> None:
    decision = decide("send_email", {"to": to, "subject": "hi"})
    assert decision.effect == "require_approval"
    assert decision.rules[0].to_dict() == {
        "id": "email-external",
        "effect": "require_approval",
        "reason": "EXTERNAL_RECIPIENT",
        "message": "E-mail to a recipient outside example.com needs approval",
        "approvers": ["comms-reviewers"],
    }


def test_approval_rule_carries_approvers_and_quorum() -> None:
    rule = decide("wire_transfer", wire(6_000_000)).rules[0]
    assert rule.approvers == ("finance-leads",) and rule.quorum == 1
    assert rule.to_dict()["approvers"] == ["finance-leads"] and rule.to_dict()["quorum"] == 1


SCHEMA = """
entity Agent { team: String };
entity Resource;
action act appliesTo {
  principal: [Agent], resource: [Resource],
  context: { payload: { n: Long, s: String }, details: String, scope: String,
             endpoint_host: String, labels: Set<String>, agent_version: String,
             model_id: String, model_version: String },
};
"""
PERMIT = '@id("allow") @reason("OK") permit (principal, action, resource);\n'


def engine_for(cedar: str) -> PolicyEngine:
    return PolicyEngine(parse_bundle({"cedar": cedar, "schema": SCHEMA, "config": {}}))


def forbid(pid: str, effect: str, cond: str) -> str:
    return (
        f'@id("{pid}") @effect("{effect}") @reason("{pid.upper()}")\n'
        f"forbid (principal, action, resource) when {{ {cond} }};\n"
    )


def act(engine: PolicyEngine, n: int, s: str = "x", labels: tuple[str, ...] = ()) -> PolicyDecision:
    return engine.evaluate(
        build_input(agent_id="a", action_type="act", payload={"n": n, "s": s}, labels=labels)
    )


def test_two_matching_forbids_are_both_reported() -> None:
    engine = engine_for(
        PERMIT
        + forbid("big", "deny", "context.payload.n > 10")
        + forbid("odd-s", "deny", 'context.payload.s == "odd"')
    )
    decision = act(engine, 11, "odd")
    assert decision.effect == "deny"
    assert [r.id for r in decision.rules] == ["big", "odd-s", "allow"]
    assert [r.id for r in act(engine, 11).rules] == ["big", "allow"]


PRECEDENCE_CASES = [
    (["deny", "require_approval", "confirm"], "deny"),
    (["require_approval", "confirm"], "require_approval"),
    (["confirm", "require_approval"], "require_approval"),
    (["confirm"], "confirm"),
    ([], "allow"),
]


@pytest.mark.parametrize(("effects", "expected"), PRECEDENCE_CASES)
def test_precedence(effects: list[str], expected: str) -> None:
    cedar = PERMIT + "".join(forbid(f"r{i}-{e}", e, "true") for i, e in enumerate(effects))
    decision = act(engine_for(cedar), 1)
    assert decision.effect == expected
    assert decision.rules[0].effect == expected
    assert sorted(r.id for r in decision.rules) == sorted(
        [f"r{i}-{e}" for i, e in enumerate(effects)] + ["allow"]
    )


def test_no_permit_is_a_deny_even_with_an_approval_rule() -> None:
    engine = engine_for(
        forbid("hold", "require_approval", "true")
        + '@id("narrow") @reason("N") permit (principal, action, resource)'
        " when { context.payload.n == 7 };\n"
    )
    nothing = act(engine, 1)
    assert (nothing.effect, nothing.reason) == ("deny", "NO_MATCHING_PERMIT")
    assert [r.id for r in nothing.rules] == ["hold"]
    assert act(engine, 7).effect == "require_approval"


def test_nothing_matches_is_no_matching_permit() -> None:
    engine = engine_for(
        '@id("narrow") @reason("N") permit (principal, action, resource)'
        " when { context.payload.n == 7 };\n"
    )
    decision = act(engine, 1)
    assert (decision.effect, decision.reason, decision.rules) == ("deny", "NO_MATCHING_PERMIT", ())


FAIL_CLOSED_CASES = [
    (
        "overflow in a forbid",
        forbid("of", "deny", "context.payload.n * 4611686018427387904 > 0"),
        "overflow",
    ),
    ("missing entity attribute", forbid("team", "deny", 'principal.team == "ops"'), "team"),
    (
        "overflow in an approval rule",
        forbid("of", "require_approval", "context.payload.n + 9223372036854775807 > 0"),
        "overflow",
    ),
]


@pytest.mark.parametrize(
    ("name", "rule", "fragment"), FAIL_CLOSED_CASES, ids=[c[0] for c in FAIL_CLOSED_CASES]
)
def test_runtime_errors_fail_closed(name: str, rule: str, fragment: str) -> None:
    # Cedar alone would skip the erroring forbid and allow; Warrantor denies.
    decision = act(engine_for(PERMIT + rule), 3)
    assert (decision.effect, decision.reason) == ("deny", "POLICY_ERROR")
    assert decision.rules[0].id == "POLICY_ERROR" and decision.rules[0].effect == "deny"
    assert decision.errors and fragment in decision.errors[0]
    assert "`policy" not in decision.errors[0]  # errors name the bundle's @id


def test_an_exception_from_cedar_fails_closed() -> None:
    bad = PolicyInput("a", "act", "r", {"payload": {"n": 1.5}})
    decision = PolicyEngine(DEMO).evaluate(bad)
    assert (decision.effect, decision.reason) == ("deny", "POLICY_ERROR")


def test_labels_are_a_set_in_cedar() -> None:
    engine = engine_for(PERMIT + forbid("pii", "confirm", 'context.labels.contains("pii")'))
    assert act(engine, 1, labels=("pii", "pii", "public")).effect == "confirm"
    assert act(engine, 1, labels=("public",)).effect == "allow"


# --- build_input -----------------------------------------------------------------------


def test_build_input_fills_every_context_attribute() -> None:
    inp = build_input(agent_id=None, action_type="act", payload={})
    assert inp.principal_id == "" and inp.resource == "act"
    assert inp.context == {
        "payload": {},
        "details": "",
        "scope": "",
        "endpoint_host": "",
        "labels": [],
        "agent_version": "",
        "model_id": "",
        "model_version": "",
    }


def test_resource_falls_back_to_endpoint_host_then_action_type() -> None:
    url = "https://user:pw@API.Bank.Example.:8443/v1/transfers?x=1"
    assert build_input(agent_id="a", action_type="t", payload={}, endpoint_url=url).resource == (
        "api.bank.example"
    )
    assert (
        build_input(
            agent_id="a", action_type="t", payload={}, endpoint_url=url, resource="acct:1"
        ).resource
        == "acct:1"
    )


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("https://API.example.com/x", "api.example.com"),
        ("http://a.example.:80", "a.example"),
        ("https://bücher.example/", "xn--bcher-kva.example"),
        ("https://[2001:db8::1]:443/", "2001:db8::1"),
        ("https://10.0.0.1/", "10.0.0.1"),
    ],
)
def test_endpoint_host(url: str, host: str) -> None:
    assert endpoint_host(url) == host


@pytest.mark.parametrize(
    "url",
    [
        "api.example.com/x",
        "ftp://h/",
        "https://",
        "https://h:99999/",
        "https://a b/",
        "https://h%2e/",
        "javascript:alert(1)",
        "https://a..b/",
    ],
)
def test_invalid_endpoint_url(url: str) -> None:
    with pytest.raises(ValueError, match="URL"):
        endpoint_host(url)


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        ({"amount": 12.5}, "floats are not supported"),
        ({"amount": 1.5e300}, "floats are not supported"),  # integral, but no exact integer
        ({"n": 2**53}, "within"),
        ({"x": {"__entity": {"type": "Agent", "id": "root"}}}, "reserved key"),
        ({"x": {"__extn": {"fn": "decimal", "arg": "1.0"}}}, "reserved key"),
        ({"x": [1, None]}, "null"),
        ({"x": object()}, "expected a JSON value"),
        ({1: "x"}, "string keys"),
    ],
)
def test_payload_values_cedar_cannot_carry_are_rejected(
    payload: dict[Any, Any], fragment: str
) -> None:
    with pytest.raises(ValueError, match=fragment):
        build_input(agent_id="a", action_type="t", payload=payload)


def test_payload_normalization() -> None:
    inp = build_input(
        agent_id="a",
        action_type="t",
        payload={"amount_minor": 5, "ok": True, "note": None, "tags": ["b", "a"]},
    )
    assert inp.context["payload"] == {"amount_minor": 5, "ok": True, "tags": ["b", "a"]}


def test_deep_payload_is_rejected() -> None:
    payload: dict[str, Any] = {}
    node = payload
    for _ in range(40):
        node["x"] = {}
        node = node["x"]
    with pytest.raises(ValueError, match="nesting"):
        build_input(agent_id="a", action_type="t", payload=payload)


def test_input_round_trips() -> None:
    inp = build_input(agent_id="a", action_type="wire_transfer", payload=wire(1), labels=["x"])
    assert PolicyInput.from_dict(json.loads(json.dumps(inp.to_dict()))) == inp


# --- evaluation hash ---------------------------------------------------------------------

HASH_SCRIPT = """
from warrantor.demo import demo_bundle
from warrantor.policy import PolicyEngine, build_input, evaluation_hash, parse_bundle
b = parse_bundle(demo_bundle())
inp = build_input(agent_id="agent-1", action_type="wire_transfer", labels=["b", "a"],
                  payload={"amount_minor": 200000000, "currency": "EUR", "beneficiary": "x"},
                  endpoint_url="https://api.bank.example/t")
print(evaluation_hash(b.hash, inp, PolicyEngine(b).evaluate(inp)))
"""


def _local_hash() -> str:
    inp = build_input(
        agent_id="agent-1",
        action_type="wire_transfer",
        labels=["a", "b"],
        payload={"amount_minor": 200000000, "currency": "EUR", "beneficiary": "x"},
        endpoint_url="https://API.bank.example/t",
    )
    return evaluation_hash(DEMO.hash, inp, ENGINE.evaluate(inp))


def test_evaluation_hash_is_identical_in_another_process() -> None:
    out = subprocess.run(
        [sys.executable, "-c", HASH_SCRIPT],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "7"},
    )
    assert out.stdout.strip() == _local_hash()
    assert len(_local_hash()) == 64


def test_evaluation_hash_depends_on_bundle_input_and_outcome() -> None:
    inp = build_input(agent_id="a", action_type="wire_transfer", payload=wire(1))
    d = ENGINE.evaluate(inp)
    base = evaluation_hash(DEMO.hash, inp, d)
    assert base == evaluation_hash(DEMO.hash, inp, ENGINE.evaluate(inp))
    assert base != evaluation_hash("0" * 64, inp, d)
    other = build_input(agent_id="b", action_type="wire_transfer", payload=wire(1))
    assert base != evaluation_hash(DEMO.hash, other, d)
    denied = PolicyDecision("deny", (RuleMatch("x", "deny", "X", ""),))
    assert base != evaluation_hash(DEMO.hash, inp, denied)
    # rule order does not matter, only ids and effects
    r1, r2 = RuleMatch("a", "deny", "A", ""), RuleMatch("b", "confirm", "B", "m")
    assert evaluation_hash("h", inp, PolicyDecision("deny", (r1, r2))) == evaluation_hash(
        "h", inp, PolicyDecision("deny", (r2, r1))
    )


def test_a_forbid_on_an_action_group_applies_to_its_members() -> None:
    """Regression: the engine once evaluated without the schema's action entities, so a
    forbid on a group never matched a member, and the action was allowed (fail open)."""
    schema = """
entity Agent; entity Resource;
type Ctx = { payload: {}, details: String, scope: String, endpoint_host: String, labels: Set<String>,
             agent_version: String, model_id: String, model_version: String };
action payments;
action outgoing in [payments];
action wire_transfer in [outgoing] appliesTo { principal: [Agent], resource: [Resource], context: Ctx };
action refund appliesTo { principal: [Agent], resource: [Resource], context: Ctx };
"""
    cedar = ('@id("allow") @effect("allow") @reason("OK") permit (principal, action, resource);\n'
             '@id("no-payments") @effect("deny") @reason("FROZEN") '
             'forbid (principal, action in Action::"payments", resource);\n')
    engine = PolicyEngine(parse_bundle({"cedar": cedar, "schema": schema, "config": {}}))
    denied = decide("wire_transfer", {}, engine)
    assert denied.effect == "deny" and [r.id for r in denied.deciding_rules] == ["no-payments"]
    assert decide("refund", {}, engine).effect == "allow"
