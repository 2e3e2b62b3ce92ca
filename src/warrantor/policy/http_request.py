"""The ``http.request`` action: an HTTP request that Warrantor itself may perform.

docs/execute.md. An action of type ``http.request`` carries the request as its payload::

    {"method": "POST", "url": "https://api.example.com/v1/charges?x=1",
     "headers": {"Content-Type": "application/json"},     # optional
     "body": {"amount": 100}}                              # optional: a string or JSON

and ``endpoint_url`` equal to ``url``, so the endpoint allowlist, Cedar's
``context.endpoint_host`` and the request Warrantor sends all name the same URL.

``parse_http_request`` checks that shape and refuses, with ``INVALID_HTTP_REQUEST`` and the
field in ``details.field``, whatever could make the request sent differ from the request
authorized or carry a credential the agent should not hold:

- ``method``: one of GET, POST, PUT, PATCH, DELETE (upper case); GET takes no body.
- ``url``: ASCII, ``http`` or ``https``, parsed by the endpoint allowlist's own parser
  (``parse_endpoint``); no userinfo, no fragment, no backslash, no ``.`` or ``..`` path
  segment (also percent-encoded), no percent-encoded ``/`` or ``\\``.
- ``headers``: at most 32, names are RFC 9110 tokens (once each, case-insensitively),
  values printable ASCII up to 4,096 characters. Hop-by-hop and framing headers (Host,
  Content-Length, Transfer-Encoding, Connection, TE, Upgrade, ...) are Warrantor's to set;
  credentials (Authorization, Proxy-*, Cookie) are refused: secrets are injected by the
  server (docs/execute.md), never carried by the agent.
- ``body``: a string (sent as UTF-8, ``text/plain; charset=utf-8`` unless the headers say
  otherwise) or any other JSON value but ``null`` (sent as its RFC 8785 canonical form,
  ``application/json`` unless the headers say otherwise).

``cedar_payload`` is what Cedar sees as ``context.payload`` for such an action: a fixed,
typed record (``method``, ``url``, ``scheme``, ``host``, ``port``, ``path``, ``query``,
``header_names``, ``content_type``, ``body_bytes``, ``body_sha256``), never the raw
headers or body, whose shapes differ per endpoint while Cedar records are closed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import unquote

from warrantor.errors import ValidationError
from warrantor.evidence.canonical import canonicalize, sha256_hex
from warrantor.policy.endpoints import (
    DEFAULT_PORTS,
    Endpoint,
    EndpointAllowlist,
    EndpointError,
    EndpointVerdict,
    parse_endpoint,
)

HTTP_ACTION: Final = "http.request"
CODE: Final = "INVALID_HTTP_REQUEST"
METHODS: Final = ("GET", "POST", "PUT", "PATCH", "DELETE")
MAX_HEADERS: Final = 32
MAX_HEADER_VALUE: Final = 4096
MAX_HEADER_NAME: Final = 128
TARGET_LABEL_MAX: Final = 200

# Framing and hop-by-hop headers are the sender's (Warrantor's) to set; credentials are the
# server's to inject. An agent naming any of them is refused, never silently dropped.
FRAMING_HEADERS: Final = frozenset({
    "host", "content-length", "transfer-encoding", "connection", "keep-alive", "te", "trailer",
    "upgrade", "expect", "proxy-connection", "http2-settings",
})
CREDENTIAL_HEADERS: Final = frozenset({"authorization", "cookie"})
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_VALUE = re.compile(r"[\x20-\x7e]*")
_ENCODED_SEPARATOR = re.compile(r"%(?:2f|5c)", re.IGNORECASE)


class HttpRequestError(ValidationError):
    """An ``http.request`` payload that cannot be sent exactly and safely."""

    code = CODE


def _refuse(field: str, message: str) -> HttpRequestError:
    return HttpRequestError(f"{field}: {message}", details={"field": field})


@dataclass(frozen=True, slots=True)
class HttpRequestSpec:
    """An ``http.request`` payload, checked: what Warrantor will send."""

    method: str
    url: str  # exactly as authorized
    endpoint: Endpoint  # scheme, normalized host, port
    path: str  # as in the URL, percent-encoding kept; "/" when empty
    query: str  # without the "?"; "" when absent
    headers: tuple[tuple[str, str], ...]  # the agent's, names as written, in order
    body: bytes | None

    @property
    def authority(self) -> str:
        """``host`` or ``host:port`` when the port is not the scheme's default (IPv6 bracketed)."""
        host = f"[{self.endpoint.host}]" if ":" in self.endpoint.host else self.endpoint.host
        default = DEFAULT_PORTS[self.endpoint.scheme]
        return host if self.endpoint.port == default else f"{host}:{self.endpoint.port}"

    @property
    def target(self) -> str:
        """The witness label ``METHOD authority/path`` (at most 200 characters)."""
        return f"{self.method} {self.authority}{self.path}"[:TARGET_LABEL_MAX]

    @property
    def content_type(self) -> str:
        for name, value in self.headers:
            if name.lower() == "content-type":
                return value
        return ""


def parse_http_request(payload: Any, endpoint_url: str | None) -> HttpRequestSpec:
    """The checked request of an ``http.request`` payload; ``HttpRequestError`` otherwise."""
    if not isinstance(payload, Mapping):
        raise _refuse("payload", "expected an object with method and url")
    unknown = sorted(set(payload) - {"method", "url", "headers", "body"})
    if unknown:
        raise _refuse(f"payload.{unknown[0]}", "expected only method, url, headers and body")
    method = payload.get("method")
    if method not in METHODS:
        raise _refuse("payload.method", f"expected one of {', '.join(METHODS)}, got {_shown(method)}")
    url = payload.get("url")
    endpoint, path, query = _check_url(url)
    assert isinstance(url, str)
    if endpoint_url != url:
        raise _refuse("endpoint_url", "expected endpoint_url equal to payload.url, so that the allowlist and "
                                      f"the policy check the URL that is sent; got {_shown(endpoint_url)}")
    headers = _check_headers(payload.get("headers"))
    body = _encode_body(method, payload)
    if body is not None and not any(name.lower() == "content-type" for name, _ in headers):
        kind = "text/plain; charset=utf-8" if isinstance(payload["body"], str) else "application/json"
        headers = (*headers, ("Content-Type", kind))
    return HttpRequestSpec(method, url, endpoint, path, query, headers, body)


def _check_url(url: Any) -> tuple[Endpoint, str, str]:
    field = "payload.url"
    if not isinstance(url, str) or not url:
        raise _refuse(field, f"expected an http or https URL, got {_shown(url)}")
    if not url.isascii():
        raise _refuse(field, "expected an ASCII URL (percent-encode the path, write an IDN host as xn--...)")
    try:
        endpoint = parse_endpoint(url)
    except EndpointError as exc:
        raise _refuse(field, exc.message) from None
    rest = url.split("://", 1)[1]
    cut = min((i for i in (rest.find("/"), rest.find("?"), rest.find("#")) if i >= 0), default=len(rest))
    authority, tail = rest[:cut], rest[cut:]
    if "@" in authority:
        raise _refuse(field, "expected no user information in the URL: credentials are injected by the server")
    if "#" in tail:
        raise _refuse(field, "expected no fragment: it is never sent")
    if "\\" in tail:
        raise _refuse(field, "expected no backslash: servers disagree on what it means")
    path, _, query = tail.partition("?")
    path = path or "/"
    if _ENCODED_SEPARATOR.search(path):
        raise _refuse(field, "expected no percent-encoded '/' or '\\' in the path")
    if any(unquote(segment) in (".", "..") for segment in path.split("/")):
        raise _refuse(field, "expected no '.' or '..' path segments: the URL sent must be the URL authorized")
    return endpoint, path, query


def _check_headers(raw: Any) -> tuple[tuple[str, str], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, Mapping):
        raise _refuse("payload.headers", "expected an object of header names to string values")
    if len(raw) > MAX_HEADERS:
        raise _refuse("payload.headers", f"expected at most {MAX_HEADERS} headers, got {len(raw)}")
    seen: set[str] = set()
    out = []
    for name, value in raw.items():
        field = f"payload.headers.{name}"[:200]
        if not (isinstance(name, str) and len(name) <= MAX_HEADER_NAME and _TOKEN.fullmatch(name)):
            raise _refuse(field, "expected a header name made of RFC 9110 token characters")
        lower = name.lower()
        if lower in seen:
            raise _refuse(field, "expected each header name once (names are case-insensitive)")
        seen.add(lower)
        if lower in FRAMING_HEADERS:
            raise _refuse(field, "expected no framing or hop-by-hop header: Warrantor sets these itself")
        if lower in CREDENTIAL_HEADERS or lower.startswith("proxy-"):
            raise _refuse(field, "expected no credential header: the agent never holds the secret, the server "
                                 "injects it (WARRANTOR_EXECUTE_SECRETS)")
        if not (isinstance(value, str) and len(value) <= MAX_HEADER_VALUE and _VALUE.fullmatch(value)):
            raise _refuse(field, f"expected a value of printable ASCII, at most {MAX_HEADER_VALUE} characters")
        out.append((name, value))
    return tuple(out)


def _encode_body(method: str, payload: Mapping[str, Any]) -> bytes | None:
    if "body" not in payload:
        return None
    body = payload["body"]
    if method == "GET":
        raise _refuse("payload.body", "expected no body on a GET request")
    if body is None:
        raise _refuse("payload.body", "expected a string or a JSON value, got null (leave body out instead)")
    if isinstance(body, str):
        return body.encode("utf-8")
    try:
        return canonicalize(body)
    except ValueError as exc:
        raise _refuse("payload.body", f"expected JSON that canonicalizes (RFC 8785): {exc}") from None


def cedar_payload(spec: HttpRequestSpec) -> dict[str, Any]:
    """What Cedar sees as ``context.payload`` for an ``http.request`` action."""
    body = spec.body or b""
    return {
        "method": spec.method,
        "url": spec.url,
        "scheme": spec.endpoint.scheme,
        "host": spec.endpoint.host,
        "port": spec.endpoint.port,
        "path": spec.path,
        "query": spec.query,
        "header_names": sorted({name.lower() for name, _ in spec.headers}),
        "content_type": spec.content_type,
        "body_bytes": len(body),
        "body_sha256": "sha256:" + sha256_hex(body) if spec.body is not None else "",
    }


def explicitly_allowed(allowlist: EndpointAllowlist, spec: HttpRequestSpec) -> EndpointVerdict:
    """The allowlist's verdict for an ``http.request``, which needs an explicit entry: a host
    matched by a pattern under ``endpoints.allow."http.request"``, whether or not the
    allowlist is ``strict`` (Warrantor sends these requests itself)."""
    verdict = allowlist.check(HTTP_ACTION, spec.url)
    if verdict.allowed and verdict.matched_pattern is not None:
        return verdict
    return EndpointVerdict(False, verdict.host, "ENDPOINT_NOT_ALLOWED")


def _shown(value: Any) -> str:
    if value is None:
        return "nothing"
    return repr(value[:80]) if isinstance(value, str) else type(value).__name__
