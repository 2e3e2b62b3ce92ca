"""RFC 3161: built-in TSA tokens verify with rfc3161-client and with `openssl ts -verify`."""

import hashlib
import itertools
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from asn1crypto import cms, core, tsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID
from hypothesis import given, settings
from hypothesis import strategies as st

from warrantor.errors import EvidenceError
from warrantor.evidence.tsa import (
    BUILTIN_POLICY_OID,
    BuiltinTSA,
    TimestampAuthority,
    TSAChain,
    generate_chain,
    make_request,
    token_from_response,
    verify_timestamp,
)

DATA = b"log.warrantor.example/test\n42\nq2B7Cp3iSwx0lMcmZ1nSCw3ZyZ0RL7p1mcIdUQnLsXk=\n"


@pytest.fixture(scope="module")
def chain() -> TSAChain:
    return generate_chain("Warrantor Test TSA")


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(microsecond=250_000)

    def __call__(self) -> datetime:
        return self.now


def serials() -> Callable[[], int]:
    counter = itertools.count(1)
    return lambda: next(counter)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def tsa(chain: TSAChain, clock: Clock) -> BuiltinTSA:
    return BuiltinTSA(chain, serials(), clock)


def openssl_verify(tmp_path: Path, chain: TSAChain, data: bytes, token: bytes) -> bool:
    files = {
        "data": data,
        "token.der": token,
        "root.pem": chain.root_cert_pem,
        "tsa.pem": chain.tsa_cert_pem,
    }
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    result = subprocess.run(
        [
            "openssl",
            "ts",
            "-verify",
            "-data",
            "data",
            "-in",
            "token.der",
            "-token_in",
            "-CAfile",
            "root.pem",
            "-untrusted",
            "tsa.pem",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    return result.returncode == 0 and "Verification: OK" in result.stdout


def test_builtin_tsa_is_a_timestamp_authority(tsa: BuiltinTSA) -> None:
    authority: TimestampAuthority = tsa
    assert authority.timestamp(DATA)


def test_chain_is_p256_with_a_critical_timestamping_eku(chain: TSAChain) -> None:
    leaf = x509.load_pem_x509_certificate(chain.tsa_cert_pem)
    root = x509.load_pem_x509_certificate(chain.root_cert_pem)
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    assert eku.critical and list(eku.value) == [ExtendedKeyUsageOID.TIME_STAMPING]
    assert isinstance(leaf.public_key(), ec.EllipticCurvePublicKey)
    assert leaf.public_key().curve.name == "secp256r1"  # type: ignore[union-attr]
    assert leaf.issuer == root.subject
    lifetime = leaf.not_valid_after_utc - leaf.not_valid_before_utc
    assert lifetime >= timedelta(days=3650)
    assert root.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_token_verifies_with_rfc3161_client_and_reports_gen_time(
    tsa: BuiltinTSA, chain: TSAChain, clock: Clock
) -> None:
    assert verify_timestamp(tsa.timestamp(DATA), DATA, chain.root_cert_pem) == clock.now


def test_token_verifies_with_openssl_ts(tsa: BuiltinTSA, chain: TSAChain, tmp_path: Path) -> None:
    assert openssl_verify(tmp_path, chain, DATA, tsa.timestamp(DATA))


def test_flipped_data_byte_fails_in_both_verifiers(
    tsa: BuiltinTSA, chain: TSAChain, tmp_path: Path
) -> None:
    token = tsa.timestamp(DATA)
    tampered = bytes([DATA[0] ^ 1]) + DATA[1:]
    with pytest.raises(EvidenceError, match="does not verify"):
        verify_timestamp(token, tampered, chain.root_cert_pem)
    assert not openssl_verify(tmp_path, chain, tampered, token)


def test_every_flipped_token_byte_fails(tsa: BuiltinTSA, chain: TSAChain) -> None:
    token = tsa.timestamp(DATA)
    for i in range(len(token)):
        bad = bytearray(token)
        bad[i] ^= 0x01
        with pytest.raises(EvidenceError):
            verify_timestamp(bytes(bad), DATA, chain.root_cert_pem)


def test_flipped_token_byte_fails_with_openssl(
    tsa: BuiltinTSA, chain: TSAChain, tmp_path: Path
) -> None:
    token = bytearray(tsa.timestamp(DATA))
    token[-10] ^= 0x01  # inside the ECDSA signature
    assert not openssl_verify(tmp_path, chain, DATA, bytes(token))


def test_token_from_another_tsa_root_fails(tsa: BuiltinTSA) -> None:
    other = generate_chain("Other TSA")
    with pytest.raises(EvidenceError, match="does not verify"):
        verify_timestamp(tsa.timestamp(DATA), DATA, other.root_cert_pem)


def test_tsa_cert_is_not_accepted_as_its_own_root(tsa: BuiltinTSA, chain: TSAChain) -> None:
    with pytest.raises(EvidenceError):
        verify_timestamp(tsa.timestamp(DATA), DATA, chain.tsa_cert_pem)


def test_respond_grants_a_request_and_echoes_its_nonce(
    tsa: BuiltinTSA, chain: TSAChain, tmp_path: Path
) -> None:
    response = tsa.respond(make_request(DATA, nonce=1234567))
    token = token_from_response(response)
    info = cms.ContentInfo.load(token)["content"]["encap_content_info"]["content"].parsed
    assert info["nonce"].native == 1234567
    assert verify_timestamp(token, DATA, chain.root_cert_pem)
    (tmp_path / "resp.der").write_bytes(response)
    (tmp_path / "data").write_bytes(DATA)
    (tmp_path / "root.pem").write_bytes(chain.root_cert_pem)
    (tmp_path / "tsa.pem").write_bytes(chain.tsa_cert_pem)
    result = subprocess.run(
        [
            "openssl",
            "ts",
            "-verify",
            "-data",
            "data",
            "-in",
            "resp.der",
            "-CAfile",
            "root.pem",
            "-untrusted",
            "tsa.pem",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert "Verification: OK" in result.stdout


def test_make_request_asks_for_sha256_a_nonce_and_the_certificate() -> None:
    request = tsp.TimeStampReq.load(make_request(DATA))
    assert request["message_imprint"]["hash_algorithm"]["algorithm"].native == "sha256"
    assert request["nonce"].native is not None
    assert request["cert_req"].native is True


def test_serial_numbers_come_from_the_injected_factory(tsa: BuiltinTSA) -> None:
    def serial(token: bytes) -> int:
        content = cms.ContentInfo.load(token)["content"]["encap_content_info"]["content"]
        return int(content.parsed["serial_number"].native)

    assert [serial(tsa.timestamp(DATA)) for _ in range(3)] == [1, 2, 3]


def test_request_without_cert_req_gets_a_token_without_certificates(tsa: BuiltinTSA) -> None:
    request = tsp.TimeStampReq.load(make_request(DATA))
    request["cert_req"] = False
    token = token_from_response(tsa.respond(request.dump()))
    assert not cms.ContentInfo.load(token)["content"]["certificates"].native


def rejection_failure(response: bytes) -> set[str]:
    # asn1crypto's TimeStampResp wrongly requires a token, so read the status by hand.
    status = tsp.PKIStatusInfo.load(core.Sequence.load(response)[0].dump())
    assert status["status"].native == "rejection"
    return set(status["fail_info"].native)


def test_garbage_request_is_rejected_as_bad_data_format(tsa: BuiltinTSA) -> None:
    assert rejection_failure(tsa.respond(b"\x30\x03junk")) == {"bad_data_format"}


def test_unsupported_hash_is_rejected_as_bad_alg(tsa: BuiltinTSA) -> None:
    request = tsp.TimeStampReq.load(make_request(DATA))
    request["message_imprint"] = tsp.MessageImprint(
        {"hash_algorithm": {"algorithm": "md5"}, "hashed_message": b"\x00" * 16}
    )
    assert rejection_failure(tsa.respond(request.dump())) == {"bad_alg"}


def test_foreign_policy_is_rejected(tsa: BuiltinTSA) -> None:
    request = tsp.TimeStampReq.load(make_request(DATA))
    request["req_policy"] = "1.2.3.4"
    assert rejection_failure(tsa.respond(request.dump())) == {"unaccepted_policy"}


def test_token_from_rejected_response_raises(tsa: BuiltinTSA) -> None:
    with pytest.raises(EvidenceError, match="granted"):
        token_from_response(tsa.respond(b"junk"))


# -- the template builder produces what asn1crypto produced ------------------------------


class _DigestSigner:
    """Stands in for the ECDSA key so that two builds of one token can be compared:
    ECDSA signatures are randomized, this "signature" is a function of the signed bytes."""

    def sign(self, data: bytes, algorithm: object) -> bytes:
        return hashlib.sha256(data).digest()


def _reference_token(
    chain: TSAChain, imprint: tsp.MessageImprint, serial: int, when: datetime, nonce: int | None
) -> bytes:
    """The token as the TSA built it with asn1crypto objects before the DER templates."""
    cert = asn1_x509.Certificate.load(x509.load_pem_x509_certificate(chain.tsa_cert_pem).public_bytes(Encoding.DER))
    gen_time = when.astimezone(UTC)
    fields: dict[str, Any] = {
        "version": "v1", "policy": BUILTIN_POLICY_OID, "message_imprint": imprint,
        "serial_number": serial, "gen_time": gen_time, "accuracy": {"seconds": 1},
    }
    if nonce is not None:
        fields["nonce"] = nonce
    tst_info = tsp.TSTInfo(fields)
    ess = {"certs": [{"cert_hash": hashlib.sha256(cert.dump()).digest()}]}
    attrs = [
        cms.CMSAttribute({"type": "content_type", "values": ["tst_info"]}),
        cms.CMSAttribute({"type": "signing_time", "values": [cms.Time({"utc_time": gen_time})]}),
        cms.CMSAttribute({"type": "message_digest", "values": [hashlib.sha256(tst_info.dump()).digest()]}),
        cms.CMSAttribute({"type": "signing_certificate_v2", "values": [ess]}),
    ]
    signed_attrs = cms.CMSAttributes(sorted(attrs, key=lambda a: a.dump()))
    sid = cms.IssuerAndSerialNumber({"issuer": cert.issuer, "serial_number": cert.serial_number})
    signer = {
        "version": "v1", "sid": cms.SignerIdentifier({"issuer_and_serial_number": sid}),
        "digest_algorithm": {"algorithm": "sha256"}, "signed_attrs": signed_attrs,
        "signature_algorithm": {"algorithm": "sha256_ecdsa"},
        "signature": _DigestSigner().sign(signed_attrs.dump(), None),
    }
    signed_data = {
        "version": "v3", "digest_algorithms": [{"algorithm": "sha256"}],
        "encap_content_info": {"content_type": "tst_info", "content": tst_info},
        "certificates": [cert], "signer_infos": [signer],
    }
    token: bytes = cms.ContentInfo({"content_type": "signed_data", "content": signed_data}).dump()
    return token


@settings(max_examples=60, deadline=None)
@given(
    data=st.binary(max_size=300),
    serial=st.one_of(st.integers(1, 300), st.integers(1, 2**160)),
    when=st.datetimes(
        min_value=datetime(1990, 1, 1), max_value=datetime(2049, 12, 31), timezones=st.just(UTC)
    ),
    nonce=st.one_of(st.none(), st.integers(0, 2**63 - 1)),
)
def test_template_token_is_byte_for_byte_the_asn1crypto_token(
    chain: TSAChain, data: bytes, serial: int, when: datetime, nonce: int | None
) -> None:
    tsa = BuiltinTSA(chain, lambda: serial, lambda: when)
    tsa._key = _DigestSigner()  # type: ignore[assignment]
    imprint = tsp.MessageImprint(
        {"hash_algorithm": {"algorithm": "sha256"}, "hashed_message": hashlib.sha256(data).digest()}
    )
    expected = _reference_token(chain, imprint, serial, when, nonce)
    if nonce is None:
        assert tsa.timestamp(data) == expected
    else:
        assert token_from_response(tsa.respond(make_request(data, nonce=nonce))) == expected


def test_tokens_verify_with_rfc3161_client_and_openssl(chain: TSAChain, tmp_path: Path) -> None:
    """Tokens of the template builder, with and without a fraction of a second in genTime,
    a long serial number and a nonce, verify in both verifiers."""
    now = datetime.now(UTC).replace(microsecond=0)  # within the certificate's validity
    times = [now, now.replace(microsecond=123400)]
    serials = iter([1, 2**100 + 7, 128])
    for when in times:
        tsa = BuiltinTSA(chain, lambda: next(serials), lambda when=when: when)  # type: ignore[misc]
        token = tsa.timestamp(DATA)
        assert verify_timestamp(token, DATA, chain.root_cert_pem) == when
        assert openssl_verify(tmp_path, chain, DATA, token)
    tsa = BuiltinTSA(chain, lambda: next(serials), lambda: times[1])
    token = token_from_response(tsa.respond(make_request(DATA, nonce=2**62 + 1)))
    assert verify_timestamp(token, DATA, chain.root_cert_pem) == times[1]
    assert openssl_verify(tmp_path, chain, DATA, token)
