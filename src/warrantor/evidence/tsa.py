"""RFC 3161 time-stamp tokens: the ``TimestampAuthority`` seam, a built-in TSA, verification.

A time-stamp token is a CMS ``ContentInfo`` (RFC 5652) holding ``SignedData`` over a
``TSTInfo`` (RFC 3161 section 2.4.2). The built-in TSA signs with ECDSA P-256 and SHA-256,
puts content-type, signing-time, message-digest and ESS signingCertificateV2 (RFC 5035)
in the signed attributes, and embeds its certificate, so that ``openssl ts -verify`` and
``rfc3161-client`` both accept its tokens. Its chain (a root CA and a TSA certificate
with the critical ``timeStamping`` extended key usage) comes from ``generate_chain``.

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
        cert_der = cx509.load_pem_x509_certificate(chain.tsa_cert_pem).public_bytes(
            serialization.Encoding.DER
        )
        self._cert = x509.Certificate.load(cert_der)
        self._next_serial = next_serial
        self._clock = clock
        self._policy = policy_oid

    def timestamp(self, data: bytes) -> bytes:
        imprint = _imprint("sha256", hashlib.sha256(data).digest())
        return _der(self._token(imprint, nonce=None, include_cert=True))

    def respond(self, request_der: bytes) -> bytes:
        """A DER TimeStampResp for a DER TimeStampReq: granted, or rejected with a reason."""
        try:
            request = self._parse_request(request_der)
        except _RejectedError as exc:
            return _rejection(exc.failure, str(exc))
        nonce = request["nonce"].native
        token = self._token(request["message_imprint"], nonce, request["cert_req"].native)
        granted = {"status": {"status": "granted"}, "time_stamp_token": token}
        return _der(_TimeStampResp(granted))

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

    def _tst_info(self, imprint: tsp.MessageImprint, nonce: int | None) -> tsp.TSTInfo:
        gen_time = self._clock().astimezone(UTC)
        fields: dict[str, Any] = {
            "version": "v1",
            "policy": self._policy,
            "message_imprint": imprint,
            "serial_number": self._next_serial(),
            "gen_time": gen_time,
            "accuracy": {"seconds": 1},
        }
        if nonce is not None:
            fields["nonce"] = nonce
        return tsp.TSTInfo(fields)

    def _token(
        self, imprint: tsp.MessageImprint, nonce: int | None, include_cert: bool
    ) -> cms.ContentInfo:
        tst_info = self._tst_info(imprint, nonce)
        content = tst_info.dump()
        signed_attrs = self._signed_attrs(content, tst_info["gen_time"].native)
        signature = self._key.sign(signed_attrs.dump(), ec.ECDSA(hashes.SHA256()))
        signed_data: dict[str, Any] = {
            "version": "v3",
            "digest_algorithms": [{"algorithm": "sha256"}],
            "encap_content_info": {"content_type": "tst_info", "content": tst_info},
            "signer_infos": [self._signer_info(signed_attrs, signature)],
        }
        if include_cert:
            signed_data["certificates"] = [self._cert]
        return cms.ContentInfo({"content_type": "signed_data", "content": signed_data})

    def _signed_attrs(self, content: bytes, gen_time: datetime) -> cms.CMSAttributes:
        ess = {"certs": [{"cert_hash": hashlib.sha256(self._cert.dump()).digest()}]}
        attrs = [
            cms.CMSAttribute({"type": "content_type", "values": ["tst_info"]}),
            cms.CMSAttribute(
                {"type": "signing_time", "values": [cms.Time({"utc_time": gen_time})]}
            ),
            cms.CMSAttribute(
                {"type": "message_digest", "values": [hashlib.sha256(content).digest()]}
            ),
            cms.CMSAttribute({"type": "signing_certificate_v2", "values": [ess]}),
        ]
        # DER orders a SET OF by encoding; verifiers re-encode before checking the signature.
        return cms.CMSAttributes(sorted(attrs, key=lambda a: a.dump()))

    def _signer_info(self, signed_attrs: cms.CMSAttributes, signature: bytes) -> cms.SignerInfo:
        sid = cms.IssuerAndSerialNumber(
            {"issuer": self._cert.issuer, "serial_number": self._cert.serial_number}
        )
        return cms.SignerInfo(
            {
                "version": "v1",
                "sid": cms.SignerIdentifier({"issuer_and_serial_number": sid}),
                "digest_algorithm": algos.DigestAlgorithm({"algorithm": "sha256"}),
                "signed_attrs": signed_attrs,
                "signature_algorithm": algos.SignedDigestAlgorithm({"algorithm": "sha256_ecdsa"}),
                "signature": signature,
            }
        )


def _rejection(failure: str, message: str) -> bytes:
    status = {"status": "rejection", "status_string": [message], "fail_info": {failure}}
    return _der(_TimeStampResp({"status": status}))


def token_from_response(response_der: bytes) -> bytes:
    """The TimeStampToken of a granted TimeStampResp; ``EvidenceError`` otherwise."""
    try:
        response = _TimeStampResp.load(response_der)
        status = response["status"]["status"].native
        token = response["time_stamp_token"]
        token_der = token.dump() if token.native is not None else b""
    except (ValueError, TypeError, KeyError) as exc:
        raise EvidenceError(f"expected a DER TimeStampResp: {exc}") from exc
    if status not in ("granted", "granted_with_mods") or not token_der:
        texts = response["status"]["status_string"].native or []
        raise EvidenceError(f"expected a granted time-stamp, got {status}: {'; '.join(texts)}")
    return token_der


def _as_response(token_der: bytes) -> bytes:
    token = cms.ContentInfo.load(token_der, strict=True)
    return _der(_TimeStampResp({"status": {"status": "granted"}, "time_stamp_token": token}))


def verify_timestamp(token_der: bytes, data: bytes, root_cert_pem: bytes | str) -> datetime:
    """The ``genTime`` of a token over ``data`` that chains to the root; else ``EvidenceError``.

    Verification is ``rfc3161-client``'s: CMS signature, chain to ``root_cert_pem`` at
    ``genTime``, critical ``timeStamping`` EKU, and the message imprint of ``data``.
    """
    pem = root_cert_pem.encode() if isinstance(root_cert_pem, str) else root_cert_pem
    try:
        _check_unsigned_fields(token_der)
        root = cx509.load_pem_x509_certificate(pem)
        response = decode_timestamp_response(_as_response(token_der))
        VerifierBuilder().add_root_certificate(root).build().verify_message(response, data)
    except (VerificationError, ValueError, TypeError, KeyError) as exc:
        raise EvidenceError(f"time-stamp token does not verify: {exc}") from exc
    return _gen_time(token_der)


def _check_unsigned_fields(token_der: bytes) -> None:
    """Pin the fields CMS leaves unsigned, so that no flipped byte of a token verifies.

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


def _gen_time(token_der: bytes) -> datetime:
    """``genTime`` with its fraction of a second, which rfc3161-client drops."""
    signed_data = cms.ContentInfo.load(token_der)["content"]
    tst_info = signed_data["encap_content_info"]["content"].parsed
    gen_time: datetime = tst_info["gen_time"].native
    return gen_time.astimezone(UTC)
