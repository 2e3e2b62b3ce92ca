"""in-toto Statement v1 for warrants, receipts, policy activations and records.

Subject: ``[{"name": "action:<action_id>", "digest": {"sha256": <intent digest>}}]`` for
warrants, receipts and legal holds; ``erasure:<id>`` for erasure receipts (the digest is
that of the list of what was erased), ``export:<tenant>`` for an export's manifest.
The Statement is serialized as canonical JSON, so its bytes are reproducible.
"""

from __future__ import annotations

from typing import Any

from warrantor.evidence.canonical import canonicalize
from warrantor.evidence.dsse import Envelope, Signer, sign_envelope

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
WARRANT_V1 = "urn:warrantor:predicate:warrant:v1"
RECEIPT_V1 = "urn:warrantor:predicate:receipt:v1"
POLICY_V1 = "urn:warrantor:predicate:policy:v1"
KEY_V1 = "urn:warrantor:predicate:signing-key:v1"  # genesis and rotation of signing keys
HOLD_V1 = "urn:warrantor:predicate:legal-hold:v1"  # a legal hold set or lifted, by whom and why
ERASURE_V1 = "urn:warrantor:predicate:erasure:v1"  # details erased (retention, a request), by digest
EXPORT_V1 = "urn:warrantor:predicate:export:v1"  # the manifest closing an audit export (not logged)
PREDICATE_TYPES = frozenset({WARRANT_V1, RECEIPT_V1, POLICY_V1, KEY_V1, HOLD_V1, ERASURE_V1, EXPORT_V1})


def make_statement(
    subject_name: str, sha256_digest: str, predicate_type: str, predicate: dict[str, Any]
) -> dict[str, Any]:
    if predicate_type not in PREDICATE_TYPES:
        raise ValueError(f"expected one of {sorted(PREDICATE_TYPES)}, got {predicate_type!r}")
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": subject_name, "digest": {"sha256": sha256_digest}}],
        "predicateType": predicate_type,
        "predicate": predicate,
    }


def sign_statement(statement: dict[str, Any], signer: Signer) -> Envelope:
    return sign_envelope(canonicalize(statement), signer)
