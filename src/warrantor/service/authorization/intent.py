"""The intent: what an agent asks to do, in the one canonical form every digest covers.

``Intent`` is built from an already schema-checked request body. Its ``canonical()`` form
drops absent fields, so adding an optional field later never changes old digests. The
intent digest is ``sha256(JCS(canonical))`` (docs/offline-verification.md).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from functools import cached_property
from typing import Any

from warrantor.evidence.canonical import digest


@dataclass(frozen=True)
class Intent:
    action_type: str
    details: str = ""
    payload: dict[str, Any] | None = None
    agent_id: str | None = None
    agent_version: str | None = None
    model_id: str | None = None
    model_version: str | None = None
    instruction_hash: str | None = None
    parent_action_id: str | None = None
    endpoint_url: str | None = None
    scope: str | None = None
    resource: str | None = None
    authorization_id: str | None = None
    run_id: str | None = None
    usage: dict[str, Any] | None = None
    context: dict[str, Any] | None = None
    labels: tuple[str, ...] = ()
    require_approval: bool = False
    approvers: tuple[str, ...] | None = None

    def canonical(self) -> dict[str, Any]:
        """The canonical form, built once per intent (a fresh dict for each caller, whose
        nested values are shared: nothing downstream mutates an intent's payload)."""
        return dict(self._canonical)

    @cached_property
    def _canonical(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in _FIELDS:
            value = getattr(self, name)
            if value is None or value == () or (name == "require_approval" and not value):
                continue
            out[name] = list(value) if isinstance(value, tuple) else value
        out.setdefault("payload", {})
        return out

    def digest(self) -> str:
        return self._digest

    @cached_property
    def _digest(self) -> str:
        return digest(self._canonical)

    def with_agent(self, agent_id: str) -> Intent:
        return replace(self, agent_id=agent_id)

    @classmethod
    def from_canonical(cls, data: dict[str, Any]) -> Intent:
        fields = dict(data)
        for key in ("labels", "approvers"):
            if key in fields and fields[key] is not None:
                fields[key] = tuple(fields[key])
        return cls(**fields)


_FIELDS = tuple(f.name for f in fields(Intent))
