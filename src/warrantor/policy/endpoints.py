"""Endpoint allowlist and TLS certificate pinning for actions that call an external URL.

Implements the ``endpoint allowlist`` stage of the authorization pipeline
(docs/architecture.md) and the ``endpoints`` block of a bundle's config (docs/guardrails.md)::

    endpoints:
      strict: true
      allow: {wire_transfer: ["api.bank.example", "*.payments.example"]}
      pins: {api.bank.example: ["<hex sha256 of the leaf certificate, DER>"]}

and the ``ENDPOINT_TLS_MISMATCH`` hard block on a pinned host whose certificate differs.

What it does:

- ``parse_endpoint`` turns an ``endpoint_url`` into ``Endpoint(scheme, host, port)``. Only
  ``http`` and ``https`` with ``//`` authority. The host is lower-cased, IDNA-encoded (UTS 46
  mapping, then punycode, via the ``idna`` package), stripped of one trailing dot; IPv4
  (dotted quad only) and bracketed IPv6 literals are normalized with ``ipaddress``. Userinfo
  is ignored: the host is what follows the last ``@``, as both RFC 3986 and the WHATWG URL
  standard read it (``https://api.stripe.com@evil.io/`` is ``evil.io``).
- Anything that URL parsers disagree on is refused with ``EndpointError`` rather than
  guessed: ASCII control characters or spaces, a backslash in the authority (WHATWG reads
  ``http://evil.io\\@api.stripe.com`` as host ``evil.io``, ``urllib`` as ``api.stripe.com``),
  ``https:host`` or ``https:///host``, percent-encoded hosts, numeric hosts that are not a
  dotted quad (WHATWG reads ``2130706433`` and ``127.1`` as ``127.0.0.1``), IPv6 zone ids,
  bad ports, empty or over-long labels.
- ``host_matches(host, pattern)``: exact match, or ``*.example.com`` matching subdomains at
  any depth, never ``example.com`` itself, ``evilexample.com`` or ``example.com.evil.io``.
  Ports and schemes are not part of a pattern.
- ``EndpointAllowlist.check`` decides: no URL is allowed (nothing to check); an action type
  with an entry is allowed only for a host in it, strict or not; an action type without an
  entry is allowed unless ``strict``.
- ``fetch_certificate_fingerprint`` / ``check_pin``: connect with ``ssl`` *without* chain or
  hostname verification (the pin is the check) and compare the hex sha256 of the DER leaf
  certificate with the pinned ones; a mismatch, or no answer at all, is a
  ``TLSPinMismatchError`` (code ``ENDPOINT_TLS_MISMATCH``): pinning fails closed.

What it does not do: resolve DNS (a listed name that resolves to a private address is the
operator's business), follow redirects, or perform the action's HTTP request.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import re
import socket
import ssl
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

import idna

from warrantor.errors import ActionDeniedError, ValidationError

NOT_ALLOWED: Final = "ENDPOINT_NOT_ALLOWED"
DEFAULT_PORTS: Final = {"http": 80, "https": 443}
MAX_URL_LENGTH: Final = 8192

_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*):")
_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_\-]{0,61}[a-z0-9_])?")
_NUMERIC_LAST_LABEL = re.compile(r"(?:0x[0-9a-f]*|[0-9]+)")
_FINGERPRINT = re.compile(r"[0-9a-f]{64}")


class EndpointError(ValidationError, ValueError):
    """An ``endpoint_url`` or host pattern that cannot be checked safely."""


class TLSPinMismatchError(ActionDeniedError):
    """The endpoint's certificate is not one of the pinned ones (or could not be fetched)."""

    code = "ENDPOINT_TLS_MISMATCH"


@dataclass(frozen=True, slots=True)
class Endpoint:
    scheme: str
    host: str
    port: int


@dataclass(frozen=True, slots=True)
class EndpointVerdict:
    allowed: bool
    host: str | None
    reason: str | None = None
    matched_pattern: str | None = None


def parse_endpoint(url: str) -> Endpoint:
    """The normalized scheme, host and port of ``url``; ``EndpointError`` if it is unsafe."""
    if not isinstance(url, str) or not url:
        raise EndpointError(f"expected a non-empty URL string, got {url!r}")
    if len(url) > MAX_URL_LENGTH:
        raise EndpointError(f"expected a URL of at most {MAX_URL_LENGTH} characters")
    if any(ord(c) <= 0x20 or ord(c) == 0x7F for c in url):
        raise EndpointError("expected a URL without spaces or control characters")
    scheme_match = _SCHEME.match(url)
    scheme = scheme_match.group(1).lower() if scheme_match else ""
    if scheme not in DEFAULT_PORTS:
        raise EndpointError(f"expected an http or https URL, got scheme {scheme or None!r}")
    rest = url[scheme_match.end():] if scheme_match else ""
    if not rest.startswith("//") or rest.startswith("///"):
        raise EndpointError(f"expected '{scheme}://' followed by a host")
    authority = re.split(r"[/?#]", rest[2:], maxsplit=1)[0]
    if "\\" in authority:
        raise EndpointError("expected no backslash before the path: parsers disagree on the host")
    hostport = authority.rpartition("@")[2]
    host, port = _split_port(hostport, DEFAULT_PORTS[scheme])
    return Endpoint(scheme, normalize_host(host), port)


def _split_port(hostport: str, default: int) -> tuple[str, int]:
    if hostport.startswith("["):
        close = hostport.find("]")
        if close < 0:
            raise EndpointError("expected ']' after an IPv6 literal")
        host, tail = hostport[: close + 1], hostport[close + 1 :]
        if tail and not tail.startswith(":"):
            raise EndpointError(f"expected ':port' after the IPv6 literal, got {tail!r}")
        port_text = tail[1:]
    else:
        host, _, port_text = hostport.partition(":")
        if ":" in port_text:
            raise EndpointError("expected an IPv6 literal in brackets")
    if not port_text:
        return host, default
    if not port_text.isascii() or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise EndpointError(f"expected a port from 1 to 65535, got {port_text[:16]!r}")
    return host, int(port_text)


def normalize_host(host: str) -> str:
    """The canonical form of a host: IDNA A-labels, lower case, no trailing dot, IPs compressed."""
    if not host:
        raise EndpointError("expected a host, got an empty one")
    if host.startswith("["):
        return _ipv6(host)
    if "%" in host:
        raise EndpointError("expected a host without percent-encoding")
    name = _to_ascii(host)
    if name.endswith("."):
        name = name[:-1]
    labels = name.split(".")
    if _NUMERIC_LAST_LABEL.fullmatch(labels[-1]):
        try:
            return str(ipaddress.IPv4Address(name))
        except ValueError:
            raise EndpointError(f"expected a dotted-quad IPv4 address, got {host[:80]!r}") from None
    if len(name) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        raise EndpointError(f"expected a valid host name, got {host[:80]!r}")
    for label in labels:
        if label.startswith("xn--"):
            _check_a_label(label, host)
    return name


def _ipv6(host: str) -> str:
    if not host.endswith("]"):
        raise EndpointError("expected ']' after an IPv6 literal")
    inner = host[1:-1]
    if "%" in inner:
        raise EndpointError("expected an IPv6 literal without a zone id")
    try:
        return ipaddress.IPv6Address(inner).compressed
    except ValueError:
        raise EndpointError(f"expected an IPv6 address, got {inner[:64]!r}") from None


def _to_ascii(host: str) -> str:
    if host.isascii():
        return host.lower()
    try:
        return idna.encode(host, uts46=True).decode("ascii")
    except UnicodeError as exc:  # idna.IDNAError and its subclasses
        raise EndpointError(f"expected a valid internationalized host name: {exc}") from None


def _check_a_label(label: str, host: str) -> None:
    try:
        idna.decode(label)
    except UnicodeError:
        raise EndpointError(f"expected valid punycode in {host[:80]!r}") from None


@functools.lru_cache(maxsize=4096)
def normalize_pattern(pattern: str) -> str:
    """A host pattern in canonical form: a host, or ``*.`` followed by a host."""
    if not isinstance(pattern, str):
        raise EndpointError(f"expected a host pattern string, got {pattern!r}")
    if pattern.startswith("*."):
        return "*." + normalize_host(pattern[2:])
    if "*" in pattern:
        raise EndpointError(f"expected '*.' only as a prefix of the pattern, got {pattern!r}")
    if ":" in pattern and not pattern.startswith("["):
        pattern = f"[{pattern}]"  # a bare IPv6 address
    return normalize_host(pattern)


def host_matches(host: str, pattern: str) -> bool:
    """Whether ``host`` is ``pattern``, or a subdomain of it when it starts with ``*.``."""
    try:
        pattern = normalize_pattern(pattern)
        host = normalize_pattern(host)
    except EndpointError:
        return False
    if host.startswith("*."):
        return False
    if pattern.startswith("*."):
        return host.endswith(pattern[1:]) and len(host) > len(pattern) - 1
    return host == pattern


def normalize_fingerprint(value: str) -> str:
    """Lower-case hex sha256 from ``AB:CD:...``, ``sha256:abcd...`` or plain hex."""
    text = value.strip().lower()
    text = text.removeprefix("sha256:").removeprefix("sha256/").replace(":", "")
    if not _FINGERPRINT.fullmatch(text):
        raise ValueError(f"expected a hex sha256 certificate fingerprint, got {value[:80]!r}")
    return text


class EndpointAllowlist:
    """The endpoint allowlist of one policy bundle, patterns normalized once."""

    __slots__ = ("_allow", "_pins", "strict")

    def __init__(
        self,
        strict: bool = False,
        allow: Mapping[str, Iterable[str]] | None = None,
        pins: Mapping[str, Iterable[str]] | None = None,
    ) -> None:
        self.strict = bool(strict)
        self._allow = {
            action: tuple(normalize_pattern(p) for p in patterns)
            for action, patterns in (allow or {}).items()
        }
        self._pins = {
            normalize_pattern(host): tuple(normalize_fingerprint(f) for f in prints)
            for host, prints in (pins or {}).items()
        }

    @classmethod
    def from_endpoints_config(cls, config: object) -> EndpointAllowlist:
        """From an ``EndpointsConfig``-like object with ``strict``, ``allow`` and ``pins``."""
        return cls(
            bool(getattr(config, "strict", False)),
            getattr(config, "allow", None),
            getattr(config, "pins", None),
        )

    def check(self, action_type: str, endpoint_url: str | None) -> EndpointVerdict:
        """Whether ``action_type`` may call ``endpoint_url``; raises ``EndpointError`` if unsafe."""
        if endpoint_url is None:
            return EndpointVerdict(True, None)
        host = parse_endpoint(endpoint_url).host
        patterns = self._allow.get(action_type)
        if patterns is None:
            return EndpointVerdict(not self.strict, host, NOT_ALLOWED if self.strict else None)
        for pattern in patterns:
            if host_matches(host, pattern):
                return EndpointVerdict(True, host, None, pattern)
        return EndpointVerdict(False, host, NOT_ALLOWED)

    def pins_for(self, host: str) -> tuple[str, ...]:
        """The fingerprints pinned for ``host`` (exact host; empty when it is not pinned)."""
        return self._pins.get(normalize_pattern(host), ())


def fetch_certificate_fingerprint(
    host: str, port: int, timeout: float = 3.0, server_hostname: str | None = None
) -> str:
    """Hex sha256 of the DER leaf certificate that ``host:port`` presents.

    No chain or hostname verification: the caller compares the result with a pin.
    Raises ``OSError`` (``ssl.SSLError`` included) when no certificate can be fetched.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the pin replaces chain verification
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    sni = server_hostname if server_hostname is not None else _sni_name(host)
    with (
        socket.create_connection((host, port), timeout=timeout) as raw,
        context.wrap_socket(raw, server_hostname=sni) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    if not der:
        raise ssl.SSLError("the server presented no certificate")
    return hashlib.sha256(der).hexdigest()


def _sni_name(host: str) -> str | None:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return host
    return None  # SNI carries names only (RFC 6066 section 3)


def check_pin(host: str, port: int, pins: Iterable[str], timeout: float = 3.0) -> None:
    """Raise ``TLSPinMismatchError`` unless ``host:port`` presents a pinned certificate."""
    expected = tuple(normalize_fingerprint(p) for p in pins)
    if not expected:
        raise ValueError(f"expected at least one pinned fingerprint for {host}")
    details: dict[str, object] = {"host": host, "port": port, "expected": list(expected)}
    try:
        observed = fetch_certificate_fingerprint(host, port, timeout=timeout)
    except OSError as exc:
        raise TLSPinMismatchError(
            f"could not fetch the TLS certificate of {host}:{port} to check its pin: {exc}",
            details={**details, "observed": None},
        ) from exc
    if observed not in expected:
        raise TLSPinMismatchError(
            f"the TLS certificate of {host}:{port} is not pinned: expected one of "
            f"{', '.join(expected)}, got {observed}",
            details={**details, "observed": observed},
        )
