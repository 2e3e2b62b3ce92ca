"""COSE_Sign1 (RFC 9052) with Ed25519, for SCITT signed statements and COSE receipts.

Warrantor's evidence stays DSSE; this module re-expresses one logged envelope for SCITT
tools (RFC 9943 architecture, RFC 9942 COSE receipts), as ``service/proof/scitt.py`` assembles it:

- a **signed statement**: a tagged (18) ``COSE_Sign1`` whose payload is the envelope's
  canonical JSON (the bytes whose SHA-256 is the log entry), protected header ``alg``
  EdDSA (-8), ``content type``, ``kid`` and ``CWT Claims`` (15: ``iss``, ``sub``, ``iat``);
- a **receipt of inclusion**: a tagged ``COSE_Sign1`` with a detached payload (the Merkle
  root at ``tree_size``), protected header ``alg``, ``kid``, ``vds`` (395) = 1
  (RFC9162_SHA256) and ``CWT Claims``, and in the unprotected header ``vdp`` (396) =
  ``{-1: [bstr .cbor [tree_size, leaf_index, [path...]]]}``;
- a **transparent statement**: the signed statement with the receipt, CBOR-encoded as a
  byte string, in the ``receipts`` (394) array of its unprotected header.

Signatures are over ``Sig_structure = ["Signature1", protected, h'', payload]`` (RFC 9052
section 4.4); a receipt's payload is the root, which a verifier recomputes from the leaf
and the proof (RFC 9942: the payload is detached so that it must). Maps are encoded
deterministically (``cbor2`` canonical). The ``kid`` of a key is its 32-byte SHA-256, the
same value as the hex ``keyid`` (and JWK ``kid``) of the trust bundle.

Domain separation: the signing key also signs DSSE PAEs (``DSSEv1 ...``) and the log key
C2SP notes (UTF-8 text); a ``Sig_structure`` always starts with the byte 0x84, which
neither can start with, so no signature made here is valid as one of theirs.

This module holds encodings only (no keys are chosen, nothing is read).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import cbor2

from warrantor.evidence.keys import SigningKey, VerifyKey

COSE_SIGN1_TAG = 18
# Header labels: RFC 9052 (alg, content type, kid), RFC 9597 (CWT Claims), RFC 9942.
ALG, CONTENT_TYPE, KID, CWT_CLAIMS = 1, 3, 4, 15
RECEIPTS, VDS, VDP = 394, 395, 396
EDDSA = -8  # RFC 9053: EdDSA; Ed25519 here
RFC9162_SHA256 = 1  # the COSE Verifiable Data Structure value of RFC 9942
INCLUSION_PROOFS = -1  # the vdp map label of RFC9162_SHA256 inclusion proofs
# CWT claim keys (RFC 8392)
ISS, SUB, IAT = 1, 2, 6


def _dumps(value: Any) -> bytes:
    return cbor2.dumps(value, canonical=True)


def cose_kid(public_key: bytes) -> bytes:
    """A key's COSE ``kid``: SHA-256 of the raw key (``kid.hex()`` is its Warrantor keyid)."""
    return hashlib.sha256(public_key).digest()


def sig_structure(protected: bytes, payload: bytes) -> bytes:
    """The bytes a COSE_Sign1 signature covers (no external AAD)."""
    return _dumps(["Signature1", protected, b"", payload])


@dataclass(frozen=True)
class Sign1:
    """One COSE_Sign1: the encoded protected header, the unprotected map, the payload
    (``None`` when detached) and the signature."""

    protected: bytes
    unprotected: Mapping[int, Any]
    payload: bytes | None
    signature: bytes

    def encode(self) -> bytes:
        """Tagged (18) CBOR."""
        return _dumps(cbor2.CBORTag(COSE_SIGN1_TAG, [self.protected, dict(self.unprotected),
                                                     self.payload, self.signature]))

    def header(self) -> dict[int, Any]:
        value = cbor2.loads(self.protected)
        if not isinstance(value, dict):
            raise ValueError("expected the protected header to be a CBOR map")
        return value

    def verify(self, key: VerifyKey, payload: bytes | None = None) -> bool:
        """Whether ``key`` signed this message over its payload (or ``payload`` when detached)."""
        signed = self.payload if payload is None else payload
        if signed is None:
            raise ValueError("expected a payload for a message whose payload is detached")
        return key.verify(self.signature, sig_structure(self.protected, signed))

    @classmethod
    def decode(cls, data: bytes) -> Sign1:
        item = cbor2.loads(data)
        if not isinstance(item, cbor2.CBORTag) or item.tag != COSE_SIGN1_TAG:
            raise ValueError("expected a COSE_Sign1 message (CBOR tag 18)")
        parts = item.value
        if (not isinstance(parts, list | tuple) or len(parts) != 4 or not isinstance(parts[0], bytes)
                or not isinstance(parts[1], dict) or not isinstance(parts[2], bytes | None)
                or not isinstance(parts[3], bytes)):
            raise ValueError("expected [protected bstr, unprotected map, payload bstr / nil, signature bstr]")
        return cls(parts[0], parts[1], parts[2], parts[3])


def sign1(key: SigningKey, header: Mapping[int, Any], payload: bytes, *, detached: bool = False,
          unprotected: Mapping[int, Any] | None = None) -> Sign1:
    """Sign ``payload`` under the protected ``header`` (which must name EdDSA)."""
    if header.get(ALG) != EDDSA:
        raise ValueError("expected the protected header to name alg EdDSA (-8)")
    protected = _dumps(dict(header))
    signature = key.sign(sig_structure(protected, payload))
    return Sign1(protected, dict(unprotected or {}), None if detached else payload, signature)


def claims(issuer: str, subject: str, issued_at: int) -> dict[int, Any]:
    """A CWT claim set of issuer, subject and issue time (POSIX seconds)."""
    return {ISS: issuer, SUB: subject, IAT: issued_at}


def inclusion_proof(tree_size: int, leaf_index: int, path: Sequence[bytes]) -> bytes:
    """An RFC9162_SHA256 inclusion proof: ``bstr .cbor [tree_size, leaf_index, [path]]``.

    The path is leaf-sibling first (RFC 9162 section 2.1.3.1); it is empty for a tree of
    one leaf, whose root is the leaf hash itself."""
    if not 0 <= leaf_index < tree_size:
        raise ValueError(f"expected 0 <= leaf index < tree size, got {leaf_index} and {tree_size}")
    return _dumps([tree_size, leaf_index, list(path)])


def receipt_of_inclusion(log_key: SigningKey, root: bytes, proof: bytes, cwt: Mapping[int, Any]) -> Sign1:
    """A COSE receipt (RFC 9942, RFC9162_SHA256): the log key's signature over ``root``,
    detached, with the inclusion ``proof`` in the unprotected header."""
    header = {ALG: EDDSA, KID: cose_kid(log_key.public_key), VDS: RFC9162_SHA256, CWT_CLAIMS: dict(cwt)}
    return sign1(log_key, header, root, detached=True, unprotected={VDP: {INCLUSION_PROOFS: [proof]}})


def signed_statement(key: SigningKey, payload: bytes, content_type: str, cwt: Mapping[int, Any]) -> Sign1:
    """A SCITT signed statement (RFC 9943 section 4): ``payload`` attached, unprotected header empty."""
    header = {ALG: EDDSA, CONTENT_TYPE: content_type, KID: cose_kid(key.public_key), CWT_CLAIMS: dict(cwt)}
    return sign1(key, header, payload)


def transparent(statement: Sign1, receipts: Sequence[Sign1]) -> Sign1:
    """The statement with ``receipts`` in its unprotected header (394), each a CBOR byte
    string holding one tagged receipt; the signature is unchanged (unprotected headers are
    not signed)."""
    return Sign1(statement.protected, {**statement.unprotected, RECEIPTS: [r.encode() for r in receipts]},
                 statement.payload, statement.signature)
