"""Secrets Warrantor injects into the HTTP requests it executes (docs/execute.md).

The agent never holds them. The server reads a YAML file named by
``WARRANTOR_EXECUTE_SECRETS``::

    inject:
      - url_prefix: https://api.stripe.com/v1/
        headers:
          Authorization: {value_env: STRIPE_KEY, value_prefix: "Bearer "}
      - url_prefix: https://hooks.internal.example/
        headers:
          X-Api-Key: {value_file: /run/secrets/hooks_key}

Rules:

- ``url_prefix`` is an ``http`` or ``https`` URL without userinfo, query or fragment. It
  matches a request whose scheme, host (normalized like the endpoint allowlist's) and port
  are equal and whose path starts with the prefix's path on a segment boundary
  (``/v1`` matches ``/v1`` and ``/v1/x``, never ``/v10``). Text prefixes are never compared:
  ``https://api.stripe.com.evil.io`` does not match ``https://api.stripe.com``. The longest
  matching prefix wins; only its headers are injected.
- Each header takes its secret from ``value_env`` (an environment variable, read once at
  start) or ``value_file`` (read at each execution, so a rotated file takes effect at once;
  one trailing newline is dropped), with an optional ``value_prefix``. Secrets must be
  printable ASCII of at least 8 characters: shorter ones could not be redacted from answers
  without redacting ordinary text.
- Injected headers replace any header of the same name the agent wrote.
- Everything is checked at start; a problem stops the server with every problem listed. A
  file that cannot be read at execution time refuses the execution before anything is sent
  (503 ``EXECUTE_SECRET_UNAVAILABLE``).

Values are held in memory only: never in an action, a receipt, a log line or an answer.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from warrantor.errors import WarrantorError
from warrantor.policy.config import ConfigError, load_yaml_config
from warrantor.policy.endpoints import EndpointError, parse_endpoint
from warrantor.policy.http_request import FRAMING_HEADERS, HttpRequestSpec

MIN_SECRET_LENGTH = 8
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,128}")
_PRINTABLE = re.compile(r"[\x20-\x7e]*")


class SecretUnavailableError(WarrantorError):
    code = "EXECUTE_SECRET_UNAVAILABLE"
    status = 503
    title = "Secret unavailable"


@dataclass(frozen=True)
class SecretHeader:
    name: str
    value_prefix: str
    env_value: str | None = None  # read at start
    file: Path | None = None  # read at each execution

    @property
    def source(self) -> str:
        return f"file {self.file}" if self.file is not None else "an environment variable"


@dataclass(frozen=True)
class InjectRule:
    url_prefix: str
    scheme: str
    host: str
    port: int
    path: str
    headers: tuple[SecretHeader, ...]

    def matches(self, spec: HttpRequestSpec) -> bool:
        ep = spec.endpoint
        if (ep.scheme, ep.host, ep.port) != (self.scheme, self.host, self.port):
            return False
        if self.path.endswith("/"):
            return spec.path.startswith(self.path)
        return spec.path == self.path or spec.path.startswith(self.path + "/")


@dataclass(frozen=True)
class Injection:
    """The headers injected into one request, and the secret values to redact anywhere."""

    headers: tuple[tuple[str, str], ...] = ()
    secrets: tuple[str, ...] = ()
    url_prefix: str | None = None

    @property
    def names(self) -> frozenset[str]:
        return frozenset(name.lower() for name, _ in self.headers)


class SecretInjector:
    """The injection rules of one deployment (none when no file is configured)."""

    def __init__(self, rules: tuple[InjectRule, ...] = ()) -> None:
        self.rules = rules

    def rule_for(self, spec: HttpRequestSpec) -> InjectRule | None:
        matching = [rule for rule in self.rules if rule.matches(spec)]
        return max(matching, key=lambda rule: len(rule.path)) if matching else None

    def injection_for(self, spec: HttpRequestSpec) -> Injection:
        """The headers to inject into ``spec``; ``SecretUnavailableError`` if one cannot be read."""
        rule = self.rule_for(spec)
        if rule is None:
            return Injection()
        headers, secrets = [], []
        for header in rule.headers:
            secret = header.env_value if header.env_value is not None else _read_file(header)
            if not _usable(secret):
                raise SecretUnavailableError(
                    f"the secret for header {header.name} of {rule.url_prefix} ({header.source}) is not usable: "
                    f"expected printable ASCII of at least {MIN_SECRET_LENGTH} characters; nothing was sent",
                    details={"url_prefix": rule.url_prefix, "header": header.name},
                )
            assert secret is not None
            headers.append((header.name, header.value_prefix + secret))
            secrets.append(secret)
        return Injection(tuple(headers), tuple(secrets), rule.url_prefix)


def _read_file(header: SecretHeader) -> str | None:
    assert header.file is not None
    try:
        text = header.file.read_text(encoding="ascii")
    except (OSError, UnicodeError):
        return None
    return text.removesuffix("\n").removesuffix("\r")


def _usable(secret: str | None) -> bool:
    return secret is not None and len(secret) >= MIN_SECRET_LENGTH and bool(_PRINTABLE.fullmatch(secret))


def load_injector(path: Path | None, environ: Mapping[str, str]) -> SecretInjector:
    """The rules of ``path`` (no file: no rules); ``ConfigError`` listing every problem."""
    if path is None:
        return SecretInjector()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"WARRANTOR_EXECUTE_SECRETS: cannot read {path}: {exc.strerror}"]) from exc
    return parse_injector(load_yaml_config(text), environ)


def parse_injector(data: Mapping[str, Any], environ: Mapping[str, str]) -> SecretInjector:
    problems: list[str] = []
    if set(data) - {"inject"}:
        problems.append(f"expected only the key inject, got {sorted(set(data) - {'inject'})}")
    raw_rules = data.get("inject") or []
    if not isinstance(raw_rules, list):
        problems.append("inject: expected a list of {url_prefix, headers}")
        raw_rules = []
    rules = [rule for i, raw in enumerate(raw_rules) if (rule := _rule(raw, f"inject[{i}]", environ, problems))]
    seen = set()
    for rule in rules:
        key = (rule.scheme, rule.host, rule.port, rule.path)
        if key in seen:
            problems.append(f"inject: url_prefix {rule.url_prefix} is listed twice")
        seen.add(key)
    if problems:
        raise ConfigError([f"WARRANTOR_EXECUTE_SECRETS: {p}" for p in problems])
    return SecretInjector(tuple(rules))


def _rule(raw: Any, where: str, environ: Mapping[str, str], problems: list[str]) -> InjectRule | None:
    if not isinstance(raw, Mapping) or set(raw) - {"url_prefix", "headers"}:
        problems.append(f"{where}: expected {{url_prefix, headers}}")
        return None
    prefix = raw.get("url_prefix")
    parsed = _prefix(prefix, f"{where}.url_prefix", problems)
    headers_raw = raw.get("headers")
    if not isinstance(headers_raw, Mapping) or not headers_raw:
        problems.append(f"{where}.headers: expected a mapping of header names to {{value_env | value_file}}")
        return None
    headers = []
    names: set[str] = set()
    for name, spec in headers_raw.items():
        at = f"{where}.headers.{name}"
        if not (isinstance(name, str) and _TOKEN.fullmatch(name)):
            problems.append(f"{at}: expected a header name of RFC 9110 token characters")
            continue
        if name.lower() in FRAMING_HEADERS or name.lower() in names:
            problems.append(f"{at}: expected a header Warrantor does not set itself, named once")
            continue
        names.add(name.lower())
        header = _header(name, spec, at, environ, problems)
        if header is not None:
            headers.append(header)
    if parsed is None or not isinstance(prefix, str):
        return None
    scheme, host, port, path = parsed
    return InjectRule(prefix, scheme, host, port, path, tuple(headers))


def _prefix(prefix: Any, where: str, problems: list[str]) -> tuple[str, str, int, str] | None:
    if not isinstance(prefix, str) or not prefix.isascii():
        problems.append(f"{where}: expected an ASCII http or https URL")
        return None
    try:
        endpoint = parse_endpoint(prefix)
    except EndpointError as exc:
        problems.append(f"{where}: {exc.message}")
        return None
    rest = prefix.split("://", 1)[1]
    cut = min((i for i in (rest.find("/"), rest.find("?"), rest.find("#")) if i >= 0), default=len(rest))
    authority, path = rest[:cut], rest[cut:]
    if "@" in authority or "?" in path or "#" in path or "\\" in path:
        problems.append(f"{where}: expected no userinfo, query, fragment or backslash")
        return None
    return endpoint.scheme, endpoint.host, endpoint.port, path or "/"


def _header(name: str, spec: Any, at: str, environ: Mapping[str, str], problems: list[str]) -> SecretHeader | None:
    if not isinstance(spec, Mapping) or set(spec) - {"value_env", "value_file", "value_prefix"}:
        problems.append(f"{at}: expected {{value_env | value_file, value_prefix?}}")
        return None
    value_prefix = spec.get("value_prefix", "")
    if not (isinstance(value_prefix, str) and _PRINTABLE.fullmatch(value_prefix)):
        problems.append(f"{at}.value_prefix: expected printable ASCII")
        return None
    env, file = spec.get("value_env"), spec.get("value_file")
    if (env is None) == (file is None):
        problems.append(f"{at}: expected exactly one of value_env and value_file")
        return None
    return _from_env(name, value_prefix, env, at, environ, problems) if env is not None else \
        _from_file(name, value_prefix, file, at, problems)


def _from_env(name: str, value_prefix: str, env: Any, at: str, environ: Mapping[str, str],
              problems: list[str]) -> SecretHeader | None:
    if not isinstance(env, str) or not env:
        problems.append(f"{at}.value_env: expected the name of an environment variable")
        return None
    value = environ.get(env)
    if not _usable(value):
        problems.append(f"{at}.value_env: expected {env} to be set to printable ASCII of at least "
                        f"{MIN_SECRET_LENGTH} characters")
        return None
    return SecretHeader(name, value_prefix, env_value=value)


def _from_file(name: str, value_prefix: str, file: Any, at: str, problems: list[str]) -> SecretHeader | None:
    if not isinstance(file, str) or not file:
        problems.append(f"{at}.value_file: expected a file path")
        return None
    header = SecretHeader(name, value_prefix, file=Path(file))
    if not _usable(_read_file(header)):
        problems.append(f"{at}.value_file: expected {file} to be readable and hold printable ASCII of at "
                        f"least {MIN_SECRET_LENGTH} characters")
        return None
    return header
