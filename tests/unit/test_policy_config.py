"""BundleConfig.from_dict: the parsed shape, defaults, and every problem reported at once."""

from __future__ import annotations

import pytest

from warrantor.policy.config import BundleConfig, ConfigError, load_yaml_config

DESIGN_YAML = r"""
agents: {strict: true, on_instruction_mismatch: deny}
endpoints:
  strict: true
  allow:
    wire_transfer: ["api.bank.example", "*.payments.example"]
  pins:
    api.bank.example: ["aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"]
detectors:
  builtin: {secrets: deny, cards: deny, injection: require_approval}
  custom:
    - {id: codename, pattern: "(?i)project\\s+falcon", mode: deny}
budgets:
  - {id: run-tokens, metric: tokens, scope: run, window: run, limit: 100000, on_exceed: deny}
  - {id: daily-wires, metric: payload.amount_minor, scope: tenant, window: 1d,
     limit: 50000000, on_exceed: deny}
rate_limits:
  per_key: {rate_per_second: 50, burst: 100}
  per_agent: {rate_per_second: 20, burst: 40}
approvals:
  default_ttl_seconds: 86400
"""


def test_design_example_parses() -> None:
    config = BundleConfig.from_yaml(DESIGN_YAML)
    assert config.agents.strict and config.agents.on_instruction_mismatch == "deny"
    assert config.endpoints.allow["wire_transfer"] == ("api.bank.example", "*.payments.example")
    assert config.endpoints.pins["api.bank.example"] == ("a" * 64,)
    assert config.detectors.builtin == {
        "secrets": "deny",
        "cards": "deny",
        "injection": "require_approval",
    }
    assert config.detectors.custom[0].id == "codename"
    assert [b.id for b in config.budgets] == ["run-tokens", "daily-wires"]
    assert config.budgets[1].metric == "payload.amount_minor"
    assert config.rate_limits.per_key is not None and config.rate_limits.per_key.burst == 100
    assert config.approvals.default_ttl_seconds == 86400


@pytest.mark.parametrize("data", [None, {}])
def test_every_key_is_optional(data: dict[str, object] | None) -> None:
    config = BundleConfig.from_dict(data)
    assert config == BundleConfig.empty()
    assert not config.agents.strict and config.agents.on_instruction_mismatch is None
    assert config.budgets == () and config.rate_limits.per_key is None
    assert config.approvals.default_ttl_seconds == 86400


BAD_CASES = [
    ("unknown top-level key", {"budget": []}, ["unknown key 'budget'"]),
    ("unknown nested key", {"agents": {"strict": True, "mode": 1}}, ["agents: unknown key 'mode'"]),
    ("wrong type", {"agents": {"strict": "yes"}}, ["agents.strict: expected a boolean"]),
    ("unknown enum", {"agents": {"on_instruction_mismatch": "warn"}}, ["on_instruction_mismatch"]),
    (
        "detector mode",
        {"detectors": {"builtin": {"secrets": "block"}}},
        ["detectors.builtin.secrets"],
    ),
    ("unknown detector", {"detectors": {"builtin": {"pii": "deny"}}}, ["unknown key 'pii'"]),
    ("bad pin", {"endpoints": {"pins": {"h": ["xyz"]}}}, ["endpoints.pins.h[0]"]),
    (
        "budget enums",
        {
            "budgets": [
                {
                    "id": "b",
                    "metric": "bytes",
                    "scope": "org",
                    "window": "2h",
                    "limit": -1,
                    "on_exceed": "warn",
                }
            ]
        },
        [
            "budgets[0].metric",
            "budgets[0].scope",
            "budgets[0].window",
            "budgets[0].limit",
            "budgets[0].on_exceed",
        ],
    ),
    (
        "duplicate budget ids",
        {
            "budgets": [{"id": "b", "metric": "count", "scope": "run", "window": "run", "limit": 1}]
            * 2
        },
        ["budgets[1].id: duplicate budget id 'b'"],
    ),
    (
        "rate limit",
        {"rate_limits": {"per_key": {"rate_per_second": 0, "burst": 1.5}}},
        ["per_key.rate_per_second", "per_key.burst"],
    ),
    (
        "approvals",
        {"approvals": {"default_ttl_seconds": "1d", "default_approvers": "ops"}},
        ["default_ttl_seconds", "default_approvers"],
    ),
]


@pytest.mark.parametrize(("name", "data", "expected"), BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_problems_are_reported(name: str, data: dict[str, object], expected: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        BundleConfig.from_dict(data)
    for fragment in expected:
        assert any(fragment in p for p in info.value.problems), (fragment, info.value.problems)
    assert info.value.code == "POLICY_INVALID" and info.value.status == 422


def test_every_problem_is_reported_in_one_error() -> None:
    data = {
        "nope": 1,
        "agents": {"strict": 1},
        "approvals": {"default_ttl_seconds": 0},
        "budgets": [{"id": "x"}],
    }
    with pytest.raises(ConfigError) as info:
        BundleConfig.from_dict(data)
    assert len(info.value.problems) >= 7


def test_regex_syntax_is_not_checked_here() -> None:
    config = BundleConfig.from_dict(
        {"detectors": {"custom": [{"id": "a", "pattern": "(", "mode": "deny"}]}}
    )
    assert config.detectors.custom[0].pattern == "("


@pytest.mark.parametrize("text", ["a: [", "- 1\n- 2"])
def test_bad_yaml(text: str) -> None:
    with pytest.raises(ConfigError):
        load_yaml_config(text)


def test_config_is_frozen() -> None:
    config = BundleConfig.from_yaml(DESIGN_YAML)
    with pytest.raises(AttributeError):
        config.agents.strict = False  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.endpoints.allow["x"] = ("y",)  # type: ignore[index]
