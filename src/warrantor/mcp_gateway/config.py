"""The gateway's configuration file (YAML), checked whole before anything starts.

    warrantor:
      url: http://127.0.0.1:8080          # the Warrantor server
      api_key_env: WARRANTOR_GATEWAY_KEY  # or api_key: wrt_... (a key of role gateway)
      console_url: https://warrantor.example  # where approvers log in (default: url)
      authorization_id: auth_...          # optional: the end user's grant the calls act under
    approval:
      wait_seconds: 30                    # how long one tools/call waits for a human
      max_held_calls: 10000               # held calls remembered for a retry (oldest dropped first)
    http:
      token_env: GATEWAY_TOKEN            # bearer token MCP clients must send over --http
    upstreams:
      payments:
        command: [python, tools_server.py]  # a stdio server the gateway starts itself
        env: {PROVIDER_TOKEN_FILE: /run/secrets/p}
        timeout_seconds: 30
        action_types: {send_payment: wire_transfer}   # default: mcp.payments.<tool>
        scopes:                           # optional: the grant scope and resource per tool
          refund: {scope: refunds, resource: "order:{order_id}"}   # {name}: a top-level argument
      search:
        url: http://127.0.0.1:9001/mcp       # a Streamable HTTP server

Every problem is reported at once with the field's path (``upstreams.payments.command``).
No two tools may end up with one exposed name or one action type (one would shadow the
other); what of that is knowable here is refused: with several upstreams, a name with
``__`` (the separator of exposed names ``<server>__<tool>``), and one action type mapped
from two tools. The rest is checked whenever the tool lists are fetched (``upstreams``).
The file is parsed with the same hardened loader as policy bundle configs (no aliases, size
and depth limits).
"""

from __future__ import annotations

import os
import re
import string
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from warrantor.policy.config import ConfigError, load_yaml_config

NAME = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")
ACTION_TYPE = re.compile(r"^[A-Za-z0-9_.:/-]{1,128}$")
SCOPE = re.compile(r"^[A-Za-z0-9_.:/-]{1,128}$")
AUTH_ID = re.compile(r"^auth_[a-z0-9]{1,64}$")
MAX_WAIT_SECONDS = 300
MAX_HELD_CALLS = 1_000_000
MAX_TIMEOUT_SECONDS = 600


@dataclass(frozen=True)
class ScopeRule:
    """The grant scope a tool's calls are checked under, and the resource, filled from the
    call's top-level arguments (``order:{order_id}``)."""

    scope: str
    resource: str

    def resource_for(self, arguments: dict[str, Any]) -> str | None:
        """The resource, or None when an argument it names is missing or not a scalar."""
        values = {}
        for _, name, _, _ in string.Formatter().parse(self.resource):
            if name is None:
                continue
            value = arguments.get(name)
            if isinstance(value, bool) or not isinstance(value, str | int | float):
                return None
            values[name] = value
        return self.resource.format_map(values)


@dataclass(frozen=True)
class Upstream:
    """One MCP server behind the gateway: a command to start (stdio) or a URL."""

    name: str
    command: tuple[str, ...] | None = None
    url: str | None = None
    env: MappingProxyType[str, str] = field(default_factory=lambda: MappingProxyType({}))
    timeout_seconds: float = 30.0
    action_types: MappingProxyType[str, str] = field(default_factory=lambda: MappingProxyType({}))
    scopes: MappingProxyType[str, ScopeRule] = field(default_factory=lambda: MappingProxyType({}))

    def action_type(self, tool: str) -> str:
        """``mcp.<server>.<tool>`` unless the config maps the tool to another action type."""
        return self.action_types.get(tool, f"mcp.{self.name}.{tool}")


@dataclass(frozen=True)
class GatewayConfig:
    warrantor_url: str
    api_key: str
    console_url: str
    upstreams: tuple[Upstream, ...]
    approval_wait_seconds: float = 30.0
    max_held_calls: int = 10_000  # the gateway's memory of held calls (mcp_gateway/held.py)
    http_token: str | None = None
    authorization_id: str | None = None


def load_config(path: Path, environ: dict[str, str] | None = None) -> GatewayConfig:
    """Read and check ``path``; raises :class:`ConfigError` listing every problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"config: cannot read {path}: {exc.strerror}"]) from exc
    return parse_config(load_yaml_config(text), os.environ if environ is None else environ)


def parse_config(data: dict[str, Any], environ: Any) -> GatewayConfig:
    problems: list[str] = []
    _unknown(data, {"warrantor", "approval", "http", "upstreams"}, "", problems)
    wr = _mapping(data.get("warrantor"), "warrantor", problems, required=True)
    _unknown(wr, {"url", "api_key", "api_key_env", "console_url", "authorization_id"}, "warrantor", problems)
    authorization_id = wr.get("authorization_id")
    if authorization_id is not None and not (isinstance(authorization_id, str) and AUTH_ID.match(authorization_id)):
        problems.append("warrantor.authorization_id: expected a grant id like auth_...")
    url = _http_url(wr.get("url"), "warrantor.url", problems)
    console = _http_url(wr.get("console_url", url), "warrantor.console_url", problems)
    api_key = _secret(wr, "api_key", "warrantor", environ, problems, required=True)

    approval = _mapping(data.get("approval"), "approval", problems)
    _unknown(approval, {"wait_seconds", "max_held_calls"}, "approval", problems)
    wait = _number(approval.get("wait_seconds", 30), "approval.wait_seconds", 0, MAX_WAIT_SECONDS, problems)
    max_held = approval.get("max_held_calls", 10_000)
    if isinstance(max_held, bool) or not isinstance(max_held, int) or not 1 <= max_held <= MAX_HELD_CALLS:
        problems.append(f"approval.max_held_calls: expected an integer in [1, {MAX_HELD_CALLS}], got {max_held!r}")

    http = _mapping(data.get("http"), "http", problems)
    _unknown(http, {"token", "token_env"}, "http", problems)
    token = _secret(http, "token", "http", environ, problems, required=False)
    if token is not None and len(token) < 16:
        problems.append("http.token: expected at least 16 characters")

    ups_raw = _mapping(data.get("upstreams"), "upstreams", problems, required=True)
    upstreams = [_upstream(name, spec, problems) for name, spec in ups_raw.items()]
    _no_shadowing([u for u in upstreams if u is not None], problems)
    if authorization_id is None and any(u is not None and u.scopes for u in upstreams):
        problems.append("warrantor.authorization_id: required when an upstream maps tools to grant scopes")
    if not ups_raw and "upstreams" in data:
        problems.append("upstreams: expected at least one upstream MCP server")
    if problems:
        raise ConfigError(problems)
    return GatewayConfig(
        warrantor_url=str(url).rstrip("/"), api_key=str(api_key), console_url=str(console).rstrip("/"),
        upstreams=tuple(u for u in upstreams if u is not None), approval_wait_seconds=wait, http_token=token,
        authorization_id=authorization_id, max_held_calls=max_held,
    )


def _upstream(name: Any, spec: Any, problems: list[str]) -> Upstream | None:
    where = f"upstreams.{name}"
    if not isinstance(name, str) or not NAME.match(name):
        problems.append(f"{where}: expected a name of lower-case letters, digits, '_' and '-' (at most 40), "
                        f"starting with a letter")
        return None
    spec = _mapping(spec, where, problems, required=True)
    _unknown(spec, {"command", "url", "env", "timeout_seconds", "action_types", "scopes"}, where, problems)
    command, url = spec.get("command"), spec.get("url")
    if (command is None) == (url is None):
        problems.append(f"{where}: expected exactly one of command (stdio) or url (Streamable HTTP)")
    if command is not None and not (
        isinstance(command, list) and command and all(isinstance(c, str) and c for c in command)
    ):
        problems.append(f"{where}.command: expected a non-empty list of strings")
        command = None
    if url is not None:
        url = _http_url(url, f"{where}.url", problems)
    env = _mapping(spec.get("env"), f"{where}.env", problems)
    if any(not isinstance(k, str) or not isinstance(v, str) for k, v in env.items()):
        problems.append(f"{where}.env: expected string names and values")
    timeout = _number(spec.get("timeout_seconds", 30), f"{where}.timeout_seconds", 0.1, MAX_TIMEOUT_SECONDS,
                      problems)
    mapping = _mapping(spec.get("action_types"), f"{where}.action_types", problems)
    for tool, action_type in mapping.items():
        if not isinstance(action_type, str) or not ACTION_TYPE.match(action_type):
            problems.append(f"{where}.action_types.{tool}: expected an action type of letters, digits and "
                            f"'_.:/-' (at most 128)")
    scopes = _scopes(spec.get("scopes"), f"{where}.scopes", problems)
    return Upstream(
        name=name, command=tuple(command) if command else None, url=url if isinstance(url, str) else None,
        env=MappingProxyType({str(k): str(v) for k, v in env.items()}), timeout_seconds=timeout,
        action_types=MappingProxyType({str(k): str(v) for k, v in mapping.items()}),
        scopes=MappingProxyType(scopes),
    )


def _no_shadowing(upstreams: list[Upstream], problems: list[str]) -> None:
    """The knowable part of "no exposed name or action type twice" (module docstring)."""
    if len(upstreams) > 1:
        for upstream in upstreams:
            if "__" in upstream.name:
                problems.append(f"upstreams.{upstream.name}: with several upstreams a name must not contain '__', "
                                f"which separates server and tool in exposed names (<server>__<tool>)")
    mapped: dict[str, str] = {}
    for upstream in upstreams:
        for tool, action_type in upstream.action_types.items():
            where = f"upstreams.{upstream.name}.action_types.{tool}"
            if action_type in mapped:
                problems.append(f"{where}: the action type {action_type!r} is already mapped from "
                                f"{mapped[action_type]}; two tools of one action type would share one policy")
            mapped.setdefault(action_type, where)


def _scopes(value: Any, where: str, problems: list[str]) -> dict[str, ScopeRule]:
    scopes = {}
    for tool, raw in _mapping(value, where, problems).items():
        rule = _mapping(raw, f"{where}.{tool}", problems, required=True)
        _unknown(rule, {"scope", "resource"}, f"{where}.{tool}", problems)
        scope, resource = rule.get("scope"), rule.get("resource")
        if not isinstance(scope, str) or not SCOPE.match(scope):
            problems.append(f"{where}.{tool}.scope: expected a scope name of letters, digits and '_.:/-'")
        elif not isinstance(resource, str) or not resource or len(resource) > 512:
            problems.append(f"{where}.{tool}.resource: expected a resource template of 1-512 characters")
        else:
            try:
                names = [f for _, f, _, _ in string.Formatter().parse(resource) if f is not None]
            except ValueError as exc:
                problems.append(f"{where}.{tool}.resource: {exc}")
                continue
            if any(not n.isidentifier() for n in names):
                problems.append(f"{where}.{tool}.resource: placeholders must be plain argument names "
                                f"(like {{order_id}})")
                continue
            scopes[str(tool)] = ScopeRule(scope, resource)
    return scopes


def _mapping(value: Any, where: str, problems: list[str], *, required: bool = False) -> dict[str, Any]:
    if value is None:
        if required:
            problems.append(f"{where}: required")
        return {}
    if not isinstance(value, dict):
        problems.append(f"{where}: expected a mapping")
        return {}
    return value


def _unknown(value: dict[str, Any], known: set[str], where: str, problems: list[str]) -> None:
    for key in value:
        if key not in known:
            prefix = f"{where}." if where else ""
            problems.append(f"{prefix}{key}: unknown field (expected one of {', '.join(sorted(known))})")


def _http_url(value: Any, where: str, problems: list[str]) -> str | None:
    if value is None:
        problems.append(f"{where}: required")
        return None
    parts = urlsplit(value) if isinstance(value, str) else None
    if parts is None or parts.scheme not in {"http", "https"} or not parts.hostname:
        problems.append(f"{where}: expected an http:// or https:// URL, got {value!r}")
        return None
    if parts.username or parts.password:
        problems.append(f"{where}: credentials in the URL are not allowed")
        return None
    return str(value)


def _number(value: Any, where: str, low: float, high: float, problems: list[str]) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        problems.append(f"{where}: expected a number of seconds in [{low:g}, {high:g}], got {value!r}")
        return low
    return float(value)


def _secret(  # noqa: PLR0911 - one return per way the field can be wrong
    section: dict[str, Any], name: str, where: str, environ: Any, problems: list[str], *, required: bool,
) -> str | None:
    """``name`` literally or ``name_env`` naming an environment variable (not both)."""
    literal, env_name = section.get(name), section.get(f"{name}_env")
    if literal is not None and env_name is not None:
        problems.append(f"{where}: expected {name} or {name}_env, not both")
        return None
    if env_name is not None:
        if not isinstance(env_name, str) or not env_name:
            problems.append(f"{where}.{name}_env: expected the name of an environment variable")
            return None
        value = environ.get(env_name)
        if not value:
            problems.append(f"{where}.{name}_env: the environment variable {env_name} is not set")
            return None
        return str(value)
    if literal is None:
        if required:
            problems.append(f"{where}.{name}: required ({name} or {name}_env)")
        return None
    if not isinstance(literal, str) or not literal:
        problems.append(f"{where}.{name}: expected a string")
        return None
    return literal
