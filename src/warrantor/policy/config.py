"""The bundle's ``config``: agents, endpoints, detectors, budgets, rate limits, approvals.

docs/guardrails.md, "The bundle's config". The config arrives as a JSON object or as the
YAML text of ``warrantor.yaml``; :meth:`BundleConfig.from_dict` parses it once into frozen
dataclasses, so inner code never re-checks it ("parse, don't validate").

Every key is optional. Parsing collects *every* problem (unknown keys, wrong types,
unknown enum values, duplicate budget ids) before raising one :class:`ConfigError`, so a
tenant fixes a file in one round trip. Detector regex syntax is not checked here: the
detectors stage compiles patterns with its own engine and reports them.

YAML text is untrusted: before anything is built from it, its event stream (libyaml's
parser, which expands nothing) is checked against ``MAX_CONFIG_BYTES`` (UTF-8),
``MAX_CONFIG_DEPTH`` nested collections and ``MAX_CONFIG_NODES`` scalars and collections,
and anchors and aliases are refused outright: a 490-byte "billion laughs" document of
nested aliases expands to gigabytes once walked (55 s and 3 GB, measured). These raise
:class:`ConfigLimitError`, a problem with a ``code`` (``YAML_ALIAS_REFUSED`` or
``CONFIG_TOO_LARGE``) and the line and column of the offending event.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, TypeVar

import yaml

from warrantor.domain.approvers import parse_approver
from warrantor.errors import ValidationError

ON_MISMATCH = ("deny", "require_approval")
DETECTOR_MODES = ("deny", "require_approval", "report", "off")
BUILTIN_DETECTORS = ("secrets", "cards", "injection")
METRICS = ("count", "tokens", "cost_minor")
SCOPES = ("run", "agent", "tenant")
WINDOWS = ("run", "1h", "1d", "30d", "calendar_day", "calendar_month")
ON_EXCEED = ("deny", "require_approval")

MAX_CONFIG_BYTES = 256 * 1024
MAX_CONFIG_DEPTH = 32
MAX_CONFIG_NODES = 20_000

_FIELD_RE = re.compile(r"^payload\.[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")

T = TypeVar("T")


class ConfigError(ValidationError):
    """The config is invalid; ``problems`` lists every problem found, one string each."""

    code = "POLICY_INVALID"

    def __init__(self, problems: list[str]) -> None:
        super().__init__(
            f"invalid bundle config: {len(problems)} problem(s): " + "; ".join(problems),
            details={"problems": [{"message": p} for p in problems]},
        )
        self.problems = problems


class ConfigLimitError(ConfigError):
    """YAML refused before it is loaded; ``problem`` is one located problem with a code."""

    def __init__(self, message: str, code: str, mark: Any = None) -> None:
        super().__init__([message])
        self.problem: dict[str, Any] = {"message": message, "code": code}
        if mark is not None:
            self.problem.update(line=mark.line + 1, column=mark.column + 1)
        self.details = {"problems": [self.problem]}


def _empty_map() -> Mapping[str, tuple[str, ...]]:
    return MappingProxyType({})


@dataclass(frozen=True)
class AgentsConfig:
    strict: bool = False
    on_instruction_mismatch: str | None = None  # 'deny' | 'require_approval'; None = off


@dataclass(frozen=True)
class EndpointsConfig:
    strict: bool = False
    allow: Mapping[str, tuple[str, ...]] = field(default_factory=_empty_map)
    # host -> allowed sha256 hex fingerprints of the TLS certificate
    pins: Mapping[str, tuple[str, ...]] = field(default_factory=_empty_map)


@dataclass(frozen=True)
class CustomDetector:
    id: str
    pattern: str
    mode: str


def _default_builtin() -> Mapping[str, str]:
    return MappingProxyType({})


@dataclass(frozen=True)
class DetectorsConfig:
    builtin: Mapping[str, str] = field(default_factory=_default_builtin)
    custom: tuple[CustomDetector, ...] = ()


@dataclass(frozen=True)
class Budget:
    id: str
    metric: str  # count | tokens | cost_minor | payload.<field>
    scope: str  # run | agent | tenant
    window: str  # run | 1h | 1d | 30d | calendar_day | calendar_month
    limit: int
    on_exceed: str  # deny | require_approval


@dataclass(frozen=True)
class RateLimit:
    rate_per_second: float
    burst: int


@dataclass(frozen=True)
class RateLimitsConfig:
    per_key: RateLimit | None = None
    per_agent: RateLimit | None = None


@dataclass(frozen=True)
class ApprovalsConfig:
    default_ttl_seconds: int = 86400
    default_approvers: tuple[str, ...] = ()


class _Problems:
    """Collects problems with the path they occurred at (``budgets[1].limit``)."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, path: str, message: str) -> None:
        self.items.append(f"{path}: {message}")

    def mapping(self, value: Any, path: str, allowed: tuple[str, ...]) -> Mapping[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            self.add(path, f"expected an object, got {_kind(value)}")
            return {}
        for key in value:
            if key not in allowed:
                self.add(path, f"unknown key {key!r}; expected one of {', '.join(allowed)}")
        return value

    def typed(self, value: Any, path: str, check: Callable[[Any], bool], what: str) -> bool:
        if check(value):
            return True
        self.add(path, f"expected {what}, got {_kind(value)}")
        return False

    def enum(self, value: Any, path: str, choices: tuple[str, ...]) -> str | None:
        if isinstance(value, str) and value in choices:
            return value
        self.add(path, f"expected one of {', '.join(choices)}, got {value!r}")
        return None


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return {int: "an integer", float: "a number", str: "a string", list: "a list"}.get(
        type(value), "an object" if isinstance(value, Mapping) else type(value).__name__
    )


def _is_bool(v: Any) -> bool:
    return isinstance(v, bool)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_pos_int(v: Any) -> bool:
    return _is_int(v) and v > 0


def _is_nonneg_int(v: Any) -> bool:
    return _is_int(v) and v >= 0


def _is_pos_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and v > 0


def _is_str(v: Any) -> bool:
    return isinstance(v, str) and v != ""


def _str_list(p: _Problems, value: Any, path: str) -> tuple[str, ...]:
    if not isinstance(value, list | tuple):
        p.add(path, f"expected a list of strings, got {_kind(value)}")
        return ()
    out = []
    for i, item in enumerate(value):
        if p.typed(item, f"{path}[{i}]", _is_str, "a non-empty string"):
            out.append(item)
    return tuple(out)


def _parse_agents(p: _Problems, raw: Any) -> AgentsConfig:
    m = p.mapping(raw, "agents", ("strict", "on_instruction_mismatch"))
    strict = m.get("strict", False)
    p.typed(strict, "agents.strict", _is_bool, "a boolean")
    mismatch = m.get("on_instruction_mismatch")
    if mismatch is not None:
        mismatch = p.enum(mismatch, "agents.on_instruction_mismatch", ON_MISMATCH)
    return AgentsConfig(strict=strict is True, on_instruction_mismatch=mismatch)


def _str_list_map(p: _Problems, raw: Any, path: str) -> Mapping[str, tuple[str, ...]]:
    if raw is None:
        return MappingProxyType({})
    if not isinstance(raw, Mapping):
        p.add(path, f"expected an object, got {_kind(raw)}")
        return MappingProxyType({})
    return MappingProxyType({str(k): _str_list(p, v, f"{path}.{k}") for k, v in raw.items()})


def _parse_endpoints(p: _Problems, raw: Any) -> EndpointsConfig:
    m = p.mapping(raw, "endpoints", ("strict", "allow", "pins"))
    strict = m.get("strict", False)
    p.typed(strict, "endpoints.strict", _is_bool, "a boolean")
    allow = _str_list_map(p, m.get("allow"), "endpoints.allow")
    pins = _str_list_map(p, m.get("pins"), "endpoints.pins")
    for host, fingerprints in pins.items():
        for i, fp in enumerate(fingerprints):
            if not _SHA256_RE.match(fp):
                p.add(
                    f"endpoints.pins.{host}[{i}]", f"expected 64 lower-case hex digits, got {fp!r}"
                )
    pins = MappingProxyType({h.lower().rstrip("."): fps for h, fps in pins.items()})
    return EndpointsConfig(strict=strict is True, allow=allow, pins=pins)


def _parse_detectors(p: _Problems, raw: Any) -> DetectorsConfig:
    m = p.mapping(raw, "detectors", ("builtin", "custom"))
    b = p.mapping(m.get("builtin"), "detectors.builtin", BUILTIN_DETECTORS)
    builtin = {}
    for name in BUILTIN_DETECTORS:
        if name in b:
            mode = p.enum(b[name], f"detectors.builtin.{name}", DETECTOR_MODES)
            if mode is not None:
                builtin[name] = mode
    custom = []
    raw_custom = m.get("custom") or []
    if not isinstance(raw_custom, list):
        p.add("detectors.custom", f"expected a list, got {_kind(raw_custom)}")
        raw_custom = []
    seen: set[str] = set()
    for i, item in enumerate(raw_custom):
        path = f"detectors.custom[{i}]"
        d = p.mapping(item, path, ("id", "pattern", "mode"))
        if not isinstance(item, Mapping):
            continue
        ok = p.typed(d.get("id"), f"{path}.id", _is_str, "a non-empty string")
        ok &= p.typed(d.get("pattern"), f"{path}.pattern", _is_str, "a non-empty string")
        mode = p.enum(d.get("mode"), f"{path}.mode", DETECTOR_MODES)
        if ok and d["id"] in seen:
            p.add(f"{path}.id", f"duplicate detector id {d['id']!r}")
        if ok and mode is not None:
            seen.add(d["id"])
            custom.append(CustomDetector(id=d["id"], pattern=d["pattern"], mode=mode))
    return DetectorsConfig(builtin=MappingProxyType(builtin), custom=tuple(custom))


def _parse_budget(p: _Problems, item: Any, path: str) -> Budget | None:
    keys = ("id", "metric", "scope", "window", "limit", "on_exceed")
    d = p.mapping(item, path, keys)
    if not isinstance(item, Mapping):
        return None
    ok = p.typed(d.get("id"), f"{path}.id", _is_str, "a non-empty string")
    if ok and not _ID_RE.match(d["id"]):
        p.add(f"{path}.id", f"expected letters, digits, '_', '.', ':', '-', got {d['id']!r}")
        ok = False
    metric = d.get("metric")
    if not (isinstance(metric, str) and (metric in METRICS or _FIELD_RE.match(metric))):
        p.add(
            f"{path}.metric",
            f"expected count, tokens, cost_minor or payload.<field>, got {metric!r}",
        )
        ok = False
    scope = p.enum(d.get("scope"), f"{path}.scope", SCOPES)
    window = p.enum(d.get("window"), f"{path}.window", WINDOWS)
    ok &= p.typed(d.get("limit"), f"{path}.limit", _is_nonneg_int, "a non-negative integer")
    on_exceed = p.enum(d.get("on_exceed", "deny"), f"{path}.on_exceed", ON_EXCEED)
    if not ok or scope is None or window is None or on_exceed is None:
        return None
    return Budget(d["id"], metric, scope, window, d["limit"], on_exceed)  # type: ignore[arg-type]


def _parse_budgets(p: _Problems, raw: Any) -> tuple[Budget, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        p.add("budgets", f"expected a list, got {_kind(raw)}")
        return ()
    budgets: list[Budget] = []
    for i, item in enumerate(raw):
        budget = _parse_budget(p, item, f"budgets[{i}]")
        if budget is None:
            continue
        if any(b.id == budget.id for b in budgets):
            p.add(f"budgets[{i}].id", f"duplicate budget id {budget.id!r}")
            continue
        budgets.append(budget)
    return tuple(budgets)


def _parse_rate(p: _Problems, raw: Any, path: str) -> RateLimit | None:
    if raw is None:
        return None
    d = p.mapping(raw, path, ("rate_per_second", "burst"))
    if not isinstance(raw, Mapping):
        return None
    ok = p.typed(
        d.get("rate_per_second"), f"{path}.rate_per_second", _is_pos_number, "a positive number"
    )
    ok &= p.typed(d.get("burst"), f"{path}.burst", _is_pos_int, "a positive integer")
    return RateLimit(float(d["rate_per_second"]), d["burst"]) if ok else None


def _parse_rate_limits(p: _Problems, raw: Any) -> RateLimitsConfig:
    m = p.mapping(raw, "rate_limits", ("per_key", "per_agent"))
    return RateLimitsConfig(
        per_key=_parse_rate(p, m.get("per_key"), "rate_limits.per_key"),
        per_agent=_parse_rate(p, m.get("per_agent"), "rate_limits.per_agent"),
    )


def _parse_approvals(p: _Problems, raw: Any) -> ApprovalsConfig:
    m = p.mapping(raw, "approvals", ("default_ttl_seconds", "default_approvers"))
    ttl = m.get("default_ttl_seconds", 86400)
    if not p.typed(ttl, "approvals.default_ttl_seconds", _is_pos_int, "a positive integer"):
        ttl = 86400
    approvers: list[str] = []
    for i, item in enumerate(_str_list(p, m.get("default_approvers", []), "approvals.default_approvers")):
        path = f"approvals.default_approvers[{i}]"
        try:
            approvers.append(parse_approver(item, path))
        except ValidationError as exc:
            p.add(path, str(exc).removeprefix(f"{path}: "))
    return ApprovalsConfig(default_ttl_seconds=ttl, default_approvers=tuple(dict.fromkeys(approvers)))


_SECTIONS = ("agents", "endpoints", "detectors", "budgets", "rate_limits", "approvals")


@dataclass(frozen=True)
class BundleConfig:
    agents: AgentsConfig = AgentsConfig()
    endpoints: EndpointsConfig = EndpointsConfig()
    detectors: DetectorsConfig = DetectorsConfig()
    budgets: tuple[Budget, ...] = ()
    rate_limits: RateLimitsConfig = RateLimitsConfig()
    approvals: ApprovalsConfig = ApprovalsConfig()

    @classmethod
    def empty(cls) -> BundleConfig:
        return cls()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> BundleConfig:
        """Parse a config object; raises :class:`ConfigError` listing every problem."""
        p = _Problems()
        if data is None:
            return cls.empty()
        if not isinstance(data, Mapping):
            raise ConfigError([f"config: expected an object, got {_kind(data)}"])
        for key in data:
            if key not in _SECTIONS:
                p.add("config", f"unknown key {key!r}; expected one of {', '.join(_SECTIONS)}")
        config = cls(
            agents=_parse_agents(p, data.get("agents")),
            endpoints=_parse_endpoints(p, data.get("endpoints")),
            detectors=_parse_detectors(p, data.get("detectors")),
            budgets=_parse_budgets(p, data.get("budgets")),
            rate_limits=_parse_rate_limits(p, data.get("rate_limits")),
            approvals=_parse_approvals(p, data.get("approvals")),
        )
        if p.items:
            raise ConfigError(p.items)
        return config

    @classmethod
    def from_yaml(cls, text: str) -> BundleConfig:
        """Parse the YAML text of ``warrantor.yaml`` (safe loader only)."""
        return cls.from_dict(load_yaml_config(text))


_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when built with it


def _check_yaml_events(text: str) -> None:
    """Refuse anchors, aliases and oversized documents from the event stream alone."""
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_CONFIG_BYTES:
        raise ConfigLimitError(
            f"config: expected at most {MAX_CONFIG_BYTES} bytes of YAML, got {size}", "CONFIG_TOO_LARGE"
        )
    depth = nodes = 0
    for event in yaml.parse(text, Loader=_LOADER):
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            raise ConfigLimitError(
                "config: YAML anchors and aliases are not supported; write the value out",
                "YAML_ALIAS_REFUSED", event.start_mark,
            )
        if isinstance(event, yaml.ScalarEvent | yaml.CollectionStartEvent):
            nodes += 1
            if nodes > MAX_CONFIG_NODES:
                raise ConfigLimitError(
                    f"config: more than {MAX_CONFIG_NODES} YAML values", "CONFIG_TOO_LARGE", event.start_mark
                )
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_CONFIG_DEPTH:
                raise ConfigLimitError(
                    f"config: YAML nested deeper than {MAX_CONFIG_DEPTH} levels", "CONFIG_TOO_LARGE",
                    event.start_mark,
                )
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def load_yaml_config(text: str) -> dict[str, Any]:
    """YAML text -> a plain JSON-compatible dict; raises :class:`ConfigError`."""
    try:
        _check_yaml_events(text)
        data = yaml.load(text, Loader=_LOADER)  # noqa: S506 - a safe loader, checked above
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError([f"config: invalid YAML{where}: {exc}"]) from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError([f"config: expected a YAML mapping, got {_kind(data)}"])
    return data
