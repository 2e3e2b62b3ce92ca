"""The gateway's config file: every problem reported with its path, hostile YAML refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from warrantor.mcp_gateway.config import load_config, parse_config
from warrantor.policy.config import ConfigError, load_yaml_config

GOOD = """
warrantor: {url: "http://127.0.0.1:8080", api_key_env: GW_KEY}
upstreams:
  payments:
    command: [python, server.py]
    action_types: {send_payment: wire_transfer}
  search: {url: "http://127.0.0.1:9001/mcp", timeout_seconds: 5}
"""


def parse(text: str, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return parse_config(load_yaml_config(text), {"GW_KEY": "wrt_x"} if env is None else env)


def problems(text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse(text, env)
    return info.value.problems


def test_a_good_config() -> None:
    config = parse(GOOD)
    assert config.api_key == "wrt_x" and config.console_url == "http://127.0.0.1:8080"
    payments, search = config.upstreams
    assert payments.command == ("python", "server.py") and payments.action_type("send_payment") == "wire_transfer"
    assert payments.action_type("refund") == "mcp.payments.refund"
    assert search.url == "http://127.0.0.1:9001/mcp" and search.timeout_seconds == 5


def test_every_problem_is_reported_with_its_path() -> None:
    found = problems("""
warrantor: {url: "ftp://x", api_key: wrt_a, api_key_env: GW_KEY, colour: blue}
approval: {wait_seconds: 9999, max_held_calls: 0}
upstreams:
  Bad Name: {command: [x]}
  both: {command: [x], url: "http://h/mcp"}
  neither: {}
  creds: {url: "http://user:pw@h/mcp"}
  mapped: {command: [x], action_types: {t: "has spaces"}}
""")
    text = "\n".join(found)
    for expected in ("warrantor.url", "warrantor: expected api_key or api_key_env, not both", "warrantor.colour",
                     "approval.wait_seconds", "approval.max_held_calls", "upstreams.Bad Name",
                     "upstreams.both: expected exactly one",
                     "upstreams.neither: expected exactly one", "upstreams.creds.url: credentials",
                     "upstreams.mapped.action_types.t"):
        assert expected in text, (expected, found)


def test_a_missing_key_variable_is_named() -> None:
    assert problems(GOOD, env={}) == ["warrantor.api_key_env: the environment variable GW_KEY is not set"]


def test_yaml_aliases_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "g.yaml"
    path.write_text("a: &x [1, 2]\nb: *x\n")
    with pytest.raises(ConfigError, match="aliases"):
        load_config(path, {})


def test_a_short_http_token_is_refused() -> None:
    assert any("http.token" in p for p in problems(GOOD + "http: {token: short}\n"))


def test_scopes_need_a_grant_and_plain_argument_placeholders() -> None:
    scoped = GOOD.replace("    action_types: {send_payment: wire_transfer}\n",
                          "    scopes: {refund: {scope: refunds, resource: \"order:{order_id}\"}}\n")
    assert problems(scoped) == [
        "warrantor.authorization_id: required when an upstream maps tools to grant scopes"]
    config = parse(scoped.replace("api_key_env: GW_KEY}", "api_key_env: GW_KEY, authorization_id: auth_abc}"))
    rule = config.upstreams[0].scopes["refund"]
    assert rule.resource_for({"order_id": "o-1"}) == "order:o-1"
    assert rule.resource_for({"order_id": {"nested": 1}}) is None and rule.resource_for({}) is None
    bad = scoped.replace('"order:{order_id}"', '"order:{order_id.__class__}"')
    assert any("plain argument names" in p for p in problems(
        bad.replace("api_key_env: GW_KEY}", "api_key_env: GW_KEY, authorization_id: auth_abc}")))


def test_names_and_action_types_that_could_shadow_each_other_are_refused() -> None:
    two = """
warrantor: {url: "http://127.0.0.1:8080", api_key_env: GW_KEY}
upstreams:
  pay__ments: {command: [python, a.py], action_types: {send: wire_transfer}}
  other: {command: [python, b.py], action_types: {pay: wire_transfer, refund: refund}}
"""
    assert problems(two) == [
        "upstreams.pay__ments: with several upstreams a name must not contain '__', which separates server and "
        "tool in exposed names (<server>__<tool>)",
        "upstreams.other.action_types.pay: the action type 'wire_transfer' is already mapped from "
        "upstreams.pay__ments.action_types.send; two tools of one action type would share one policy",
    ]
    alone = parse(two.partition("  other:")[0])
    assert [u.name for u in alone.upstreams] == ["pay__ments"]  # one upstream: names are not prefixed
