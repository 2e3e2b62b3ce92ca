"""Public keys as PEM, JWK and securesystemslib key ids: what other tools compute from them
is the key Warrantor uses, and a bundle showing tools another key is refused."""

from __future__ import annotations

import copy
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from securesystemslib.signer import SSlibKey

from warrantor.evidence.checkpoint import COSIG_SIG_TYPE, NoteSigner, NoteVerifier
from warrantor.evidence.keyforms import default_kid, jwk, key_forms, spki_pem, sslib_keyid
from warrantor.evidence.keys import SigningKey, VerifyKey
from warrantor.evidence.proofs import TrustBundle
from warrantor.evidence.tsa import generate_chain

_RAW = (serialization.Encoding.Raw, serialization.PublicFormat.Raw)
_DER = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _keys() -> list[PublicKeyTypes]:
    return [
        ed25519.Ed25519PrivateKey.from_private_bytes(b"k" * 32).public_key(),
        ec.generate_private_key(ec.SECP256R1()).public_key(),
        ec.generate_private_key(ec.SECP384R1()).public_key(),
        ec.generate_private_key(ec.SECP521R1()).public_key(),
        rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key(),
    ]


@pytest.mark.parametrize("key", _keys(), ids=["ed25519", "p256", "p384", "p521", "rsa"])
def test_sslib_keyid_is_what_securesystemslib_from_crypto_computes(key: PublicKeyTypes) -> None:
    assert sslib_keyid(key) == SSlibKey.from_crypto(key).keyid


@pytest.mark.parametrize("key", _keys(), ids=["ed25519", "p256", "p384", "p521", "rsa"])
def test_pem_and_jwk_read_back_by_other_libraries_give_the_same_key(key: PublicKeyTypes) -> None:
    from_pem = serialization.load_pem_public_key(spki_pem(key).encode())
    assert from_pem.public_bytes(*_DER) == key.public_bytes(*_DER)
    from_jwk = jwt.PyJWK(jwk(key)).key  # PyJWT's own JWK parser
    assert from_jwk.public_bytes(*_DER) == key.public_bytes(*_DER)


def test_ed25519_forms_carry_the_dsse_keyid_as_kid() -> None:
    key = SigningKey.from_seed(b"s" * 32)
    public = ed25519.Ed25519PublicKey.from_public_bytes(key.public_key)
    doc = jwk(public)
    assert doc["kid"] == key.keyid == default_kid(public)
    assert (doc["kty"], doc["crv"], doc["alg"]) == ("OKP", "Ed25519", "EdDSA")
    assert set(doc) == {"kty", "crv", "x", "kid", "alg", "use"}  # public only: no "d"


def test_p256_jwk_has_fixed_length_coordinates() -> None:
    # A coordinate with leading zero bytes must still be 32 bytes (RFC 7518 6.2.1.2).
    for _ in range(64):
        key = ec.generate_private_key(ec.SECP256R1()).public_key()
        doc = jwk(key)
        assert (doc["kty"], doc["crv"], doc["alg"]) == ("EC", "P-256", "ES256")
        assert len(doc["x"]) == len(doc["y"]) == 43


def _trust() -> TrustBundle:
    chain = generate_chain("Forms TSA")
    witness = NoteVerifier("witness.example", SigningKey.from_seed(b"w" * 32).public_key, COSIG_SIG_TYPE)
    return TrustBundle("log.example/forms", NoteSigner("log.example/forms", SigningKey.from_seed(b"l" * 32)).verifier(),
                       (VerifyKey(SigningKey.from_seed(b"s" * 32).public_key),), chain.root_cert_pem.decode(),
                       witnesses=(witness,), witness_quorum=1)


def test_every_key_of_a_trust_bundle_is_given_in_every_form() -> None:
    trust = _trust()
    doc = trust.to_dict()
    entries = [doc["log"], doc["tsa"], *doc["signing_keys"], *doc["witnesses"]["keys"]]
    for entry in entries:
        key = serialization.load_pem_public_key(entry["public_key_pem"].encode())
        assert entry == {**entry, **key_forms(key)}
        assert entry["sslib_keyid"] == SSlibKey.from_crypto(key).keyid
    assert doc["tsa"]["jwk"]["crv"] == "P-256"
    assert TrustBundle.from_dict(doc) == trust


def _other_forms() -> dict[str, Any]:
    return key_forms(ed25519.Ed25519PrivateKey.from_private_bytes(b"x" * 32).public_key())


@pytest.mark.parametrize("form", ["public_key_pem", "jwk", "sslib_keyid"])
@pytest.mark.parametrize("where", ["signing key", "log", "tsa", "witness"])
def test_a_form_naming_another_key_is_refused(form: str, where: str) -> None:
    """An attacker who edits a trust bundle cannot show securesystemslib or a JOSE tool one
    key while Warrantor's verifier checks another: the bundle does not parse."""
    doc = copy.deepcopy(_trust().to_dict())
    entry = {"signing key": doc["signing_keys"][0], "log": doc["log"], "tsa": doc["tsa"],
             "witness": doc["witnesses"]["keys"][0]}[where]
    entry[form] = _other_forms()[form]
    with pytest.raises(ValueError, match="same key"):
        TrustBundle.from_dict(doc)


def test_a_bundle_without_the_forms_still_parses() -> None:
    """Bundles saved before the forms existed stay valid pins."""
    trust = _trust()
    doc = copy.deepcopy(trust.to_dict())
    for entry in [doc["log"], doc["tsa"], *doc["signing_keys"], *doc["witnesses"]["keys"]]:
        for form in ("public_key_pem", "jwk", "sslib_keyid"):
            entry.pop(form)
    assert TrustBundle.from_dict(doc) == trust


def test_raw_key_bytes_survive_the_round_trip() -> None:
    raw = SigningKey.from_seed(b"r" * 32).public_key
    pem = key_forms(ed25519.Ed25519PublicKey.from_public_bytes(raw))["public_key_pem"]
    assert serialization.load_pem_public_key(pem.encode()).public_bytes(*_RAW) == raw
