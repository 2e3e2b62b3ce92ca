"""Untrusted policy text cannot crash or stall the process that checks it.

Every attack here is run in a child process (or in the sandbox's forked child), so a
regression shows up as a failed assertion, not as a dead test runner.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from typing import Any

import pytest

from warrantor.demo import demo_bundle
from warrantor.policy.bundle import MAX_EXPRESSION, MAX_HAS_PATH, BundleInvalidError, parse_bundle
from warrantor.policy.sandbox import SandboxError, SandboxLimits, run_isolated
from warrantor.service.authorization.policies import check_upload

SCHEMA = (
    "entity Agent; entity Resource; action wire_transfer appliesTo "
    "{ principal: [Agent], resource: [Resource], context: {} };"
)


def _policy(condition: str) -> str:
    return f'@id("x") @reason("R")\npermit (principal, action, resource) when {{ {condition} }};\n'


# Shapes that crashed (SIGSEGV) or stalled cedarpy before the limits, all under the 256 KB
# size limit and with no deep brackets.
ATTACKS = {
    "and_chain_160kb": " && ".join(["true"] * 20_000),
    "member_chain": "context" + ".a" * 30_000 + " == 1",
    "if_nesting": "if true then " * 5_000 + "true" + " else true" * 5_000,
    "if_in_condition": "if " * 5_000 + "true" + " then true else true" * 5_000,
    "has_path_quadratic": "context has " + ".".join(["a"] * 3_000),
}

_CHILD = textwrap.dedent(
    """
    import json, sys
    from warrantor.policy import BundleInvalidError, parse_bundle
    data = json.load(sys.stdin)
    try:
        parse_bundle(data)
        print(json.dumps({"accepted": True}))
    except BundleInvalidError as exc:
        print(json.dumps({"problems": exc.details["problems"]}))
    """
)


def _parse_in_child(data: dict[str, Any]) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-c", _CHILD], input=json.dumps(data), capture_output=True, text=True,
        timeout=120, check=False,
    )
    assert out.returncode == 0, f"parse_bundle killed its process: rc={out.returncode} {out.stderr[-500:]}"
    result: dict[str, Any] = json.loads(out.stdout)
    return result


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_expression_attacks_are_refused_with_a_location(name: str) -> None:
    cedar = _policy(ATTACKS[name])
    assert len(cedar) < 256 * 1024
    result = _parse_in_child({"cedar": cedar, "schema": SCHEMA, "config": {}})
    assert "problems" in result, result
    problem = result["problems"][0]
    assert problem["code"] == "POLICY_TOO_COMPLEX"
    assert problem["line"] == 2 and problem["column"] > 1  # the token where the limit is passed


# The deepest trees the limits allow, per shape; each must run parse, validate, build the
# engine and evaluate in a thread with a 1 MiB stack (the sandbox gives 2 MiB, the
# server's threads have the platform default, 8 MiB on Linux).
_N = MAX_EXPRESSION - 12  # annotations, scope and braces count too
_K = (_N - 40) // 3  # an if level counts three: if, then, else
AT_LIMIT = {
    "and_chain": " && ".join(["true"] * _N),
    "member_chain": "context" + ".a" * (_N - 2) + " == 1",
    "minus_chain": " - ".join(["1"] * (_N - 1)) + " == 1",
    "if_nesting": "if true then " * _K + "true" + " else true" * _K,
    "if_in_condition": "if " * _K + "true" + " then true else true" * _K,
    "brackets_and_ifs": "(" * 30 + "if true then " * _K + "true" + " else true" * _K + ")" * 30,
    "has_path": "context has a" + ".a" * (MAX_HAS_PATH - 1),
}

_SMALL_STACK = textwrap.dedent(
    """
    import json, sys, threading
    from warrantor.policy import PolicyEngine, build_input, parse_bundle
    data = json.load(sys.stdin)
    result = []
    def run():
        bundle = parse_bundle(data)
        decision = PolicyEngine(bundle).evaluate(build_input(agent_id="a", action_type="wire_transfer", payload={}))
        result.append(decision.effect)
    threading.stack_size(1024 * 1024)
    t = threading.Thread(target=run)
    t.start()
    t.join()
    print(result[0])
    """
)


@pytest.mark.parametrize("name", sorted(AT_LIMIT))
def test_the_deepest_accepted_policy_runs_on_a_1_mib_stack(name: str) -> None:
    data = {"cedar": _policy(AT_LIMIT[name]), "schema": SCHEMA, "config": {}}
    out = subprocess.run(
        [sys.executable, "-c", _SMALL_STACK], input=json.dumps(data), capture_output=True, text=True,
        timeout=120, check=False,
    )
    assert out.returncode == 0, f"rc={out.returncode}: {out.stderr[-800:]}"
    assert out.stdout.strip() in ("allow", "deny")


def test_one_more_level_than_allowed_is_refused() -> None:
    ok = _policy(" && ".join(["true"] * _N))
    parse_bundle({"cedar": ok, "schema": SCHEMA, "config": {}})
    too_deep = _policy(" && ".join(["true"] * (MAX_EXPRESSION + 1)))
    with pytest.raises(BundleInvalidError) as info:
        parse_bundle({"cedar": too_deep, "schema": SCHEMA, "config": {}})
    assert info.value.details["problems"][0]["code"] == "POLICY_TOO_COMPLEX"


def test_siblings_in_sets_do_not_add_up() -> None:
    # A long list is wide, not deep: 5,000 members in a set are fine.
    members = ", ".join(f'"c{i}"' for i in range(5_000))
    parse_bundle({"cedar": _policy(f'["x"].containsAny([{members}])'), "schema": SCHEMA, "config": {}})


def test_the_demo_bundle_passes_the_sandbox() -> None:
    assert run_isolated(check_upload, demo_bundle(), SandboxLimits()) == {"ok": True}


def test_the_sandbox_reports_problems_like_parse_bundle() -> None:
    bad = {**demo_bundle(), "cedar": _policy(ATTACKS["if_nesting"])}
    answer = run_isolated(check_upload, bad, SandboxLimits())
    assert answer["problems"][0]["code"] == "POLICY_TOO_COMPLEX"


def test_a_schema_that_exhausts_memory_kills_only_the_child() -> None:
    # A 10,000-long entity hierarchy chain: Cedar's closure needs gigabytes and minutes.
    n = 10_000
    schema = "".join(f"entity E{i} in [E{i + 1}];\n" for i in range(n)) + f"entity E{n};\n" + SCHEMA
    assert len(schema) < 256 * 1024
    raw = {"cedar": _policy("true"), "schema": schema, "config": {}}
    with pytest.raises(SandboxError) as info:
        run_isolated(check_upload, raw, SandboxLimits(memory_bytes=256 << 20, cpu_seconds=5, timeout_seconds=10))
    assert "died" in info.value.reason or "longer" in info.value.reason


def _spin(_: Any) -> dict[str, Any]:
    while True:
        pass


def _crash(_: Any) -> dict[str, Any]:
    import ctypes

    ctypes.string_at(0)  # SIGSEGV, as a native parser bug would
    return {}


def test_a_child_that_hangs_is_killed_at_the_deadline() -> None:
    with pytest.raises(SandboxError, match=r"longer than 0\.5 s"):
        run_isolated(_spin, None, SandboxLimits(timeout_seconds=0.5, cpu_seconds=30))


def test_a_child_over_its_cpu_limit_is_stopped() -> None:
    with pytest.raises(SandboxError, match=r"SIGXCPU|SIGKILL"):
        run_isolated(_spin, None, SandboxLimits(timeout_seconds=20, cpu_seconds=1))


def test_a_crashing_child_is_reported_not_fatal() -> None:
    with pytest.raises(SandboxError, match="SIGSEGV"):
        run_isolated(_crash, None, SandboxLimits())


def _raise(_: Any) -> dict[str, Any]:
    raise RuntimeError("unexpected")


def test_an_exception_in_the_child_is_reported() -> None:
    with pytest.raises(SandboxError, match="RuntimeError: unexpected"):
        run_isolated(_raise, None, SandboxLimits())
