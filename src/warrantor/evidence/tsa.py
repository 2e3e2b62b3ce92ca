"""RFC 3161 time-stamp tokens: the ``TimestampAuthority`` seam, a built-in TSA, verification.

A time-stamp token is a CMS ``ContentInfo`` (RFC 5652) holding ``SignedData`` over a
``TSTInfo`` (RFC 3161 section 2.4.2). The built-in TSA signs with ECDSA P-256 and SHA-256,
puts content-type, signing-time, message-digest and ESS signingCertificateV2 (RFC 5035)
in the signed attributes, and embeds its certificate, so that ``openssl ts -verify`` and
``rfc3161-client`` both accept its tokens. Its chain (a root CA and a TSA certificate
with the critical ``timeStamping`` extended key usage) comes from ``generate_chain``.

Tokens are assembled from DER pieces: everything that does not change between tokens
(algorithm identifiers, the certificate, the signer identifier, the ESS attribute) is encoded
once when the ``BuiltinTSA`` is made, and each token encodes only its TSTInfo, its signed
attributes and the ECDSA signature (``cryptography``, native). The pieces are the DER that
asn1crypto produced for the same values (``tests/unit/test_tsa.py`` checks them byte for
byte against it), so a token costs about a tenth of a millisecond instead of several.

Not here: HTTP transport to an external TSA (the ``client``/``service`` layers wrap it
behind ``TimestampAuthority``), revocation checking, and any policy beyond "the token
chains to the configured root and covers these bytes".
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Protocol

from asn1crypto import algos, cms, core, tsp, x509
from cryptography import x509 as cx509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from rfc3161_client import VerificationError, VerifierBuilder, decode_timestamp_response

from warrantor.errors import EvidenceError

# An OID under the UUID arc 2.25 (ITU-T X.667), which needs no registration; it names
# "Warrantor built-in TSA policy v1". Deployments can pass their own.
BUILTIN_POLICY_OID = "2.25.154069935208512786829591264040532713841"
_DIGEST_SIZES = {"sha256": 32, "sha384": 48, "sha512": 64}
_VALIDITY = timedelta(days=3653)


class _TimeStampResp(core.Sequence):  # type: ignore[misc]  # asn1crypto is untyped
    """RFC 3161 TimeStampResp; asn1crypto's own marks the token mandatory, but a
    rejection carries none (``timeStampToken TimeStampToken OPTIONAL``)."""

    _fields: ClassVar[list[tuple[Any, ...]]] = [
        ("status", tsp.PKIStatusInfo),
        ("time_stamp_token", cms.ContentInfo, {"optional": True}),
    ]


def _der(value: Any) -> bytes:
    """DER of an asn1crypto value (asn1crypto is untyped)."""
    der: bytes = value.dump()
    return der


class TimestampAuthority(Protocol):
    def timestamp(self, data: bytes) -> bytes:
        """A DER TimeStampToken (CMS ContentInfo) over SHA-256 of ``data``."""
        ...


@dataclass(frozen=True)
class TSAChain:
    """PEM root CA certificate, TSA certificate and TSA private key (PKCS #8)."""

    root_cert_pem: bytes
    tsa_cert_pem: bytes
    tsa_key_pem: bytes


def _name(common_name: str) -> cx509.Name:
    return cx509.Name([cx509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(
    subject: str,
    issuer: str,
    public_key: ec.EllipticCurvePublicKey,
    signing_key: ec.EllipticCurvePrivateKey,
    now: datetime,
) -> cx509.CertificateBuilder:
    return (
        cx509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(public_key)
        .serial_number(cx509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + _VALIDITY)
        .add_extension(cx509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            cx509.AuthorityKeyIdentifier.from_issuer_public_key(signing_key.public_key()),
            critical=False,
        )
    )


def _key_usage(*, digital_signature: bool, cert_sign: bool) -> cx509.KeyUsage:
    return cx509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def generate_chain(common_name: str, *, now: datetime | None = None) -> TSAChain:
    """A fresh ECDSA P-256 root CA and TSA certificate, both valid for ten years."""
    now = now or datetime.now(UTC)
    root_key = ec.generate_private_key(ec.SECP256R1())
    tsa_key = ec.generate_private_key(ec.SECP256R1())
    root_name = f"{common_name} Root CA"
    root = (
        _certificate(root_name, root_name, root_key.public_key(), root_key, now)
        .add_extension(cx509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(digital_signature=False, cert_sign=True), critical=True)
        .sign(root_key, hashes.SHA256())
    )
    leaf = (
        _certificate(common_name, root_name, tsa_key.public_key(), root_key, now)
        .add_extension(cx509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(digital_signature=True, cert_sign=False), critical=True)
        .add_extension(cx509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
        .sign(root_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    key_pem = tsa_key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return TSAChain(root.public_bytes(pem), leaf.public_bytes(pem), key_pem)


def make_request(data: bytes, *, nonce: int | None = None) -> bytes:
    """A DER TimeStampReq over SHA-256 of ``data`` with a nonce and ``certReq`` true."""
    request = {
        "version": "v1",
        "message_imprint": _imprint("sha256", hashlib.sha256(data).digest()),
        "nonce": secrets.randbits(63) if nonce is None else nonce,
        "cert_req": True,
    }
    return _der(tsp.TimeStampReq(request))


def _imprint(algorithm: str, digest: bytes) -> tsp.MessageImprint:
    return tsp.MessageImprint(
        {"hash_algorithm": {"algorithm": algorithm}, "hashed_message": digest}
    )


class _RejectedError(Exception):
    def __init__(self, failure: str, message: str) -> None:
        super().__init__(message)
        self.failure = failure


def _der_length(length: int) -> bytes:
    if length < 0x80:
        return bytes((length,))
    octets = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(octets),)) + octets


def _tlv(tag: int, content: bytes) -> bytes:
    """One DER element: identifier octet, definite length, contents."""
    return bytes((tag,)) + _der_length(len(content)) + content


def _seq(*parts: bytes) -> bytes:
    return _tlv(0x30, b"".join(parts))


def _integer(value: int) -> bytes:
    """DER INTEGER: the shortest two's complement octets."""
    size = (value + (value < 0)).bit_length() // 8 + 1
    return _tlv(0x02, value.to_bytes(size, "big", signed=True))


def _octets(value: bytes) -> bytes:
    return _tlv(0x04, value)


def _utc(moment: datetime) -> bytes:
    """Signing time: UTCTime for 1950-2049, GeneralizedTime otherwise (RFC 5652 11.3)."""
    if 1950 <= moment.year <= 2049:
        return _tlv(0x17, moment.strftime("%y%m%d%H%M%SZ").encode())
    return _tlv(0x18, moment.strftime("%Y%m%d%H%M%SZ").encode())


def _generalized(moment: datetime) -> bytes:
    """GeneralizedTime with the fraction of a second, trailing zeros dropped (DER)."""
    fraction = f".{moment.microsecond:06d}".rstrip("0") if moment.microsecond else ""
    return _tlv(0x18, (moment.strftime("%Y%m%d%H%M%S") + fraction + "Z").encode())


def _attribute(kind: str, value: Any) -> bytes:
    return _der(cms.CMSAttribute({"type": kind, "values": [value]}))


# Constant DER pieces, encoded by asn1crypto once so that they are what it always produced.
_SIGNED_DATA_OID = _der(cms.ContentType("signed_data"))
_TST_INFO_OID = _der(cms.ContentType("tst_info"))
_SHA256 = _der(algos.DigestAlgorithm({"algorithm": "sha256"}))
_ECDSA_SHA256 = _der(algos.SignedDigestAlgorithm({"algorithm": "sha256_ecdsa"}))
_CONTENT_TYPE_ATTR = _attribute("content_type", "tst_info")
_SIGNING_TIME_OID = _der(cms.CMSAttributeType("signing_time"))
_MESSAGE_DIGEST_OID = _der(cms.CMSAttributeType("message_digest"))
_VERSION_1, _VERSION_3 = _integer(1), _integer(3)
_ACCURACY_1S = _der(tsp.Accuracy({"seconds": 1}))
_GRANTED = _der(tsp.PKIStatusInfo({"status": "granted"}))


class BuiltinTSA:
    """An in-process TSA for self-contained deployments and tests.

    ``next_serial`` must return a fresh serial number per token (RFC 3161 requires them
    unique for a TSA); ``clock`` returns the timezone-aware time to put in ``genTime``.
    """

    def __init__(
        self,
        chain: TSAChain,
        next_serial: Callable[[], int],
        clock: Callable[[], datetime],
        *,
        policy_oid: str = BUILTIN_POLICY_OID,
    ) -> None:
        key = serialization.load_pem_private_key(chain.tsa_key_pem, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"expected an ECDSA TSA key, got {type(key).__name__}")
        self._key = key
        self._ecdsa = ec.ECDSA(hashes.SHA256())
        cert_der = cx509.load_pem_x509_certificate(chain.tsa_cert_pem).public_bytes(
            serialization.Encoding.DER
        )
        cert = x509.Certificate.load(cert_der)
        self._next_serial = next_serial
        self._clock = clock
        self._policy = policy_oid
        # Everything below is the same in every token: encode it once.
        self._policy_der = _der(core.ObjectIdentifier(policy_oid))
        self._certificates = _tlv(0xA0, cert_der)  # [0] IMPLICIT CertificateSet
        ess = {"certs": [{"cert_hash": hashlib.sha256(cert_der).digest()}]}
        self._ess_attr = _attribute("signing_certificate_v2", ess)
        sid = _seq(_der(cert.issuer), _der(cert["tbs_certificate"]["serial_number"]))
        self._signer_prefix = _VERSION_1 + sid + _SHA256

    def timestamp(self, data: bytes) -> bytes:
        imprint = _seq(_SHA256, _octets(hashlib.sha256(data).digest()))
        return self._token(imprint, nonce=None, include_cert=True)

    def respond(self, request_der: bytes) -> bytes:
        """A DER TimeStampResp for a DER TimeStampReq: granted, or rejected with a reason."""
        try:
            request = self._parse_request(request_der)
        except _RejectedError as exc:
            return _rejection(exc.failure, str(exc))
        imprint = _der(request["message_imprint"])
        token = self._token(imprint, request["nonce"].native, request["cert_req"].native)
        return _seq(_GRANTED, token)

    def _parse_request(self, request_der: bytes) -> tsp.TimeStampReq:
        try:
            request = tsp.TimeStampReq.load(request_der)
            algorithm = request["message_imprint"]["hash_algorithm"]["algorithm"].native
            digest = request["message_imprint"]["hashed_message"].native
            policy = request["req_policy"].dotted if request["req_policy"].native else None
            has_extensions = bool(request["extensions"].native)
        except (ValueError, TypeError, KeyError) as exc:
            raise _RejectedError("bad_data_format", f"expected a DER TimeStampReq: {exc}") from exc
        if len(digest) != _DIGEST_SIZES.get(algorithm):
            raise _RejectedError("bad_alg", f"expected a SHA-2 message imprint, got {algorithm}")
        if policy not in (None, self._policy):
            raise _RejectedError(
                "unaccepted_policy", f"expected policy {self._policy}, got {policy}"
            )
        if has_extensions:
            raise _RejectedError("unaccepted_extensions", "expected no request extensions")
        return request

    def _token(self, imprint: bytes, nonce: int | None, include_cert: bool) -> bytes:
        """A DER TimeStampToken (RFC 3161 2.4.2) over the DER ``imprint``."""
        gen_time = self._clock().astimezone(UTC)
        tst_info = _seq(
            _VERSION_1,
            self._policy_der,
            imprint,
            _integer(self._next_serial()),
            _generalized(gen_time),
            _ACCURACY_1S,
            b"" if nonce is None else _integer(nonce),
        )
        attributes = [
            _CONTENT_TYPE_ATTR,
            _seq(_SIGNING_TIME_OID, _tlv(0x31, _utc(gen_time))),
            _seq(_MESSAGE_DIGEST_OID, _tlv(0x31, _octets(hashlib.sha256(tst_info).digest()))),
            self._ess_attr,
        ]
        # DER orders a SET OF by encoding; the signature covers the attributes as a SET
        # (RFC 5652 5.4), while the SignerInfo carries them as [0] IMPLICIT.
        attributes_der = b"".join(sorted(attributes))
        signature = self._key.sign(_tlv(0x31, attributes_der), self._ecdsa)
        signer_info = _seq(
            self._signer_prefix,
            _tlv(0xA0, attributes_der),
            _ECDSA_SHA256,
            _octets(signature),
        )
        encapsulated = _seq(_TST_INFO_OID, _tlv(0xA0, _octets(tst_info)))
        signed_data = _seq(
            _VERSION_3,
            _tlv(0x31, _SHA256),
            encapsulated,
            self._certificates if include_cert else b"",
            _tlv(0x31, signer_info),
        )
        return _seq(_SIGNED_DATA_OID, _tlv(0xA0, signed_data))


def _rejection(failure: str, message: str) -> bytes:
    status = {"status": "rejection", "status_string": [message], "fail_info": {failure}}
    return _der(_TimeStampResp({"status": status}))


def response_from_token(token_der: bytes) -> bytes:
    """The token in a granted TimeStampResp (RFC 3161 2.4.2): ``SEQUENCE { PKIStatusInfo
    { status granted(0) }, token }``, the form ``openssl ts -verify -in``, rfc3161-client
    and sigstore bundles read. The status is not signed; the token is the evidence."""
    return _seq(_GRANTED, token_der)


def token_from_response(response_der: bytes) -> bytes:
    """The TimeStampToken of a granted TimeStampResp; ``EvidenceError`` otherwise."""
    try:
        response = _TimeStampResp.load(response_der)
        status = response["status"]["status"].native
        token = response["time_stamp_token"]
        # An absent token is a Void; ``.native`` would decode the whole token to find out.
        token_der = b"" if isinstance(token, core.Void) else token.dump()
    except (ValueError, TypeError, KeyError) as exc:
        raise EvidenceError(f"expected a DER TimeStampResp: {exc}") from exc
    if status not in ("granted", "granted_with_mods") or not token_der:
        texts = response["status"]["status_string"].native or []
        raise EvidenceError(f"expected a granted time-stamp, got {status}: {'; '.join(texts)}")
    return token_der


def verify_timestamp(token_der: bytes, data: bytes, root_cert_pem: bytes | str) -> datetime:
    """The ``genTime`` of a token over ``data`` that chains to the root; else ``EvidenceError``.

    Verification is ``rfc3161-client``'s: CMS signature, chain to ``root_cert_pem`` at
    ``genTime``, critical ``timeStamping`` EKU, and the message imprint of ``data``.
    The token is parsed once here (strict DER) for the fields CMS leaves unsigned and for
    ``genTime``; rfc3161-client parses the same bytes, wrapped in a granted response.
    """
    pem = root_cert_pem.encode() if isinstance(root_cert_pem, str) else root_cert_pem
    try:
        info = _check_unsigned_fields(token_der)
        root = cx509.load_pem_x509_certificate(pem)
        response = decode_timestamp_response(response_from_token(token_der))
        VerifierBuilder().add_root_certificate(root).build().verify_message(response, data)
    except (VerificationError, ValueError, TypeError, KeyError) as exc:
        raise EvidenceError(f"time-stamp token does not verify: {exc}") from exc
    return _gen_time(info)


def _check_unsigned_fields(token_der: bytes) -> cms.ContentInfo:
    """Parse the token (strict DER, nothing after it) and pin the fields CMS leaves
    unsigned, so that no flipped byte of a token verifies.

    OpenSSL ignores the SignedData and SignerInfo versions and takes the hash from
    ``digestAlgorithm``, so a token with those bytes altered would otherwise still pass.
    """
    info = cms.ContentInfo.load(token_der, strict=True)
    if info["content_type"].native != "signed_data":
        raise ValueError("expected a SignedData time-stamp token")
    signed_data = info["content"]
    signers = signed_data["signer_infos"]
    if signed_data["version"].native != "v3" or len(signers) != 1:
        raise ValueError("expected SignedData v3 with exactly one signer")
    signer = signers[0]
    digest = signer["digest_algorithm"]["algorithm"].native
    if signer["version"].native != "v1" or signer["signature_algorithm"].hash_algo != digest:
        raise ValueError("expected a v1 signer whose signature hash is its digest algorithm")
    return info


def _gen_time(info: cms.ContentInfo) -> datetime:
    """``genTime`` with its fraction of a second, which rfc3161-client drops."""
    tst_info = info["content"]["encap_content_info"]["content"].parsed
    gen_time: datetime = tst_info["gen_time"].native
    return gen_time.astimezone(UTC)
