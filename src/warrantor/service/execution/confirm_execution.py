"""Confirming an execution by presenting the warrant itself (``POST /v1/confirm-execution``).

The caller hands back the DSSE warrant it was given and says what actually ran
(``executed_action``: type, payload, executed_at, executed_by). The rules:

1. The warrant must verify under a trusted signing key (the key ring's), valid when it was
   issued, and be a warrant (predicate ``urn:warrantor:predicate:warrant:v1``) issued to
   the caller's tenant and recorded by this deployment with this very statement; otherwise
   422 ``INTEGRITY_INVALID_ATTESTATION`` (a foreign tenant's warrant is refused the same
   way, so nothing leaks).
2. Every signature on the envelope must verify, not just one: a signature that does not
   verify under a trusted key (junk, empty, an unknown key's) is 422
   ``INTEGRITY_UNVERIFIED_SIGNATURE`` and a repeated one (same key id or same bytes) is 422
   ``INTEGRITY_DUPLICATE_SIGNATURE``; both name the field (``warrant.signatures[i]``).
3. Match: the action type equals the intent's, the payload is the one the warrant's intent
   commits to (its salted digest with the action's salt equals ``commitments.payload``,
   i.e. equal canonical JSON, RFC 8785; ``evidence/commitments.py``), and ``executed_at`` lies in
   ``[issued_at - skew, min(issued_at + time_window_seconds, not_after) + skew]`` where the
   skew is ``WARRANTOR_CLOCK_SKEW_SECONDS`` (``match_details.clock_skew_seconds``).
4. ``integrity_hash = sha256(JCS({"warrant_digest": <sha256 of the canonical warrant as
   issued>, "executed_action": <the executed action as given>}))``: deterministic, so anyone
   with the warrant and the report recomputes it.
5. A warrant is confirmed once. The key is the signed statement (sha256 of the DSSE
   payload), never the envelope bytes, so re-wrapping the same warrant is still the same
   warrant; a UNIQUE constraint on it makes the second confirmation, even a concurrent one
   from another process, 409 ``INTEGRITY_ALREADY_CONFIRMED``.
6. A warrant whose action has ended (any terminal state, or a warrant lapsed beyond the
   notarization grace that the expiry sweep has not reached yet) is 409
   ``ACTION_ALREADY_ENDED`` with the action's ``status`` in ``details``: evidence never says
   "confirmed" after it said "expired", "denied" or "notarized". The action row is locked
   while this is checked, so a concurrent notarize cannot slip between.
7. A signed receipt (status ``confirmed``, or ``diverged`` when anything did not match)
   carries the integrity hash and the match, and goes into the transparency log.

Relation to notarize: confirmation is independent of the action lifecycle. It does not
move the action (``POST /v1/actions/{id}/notarize`` does that, with its own receipt); it
proves, from the warrant alone, whether what ran is what was authorized. A deployment may
use either or both; both receipts commit to the same intent digest.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from warrantor.domain.clock import isoformat, parse_time, random_token
from warrantor.domain.lifecycle import Status, is_terminal
from warrantor.domain.model import Action, Principal, Role
from warrantor.errors import ConflictError, EvidenceError, PermissionDeniedError
from warrantor.evidence.canonical import canonicalize, digest, sha256_hex
from warrantor.evidence.commitments import COMMITMENTS, commit
from warrantor.evidence.dsse import Envelope, pae
from warrantor.evidence.keys import VerifyKey
from warrantor.evidence.statement import WARRANT_V1
from warrantor.service.context import Deps
from warrantor.service.execution.notarize import within_window
from warrantor.service.proof.sealing import record
from warrantor.service.tenancy import require_role
from warrantor.store import Repo, UniqueViolationError
from warrantor.store import repo_evidence as rq

DEFAULT_WINDOW_SECONDS = 300
MAX_WINDOW_SECONDS = 86_400


def _invalid(message: str) -> EvidenceError:
    return EvidenceError(message, code="INTEGRITY_INVALID_ATTESTATION", status=422)


def integrity_hash(warrant_digest: str, executed_action: dict[str, Any]) -> str:
    """sha256 over JCS of the warrant digest and the executed action (rule 4)."""
    return digest({"warrant_digest": warrant_digest, "executed_action": executed_action})


def _signature_error(code: str, index: int, message: str) -> EvidenceError:
    field = f"warrant.signatures[{index}]"
    return EvidenceError(f"{field}: {message}", code=code, status=422, details={"field": field})


def verified_keys(envelope: Envelope, keys: list[VerifyKey]) -> list[VerifyKey]:
    """Rules 1 and 2: the keys behind every signature, each of which must verify.

    None verifying is an invalid attestation; a repeated or an unverifiable extra
    signature is refused by name, so an envelope is accepted only as its signers made it.
    """
    by_id = {k.keyid: k for k in keys}
    message = pae(envelope.payload_type, envelope.payload)
    checked = [(s, by_id.get(s.keyid)) for s in envelope.signatures]
    verifies = [key is not None and key.verify(s.sig, message) for s, key in checked]
    if not any(verifies):
        raise _invalid("the warrant's signature does not verify under any trusted signing key")
    seen_ids: set[str] = set()
    seen_sigs: set[bytes] = set()
    for i, ((s, _key), ok) in enumerate(zip(checked, verifies, strict=True)):
        if not ok:
            raise _signature_error("INTEGRITY_UNVERIFIED_SIGNATURE", i,
                                   f"expected a signature by a trusted key, got one that does not verify "
                                   f"(keyid {s.keyid!r})")
        if s.keyid in seen_ids or s.sig in seen_sigs:
            raise _signature_error("INTEGRITY_DUPLICATE_SIGNATURE", i,
                                   f"expected each signature once, got a repeat (keyid {s.keyid!r})")
        seen_ids.add(s.keyid)
        seen_sigs.add(s.sig)
    return [key for _s, key in checked if key is not None]


def payload_consistent(intent: dict[str, Any], payload: dict[str, Any], salt: str) -> bool:
    """Whether ``payload`` is the one the warrant's intent commits to (``commitments.payload``
    with the action's salt); a warrant carrying the payload itself compares canonical JSON."""
    commitments = intent.get(COMMITMENTS)
    if isinstance(commitments, dict):
        return commit(salt, "payload", payload) == commitments.get("payload")
    return canonicalize(payload) == canonicalize(intent.get("payload", {}))


def match_details(predicate: dict[str, Any], executed: dict[str, Any], window_seconds: int,
                  skew_seconds: int, salt: str) -> dict[str, Any]:
    """Rule 3: compare the executed action with the warrant's intent."""
    intent = predicate["intent"]
    issued_at = parse_time(predicate["issued_at"])
    end = min(issued_at + timedelta(seconds=window_seconds), parse_time(predicate["not_after"]))
    executed_at = parse_time(executed["executed_at"])
    return {
        "action_type_match": executed["type"] == intent.get("action_type"),
        "payload_consistent": payload_consistent(intent, executed["payload"], salt),
        "within_time_window": within_window(executed_at, issued_at, end, skew_seconds),
        "time_window_seconds": window_seconds,
        "clock_skew_seconds": skew_seconds,
    }


def ended_status(action: Action, now: datetime, grace_seconds: int) -> str | None:
    """Rule 6: the state an action has ended in, or ``None`` while it may still run.

    A runnable action whose warrant lapsed more than the grace ago counts as ``expired``
    even before the sweep records it (the same cut-off the sweep uses).
    """
    if is_terminal(action.status):
        return action.status.value
    runnable = action.status in (Status.AUTHORIZED, Status.APPROVED)
    lapsed = action.warrant_expires_at is not None and \
        action.warrant_expires_at < now - timedelta(seconds=grace_seconds)
    return Status.EXPIRED.value if runnable and lapsed else None


@dataclass(frozen=True)
class _Opened:
    """A warrant that passed rule 1: its statement and the digests that identify it."""

    predicate: dict[str, Any]
    statement_digest: str  # sha256 of the signed statement: the uniqueness key (rule 5)
    warrant_digest: str  # sha256 of the canonical envelope as issued (rule 4)


class ExecutionConfirmer:
    def __init__(self, deps: Deps) -> None:
        self._d = deps

    def confirm(self, principal: Principal, warrant: dict[str, Any], executed: dict[str, Any],
                window_seconds: int = DEFAULT_WINDOW_SECONDS) -> dict[str, Any]:
        tenant_id = require_role(principal, Role.AGENT, Role.ADMIN)
        opened = self._open(warrant, tenant_id)
        predicate = opened.predicate
        if principal.agent_id and predicate["intent"].get("agent_id") != principal.agent_id:
            raise PermissionDeniedError(
                f"expected a warrant for agent {principal.agent_id!r} (bound to this key), "
                f"got one for {predicate['intent'].get('agent_id')!r}", code="AGENT_MISMATCH",
            )
        try:
            parse_time(executed["executed_at"])
        except ValueError as exc:
            raise EvidenceError(f"executed_action.executed_at: {exc}", code="VALIDATION_ERROR", status=422) from exc
        with self._d.store.read() as repo:
            action = repo.get_action(tenant_id, predicate["action_id"])
        # Erased details leave no salt: nothing matches, and the job refuses the ended action.
        salt = (action.details_salt if action is not None else None) or random_token(128)
        details = match_details(predicate, executed, window_seconds, self._d.limits.clock_skew_seconds, salt)
        matched = all(details[k] for k in ("action_type_match", "payload_consistent", "within_time_window"))
        return self._record(tenant_id, opened, executed, details, matched, salt)

    def _open(self, warrant: dict[str, Any], tenant_id: str) -> _Opened:
        """Rules 1 and 2: a verified warrant of this tenant, recorded here; else 422."""
        try:
            envelope = Envelope.from_dict(warrant)
        except ValueError as exc:
            raise _invalid(f"expected a DSSE warrant envelope: {exc}") from exc
        keys = self._d.keyring.trusted_keys()
        signers = verified_keys(envelope, keys)
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
        if not all(key.valid_at(issued_at) for key in signers):
            raise _invalid("the warrant was issued outside its signing key's validity")
        issued = self._recorded(tenant_id, predicate, envelope) if predicate.get("tenant_id") == tenant_id else None
        if issued is None:
            raise _invalid("expected a warrant issued to this tenant by this deployment")
        return _Opened(predicate, sha256_hex(envelope.payload), issued)

    def _recorded(self, tenant_id: str, predicate: dict[str, Any], envelope: Envelope) -> str | None:
        """The digest of the warrant as issued, when this exact statement is the one recorded."""
        warrant_id = predicate.get("warrant_id")
        if not isinstance(warrant_id, str):
            return None
        with self._d.store.read() as repo:
            ev = repo.get_evidence(tenant_id, warrant_id)
        if ev is None or ev.kind != "warrant":
            return None
        issued = Envelope.from_dict(ev.envelope)
        same = (issued.payload_type, issued.payload) == (envelope.payload_type, envelope.payload)
        return ev.envelope_digest if same else None

    def _record(self, tenant_id: str, opened: _Opened, executed: dict[str, Any], details: dict[str, Any],
                matched: bool, salt: str) -> dict[str, Any]:
        now = self._d.clock.now()
        execution_id = self._d.ids.new("exec")
        predicate, warrant_digest = opened.predicate, opened.warrant_digest
        ihash = integrity_hash(warrant_digest, executed)
        intent = predicate["intent"]
        receipt = self._d.sealer.receipt(
            tenant_id=tenant_id, action_id=predicate["action_id"], status="confirmed" if matched else "diverged",
            intent_digest=digest(intent), decision=predicate.get("decision") or {}, approvals=[],
            parent=predicate.get("parent"), issued_at=now, warrant_digest=warrant_digest,
            execution=_execution_view(executed, salt), match=details,
            reason_code=None if matched else "EXECUTION_DIVERGED",
            extra={"evidence_grade": "confirmed", "execution_id": execution_id, "integrity_hash": ihash},
        )
        confirmation = rq.Confirmation(
            execution_id, tenant_id, opened.statement_digest, warrant_digest, predicate["warrant_id"],
            predicate["action_id"], receipt.evidence_id, ihash, matched, now,
        )
        grace = self._d.limits.notarize_grace_seconds

        def job(repo: Repo) -> None:
            action = repo.get_action(tenant_id, predicate["action_id"], for_update=True)
            if rq.confirmation_for(repo, opened.statement_digest) is not None:
                raise _already()
            if action is None:
                raise _invalid("expected a warrant whose action is recorded here")
            ended = ended_status(action, now, grace)
            if ended is not None:
                raise ConflictError(
                    f"expected a warrant whose action may still run; action {action.id} has ended: {ended}",
                    code="ACTION_ALREADY_ENDED", details={"action_id": action.id, "status": ended},
                )
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
            "receipt": {"receipt_id": receipt.evidence_id, "envelope": receipt.envelope.to_dict(),
                        "sequence": receipt.sequence},
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


def _execution_view(executed: dict[str, Any], salt: str) -> dict[str, Any]:
    """What the receipt keeps: the payload's salted digest, not the payload (retention can
    erase it); it equals the warrant's ``commitments.payload`` when the payloads are equal."""
    return {
        "action_type": executed["type"],
        "payload_sha256": commit(salt, "payload", executed["payload"]),
        "executed_at": executed["executed_at"],
        "executed_by": executed["executed_by"],
    }
