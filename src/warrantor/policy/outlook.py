"""What a bundle can decide for an action type and an agent, before any payload exists.

docs/guardrails.md, "Outlook". An MCP gateway lists its tools without a payload: it must hide
the tools the policy denies whatever the call, and mark those that may need approval. This
module reads a bundle statically, once, into a :class:`BundleOutlook` that answers that per
(agent, action type) from an index, cheaply.

**What applies.** The engine evaluates the principal ``Agent::"<agent_id>"``, the action
``Action::"<action_type>"`` and a resource that depends on the request
(:mod:`warrantor.policy.normalize`), with the schema's action hierarchy and no other
entities. Each policy's scope is read
from Cedar's JSON form of its head (:func:`warrantor.policy.bundle.policy_heads`) and
matched to one of three answers, :class:`Match`:

- principal: unconstrained or ``is Agent`` applies; ``== Agent::"<this agent>"`` and
  ``in Agent::"<this agent>"`` (``in`` is reflexive) apply; ``==`` another entity and
  ``is`` another type never apply; any other ``in`` *may* apply (an entity hierarchy could
  place the agent there);
- action: unconstrained applies; ``==`` or ``in`` naming ``Action::"<T>"`` applies;
  ``in`` an action group that the schema puts ``T`` in (transitively) applies, as the
  engine evaluates with the schema's action entities; anything else never applies;
- resource: unconstrained or ``is Resource`` applies; ``is`` or ``==`` another type never
  applies; any other constraint *may* apply (the resource comes with the request);
- a ``when`` or ``unless`` clause makes the policy *may* apply, whatever it says.

A policy's answer is the weakest of the four. Unknown JSON shapes count as *may apply*.

**What it decides**, with the engine's rule (no satisfied permit: deny; otherwise the
strongest satisfied effect, :func:`warrantor.domain.model.strongest_effect`): ``effect`` is
the decision when only the policies that certainly apply are satisfied; ``possible`` every
decision some combination of the policies that may apply can add to that; ``certain`` that
``possible`` holds ``effect`` alone.

**The schema.** The engine validates each request against the bundle's schema, so an action
type the schema does not declare as ``Action::"<T>"`` for an ``Agent`` on a ``Resource`` is
denied whatever the payload (``POLICY_ERROR``). The declared actions and their groups are
read from the action entities cedarpy derives from the schema; whether each applies to an
``Agent`` and a ``Resource`` is asked of Cedar itself, by a partial evaluation of such a
request with its context unknown (:func:`_offered`). The outlook assumes a payload that
conforms to the schema and conditions that evaluate without error: anything else is denied,
for any action type.

**Untrusted text.** Every native call here reads shallow input: policy heads (the same
conversion :func:`warrantor.policy.bundle.parse_bundle` makes of every bundle it loads),
one request per declared action, and the schema the engine already parsed. Any exception
makes the analysis *failed*: every outlook is then the conservative one (deny, not certain,
every effect possible), and :attr:`BundleOutlook.error` says why.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

import cedarpy

from warrantor.domain.model import EFFECT_PRECEDENCE, Effect, strongest_effect
from warrantor.policy.bundle import PolicyBundle, policy_heads
from warrantor.policy.engine import cedar_schema

PRINCIPAL_TYPE = "Agent"  # the entity types the engine's requests use (policy.normalize)
ACTION_TYPE = "Action"
RESOURCE_TYPE = "Resource"

MAX_ACTION_ENTITIES_CHARS = 8 * 1024 * 1024  # the schema's actions and their groups, as JSON

NO_ACTIVE_POLICY = "NO_ACTIVE_POLICY"
ACTION_NOT_IN_SCHEMA = "ACTION_NOT_IN_SCHEMA"
ANALYSIS_FAILED = "ANALYSIS_FAILED"


class Match(IntEnum):
    """Whether a policy applies to a request; ordered, so the weakest of several is ``min``."""

    NEVER = 0
    MAYBE = 1
    APPLIES = 2


Entity = tuple[str, str]  # (type, id)


@dataclass(frozen=True)
class RuleOutlook:
    id: str
    effect: Effect
    conditional: bool

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "effect": self.effect.value, "conditional": self.conditional}


@dataclass(frozen=True)
class Outlook:
    """What the bundle can decide for one action type and one agent (module docstring)."""

    action_type: str
    effect: Effect
    certain: bool
    possible: tuple[Effect, ...]  # strongest first
    rules: tuple[RuleOutlook, ...] = ()  # every policy that applies or may apply
    reason: str | None = None  # set when the rules are not what decides

    @classmethod
    def denied(cls, action_type: str, reason: str) -> Outlook:
        """Denied whatever the payload, by something other than a rule."""
        return cls(action_type, Effect.DENY, True, (Effect.DENY,), (), reason)

    @classmethod
    def unknown(cls, action_type: str) -> Outlook:
        """The conservative answer when the bundle could not be analysed."""
        return cls(action_type, Effect.DENY, False, EFFECT_PRECEDENCE, (), ANALYSIS_FAILED)

    def to_dict(self) -> dict[str, Any]:
        return {
            "action_type": self.action_type,
            "effect": self.effect.value,
            "certain": self.certain,
            "possible": [e.value for e in self.possible],
            "rules": [r.to_dict() for r in self.rules],
            "reason": self.reason,
        }


@dataclass(frozen=True)
class _Rule:
    id: str
    effect: Effect
    position: int  # N of cedarpy's ``policy<N>``
    principal_agent: str | None  # the agent the principal scope names (== or in), if any
    for_that_agent: Match  # the principal scope's answer for that agent
    for_other_agents: Match  # and for every other agent
    rest: Match  # resource scope and conditions: the same for every agent and action type

    def match(self, agent_id: str) -> Match:
        principal = self.for_that_agent if agent_id == self.principal_agent else self.for_other_agents
        return min(principal, self.rest)


@dataclass(frozen=True)
class BundleOutlook:
    """A bundle analysed once; :meth:`outlook` costs one look-up per candidate policy."""

    bundle_hash: str
    error: str | None = None
    # usable action types -> the action groups the schema puts them in (transitively)
    _actions: Mapping[str, frozenset[Entity]] = field(default_factory=dict)
    _everywhere: tuple[tuple[_Rule, Match], ...] = ()  # action scope admits every type
    _by_action: Mapping[str, tuple[_Rule, ...]] = field(default_factory=dict)  # names T itself
    _by_group: Mapping[Entity, tuple[_Rule, ...]] = field(default_factory=dict)  # names a group

    def outlook(self, agent_id: str, action_type: str) -> Outlook:
        if self.error is not None:
            return Outlook.unknown(action_type)
        groups = self._actions.get(action_type)
        if groups is None:
            return Outlook.denied(action_type, ACTION_NOT_IN_SCHEMA)
        found: dict[int, tuple[_Rule, Match]] = {}

        def consider(rule: _Rule, action: Match) -> None:
            match = min(action, rule.match(agent_id))
            if match > found.get(rule.position, (rule, Match.NEVER))[1]:
                found[rule.position] = (rule, match)

        for rule, action in self._everywhere:
            consider(rule, action)
        for rule in self._by_action.get(action_type, ()):
            consider(rule, Match.APPLIES)
        for group in groups:
            for rule in self._by_group.get(group, ()):
                consider(rule, Match.APPLIES)
        return _decide(action_type, found.values())


def _decide(action_type: str, found: Iterable[tuple[_Rule, Match]]) -> Outlook:
    applicable = sorted(
        (pair for pair in found if pair[1] is not Match.NEVER),
        key=lambda pair: (EFFECT_PRECEDENCE.index(pair[0].effect), pair[0].position),
    )
    sure = [rule.effect for rule, match in applicable if match is Match.APPLIES]
    maybe = [rule.effect for rule, match in applicable if match is Match.MAYBE]
    # the decision when a permit is satisfied and no conditional forbid is
    with_permit = strongest_effect([*sure, Effect.ALLOW])
    effect = with_permit if Effect.ALLOW in sure else Effect.DENY  # no permit: Cedar denies
    possible = {effect}
    if Effect.ALLOW in sure or Effect.ALLOW in maybe:
        possible.add(with_permit)
        possible.update(strongest_effect([with_permit, e]) for e in maybe)
    return Outlook(
        action_type=action_type,
        effect=effect,
        certain=possible == {effect},
        possible=tuple(e for e in EFFECT_PRECEDENCE if e in possible),
        rules=tuple(RuleOutlook(r.id, r.effect, m is Match.MAYBE) for r, m in applicable),
    )


def analyse(bundle: PolicyBundle) -> BundleOutlook:
    """The bundle's outlook index; a failed one (``error`` set) if anything goes wrong."""
    try:
        actions = _usable_actions(bundle.schema)
        everywhere: list[tuple[_Rule, Match]] = []
        by_action: dict[str, list[_Rule]] = {}
        by_group: dict[Entity, list[_Rule]] = {}
        for rule, scope in _rules(bundle):
            if scope.get("op") == "All":
                everywhere.append((rule, Match.APPLIES))
            elif scope.get("op") in ("==", "in") and ("entity" in scope or "entities" in scope):
                for entity in _entities(scope):
                    if entity[0] == ACTION_TYPE:
                        by_action.setdefault(entity[1], []).append(rule)
                    if scope["op"] == "in":
                        by_group.setdefault(entity, []).append(rule)
            else:  # a shape this code does not know: it may apply to anything
                everywhere.append((rule, Match.MAYBE))
    except Exception as exc:  # every failure has the same answer: the conservative outlook
        return BundleOutlook(bundle.hash, error=f"{type(exc).__name__}: {exc}")
    return BundleOutlook(
        bundle.hash,
        _actions=actions,
        _everywhere=tuple(everywhere),
        _by_action={k: tuple(v) for k, v in by_action.items()},
        _by_group={k: tuple(v) for k, v in by_group.items()},
    )


def _rules(bundle: PolicyBundle) -> list[tuple[_Rule, dict[str, Any]]]:
    """Each policy with its action scope (in Cedar's JSON form), the rest read already."""
    heads = policy_heads(bundle.cedar)
    est = json.loads(cedarpy.policies_to_json_str("\n".join(h.text for h in heads)))
    info = {p.cedar_id: p for p in bundle.policies}
    out = []
    for cedar_id, policy in est["staticPolicies"].items():
        position = int(cedar_id.removeprefix("policy"))
        agent, that_agent, other_agents = _principal(policy["principal"])
        rest = min(_resource(policy["resource"]), Match.MAYBE if heads[position].conditional else Match.APPLIES)
        rule = _Rule(info[cedar_id].id, Effect(info[cedar_id].effect), position, agent, that_agent,
                     other_agents, rest)
        out.append((rule, policy["action"]))
    return out


def _entity(raw: Any) -> Entity | None:
    if isinstance(raw, dict) and isinstance(raw.get("type"), str) and isinstance(raw.get("id"), str):
        return raw["type"], raw["id"]
    return None


def _entities(scope: dict[str, Any]) -> list[Entity]:
    raw = scope.get("entities") if "entities" in scope else [scope.get("entity")]
    found = [_entity(e) for e in raw] if isinstance(raw, list) else [None]
    if any(e is None for e in found):
        raise ValueError(f"unexpected action scope {scope!r}")
    return [e for e in found if e is not None]


def _principal(scope: dict[str, Any]) -> tuple[str | None, Match, Match]:
    """(agent, match for that agent, match for every other agent) of a principal scope."""
    op = scope.get("op")
    if op == "is":
        if scope.get("entity_type") != PRINCIPAL_TYPE:
            return None, Match.NEVER, Match.NEVER
        if "in" not in scope:
            return None, Match.APPLIES, Match.APPLIES
        op, scope = "in", scope["in"]
    if op == "All":
        return None, Match.APPLIES, Match.APPLIES
    entity = _entity(scope.get("entity"))
    if op not in ("==", "in") or entity is None:
        return None, Match.MAYBE, Match.MAYBE
    agent = entity[1] if entity[0] == PRINCIPAL_TYPE else None
    return agent, Match.APPLIES, Match.NEVER if op == "==" else Match.MAYBE


def _resource(scope: dict[str, Any]) -> Match:
    op = scope.get("op")
    if op == "All":
        return Match.APPLIES
    if op == "is" and scope.get("entity_type") != RESOURCE_TYPE:
        return Match.NEVER
    if op == "is" and "in" not in scope:
        return Match.APPLIES
    entity = _entity(scope.get("entity"))
    if op == "==" and entity is not None and entity[0] != RESOURCE_TYPE:
        return Match.NEVER
    return Match.MAYBE


def _usable_actions(schema: str | dict[str, Any]) -> dict[str, frozenset[Entity]]:
    """Every ``Action`` the schema lets an ``Agent`` take on a ``Resource``, with the
    action groups it is in."""
    handle = cedar_schema(schema)
    text = str(cedarpy.Entities.from_json_str("[]", schema=handle))
    if len(text) > MAX_ACTION_ENTITIES_CHARS:  # every action lists all its groups: a deep
        raise ValueError(  # hierarchy is quadratic, and not worth a server's memory
            f"the schema's action hierarchy is too large to analyse ({len(text)} characters "
            f"of action entities, at most {MAX_ACTION_ENTITIES_CHARS})"
        )
    derived = json.loads(text)
    actions = {
        e["uid"]["id"]: frozenset((p["type"], p["id"]) for p in e["parents"])
        for e in derived
        if e["uid"]["type"] == ACTION_TYPE
    }
    no_policies, no_entities = cedarpy.PolicySet.from_str(""), cedarpy.Entities.from_json_str("[]")
    return {
        name: groups
        for name, groups in actions.items()
        if _offered(name, handle, no_policies, no_entities)
    }


def _offered(name: str, schema: cedarpy.Schema, policies: cedarpy.PolicySet, entities: cedarpy.Entities) -> bool:
    """Whether the schema admits a request by an ``Agent`` for action ``name`` on a
    ``Resource``, whatever its context: Cedar's partial evaluation with the context unknown
    validates the rest of the request (an empty policy set then denies; an invalid request
    is an error). An id that would need escaping in the request (a quote, a backslash, a
    control character) is not probed and counts as admitted: no API request can name it."""
    if any(c in '"\\' or not c.isprintable() for c in name):
        return True
    answer = cedarpy.is_authorized_partial(
        {
            "principal": f'{PRINCIPAL_TYPE}::"outlook"',
            "action": f'{ACTION_TYPE}::"{name}"',
            "resource": f'{RESOURCE_TYPE}::"outlook"',
        },
        policies,
        entities,
        schema=schema,
    )
    return answer.decision is cedarpy.Decision.Deny and not answer.diagnostics.errors
