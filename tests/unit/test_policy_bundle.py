"""parse_bundle: what a tenant sees when a bundle is accepted or refused."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from warrantor.demo import demo_bundle, demo_bundle_yaml
from warrantor.errors import ValidationError
from warrantor.policy.bundle import (
    MAX_NESTING,
    MAX_POLICIES,
    BundleInvalidError,
    PolicyBundle,
    parse_bundle,
)

SCHEMA = """
entity Agent;
entity Resource;
action wire_transfer appliesTo {
  principal: [Agent], resource: [Resource],
  context: { payload: { amount_minor: Long, currency: String } },
};
"""
ALLOW = '@id("allow") @reason("DEFAULT") permit (principal, action, resource);\n'


def bundle(cedar: str, schema: Any = SCHEMA, config: Any = None) -> dict[str, Any]:
    return {"cedar": cedar, "schema": schema, "config": config or {}}


def problems(data: dict[str, Any]) -> list[dict[str, Any]]:
    with pytest.raises(BundleInvalidError) as info:
        parse_bundle(data)
    assert isinstance(info.value, ValidationError)
    assert info.value.code == "POLICY_INVALID" and info.value.status == 422
    return list(info.value.details["problems"])


def test_demo_bundle_parses_with_its_annotations() -> None:
    b = parse_bundle(demo_bundle())
    by_id = {p.id: p for p in b.policies}
    approval = by_id["wire-approval-50k"]
    assert (approval.effect, approval.reason, approval.cedar_effect) == (
        "require_approval",
        "APPROVAL_THRESHOLD",
        "forbid",
    )
    assert approval.approvers == ("finance-leads",) and approval.quorum == 1
    assert by_id["wire-cap-1m"].reason == "AMOUNT_CAP"
    assert by_id["default-allow"].effect == "allow"
    assert b.config.approvals.default_ttl_seconds == 86400 and b.config.budgets == ()
    assert b.to_dict() == demo_bundle()


def test_hash_is_the_same_for_yaml_and_json_config() -> None:
    assert parse_bundle(demo_bundle()).hash == parse_bundle(demo_bundle_yaml()).hash


def test_hash_changes_with_any_part() -> None:
    base = demo_bundle()
    hashes = {parse_bundle(base).hash}
    hashes.add(parse_bundle({**base, "cedar": base["cedar"] + "\n// x\n"}).hash)
    hashes.add(parse_bundle({**base, "schema": base["schema"] + "\n"}).hash)
    hashes.add(parse_bundle({**base, "config": {"approvals": {"default_ttl_seconds": 60}}}).hash)
    assert len(hashes) == 4


def test_hash_is_stable_across_processes() -> None:
    code = (
        "from warrantor.demo import demo_bundle; from warrantor.policy import parse_bundle;"
        "print(parse_bundle(demo_bundle()).hash)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "123"},
    )
    assert out.stdout.strip() == parse_bundle(demo_bundle()).hash


def test_json_schema_is_accepted() -> None:
    schema = {
        "": {
            "entityTypes": {"Agent": {}, "Resource": {}},
            "actions": {
                "wire_transfer": {
                    "appliesTo": {"principalTypes": ["Agent"], "resourceTypes": ["Resource"]}
                }
            },
        }
    }
    b = parse_bundle(bundle(ALLOW, schema=schema))
    assert b.schema == schema
    assert json.loads(json.dumps(b.to_dict())) == b.to_dict()


def test_every_parse_error_has_line_and_column() -> None:
    cedar = (
        ALLOW
        + '@id("b") @reason("R")\nforbid (principal, action, resource)\n  when { context.x > };\n'
        + '@id("c") @reason("R") forbid (principal, actin, resource);\n'
    )
    found = problems(bundle(cedar))
    assert found == [
        {"message": "cedar: unexpected token `}`", "line": 4, "column": 22},
        {
            "message": "cedar: found an invalid variable in the policy scope: actin",
            "line": 5,
            "column": 42,
        },
    ]


LINT_CASES = [
    ("missing @id", '@reason("R") permit (principal, action, resource);', "non-empty @id"),
    ("duplicate @id", ALLOW + ALLOW, "duplicate @id 'allow'"),
    ("missing @reason", '@id("a") permit (principal, action, resource);', "non-empty @reason"),
    (
        "unknown @effect",
        '@id("a") @reason("R") @effect("block") forbid (principal, action, resource);',
        "@effect must be one of",
    ),
    (
        "approval on permit",
        '@id("a") @reason("R") @effect("require_approval") permit (principal, action, resource);',
        "must be on a forbid policy",
    ),
    (
        "allow on forbid",
        '@id("a") @reason("R") @effect("allow") forbid (principal, action, resource);',
        "must be on a permit policy",
    ),
    (
        "bad quorum",
        '@id("a") @reason("R") @effect("require_approval") @quorum("0")'
        " forbid (principal, action, resource);",
        "@quorum must be a positive integer",
    ),
    (
        "bad approval ttl",
        '@id("a") @reason("R") @effect("deny") @approval_ttl("1h")'
        " forbid (principal, action, resource);",
        "@approval_ttl must be a positive integer",
    ),
    (
        "template",
        '@id("a") @reason("R") permit (principal == ?principal, action, resource);',
        "templates are not supported",
    ),
    (
        "schema validation",
        '@id("a") @reason("R") forbid (principal, action == Action::"wire_transfer", resource)'
        " when { context.payload.amount > 1 };",
        "schema validation",
    ),
    (
        "undeclared action",
        '@id("a") @reason("R") forbid (principal, action == Action::"nope", resource);',
        "schema validation",
    ),
]


@pytest.mark.parametrize(("name", "cedar", "fragment"), LINT_CASES, ids=[c[0] for c in LINT_CASES])
def test_lint_and_validation(name: str, cedar: str, fragment: str) -> None:
    found = problems(bundle(cedar))
    assert any(fragment in p["message"] for p in found), found


def test_lint_problem_names_policy_and_line() -> None:
    found = problems(bundle(ALLOW + '\n@id("x")\nforbid (principal, action, resource);'))
    assert found == [
        {
            "message": "cedar: every policy needs a non-empty @reason",
            "line": 3,
            "column": 1,
            "policy_id": "x",
        }
    ]


def test_all_problem_kinds_at_once() -> None:
    data = {
        "cedar": ALLOW + '@id("allow") permit (principal, action, resource);',
        "schema": "entity Agent; entity ;",
        "config": {"budgets": "many", "extra": 1},
        "other": 1,
    }
    messages = [p["message"] for p in problems(data)]
    assert any("unknown bundle keys" in m for m in messages)
    assert any(m.startswith("schema:") for m in messages)
    assert any("budgets" in m for m in messages)
    assert any("unknown key 'extra'" in m for m in messages)
    assert any("duplicate @id" in m for m in messages)
    assert any("@reason" in m for m in messages)


@pytest.mark.parametrize("depth", [MAX_NESTING + 1, 1000, 100_000])
def test_deep_nesting_is_refused_without_crashing(depth: int) -> None:
    # 1,000 nested parentheses crash cedarpy's parser with SIGSEGV; run in a child so a
    # regression shows up as a failure, not as a dead test runner.
    code = f"""
import sys
from warrantor.policy import parse_bundle, BundleInvalidError
deep = '(' * {depth} + 'true' + ')' * {depth}
cedar = 'permit (principal, action, resource) when {{ ' + deep + ' }};'
try:
    parse_bundle({{"cedar": cedar, "schema": "entity A;", "config": {{}}}})
except BundleInvalidError as exc:
    print(exc.details["problems"][0]["message"])
"""
    out = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert "nesting deeper than 32 levels" in out.stdout


def test_nesting_in_schema_is_refused() -> None:
    schema = "entity A { a: " + "Set<" * 40 + "String" + ">" * 40 + " };"
    assert "nesting deeper" in problems(bundle(ALLOW, schema=schema))[0]["message"]


def test_size_and_count_limits() -> None:
    huge = "// " + "x" * (256 * 1024) + "\n" + ALLOW
    assert "characters" in problems(bundle(huge))[0]["message"]
    many = "".join(
        f'@id("p{i}") @reason("R") permit (principal, action, resource);\n'
        for i in range(MAX_POLICIES + 1)
    )
    assert f"at most {MAX_POLICIES} policies" in problems(bundle(many))[0]["message"]


@pytest.mark.parametrize(
    "cedar",
    [
        'permit (principal, action, resource) when { "abc };',
        "permit (principal, action, resource) when { true )};",
        "permit (principal, action, resource)",
    ],
)
def test_malformed_text_is_located(cedar: str) -> None:
    found = problems(bundle(cedar))
    assert found[0]["line"] == 1 and found[0]["column"] >= 1


def test_config_yaml_errors_are_reported() -> None:
    found = problems(bundle(ALLOW, config="approvals: [\n"))
    assert "invalid YAML" in found[0]["message"]


def test_bundle_is_frozen() -> None:
    b = parse_bundle(demo_bundle())
    assert isinstance(b, PolicyBundle)
    with pytest.raises(AttributeError):
        b.hash = "x"  # type: ignore[misc]
