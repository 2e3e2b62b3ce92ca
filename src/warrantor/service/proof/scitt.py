"""SCITT export of a warrant or receipt (docs/scitt.md).

``GET /v1/receipts/{id}/scitt`` and ``GET /v1/warrants/{id}/scitt`` answer with a SCITT
*transparent statement* (RFC 9943): a COSE_Sign1 *signed statement* whose payload is the
logged DSSE envelope, carrying in its unprotected header a COSE *receipt of inclusion*
(RFC 9942, RFC9162_SHA256) in Warrantor's transparency log.

- The payload is the envelope's RFC 8785 canonical JSON, content type
  ``application/vnd.dsse.envelope.v1+json``: exactly the bytes whose SHA-256 is the log
  entry, so ``leaf = SHA-256(0x00 || SHA-256(payload))`` and the receipt's proof leads from
  that leaf to the root. The in-toto statement is the envelope's own payload.
- The signed statement is signed, when exported, by the signing key in use then (the one
  that signs new warrants; ``kid`` = its SHA-256, a ``keyid`` of the trust bundle's
  ``signing_keys``); ``CWT Claims``: ``iss`` the log origin, ``sub`` the in-toto subject
  (``action:<id>``), ``iat`` the export time.
- The receipt is signed by the log key (the trust bundle's ``log`` key; ``kid`` = its
  SHA-256) over the root of the same checkpoint a proof bundle would use (the newest one, or
  the newest one the witness quorum cosigned). That root was first verified against the
  checkpoint the log key signed, so the receipt never says more than the signed note.

The DSSE envelope, logged when the evidence was issued, keeps its own signature: the COSE
signature is a second signature over it by the same issuer, not a new claim.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from warrantor.domain.clock import Clock
from warrantor.errors import EvidenceError
from warrantor.evidence import cose
from warrantor.evidence.checkpoint import open_checkpoint
from warrantor.evidence.proofs import ProofBundle
from warrantor.service.proof.keyring import KeyRing
from warrantor.service.proof.transparency import Transparency

DSSE_CONTENT_TYPE = "application/vnd.dsse.envelope.v1+json"
STATEMENT_MEDIA_TYPE = "application/scitt-statement+cose"
RECEIPT_MEDIA_TYPE = "application/scitt-receipt+cose"


@dataclass(frozen=True)
class ScittExport:
    """One evidence's transparent statement and its parts."""

    signed_statement: cose.Sign1
    receipt: cose.Sign1
    bundle: ProofBundle
    root: bytes
    issuer: str
    subject: str
    issued_at: int

    @property
    def transparent_statement(self) -> cose.Sign1:
        return cose.transparent(self.signed_statement, [self.receipt])

    @property
    def entry(self) -> bytes:
        """The log entry: SHA-256 of the statement's payload."""
        return hashlib.sha256(self.bundle.envelope.canonical_bytes()).digest()


class Scitt:
    def __init__(self, transparency: Transparency, keyring: KeyRing, clock: Clock) -> None:
        self._t, self._keyring, self._clock = transparency, keyring, clock

    def export(self, tenant_id: str, evidence_id: str, kind: str) -> ScittExport:
        """The export of one warrant or receipt of this tenant (404 unknown, 409 until it is
        in a checkpoint, as for its proof bundle)."""
        bundle = self._t.bundle(tenant_id, evidence_id, kind)
        checkpoint = open_checkpoint(bundle.checkpoint, self._t.log_verifier, origin=self._t.origin)
        if checkpoint.size != bundle.tree_size:
            raise EvidenceError(f"expected a checkpoint of size {bundle.tree_size}, got {checkpoint.size}")
        subject = _subject(bundle)
        issued_at = int(self._clock.now().timestamp())
        claims = cose.claims(self._t.origin, subject, issued_at)
        payload = bundle.envelope.canonical_bytes()
        statement = cose.signed_statement(self._keyring.current(), payload, DSSE_CONTENT_TYPE, claims)
        proof = cose.inclusion_proof(bundle.tree_size, bundle.log_index, bundle.inclusion_proof)
        receipt = cose.receipt_of_inclusion(self._t.log_signer.key, checkpoint.root_hash, proof, claims)
        return ScittExport(statement, receipt, bundle, checkpoint.root_hash, self._t.origin, subject, issued_at)


def _subject(bundle: ProofBundle) -> str:
    """The in-toto statement's first subject name (``action:<id>``)."""
    subjects = bundle.envelope.statement().get("subject")
    first = subjects[0] if isinstance(subjects, list) and subjects else None
    name = first.get("name") if isinstance(first, dict) else None
    if not isinstance(name, str) or not name:
        raise EvidenceError("expected the logged statement to name its subject")
    return name
