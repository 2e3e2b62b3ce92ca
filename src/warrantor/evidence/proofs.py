"""Proof bundles and trust bundles: everything an offline verifier is given.

A ``ProofBundle`` carries one DSSE envelope, its log index, its RFC 6962 inclusion proof,
the signed checkpoint (C2SP tlog-checkpoint) it is proven against, with the witnesses'
cosignature lines, and the RFC 3161 time-stamp for that checkpoint: the bare token
(``timestamp_token``, a CMS ContentInfo) and the same token in a granted ``TimeStampResp``
(``timestamp_response``, what ``openssl ts -verify -in``, ``rfc3161-client`` and sigstore
bundles read). It has two encodings: JSON (``to_dict``/``from_dict``) and C2SP tlog-proof
text (``to_tlog_proof_text``/``from_tlog_proof_text``), in which the envelope and the
time-stamp travel, canonical-JSON encoded, in the ``extra`` line.

A ``TrustBundle`` names what the verifier trusts: the log origin and its note verifier
key, the envelope signing keys with their validity, optionally a TSA root, the signed key
history (``warrantor.evidence.keyhistory``) that lets a holder of an older bundle follow
each rotation to the new key, and the witnesses' cosigner keys with the quorum of them
that must have cosigned a checkpoint. Every public key in it is also given as PEM, JWK and
securesystemslib key id (``warrantor.evidence.keyforms``).

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

from warrantor.errors import EvidenceError
from warrantor.evidence import jsontext
from warrantor.evidence.canonical import canonicalize
from warrantor.evidence.checkpoint import COSIG_SIG_TYPE, NOTE_SIG_TYPE, NoteVerifier
from warrantor.evidence.dsse import Envelope
from warrantor.evidence.keyforms import check_key_forms, ed25519_public_key, key_forms
from warrantor.evidence.keys import VerifyKey, key_id
from warrantor.evidence.tsa import response_from_token, token_from_response

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


def _timestamp(token: Any, response: Any, where: str) -> bytes | None:
    """The token from ``timestamp_token`` and/or ``timestamp_response``; when both are
    given, the response must carry exactly that token."""
    token_der = None if token is None else _unb64(token, f"'{where}timestamp_token'")
    if response is None:
        return token_der
    try:
        carried = token_from_response(_unb64(response, f"'{where}timestamp_response'"))
    except EvidenceError as exc:
        raise ValueError(f"expected a granted TimeStampResp in '{where}timestamp_response': {exc.message}") from exc
    if token_der is not None and carried != token_der:
        raise ValueError(f"expected '{where}timestamp_response' to carry the token of '{where}timestamp_token'")
    return carried


def timestamp_fields(token: bytes | None) -> dict[str, str | None]:
    """``timestamp_token`` and ``timestamp_response`` (base64 DER) for one token."""
    if token is None:
        return {"timestamp_token": None, "timestamp_response": None}
    return {"timestamp_token": _b64(token), "timestamp_response": _b64(response_from_token(token))}


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
        return {
            "envelope": self.envelope.to_dict(),
            "log": {
                "index": self.log_index,
                "tree_size": self.tree_size,
                "inclusion_proof": [_b64(h) for h in self.inclusion_proof],
                "checkpoint": self.checkpoint,
                **timestamp_fields(self.timestamp_token),
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
        return cls(
            envelope=Envelope.from_dict(_mapping(data.get("envelope"), "'envelope'")),
            log_index=_int(log.get("index"), "'log.index'"),
            tree_size=_int(log.get("tree_size"), "'log.tree_size'"),
            inclusion_proof=tuple(_unb64(h, "a proof hash") for h in proof),
            checkpoint=checkpoint,
            timestamp_token=_timestamp(log.get("timestamp_token"), log.get("timestamp_response"), "log."),
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
        """C2SP tlog-proof text; ``extra`` holds JCS ``{envelope, timestamp_token,
        timestamp_response}``; the checkpoint ends the text with its cosignature lines."""
        extra = {"envelope": self.envelope.to_dict(), **timestamp_fields(self.timestamp_token)}
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
        return cls(
            envelope=Envelope.from_dict(_mapping(extra.get("envelope"), "'envelope'")),
            log_index=int(index),
            tree_size=_checkpoint_size(checkpoint),
            inclusion_proof=tuple(_unb64(h, "a proof hash") for h in lines[3:]),
            checkpoint=checkpoint,
            timestamp_token=_timestamp(extra.get("timestamp_token"), extra.get("timestamp_response"), ""),
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
        **key_forms(ed25519_public_key(key.public_key)),
        "not_before": None if key.not_before is None else format_time(key.not_before),
        "not_after": None if key.not_after is None else format_time(key.not_after),
    }


def _key_from_dict(data: Any) -> VerifyKey:
    entry = _mapping(data, "a signing key")
    public_key = _unb64(entry.get("public_key"), "'public_key'")
    if entry.get("keyid") != key_id(public_key):
        raise ValueError(f"expected keyid {key_id(public_key)}, got {entry.get('keyid')!r}")
    key = VerifyKey(
        public_key,
        not_before=_parse_time(entry.get("not_before"), "'not_before'"),
        not_after=_parse_time(entry.get("not_after"), "'not_after'"),
    )
    check_key_forms(entry, ed25519_public_key(public_key), f"signing key {key.keyid[:16]}")
    return key


def _note_key_to_dict(verifier: NoteVerifier) -> dict[str, Any]:
    return {"name": verifier.name, "vkey": verifier.to_vkey(), **key_forms(ed25519_public_key(verifier.public_key))}


def _witness_from_dict(data: Any) -> NoteVerifier:
    entry = _mapping(data, "a witness key")
    vkey = entry.get("vkey")
    if not isinstance(vkey, str):
        raise ValueError("expected a cosigner vkey string in 'witnesses.keys[].vkey'")
    verifier = NoteVerifier.from_vkey(vkey)
    if entry.get("name", verifier.name) != verifier.name:
        raise ValueError(f"expected witness name {verifier.name!r} (the vkey's), got {entry.get('name')!r}")
    check_key_forms(entry, ed25519_public_key(verifier.public_key), f"witness {verifier.name!r}")
    return verifier


def _tsa_to_dict(root_pem: str) -> dict[str, Any]:
    root = x509.load_pem_x509_certificate(root_pem.encode())
    return {"root_certificate": root_pem, **key_forms(root.public_key())}


@dataclass(frozen=True)
class TrustBundle:
    """What an offline verifier trusts: the log, the signing keys, the TSA root."""

    log_origin: str
    log_verifier: NoteVerifier
    signing_keys: tuple[VerifyKey, ...]
    tsa_root_pem: str | None = None
    key_history: tuple[Envelope, ...] = ()
    witnesses: tuple[NoteVerifier, ...] = ()
    witness_quorum: int = 0

    def __post_init__(self) -> None:
        if not self.log_origin:
            raise ValueError("expected a non-empty log origin")
        if self.log_verifier.sig_type != NOTE_SIG_TYPE:
            raise ValueError("expected an Ed25519 note verifier key (type 0x01) for the log")
        if self.tsa_root_pem is not None:
            x509.load_pem_x509_certificate(self.tsa_root_pem.encode())
        if any(w.sig_type != COSIG_SIG_TYPE for w in self.witnesses):
            raise ValueError("expected witness keys to be cosigner keys (type 0x04)")
        if len({w.key_hash for w in self.witnesses}) != len(self.witnesses):
            raise ValueError("expected each witness key once")
        if not 0 <= self.witness_quorum <= len(self.witnesses):
            raise ValueError(
                f"expected a witness quorum between 0 and {len(self.witnesses)} (the witness keys), "
                f"got {self.witness_quorum}"
            )

    def to_dict(self) -> dict[str, Any]:
        log_key = ed25519_public_key(self.log_verifier.public_key)
        out: dict[str, Any] = {
            "log": {"origin": self.log_origin, "verifier_key": self.log_verifier.to_vkey(), **key_forms(log_key)},
            "signing_keys": [_key_to_dict(k) for k in self.signing_keys],
            "tsa": None if self.tsa_root_pem is None else _tsa_to_dict(self.tsa_root_pem),
        }
        if self.witnesses or self.witness_quorum:
            out["witnesses"] = {"quorum": self.witness_quorum, "keys": [_note_key_to_dict(w) for w in self.witnesses]}
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
        log_verifier = NoteVerifier.from_vkey(vkey)
        check_key_forms(log, ed25519_public_key(log_verifier.public_key), "the log key")
        if tsa is not None:
            tsa_key = x509.load_pem_x509_certificate(str(root).encode()).public_key()
            check_key_forms(_mapping(tsa, "'tsa'"), tsa_key, "the TSA root")
        witnesses, quorum = _witnesses_from_dict(data.get("witnesses"))
        return cls(origin, log_verifier, tuple(map(_key_from_dict, keys)), root,
                   tuple(Envelope.from_dict(_mapping(e, "a key history entry")) for e in history),
                   witnesses, quorum)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes) -> TrustBundle:
        try:
            return cls.from_dict(jsontext.loads(text, "the trust bundle"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"expected a JSON trust bundle: {exc}") from exc


def _witnesses_from_dict(data: Any) -> tuple[tuple[NoteVerifier, ...], int]:
    if data is None:
        return (), 0
    block = _mapping(data, "'witnesses'")
    keys = block.get("keys")
    if not isinstance(keys, list):
        raise ValueError("expected a list 'witnesses.keys'")
    return tuple(map(_witness_from_dict, keys)), _int(block.get("quorum"), "'witnesses.quorum'")
