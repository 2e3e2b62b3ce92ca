"""The deployment's evidence signing keys: key files are the only trust anchor.

Layout under the data directory::

    keys/signing/<keyid>.pem   Ed25519 private keys, mode 0600, one per generation
    keys/history.jsonl         the signed key history, one DSSE envelope per line
    keys/log.pem               the checkpoint (note) signing key

Rules:

1. The keys that sign and the keys that are trusted come from these files (the place a KMS
   would later take), never from a database row. The history (``evidence.keyhistory``)
   starts with a genesis statement signed by the first key; every rotation appends a
   statement signed by the *old* key naming the new one and the instant of the change.
   Each key's validity is derived from the statements: valid from the statement that
   introduced it until the next rotation. The active key is the last one in the history.
2. A history that does not replay (bad signature, broken chain) stops the server from
   starting (``KeyHistoryError``): fail closed rather than sign or verify with a guess.
3. Every history statement is logged in the transparency log (an entry without an
   evidence row, see ``store.repo_trust``), so an auditor holding an old trust bundle can
   follow each rotation to the new key, and see that it was announced.
4. The ``signing_keys`` table is a mirror the ring writes for operators. A row naming a
   key the ring does not hold, or disagreeing with it, is reported (``row_findings``:
   ``/v1/keys``, ``/v1/trust``, ``warrantor audit``), never trusted.
5. A data directory from before the history existed gets a genesis for its active key
   (``keys/active``), dated by the key file's modification time.

The history file is reloaded when it changes on disk, so a rotation made by
``warrantor keys rotate`` is trusted by running servers at once; they sign with the new
key after a restart.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from warrantor.errors import EvidenceError, WarrantorError
from warrantor.evidence.canonical import sha256_hex
from warrantor.evidence.dsse import Envelope
from warrantor.evidence.keyhistory import GENESIS, ROTATION, key_statement, replay_history
from warrantor.evidence.keys import SigningKey, VerifyKey
from warrantor.store import Repo, Store
from warrantor.store import repo_trust as rt

HISTORY_FILE = "history.jsonl"


class KeyHistoryError(WarrantorError):
    """The key files do not form a valid signed history: nothing can be signed or trusted."""

    code = "KEY_HISTORY_INVALID"
    status = 503
    title = "Key history invalid"


@dataclass(frozen=True)
class TrustedKey:
    """A signing key the ring holds, with the validity its history statements give it."""

    keyid: str
    public_key: bytes
    not_before: datetime
    not_after: datetime | None

    def verify_key(self) -> VerifyKey:
        return VerifyKey(self.public_key, self.not_before, self.not_after)


@dataclass(frozen=True)
class KeyRowFinding:
    """A ``signing_keys`` row that the key files do not back."""

    keyid: str
    code: str  # UNTRUSTED_KEY_ROW or KEY_ROW_MISMATCH
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "keyid": self.keyid, "detail": self.detail}


def statement_ref(keyid: str) -> str:
    """The ``log_entries.evidence_id`` of the statement that introduced ``keyid``."""
    return f"keystmt_{keyid[:40]}"


def statement_entry(envelope: Envelope) -> bytes:
    return bytes.fromhex(sha256_hex(envelope.canonical_bytes()))


class KeyRing:
    def __init__(self, key_dir: Path, store: Store) -> None:
        self._dir = key_dir
        self._store = store
        self._lock = threading.Lock()
        self._active: SigningKey | None = None
        self._history: tuple[Envelope, ...] = ()
        self._keys: tuple[TrustedKey, ...] = ()
        self._stamp: tuple[int, int, int] | None = None

    @property
    def signing_dir(self) -> Path:
        return self._dir / "signing"

    @property
    def history_path(self) -> Path:
        return self._dir / HISTORY_FILE

    # -- start and rotation ----------------------------------------------------------
    def ensure(self, now: datetime) -> SigningKey:
        """Load the history and the active key, creating the first key (and its genesis
        statement) on a fresh data directory; log any statement not logged yet."""
        with self._lock:
            self._dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            self.signing_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            if not self.history_path.exists():
                self._genesis(now)
            self._reload(force=True)
            self._active = self._load_private(self._keys[-1].keyid)
            self._sync_store(now)
            return self._active

    def _genesis(self, now: datetime) -> None:
        pointer = self._dir / "active"  # rule 5: a data directory from before the history
        if pointer.exists():
            pem = self.signing_dir / f"{pointer.read_text().strip()}.pem"
            key, since = SigningKey.load(pem), datetime.fromtimestamp(pem.stat().st_mtime, UTC)
        else:
            key, since = SigningKey.generate(), now
            key.save(self.signing_dir / f"{key.keyid}.pem")
        statement = key_statement(GENESIS, 0, key.public_key, since, None, key)
        tmp = self._dir / f"{HISTORY_FILE}.{os.getpid()}.tmp"
        tmp.write_text(_line(statement))
        try:
            os.link(tmp, self.history_path)  # exclusive: another process may have won the race
        except FileExistsError:
            pass
        finally:
            tmp.unlink()

    def rotate(self, now: datetime) -> SigningKey:
        """A new active key, announced by a statement the old key signs, appended to the
        history and logged; the old key stays trusted for what it signed before ``now``."""
        with self._lock:
            self._reload(force=True)
            previous = self._load_private(self._keys[-1].keyid)
            if self._keys[-1].not_before > now:
                raise KeyHistoryError("expected the rotation to be later than the active key's start")
            key = SigningKey.generate()
            key.save(self.signing_dir / f"{key.keyid}.pem")
            statement = key_statement(ROTATION, len(self._history), key.public_key, now, previous.keyid, previous)
            history = (*self._history, statement)
            _check(history)
            tmp = self._dir / f"{HISTORY_FILE}.{os.getpid()}.tmp"
            tmp.write_text("".join(_line(e) for e in history))
            os.replace(tmp, self.history_path)
            self._reload(force=True)
            self._active = key
            self._sync_store(now)
            return key

    def _load_private(self, keyid: str) -> SigningKey:
        path = self.signing_dir / f"{keyid}.pem"
        try:
            key = SigningKey.load(path)
        except (OSError, ValueError) as exc:
            raise KeyHistoryError(f"the active key {keyid} has no usable key file {path}: {exc}") from exc
        if key.keyid != keyid:
            raise KeyHistoryError(f"expected {path} to hold key {keyid}, it holds {key.keyid}")
        return key

    # -- reading the history ---------------------------------------------------------
    def _reload(self, *, force: bool = False) -> None:
        try:
            st = self.history_path.stat()
        except FileNotFoundError as exc:
            raise KeyHistoryError(f"no key history at {self.history_path}; run the server once to create it") from exc
        stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
        if not force and stamp == self._stamp:
            return
        lines = [ln for ln in self.history_path.read_text(encoding="utf-8").splitlines() if ln.strip()]
        try:
            history = tuple(Envelope.from_json(ln) for ln in lines)
        except ValueError as exc:
            raise KeyHistoryError(f"{self.history_path}: expected one DSSE envelope per line: {exc}") from exc
        keys = _check(history)
        self._history = history
        self._keys = tuple(TrustedKey(k.keyid, k.public_key, k.not_before or datetime.min.replace(tzinfo=UTC),
                                      k.not_after) for k in keys)
        self._stamp = stamp

    @property
    def active(self) -> SigningKey:
        if self._active is None:
            raise RuntimeError("KeyRing.ensure() must run before signing")
        return self._active

    def current(self) -> SigningKey:
        """The key that signs now: the last key of the history as it is on disk.

        A rotation made by another process (``warrantor keys rotate``, another worker) takes
        effect at the next signature, not at the next restart: evidence signed after the
        rotation instant with the retired key would fail its validity check. One ``stat``
        per call; the history is re-read and re-checked only when the file changed.
        """
        with self._lock:
            self._reload()
            newest = self._keys[-1].keyid if self._keys else None
            if newest is not None and (self._active is None or self._active.keyid != newest):
                self._active = self._load_private(newest)
            return self.active

    def trusted(self) -> list[TrustedKey]:
        """Every key the history introduces, oldest first, with its validity."""
        with self._lock:
            self._reload()
            return list(self._keys)

    def trusted_keys(self) -> list[VerifyKey]:
        """What signature checks verify against: the trusted keys with their validity."""
        return [k.verify_key() for k in self.trusted()]

    def history(self) -> tuple[Envelope, ...]:
        """The signed statements, genesis first (published in the trust bundle)."""
        with self._lock:
            self._reload()
            return self._history

    # -- the store's mirror ----------------------------------------------------------
    def _sync_store(self, now: datetime) -> None:
        keys, history = self._keys, self._history

        def job(repo: Repo) -> None:
            for key in keys:
                repo.upsert_signing_key(key.keyid, key.public_key, key.not_before, key.not_after)
            rt.log_statements(repo, [(statement_ref(k.keyid), statement_entry(e))
                                     for k, e in zip(keys, history, strict=True)], now)

        self._store.write(job)

    def row_findings(self) -> list[KeyRowFinding]:
        """``signing_keys`` rows the key files do not back (rule 4)."""
        held = {k.keyid: k for k in self.trusted()}
        with self._store.read() as repo:
            rows = repo.signing_keys()
        out = []
        for keyid, public_key, not_before, not_after in rows:
            key = held.get(keyid)
            if key is None:
                out.append(KeyRowFinding(keyid, "UNTRUSTED_KEY_ROW",
                                         f"the signing_keys table names key {keyid}, which the key ring does not "
                                         "hold; it is not trusted"))
            elif (public_key, not_before, not_after) != (key.public_key, key.not_before, key.not_after):
                out.append(KeyRowFinding(keyid, "KEY_ROW_MISMATCH",
                                         f"the signing_keys row of key {keyid} disagrees with the key history; "
                                         "the history is what is trusted"))
        return out


def _check(history: tuple[Envelope, ...]) -> list[VerifyKey]:
    if not history:
        raise KeyHistoryError("the key history is empty")
    try:
        return replay_history(history)
    except EvidenceError as exc:
        raise KeyHistoryError(f"the key history does not verify: {exc.message}") from exc


def _line(envelope: Envelope) -> str:
    return envelope.canonical_bytes().decode() + "\n"


def load_or_create_key(path: Path) -> SigningKey:
    """A single key file (the log's note key, say), created 0600 on first use."""
    if path.exists():
        return SigningKey.load(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = SigningKey.generate()
    key.save(path)
    return key
