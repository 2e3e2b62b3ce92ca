"""Sending one ``http.request`` for Warrantor, safely, and saying what happened.

docs/execute.md. The outbound half of ``POST /v1/actions/{id}/execute``:

- ``resolve`` looks the host up once and refuses (403 ``EXECUTE_ADDRESS_REFUSED``) if any
  address it resolves to is not public: loopback, private, link-local (cloud metadata at
  169.254.169.254 included), CGNAT, multicast, unspecified or reserved, IPv4-mapped,
  6to4, Teredo or NAT64 addresses whose embedded IPv4 address is any of those. Networks in
  ``WARRANTOR_EXECUTE_ALLOW_PRIVATE`` are the deployment's explicit exceptions. Plain
  ``http`` is allowed only to such an exception (403 ``EXECUTE_INSECURE_SCHEME``
  otherwise): on the public internet, requests carrying injected secrets go over TLS.
- ``send`` connects to the address it checked (never resolving again, so DNS rebinding
  cannot swap it), with the URL's host as ``Host`` and as the TLS server name (certificate
  verified against it, pins from the bundle checked on this very connection before a byte
  is sent). One request on one new connection: no proxy (the environment is ignored), no
  retry, no redirect followed, no cookies, ``Accept-Encoding: identity`` unless the agent
  asks otherwise (the body is returned as received, never decompressed).
- Limits: connect timeout, read (and write) timeout between bytes, a total deadline over
  the whole exchange, and at most ``max_response_bytes`` of body, after which reading stops
  and the response is marked ``truncated``.

What happened is classified by whether the request's first byte may have left:

- an answer with a 2xx status: ``completed``; any other status (3xx included: redirects
  are not followed): ``failed``;
- no connection, a TLS failure or pin mismatch, a connect timeout, before the request was
  sent: ``failed`` (nothing left Warrantor);
- a timeout, reset or protocol error after the request started to go out (including in the
  middle of the response body): ``unknown``; the upstream may have acted on it.

Digests (``sha256:`` + hex of sha256 over the RFC 8785 form of a JSON document):

- ``request_sha256`` over ``{"method", "url" (as authorized), "target" (the request-target
  sent), "headers": [[lower-case name, value], ...] (every header sent, in order, each
  injected value replaced by "[injected]"), "body_sha256" (of the body bytes sent; of
  the empty string when there is none)}``;
- ``response_sha256`` over ``{"status" (or null), "headers": [[lower-case name, value],
  ...] (as received, all of them), "body_sha256" (of the body bytes read), "truncated",
  "error" (null, or the code of what went wrong)}``.
"""

from __future__ import annotations

import hashlib
import ipaddress
import socket
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx

from warrantor import __version__
from warrantor.errors import PermissionDeniedError, WarrantorError
from warrantor.evidence.canonical import digest, sha256_hex
from warrantor.policy.endpoints import normalize_fingerprint
from warrantor.policy.http_request import HttpRequestSpec
from warrantor.service.execution.execute_secrets import Injection, SecretInjector
from warrantor.service.execution.notarize import RESERVED_EXECUTOR

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

EXECUTOR = RESERVED_EXECUTOR  # "warrantor-http": no gateway may claim it (service/execution/notarize.py)
INJECTED = "[injected]"
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection",
    "proxy-authenticate", "set-cookie", "set-cookie2",
})


@dataclass(frozen=True)
class ExecuteConfig:
    """Deployment settings of the executor (``WARRANTOR_EXECUTE_*``)."""

    connect_timeout: float = 5.0
    read_timeout: float = 10.0
    deadline: float = 30.0
    max_response_bytes: int = 1_048_576
    allow_private: tuple[IPNetwork, ...] = ()
    secrets: SecretInjector = field(default_factory=SecretInjector)
    ssl_context: ssl.SSLContext | None = None  # None: the system's default verification

    def __post_init__(self) -> None:
        for name in ("connect_timeout", "read_timeout", "deadline"):
            if not 0 < getattr(self, name) <= 600:
                raise ValueError(f"expected WARRANTOR_EXECUTE_{name.upper()}_SECONDS between 0 and 600")
        if not 0 < self.max_response_bytes <= 64 * 1024 * 1024:
            raise ValueError("expected WARRANTOR_EXECUTE_MAX_RESPONSE_BYTES between 1 and 67108864")

    @property
    def lost_after(self) -> float:
        """Seconds after which an execution that never reported back is presumed lost."""
        return self.deadline + 10.0


def parse_networks(text: str | None) -> tuple[IPNetwork, ...]:
    """``WARRANTOR_EXECUTE_ALLOW_PRIVATE``: comma-separated networks (``127.0.0.1/32,10.0.0.0/8``)."""
    if not text:
        return ()
    out = []
    for part in text.split(","):
        try:
            out.append(ipaddress.ip_network(part.strip(), strict=True))
        except ValueError as exc:
            raise ValueError(f"WARRANTOR_EXECUTE_ALLOW_PRIVATE: expected networks like 10.0.0.0/8, got "
                             f"{part.strip()!r}: {exc}") from None
    return tuple(out)


class ExecuteRefusedError(PermissionDeniedError):
    """Nothing was sent: the destination is not one Warrantor will call."""


class UnresolvableError(WarrantorError):
    code = "EXECUTE_UNRESOLVABLE"
    status = 502
    title = "Host not resolvable"


def _embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    if not isinstance(ip, ipaddress.IPv6Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def is_public(ip: IPAddress) -> bool:
    """A global unicast address, also when it embeds an IPv4 address (which must be one too)."""
    if not ip.is_global or ip.is_multicast:
        return False
    inner = _embedded_ipv4(ip)
    return inner is None or (inner.is_global and not inner.is_multicast)


def allowed_address(ip: IPAddress, exceptions: Sequence[IPNetwork]) -> bool:
    inner = _embedded_ipv4(ip)
    if any(ip in net for net in exceptions) or (inner is not None and any(inner in net for net in exceptions)):
        return True
    return is_public(ip)


def _excepted(ip: IPAddress, exceptions: Sequence[IPNetwork]) -> bool:
    return any(ip in net for net in exceptions)


async def resolve(spec: HttpRequestSpec, config: ExecuteConfig) -> IPAddress:
    """The address to connect to, every resolved address checked; refuses before anything is sent."""
    host = spec.endpoint.host
    addresses = await _addresses(host, spec.endpoint.port, config.connect_timeout)
    for ip in addresses:
        if not allowed_address(ip, config.allow_private):
            raise ExecuteRefusedError(
                f"{host} resolves to {ip}, which is not a public address; a deployment that means to call it "
                "lists its network in WARRANTOR_EXECUTE_ALLOW_PRIVATE. Nothing was sent",
                code="EXECUTE_ADDRESS_REFUSED", details={"host": host, "address": str(ip)},
            )
    chosen = addresses[0]
    if spec.endpoint.scheme == "http" and not _excepted(chosen, config.allow_private):
        raise ExecuteRefusedError(
            f"expected https to reach the public address {chosen} of {host}; plain http only reaches networks "
            "listed in WARRANTOR_EXECUTE_ALLOW_PRIVATE. Nothing was sent",
            code="EXECUTE_INSECURE_SCHEME", details={"host": host, "address": str(chosen)},
        )
    return chosen


async def _addresses(host: str, port: int, timeout: float) -> list[IPAddress]:
    try:
        return [ipaddress.ip_address(host)]  # an IP literal: nothing to resolve
    except ValueError:
        pass
    try:
        with anyio.fail_after(timeout):
            infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, TimeoutError) as exc:
        raise UnresolvableError(f"could not resolve {host}: {exc}; nothing was sent", details={"host": host}) from None
    addresses = list(dict.fromkeys(ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos))
    if not addresses:
        raise UnresolvableError(f"{host} resolved to no address; nothing was sent", details={"host": host})
    return addresses


@dataclass
class Exchange:
    """What one execution sent and got back; ``outcome`` is completed, failed or unknown."""

    outcome: str
    request_document: dict[str, Any]
    error: str | None = None  # a code: EXECUTE_CONNECT_FAILED, EXECUTE_TIMEOUT, ...
    message: str | None = None
    status_code: int | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)  # as received
    body: bytes = b""
    truncated: bool = False

    @property
    def request_sha256(self) -> str:
        return "sha256:" + digest(self.request_document)

    @property
    def response_document(self) -> dict[str, Any]:
        return {
            "status": self.status_code,
            "headers": [[name.lower(), value] for name, value in self.headers],
            "body_sha256": "sha256:" + sha256_hex(self.body),
            "truncated": self.truncated,
            "error": self.error,
        }

    @property
    def response_sha256(self) -> str:
        return "sha256:" + digest(self.response_document)


class _PinMismatchError(Exception):
    pass


@dataclass
class _Progress:
    sent: bool = False  # the request's first byte may have left


def build_request(spec: HttpRequestSpec, address: IPAddress, injection: Injection) -> httpx.Request:
    """The request as it goes on the wire: to ``address``, named for the URL's host."""
    injected = injection.names
    agent = [(n, v) for n, v in spec.headers if n.lower() not in injected]
    agent_names = {n.lower() for n, _ in agent}
    defaults = [("User-Agent", f"{EXECUTOR}/{__version__}"), ("Accept", "*/*"),
                ("Accept-Encoding", "identity")]
    headers = [("Host", spec.authority), *[(n, v) for n, v in defaults if n.lower() not in agent_names],
               *agent, *injection.headers]
    url = httpx.URL(spec.url).copy_with(host=str(address))
    return httpx.Request(spec.method, url, headers=headers, content=spec.body)


def request_document(spec: HttpRequestSpec, request: httpx.Request, injection: Injection) -> dict[str, Any]:
    injected = injection.names
    headers = []
    for raw_name, raw_value in request.headers.raw:
        name = raw_name.decode("latin-1").lower()
        headers.append([name, INJECTED if name in injected else raw_value.decode("latin-1")])
    return {
        "method": spec.method,
        "url": spec.url,
        "target": request.url.raw_path.decode("ascii"),
        "headers": headers,
        "body_sha256": "sha256:" + sha256_hex(spec.body or b""),
    }


async def send(
    spec: HttpRequestSpec, address: IPAddress, injection: Injection, config: ExecuteConfig,
    pins: Sequence[str] = (),
) -> Exchange:
    """Send ``spec`` to ``address`` once and read the answer within the limits."""
    request = build_request(spec, address, injection)
    exchange = Exchange("failed", request_document(spec, request, injection))
    progress = _Progress()
    expected = {normalize_fingerprint(p) for p in pins}

    async def trace(name: str, info: dict[str, Any]) -> None:
        if name == "connection.start_tls.complete" and expected:
            ssl_object = info["return_value"].get_extra_info("ssl_object")
            der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
            if der is None or hashlib.sha256(der).hexdigest() not in expected:
                raise _PinMismatchError
        elif name.endswith(".send_request_headers.started"):
            progress.sent = True

    ip_host = spec.endpoint.host == str(address)
    request.extensions = {
        "timeout": {"connect": config.connect_timeout, "read": config.read_timeout,
                    "write": config.read_timeout, "pool": config.connect_timeout},
        "trace": trace,
        **({} if ip_host else {"sni_hostname": spec.endpoint.host}),
    }
    transport = httpx.AsyncHTTPTransport(
        verify=config.ssl_context or True, http1=True, http2=False, retries=0, trust_env=False,
    )
    try:
        with anyio.fail_after(config.deadline):
            response = await transport.handle_async_request(request)
            exchange.status_code = response.status_code
            exchange.headers = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in response.headers.raw]
            try:
                exchange.body, exchange.truncated = await _read_bounded(response, config.max_response_bytes)
            finally:
                await response.aclose()
    except _PinMismatchError:
        _failed_before_send(exchange, "ENDPOINT_TLS_MISMATCH", "the TLS certificate is not one the bundle pins")
    except (httpx.TransportError, TimeoutError, OSError, ssl.SSLError) as exc:
        timed_out = isinstance(exc, TimeoutError | httpx.TimeoutException)
        code = "EXECUTE_TIMEOUT" if timed_out else "EXECUTE_CONNECTION_FAILED"
        if progress.sent:
            exchange.outcome = "unknown"
            exchange.error = code
            exchange.message = (f"{type(exc).__name__} after the request was sent: the upstream may have acted "
                                "on it")
        else:
            _failed_before_send(exchange, code, f"{type(exc).__name__} before anything was sent")
        return exchange
    finally:
        await transport.aclose()
    if exchange.error is None:
        exchange.outcome = "completed" if 200 <= (exchange.status_code or 0) < 300 else "failed"
        if exchange.outcome == "failed":
            exchange.error = "UPSTREAM_STATUS"
            exchange.message = f"the upstream answered {exchange.status_code}"
    return exchange


def _failed_before_send(exchange: Exchange, code: str, message: str) -> None:
    exchange.outcome, exchange.error, exchange.message = "failed", code, message
    exchange.status_code, exchange.headers, exchange.body = None, [], b""


async def _read_bounded(response: httpx.Response, limit: int) -> tuple[bytes, bool]:
    """At most ``limit`` bytes of the body as received (no decoding); whether more came."""
    chunks: list[bytes] = []
    size = 0
    stream = response.stream
    assert isinstance(stream, httpx.AsyncByteStream)
    async for chunk in stream:
        room = limit - size
        if len(chunk) > room:
            chunks.append(chunk[:room])
            return b"".join(chunks), True
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks), False


def filtered_headers(headers: Sequence[tuple[str, str]], secrets: Sequence[str]) -> list[list[str]]:
    """Response headers for the caller: no hop-by-hop or cookie headers, secrets redacted."""
    out = []
    for name, value in headers:
        if name.lower() in _HOP_BY_HOP or name.lower().startswith("proxy-"):
            continue
        out.append([name, redact(value.encode("latin-1"), secrets, truncated=False)[0].decode("latin-1")])
    return out


REDACTED = b"[redacted]"


def redact(data: bytes, secrets: Sequence[str], *, truncated: bool) -> tuple[bytes, bool]:
    """``data`` with every injected secret replaced; a truncated body also loses a trailing
    beginning of a secret. Returns the bytes and whether anything was removed."""
    changed = False
    for secret in sorted(secrets, key=len, reverse=True):
        raw = secret.encode("ascii")
        if raw in data:
            data, changed = data.replace(raw, REDACTED), True
        if truncated:
            for k in range(len(raw) - 1, 0, -1):
                if data.endswith(raw[:k]):
                    data, changed = data[:-k], True
                    break
    return data, changed
