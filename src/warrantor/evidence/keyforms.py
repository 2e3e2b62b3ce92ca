"""Public keys in the forms other tools take: PEM, JWK, and securesystemslib's key id.

Every public key Warrantor publishes (``GET /v1/keys``, ``GET /v1/trust``) carries, next
to its native form, the same key as

- ``public_key_pem``: PEM ``SubjectPublicKeyInfo`` (RFC 5280 4.1.2.7; RFC 8410 for
  Ed25519), what ``openssl pkey -pubin``, ``cryptography``'s ``load_pem_public_key`` and
  most signing libraries read;
- ``jwk``: a JSON Web Key (RFC 7517): ``OKP``/``Ed25519`` (RFC 8037) for the Ed25519 keys,
  ``EC`` (P-256, P-384, P-521) or ``RSA`` for a TSA root certificate's key. Its ``kid`` is
  the key's Warrantor id: the hex sha256 of the raw 32-byte Ed25519 key (the DSSE
  ``keyid``), or for any other key the hex sha256 of its DER SubjectPublicKeyInfo;
- ``sslib_keyid``: the key id ``securesystemslib.signer.SSlibKey.from_crypto`` computes
  by default: sha256 of the OLPC canonical JSON of ``{"keytype", "scheme", "keyval"}``
  (``ed25519``/``ed25519``/hex raw key; ``ecdsa``/``ecdsa-sha2-nistp256``/PEM; ...).

The DSSE signatures keep Warrantor's ``keyid``; a securesystemslib user builds the key
with ``SSlibKey.from_crypto(key, keyid=entry["keyid"])`` (docs/offline-verification.md).

``check_key_forms`` is the parser's side: a document that carries a form must carry the
same key in it, or it is refused, so no tool can be shown a key other than the one
Warrantor's own verifier uses.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

_RAW = (serialization.Encoding.Raw, serialization.PublicFormat.Raw)
_SPKI_DER = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
_SPKI_PEM = (serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
# JOSE curve name, JWS algorithm, securesystemslib scheme, coordinate size in bytes.
_CURVES = {
    "secp256r1": ("P-256", "ES256", "ecdsa-sha2-nistp256", 32),
    "secp384r1": ("P-384", "ES384", "ecdsa-sha2-nistp384", 48),
    "secp521r1": ("P-521", "ES512", "ecdsa-sha2-nistp521", 66),
}
FORMS = ("public_key_pem", "jwk", "sslib_keyid")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _uint(value: int, size: int | None = None) -> bytes:
    return value.to_bytes(size or max(1, (value.bit_length() + 7) // 8), "big")


def ed25519_public_key(raw: bytes) -> ed25519.Ed25519PublicKey:
    return ed25519.Ed25519PublicKey.from_public_bytes(raw)


def spki_pem(key: PublicKeyTypes) -> str:
    return key.public_bytes(*_SPKI_PEM).decode("ascii")


def default_kid(key: PublicKeyTypes) -> str:
    """Warrantor's id of a key: sha256 of the raw Ed25519 key, else of the DER SPKI."""
    if isinstance(key, ed25519.Ed25519PublicKey):
        return hashlib.sha256(key.public_bytes(*_RAW)).hexdigest()
    return hashlib.sha256(key.public_bytes(*_SPKI_DER)).hexdigest()


def jwk(key: PublicKeyTypes, kid: str | None = None) -> dict[str, str]:
    """The key as a public JWK; ``ValueError`` for a key type JOSE has no form for here."""
    kid = kid or default_kid(key)
    if isinstance(key, ed25519.Ed25519PublicKey):
        return {"kty": "OKP", "crv": "Ed25519", "x": _b64url(key.public_bytes(*_RAW)),
                "kid": kid, "alg": "EdDSA", "use": "sig"}
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name in _CURVES:
        crv, alg, _, size = _CURVES[key.curve.name]
        numbers = key.public_numbers()
        return {"kty": "EC", "crv": crv, "x": _b64url(_uint(numbers.x, size)), "y": _b64url(_uint(numbers.y, size)),
                "kid": kid, "alg": alg, "use": "sig"}
    if isinstance(key, rsa.RSAPublicKey):
        rsa_numbers = key.public_numbers()
        return {"kty": "RSA", "n": _b64url(_uint(rsa_numbers.n)), "e": _b64url(_uint(rsa_numbers.e)),
                "kid": kid, "use": "sig"}
    raise ValueError(f"expected an Ed25519, NIST P-curve or RSA public key, got {type(key).__name__}")


def _olpc(value: Any) -> str:
    """securesystemslib's ``encode_canonical`` (OLPC canonical JSON) for objects of strings:
    keys sorted, no whitespace, only ``\\`` and ``"`` escaped (a PEM keeps its newlines)."""
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{_olpc(k)}:{_olpc(value[k])}" for k in sorted(value)) + "}"
    raise TypeError(f"expected a string or an object of strings, got {type(value).__name__}")


def sslib_key(key: PublicKeyTypes) -> tuple[str, str, dict[str, str]]:
    """``(keytype, scheme, keyval)`` as ``SSlibKey.from_crypto`` derives them."""
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "ed25519", "ed25519", {"public": key.public_bytes(*_RAW).hex()}
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name in _CURVES:
        return "ecdsa", _CURVES[key.curve.name][2], {"public": spki_pem(key)}
    if isinstance(key, rsa.RSAPublicKey):
        return "rsa", "rsassa-pss-sha256", {"public": spki_pem(key)}
    raise ValueError(f"expected an Ed25519, NIST P-curve or RSA public key, got {type(key).__name__}")


def sslib_keyid(key: PublicKeyTypes) -> str:
    """The key id ``SSlibKey.from_crypto(key)`` computes when given none."""
    keytype, scheme, keyval = sslib_key(key)
    document = {"keytype": keytype, "scheme": scheme, "keyval": keyval}
    return hashlib.sha256(_olpc(document).encode("utf-8")).hexdigest()


def key_forms(key: PublicKeyTypes, kid: str | None = None) -> dict[str, Any]:
    """``public_key_pem``, ``jwk`` and ``sslib_keyid`` of one public key."""
    return {"public_key_pem": spki_pem(key), "jwk": jwk(key, kid), "sslib_keyid": sslib_keyid(key)}


def check_key_forms(entry: Mapping[str, Any], key: PublicKeyTypes, what: str) -> None:
    """Refuse (``ValueError``) an entry whose PEM, JWK or securesystemslib key id, where
    present, is not exactly what ``key_forms`` gives for ``key``: a document must not show
    other tools a key other than the one it names natively."""
    expected = key_forms(key)
    for name in FORMS:
        if name in entry and entry[name] != expected[name]:
            raise ValueError(f"expected {what} '{name}' to be the same key as its native form")
