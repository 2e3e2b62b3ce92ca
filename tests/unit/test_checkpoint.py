"""Signed notes, checkpoints and witness cosignatures (C2SP), including Go interop vectors."""

import base64
import hashlib

import pytest

from warrantor.errors import EvidenceError
from warrantor.evidence.checkpoint import (
    COSIG_SIG_TYPE,
    Checkpoint,
    NoteSignature,
    NoteSigner,
    NoteVerifier,
    cosign,
    open_checkpoint,
    parse_signed_note,
    sign_note,
    verify_cosignature,
)
from warrantor.evidence.keys import SigningKey

# golang.org/x/mod/sumdb/note documentation example: Go's signer key, text and signed note.
GO_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
GO_NOTE = (
    GO_TEXT + "\n— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNX"
    "gKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)
ORIGIN = "log.warrantor.example/test"
ROOT = hashlib.sha256(b"root").digest()


def go_signer() -> NoteSigner:
    seed = base64.b64decode(GO_SKEY.split("+", 4)[4])[1:]
    return NoteSigner("PeterNeumann", SigningKey.from_seed(seed))


def log_signer(seed: int = 1) -> NoteSigner:
    return NoteSigner(ORIGIN, SigningKey.from_seed(bytes([seed]) * 32))


def signed_checkpoint(signer: NoteSigner | None = None, size: int = 5) -> str:
    return sign_note(Checkpoint(ORIGIN, size, ROOT).body(), [signer or log_signer()])


def test_signing_reproduces_the_go_note_byte_for_byte() -> None:
    assert sign_note(GO_TEXT, [go_signer()]) == GO_NOTE
    assert go_signer().vkey() == GO_VKEY


def test_go_note_opens_with_the_go_vkey() -> None:
    note = parse_signed_note(GO_NOTE)
    assert note.body == GO_TEXT
    assert note.to_text() == GO_NOTE
    verifier = NoteVerifier.from_vkey(GO_VKEY)
    assert verifier.matches(note.signatures[0])
    assert verifier.verify(note.body.encode(), note.signatures[0].signature)


def test_key_hash_is_sha256_of_name_newline_type_and_key() -> None:
    signer = log_signer()
    want = hashlib.sha256(ORIGIN.encode() + b"\n\x01" + signer.key.public_key).digest()[:4]
    assert signer.key_hash == want
    material = base64.b64encode(b"\x01" + signer.key.public_key).decode()
    assert signer.vkey() == f"{ORIGIN}+{want.hex()}+{material}"


def test_vkeys_from_other_implementations_parse_and_round_trip() -> None:
    # transparency-dev/formats test keys: a type 0x01 key whose base64 contains '+',
    # and a type 0x04 (cosignature) key.
    for vkey in (
        "TEST+7997405c+AQcC+FTVKf0jlTdHDY3rbevmnKxxPjigCXlVtGe6RIr6",
        "remora.n621.de+da77ade7+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2",
    ):
        assert NoteVerifier.from_vkey(vkey).to_vkey() == vkey
    cosigner = "remora.n621.de+da77ade7+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2"
    assert NoteVerifier.from_vkey(cosigner).sig_type == COSIG_SIG_TYPE


@pytest.mark.parametrize(
    "vkey",
    [
        "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # wrong hash
        "PeterNeumann+c74f20a3+AhpdzZBxQ8OEVB6DDFvOEqqIF+xWSaqr8sMTiLNbLXRM",  # wrong type
        "PeterNeumann+c74f20a3",
        "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    ],
)
def test_malformed_vkeys_are_rejected(vkey: str) -> None:
    with pytest.raises(ValueError, match="expected"):
        NoteVerifier.from_vkey(vkey)


def test_checkpoint_body_is_origin_size_root_and_extensions() -> None:
    body = Checkpoint(ORIGIN, 20852163, ROOT, ("ext one",)).body()
    assert body == f"{ORIGIN}\n20852163\n{base64.b64encode(ROOT).decode()}\next one\n"
    assert Checkpoint.from_body(body) == Checkpoint(ORIGIN, 20852163, ROOT, ("ext one",))


@pytest.mark.parametrize(
    "body",
    [
        f"{ORIGIN}\n05\n{base64.b64encode(ROOT).decode()}\n",  # leading zero
        f"{ORIGIN}\n5\n{base64.b64encode(ROOT[:31]).decode()}\n",  # short root
        f"{ORIGIN}\n5\n",
        f"\n5\n{base64.b64encode(ROOT).decode()}\n",
        f"{ORIGIN}\n-5\n{base64.b64encode(ROOT).decode()}\n",
    ],
)
def test_malformed_checkpoint_bodies_are_rejected(body: str) -> None:
    with pytest.raises(ValueError, match="expected"):
        Checkpoint.from_body(body)


def test_open_checkpoint_returns_the_signed_tree_head() -> None:
    checkpoint = open_checkpoint(signed_checkpoint(), log_signer().verifier(), origin=ORIGIN)
    assert (checkpoint.origin, checkpoint.size, checkpoint.root_hash) == (ORIGIN, 5, ROOT)


def test_signatures_from_unknown_keys_are_ignored() -> None:
    stranger = NoteSigner("someone.else/key", SigningKey.from_seed(b"\x09" * 32))
    text = sign_note(Checkpoint(ORIGIN, 5, ROOT).body(), [stranger, log_signer()])
    assert open_checkpoint(text, log_signer().verifier()).size == 5


def test_note_signed_only_by_another_key_is_rejected() -> None:
    text = signed_checkpoint(log_signer(seed=2))  # same name, other key: other key ID
    with pytest.raises(EvidenceError, match="found none"):
        open_checkpoint(text, log_signer().verifier())


def test_failing_signature_by_the_known_key_rejects_the_note() -> None:
    note = parse_signed_note(signed_checkpoint())
    good = note.signatures[0]
    forged = NoteSignature(good.name, good.key_hash, bytes(64))
    text = note.with_signatures([forged]).to_text()
    with pytest.raises(EvidenceError, match="does not verify"):
        open_checkpoint(text, log_signer().verifier())


def test_edited_body_fails() -> None:
    text = signed_checkpoint().replace("\n5\n", "\n6\n")
    with pytest.raises(EvidenceError, match="does not verify"):
        open_checkpoint(text, log_signer().verifier())


def test_wrong_origin_fails() -> None:
    with pytest.raises(EvidenceError, match="origin"):
        open_checkpoint(signed_checkpoint(), log_signer().verifier(), origin="other.example/log")


@pytest.mark.parametrize(
    "text",
    [
        "no blank line\n— a AAAAAAA=\n",
        "body\n\n- a AAAAAAAA\n",  # ASCII hyphen, not an em dash
        "body\n\n— a AAAAAAAA",  # no final newline
        "body\x07\n\n— a AAAAAAAA\n",  # control character
        "body\n\n— a AAAA\n",  # key ID only
    ],
)
def test_malformed_notes_are_rejected(text: str) -> None:
    with pytest.raises(ValueError, match="expected"):
        parse_signed_note(text)
    with pytest.raises(EvidenceError):
        open_checkpoint(text, log_signer().verifier())


def test_sign_note_refuses_bodies_that_would_not_parse_back() -> None:
    for body in ("no newline", "two\n\nparagraphs\n", "\nleading\n"):
        with pytest.raises(ValueError):
            sign_note(body, [log_signer()])


def witness() -> tuple[SigningKey, NoteVerifier]:
    key = SigningKey.from_seed(b"\x07" * 32)
    return key, NoteVerifier("witness.example/w1", key.public_key, COSIG_SIG_TYPE)


def test_cosignature_has_the_tlog_cosignature_layout() -> None:
    key, verifier = witness()
    body = Checkpoint(ORIGIN, 5, ROOT).body()
    sig = cosign(body, key, "witness.example/w1", 1679315147)
    assert sig.key_hash == hashlib.sha256(b"witness.example/w1\n\x04" + key.public_key).digest()[:4]
    assert sig.signature[:8] == (1679315147).to_bytes(8, "big")
    message = b"cosignature/v1\ntime 1679315147\n" + body.encode()
    assert verifier.verify(message, sig.signature[8:])


def test_cosigned_checkpoint_verifies_for_log_and_witness() -> None:
    key, verifier = witness()
    note = parse_signed_note(signed_checkpoint())
    text = note.with_signatures([cosign(note.body, key, verifier.name, 1700000000)]).to_text()
    assert open_checkpoint(text, log_signer().verifier()).size == 5
    assert verify_cosignature(text, verifier) == 1700000000


def test_cosignature_with_an_altered_timestamp_fails() -> None:
    key, verifier = witness()
    note = parse_signed_note(signed_checkpoint())
    sig = cosign(note.body, key, verifier.name, 1700000000)
    later = (1700000001).to_bytes(8, "big")
    moved = NoteSignature(sig.name, sig.key_hash, later + sig.signature[8:])
    with pytest.raises(EvidenceError, match="does not verify"):
        verify_cosignature(note.with_signatures([moved]).to_text(), verifier)


def test_missing_cosignature_is_reported() -> None:
    _, verifier = witness()
    with pytest.raises(EvidenceError, match="found none"):
        verify_cosignature(signed_checkpoint(), verifier)


def test_log_signature_is_not_a_cosignature_even_with_the_same_key() -> None:
    key = SigningKey.from_seed(b"\x01" * 32)
    as_witness = NoteVerifier(ORIGIN, key.public_key, COSIG_SIG_TYPE)
    with pytest.raises(EvidenceError, match="found none"):
        verify_cosignature(signed_checkpoint(), as_witness)
