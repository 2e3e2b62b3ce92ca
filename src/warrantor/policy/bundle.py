"""Policy bundles: Cedar policies + Cedar schema + config, parsed and checked once.

docs/guardrails.md. :func:`parse_bundle` is the only way untrusted bundle text becomes a
:class:`PolicyBundle`; it reports *every* problem in one :class:`BundleInvalidError`
(``POLICY_INVALID``, 422), each as ``{"message", "line"?, "column"?, "policy_id"?}``:

1. limits, checked in Python before the native parser runs: size, bracket nesting (deep
   nesting crashes cedarpy's parser with SIGSEGV), a bound on the depth of each policy's
   expression tree (``MAX_EXPRESSION``, also without brackets: see
   :mod:`warrantor.policy._scan`), the length of ``has`` paths and the number of policies;
   a problem from these limits carries ``"code": "POLICY_TOO_COMPLEX"``;
2. Cedar syntax, statement by statement, located by bisection over tokens (cedarpy's parse
   errors carry no position: the first token prefix that fails with the same error as the
   whole statement ends at the offending token; other errors point at the statement);
3. the schema, then the policies validated against it (``cedarpy.validate_policies``);
4. annotation lint (read from Cedar's JSON form of each policy's head, annotations, effect
   and scope, never of its conditions, whose JSON form is as deep as the condition:
   :func:`policy_heads`, which the policy outlook reads too): unique
   non-empty ``@id``, ``@effect`` in deny | require_approval | confirm | allow (``allow``
   only on a ``permit``, the others only on a ``forbid``; absent means ``allow`` on a
   permit and ``deny`` on a forbid), ``@reason`` present,
   ``@quorum`` and ``@approval_ttl`` positive integers, no templates;
5. the config (:mod:`warrantor.policy.config`).

The bundle hash is the hex sha256 of the RFC 8785 form of ``{"cedar", "schema", "config"}``
with ``config`` as JSON, so the same bundle has the same hash whether its config was sent as
JSON or as YAML.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import cedarpy

from warrantor.domain.approvers import parse_approver
from warrantor.errors import ValidationError
from warrantor.evidence.canonical import digest
from warrantor.policy._scan import (
    TOO_COMPLEX,
    ScanError,
    Statement,
    json_depth,
    line_col,
    policy_head,
    scan,
)
from warrantor.policy.config import BundleConfig, ConfigError, ConfigLimitError, load_yaml_config

MAX_CEDAR_CHARS = 256 * 1024
MAX_SCHEMA_CHARS = 256 * 1024
MAX_NESTING = 32
MAX_SCHEMA_JSON_DEPTH = 96  # a JSON schema spends about three levels per record level
MAX_POLICIES = 1000
MAX_EXPRESSION = 1000  # tree-depth bound per policy, see warrantor.policy._scan
MAX_HAS_PATH = 32  # attributes in one ``has a.b.c`` path (Cedar expands it quadratically)

EFFECTS = ("deny", "require_approval", "confirm", "allow")
_EOF_ERROR = "unexpected end of input"


class BundleInvalidError(ValidationError):
    """The bundle cannot be accepted; ``details["problems"]`` lists every problem."""

    code = "POLICY_INVALID"
    status = 422
    title = "Invalid policy bundle"

    def __init__(self, problems: list[dict[str, Any]]) -> None:
        first = problems[0]["message"] if problems else "invalid bundle"
        super().__init__(
            f"invalid policy bundle: {len(problems)} problem(s), first: {first}",
            details={"problems": problems},
        )
        self.problems = problems


@dataclass(frozen=True)
class PolicyInfo:
    """One policy's annotations, as the engine and the console use them."""

    id: str
    effect: str  # deny | require_approval | confirm | allow
    reason: str
    message: str
    approvers: tuple[str, ...]
    quorum: int | None
    approval_ttl_seconds: int | None
    cedar_effect: str  # permit | forbid
    cedar_id: str = ""  # cedarpy's positional id (policy0, policy1, ...)
    line: int | None = None


@dataclass(frozen=True)
class PolicyBundle:
    cedar: str
    schema: str | dict[str, Any]
    config: BundleConfig
    config_raw: dict[str, Any]
    hash: str
    policies: tuple[PolicyInfo, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"cedar": self.cedar, "schema": self.schema, "config": self.config_raw}

    def policy(self, policy_id: str) -> PolicyInfo | None:
        return next((p for p in self.policies if p.id == policy_id), None)


def bundle_hash(cedar: str, schema: str | dict[str, Any], config_raw: dict[str, Any]) -> str:
    return digest({"cedar": cedar, "schema": schema, "config": config_raw})


def parse_bundle(data: Mapping[str, Any]) -> PolicyBundle:
    """Parse and check ``{"cedar", "schema", "config"}``; raises :class:`BundleInvalidError`."""
    if not isinstance(data, Mapping):
        raise BundleInvalidError([{"message": "expected an object with cedar, schema, config"}])
    problems: list[dict[str, Any]] = []
    unknown = sorted(set(data) - {"cedar", "schema", "config"})
    if unknown:
        problems.append(
            {"message": f"unknown bundle keys {unknown}; expected cedar, schema, config"}
        )
    cedar, schema = data.get("cedar"), data.get("schema")
    config, config_raw = _parse_config(data.get("config"), problems)
    cedar_ok = _check_cedar_text(cedar, problems)
    schema_handle = _parse_schema(schema, problems)
    policies: tuple[PolicyInfo, ...] = ()
    if cedar_ok:
        assert isinstance(cedar, str)
        policies = _lint(cedar, problems)
        if schema_handle is not None:
            _validate(cedar, schema_handle, policies, problems)
    if problems:
        raise BundleInvalidError(problems)
    assert isinstance(cedar, str) and isinstance(schema, str | dict) and config is not None
    return PolicyBundle(
        cedar=cedar,
        schema=schema,
        config=config,
        config_raw=config_raw,
        hash=bundle_hash(cedar, schema, config_raw),
        policies=policies,
    )


def _parse_config(
    raw: Any, problems: list[dict[str, Any]]
) -> tuple[BundleConfig | None, dict[str, Any]]:
    try:
        if raw is None:
            raw = {}
        elif isinstance(raw, str):
            raw = load_yaml_config(raw)
        if isinstance(raw, Mapping):
            raw = dict(raw)
            digest(raw)  # the config must be JSON that canonicalizes (no dates, NaN, ...)
        return BundleConfig.from_dict(raw), raw
    except ConfigLimitError as exc:
        problems.append(exc.problem)
    except ConfigError as exc:
        problems.extend(
            {"message": p if p.startswith("config") else f"config: {p}"} for p in exc.problems
        )
    except ValueError as exc:
        problems.append({"message": f"config: {exc}"})
    return None, {}


def _check_cedar_text(cedar: Any, problems: list[dict[str, Any]]) -> bool:
    """Limits and syntax; True when the text parses as a whole."""
    if not isinstance(cedar, str):
        problems.append(
            {"message": f"cedar: expected Cedar policy text, got {type(cedar).__name__}"}
        )
        return False
    if len(cedar) > MAX_CEDAR_CHARS:
        problems.append({
            "message": f"cedar: expected at most {MAX_CEDAR_CHARS} characters, got {len(cedar)}",
            "code": TOO_COMPLEX,
        })
        return False
    try:
        statements = scan(
            cedar, max_depth=MAX_NESTING, max_expr=MAX_EXPRESSION, max_has_path=MAX_HAS_PATH
        )
    except ScanError as exc:
        problem = _located(cedar, exc.offset, f"cedar: {exc.message}")
        if exc.code:
            problem["code"] = exc.code
        problems.append(problem)
        return False
    if len(statements) > MAX_POLICIES:
        problems.append({
            "message": f"cedar: expected at most {MAX_POLICIES} policies, got {len(statements)}",
            "code": TOO_COMPLEX,
        })
        return False
    before = len(problems)
    for stmt in statements:
        _check_statement(cedar, stmt, problems)
    return len(problems) == before


def _located(text: str, offset: int, message: str) -> dict[str, Any]:
    line, column = line_col(text, offset)
    return {"message": message, "line": line, "column": column}


def _parse_error(fragment: str) -> str | None:
    try:
        cedarpy.PolicySet.from_str(fragment)
    except ValueError as exc:
        return str(exc)
    return None


def _check_statement(text: str, stmt: Statement, problems: list[dict[str, Any]]) -> None:
    if not stmt.terminated:
        problems.append(_located(text, stmt.end, "cedar: expected ';' after the last policy"))
        return
    error = _parse_error(text[stmt.start : stmt.end])
    if error is None:
        return
    problems.append(_located(text, _error_offset(text, stmt, error), f"cedar: {error}"))


def _error_offset(text: str, stmt: Statement, error: str) -> int:
    """Offset of the first token whose prefix fails with ``error`` (LR parsers fail at the
    first token that cannot continue a valid prefix, so this search is monotone)."""
    lo, hi = 0, len(stmt.tokens) - 1
    if error == _EOF_ERROR:
        return stmt.start
    while lo < hi:
        mid = (lo + hi) // 2
        prefix = text[stmt.start : stmt.tokens[mid][1]]
        if _parse_error(prefix) == error:
            hi = mid
        else:
            lo = mid + 1
    if lo == len(stmt.tokens) - 1 and "`;`" not in error:
        # not a syntax error but one found on the complete policy (an unknown variable,
        # a bad escape): point at the token it names, else at the policy
        named = error.rsplit(" ", 1)[-1].strip("`")
        hits = [start for start, end in stmt.tokens if text[start:end] == named]
        return hits[0] if hits else stmt.start
    return stmt.tokens[lo][0]


def _parse_schema(schema: Any, problems: list[dict[str, Any]]) -> cedarpy.Schema | None:
    try:
        if isinstance(schema, dict):
            if json_depth(schema, MAX_SCHEMA_JSON_DEPTH) > MAX_SCHEMA_JSON_DEPTH:
                raise ValueError(f"nesting deeper than {MAX_SCHEMA_JSON_DEPTH} levels")
            text = json.dumps(schema)
            if len(text) > MAX_SCHEMA_CHARS:
                raise ValueError(f"expected at most {MAX_SCHEMA_CHARS} characters of JSON")
            return cedarpy.Schema.from_json_str(text)
        if not isinstance(schema, str):
            raise ValueError(
                f"expected Cedar schema text or a JSON object, got {type(schema).__name__}"
            )
        if len(schema) > MAX_SCHEMA_CHARS:
            raise ValueError(f"expected at most {MAX_SCHEMA_CHARS} characters, got {len(schema)}")
        try:
            scan(schema, max_depth=MAX_NESTING, angle=True)
        except ScanError as exc:
            problems.append({**_located(schema, exc.offset, f"schema: {exc.message}"),
                             **({"code": exc.code} if exc.code else {})})
            return None
        if schema.lstrip().startswith("{"):
            return cedarpy.Schema.from_json_str(schema)
        return cedarpy.Schema.from_str(schema)
    except ValueError as exc:
        problems.append({"message": f"schema: {exc}"})
    return None


@dataclass(frozen=True)
class PolicyHead:
    """One policy cut after its scope: its annotations, effect and scope, never its
    conditions, so that Cedar's JSON form of it stays shallow whatever the conditions are."""

    text: str  # the head as a policy of its own, ending in ';'
    line: int  # where the policy starts in the bundle's text
    conditional: bool  # a ``when`` or ``unless`` clause follows the scope


def policy_heads(cedar: str) -> list[PolicyHead]:
    """The head of every policy of ``cedar`` (text Cedar has parsed), in order: the ``N``th
    head is cedarpy's ``policy<N>``."""
    heads = []
    for stmt in scan(cedar, max_depth=MAX_NESTING):
        _, scope_end = policy_head(cedar, stmt)
        heads.append(PolicyHead(
            text=cedar[stmt.start : stmt.tokens[scope_end][1]] + ";",
            line=line_col(cedar, stmt.start)[0],
            conditional=scope_end < len(stmt.tokens) - 2,  # more than the final ';' follows
        ))
    return heads


def _lint(cedar: str, problems: list[dict[str, Any]]) -> tuple[PolicyInfo, ...]:
    heads = policy_heads(cedar)
    est = json.loads(cedarpy.policies_to_json_str("\n".join(h.text for h in heads)))
    infos: list[PolicyInfo] = []
    seen: set[str] = set()
    for cedar_id, policy in est.get("staticPolicies", {}).items():
        line = (
            heads[int(cedar_id.removeprefix("policy"))].line if cedar_id.startswith("policy") else None
        )
        info = _policy_info(cedar_id, policy, line, problems)
        if info.id in seen:
            problems.append(_problem(f"duplicate @id {info.id!r}", line, info.id))
        seen.add(info.id)
        infos.append(info)
    for template_id in est.get("templates", {}):
        problems.append({"message": f"cedar: templates are not supported ({template_id})"})
    return tuple(infos)


def _problem(message: str, line: int | None, policy_id: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {"message": f"cedar: {message}"}
    if line is not None:
        out["line"] = line
        out["column"] = 1
    if policy_id:
        out["policy_id"] = policy_id
    return out


def _approvers(value: str | None, add: Any) -> tuple[str, ...]:
    """``@approvers("a@x.example, finance-leads")``: canonical entries; a bad one is a problem."""
    out: list[str] = []
    for part in (value or "").split(","):
        if not part.strip():
            continue
        try:
            entry = parse_approver(part.strip(), "@approvers")
        except ValidationError as exc:
            add(str(exc))
            continue
        if entry not in out:
            out.append(entry)
    return tuple(out)


def _positive_int(value: str | None, name: str, add: Any) -> int | None:
    if value is None:
        return None
    if value.isascii() and value.isdigit() and int(value) > 0:
        return int(value)
    add(f"@{name} must be a positive integer, got {value!r}")
    return None


def _policy_info(
    cedar_id: str, policy: dict[str, Any], line: int | None, problems: list[dict[str, Any]]
) -> PolicyInfo:
    notes: dict[str, str] = policy.get("annotations") or {}
    cedar_effect = policy["effect"]
    pid = notes.get("id") or ""

    def add(message: str) -> None:
        problems.append(_problem(message, line, pid or None))

    if not pid:
        add(f"every policy needs a non-empty @id ({cedar_effect} policy #{cedar_id})")
        pid = cedar_id
    effect = notes.get("effect") or ("allow" if cedar_effect == "permit" else "deny")
    if effect not in EFFECTS:
        add(f"@effect must be one of {', '.join(EFFECTS)}, got {effect!r}")
    elif (effect == "allow") != (cedar_effect == "permit"):
        need = "permit" if effect == "allow" else "forbid"
        add(f"@effect({effect!r}) must be on a {need} policy, found on a {cedar_effect}")
    reason = notes.get("reason") or ""
    if not reason:
        add("every policy needs a non-empty @reason")
    approvers = _approvers(notes.get("approvers"), add)
    return PolicyInfo(
        id=pid,
        effect=effect,
        reason=reason,
        message=notes.get("message") or "",
        approvers=approvers,
        quorum=_positive_int(notes.get("quorum"), "quorum", add),
        approval_ttl_seconds=_positive_int(notes.get("approval_ttl"), "approval_ttl", add),
        cedar_effect=cedar_effect,
        cedar_id=cedar_id,
        line=line,
    )


def _validate(
    cedar: str,
    schema: cedarpy.Schema,
    policies: tuple[PolicyInfo, ...],
    problems: list[dict[str, Any]],
) -> None:
    by_cedar_id = {p.cedar_id: p for p in policies}
    result = cedarpy.validate_policies(cedar, schema)
    for error in result.errors:
        info = by_cedar_id.get(error.policy_id)
        message = error.error
        if info is not None:
            message = message.replace(f"`{info.cedar_id}`", f"`{info.id}`")
        problems.append(
            _problem(
                f"schema validation: {message}",
                info.line if info else None,
                info.id if info else None,
            )
        )
