"""Minting warrants and receipts: the predicates, their signatures, their log entries.

A warrant says "action X with intent digest D was authorized under policy P, valid until
T". A receipt is minted for every terminal state and commits to the intent digest, the
decision, the approvals, the execution report and the match result. Both are DSSE
envelopes over in-toto Statements (docs/offline-verification.md) whose subject is
``action:<action_id>`` with the intent digest.

Receipts, legal holds and erasure receipts are *records*: each carries the tenant's
record sequence number (``predicate.sequence``, 1, 2, ... with no gap) inside the signed
statement, so an export with a record missing shows the missing number. The number is known
only when the write batch is sequenced, so these are signed there (``Sealed.pending``; the
statement is canonicalized before, only the number is spliced in).

Signing happens outside the write transaction where it can; ``record`` is the part that
runs inside it: insert the evidence row and sequence its log entry.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from warrantor.domain.clock import IdFactory, isoformat
from warrantor.domain.model import Approval, Evidence
from warrantor.evidence.canonical import canonicalize, sha256_hex
from warrantor.evidence.canonical import digest as digest_of
from warrantor.evidence.dsse import Envelope, Signer, sign_envelope
from warrantor.evidence.statement import (
    ERASURE_V1,
    EXPORT_V1,
    HOLD_V1,
    POLICY_V1,
    RECEIPT_V1,
    WARRANT_V1,
    make_statement,
    sign_statement,
)
from warrantor.store import Repo
from warrantor.store.repo import evidence_values
from warrantor.store.sequencing import FINISH, LogTicket


class Sealed:
    """A signed envelope ready to be recorded.

    Records that carry the tenant's record sequence number (receipts, legal holds, erasure
    receipts) are signed only when their write is sequenced (``store/sequencing.py``): until
    then ``envelope``, ``digest`` and ``sequence`` raise, and ``when_sealed`` defers what a
    response built inside the write job needs from them.
    """

    __slots__ = ("_callbacks", "_digest", "_envelope", "_sequence", "_signer", "_template", "evidence_id", "kind")

    def __init__(self, evidence_id: str, kind: str, envelope: Envelope | None, digest: str | None) -> None:
        self.evidence_id = evidence_id
        self.kind = kind
        self._envelope = envelope
        self._digest = digest
        self._sequence: int | None = None
        self._template: bytes | None = None
        self._signer: Signer | None = None
        self._callbacks: list[Callable[[Sealed], None]] = []

    @classmethod
    def pending(cls, evidence_id: str, kind: str, template: bytes, signer: Signer) -> Sealed:
        """A record signed once its sequence number is known; ``template`` is the canonical
        statement with the number's placeholder (exactly once)."""
        if template.count(_MARK_JSON) != 1:
            raise RuntimeError("expected the sequence placeholder exactly once in the statement")
        sealed = cls(evidence_id, kind, None, None)
        sealed._template, sealed._signer = template, signer
        return sealed

    @property
    def is_pending(self) -> bool:
        return self._envelope is None

    @property
    def envelope(self) -> Envelope:
        if self._envelope is None:
            raise RuntimeError("a record is signed only once its write is sequenced")
        return self._envelope

    @property
    def digest(self) -> str:
        """Hex sha256 of the canonical envelope; the log entry."""
        if self._digest is None:
            raise RuntimeError("a record is signed only once its write is sequenced")
        return self._digest

    @property
    def sequence(self) -> int | None:
        return self._sequence

    def when_sealed(self, callback: Callable[[Sealed], None]) -> None:
        """Run ``callback(self)`` once signed: at once if it is, else when its write is
        sequenced (again if a retried batch signs it again), before the caller is answered."""
        self._callbacks.append(callback)
        if self._envelope is not None:
            callback(self)

    def finish(self, sequence: int) -> tuple[str, str]:
        """Sign with ``sequence`` (the writer calls this); (envelope JSON, digest)."""
        assert self._template is not None and self._signer is not None
        envelope = sign_envelope(self._template.replace(_MARK_JSON, b"%d" % sequence, 1), self._signer)
        canonical = envelope.canonical_bytes()
        self._envelope, self._digest, self._sequence = envelope, sha256_hex(canonical), sequence
        for callback in self._callbacks:
            callback(self)
        return canonical.decode(), self._digest

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

    def row(self, tenant_id: str, action_id: str | None, now: datetime) -> dict[str, Any]:
        """The evidence row; a pending record's is completed when its write is sequenced."""
        if self._envelope is not None:
            return evidence_values(self.to_record(tenant_id, action_id, now))
        return {
            "id": self.evidence_id, "tenant_id": tenant_id, "kind": self.kind, "action_id": action_id,
            "envelope_json": "", "envelope_digest": "", "log_index": None, "timestamp_token": None,
            "created_at": now, "tenant_seq": None, FINISH: self.finish,
        }


# The placeholder for a record's sequence number in its canonical statement: random per
# process (a NUL and 128 random bits), so no value a caller sends can contain it.
_MARK = "\x00sequence:" + secrets.token_hex(16)
_MARK_JSON = canonicalize(_MARK)
SEQUENCED_KINDS = frozenset({"receipt", "hold", "erasure"})


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
        if kind in SEQUENCED_KINDS:
            predicate["sequence"] = _MARK
            template = canonicalize(make_statement(subject, digest, predicate_type, predicate))
            return Sealed.pending(evidence_id, kind, template, signer)
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


    def legal_hold(
        self, *, tenant_id: str, action_id: str, intent_digest: str, legal_hold: bool, reason: str,
        by: dict[str, Any], issued_at: datetime,
    ) -> Sealed:
        """A legal hold set or lifted on an action: who, why, when (a record: sequenced)."""
        return self._seal(
            "hold", "hold", f"action:{action_id}", intent_digest, HOLD_V1,
            {"tenant_id": tenant_id, "action_id": action_id, "legal_hold": legal_hold, "reason": reason,
             "by": by, "issued_at": isoformat(issued_at)},
        )

    def erasure(
        self, *, erasure_id: str, tenant_id: str, scope: dict[str, Any], reason: str, by: dict[str, Any],
        erased: list[dict[str, Any]], issued_at: datetime,
    ) -> Sealed:
        """An erasure receipt: which actions' details were erased, each by its intent digest
        and the commitments to what was erased (a record: sequenced). Its subject is
        ``erasure:<id>`` with the digest of the ``erased`` list."""
        signer = self._current() if self._current is not None else self._signer
        predicate = {"erasure_id": erasure_id, "tenant_id": tenant_id, "scope": scope, "reason": reason, "by": by,
                     "erased": erased, "issued_at": isoformat(issued_at), "sequence": _MARK}
        statement = make_statement(f"erasure:{erasure_id}", digest_of(erased), ERASURE_V1, predicate)
        return Sealed.pending(erasure_id, "erasure", canonicalize(statement), signer)

    def export_manifest(self, *, tenant_id: str, lines_sha256: str, predicate: dict[str, Any]) -> Envelope:
        """The signed manifest that closes an audit export (not logged: see service/recordkeeping/export.py)."""
        signer = self._current() if self._current is not None else self._signer
        statement = make_statement(f"export:{tenant_id}", lines_sha256, EXPORT_V1,
                                   {"tenant_id": tenant_id, **predicate})
        return sign_statement(statement, signer)


def prepare(sealed: Sequence[tuple[Sealed, str, str | None]], now: datetime) -> list[dict[str, Any]]:
    """Evidence rows (sealed, tenant, action), encoded outside the write job."""
    return [item.row(tenant_id, action_id, now) for item, tenant_id, action_id in sealed]


def record(repo: Repo, sealed: Sequence[tuple[Sealed, str, str | None]], now: datetime) -> LogTicket:
    """Insert evidence (sealed, tenant, action) and sequence its log entries at dense
    indices, in order; the ticket gives the indices once the write is sequenced (after the
    job, before the caller is answered)."""
    return repo.sequence_evidence(prepare(sealed, now), now)


def record_prepared(repo: Repo, rows: Sequence[dict[str, Any]], now: datetime) -> LogTicket:
    """``record`` for rows from ``prepare`` (encoded before the write job started)."""
    return repo.sequence_evidence([dict(r) for r in rows], now)
