"""Runs: one agent run or session, its consumption and its halt (docs/security.md).

- ``Runs.create`` (``POST /v1/runs``): a run id and start time; an agent key's run belongs
  to its agent.
- ``Runs.add_usage`` (``POST /v1/runs/{id}/usage``): adds tokens and cost (minor units) to
  the run and books them on every matching ``tokens`` / ``cost_minor`` budget. When a
  ``scope: run`` budget is now over its limit the run is halted (status ``halted``, the
  halt's budget, limit, consumption and window recorded on the run, ``run.halted``
  emitted), all in one transaction. Usage is reported after the fact, so it is always
  recorded; the halt stops what comes next.
- ``RunFacts`` (FactProvider ``runs``): an action naming an unknown ``run_id`` is refused
  (404 ``RUN_NOT_FOUND``) and one naming another agent's run is refused (403).
- ``RunStage`` (stage ``run``): an action in a halted run is denied at stage ``budget``
  with ``BUDGET_EXHAUSTED``; its signed receipt carries the run's halt. (The halt itself is
  not a signed envelope: envelopes have an action as subject. Every action the halt stops
  gets the signed halt receipt.)

``install_guardrails`` (called by ``build_services``) wires agents, runs, budgets, rate
limits and simulation onto the authorizer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from warrantor.domain.clock import isoformat
from warrantor.domain.model import Effect, Principal, Role
from warrantor.errors import NotFoundError, PermissionDeniedError
from warrantor.service.authorization.agents import AgentFacts, Agents, IdentifyStage
from warrantor.service.authorization.authorize import Authorizer, Draft, Facts
from warrantor.service.authorization.budgets import BudgetGuard, BudgetHook, Budgets, Ledger, halt
from warrantor.service.authorization.intent import Intent
from warrantor.service.authorization.policies import Policies
from warrantor.service.authorization.ratelimit import RateLimitGuard
from warrantor.service.authorization.simulate import Simulator
from warrantor.service.context import Deps
from warrantor.service.tenancy import bound_agent, require_role, sees_agent
from warrantor.store import Repo
from warrantor.store import repo_guard as rg


class Runs:
    def __init__(self, deps: Deps, ledger: Ledger) -> None:
        self._d = deps
        self._ledger = ledger

    def create(self, principal: Principal, agent_id: str | None, metadata: dict[str, Any] | None) -> dict[str, Any]:
        tenant_id = require_role(principal, Role.AGENT, Role.ADMIN)
        agent_id = bound_agent(principal, agent_id)
        now = self._d.clock.now()
        run = rg.Run(self._d.ids.new("run"), tenant_id, agent_id, metadata or {}, "active", 0, 0, now, None, None)
        self._d.store.write(lambda repo: rg.insert_run(repo, run))
        return {"run_id": run.id, "agent_id": agent_id, "status": run.status, "started_at": isoformat(now)}

    def add_usage(self, principal: Principal, run_id: str, tokens: int, cost_minor: int) -> dict[str, Any]:
        tenant_id = require_role(principal, Role.AGENT, Role.ADMIN)
        now = self._d.clock.now()

        def job(repo: Repo) -> None:
            run = _visible(repo, principal, tenant_id, run_id, for_update=True)
            rg.add_run_usage(repo, tenant_id, run_id, tokens, cost_minor)
            over = self._ledger.record_usage(repo, run, {"tokens": tokens, "cost_minor": cost_minor}, now)
            if over and run.status == "active":
                halt(self._d, repo, run, over[0], now)

        self._d.store.write(job)
        return self.get(principal, run_id)

    def get(self, principal: Principal, run_id: str) -> dict[str, Any]:
        tenant_id = require_role(principal, Role.AGENT, Role.ADMIN, Role.AUDITOR)
        with self._d.store.read() as repo:
            run = _visible(repo, principal, tenant_id, run_id)
            actions = rg.run_actions(repo, tenant_id, run_id)
        return {
            "run_id": run.id, "agent_id": run.agent_id, "status": run.status,
            "started_at": isoformat(run.started_at), "metadata": run.metadata,
            "consumption": {"tokens": run.tokens, "cost_minor": run.cost_minor, "actions": len(actions)},
            "halt": run.halt, "halted_at": isoformat(run.halted_at) if run.halted_at else None,
            "actions": [{**a, "created_at": isoformat(a["created_at"])} for a in actions
                        if sees_agent(principal, a["agent_id"])],  # a shared run: an agent key sees its own
        }


def _visible(repo: Repo, principal: Principal, tenant_id: str, run_id: str, *, for_update: bool = False) -> rg.Run:
    run = rg.get_run(repo, tenant_id, run_id, for_update=for_update)
    if run is None or (principal.agent_id is not None and run.agent_id not in (None, principal.agent_id)):
        raise NotFoundError(f"no run {run_id!r}", code="RUN_NOT_FOUND")
    return run


class RunFacts:
    """FactProvider ``runs``: the intent's run; unknown runs are refused before anything is written."""

    name = "runs"

    def read(self, repo: Repo, tenant_id: str, intent: Intent, facts: Facts) -> rg.Run | None:
        if intent.run_id is None:
            return None
        run = rg.get_run(repo, tenant_id, intent.run_id)
        if run is None:
            raise NotFoundError(f"expected an existing run_id, got {intent.run_id!r}", code="RUN_NOT_FOUND")
        if run.agent_id is not None and intent.agent_id is not None and run.agent_id != intent.agent_id:
            raise PermissionDeniedError(
                f"expected run {run.id!r} to belong to agent {intent.agent_id!r}, got {run.agent_id!r}",
                code="RUN_AGENT_MISMATCH",
            )
        return run


class RunStage:
    """Stage ``run``: a halted run's actions are denied with its halt (BUDGET_EXHAUSTED)."""

    name = "run"

    def run(self, draft: Draft, intent: Intent, facts: Facts) -> str:
        run: rg.Run | None = facts.extra.get("runs")
        if run is None:
            return "skipped"
        if run.status != "halted":
            return "pass"
        draft.hold("budget", Effect.DENY, "BUDGET_EXHAUSTED")
        draft.deny_code = "BUDGET_EXHAUSTED"
        draft.halt = {**(run.halt or {}), "run_id": run.id, "run_status": "halted"}
        return "deny"


@dataclass(frozen=True)
class Guardrails:
    """The guardrail use cases, wired onto the authorizer by ``install_guardrails``."""

    agents: Agents
    runs: Runs
    budgets: Budgets
    simulator: Simulator


def install_guardrails(deps: Deps, policies: Policies, authorizer: Authorizer) -> Guardrails:
    """Register the identify and run stages, the fact providers, the rate-limit and budget
    guards (rate limit first: a refusal writes nothing) and the budget transition hook."""
    ledger = Ledger(deps, policies)
    authorizer.providers.extend([AgentFacts(), RunFacts()])
    authorizer.early_stages.insert(0, IdentifyStage())
    authorizer.late_stages.append(RunStage())
    authorizer.guards.insert(0, RateLimitGuard(policies))
    authorizer.guards.insert(1, BudgetGuard(ledger))
    deps.transition_hooks.append(BudgetHook(deps, ledger))
    return Guardrails(Agents(deps), Runs(deps, ledger), Budgets(deps, ledger), Simulator(deps, policies, authorizer))
