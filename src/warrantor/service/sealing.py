"""Minting warrants and receipts: the predicates, their signatures, their log entries.

A warrant says "action X with intent digest D was authorized under policy P, valid until
T". A receipt is minted for every terminal state and commits to the intent digest, the
decision, the approvals, the execution report and the match result. Both are DSSE
envelopes over in-toto Statements (docs/offline-verification.md) whose subject is
``action:<action_id>`` with the intent digest.

Signing happens outside the write transaction where it can; ``record`` is the part that
runs inside it: insert the evidence row and sequence its log entry.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from warrantor.domain.clock import IdFactory, isoformat
from warrantor.domain.model import Approval, Evidence
from warrantor.evidence.canonical import sha256_hex
from warrantor.evidence.dsse import Envelope, Signer
from warrantor.evidence.statement import (
    POLICY_V1,
    RECEIPT_V1,
    WARRANT_V1,
    make_statement,
    sign_statement,
)
from warrantor.store import Repo
from warrantor.store.repo import evidence_values
from warrantor.store.sequencing import LogTicket


@dataclass(frozen=True)
class Sealed:
    """A signed envelope ready to be recorded."""

    evidence_id: str
    kind: str
    envelope: Envelope
    digest: str  # hex sha256 of the canonical envelope; the log entry

    def to_record(self, tenant_id: str, action_id: str | None, now: datetime) -> Evidence:
        return Evidence(
            id=self.evidence_id,
            tenant_id=tenant_id,
            kind=self.kind,
            action_id=action_id,
            envelope=self.envelope.to_dict(),
            envelope_digest=self.digest,
            log_index=None,
            created_at=now,
        )


def approvals_view(approvals: list[Approval]) -> list[dict[str, Any]]:
    return [
        {
            "approver": a.approver,
            "decision": a.decision,
            "reason": a.reason,
            "via": a.via,
            "channel": a.channel,
            "decided_at": isoformat(a.decided_at),
        }
        for a in approvals
    ]


class Sealer:
    """Signs warrants, receipts and policy statements. ``current``, when given, names the
    signer at each signature (the key ring's newest key), so a rotation elsewhere applies at
    once; one statement is always signed by one key."""

    def __init__(self, signer: Signer, ids: IdFactory, *, current: Callable[[], Signer] | None = None) -> None:
        self._signer = signer
        self._ids = ids
        self._current = current

    def set_signer(self, signer: Signer) -> None:
        self._signer = signer

    def _seal(
        self, kind: str, prefix: str, subject: str, digest: str, predicate_type: str, predicate: dict[str, Any]
    ) -> Sealed:
        evidence_id = self._ids.new(prefix)
        predicate = {f"{kind}_id": evidence_id, **predicate}
        signer = self._current() if self._current is not None else self._signer
        envelope = sign_statement(make_statement(subject, digest, predicate_type, predicate), signer)
        return Sealed(evidence_id, kind, envelope, sha256_hex(envelope.canonical_bytes()))

    def warrant(
        self,
        *,
        tenant_id: str,
        action_id: str,
        intent: dict[str, Any],
        intent_digest: str,
        decision: dict[str, Any],
        approvals: list[Approval],
        parent: dict[str, Any] | None,
        issued_at: datetime,
        not_after: datetime,
    ) -> Sealed:
        return self._seal(
            "warrant",
            "wrt",
            f"action:{action_id}",
            intent_digest,
            WARRANT_V1,
            {
                "tenant_id": tenant_id,
                "action_id": action_id,
                "intent": intent,
                "decision": decision,
                "approvals": approvals_view(approvals),
                "parent": parent,
                "issued_at": isoformat(issued_at),
                "not_after": isoformat(not_after),
            },
        )

    def receipt(
        self,
        *,
        tenant_id: str,
        action_id: str,
        status: str,
        intent_digest: str,
        decision: dict[str, Any],
        approvals: list[Approval],
        parent: dict[str, Any] | None,
        issued_at: datetime,
        warrant_digest: str | None = None,
        execution: dict[str, Any] | None = None,
        match: dict[str, Any] | None = None,
        reason_code: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> Sealed:
        return self._seal(
            "receipt",
            "rcpt",
            f"action:{action_id}",
            intent_digest,
            RECEIPT_V1,
            {
                "tenant_id": tenant_id,
                "action_id": action_id,
                "status": status,
                "reason_code": reason_code,
                "intent_digest": intent_digest,
                "decision": decision,
                "approvals": approvals_view(approvals),
                "warrant_digest": warrant_digest,
                "execution": execution,
                "match": match,
                "parent": parent,
                "issued_at": isoformat(issued_at),
                **(extra or {}),
            },
        )

    def policy_activation(
        self, *, tenant_id: str, bundle_hash: str, mode: str, issued_at: datetime
    ) -> Sealed:
        return self._seal(
            "policy",
            "pol",
            f"policy:{bundle_hash}",
            bundle_hash,
            POLICY_V1,
            {
                "tenant_id": tenant_id,
                "bundle_hash": bundle_hash,
                "mode": mode,
                "issued_at": isoformat(issued_at),
            },
        )


def prepare(sealed: Sequence[tuple[Sealed, str, str | None]], now: datetime) -> list[dict[str, Any]]:
    """Evidence rows (sealed, tenant, action), encoded outside the write job."""
    return [evidence_values(item.to_record(tenant_id, action_id, now)) for item, tenant_id, action_id in sealed]


def record(repo: Repo, sealed: Sequence[tuple[Sealed, str, str | None]], now: datetime) -> LogTicket:
    """Insert evidence (sealed, tenant, action) and sequence its log entries at dense
    indices, in order; the ticket gives the indices once the write is sequenced (after the
    job, before the caller is answered)."""
    return repo.sequence_evidence(prepare(sealed, now), now)


def record_prepared(repo: Repo, rows: Sequence[dict[str, Any]], now: datetime) -> LogTicket:
    """``record`` for rows from ``prepare`` (encoded before the write job started)."""
    return repo.sequence_evidence([dict(r) for r in rows], now)
