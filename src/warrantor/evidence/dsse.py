"""DSSE v1 envelopes (github.com/secure-systems-lab/dsse, protocol.md).

The signature covers the pre-authentication encoding
``PAE = "DSSEv1" SP len(type) SP type SP len(body) SP body`` where lengths are ASCII
decimal byte counts and ``body`` is the raw payload. The JSON form base64-encodes the
payload and each signature (standard alphabet, padded).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from warrantor.evidence import jsontext
from warrantor.evidence.canonical import canonicalize
from warrantor.evidence.keys import VerifyKey

IN_TOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"


class Signer(Protocol):
    keyid: str

    def sign(self, message: bytes) -> bytes: ...


def pae(payload_type: str, payload: bytes) -> bytes:
    t = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)


@dataclass(frozen=True)
class Signature:
    keyid: str
    sig: bytes


@dataclass(frozen=True)
class Envelope:
    payload_type: str
    payload: bytes
    signatures: tuple[Signature, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "payloadType": self.payload_type,
            "payload": base64.b64encode(self.payload).decode(),
            "signatures": [
                {"keyid": s.keyid, "sig": base64.b64encode(s.sig).decode()}
                for s in self.signatures
            ],
        }

    def canonical_bytes(self) -> bytes:
        """The canonical JSON of the envelope; its sha256 is the log entry."""
        return canonicalize(self.to_dict())

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Envelope:
        """Parse the JSON form; raises ``ValueError`` with what was expected."""
        if not isinstance(data, Mapping):
            raise ValueError(f"expected a DSSE envelope object, got {type(data).__name__}")
        payload_type = data.get("payloadType")
        payload_b64 = data.get("payload")
        sigs = data.get("signatures")
        if not isinstance(payload_type, str) or not isinstance(payload_b64, str):
            raise ValueError("expected string fields 'payloadType' and 'payload'")
        if not isinstance(sigs, list) or not sigs:
            raise ValueError("expected a non-empty list 'signatures'")
        parsed = []
        for s in sigs:
            if not isinstance(s, Mapping) or not isinstance(s.get("sig"), str):
                raise ValueError("expected each signature to be an object with a string 'sig'")
            parsed.append(Signature(keyid=str(s.get("keyid", "")), sig=_b64decode(s["sig"])))
        return cls(payload_type, _b64decode(payload_b64), tuple(parsed))

    @classmethod
    def from_json(cls, text: str | bytes) -> Envelope:
        try:
            data = jsontext.loads(text, "the DSSE envelope")
        except json.JSONDecodeError as exc:
            raise ValueError(f"expected a JSON DSSE envelope: {exc}") from exc
        return cls.from_dict(data)

    def statement(self) -> dict[str, Any]:
        """The decoded in-toto Statement (no signature check: call ``verify`` first)."""
        value = jsontext.loads(self.payload, "the DSSE payload")
        if not isinstance(value, dict):
            raise ValueError("expected the payload to be a JSON object")
        return value


def _b64decode(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"expected standard base64, got {text[:16]!r}...") from exc


def sign_envelope(payload: bytes, signer: Signer, payload_type: str = IN_TOTO_PAYLOAD_TYPE) -> Envelope:
    sig = signer.sign(pae(payload_type, payload))
    return Envelope(payload_type, payload, (Signature(signer.keyid, sig),))


def verify_envelope(envelope: Envelope, keys: Iterable[VerifyKey]) -> VerifyKey | None:
    """The key whose signature over the PAE verifies, or ``None``.

    Signatures are matched to keys by key id first; a signature with an unknown key id is
    tried against no key, so a foreign key can never verify.
    """
    by_id = {k.keyid: k for k in keys}
    message = pae(envelope.payload_type, envelope.payload)
    for signature in envelope.signatures:
        key = by_id.get(signature.keyid)
        if key is not None and key.verify(signature.sig, message):
            return key
    return None
