"""What the SDK returns: frozen dataclasses over the API's JSON, the raw JSON kept in ``raw``.

Each ``from_json`` reads the fields callers rely on (README.md, "Shapes that
clients and tests rely on") and keeps the whole document in ``raw``, so fields the server
adds later stay reachable without an SDK release. Evidence documents (keys, the trust
bundle, proof bundles) are returned as plain dicts: the offline verifier parses them.

Not here: validation of signatures (``warrantor.verify`` does that, offline).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

PENDING = frozenset({"pending_approval", "pending_confirmation"})
CLEARED = frozenset({"authorized", "approved"})


def _envelope(warrant: Any) -> dict[str, Any] | None:
    """The DSSE envelope: POST returns it bare, GET wraps it with its id and log index."""
    if not isinstance(warrant, dict):
        return None
    inner = warrant.get("envelope")
    return inner if isinstance(inner, dict) else warrant


@dataclass(frozen=True)
class Authorization:
    """The answer to ``authorize``: ``authorized`` (with a warrant) or ``pending_*``.

    Denials never come back as an ``Authorization``: they raise ``ActionDeniedError``.
    """

    action_id: str
    status: str
    decision: dict[str, Any]
    warrant: dict[str, Any] | None = None
    approval: dict[str, Any] | None = None
    confirmation: dict[str, Any] | None = None
    warnings: tuple[Any, ...] = ()
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def cleared(self) -> bool:
        """True when the action may run now (``authorized`` or ``approved``)."""
        return self.status in CLEARED

    @property
    def pending(self) -> bool:
        return self.status in PENDING

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Authorization:
        return cls(
            action_id=str(body["action_id"]),
            status=str(body["status"]),
            decision=dict(body.get("decision") or {}),
            warrant=_envelope(body.get("warrant")),
            approval=body.get("approval"),
            confirmation=body.get("confirmation"),
            warnings=tuple(body.get("warnings") or ()),
            raw=body,
        )


@dataclass(frozen=True)
class ActionDetail:
    """``GET /v1/actions/{id}``: the action, its decision, approvals, warrant and receipt."""

    action_id: str
    status: str
    action_type: str
    decision: dict[str, Any]
    warrant: dict[str, Any] | None = None
    receipt: dict[str, Any] | None = None
    approvals: tuple[dict[str, Any], ...] = ()
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def cleared(self) -> bool:
        return self.status in CLEARED

    @property
    def pending(self) -> bool:
        return self.status in PENDING

    @property
    def receipt_id(self) -> str | None:
        return str(self.receipt["receipt_id"]) if self.receipt else None

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> ActionDetail:
        return cls(
            action_id=str(body["action_id"]),
            status=str(body["status"]),
            action_type=str(body.get("action_type", "")),
            decision=dict(body.get("decision") or {}),
            warrant=_envelope(body.get("warrant")),
            receipt=body.get("receipt"),
            approvals=tuple(body.get("approvals") or ()),
            raw=body,
        )


@dataclass(frozen=True)
class NotarizeResult:
    """``POST /v1/actions/{id}/notarize``: the final status, the match check, the receipt."""

    action_id: str
    status: str
    match: dict[str, Any] | None
    receipt: dict[str, Any] | None
    evidence_grade: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def receipt_id(self) -> str | None:
        return str(self.receipt["receipt_id"]) if self.receipt else None

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> NotarizeResult:
        return cls(
            action_id=str(body["action_id"]),
            status=str(body["status"]),
            match=body.get("match"),
            receipt=body.get("receipt"),
            evidence_grade=body.get("evidence_grade"),
            raw=body,
        )


@dataclass(frozen=True)
class ExecuteResult:
    """``POST /v1/actions/{id}/execute``: Warrantor sent the action's HTTP request itself.

    ``status`` is ``notarized`` (2xx), ``failed`` (another status, or nothing was sent) or
    ``uncertain`` (it may have run); ``response`` is the upstream's answer (``status_code``,
    filtered ``headers``, bounded ``body`` with ``body_encoding``, ``truncated``,
    ``redacted``) or None when none arrived; ``error`` says what went wrong, if anything.
    """

    action_id: str
    status: str
    evidence_grade: str
    witness: dict[str, Any]
    response: dict[str, Any] | None
    error: dict[str, Any] | None
    receipt: dict[str, Any] | None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def receipt_id(self) -> str | None:
        return str(self.receipt["receipt_id"]) if self.receipt else None

    @property
    def status_code(self) -> int | None:
        """The upstream's HTTP status, when an answer arrived."""
        return int(self.response["status_code"]) if self.response else None

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> ExecuteResult:
        return cls(
            action_id=str(body["action_id"]),
            status=str(body["status"]),
            evidence_grade=str(body["evidence_grade"]),
            witness=dict(body["witness"]),
            response=body.get("response"),
            error=body.get("error"),
            receipt=body.get("receipt"),
            raw=body,
        )


@dataclass(frozen=True)
class ActionPage:
    """One page of ``GET /v1/actions``: summaries plus the pagination block."""

    data: tuple[dict[str, Any], ...]
    page: int
    per_page: int
    total: int
    has_more: bool
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> ActionPage:
        pagination = body.get("pagination") or {}
        return cls(
            data=tuple(body.get("data") or ()),
            page=int(pagination.get("page", 1)),
            per_page=int(pagination.get("per_page", 0)),
            total=int(pagination.get("total", 0)),
            has_more=bool(pagination.get("has_more", False)),
            raw=body,
        )


@dataclass(frozen=True)
class ApprovalResult:
    """``POST /v1/approvals/{code}/confirm``: the action's status after this decision."""

    action_id: str
    status: str
    approvals: int
    quorum: int
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> ApprovalResult:
        return cls(
            action_id=str(body["action_id"]),
            status=str(body["status"]),
            approvals=int(body.get("approvals", 0)),
            quorum=int(body.get("quorum", 1)),
            raw=body,
        )
