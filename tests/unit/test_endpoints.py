"""Tests for warrantor.policy.endpoints: URL parsing, host patterns, allowlist, TLS pins."""

from __future__ import annotations

import datetime as dt
import hashlib
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from warrantor.errors import ActionDeniedError, ValidationError
from warrantor.policy.endpoints import (
    Endpoint,
    EndpointAllowlist,
    EndpointError,
    EndpointVerdict,
    TLSPinMismatchError,
    check_pin,
    fetch_certificate_fingerprint,
    host_matches,
    normalize_fingerprint,
    parse_endpoint,
)

PARSED = [
    ("plain", "https://api.stripe.com/v1/charges", ("https", "api.stripe.com", 443)),
    ("http_default_port", "http://api.bank.example", ("http", "api.bank.example", 80)),
    ("upper_case", "HTTPS://API.Stripe.COM/", ("https", "api.stripe.com", 443)),
    ("explicit_port", "https://api.stripe.com:8443/x", ("https", "api.stripe.com", 8443)),
    ("empty_port", "https://api.stripe.com:/x", ("https", "api.stripe.com", 443)),
    ("trailing_dot", "https://api.stripe.com./", ("https", "api.stripe.com", 443)),
    ("userinfo_is_not_the_host", "https://api.stripe.com@evil.io/", ("https", "evil.io", 443)),
    ("userinfo_with_password", "https://u:p@api.stripe.com:444", ("https", "api.stripe.com", 444)),
    ("last_at_wins", "https://a@b@evil.io/", ("https", "evil.io", 443)),
    ("at_in_query", "https://api.stripe.com/?next=@evil.io", ("https", "api.stripe.com", 443)),
    ("at_in_fragment", "https://evil.io#@api.stripe.com", ("https", "evil.io", 443)),
    (
        "look_alike_suffix",
        "https://api.stripe.com.evil.io/",
        ("https", "api.stripe.com.evil.io", 443),
    ),
    ("idn", "https://bücher.example/", ("https", "xn--bcher-kva.example", 443)),
    ("idn_upper", "https://BÜCHER.example/", ("https", "xn--bcher-kva.example", 443)),
    ("punycode", "https://xn--bcher-kva.example/", ("https", "xn--bcher-kva.example", 443)),
    (  # fullwidth "api" and an ideographic full stop, as UTS 46 and WHATWG map them
        "fullwidth_maps_to_ascii",
        "https://\uff41\uff50\uff49\u3002stripe.com/",
        ("https", "api.stripe.com", 443),
    ),
    ("ipv4", "https://127.0.0.1:8443/", ("https", "127.0.0.1", 8443)),
    ("ipv6", "https://[::1]/", ("https", "::1", 443)),
    ("ipv6_port_uncompressed", "http://[2001:DB8:0:0::1]:8080/", ("http", "2001:db8::1", 8080)),
    ("backslash_after_path", "https://api.stripe.com/a\\b", ("https", "api.stripe.com", 443)),
    ("underscore_label", "https://my_host.example/", ("https", "my_host.example", 443)),
]


@pytest.mark.parametrize(("case", "url", "expected"), PARSED, ids=[c[0] for c in PARSED])
def test_parse_endpoint(case: str, url: str, expected: tuple[str, str, int]) -> None:
    assert parse_endpoint(url) == Endpoint(*expected)


REFUSED = [
    ("empty", "", "non-empty"),
    ("not_a_url", "api.stripe.com", "http or https"),
    ("ftp", "ftp://files.example/", "http or https"),
    ("javascript", "javascript:alert(1)", "http or https"),
    ("no_slashes", "https:evil.io", "followed by a host"),
    ("three_slashes", "https:///evil.io", "followed by a host"),
    ("backslash_userinfo", "http://evil.io\\@api.stripe.com", "backslash"),
    ("backslash_as_slash", "https:\\\\evil.io", "followed by a host"),
    ("percent_encoded_host", "https://%61pi.stripe.com/", "percent"),
    ("empty_host", "https:///", "followed by a host"),
    ("empty_host_with_port", "https://:443/", "empty"),
    ("only_userinfo", "https://user@/", "empty"),
    ("space", "https://api.stripe.com /", "spaces"),
    ("tab_inside", "https://api.st\tripe.com/", "control"),
    ("double_dot", "https://api..stripe.com/", "valid host name"),
    ("bare_dot", "https://./", "valid host name"),
    ("leading_hyphen", "https://-evil.example/", "valid host name"),
    ("long_label", f"https://{'a' * 64}.example/", "valid host name"),
    ("port_zero", "https://api.stripe.com:0/", "port"),
    ("port_too_big", "https://api.stripe.com:65536/", "port"),
    ("port_sign", "https://api.stripe.com:+443/", "port"),
    ("port_not_digits", "https://api.stripe.com:https/", "port"),
    ("decimal_ip", "https://2130706433/", "dotted-quad"),
    ("short_ip", "https://127.1/", "dotted-quad"),
    ("hex_ip", "https://0x7f.0.0.1/", "dotted-quad"),
    ("octal_ip", "https://0177.0.0.1/", "dotted-quad"),
    ("numeric_tld", "https://example.123/", "dotted-quad"),
    ("ipv6_unbracketed", "https://::1/", "brackets"),
    ("ipv6_unclosed", "https://[::1/", "]"),
    ("ipv6_zone", "https://[fe80::1%25eth0]/", "zone"),
    ("ipv6_junk_after", "https://[::1]x/", "port"),
    ("ipv6_invalid", "https://[::g]/", "IPv6"),
    ("bad_punycode", "https://xn--zz.example/", "punycode"),
    ("invalid_idn", "https://a\u200db.example/", "internationalized"),
]


@pytest.mark.parametrize(("case", "url", "needle"), REFUSED, ids=[c[0] for c in REFUSED])
def test_unsafe_urls_are_refused(case: str, url: str, needle: str) -> None:
    with pytest.raises(EndpointError, match=None) as caught:
        parse_endpoint(url)
    assert needle in str(caught.value)
    assert isinstance(caught.value, ValueError)
    assert isinstance(caught.value, ValidationError)


def test_refusal_does_not_echo_credentials() -> None:
    with pytest.raises(EndpointError) as caught:
        parse_endpoint("https:user:hunter2@evil.io")
    assert "hunter2" not in str(caught.value)


MATCHES = [
    ("api.stripe.com", "api.stripe.com", True),
    ("API.stripe.com.", "api.stripe.com", True),
    ("a.example.com", "*.example.com", True),
    ("a.b.example.com", "*.example.com", True),
    ("example.com", "*.example.com", False),
    ("evilexample.com", "*.example.com", False),
    ("example.com.evil.io", "*.example.com", False),
    ("a.example.com.evil.io", "*.example.com", False),
    ("api.stripe.com.evil.io", "api.stripe.com", False),
    ("stripe.com", "api.stripe.com", False),
    ("xn--bcher-kva.example", "bücher.example", True),
    ("shop.xn--bcher-kva.example", "*.bücher.example", True),
    ("::1", "::1", True),
    ("::1", "[::1]", True),
    ("127.0.0.1", "127.0.0.1", True),
    ("127.0.0.2", "127.0.0.1", False),
    ("*.example.com", "*.example.com", False),
    ("anything", "not a pattern!", False),
]


@pytest.mark.parametrize(("host", "pattern", "expected"), MATCHES)
def test_host_matches(host: str, pattern: str, expected: bool) -> None:
    assert host_matches(host, pattern) is expected


@pytest.mark.parametrize("pattern", ["*", "api.*.com", "*example.com", "a..b", "*.", ""])
def test_bad_patterns_are_refused_by_the_allowlist(pattern: str) -> None:
    with pytest.raises(EndpointError):
        EndpointAllowlist(True, {"wire_transfer": [pattern]})


@dataclass(frozen=True)
class EndpointsConfig:  # stand-in for warrantor.policy.config.EndpointsConfig
    strict: bool
    allow: dict[str, tuple[str, ...]]
    pins: dict[str, tuple[str, ...]] = field(default_factory=dict)


ALLOW = {"wire_transfer": ("api.bank.example", "*.payments.example"), "email": ()}

CHECKS = [
    # (strict, action type, url, allowed, host, matched pattern)
    (True, "wire_transfer", None, True, None, None),
    (False, "wire_transfer", None, True, None, None),
    (True, "wire_transfer", "https://api.bank.example/wires", True, "api.bank.example",
     "api.bank.example"),
    (True, "wire_transfer", "https://eu.payments.example/", True, "eu.payments.example",
     "*.payments.example"),
    (True, "wire_transfer", "https://payments.example/", False, "payments.example", None),
    (False, "wire_transfer", "https://evil.io/", False, "evil.io", None),
    (False, "wire_transfer", "https://api.bank.example@evil.io/", False, "evil.io", None),
    (False, "wire_transfer", "https://api.bank.example.evil.io/", False,
     "api.bank.example.evil.io", None),
    (True, "refund", "https://api.bank.example/", False, "api.bank.example", None),
    (False, "refund", "https://anything.example/", True, "anything.example", None),
    (False, "email", "https://smtp.example/", False, "smtp.example", None),
]


@pytest.mark.parametrize(("strict", "action", "url", "allowed", "host", "pattern"), CHECKS)
def test_allowlist_check(
    strict: bool, action: str, url: str | None, allowed: bool, host: str | None,
    pattern: str | None,
) -> None:
    allowlist = EndpointAllowlist.from_endpoints_config(EndpointsConfig(strict, ALLOW))
    verdict = allowlist.check(action, url)
    reason = None if allowed else "ENDPOINT_NOT_ALLOWED"
    assert verdict == EndpointVerdict(allowed, host, reason, pattern)


def test_check_refuses_unsafe_urls_instead_of_guessing() -> None:
    allowlist = EndpointAllowlist(False, ALLOW)
    with pytest.raises(EndpointError):
        allowlist.check("wire_transfer", "http://evil.io\\@api.bank.example")


FINGERPRINT = "ab" * 32


@pytest.mark.parametrize(
    "written", [FINGERPRINT, FINGERPRINT.upper(), f"sha256:{FINGERPRINT}",
                ":".join(["AB"] * 32)],
)
def test_fingerprint_forms(written: str) -> None:
    assert normalize_fingerprint(written) == FINGERPRINT
    allowlist = EndpointAllowlist(True, {}, {"API.Bank.Example.": [written]})
    assert allowlist.pins_for("api.bank.example") == (FINGERPRINT,)
    assert allowlist.pins_for("other.example") == ()


@pytest.mark.parametrize("bad", ["", "abc", "zz" * 32, FINGERPRINT + "00"])
def test_bad_fingerprints(bad: str) -> None:
    with pytest.raises(ValueError, match="fingerprint"):
        normalize_fingerprint(bad)


# --- TLS pinning against a real server on loopback ------------------------------------------


def self_signed(tmp_path: Path, name: str) -> tuple[Path, Path, str]:
    """A self-signed certificate and key on disk, and the hex sha256 of the DER certificate."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / f"{name}.crt", tmp_path / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    fingerprint = hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()
    return cert_path, key_path, fingerprint


@dataclass
class TLSServer:
    port: int
    fingerprint: str


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[TLSServer]:
    cert_path, key_path, fingerprint = self_signed(tmp_path, "pinned.test")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            conn.settimeout(5)
            try:
                with context.wrap_socket(conn, server_side=True) as tls:
                    tls.recv(1)  # returns when the client closes
            except (OSError, ssl.SSLError):
                conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield TLSServer(listener.getsockname()[1], fingerprint)
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()


def test_fetch_certificate_fingerprint(tls_server: TLSServer) -> None:
    assert fetch_certificate_fingerprint("127.0.0.1", tls_server.port) == tls_server.fingerprint
    with_sni = fetch_certificate_fingerprint(
        "127.0.0.1", tls_server.port, server_hostname="pinned.test"
    )
    assert with_sni == tls_server.fingerprint


def test_check_pin_accepts_a_pinned_certificate(tls_server: TLSServer) -> None:
    check_pin("127.0.0.1", tls_server.port, ["00" * 32, tls_server.fingerprint.upper()])


def test_check_pin_refuses_another_certificate(tls_server: TLSServer) -> None:
    with pytest.raises(TLSPinMismatchError) as caught:
        check_pin("127.0.0.1", tls_server.port, ["00" * 32])
    error = caught.value
    assert isinstance(error, ActionDeniedError)
    assert (error.code, error.status) == ("ENDPOINT_TLS_MISMATCH", 403)
    assert error.details["observed"] == tls_server.fingerprint


def test_check_pin_fails_closed_when_nothing_answers() -> None:
    with socket.create_server(("127.0.0.1", 0)) as placeholder:
        port = placeholder.getsockname()[1]
    with pytest.raises(TLSPinMismatchError, match="could not fetch") as caught:
        check_pin("127.0.0.1", port, [FINGERPRINT], timeout=1.0)
    assert caught.value.details["observed"] is None


def test_check_pin_needs_pins() -> None:
    with pytest.raises(ValueError, match="at least one"):
        check_pin("127.0.0.1", 1, [])
