"""Signed notes and log checkpoints (C2SP signed-note, tlog-checkpoint, tlog-cosignature).

A signed note is a text ending in a newline, a blank line, and signature lines
``— <key name> base64(key ID || signature)`` (em dash U+2014). The key ID of an Ed25519
key is ``SHA-256(name || 0x0A || type || public key)[:4]`` with type 0x01 for note
signatures and 0x04 for timestamped witness cosignatures. Verifier keys are written
``<name>+<8 hex digits of the key ID>+base64(type || public key)`` as Go's
``golang.org/x/mod/sumdb/note`` formats them.

A checkpoint is a note whose text is ``<origin>\\n<size>\\n<base64 root>\\n`` plus optional
extension lines. A cosignature signs ``"cosignature/v1\\ntime <t>\\n" || note text`` and
carries ``key ID || uint64be(t) || signature``.

Only Ed25519 is supported (no ECDSA, ML-DSA or RFC 6962 tree-head signatures). This
module checks signatures; whether a checkpoint is consistent with earlier ones is the
caller's business (``merkle.verify_consistency``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field

from warrantor.errors import EvidenceError
from warrantor.evidence.keys import SigningKey, VerifyKey

NOTE_SIG_TYPE = 0x01
COSIG_SIG_TYPE = 0x04
MAX_SIGNATURES = 100
_EM_DASH_PREFIX = "\u2014 "
_DECIMAL = re.compile(r"0|[1-9][0-9]*")
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f]")


def _b64decode(text: str, what: str) -> bytes:
    """Strict standard base64: the one canonical encoding only. Lenient decoders ignore the
    unused low bits of the last character, so several texts decode to the same bytes; a
    note or checkpoint must have exactly one spelling, or a changed byte could go unseen."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"expected standard base64 for the {what}, got {text[:16]!r}") from exc
    if base64.b64encode(raw).decode("ascii") != text:
        raise ValueError(f"expected canonical base64 for the {what} (unused bits must be zero), got {text[:16]!r}")
    return raw


def _check_key_name(name: str) -> None:
    if not name or any(c.isspace() or c == "+" for c in name):
        raise ValueError(f"expected a non-empty key name without spaces or '+', got {name!r}")


def compute_key_hash(name: str, sig_type: int, public_key: bytes) -> bytes:
    """The 4-byte key ID: ``SHA-256(name || 0x0A || type || public key)[:4]``."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([sig_type]) + public_key).digest()[:4]


@dataclass(frozen=True)
class NoteVerifier:
    """A named Ed25519 public key that verifies note signatures (0x01) or cosignatures (0x04)."""

    name: str
    public_key: bytes
    sig_type: int = NOTE_SIG_TYPE

    def __post_init__(self) -> None:
        _check_key_name(self.name)
        if self.sig_type not in (NOTE_SIG_TYPE, COSIG_SIG_TYPE):
            raise ValueError(f"expected signature type 0x01 or 0x04, got {self.sig_type:#04x}")
        VerifyKey(self.public_key)  # checks the length

    @property
    def key_hash(self) -> bytes:
        return compute_key_hash(self.name, self.sig_type, self.public_key)

    def to_vkey(self) -> str:
        material = base64.b64encode(bytes([self.sig_type]) + self.public_key).decode()
        return f"{self.name}+{self.key_hash.hex()}+{material}"

    @classmethod
    def from_vkey(cls, vkey: str) -> NoteVerifier:
        # The name holds no '+', but the base64 key material may.
        parts = vkey.split("+", 2)
        if len(parts) != 3 or not re.fullmatch(r"[0-9a-f]{8}", parts[1]):
            raise ValueError(f"expected a vkey '<name>+<8 hex>+<base64 key>', got {vkey!r}")
        name, hash_hex, material_b64 = parts
        material = _b64decode(material_b64, "vkey")
        if len(material) != 33:
            raise ValueError(f"expected 1 type byte and a 32-byte key, got {len(material)} bytes")
        verifier = cls(name, material[1:], material[0])
        if verifier.key_hash.hex() != hash_hex:
            raise ValueError(f"expected key ID {verifier.key_hash.hex()}, vkey says {hash_hex}")
        return verifier

    def matches(self, signature: NoteSignature) -> bool:
        return signature.name == self.name and signature.key_hash == self.key_hash

    def verify(self, message: bytes, signature: bytes) -> bool:
        return VerifyKey(self.public_key).verify(signature, message)


@dataclass(frozen=True)
class NoteSigner:
    """An Ed25519 note signer (signature type 0x01) under a key name."""

    name: str
    key: SigningKey = field(repr=False)

    def __post_init__(self) -> None:
        _check_key_name(self.name)

    @property
    def key_hash(self) -> bytes:
        return compute_key_hash(self.name, NOTE_SIG_TYPE, self.key.public_key)

    def verifier(self) -> NoteVerifier:
        return NoteVerifier(self.name, self.key.public_key, NOTE_SIG_TYPE)

    def vkey(self) -> str:
        return self.verifier().to_vkey()

    def sign(self, text: str) -> NoteSignature:
        return NoteSignature(self.name, self.key_hash, self.key.sign(text.encode()))


@dataclass(frozen=True)
class NoteSignature:
    """One signature line: key name, 4-byte key ID, signature bytes."""

    name: str
    key_hash: bytes
    signature: bytes

    def to_line(self) -> str:
        blob = base64.b64encode(self.key_hash + self.signature).decode()
        return f"{_EM_DASH_PREFIX}{self.name} {blob}\n"

    @classmethod
    def from_line(cls, line: str) -> NoteSignature:
        """Parse one line without its newline."""
        if not line.startswith(_EM_DASH_PREFIX):
            raise ValueError(f"expected a signature line starting with an em dash, got {line!r}")
        name, sep, blob_b64 = line[len(_EM_DASH_PREFIX) :].partition(" ")
        _check_key_name(name)
        blob = _b64decode(blob_b64, "signature") if sep else b""
        if len(blob) < 5:
            raise ValueError(f"expected a key ID and a signature, got {len(blob)} bytes")
        return cls(name, blob[:4], blob[4:])


@dataclass(frozen=True)
class SignedNote:
    """A note text (ending in a newline) and its signature lines, not yet verified."""

    body: str
    signatures: tuple[NoteSignature, ...]

    def to_text(self) -> str:
        return self.body + "\n" + "".join(s.to_line() for s in self.signatures)

    @classmethod
    def from_text(cls, text: str) -> SignedNote:
        if _CONTROL.search(text):
            raise ValueError("expected no control characters other than newline in a note")
        split = text.rfind("\n\n")
        if split < 0 or not text.endswith("\n"):
            raise ValueError("expected note text, a blank line, and newline-ended signatures")
        lines = text[split + 2 : -1].split("\n")
        if len(lines) > MAX_SIGNATURES:
            raise ValueError(f"expected at most {MAX_SIGNATURES} signatures, got {len(lines)}")
        return cls(text[: split + 1], tuple(NoteSignature.from_line(ln) for ln in lines))

    def with_signatures(self, extra: Iterable[NoteSignature]) -> SignedNote:
        return SignedNote(self.body, self.signatures + tuple(extra))


def _check_body(body: str) -> None:
    if not body.endswith("\n") or "\n\n" in body or body.startswith("\n"):
        raise ValueError("expected a note text of non-empty lines, each ending in a newline")
    if _CONTROL.search(body):
        raise ValueError("expected no control characters other than newline in a note")


def sign_note(body: str, signers: Iterable[NoteSigner]) -> str:
    """The signed note text: ``body``, a blank line, one signature line per signer."""
    _check_body(body)
    signatures = tuple(s.sign(body) for s in signers)
    if not signatures:
        raise ValueError("expected at least one signer")
    return SignedNote(body, signatures).to_text()


def parse_signed_note(text: str) -> SignedNote:
    """Split a signed note into text and signature lines; checks syntax, not signatures."""
    return SignedNote.from_text(text)


def verify_note(note: SignedNote, verifier: NoteVerifier) -> None:
    """Raise ``EvidenceError`` unless ``verifier``'s key signed the note.

    Signatures from other keys are ignored (signed-note: "verifiers MUST ignore
    signatures from unknown keys"); a failing signature from the known key rejects the
    whole note.
    """
    mine = [s for s in note.signatures if verifier.matches(s)]
    if not mine:
        raise EvidenceError(f"expected a signature by {verifier.name!r}, found none")
    for signature in mine:
        if not verifier.verify(note.body.encode(), signature.signature):
            raise EvidenceError(f"signature by {verifier.name!r} does not verify")


@dataclass(frozen=True)
class Checkpoint:
    """A tlog-checkpoint note text: origin, tree size, root hash, extension lines."""

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.origin or "\n" in self.origin:
            raise ValueError(f"expected a non-empty one-line origin, got {self.origin!r}")
        if self.size < 0:
            raise ValueError(f"expected a tree size >= 0, got {self.size}")
        if len(self.root_hash) != 32:
            raise ValueError(f"expected a 32-byte root hash, got {len(self.root_hash)} bytes")
        if any(not e or "\n" in e for e in self.extensions):
            raise ValueError("expected non-empty one-line extension lines")

    def body(self) -> str:
        root = base64.b64encode(self.root_hash).decode()
        lines = [self.origin, str(self.size), root, *self.extensions]
        return "".join(line + "\n" for line in lines)

    @classmethod
    def from_body(cls, body: str) -> Checkpoint:
        lines = body.split("\n")
        if len(lines) < 4 or lines[-1] != "":
            raise ValueError("expected at least three newline-terminated checkpoint lines")
        origin, size, root = lines[0], lines[1], lines[2]
        if not _DECIMAL.fullmatch(size):
            raise ValueError(f"expected a decimal tree size without leading zeros, got {size!r}")
        return cls(origin, int(size), _b64decode(root, "root hash"), tuple(lines[3:-1]))


def open_checkpoint(text: str, verifier: NoteVerifier, *, origin: str | None = None) -> Checkpoint:
    """Verify a signed checkpoint with the log's key and return its parsed body.

    Raises ``EvidenceError`` for malformed text, a missing or failing signature by the
    log's key, or an origin other than ``origin`` when one is given.
    """
    try:
        note = parse_signed_note(text)
        checkpoint = Checkpoint.from_body(note.body)
    except ValueError as exc:
        raise EvidenceError(f"expected a signed checkpoint: {exc}") from exc
    verify_note(note, verifier)
    if origin is not None and checkpoint.origin != origin:
        raise EvidenceError(f"expected origin {origin!r}, got {checkpoint.origin!r}")
    return checkpoint


def _cosigned_message(body: str, timestamp: int) -> bytes:
    return f"cosignature/v1\ntime {timestamp}\n{body}".encode()


def cosign(body: str, witness_key: SigningKey, name: str, timestamp: int) -> NoteSignature:
    """A tlog-cosignature/v1 Ed25519 cosignature (type 0x04) over a checkpoint body."""
    _check_body(body)
    if not 0 <= timestamp < 2**63:
        raise ValueError(f"expected a POSIX timestamp in [0, 2**63), got {timestamp}")
    verifier = NoteVerifier(name, witness_key.public_key, COSIG_SIG_TYPE)
    signature = witness_key.sign(_cosigned_message(body, timestamp))
    return NoteSignature(name, verifier.key_hash, struct.pack(">Q", timestamp) + signature)


def verify_cosignature(note_text: str, witness: NoteVerifier) -> int:
    """The timestamp of ``witness``'s valid cosignature on the note; ``EvidenceError`` if none."""
    if witness.sig_type != COSIG_SIG_TYPE:
        raise ValueError("expected a cosigner key (signature type 0x04)")
    try:
        note = parse_signed_note(note_text)
    except ValueError as exc:
        raise EvidenceError(f"expected a signed note: {exc}") from exc
    mine = [s for s in note.signatures if witness.matches(s)]
    if not mine:
        raise EvidenceError(f"expected a cosignature by {witness.name!r}, found none")
    for signature in mine:
        if len(signature.signature) != 72:
            raise EvidenceError(f"expected 72 cosignature bytes, got {len(signature.signature)}")
        (timestamp,) = struct.unpack(">Q", signature.signature[:8])
        message = _cosigned_message(note.body, timestamp)
        if not witness.verify(message, signature.signature[8:]):
            raise EvidenceError(f"cosignature by {witness.name!r} does not verify")
    return int(struct.unpack(">Q", mine[0].signature[:8])[0])
