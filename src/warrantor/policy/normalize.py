"""The Cedar request Warrantor builds for an action, normalized in trusted Python.

docs/guardrails.md. Every action becomes

- principal ``Agent::"<agent_id>"`` (``Agent::""`` when the caller named no agent),
- action ``Action::"<action_type>"``,
- resource ``Resource::"<resource, else the endpoint host, else the action type>"``,
- a context with exactly these attributes, always present: ``payload`` (record),
  ``details``, ``scope``, ``endpoint_host``, ``labels`` (Set of strings), ``agent_version``,
  ``model_id``, ``model_version`` (strings, ``""`` when not given).

Facts Cedar cannot compute are computed here:

- ``endpoint_host``: the host of ``endpoint_url`` (an absolute http or https URL), lower
  case, IDNA (UTS 46 A-labels), no trailing dot, without userinfo or port, parsed by
  ``policy.endpoints.parse_endpoint`` exactly as the endpoint allowlist parses it. An
  invalid URL raises ``ValueError``.

Payload values are converted to Cedar values, or rejected with ``ValueError``:

- objects become records, lists become Sets (order and duplicates are lost: Cedar has no
  lists), strings, booleans and integers stay as they are;
- **fractions are rejected**: Cedar has no floating point, and silently rounding an amount
  would change what a policy compares. Send money as integer minor units (``amount_minor``)
  and other fractional values as strings. A number with a zero fraction (``6000000.0``) is
  an integer, as JSON Schema and RFC 8785 (which writes it ``6000000``) say;
- integers must lie within +-(2**53 - 1): Cedar's ``Long`` is wider, but the input must
  canonicalize under RFC 8785 for the ``evaluation_hash``;
- ``null`` members of an object are dropped (so ``has`` sees them as absent); ``null``
  inside a list is rejected;
- object keys ``__entity``, ``__extn`` and ``__expr`` are rejected: Cedar's JSON format
  would read them as entity references or extension values chosen by the agent;
- nesting deeper than 16 levels is rejected.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from warrantor.policy.endpoints import EndpointError, parse_endpoint

MAX_PAYLOAD_DEPTH = 16
MAX_SAFE_INT = 2**53 - 1
CONTEXT_KEYS = (
    "payload",
    "details",
    "scope",
    "endpoint_host",
    "labels",
    "agent_version",
    "model_id",
    "model_version",
)
_ESCAPE_KEYS = frozenset({"__entity", "__extn", "__expr"})


@dataclass(frozen=True)
class PolicyInput:
    """One Cedar request; ``context`` holds only Cedar-representable JSON values."""

    principal_id: str
    action_type: str
    resource: str
    context: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """The canonical input: the Cedar request in cedarpy's JSON form, used for hashing."""
        return {
            "principal": {"type": "Agent", "id": self.principal_id},
            "action": {"type": "Action", "id": self.action_type},
            "resource": {"type": "Resource", "id": self.resource},
            "context": self.context,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PolicyInput:
        """Inverse of :meth:`to_dict`, for replaying an archived decision."""
        try:
            return cls(
                principal_id=str(data["principal"]["id"]),
                action_type=str(data["action"]["id"]),
                resource=str(data["resource"]["id"]),
                context=dict(data["context"]),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(
                f"expected a policy input with principal, action, resource, context: {exc}"
            ) from exc


def endpoint_host(url: str) -> str:
    """The normalized host of an absolute http(s) URL; ``ValueError`` if there is none.

    The same parser as the endpoint allowlist (``policy.endpoints.parse_endpoint``), so a
    Cedar rule on ``context.endpoint_host`` and the allowlist always see the same host
    (userinfo, ports, IDNs, trailing dots and look-alike suffixes included).
    """
    try:
        return parse_endpoint(url).host
    except EndpointError as exc:
        raise ValueError(f"invalid endpoint URL {url!r}: {exc}") from exc


def to_cedar_value(value: Any, path: str = "payload", depth: int = 0) -> Any:
    """``value`` as a Cedar-representable JSON value; see the module docstring."""
    if depth > MAX_PAYLOAD_DEPTH:
        raise ValueError(f"{path}: nesting deeper than {MAX_PAYLOAD_DEPTH} levels")
    if isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        if abs(value) > MAX_SAFE_INT:
            raise ValueError(f"{path}: expected an integer within +-(2**53 - 1), got {value}")
        return value
    if isinstance(value, float) and value.is_integer() and abs(value) <= MAX_SAFE_INT:
        return int(value)  # JSON Schema's integer, and RFC 8785 writes it as one: 6000000.0 is 6000000
    if isinstance(value, float):
        raise ValueError(
            f"{path}: floats are not supported by Cedar; send amounts as integer minor units"
            f" and other fractions as strings, got {value!r}"
        )
    if isinstance(value, Mapping):
        return _to_cedar_record(value, path, depth)
    if isinstance(value, list | tuple):
        out = []
        for i, item in enumerate(value):
            if item is None:
                raise ValueError(f"{path}[{i}]: null is not supported in a list")
            out.append(to_cedar_value(item, f"{path}[{i}]", depth + 1))
        return out
    raise ValueError(f"{path}: expected a JSON value, got {type(value).__name__}")


def _to_cedar_record(value: Mapping[Any, Any], path: str, depth: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, item in value.items():
        if not isinstance(key, str):
            raise ValueError(f"{path}: expected string keys, got {key!r}")
        if key in _ESCAPE_KEYS:
            raise ValueError(f"{path}.{key}: reserved key (Cedar would read it as an escape)")
        if item is not None:
            out[key] = to_cedar_value(item, f"{path}.{key}", depth + 1)
    return out


def _string(value: Any, name: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError(f"{name}: expected a string, got {type(value).__name__}")
    return value


def build_input(
    *,
    agent_id: str | None,
    action_type: str,
    payload: Mapping[str, Any],
    details: str = "",
    scope: str = "",
    resource: str | None = None,
    endpoint_url: str | None = None,
    labels: Iterable[str] = (),
    agent_version: str = "",
    model_id: str = "",
    model_version: str = "",
) -> PolicyInput:
    """The normalized Cedar request for one action; ``ValueError`` on input Cedar cannot carry."""
    if not isinstance(action_type, str) or not action_type:
        raise ValueError(f"action_type: expected a non-empty string, got {action_type!r}")
    if not isinstance(payload, Mapping):
        raise ValueError(f"payload: expected an object, got {type(payload).__name__}")
    host = endpoint_host(endpoint_url) if endpoint_url else ""
    label_set = sorted({_string(label, "labels[]") for label in labels})
    context = {
        "payload": _to_cedar_record(payload, "payload", 0),
        "details": _string(details, "details"),
        "scope": _string(scope, "scope"),
        "endpoint_host": host,
        "labels": label_set,
        "agent_version": _string(agent_version, "agent_version"),
        "model_id": _string(model_id, "model_id"),
        "model_version": _string(model_version, "model_version"),
    }
    return PolicyInput(
        principal_id=_string(agent_id, "agent_id"),
        action_type=action_type,
        resource=_string(resource, "resource") or host or action_type,
        context=context,
    )
