"""Confirming an execution by presenting the warrant itself (``POST /v1/confirm-execution``).

The caller hands back the DSSE warrant it was given and says what actually ran
(``executed_action``: type, payload, executed_at, executed_by). The rules:

1. The warrant must verify under a published signing key, valid when it was issued, and be
   a warrant (predicate ``urn:warrantor:predicate:warrant:v1``) issued to the caller's
   tenant and recorded by this deployment; otherwise 422 ``INTEGRITY_INVALID_ATTESTATION``
   (a foreign tenant's warrant is refused the same way, so nothing leaks).
2. Match: the action type equals the intent's, the payload equals the intent's payload as
   canonical JSON (RFC 8785), and ``executed_at`` lies in
   ``[issued_at, min(issued_at + time_window_seconds, not_after)]``.
3. ``integrity_hash = sha256(JCS({"warrant_digest": <sha256 of the canonical warrant>,
   "executed_action": <the executed action as given>}))``: deterministic, so anyone with the
   warrant and the report recomputes it.
4. A warrant is confirmed once: a UNIQUE constraint on the warrant digest makes the second
   confirmation, even a concurrent one from another process, 409
   ``INTEGRITY_ALREADY_CONFIRMED``.
5. A signed receipt (status ``confirmed``, or ``diverged`` when anything did not match)
   carries the integrity hash and the match, and goes into the transparency log.

Relation to notarize: confirmation is independent of the action lifecycle. It does not
move the action (``POST /v1/actions/{id}/notarize`` does that, with its own receipt); it
proves, from the warrant alone, whether what ran is what was authorized. A deployment may
use either or both; both receipts commit to the same intent digest.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from warrantor.domain.clock import isoformat, parse_time
from warrantor.domain.model import Principal, Role
from warrantor.errors import ConflictError, EvidenceError, PermissionDeniedError
from warrantor.evidence.canonical import canonicalize, digest, sha256_hex
from warrantor.evidence.dsse import Envelope, verify_envelope
from warrantor.evidence.statement import WARRANT_V1
from warrantor.service.context import Deps
from warrantor.service.sealing import record
from warrantor.service.tenancy import require_role
from warrantor.store import Repo, UniqueViolationError
from warrantor.store import repo_evidence as rq

DEFAULT_WINDOW_SECONDS = 300
MAX_WINDOW_SECONDS = 86_400


def _invalid(message: str) -> EvidenceError:
    return EvidenceError(message, code="INTEGRITY_INVALID_ATTESTATION", status=422)


def integrity_hash(warrant_digest: str, executed_action: dict[str, Any]) -> str:
    """sha256 over JCS of the warrant digest and the executed action (rule 3)."""
    return digest({"warrant_digest": warrant_digest, "executed_action": executed_action})


def match_details(predicate: dict[str, Any], executed: dict[str, Any], window_seconds: int) -> dict[str, Any]:
    """Rule 2: compare the executed action with the warrant's intent."""
    intent = predicate["intent"]
    issued_at = parse_time(predicate["issued_at"])
    end = min(issued_at + timedelta(seconds=window_seconds), parse_time(predicate["not_after"]))
    executed_at = parse_time(executed["executed_at"])
    return {
        "action_type_match": executed["type"] == intent.get("action_type"),
        "payload_consistent": canonicalize(executed["payload"]) == canonicalize(intent.get("payload", {})),
        "within_time_window": issued_at <= executed_at <= end,
        "time_window_seconds": window_seconds,
    }


class ExecutionConfirmer:
    def __init__(self, deps: Deps) -> None:
        self._d = deps

    def confirm(self, principal: Principal, warrant: dict[str, Any], executed: dict[str, Any],
                window_seconds: int = DEFAULT_WINDOW_SECONDS) -> dict[str, Any]:
        tenant_id = require_role(principal, Role.AGENT, Role.ADMIN)
        envelope, predicate = self._open(warrant, tenant_id)
        if principal.agent_id and predicate["intent"].get("agent_id") != principal.agent_id:
            raise PermissionDeniedError(
                f"expected a warrant for agent {principal.agent_id!r} (bound to this key), "
                f"got one for {predicate['intent'].get('agent_id')!r}", code="AGENT_MISMATCH",
            )
        try:
            parse_time(executed["executed_at"])
        except ValueError as exc:
            raise EvidenceError(f"executed_action.executed_at: {exc}", code="VALIDATION_ERROR", status=422) from exc
        warrant_digest = sha256_hex(envelope.canonical_bytes())
        details = match_details(predicate, executed, window_seconds)
        matched = all(details[k] for k in ("action_type_match", "payload_consistent", "within_time_window"))
        return self._record(tenant_id, predicate, warrant_digest, executed, details, matched)

    def _open(self, warrant: dict[str, Any], tenant_id: str) -> tuple[Envelope, dict[str, Any]]:
        """Rule 1: a verified warrant of this tenant, recorded here; else 422."""
        try:
            envelope = Envelope.from_dict(warrant)
        except ValueError as exc:
            raise _invalid(f"expected a DSSE warrant envelope: {exc}") from exc
        keys = [k.verify_key() for k in self._d.keyring.published()]
        key = verify_envelope(envelope, keys)
        if key is None:
            raise _invalid("the warrant's signature does not verify under any published signing key")
        try:
            statement = envelope.statement()
            predicate = statement["predicate"]
            issued_at = parse_time(predicate["issued_at"])
            parse_time(predicate["not_after"])
            intent = predicate["intent"]
        except (ValueError, TypeError, KeyError) as exc:
            raise _invalid(f"expected a warrant statement with issued_at, not_after and intent: {exc}") from exc
        if statement.get("predicateType") != WARRANT_V1 or not isinstance(intent, dict):
            raise _invalid(f"expected a warrant ({WARRANT_V1}), got {statement.get('predicateType')!r}")
        if not key.valid_at(issued_at):
            raise _invalid("the warrant was issued outside its signing key's validity")
        if predicate.get("tenant_id") != tenant_id or not self._recorded(tenant_id, predicate):
            raise _invalid("expected a warrant issued to this tenant by this deployment")
        return envelope, predicate

    def _recorded(self, tenant_id: str, predicate: dict[str, Any]) -> bool:
        warrant_id = predicate.get("warrant_id")
        if not isinstance(warrant_id, str):
            return False
        with self._d.store.read() as repo:
            ev = repo.get_evidence(tenant_id, warrant_id)
        return ev is not None and ev.kind == "warrant"

    def _record(self, tenant_id: str, predicate: dict[str, Any], warrant_digest: str,
                executed: dict[str, Any], details: dict[str, Any], matched: bool) -> dict[str, Any]:
        now = self._d.clock.now()
        execution_id = self._d.ids.new("exec")
        ihash = integrity_hash(warrant_digest, executed)
        intent = predicate["intent"]
        receipt = self._d.sealer.receipt(
            tenant_id=tenant_id, action_id=predicate["action_id"], status="confirmed" if matched else "diverged",
            intent_digest=digest(intent), decision=predicate.get("decision") or {}, approvals=[],
            parent=predicate.get("parent"), issued_at=now, warrant_digest=warrant_digest,
            execution=_execution_view(executed), match=details,
            reason_code=None if matched else "EXECUTION_DIVERGED",
            extra={"evidence_grade": "confirmed", "execution_id": execution_id, "integrity_hash": ihash},
        )
        confirmation = rq.Confirmation(
            execution_id, tenant_id, warrant_digest, predicate["warrant_id"], predicate["action_id"],
            receipt.evidence_id, ihash, matched, now,
        )

        def job(repo: Repo) -> None:
            if rq.confirmation_for(repo, warrant_digest) is not None:
                raise _already()
            rq.insert_confirmation(repo, confirmation)
            record(repo, [(receipt, tenant_id, predicate["action_id"])], now)

        try:
            self._d.store.write(job)
        except UniqueViolationError as exc:
            raise _already() from exc
        return {
            "execution_id": execution_id,
            "authorization_id": predicate["warrant_id"],
            "action_id": predicate["action_id"],
            "integrity_hash": ihash,
            "authorized": _authorized_view(predicate),
            "executed": executed,
            "match": matched,
            "match_details": details,
            "receipt": {"receipt_id": receipt.evidence_id, "envelope": receipt.envelope.to_dict()},
            "confirmed_at": isoformat(now),
            "verified": True,
        }


def _already() -> ConflictError:
    return ConflictError("this warrant's execution was confirmed already", code="INTEGRITY_ALREADY_CONFIRMED")


def _authorized_view(predicate: dict[str, Any]) -> dict[str, Any]:
    decision = predicate.get("decision") or {}
    intent = predicate["intent"]
    return {
        "action_type": intent.get("action_type"),
        "intent_digest": digest(intent),
        "effect": decision.get("effect"),
        "reason": decision.get("reason"),
        "policy": decision.get("policy"),
        "issued_at": predicate["issued_at"],
        "not_after": predicate["not_after"],
    }


def _execution_view(executed: dict[str, Any]) -> dict[str, Any]:
    """What the receipt keeps: the payload's digest, not the payload (retention can erase it)."""
    return {
        "action_type": executed["type"],
        "payload_sha256": digest(executed["payload"]),
        "executed_at": executed["executed_at"],
        "executed_by": executed["executed_by"],
    }
