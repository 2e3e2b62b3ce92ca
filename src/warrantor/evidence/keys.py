"""Ed25519 signing keys, their DSSE key ids, and the published key set.

A key id is the hex sha256 of the raw 32-byte public key (docs/offline-verification.md), so anyone
holding the public key can recompute it. Keys rotate: a retired key stays published with
its validity period so that evidence it signed keeps verifying.
"""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey


def key_id(public_key: bytes) -> str:
    return hashlib.sha256(public_key).hexdigest()


@dataclass(frozen=True)
class VerifyKey:
    """A public Ed25519 key with the period in which it may have signed."""

    public_key: bytes
    not_before: datetime | None = None
    not_after: datetime | None = None

    def __post_init__(self) -> None:
        if len(self.public_key) != 32:
            raise ValueError(f"expected a 32-byte Ed25519 public key, got {len(self.public_key)}")

    @cached_property
    def keyid(self) -> str:
        return key_id(self.public_key)

    @cached_property
    def _ed25519(self) -> Ed25519PublicKey:
        """The key object, built once per ``VerifyKey`` (the fields are frozen)."""
        return Ed25519PublicKey.from_public_bytes(self.public_key)

    def verify(self, signature: bytes, message: bytes) -> bool:
        try:
            self._ed25519.verify(signature, message)
        except InvalidSignature:
            return False
        return True

    def valid_at(self, when: datetime) -> bool:
        if self.not_before is not None and when < self.not_before:
            return False
        return self.not_after is None or when <= self.not_after

    def public_key_b64(self) -> str:
        return base64.b64encode(self.public_key).decode()


class SigningKey:
    """An Ed25519 private key. ``Signer`` for DSSE envelopes and notes."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key
        self.public_key = private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self.keyid = key_id(self.public_key)

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> SigningKey:
        return cls(Ed25519PrivateKey.from_private_bytes(seed))

    @classmethod
    def from_pem(cls, pem: bytes) -> SigningKey:
        key = serialization.load_pem_private_key(pem, password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"expected an Ed25519 private key, got {type(key).__name__}")
        return cls(key)

    def to_pem(self) -> bytes:
        return self._key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    @classmethod
    def load(cls, path: Path) -> SigningKey:
        return cls.from_pem(path.read_bytes())

    def save(self, path: Path) -> None:
        """Write the PEM with mode 0600, created that way so it is never world-readable."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(self.to_pem())

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message)

    def verify_key(self) -> VerifyKey:
        return VerifyKey(self.public_key)
