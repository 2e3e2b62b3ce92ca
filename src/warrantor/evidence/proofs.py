"""Proof bundles and trust bundles: everything an offline verifier is given.

A ``ProofBundle`` carries one DSSE envelope, its log index, its RFC 6962 inclusion proof,
the signed checkpoint (C2SP tlog-checkpoint) it is proven against, and the RFC 3161
token for that checkpoint. It has two encodings: JSON (``to_dict``/``from_dict``) and
C2SP tlog-proof text (``to_tlog_proof_text``/``from_tlog_proof_text``), in which the
envelope and token travel, canonical-JSON encoded, in the ``extra`` line.

A ``TrustBundle`` names what the verifier trusts: the log origin and its note verifier
key, the envelope signing keys with their validity, optionally a TSA root, and the signed
key history (``warrantor.evidence.keyhistory``) that lets a holder of an older bundle
follow each rotation to the new key.

The log entry of an envelope is ``sha256(canonical JSON of the envelope)``
(docs/offline-verification.md); its leaf hash is ``merkle.leaf_hash(entry)``. Parsing checks
shapes only: whether anything verifies is ``warrantor.verify``'s job.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography import x509

from warrantor.evidence import jsontext
from warrantor.evidence.canonical import canonicalize
from warrantor.evidence.checkpoint import NOTE_SIG_TYPE, NoteVerifier
from warrantor.evidence.dsse import Envelope
from warrantor.evidence.keys import VerifyKey, key_id

TLOG_PROOF_HEADER = "c2sp.org/tlog-proof@v1"


def entry_for(envelope: Envelope) -> bytes:
    """The 32-byte log entry of an envelope: sha256 of its canonical JSON."""
    return hashlib.sha256(envelope.canonical_bytes()).digest()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: Any, what: str) -> bytes:
    if not isinstance(text, str):
        raise ValueError(f"expected base64 text for {what}, got {type(text).__name__}")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"expected standard base64 for {what}, got {text[:16]!r}") from exc


def _mapping(value: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ValueError(f"expected an object for {what}, got {type(value).__name__}")
    return value


def _int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected an integer {what}, got {value!r}")
    return value


@dataclass(frozen=True)
class ProofBundle:
    """One envelope with the log evidence for it. Invalid shapes cannot be constructed."""

    envelope: Envelope
    log_index: int
    tree_size: int
    inclusion_proof: tuple[bytes, ...]
    checkpoint: str
    timestamp_token: bytes | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.log_index < self.tree_size:
            raise ValueError(
                f"expected 0 <= index < tree size, got {self.log_index} and {self.tree_size}"
            )
        if any(len(h) != 32 for h in self.inclusion_proof):
            raise ValueError("expected 32-byte hashes in the inclusion proof")

    def to_dict(self) -> dict[str, Any]:
        token = None if self.timestamp_token is None else _b64(self.timestamp_token)
        return {
            "envelope": self.envelope.to_dict(),
            "log": {
                "index": self.log_index,
                "tree_size": self.tree_size,
                "inclusion_proof": [_b64(h) for h in self.inclusion_proof],
                "checkpoint": self.checkpoint,
                "timestamp_token": token,
            },
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProofBundle:
        log = _mapping(_mapping(data, "the proof bundle").get("log"), "'log'")
        proof = log.get("inclusion_proof")
        if not isinstance(proof, list):
            raise ValueError("expected a list 'log.inclusion_proof'")
        checkpoint = log.get("checkpoint")
        if not isinstance(checkpoint, str):
            raise ValueError("expected the signed checkpoint text in 'log.checkpoint'")
        token = log.get("timestamp_token")
        return cls(
            envelope=Envelope.from_dict(_mapping(data.get("envelope"), "'envelope'")),
            log_index=_int(log.get("index"), "'log.index'"),
            tree_size=_int(log.get("tree_size"), "'log.tree_size'"),
            inclusion_proof=tuple(_unb64(h, "a proof hash") for h in proof),
            checkpoint=checkpoint,
            timestamp_token=None if token is None else _unb64(token, "'log.timestamp_token'"),
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes) -> ProofBundle:
        try:
            return cls.from_dict(jsontext.loads(text, "the proof bundle"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"expected a JSON proof bundle: {exc}") from exc

    def to_tlog_proof_text(self) -> str:
        """C2SP tlog-proof text; ``extra`` holds JCS ``{envelope, timestamp_token}``."""
        token = None if self.timestamp_token is None else _b64(self.timestamp_token)
        extra = {"envelope": self.envelope.to_dict(), "timestamp_token": token}
        lines = [TLOG_PROOF_HEADER, f"extra {_b64(canonicalize(extra))}", f"index {self.log_index}"]
        lines += [_b64(h) for h in self.inclusion_proof]
        return "\n".join(lines) + "\n\n" + self.checkpoint

    @classmethod
    def from_tlog_proof_text(cls, text: str) -> ProofBundle:
        head, sep, checkpoint = text.partition("\n\n")
        lines = head.split("\n")
        if not sep or len(lines) < 3 or lines[0] != TLOG_PROOF_HEADER:
            raise ValueError(f"expected tlog-proof text starting with {TLOG_PROOF_HEADER!r}")
        if not lines[1].startswith("extra "):
            raise ValueError("expected an 'extra' line carrying the envelope")
        extra = _mapping(jsontext.loads(_unb64(lines[1][6:], "the extra line"), "the extra line"), "the extra data")
        index = lines[2].removeprefix("index ")
        if lines[2] == index or not index.isdigit() or (index != "0" and index[0] == "0"):
            raise ValueError(f"expected 'index <decimal>', got {lines[2]!r}")
        token = extra.get("timestamp_token")
        return cls(
            envelope=Envelope.from_dict(_mapping(extra.get("envelope"), "'envelope'")),
            log_index=int(index),
            tree_size=_checkpoint_size(checkpoint),
            inclusion_proof=tuple(_unb64(h, "a proof hash") for h in lines[3:]),
            checkpoint=checkpoint,
            timestamp_token=None if token is None else _unb64(token, "'timestamp_token'"),
        )


def _checkpoint_size(checkpoint: str) -> int:
    """The size line of a checkpoint, read without verifying it."""
    lines = checkpoint.split("\n")
    if len(lines) < 3 or not lines[1].isdigit():
        raise ValueError("expected a checkpoint whose second line is the tree size")
    return int(lines[1])


def _parse_time(value: Any, what: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"expected an RFC 3339 time or null for {what}, got {value!r}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise ValueError(f"expected an RFC 3339 time for {what}, got {value!r}") from exc
    if parsed.tzinfo is None:
        raise ValueError(f"expected a time zone offset in {what}, got {value!r}")
    return parsed


def format_time(value: datetime) -> str:
    """RFC 3339 in UTC with a ``Z`` suffix."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _key_to_dict(key: VerifyKey) -> dict[str, Any]:
    return {
        "keyid": key.keyid,
        "public_key": key.public_key_b64(),
        "not_before": None if key.not_before is None else format_time(key.not_before),
        "not_after": None if key.not_after is None else format_time(key.not_after),
    }


def _key_from_dict(data: Any) -> VerifyKey:
    entry = _mapping(data, "a signing key")
    public_key = _unb64(entry.get("public_key"), "'public_key'")
    if entry.get("keyid") != key_id(public_key):
        raise ValueError(f"expected keyid {key_id(public_key)}, got {entry.get('keyid')!r}")
    return VerifyKey(
        public_key,
        not_before=_parse_time(entry.get("not_before"), "'not_before'"),
        not_after=_parse_time(entry.get("not_after"), "'not_after'"),
    )


@dataclass(frozen=True)
class TrustBundle:
    """What an offline verifier trusts: the log, the signing keys, the TSA root."""

    log_origin: str
    log_verifier: NoteVerifier
    signing_keys: tuple[VerifyKey, ...]
    tsa_root_pem: str | None = None
    key_history: tuple[Envelope, ...] = ()

    def __post_init__(self) -> None:
        if not self.log_origin:
            raise ValueError("expected a non-empty log origin")
        if self.log_verifier.sig_type != NOTE_SIG_TYPE:
            raise ValueError("expected an Ed25519 note verifier key (type 0x01) for the log")
        if self.tsa_root_pem is not None:
            x509.load_pem_x509_certificate(self.tsa_root_pem.encode())

    def to_dict(self) -> dict[str, Any]:
        tsa = None if self.tsa_root_pem is None else {"root_certificate": self.tsa_root_pem}
        out: dict[str, Any] = {
            "log": {"origin": self.log_origin, "verifier_key": self.log_verifier.to_vkey()},
            "signing_keys": [_key_to_dict(k) for k in self.signing_keys],
            "tsa": tsa,
        }
        if self.key_history:
            out["key_history"] = [e.to_dict() for e in self.key_history]
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrustBundle:
        log = _mapping(_mapping(data, "the trust bundle").get("log"), "'log'")
        origin, vkey = log.get("origin"), log.get("verifier_key")
        if not isinstance(origin, str) or not isinstance(vkey, str):
            raise ValueError("expected strings 'log.origin' and 'log.verifier_key'")
        keys = data.get("signing_keys")
        if not isinstance(keys, list):
            raise ValueError("expected a list 'signing_keys'")
        tsa = data.get("tsa")
        root = None if tsa is None else _mapping(tsa, "'tsa'").get("root_certificate")
        if tsa is not None and not isinstance(root, str):
            raise ValueError("expected a PEM string 'tsa.root_certificate'")
        history = data.get("key_history", [])
        if not isinstance(history, list):
            raise ValueError("expected a list 'key_history' of DSSE envelopes")
        return cls(origin, NoteVerifier.from_vkey(vkey), tuple(map(_key_from_dict, keys)), root,
                   tuple(Envelope.from_dict(_mapping(e, "a key history entry")) for e in history))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes) -> TrustBundle:
        try:
            return cls.from_dict(jsontext.loads(text, "the trust bundle"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"expected a JSON trust bundle: {exc}") from exc
