"""Guardrails: agent registry, runs, budgets and policy simulation (README.md).

``POST /v1/agents`` (admin) adds a version; ``GET``/``DELETE /v1/agents/{id}``.
``POST /v1/runs``, ``POST /v1/runs/{id}/usage``, ``GET /v1/runs/{id}``.
``GET /v1/budgets`` (admin, auditor). ``POST /v1/policies/simulate`` (admin, auditor).
The use cases are in ``service/authorization/agents.py``, ``runs.py``, ``budgets.py``, ``simulate.py``.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import ConfigDict, Field

from warrantor.server.deps import Caller, Svc
from warrantor.server.params import time_param
from warrantor.server.schemas import Strict

router = APIRouter(tags=["guardrails"])

_ID = r"^[A-Za-z0-9][A-Za-z0-9_.:@\-]*$"


class _Strict(Strict):  # integral floats count as integers (schemas.Strict)
    model_config = ConfigDict(extra="forbid", strict=True)


class AgentIn(_Strict):
    agent_id: str = Field(min_length=1, max_length=200, pattern=_ID)
    version: str = Field(min_length=1, max_length=128)
    model_id: str = Field(min_length=1, max_length=200)
    instruction_hash: str = Field(min_length=1, max_length=200)


class RunIn(_Strict):
    agent_id: str | None = Field(default=None, max_length=200, pattern=_ID)
    metadata: dict[str, Any] | None = None


class UsageIn(_Strict):
    tokens: int = Field(default=0, ge=0, le=10**15)
    cost_minor: int = Field(default=0, ge=0, le=10**15)


class SimulateIn(_Strict):
    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)

    bundle_hash: str = Field(pattern=r"^[0-9a-f]{64}$")
    from_: str | None = Field(default=None, alias="from", max_length=64)
    to: str | None = Field(default=None, max_length=64)
    limit: int | None = None


@router.post("/v1/agents", status_code=201)
def register_agent(body: AgentIn, svc: Svc, caller: Caller) -> dict[str, Any]:
    """Add a version of an agent (model and instruction hash); 409 if the version exists."""
    return svc.guardrails.agents.register(caller, body.agent_id, body.version, body.model_id, body.instruction_hash)


@router.get("/v1/agents")
def list_agents(svc: Svc, caller: Caller) -> dict[str, Any]:
    return svc.guardrails.agents.list(caller)


@router.get("/v1/agents/{agent_id}")
def get_agent(agent_id: str, svc: Svc, caller: Caller) -> dict[str, Any]:
    return svc.guardrails.agents.get(caller, agent_id)


@router.delete("/v1/agents/{agent_id}")
def delete_agent(agent_id: str, svc: Svc, caller: Caller) -> dict[str, Any]:
    return svc.guardrails.agents.delete(caller, agent_id)


@router.post("/v1/runs", status_code=201)
def create_run(svc: Svc, caller: Caller, body: RunIn | None = None) -> dict[str, Any]:
    body = body or RunIn()
    return svc.guardrails.runs.create(caller, body.agent_id, body.metadata)


@router.post("/v1/runs/{run_id}/usage")
def add_run_usage(run_id: str, body: UsageIn, svc: Svc, caller: Caller) -> dict[str, Any]:
    """Add tokens and cost to a run; a run budget now over its limit halts the run."""
    return svc.guardrails.runs.add_usage(caller, run_id, body.tokens, body.cost_minor)


@router.get("/v1/runs/{run_id}")
def get_run(run_id: str, svc: Svc, caller: Caller) -> dict[str, Any]:
    return svc.guardrails.runs.get(caller, run_id)


@router.get("/v1/budgets")
def list_budgets(svc: Svc, caller: Caller) -> dict[str, Any]:
    """Consumption per budget, scope key and current window of the enforcing bundle."""
    return svc.guardrails.budgets.overview(caller)


@router.post("/v1/policies/simulate")
def simulate_policy(body: SimulateIn, svc: Svc, caller: Caller) -> dict[str, Any]:
    """Replay a stored bundle over recorded actions; report every decision that would change."""
    return svc.guardrails.simulator.simulate(
        caller, body.bundle_hash, time_param(body.from_, "from", "INVALID_TIME"),
        time_param(body.to, "to", "INVALID_TIME"), body.limit
    )
