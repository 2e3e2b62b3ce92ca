"""The agent registry and the ``identify`` stage (docs/security.md).

- ``Agents``: register a version (``POST /v1/agents``: agent id, version, model id,
  instruction hash; each call adds one version), read an agent's versions, delete an agent.
- ``AgentFacts`` (a FactProvider named ``agents``) reads the registered versions of the
  intent's agent in the authorizer's read phase.
- ``IdentifyStage`` (an early stage named ``identify``) applies the active bundle's
  ``agents`` config:

  * ``strict: true``: an agent with no registered version, or naming a version that is not
    registered, is denied with ``AGENT_NOT_REGISTERED``;
  * an ``instruction_hash`` that differs from the registered one (the version named by
    ``agent_version``, else the newest) is denied or held for approval as
    ``on_instruction_mismatch`` says (``deny`` when strict and not set), reason
    ``INSTRUCTION_HASH_MISMATCH``. A missing ``instruction_hash`` counts as a mismatch: a
    prompt that cannot be compared cannot be trusted.

What it does not do: authenticate agents (API keys do that, and a key bound to an agent
fixes ``agent_id``), or compare ``model_id`` (reported only, as a warning).
"""

from __future__ import annotations

from typing import Any

from warrantor.domain.model import Effect, Principal, Role
from warrantor.errors import ConflictError, NotFoundError
from warrantor.service.authorization.authorize import Draft, Facts
from warrantor.service.authorization.intent import Intent
from warrantor.service.context import Deps
from warrantor.service.tenancy import require_role
from warrantor.store import Repo
from warrantor.store import repo_guard as rg

READERS = (Role.ADMIN, Role.AUDITOR)


class Agents:
    """Use cases behind ``/v1/agents``."""

    def __init__(self, deps: Deps) -> None:
        self._d = deps

    def register(self, principal: Principal, agent_id: str, version: str, model_id: str,
                 instruction_hash: str) -> dict[str, Any]:
        tenant_id = require_role(principal, Role.ADMIN)
        record = rg.AgentVersion(agent_id, version, model_id, instruction_hash, self._d.clock.now())

        def job(repo: Repo) -> None:
            if any(v.version == version for v in rg.get_agent_versions(repo, tenant_id, agent_id)):
                raise ConflictError(
                    f"expected a new version for agent {agent_id!r}, got existing version {version!r}",
                    code="AGENT_VERSION_EXISTS",
                )
            rg.insert_agent_version(repo, tenant_id, record)

        self._d.store.write(job)
        return {"agent_id": agent_id, **record.to_dict()}

    def get(self, principal: Principal, agent_id: str) -> dict[str, Any]:
        tenant_id = require_role(principal, *READERS, Role.AGENT)
        if principal.agent_id is not None and principal.agent_id != agent_id:
            raise NotFoundError(f"no agent {agent_id!r}", code="NOT_FOUND")
        with self._d.store.read() as repo:
            versions = rg.get_agent_versions(repo, tenant_id, agent_id)
        if not versions:
            raise NotFoundError(f"no agent {agent_id!r}", code="NOT_FOUND")
        return {"agent_id": agent_id, "versions": [v.to_dict() for v in versions],
                "latest_version": versions[-1].version}

    def list(self, principal: Principal) -> dict[str, Any]:
        tenant_id = require_role(principal, *READERS)
        with self._d.store.read() as repo:
            rows = rg.list_agents(repo, tenant_id)
        return {"data": [{"agent_id": a, "versions": n} for a, n in rows]}

    def delete(self, principal: Principal, agent_id: str) -> dict[str, Any]:
        tenant_id = require_role(principal, Role.ADMIN)
        deleted = self._d.store.write(lambda repo: rg.delete_agent(repo, tenant_id, agent_id))
        if not deleted:
            raise NotFoundError(f"no agent {agent_id!r}", code="NOT_FOUND")
        return {"agent_id": agent_id, "deleted_versions": deleted}


class AgentFacts:
    """FactProvider ``agents``: the registered versions of the intent's agent."""

    name = "agents"

    def read(self, repo: Repo, tenant_id: str, intent: Intent, facts: Facts) -> list[rg.AgentVersion]:
        enforce = facts.enforce
        checks = enforce is not None and (
            enforce.bundle.config.agents.strict or enforce.bundle.config.agents.on_instruction_mismatch
        )
        if intent.agent_id is None or not checks:
            return []  # the identify stage will skip: no query on the hot path
        return rg.get_agent_versions(repo, tenant_id, intent.agent_id)


class IdentifyStage:
    """Early stage ``identify``: registration and instruction-hash checks."""

    name = "identify"

    def run(self, draft: Draft, intent: Intent, facts: Facts) -> str:
        enforce = facts.enforce
        if enforce is None:
            return "skipped"
        config = enforce.bundle.config.agents
        on_mismatch = config.on_instruction_mismatch or ("deny" if config.strict else None)
        if not config.strict and on_mismatch is None:
            return "skipped"
        versions: list[rg.AgentVersion] = facts.extra.get("agents") or []
        registered = _pick(versions, intent.agent_version)
        if registered is None:
            if config.strict:
                draft.hold("identify", Effect.DENY, "AGENT_NOT_REGISTERED")
                draft.warnings.append(_unregistered(intent))
                return "deny"
            return "unregistered"
        if registered.model_id and intent.model_id and registered.model_id != intent.model_id:
            draft.warnings.append(
                f"model_id {intent.model_id!r} differs from registered {registered.model_id!r} "
                f"(version {registered.version!r})"
            )
        if on_mismatch is None or intent.instruction_hash == registered.instruction_hash:
            return "pass"
        effect = Effect.DENY if on_mismatch == "deny" else Effect.REQUIRE_APPROVAL
        draft.hold("identify", effect, "INSTRUCTION_HASH_MISMATCH")
        draft.warnings.append(
            f"expected instruction_hash {registered.instruction_hash!r} (version {registered.version!r}), "
            f"got {intent.instruction_hash!r}"
        )
        return effect.value


def _pick(versions: list[rg.AgentVersion], wanted: str | None) -> rg.AgentVersion | None:
    if not versions:
        return None
    if wanted is None:
        return versions[-1]
    return next((v for v in versions if v.version == wanted), None)


def _unregistered(intent: Intent) -> str:
    if intent.agent_id is None:
        return "expected a registered agent_id, got none"
    if intent.agent_version is not None:
        return f"expected a registered version of agent {intent.agent_id!r}, got {intent.agent_version!r}"
    return f"expected a registered agent, got {intent.agent_id!r}"
