"""Request bodies: what the API accepts, checked strictly (unknown fields refused).

Three different things, kept apart: these request schemas, the domain records, and the
database rows. Responses are plain JSON documents built by the service layer; the models
named ``...Out`` describe one for the OpenAPI document (the route validates against it).
"""

from __future__ import annotations

import types
import typing
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

_ID = r"^[A-Za-z0-9][A-Za-z0-9_.:@\-]*$"
Short = Field(default=None, max_length=200)
ActionType = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z_][A-Za-z0-9_.:\-]*$")]


class Strict(BaseModel):
    """Strict types and no unknown fields, with one exception JSON Schema makes: a number
    with a zero fraction (``10.0``, ``1e3``) is an integer, so an ``int`` field takes it as
    that integer. ``10.5``, ``true`` and ``"10"`` stay refused (422 ``VALIDATION_ERROR``)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    _integer_keys: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        cls._integer_keys = frozenset(
            key for name, field in cls.model_fields.items() if _takes_int(field.annotation)
            for key in {name, field.alias or name}
        )

    @model_validator(mode="before")
    @classmethod
    def _integral_floats(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not cls._integer_keys:
            return data
        if not any(type(data.get(k)) is float and data[k].is_integer() for k in cls._integer_keys):
            return data
        return {k: int(v) if k in cls._integer_keys and type(v) is float and v.is_integer() else v
                for k, v in data.items()}


def _takes_int(annotation: Any) -> bool:
    """Whether a field's type admits a plain ``int`` (``int``, ``int | None``, ``Annotated[int, ...]``)."""
    if annotation is int:
        return True
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _takes_int(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return any(_takes_int(arg) for arg in typing.get_args(annotation))
    return False


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
    action_type: ActionType
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
    outcome: str = Field(default="completed", json_schema_extra={"enum": ["completed", "failed", "unknown"]},
                         description="another value is 400 INVALID_OUTCOME")
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


MAX_OUTLOOK_TYPES = 500
EffectName = Literal["deny", "require_approval", "confirm", "allow"]


class OutlookIn(Strict):
    action_types: list[ActionType] = Field(max_length=MAX_OUTLOOK_TYPES,
                                           description="action types as POST /v1/actions accepts them")
    agent_id: str | None = Field(default=None, max_length=200, pattern=_ID,
                                 description="required for admin and auditor keys; a key bound to an "
                                             "agent may only name its own agent")


class OutlookRuleOut(BaseModel):
    id: str
    effect: EffectName
    conditional: bool = Field(description="true: the rule may apply, depending on the request")


class ActionOutlookOut(BaseModel):
    action_type: str
    effect: EffectName = Field(description="the decision when only the rules that certainly apply match")
    certain: bool = Field(description="no request for this action type by this agent is decided otherwise")
    possible: list[EffectName] = Field(description="every decision a request can get, strongest first")
    rules: list[OutlookRuleOut] = Field(description="every rule that applies or may apply, as the engine "
                                                    "orders matches")
    reason: Literal["NO_ACTIVE_POLICY", "ACTION_NOT_IN_SCHEMA", "ANALYSIS_FAILED"] | None = Field(
        description="set when no rule decides: no bundle is enforced, the bundle's schema does not "
                    "declare the action type, or the bundle could not be analysed (the conservative answer)")


class OutlookOut(BaseModel):
    """The Cedar policy stage only: budgets, rate limits, detectors, the endpoint allowlist,
    grants and the agent registry depend on the request or on state and are not included."""

    bundle_hash: str | None = Field(description="the bundle in enforce mode; null when there is none")
    agent_id: str
    outlooks: list[ActionOutlookOut] = Field(description="one per requested action type, in order")
