"""The public verification page's logic: parse what was pasted, run the offline verifier.

Uses ``warrantor.verify.verify_bundle`` with ``ProofBundle`` / ``TrustBundle`` exactly as
the ``warrantor verify`` CLI does, so the page and the CLI agree check by check. A proof
bundle may be the JSON form or C2SP tlog-proof text. Nothing is stored; parse errors are
shown as such, never as a server error. JSON nested deeper than 64 levels is refused by
the parsers before they recurse (``warrantor.evidence.jsontext``) and the page answers 422,
like ``/v1/verify``; ``status`` in the result is the HTTP status to answer with.
"""

from __future__ import annotations

from typing import Any

from warrantor.evidence.jsontext import JsonTooDeepError
from warrantor.evidence.proofs import ProofBundle, TrustBundle
from warrantor.verify import verify_bundle

MAX_UPLOAD = 2 * 1024 * 1024

CHECK_TITLES = {
    "signature": "Signature by a trusted key",
    "key_validity": "Key valid when it signed",
    "subject_digest": "Subject names the action and its intent digest",
    "inclusion": "Included in the transparency log",
    "checkpoint_signature": "Checkpoint signed by the trusted log",
    "timestamp": "RFC 3161 timestamp on the checkpoint",
    "replay": "Policy decision replays",
}
PREDICATE_KINDS = {
    "urn:warrantor:predicate:warrant:v1": "Warrant",
    "urn:warrantor:predicate:receipt:v1": "Receipt",
    "urn:warrantor:predicate:policy:v1": "Policy activation",
    "urn:warrantor:predicate:cosignature:v1": "Cosignature",
}


def _parse_bundle(text: str) -> ProofBundle:
    stripped = text.strip()
    if stripped.startswith("{"):
        return ProofBundle.from_json(stripped)
    return ProofBundle.from_tlog_proof_text(text)


def run_verification(bundle_text: str, trust_text: str) -> dict[str, Any]:
    """The page's result: ``{ok, error, status, checks, envelope, log}``."""
    if "\x00too-large" in (bundle_text, trust_text):
        return _failed(f"expected files of at most {MAX_UPLOAD // 1024 // 1024} MiB")
    if not bundle_text.strip() or not trust_text.strip():
        return _failed("expected both a proof bundle and a trust bundle")
    try:
        bundle = _parse_bundle(bundle_text)
    except (ValueError, TypeError, KeyError) as exc:
        return _failed(f"the proof bundle could not be read: {exc}", exc)
    try:
        trust = TrustBundle.from_json(trust_text)
    except (ValueError, TypeError, KeyError) as exc:
        return _failed(f"the trust bundle could not be read: {exc}", exc)
    report = verify_bundle(bundle, trust)
    return {
        "ok": report.ok,
        "error": None,
        "status": 200,
        "checks": [
            {"name": c.name, "title": CHECK_TITLES.get(c.name, c.name), "ok": c.ok, "detail": c.detail}
            for c in report.checks
        ],
        "envelope": _describe(bundle),
        "log": {"index": bundle.log_index, "tree_size": bundle.tree_size,
                "origin": bundle.checkpoint.split("\n", 1)[0],
                "timestamped": bundle.timestamp_token is not None},
    }


def _failed(message: str, exc: Exception | None = None) -> dict[str, Any]:
    status = 422 if isinstance(exc, JsonTooDeepError) else 200
    return {"ok": False, "error": message, "status": status, "checks": [], "envelope": None, "log": None}


def _describe(bundle: ProofBundle) -> dict[str, Any]:
    """What the envelope claims (unverified until the checks say otherwise)."""
    try:
        statement = bundle.envelope.statement()
    except ValueError:
        return {"kind": "Unreadable statement"}
    raw_predicate, raw_subjects = statement.get("predicate"), statement.get("subject")
    predicate: dict[str, Any] = raw_predicate if isinstance(raw_predicate, dict) else {}
    subjects: list[Any] = raw_subjects if isinstance(raw_subjects, list) else []
    subject: dict[str, Any] = subjects[0] if subjects and isinstance(subjects[0], dict) else {}
    digest = subject.get("digest")
    return {
        "kind": PREDICATE_KINDS.get(str(statement.get("predicateType")), str(statement.get("predicateType"))),
        "subject": str(subject.get("name", "")),
        "digest": str(digest.get("sha256", "")) if isinstance(digest, dict) else "",
        "status": predicate.get("status"),
        "issued_at": predicate.get("issued_at"),
        "keyids": [s.keyid for s in bundle.envelope.signatures],
    }
