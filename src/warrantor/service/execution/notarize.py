"""Reporting what ran, and checking it against what was authorized.

``outcome``:

- ``completed``: the action ran. Without an ``executed`` block it is ``notarized``. With
  one, the match check compares action type, payload (canonical JSON, byte for byte) and
  time (``executed_at`` within the warrant's validity, widened on both sides by the
  deployment's clock skew, ``WARRANTOR_CLOCK_SKEW_SECONDS``, which ``match`` reports); any
  mismatch ends the action as ``diverged``, an alarm rather than a silent flag.
- ``failed``: it ran and failed; ``failed`` with a receipt.
- ``unknown``: the agent cannot tell whether the side effect happened; the action becomes
  ``uncertain`` (no receipt yet) and a later report resolves it.

The receipt commits to digests of the outcome details and the executed payload, never to
the raw text, so retention can erase details while the receipt keeps verifying. Both are
salted with the action's commitment salt (``evidence/commitments.py``): the executed
payload's digest equals the warrant's ``commitments.payload`` exactly when the payloads are
equal, and once the salt is erased neither digest says anything about the text.

``evidence_grade`` (signed in the receipt, echoed in the answer):

- ``reported`` (the default): the caller says what ran; nobody else saw it.
- ``witnessed``: a gateway executed the call itself and reports digests of the request it
  sent and the response it received (``witness``). Only a gateway key may say so (403
  ``WITNESS_NOT_ALLOWED`` for every other role, agent keys first of all); the digests must
  read ``sha256:<64 lowercase hex>`` (422 ``INVALID_WITNESS``, naming the field), and a
  ``witness`` without ``witnessed`` is 422 too. The executor ``warrantor-http`` is
  reserved for Warrantor's own executions (``POST /v1/actions/{id}/execute``). The
  receipt carries the digests, the optional ``executor`` and ``target`` labels and the
  gateway's key id, never content.
  ``witnessed`` is worth the separation between agent and gateway: a gateway running as
  the agent's own subprocess, under the agent's user, shares the agent's trust.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from warrantor.domain.clock import isoformat, parse_time, random_token
from warrantor.domain.lifecycle import Event
from warrantor.domain.model import Action, Principal, Role
from warrantor.errors import NotFoundError, PermissionDeniedError, ValidationError
from warrantor.evidence.canonical import canonicalize
from warrantor.evidence.commitments import commit
from warrantor.service.context import Deps
from warrantor.service.execution.transitions import apply
from warrantor.service.tenancy import require_role
from warrantor.store import Repo

OUTCOMES = {
    "completed": Event.NOTARIZE_COMPLETED,
    "failed": Event.NOTARIZE_FAILED,
    "unknown": Event.NOTARIZE_UNKNOWN,
}


GRADES = ("reported", "witnessed")
RESERVED_EXECUTOR = "warrantor-http"  # POST /v1/actions/{id}/execute; no gateway may claim it
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_LABEL = re.compile(r"[^\x00-\x1f\x7f]{1,200}")


def evidence_fields(principal: Principal, report: dict[str, Any]) -> dict[str, Any]:
    """What the receipt says about its evidence: ``evidence_grade``, and for ``witnessed``
    the ``witness`` (see the module rules). Raises before anything is written."""
    grade = report.get("evidence_grade") or "reported"
    witness = report.get("witness")
    if grade not in GRADES:
        raise ValidationError(f"expected evidence_grade reported or witnessed, got {grade!r}",
                              code="INVALID_EVIDENCE_GRADE")
    if grade == "reported":
        if witness is not None:
            raise _invalid_witness("witness", "expected witness only with evidence_grade witnessed")
        return {"evidence_grade": "reported"}
    if principal.role is not Role.GATEWAY:
        who = f"a key with role {principal.role}" if principal.role else "the operator key"
        raise PermissionDeniedError(
            f"expected a gateway key to report witnessed evidence, got {who}",
            code="WITNESS_NOT_ALLOWED",
        )
    if not isinstance(witness, dict):
        raise _invalid_witness("witness", "expected a witness object with request_sha256 and response_sha256 "
                                          "for evidence_grade witnessed")
    record: dict[str, Any] = {}
    for name in ("request_sha256", "response_sha256"):
        value = witness.get(name)
        if not (isinstance(value, str) and _DIGEST.fullmatch(value)):
            raise _invalid_witness(f"witness.{name}", f"expected witness.{name} as sha256:<64 lowercase hex>, "
                                                      f"got {_shown(value)}")
        record[name] = value
    for name in ("executor", "target"):
        value = witness.get(name)
        if value is None:
            continue
        if not (isinstance(value, str) and _LABEL.fullmatch(value)):
            raise _invalid_witness(f"witness.{name}", f"expected witness.{name} as 1 to 200 printable characters")
        if name == "executor" and value.strip().lower() == RESERVED_EXECUTOR:
            raise _invalid_witness("witness.executor", f"expected an executor other than {RESERVED_EXECUTOR}, "
                                                       "which names Warrantor's own executions (docs/execute.md)")
        record[name] = value
    record["gateway_key_id"] = principal.key_id
    return {"evidence_grade": "witnessed", "witness": record}


def _invalid_witness(field: str, message: str) -> ValidationError:
    return ValidationError(message, code="INVALID_WITNESS", details={"field": field})


def _shown(value: Any) -> str:
    if value is None:
        return "nothing"
    return repr(value[:80]) if isinstance(value, str) else type(value).__name__


def within_window(executed_at: datetime, start: datetime, end: datetime, skew_seconds: int) -> bool:
    """``start - skew <= executed_at <= end + skew``: the executor's clock may differ from
    ours by up to the skew (and may report whole seconds), so that much is not a divergence.
    Times on the wire carry milliseconds, so ``start`` is first cut to whole milliseconds."""
    start = start.replace(microsecond=start.microsecond // 1000 * 1000)
    skew = timedelta(seconds=skew_seconds)
    return start - skew <= executed_at <= end + skew


def match_execution(
    action: Action, executed: dict[str, Any], window_start: datetime, window_end: datetime, now: datetime,
    skew_seconds: int,
) -> dict[str, Any]:
    """Compare an executed action with the authorized intent.

    An ``executed`` block without ``executed_at`` is taken to have run when reported.
    """
    executed_at = parse_time(executed["executed_at"]) if executed.get("executed_at") else now
    intent_payload = action.intent.get("payload", {})
    return {
        "action_type_match": executed.get("action_type", action.action_type) == action.action_type,
        "payload_consistent": "payload" not in executed
        or canonicalize(executed["payload"]) == canonicalize(intent_payload),
        "within_time_window": within_window(executed_at, window_start, window_end, skew_seconds),
        "time_window_seconds": int((window_end - window_start).total_seconds()),
        "clock_skew_seconds": skew_seconds,
    }


def matched(match: dict[str, Any] | None) -> bool:
    return match is None or all(
        match[k] for k in ("action_type_match", "payload_consistent", "within_time_window")
    )


class Notarizer:
    def __init__(self, deps: Deps) -> None:
        self._d = deps

    def notarize(self, principal: Principal, action_id: str, report: dict[str, Any]) -> dict[str, Any]:
        result = self._d.store.write(self._job(principal, action_id, report))
        self._d.notifier.notify(action_id)
        return result

    async def notarize_async(self, principal: Principal, action_id: str, report: dict[str, Any]) -> dict[str, Any]:
        """``notarize`` for the event loop: awaits the group commit instead of holding a thread."""
        result = await self._d.store.write_async(self._job(principal, action_id, report))
        self._d.notifier.notify(action_id)
        return result

    def _job(
        self, principal: Principal, action_id: str, report: dict[str, Any]
    ) -> Callable[[Repo], dict[str, Any]]:
        """Check the report, and the write job that matches it against the warrant and
        records the outcome with its receipt."""
        # The evidence claim first: a witnessed claim from any key but a gateway's is refused
        # as what it is (WITNESS_NOT_ALLOWED), whatever else the key may or may not do.
        evidence = evidence_fields(principal, report)
        tenant_id = require_role(principal, Role.AGENT, Role.ADMIN)
        outcome = report.get("outcome", "completed")
        if outcome not in OUTCOMES:
            raise ValidationError(
                f"expected outcome completed, failed or unknown, got {outcome!r}",
                code="INVALID_OUTCOME", status=400,
            )
        executed = report.get("executed")
        if executed is not None and executed.get("executed_at"):
            try:
                parse_time(executed["executed_at"])
            except ValueError as exc:
                raise ValidationError(f"executed.executed_at: {exc}", code="INVALID_OUTCOME", status=400) from exc
        now = self._d.clock.now()

        def job(repo: Repo) -> dict[str, Any]:
            action = repo.get_action(tenant_id, action_id, for_update=True)
            if action is None or (principal.agent_id and action.agent_id != principal.agent_id):
                raise NotFoundError(f"no action {action_id!r}", code="NOT_FOUND")
            match = self._match(repo, action, executed, now) if executed is not None else None
            event = OUTCOMES[outcome]
            if event is Event.NOTARIZE_COMPLETED and not matched(match):
                event = Event.NOTARIZE_DIVERGED
            execution = _execution_record(outcome, report, executed, now, salt_of(action))
            applied = apply(self._d, repo, action, event, now, execution=execution, match=match,
                            reason_code="EXECUTION_DIVERGED" if event is Event.NOTARIZE_DIVERGED else None,
                            extra_receipt=evidence)
            receipt = applied.receipt_view()  # envelope and index set when the batch is sequenced
            return {
                "action_id": action.id,
                "status": applied.status.value,
                "evidence_grade": evidence["evidence_grade"],
                "match": match,
                "receipt": receipt,
            }

        return job

    def _match(self, repo: Repo, action: Action, executed: dict[str, Any], now: datetime) -> dict[str, Any]:
        start = action.created_at
        if action.warrant_id is not None:
            warrant = repo.get_evidence(action.tenant_id, action.warrant_id)
            if warrant is not None:
                start = warrant.created_at
        end = action.warrant_expires_at or start
        return match_execution(action, executed, start, end, now, self._d.limits.clock_skew_seconds)


def salt_of(action: Action) -> str:
    """The action's commitment salt; a fresh one (committing to nothing anyone keeps) when
    its details were erased, so no unsalted digest of a payload is ever recorded."""
    return action.details_salt or random_token(128)


def _execution_record(
    outcome: str, report: dict[str, Any], executed: dict[str, Any] | None, now: datetime, salt: str,
) -> dict[str, Any]:
    details = report.get("outcome_details")
    record: dict[str, Any] = {
        "outcome": outcome,
        "outcome_details_sha256": commit(salt, "outcome_details", details) if details else None,
        "reported_at": isoformat(now),
        "usage": report.get("usage"),
    }
    if executed is not None:
        record["executed"] = {
            "action_type": executed.get("action_type"),
            "payload_sha256": commit(salt, "payload", executed["payload"]) if "payload" in executed else None,
            "executed_at": executed.get("executed_at"),
            "executed_by": executed.get("executed_by"),
        }
    return record
