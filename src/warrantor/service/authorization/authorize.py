"""Authorize an intended action: the pipeline of docs/architecture.md.

    validate -> identify -> idempotency -> detectors -> endpoint -> policy -> grant
             -> run budget -> cumulative budget and rate limit -> seal

Each stage may stop the action; the stage that decided is recorded as ``decision.stage``
along with each stage's duration. ``deny`` stops at once; ``require_approval`` and
``confirm`` let later stages run (one of them may still deny) and the strongest effect
wins: deny > require_approval > confirm > allow.

What the caller gets:

- ``authorized`` (201) with a signed warrant;
- ``pending_approval`` (201) with approvers, quorum and expiry; one single-use approval
  code per approver is stored and mailed;
- ``denied`` (403, code per stage, e.g. ``POLICY_DENIED``) with the signed receipt's id.

The whole outcome (action row, approval request and codes, evidence and its log entry)
is written in one transaction; the response is stored with the action, so a retry with
the same idempotency key replays it byte for byte and a different body under the same key
is ``409 DUPLICATE_REQUEST``.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from warrantor.domain.clock import isoformat, random_token
from warrantor.domain.lifecycle import Status
from warrantor.domain.model import Action, ApprovalCode, ApprovalRequest, Effect, Principal, Role
from warrantor.errors import ConflictError, NotFoundError, ValidationError
from warrantor.evidence.canonical import digest
from warrantor.evidence.commitments import committed_intent
from warrantor.service.approval.approvers import TenantApprovers, requirements_for
from warrantor.service.authorization.intent import Intent
from warrantor.service.authorization.pipeline import (
    Draft,
    FactProvider,
    Facts,
    GuardStop,
    Outcome,
    Stage,
    WriteGuard,
    _Bound,
)
from warrantor.service.authorization.policies import ActivePolicy, Policies
from warrantor.service.authorization.stages import (
    decide,
    detectors_stage,
    endpoint_stage,
    policy_stage,
    shadow_decision,
)
from warrantor.service.context import Deps
from warrantor.service.proof.sealing import Sealed, prepare, record_prepared
from warrantor.service.tenancy import bound_agent, require_role
from warrantor.store import Repo, UniqueViolationError
from warrantor.store.repo import action_values

__all__ = [  # the pipeline's types are re-exported for the extensions that plug into it
    "BUILTIN_STAGES", "Authorizer", "Draft", "FactProvider", "Facts", "GuardStop", "Outcome", "Stage",
    "WriteGuard", "run_stages",
]

T = TypeVar("T")

_DENY_CODES = {
    "policy": "POLICY_DENIED",
    "endpoint": "ENDPOINT_NOT_ALLOWED",
    "detectors": "CONTENT_SIGNATURE_MATCH",
}


@dataclass
class _Prepared:
    tenant_id: str
    intent: Intent
    idempotency_key: str | None
    request_hash: str
    facts: Facts
    people: TenantApprovers | None = None  # read when the request names approvers

    @property
    def parent(self) -> dict[str, Any] | None:
        return self.facts.parent


@dataclass(frozen=True)
class _Sealed:
    """A signed outcome and the job that commits it; answered only once the job committed."""

    job: Callable[[Repo], None]
    outcome: Outcome
    action: Action
    codes: list[ApprovalCode]


# The stages every authorizer runs, in order; extensions add theirs before and after.
BUILTIN_STAGES: tuple[Stage, ...] = (
    _Bound("detectors", detectors_stage),
    _Bound("endpoint", endpoint_stage),
    _Bound("policy", policy_stage),
)


def run_stages(intent: Intent, facts: Facts, stages: list[Stage]) -> Draft:
    """Run ``stages`` in order on ``intent`` (pure CPU: nothing is read or written); a deny
    stops the run. Then the shadow bundle, if any, and the caller's own request to hold.
    ``Authorizer.evaluate`` and ``warrantor policy test`` (the built-in stages alone, with
    no server state) both decide here."""
    draft = Draft()
    for stage in stages:
        started = time.perf_counter_ns()
        outcome = stage.run(draft, intent, facts)
        draft.stages.append(
            {"name": stage.name, "outcome": outcome,
             "duration_us": (time.perf_counter_ns() - started) // 1000}
        )
        if draft.stopped:
            break
    if "shadow" in facts.policies:
        draft.shadow = shadow_decision(intent, facts.policies["shadow"], facts.salt)
    if intent.require_approval:
        draft.hold("request", Effect.REQUIRE_APPROVAL, "REQUESTED_BY_CALLER")
    return draft


def _run_to_end(coroutine: Coroutine[Any, Any, T]) -> T:
    """The result of a coroutine that never suspends, without an event loop."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        result: T = done.value
        return result
    coroutine.close()
    raise RuntimeError("expected a blocking authorization to finish without suspending")


def _take_guard_stop(draft: Draft, stop: GuardStop) -> None:
    """A write guard stopped the action: its outcome replaces the draft's."""
    draft.effect, draft.stage, draft.reason = stop.effect, stop.stage, stop.reason
    draft.halt = stop.details or None
    draft.deny_code = stop.code
    draft.stages.append({"name": stop.stage, "outcome": stop.effect.value, "duration_us": 0})


class Authorizer:
    """The pipeline. Extensions plug in at three points, in the pipeline's stage order:

    - ``providers`` read facts in the read phase (agent registry, grants);
    - ``early_stages`` run before detectors (identify), ``late_stages`` after the policy
      (grant);
    - ``guards`` run inside the write transaction (run budget, cumulative budget and rate
      limit, confirmation nonces).
    """

    def __init__(self, deps: Deps, policies: Policies) -> None:
        self._d = deps
        self._policies = policies
        self.providers: list[FactProvider] = []
        self.early_stages: list[Stage] = []
        self.late_stages: list[Stage] = []
        self.guards: list[WriteGuard] = []

    def authorize(self, principal: Principal, intent: Intent, idempotency_key: str | None) -> Outcome:
        """Decide, seal and commit; blocks the calling thread until the commit.

        The steps are ``_authorize``'s, with a write that blocks: its coroutine never
        suspends, so it is run to its end here without an event loop."""
        return _run_to_end(self._authorize(principal, intent, idempotency_key, self._write_blocking))

    def authorize_async(
        self, principal: Principal, intent: Intent, idempotency_key: str | None
    ) -> Coroutine[Any, Any, Outcome]:
        """``authorize`` for the event loop: the same steps, awaiting the group commit
        instead of holding a thread (reads and CPU work run inline: they take microseconds).
        It returns ``_authorize``'s coroutine itself, so awaiting it adds no await."""
        return self._authorize(principal, intent, idempotency_key, self._d.store.write_async)

    async def _authorize(
        self, principal: Principal, intent: Intent, idempotency_key: str | None,
        write: Callable[[Callable[[Repo], None]], Awaitable[None]],
    ) -> Outcome:
        """The steps of both: read and decide, seal, commit with ``write`` (its one await)."""
        started = self._begin(principal, intent, idempotency_key)
        if isinstance(started, Outcome):
            return started
        prepared, draft = started
        try:
            try:
                sealed = self._seal(principal, prepared, draft, guarded=True)
                await write(sealed.job)
            except GuardStop as stop:  # the guard's outcome replaces the draft's
                _take_guard_stop(draft, stop)
                sealed = self._seal(principal, prepared, draft, guarded=False)
                await write(sealed.job)
        except UniqueViolationError as exc:
            return self._replay_after_race(prepared, exc)
        return self._finish(sealed)

    async def _write_blocking(self, job: Callable[[Repo], None]) -> None:
        """``store.write`` as an awaitable that finishes without suspending."""
        self._d.store.write(job)

    def _begin(
        self, principal: Principal, intent: Intent, idempotency_key: str | None
    ) -> Outcome | tuple[_Prepared, Draft]:
        """The read phase and the evaluation: a replayed outcome, or what to seal."""
        tenant_id = require_role(principal, Role.AGENT, Role.ADMIN)
        intent = self._bind_agent(principal, intent)
        request_hash = intent.digest()  # the body is the intent: its digest identifies the request
        replay, prepared = self._read_phase(tenant_id, intent, idempotency_key, request_hash)
        if replay is not None:
            return replay
        assert prepared is not None
        draft = self.evaluate(prepared.intent, prepared.facts)
        if not intent.instruction_hash:
            draft.warnings.append("instruction_hash is missing: prompt changes cannot be detected")
        return prepared, draft

    def _replay_after_race(self, p: _Prepared, exc: UniqueViolationError) -> Outcome:
        """Another request with the same idempotency key committed first: answer as it did."""
        if p.idempotency_key is None:
            raise exc
        replay, _ = self._read_phase(p.tenant_id, p.intent, p.idempotency_key, p.request_hash)
        if replay is None:
            raise exc
        return replay

    def _finish(self, sealed: _Sealed) -> Outcome:
        self._d.notifier.notify(sealed.action.id)
        self._mail_codes(sealed.action, sealed.codes)
        return sealed.outcome

    def explain(self, tenant_id: str, intent: Intent, bundle_hash: str | None) -> dict[str, Any]:
        """Dry run: every stage and rule that would decide ``intent``; nothing is written."""
        if bundle_hash is not None:
            bundle = self._policies.get(tenant_id, bundle_hash)
            policies = {"enforce": ActivePolicy(self._policies.compiled(bundle), "enforce", self._d.clock.now())}
        else:
            with self._d.store.read() as repo:
                policies = self._policies.active(repo, tenant_id)
        with self._d.store.read() as repo:
            facts = Facts(tenant_id, None, policies)
            for provider in self.providers:
                facts.extra[provider.name] = provider.read(repo, tenant_id, intent, facts)
        draft = self.evaluate(intent, facts)
        would_be = {
            Effect.ALLOW: Status.AUTHORIZED,
            Effect.DENY: Status.DENIED,
        }.get(draft.effect, Status.PENDING_APPROVAL)
        if draft.effect is Effect.CONFIRM and intent.authorization_id:
            would_be = Status.PENDING_CONFIRMATION
        # The request's own digest: an authorization would sign the digest of the committed
        # intent, whose salt is chosen only then (evidence/commitments.py); a dry run has no
        # salt, so its finding and evaluation hashes are plain SHA-256 (policy/engine.py).
        return {"status": would_be.value, "decision": draft.to_dict(), "request_digest": intent.digest()}

    # -- identify and idempotency ------------------------------------------------------
    @staticmethod
    def _bind_agent(principal: Principal, intent: Intent) -> Intent:
        if principal.agent_id is None:
            return intent
        return intent.with_agent(bound_agent(principal, intent.agent_id) or principal.agent_id)

    def _read_phase(
        self, tenant_id: str, intent: Intent, key: str | None, request_hash: str
    ) -> tuple[Outcome | None, _Prepared | None]:
        with self._d.store.read_lazy() as repo:  # no transaction when every fact is cached
            if key is not None:
                existing = repo.action_by_idempotency_key(tenant_id, key)
                if existing is not None:
                    return _replay(existing, request_hash, intent.agent_id), None
            facts = Facts(
                tenant_id,
                _parent_ref(repo, tenant_id, intent.parent_action_id),
                self._policies.active(repo, tenant_id),
                salt=random_token(128),  # the action's commitment salt, chosen before the stages key digests with it
            )
            for provider in self.providers:
                facts.extra[provider.name] = provider.read(repo, tenant_id, intent, facts)
            people = TenantApprovers.load(repo, tenant_id) if intent.approvers else None
        if people is not None and (unknown := people.unknown(intent.approvers or ())):
            raise ValidationError(
                f"approvers: expected approvers known to this tenant (a console user, a group of "
                f"users or an address on the approver directory), got {', '.join(unknown)}",
                code="APPROVER_UNKNOWN", details={"field": "approvers", "unknown": unknown},
            )
        return None, _Prepared(tenant_id, intent, key, request_hash, facts, people)

    # -- the evaluation stages (pure: nothing is written) -------------------------------
    def evaluate(self, intent: Intent, facts: Facts) -> Draft:
        return run_stages(intent, facts, [*self.early_stages, *BUILTIN_STAGES, *self.late_stages])

    _decide = staticmethod(decide)

    # -- seal and write ------------------------------------------------------------------
    def _seal(self, principal: Principal, p: _Prepared, draft: Draft, *, guarded: bool) -> _Sealed:
        """Sign the warrant or receipt and build the one write job that records it all."""
        now = self._d.clock.now()
        action_id = self._d.ids.new("act")
        intent_doc = p.intent.canonical()
        salt = p.facts.salt or random_token(128)
        committed = committed_intent(intent_doc, salt)  # what evidence signs: no erasable value
        intent_digest = digest(committed)
        decision = draft.to_dict()
        sealed: Sealed | None = None
        request: ApprovalRequest | None = None
        codes: list[ApprovalCode] = []
        warrant_expires_at: datetime | None = None
        if draft.effect is Effect.ALLOW:
            status = Status.AUTHORIZED
            warrant_expires_at = now + timedelta(seconds=self._d.limits.warrant_ttl_seconds)
            sealed = self._d.sealer.warrant(
                tenant_id=p.tenant_id, action_id=action_id, intent=committed,
                intent_digest=intent_digest, decision=decision, approvals=[], parent=p.parent,
                issued_at=now, not_after=warrant_expires_at,
            )
        elif draft.effect is Effect.DENY:
            status = Status.DENIED
            sealed = self._d.sealer.receipt(
                tenant_id=p.tenant_id, action_id=action_id, status=status.value,
                intent_digest=intent_digest, decision=decision, approvals=[], parent=p.parent,
                issued_at=now, reason_code=self._deny_code(draft),
            )
        elif (draft.effect is Effect.CONFIRM and p.intent.authorization_id and guarded
              and draft.confirmation is not None):
            # ``confirm`` under an end-user grant waits for the end user: a single-use nonce
            # (stored hashed by the grant area's ConfirmationGuard in this transaction) and
            # an approval request for "end-user" whose expiry the sweeper enforces.
            status = Status.PENDING_CONFIRMATION
            nonce_expires = now + timedelta(seconds=draft.confirmation["nonce_ttl_seconds"])
            draft.confirmation.update(
                confirm_nonce="cnf_" + random_token(160), action_id=action_id, expires_at=nonce_expires
            )
            request = ApprovalRequest(action_id, p.tenant_id, ("end-user",), 1, nonce_expires, now)
        else:
            # ``confirm`` without an end-user grant is held for a human, like require_approval.
            status = Status.PENDING_APPROVAL
            request, codes = self._approval(p, action_id, draft, now)
        body = self._response(action_id, status, decision, draft, sealed, request, now)
        status_code = 201
        if status is Status.DENIED:
            status_code, body = 403, self._denial(action_id, draft, sealed)
        # The digest every warrant and receipt of the action signs, and the salt that lets
        # the caller recompute it from its own request (evidence/commitments.py).
        (body["details"] if status is Status.DENIED else body).update(intent_digest=intent_digest, intent_salt=salt)
        action = Action(
            id=action_id, tenant_id=p.tenant_id, status=status, action_type=p.intent.action_type,
            agent_id=p.intent.agent_id, run_id=p.intent.run_id, parent_action_id=p.intent.parent_action_id,
            intent=intent_doc, intent_digest=intent_digest, decision=decision,
            idempotency_key=p.idempotency_key, request_hash=p.request_hash,
            response_status=status_code, response=body, created_at=now, updated_at=now,
            warrant_id=sealed.evidence_id if sealed and sealed.kind == "warrant" else None,
            warrant_expires_at=warrant_expires_at,
            receipt_id=sealed.evidence_id if sealed and sealed.kind == "receipt" else None,
            api_key_id=principal.key_id, parent=p.parent, committed_intent=committed, details_salt=salt,
        )

        row = action_values(action)
        evidence_rows = prepare([(sealed, p.tenant_id, action_id)], now) if sealed is not None else []

        def job(repo: Repo) -> None:
            if p.idempotency_key and repo.action_by_idempotency_key(p.tenant_id, p.idempotency_key):
                raise UniqueViolationError("idempotency key already used")
            if guarded:
                for guard in self.guards:
                    guard.reserve(repo, principal, action_id, p.intent, draft, now)
            repo.insert_action(row)
            if request is not None:
                repo.insert_approval_request(request)
                repo.insert_approval_codes(codes)
            if evidence_rows:
                record_prepared(repo, evidence_rows, now)
            self._d.events.emit(repo, p.tenant_id, f"action.{status.value}", {
                "action_id": action_id, "status": status.value, "action_type": action.action_type,
                "agent_id": action.agent_id,
                "reason_code": self._deny_code(draft) if status is Status.DENIED else draft.reason})

        return _Sealed(job, Outcome(status_code, body), action, codes)

    def _approval(
        self, p: _Prepared, action_id: str, draft: Draft, now: datetime
    ) -> tuple[ApprovalRequest, list[ApprovalCode]]:
        """The held action's requirements (policy's, plus the request's in addition; never
        clamped) and one personal code for each human who may decide."""
        ttl = draft.approval_ttl_seconds or self._d.limits.default_approval_ttl_seconds
        expires_at = now + timedelta(seconds=ttl)
        requirements = requirements_for(draft.requirements, draft.default_approvers, p.intent.approvers or ())
        request = ApprovalRequest.of(action_id, p.tenant_id, requirements, expires_at, now)
        people = p.people
        if people is None:
            with self._d.store.read() as repo:
                people = TenantApprovers.load(repo, p.tenant_id)
        draft.warnings.extend(people.unreachable(requirements))
        codes = [
            ApprovalCode(new_approval_code(), p.tenant_id, action_id, human, expires_at, None)
            for human in people.everyone(request)
        ]
        return request, codes

    @staticmethod
    def _deny_code(draft: Draft) -> str:
        if draft.deny_code:
            return draft.deny_code
        if draft.stage == "policy":
            return "POLICY_DENIED"
        return draft.reason or _DENY_CODES.get(draft.stage, "POLICY_DENIED")

    def _response(
        self, action_id: str, status: Status, decision: dict[str, Any], draft: Draft,
        sealed: Sealed | None, request: ApprovalRequest | None, now: datetime,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "action_id": action_id,
            "status": status.value,
            "decision": _public_decision(decision),
            "warnings": draft.warnings,
            "created_at": isoformat(now),
        }
        if status is Status.AUTHORIZED and sealed is not None:
            body["warrant"] = sealed.envelope.to_dict()
            body["warrant_id"] = sealed.evidence_id
        if request is not None:
            body["approval"] = {
                "approvers": list(request.approvers),
                "quorum": request.quorum,
                "requirements": [r.to_dict() for r in request.requirements],
                "expires_at": isoformat(request.expires_at),
            }
        if status is Status.PENDING_CONFIRMATION and draft.confirmation is not None:
            body.pop("approval", None)
            body["confirmation"] = {
                "confirm_nonce": draft.confirmation["confirm_nonce"],
                "confirm_prompt_hint": draft.confirmation.get("confirm_prompt_hint"),
                "expires_at": isoformat(draft.confirmation["expires_at"]),
            }
        return body

    def _denial(self, action_id: str, draft: Draft, sealed: Sealed | None) -> dict[str, Any]:
        code = self._deny_code(draft)
        messages = [r["message"] for r in draft.rules if r.get("effect") == "deny" and r.get("message")]
        detail = f"Action denied at stage {draft.stage!r}: {draft.reason}"
        if messages:
            detail += " (" + "; ".join(messages) + ")"
        return {
            "type": f"https://warrantor.dev/problems/{code.lower().replace('_', '-')}",
            "title": "Action denied",
            "status": 403,
            "detail": detail,
            "code": code,
            "details": {
                "action_id": action_id,
                "receipt_id": sealed.evidence_id if sealed else None,
                "stage": draft.stage,
                "reason": draft.reason,
                "rules": draft.rules,
                "findings": draft.findings,
                **({"halt": draft.halt} if draft.halt else {}),
            },
        }

    def _mail_codes(self, action: Action, codes: list[ApprovalCode]) -> None:
        """One personal mail per code. Warrantor's own lines (the link, the code) come first;
        the agent's description follows, quoted and labelled as the agent's words, so text an
        agent writes cannot pose as the approval link."""
        base = self._d.limits.public_url.rstrip("/")
        said = "\n".join("> " + line for line in str(action.intent.get("details", "")).splitlines()) or "> (nothing)"
        for code in codes:
            self._d.mailer.send(
                code.approver,
                f"Approval needed: {action.action_type} by {action.agent_id or 'an agent'}",
                f"An agent asks to run {action.action_type!r}.\n\n"
                f"Action: {action.id}\n"
                f"Review and decide: {base}/approve/{code.code}\n"
                f"Approval code: {code.code} (single use, expires {isoformat(code.expires_at)})\n"
                "This code is personal: it records your decision under your address.\n\n"
                "What the agent says it will do (its own words, not Warrantor's; follow no link in it):\n"
                f"{said}\n",
                tenant_id=action.tenant_id,
            )


def new_approval_code() -> str:
    """``APR-`` + 100 random bits (20 Crockford base32 characters)."""
    return "APR-" + random_token(100).upper()


def _public_decision(decision: dict[str, Any]) -> dict[str, Any]:
    return {k: decision[k] for k in ("effect", "stage", "reason", "rules", "policy", "evaluation_hash")} | {
        "stages": decision["stages"],
        **({"findings": decision["findings"]} if decision["findings"] else {}),
        **({"shadow": decision["shadow"]} if decision["shadow"] else {}),
    }


def _replay(existing: Action, request_hash: str, agent_id: str | None) -> Outcome:
    mine = agent_id is None or existing.agent_id == agent_id
    if existing.erased_at is not None:
        # The stored answer went with the details; nothing to compare the body with either.
        raise ConflictError(
            f"expected an idempotency key of an action whose details are kept; they were erased at "
            f"{isoformat(existing.erased_at)}",
            code="ACTION_ERASED", details={"action_id": existing.id} if mine else {},
        )
    if existing.request_hash != request_hash:
        # The action's id only to its own agent: another agent reusing the key learns nothing.
        raise ConflictError(
            "expected the same request body for a reused idempotency key, got a different one",
            code="DUPLICATE_REQUEST",
            details={"action_id": existing.id} if mine else {},
        )
    return Outcome(existing.response_status, existing.response)


def _parent_ref(repo: Repo, tenant_id: str, parent_id: str | None) -> dict[str, Any] | None:
    if parent_id is None:
        return None
    parent = repo.get_action(tenant_id, parent_id)
    if parent is None:
        raise NotFoundError(f"parent action {parent_id!r} does not exist", code="NOT_FOUND")
    # The parent's newest warrant or receipt (legal holds and cosignatures say nothing about
    # what the parent was allowed to do).
    evidence = [e for e in repo.evidence_for_action(tenant_id, parent_id) if e.kind in ("warrant", "receipt")]
    return {
        "action_id": parent.id,
        "intent_digest": parent.intent_digest,
        "evidence_digest": evidence[-1].envelope_digest if evidence else None,
    }
