"""The deployment's signing keys on disk, and their public record in the store.

Layout under the data directory::

    keys/signing/<keyid>.pem   Ed25519 private keys, mode 0600, one per generation
    keys/active                the key id that signs new evidence
    keys/log.pem               the checkpoint (note) signing key

Rotation makes a new key active and closes the old key's validity at that instant; the
old public key stays published so evidence it signed keeps verifying.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from warrantor.evidence.keys import SigningKey, VerifyKey
from warrantor.store import Repo, Store


@dataclass(frozen=True)
class PublishedKey:
    keyid: str
    public_key: bytes
    not_before: datetime
    not_after: datetime | None

    def verify_key(self) -> VerifyKey:
        return VerifyKey(self.public_key, self.not_before, self.not_after)


class KeyRing:
    def __init__(self, key_dir: Path, store: Store) -> None:
        self._dir = key_dir
        self._store = store
        self._lock = threading.Lock()
        self._active: SigningKey | None = None

    @property
    def signing_dir(self) -> Path:
        return self._dir / "signing"

    def ensure(self, now: datetime) -> SigningKey:
        """Load the active key, creating the first one on a fresh data directory."""
        with self._lock:
            self._dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            self.signing_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            pointer = self._dir / "active"
            if pointer.exists():
                key = SigningKey.load(self.signing_dir / f"{pointer.read_text().strip()}.pem")
            else:
                key = self._create(now, previous=None)
            self._active = key
            self._publish(key, now, None, only_if_missing=True)
            return key

    def rotate(self, now: datetime) -> SigningKey:
        with self._lock:
            previous = self._active
            key = self._create(now, previous=previous)
            if previous is not None:
                self._publish(previous, now, now, only_if_missing=False)
            self._publish(key, now, None, only_if_missing=True)
            self._active = key
            return key

    def _create(self, now: datetime, previous: SigningKey | None) -> SigningKey:
        key = SigningKey.generate()
        key.save(self.signing_dir / f"{key.keyid}.pem")
        tmp = self._dir / "active.tmp"
        tmp.write_text(key.keyid + "\n")
        os.replace(tmp, self._dir / "active")
        return key

    def _publish(
        self, key: SigningKey, not_before: datetime, not_after: datetime | None, *, only_if_missing: bool
    ) -> None:
        def job(repo: Repo) -> None:
            known = {k[0]: k for k in repo.signing_keys()}
            if only_if_missing and key.keyid in known:
                return
            start = known[key.keyid][2] if key.keyid in known else not_before
            repo.upsert_signing_key(key.keyid, key.public_key, start, not_after)

        self._store.write(job)

    @property
    def active(self) -> SigningKey:
        if self._active is None:
            raise RuntimeError("KeyRing.ensure() must run before signing")
        return self._active

    def published(self) -> list[PublishedKey]:
        with self._store.read() as repo:
            return [PublishedKey(*row) for row in repo.signing_keys()]


def load_or_create_key(path: Path) -> SigningKey:
    """A single key file (the log's note key, say), created 0600 on first use."""
    if path.exists():
        return SigningKey.load(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = SigningKey.generate()
    key.save(path)
    return key
