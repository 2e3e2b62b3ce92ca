"""Request bodies: what the API accepts, checked strictly (unknown fields refused).

Three different things, kept apart: these request schemas, the domain records, and the
database rows. Responses are plain JSON documents built by the service layer.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

_ID = r"^[A-Za-z0-9][A-Za-z0-9_.:@\-]*$"
Short = Field(default=None, max_length=200)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class TenantIn(Strict):
    name: str = Field(min_length=1, max_length=200)


class ApiKeyIn(Strict):
    role: Literal["agent", "app", "admin", "auditor", "gateway"]
    agent_id: str | None = Field(default=None, max_length=200, pattern=_ID,
                                 description="the agent the key acts for: optional for agent keys, "
                                             "required for gateway keys")
    label: str | None = Field(default=None, min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$",
                              description="a name for people: what the key is for")


class Usage(Strict):
    tokens: int | None = Field(default=None, ge=0)
    cost_minor: int | None = Field(default=None, ge=0)


class ActionIn(Strict):
    action_type: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z_][A-Za-z0-9_.:\-]*$")
    details: str = Field(default="", max_length=16_384)
    payload: dict[str, Any] = Field(default_factory=dict)
    agent_id: str | None = Field(default=None, max_length=200, pattern=_ID)
    agent_version: str | None = Short
    model_id: str | None = Short
    model_version: str | None = Short
    instruction_hash: str | None = Short
    parent_action_id: str | None = Field(default=None, max_length=64)
    endpoint_url: str | None = Field(default=None, max_length=8192)
    scope: str | None = Field(default=None, max_length=512)
    resource: str | None = Field(default=None, max_length=512)
    authorization_id: str | None = Field(default=None, max_length=64)
    run_id: str | None = Field(default=None, max_length=64)
    usage: Usage | None = None
    context: dict[str, Any] | None = None
    labels: list[str] = Field(default_factory=list, max_length=32)
    require_approval: bool = False
    approvers: list[str] | None = Field(default=None, max_length=32)
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=255)


class ExecutedIn(Strict):
    action_type: str | None = Field(default=None, max_length=128)
    payload: dict[str, Any] | None = None
    executed_at: str | None = Field(default=None, max_length=64)
    executed_by: str | None = Field(default=None, max_length=200)


class WitnessIn(Strict):
    """What a gateway saw when it executed the call itself: digests, never content.

    The service checks the values together with the grade, so that every problem with a
    witness is one code, 422 ``INVALID_WITNESS`` naming the field (``service.notarize``)."""

    request_sha256: str | None = Field(default=None, description="required: sha256:<64 lowercase hex> of the "
                                                                 "request the gateway sent")
    response_sha256: str | None = Field(default=None, description="required: sha256:<64 lowercase hex> of the "
                                                                  "response it received")
    executor: str | None = Field(default=None, description="1 to 200 printable characters, e.g. mcp-gateway")
    target: str | None = Field(default=None, description="1 to 200 printable characters, "
                                                         "e.g. mcp:payments/send_payment")


class NotarizeIn(Strict):
    outcome: str = "completed"
    outcome_details: str | None = Field(default=None, max_length=16_384)
    executed: ExecutedIn | None = None
    usage: Usage | None = None
    evidence_grade: Literal["reported", "witnessed"] | None = Field(
        default=None, description="reported (the default) or witnessed (a gateway key only, with witness)")
    witness: WitnessIn | None = None


class ApprovalDecisionIn(Strict):
    decision: Literal["approve", "deny"]
    reason: str | None = Field(default=None, max_length=2000)


class PolicyIn(Strict):
    cedar: str
    schema_: str | dict[str, Any] = Field(alias="schema")
    config: str | dict[str, Any] = Field(default_factory=dict)

    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)


class ActivateIn(Strict):
    mode: Literal["enforce", "shadow"] = "enforce"


class EvaluateIn(Strict):
    action: ActionIn
    bundle_hash: str | None = Field(default=None, max_length=64)
