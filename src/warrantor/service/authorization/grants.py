"""End-user grants, ``/v1/check`` and end-user confirmations (seed: allowly-confirmations).

A grant (``auth_...``) is an end user's delegation to one agent: scopes, each ``allow``
or ``confirm``, each with resource patterns, and an optional expiry. Rules:

- **Check** ``(authorization_id, scope, resource)``: ``deny`` when the grant is unknown
  (other tenants' grants are unknown), revoked or expired, the scope is not granted, or no
  resource pattern matches; ``allow`` for an ``allow`` scope; for a ``confirm`` scope,
  ``allow`` while a confirmation of exactly that triple is live, else ``confirm`` with a
  fresh nonce. An agent key must be bound to the grant's agent (403 otherwise).
- **Nonces** are ``cnf_`` + 160 random bits, stored as sha256 only, live 5 minutes and are
  single use: consumed by a conditional UPDATE, so of any number of concurrent callers
  exactly one wins. Every invalid nonce (malformed, unknown, another tenant's, expired,
  consumed, of a revoked grant) gets the same 410 ``CONFIRMATION_GONE`` so nonces cannot
  be enumerated. Only ``app``/``admin`` keys may confirm: an agent never confirms itself.
- **Resource patterns** are globs: ``*`` matches any run of characters (``/`` and ``:``
  included), ``?`` exactly one, everything else (``[`` too) is literal; case-sensitive.
  Matching is done here without regular expressions, in time linear in the pattern count
  times the resource length (``match_resource``).
- **Authorize** with ``authorization_id``: ``GrantFacts`` reads the grant and any live
  confirmation, the late stage ``grant`` denies (``GRANT_DENIED``) or asks for
  confirmation (``USER_CONFIRMATION_REQUIRED``), and ``ConfirmationGuard`` writes the
  nonce of a ``pending_confirmation`` action inside the authorization's transaction. The
  policy's own ``confirm`` effect with a grant is confirmed by the end user too, always
  with a fresh nonce (a live confirmation only satisfies the grant's ``confirm``).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from warrantor.domain.clock import isoformat, parse_time, random_token
from warrantor.domain.lifecycle import Event, Status
from warrantor.domain.model import Approval, Effect, Principal, Role
from warrantor.errors import GoneError, NotFoundError, PermissionDeniedError, ValidationError
from warrantor.service.authorization.authorize import Authorizer, Draft, Facts
from warrantor.service.authorization.intent import Intent
from warrantor.service.context import Deps
from warrantor.service.execution.transitions import apply
from warrantor.service.tenancy import require_role
from warrantor.store import Repo
from warrantor.store import repo_grants as rg
from warrantor.store.repo_grants import Grant, Nonce, ScopeGrant

NONCE_TTL_SECONDS = 300
DEFAULT_CONFIRM_TTL_SECONDS = 60
MAX_CONFIRM_TTL_SECONDS = 300
MAX_SCOPES = 64
MAX_PATTERNS = 64
MAX_PATTERN_LENGTH = 512
_NONCE_RE = re.compile(r"cnf_[0-9a-z]{32}")
_SCOPE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:/\-]{0,127}")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


# -- glob matching (no regular expressions built from user input) -----------------------
def match_resource(pattern: str, resource: str) -> bool:
    """Glob match: ``*`` any run of characters, ``?`` one character, all else literal.

    The pattern is split at ``*`` into fixed-length segments; the first must be a prefix,
    the last a suffix, and each middle one is found leftmost in order (which is optimal
    for fixed-length segments), so there is no backtracking.
    """
    parts = pattern.split("*")
    if len(parts) == 1:
        return len(pattern) == len(resource) and _segment_at(pattern, resource, 0)
    first, *middle, last = parts
    end = len(resource) - len(last)
    if end < len(first) or not _segment_at(first, resource, 0) or not _segment_at(last, resource, end):
        return False
    pos = len(first)
    for segment in middle:
        found = _find_segment(segment, resource, pos, end)
        if found < 0:
            return False
        pos = found + len(segment)
    return True


def _segment_at(segment: str, text: str, at: int) -> bool:
    if at < 0 or at + len(segment) > len(text):
        return False
    return all(c == "?" or c == text[at + i] for i, c in enumerate(segment))


def _find_segment(segment: str, text: str, start: int, end: int) -> int:
    if "?" not in segment:
        return text.find(segment, start, end)
    for at in range(start, end - len(segment) + 1):
        if _segment_at(segment, text, at):
            return at
    return -1


# -- the decision (pure) ----------------------------------------------------------------
@dataclass(frozen=True)
class Verdict:
    decision: str  # allow | deny | confirm
    reason: str
    scope: ScopeGrant | None = None
    confirmed_until: datetime | None = None


def grant_state(grant: Grant, now: datetime) -> str:
    if grant.revoked_at is not None:
        return "revoked"
    if grant.expires_at is not None and grant.expires_at <= now:
        return "expired"
    return "active"


def decide(  # noqa: PLR0911 - one return per rule, in the order docs/grants.md lists them
    grant: Grant | None, scope: str, resource: str, now: datetime,
    confirmed_until: datetime | None, agent_id: str | None = None,
) -> Verdict:
    """What the grant says about ``(scope, resource)`` at ``now``; fails closed."""
    if grant is None:
        return Verdict("deny", "GRANT_NOT_FOUND")
    state = grant_state(grant, now)
    if state != "active":
        return Verdict("deny", f"GRANT_{state.upper()}")
    if agent_id is not None and agent_id != grant.agent_id:
        return Verdict("deny", "GRANT_AGENT_MISMATCH")
    granted = grant.scope(scope)
    if granted is None:
        return Verdict("deny", "SCOPE_NOT_GRANTED")
    if not any(match_resource(p, resource) for p in granted.resources):
        return Verdict("deny", "RESOURCE_NOT_GRANTED", granted)
    if granted.decision == "allow":
        return Verdict("allow", "SCOPE_ALLOWED", granted)
    if confirmed_until is not None and confirmed_until > now:
        return Verdict("allow", "USER_CONFIRMED", granted, confirmed_until)
    return Verdict("confirm", "USER_CONFIRMATION_REQUIRED", granted)


def hash_nonce(nonce: str) -> str:
    return hashlib.sha256(nonce.encode()).hexdigest()


def new_nonce() -> str:
    """``cnf_`` + 160 random bits (32 Crockford base32 characters)."""
    return "cnf_" + random_token(160)


def confirmation_gone() -> GoneError:
    """The one answer for every invalid nonce: same code, same message, same status."""
    return GoneError(
        "expected a live confirmation nonce, got one that is expired, already used or unknown",
        code="CONFIRMATION_GONE",
    )


# -- validation of a new grant ----------------------------------------------------------
def parse_scopes(scopes: list[dict[str, Any]]) -> tuple[ScopeGrant, ...]:
    if not 1 <= len(scopes) <= MAX_SCOPES:
        raise ValidationError(f"expected 1 to {MAX_SCOPES} scopes, got {len(scopes)}", code="INVALID_SCOPES")
    out: list[ScopeGrant] = []
    for item in scopes:
        name = item["scope"]
        if not _SCOPE_RE.fullmatch(name):
            raise ValidationError(
                f"expected a scope name of letters, digits and _.:/- (at most 128), got {name!r}",
                code="INVALID_SCOPE",
            )
        if any(s.scope == name for s in out):
            raise ValidationError(f"expected each scope once, got {name!r} twice", code="DUPLICATE_SCOPE")
        resources = tuple(item["resources"])
        if not 1 <= len(resources) <= MAX_PATTERNS:
            raise ValidationError(
                f"expected 1 to {MAX_PATTERNS} resource patterns for {name!r}, got {len(resources)}",
                code="INVALID_RESOURCE_PATTERN",
            )
        for pattern in resources:
            if not pattern or len(pattern) > MAX_PATTERN_LENGTH or _CONTROL_RE.search(pattern):
                raise ValidationError(
                    f"expected a non-empty resource pattern of at most {MAX_PATTERN_LENGTH} printable "
                    f"characters, got {pattern[:80]!r}",
                    code="INVALID_RESOURCE_PATTERN",
                )
        out.append(ScopeGrant(name, item["decision"], resources, item.get("confirm_prompt_hint")))
    return tuple(out)


def parse_expiry(text: str | None, now: datetime) -> datetime | None:
    if text is None:
        return None
    try:
        when = parse_time(text)
    except ValueError as exc:
        raise ValidationError(
            f"expected expires_at as an RFC 3339 timestamp with a timezone, got {text!r}",
            code="INVALID_EXPIRES_AT",
        ) from exc
    if when <= now:
        raise ValidationError(
            f"expected expires_at in the future, got {isoformat(when)}", code="INVALID_EXPIRES_AT"
        )
    return when


def grant_view(grant: Grant, now: datetime) -> dict[str, Any]:
    return {
        "authorization_id": grant.id,
        "agent_id": grant.agent_id,
        "subject": grant.subject,
        "scopes": [s.to_dict() for s in grant.scopes],
        "requires_confirm_for": [s.scope for s in grant.scopes if s.decision == "confirm"],
        "status": grant_state(grant, now),
        "expires_at": isoformat(grant.expires_at) if grant.expires_at else None,
        "created_at": isoformat(grant.created_at),
        "revoked_at": isoformat(grant.revoked_at) if grant.revoked_at else None,
    }


# -- the use cases ----------------------------------------------------------------------
class Grants:
    def __init__(self, deps: Deps) -> None:
        self._d = deps

    def create(self, principal: Principal, agent_id: str, subject: str, scopes: list[dict[str, Any]],
               expires_at: str | None) -> dict[str, Any]:
        tenant_id = require_role(principal, Role.APP, Role.ADMIN)
        now = self._d.clock.now()
        grant = Grant(
            self._d.ids.new("auth"), tenant_id, agent_id, subject, parse_scopes(scopes),
            parse_expiry(expires_at, now), now, None, principal.key_id,
        )
        self._d.store.write(lambda repo: rg.insert_grant(repo, grant))
        return grant_view(grant, now)

    def get(self, principal: Principal, grant_id: str) -> dict[str, Any]:
        tenant_id = require_role(principal, Role.APP, Role.ADMIN, Role.AUDITOR)
        with self._d.store.read() as repo:
            grant = rg.get_grant(repo, tenant_id, grant_id)
        if grant is None:
            raise NotFoundError(f"no grant {grant_id!r}", code="GRANT_NOT_FOUND")
        return grant_view(grant, self._d.clock.now())

    def revoke(self, principal: Principal, grant_id: str) -> dict[str, Any]:
        """Revoke (idempotent); pending nonces and live confirmations end with the grant."""
        tenant_id = require_role(principal, Role.APP, Role.ADMIN)
        now = self._d.clock.now()

        def job(repo: Repo) -> Grant | None:
            if rg.get_grant(repo, tenant_id, grant_id) is None:
                return None
            rg.revoke_grant(repo, tenant_id, grant_id, now)
            return rg.get_grant(repo, tenant_id, grant_id)

        grant = self._d.store.write(job)
        if grant is None:
            raise NotFoundError(f"no grant {grant_id!r}", code="GRANT_NOT_FOUND")
        return grant_view(grant, now)

    def check(self, principal: Principal, authorization_id: str, scope: str, resource: str) -> dict[str, Any]:
        tenant_id = require_role(principal, Role.AGENT, Role.APP, Role.ADMIN)
        now = self._d.clock.now()
        with self._d.store.read() as repo:
            grant = rg.get_grant(repo, tenant_id, authorization_id)
            until = rg.confirmed_until(repo, tenant_id, authorization_id, scope, resource, now) if grant else None
        if (grant is not None and principal.role is not None and principal.role.acts_as_agent
                and principal.agent_id != grant.agent_id):
            raise PermissionDeniedError(
                f"expected a key bound to agent {grant.agent_id!r}, got {principal.agent_id!r}",
                code="GRANT_AGENT_MISMATCH",
            )
        verdict = decide(grant, scope, resource, now, until)
        out: dict[str, Any] = {"decision": verdict.decision, "authorization_id": authorization_id,
                               "scope": scope, "resource": resource, "reason": verdict.reason}
        if verdict.confirmed_until is not None:
            out["expires_at"] = isoformat(verdict.confirmed_until)
        if verdict.decision == "confirm":
            assert verdict.scope is not None
            nonce = new_nonce()
            row = Nonce(hash_nonce(nonce), tenant_id, authorization_id, scope, resource,
                        verdict.scope.confirm_prompt_hint, None, now, now + timedelta(seconds=NONCE_TTL_SECONDS))
            self._d.store.write(lambda repo: rg.insert_nonce(repo, row))
            out.update(confirm_nonce=nonce, confirm_prompt_hint=verdict.scope.confirm_prompt_hint,
                       expires_at=isoformat(row.expires_at))
        return out

    def confirm(self, principal: Principal, nonce: str, approved: bool, ttl_seconds: int) -> dict[str, Any]:
        """Resolve a confirmation nonce. App and admin keys relay the end user's answer from
        the app's own page (the strong path). A gateway key may relay an answer it collected
        through an MCP form elicitation, which proves only that *someone* at the agent's
        client answered ("the user was present"): it is accepted only for an action of the
        gateway's own agent, recorded ``via: "mcp-elicitation"``, and never leaves a live
        confirmation of the (grant, scope, resource) behind for later calls."""
        tenant_id = require_role(principal, Role.APP, Role.ADMIN, Role.GATEWAY)
        presence_only = principal.role is Role.GATEWAY
        if not 1 <= ttl_seconds <= MAX_CONFIRM_TTL_SECONDS:
            raise ValidationError(
                f"expected ttl_seconds between 1 and {MAX_CONFIRM_TTL_SECONDS}, got {ttl_seconds}",
                code="INVALID_TTL",
            )
        if not _NONCE_RE.fullmatch(nonce):
            raise confirmation_gone()
        now = self._d.clock.now()
        nonce_hash = hash_nonce(nonce)
        result = self._d.store.write(
            lambda repo: self._resolve(repo, tenant_id, nonce_hash, approved, ttl_seconds, now,
                                       presence_of=principal if presence_only else None)
        )
        if result.get("action_id"):
            self._d.notifier.notify(result["action_id"])
        return result

    def _resolve(self, repo: Repo, tenant_id: str, nonce_hash: str, approved: bool, ttl: int,
                 now: datetime, presence_of: Principal | None = None) -> dict[str, Any]:
        found = rg.get_nonce(repo, tenant_id, nonce_hash)
        if found is None or found.consumed_at is not None or found.expires_at <= now:
            raise confirmation_gone()
        grant = rg.get_grant(repo, tenant_id, found.authorization_id)
        if grant is None or grant_state(grant, now) != "active":
            raise confirmation_gone()
        action = repo.get_action(tenant_id, found.action_id, for_update=True) if found.action_id else None
        if found.action_id and (action is None or action.status is not Status.PENDING_CONFIRMATION):
            raise confirmation_gone()
        if presence_of is not None and (action is None or action.agent_id != presence_of.agent_id):
            # A gateway relays presence for its own agent's held action only; anything else
            # looks exactly like an unknown nonce.
            raise confirmation_gone()
        decision = "approved" if approved else "denied_by_user"
        if not rg.consume_nonce(repo, tenant_id, nonce_hash, decision, now):
            raise confirmation_gone()
        out: dict[str, Any] = {"decision": decision}
        if approved and presence_of is None:
            until = now + timedelta(seconds=ttl)
            if grant.expires_at is not None:
                until = min(until, grant.expires_at)
            rg.insert_confirmed_scope(repo, self._d.ids.new("cnfs"), found, now, until)
            out.update(authorization_id=grant.id, scope=found.scope, resource=found.resource,
                       expires_at=isoformat(until))
        if action is not None:
            via, channel = ("confirmation", "end-user confirmation nonce, relayed by an app key")
            if presence_of is not None:
                via, channel = ("mcp-elicitation", f"presence only: an answer to an MCP form elicitation, "
                                                   f"relayed by gateway key {presence_of.key_id}")
            repo.insert_approval(Approval(
                self._d.ids.new("apv"), tenant_id, action.id, f"end-user:{grant.subject}",
                "approve" if approved else "deny", None, via, now, channel,
            ))
            event = Event.CONFIRM if approved else Event.DENY_BY_USER
            applied = apply(self._d, repo, action, event, now,
                            reason_code=None if approved else "DENIED_BY_USER")
            out.update(action_id=action.id, status=applied.status.value)
        return out


# -- the authorizer's extension points --------------------------------------------------
@dataclass(frozen=True)
class GrantFact:
    grant: Grant | None
    confirmed_until: datetime | None
    now: datetime


class GrantFacts:
    """FactProvider: the grant named by the intent and any live confirmation."""

    name = "grant"

    def __init__(self, deps: Deps) -> None:
        self._d = deps

    def read(self, repo: Repo, tenant_id: str, intent: Intent, facts: Facts) -> GrantFact | None:
        if intent.authorization_id is None:
            return None
        if not intent.scope or intent.resource is None:
            raise ValidationError(
                "expected scope and resource with authorization_id, got "
                f"scope={intent.scope!r}, resource={intent.resource!r}",
                code="GRANT_SCOPE_REQUIRED",
            )
        now = self._d.clock.now()
        grant = rg.get_grant(repo, tenant_id, intent.authorization_id)
        until = (rg.confirmed_until(repo, tenant_id, grant.id, intent.scope, intent.resource, now)
                 if grant else None)
        return GrantFact(grant, until, now)


class GrantStage:
    """Late stage ``grant``: combines the end user's grant with the policy's decision."""

    name = "grant"

    def run(self, draft: Draft, intent: Intent, facts: Facts) -> str:
        if intent.authorization_id is None:
            return "skipped"
        fact = facts.extra.get("grant")
        if not isinstance(fact, GrantFact):  # the provider did not run: fail closed
            draft.hold("grant", Effect.DENY, "GRANT_DENIED")
            return "deny:GRANT_NOT_FOUND"
        verdict = decide(fact.grant, intent.scope or "", intent.resource or "", fact.now,
                         fact.confirmed_until, agent_id=intent.agent_id or "")
        if verdict.decision == "deny":
            draft.hold("grant", Effect.DENY, "GRANT_DENIED")
            return f"deny:{verdict.reason}"
        assert verdict.scope is not None
        draft.confirmation = {"confirm_prompt_hint": verdict.scope.confirm_prompt_hint,
                              "nonce_ttl_seconds": NONCE_TTL_SECONDS}
        if verdict.decision == "confirm":
            draft.hold("grant", Effect.CONFIRM, "USER_CONFIRMATION_REQUIRED")
        return verdict.decision if verdict.reason != "USER_CONFIRMED" else "allow:USER_CONFIRMED"


class ConfirmationGuard:
    """WriteGuard: stores the nonce of a ``pending_confirmation`` action in its transaction.

    ``Authorizer._seal_and_write`` puts the nonce, its expiry and the action id in
    ``draft.confirmation`` when it decides ``pending_confirmation``.
    """

    name = "confirmation"

    def reserve(self, repo: Repo, principal: Principal, action_id: str, intent: Intent,
                draft: Draft, now: datetime) -> None:
        c = draft.confirmation
        if not c or c.get("action_id") != action_id or not c.get("confirm_nonce"):
            return
        assert intent.authorization_id and intent.scope and intent.resource is not None
        rg.insert_nonce(repo, Nonce(
            hash_nonce(c["confirm_nonce"]), str(principal.tenant_id), intent.authorization_id, intent.scope,
            intent.resource, c.get("confirm_prompt_hint"), action_id, now, c["expires_at"],
        ))


def install(deps: Deps, authorizer: Authorizer) -> Grants:
    """Register the grant provider, stage and guard on ``authorizer``; return the service."""
    authorizer.providers.append(GrantFacts(deps))
    authorizer.late_stages.append(GrantStage())
    authorizer.guards.append(ConfirmationGuard())
    return Grants(deps)
