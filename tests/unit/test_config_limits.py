"""A bundle's YAML config is refused before it is expanded: no aliases, bounded size."""

from __future__ import annotations

import time

import pytest

from warrantor.demo import demo_bundle, demo_bundle_yaml
from warrantor.policy.bundle import BundleInvalidError, parse_bundle
from warrantor.policy.config import MAX_CONFIG_BYTES, MAX_CONFIG_DEPTH, MAX_CONFIG_NODES


def _laughs(levels: int) -> str:
    """The "billion laughs": each level names the previous one nine times."""
    rows = ['l0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    rows += [f"l{i}: &l{i} [" + ",".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, levels)]
    return "\n".join(rows) + "\n"


def _problem(config: str) -> dict[str, object]:
    with pytest.raises(BundleInvalidError) as info:
        parse_bundle({**demo_bundle(), "config": config})
    problems = info.value.details["problems"]
    assert len(problems) == 1, problems
    problem: dict[str, object] = problems[0]
    return problem


def test_billion_laughs_is_refused_at_once() -> None:
    bomb = _laughs(9)  # 9**9 strings once expanded: minutes and gigabytes before the fix
    assert len(bomb) < 600
    started = time.perf_counter()
    problem = _problem(bomb)
    assert time.perf_counter() - started < 5  # generous: the refusal reads the text once
    assert problem["code"] == "YAML_ALIAS_REFUSED"
    assert (problem["line"], problem["column"]) == (1, 5)


def test_a_single_harmless_alias_is_refused_too() -> None:
    problem = _problem("approvals:\n  default_ttl_seconds: &ttl 60\nx: *ttl\n")
    assert problem["code"] == "YAML_ALIAS_REFUSED"
    assert problem["line"] == 2


def test_deep_yaml_is_refused_before_it_is_built() -> None:
    deep = "[" * 10_000 + "]" * 10_000  # the YAML composer recurses once per level
    problem = _problem(f"approvals: {deep}\n")
    assert problem["code"] == "CONFIG_TOO_LARGE"
    assert f"deeper than {MAX_CONFIG_DEPTH}" in str(problem["message"])


def test_too_many_values_and_too_many_bytes_are_refused() -> None:
    many = "approvals:\n  default_approvers: [" + ",".join(["a"] * (MAX_CONFIG_NODES + 1)) + "]\n"
    assert len(many) < MAX_CONFIG_BYTES
    assert _problem(many)["code"] == "CONFIG_TOO_LARGE"
    big = "# " + "x" * MAX_CONFIG_BYTES + "\napprovals: {}\n"
    assert _problem(big)["code"] == "CONFIG_TOO_LARGE"


def test_the_demo_yaml_config_still_loads_with_the_same_hash() -> None:
    assert parse_bundle(demo_bundle_yaml()).hash == parse_bundle(demo_bundle()).hash
