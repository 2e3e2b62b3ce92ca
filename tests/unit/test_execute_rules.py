"""The pure rules behind POST /v1/actions/{id}/execute: the http.request shape, the Cedar view,
which addresses are public, where secrets go, and what is redacted (docs/execute.md)."""

from __future__ import annotations

import asyncio
import ipaddress
from pathlib import Path

import pytest

from warrantor.policy.config import ConfigError
from warrantor.policy.endpoints import EndpointAllowlist
from warrantor.policy.http_request import (
    HttpRequestError,
    cedar_payload,
    explicitly_allowed,
    parse_http_request,
)
from warrantor.service.execution.execute_http import (
    ExecuteConfig,
    ExecuteRefusedError,
    allowed_address,
    is_public,
    parse_networks,
    redact,
    resolve,
)
from warrantor.service.execution.execute_secrets import SecretUnavailableError, load_injector, parse_injector

TOKEN = "tok_0123456789abcdef"


def spec(url: str, method: str = "GET", **payload: object):  # type: ignore[no-untyped-def]
    return parse_http_request({"method": method, "url": url, **payload}, url)


def test_the_cedar_view_is_fixed_and_typed() -> None:
    s = spec("https://API.Example.com:8443/v1/charges?x=1", "POST", headers={"X-Trace": "1"}, body={"a": 1})
    view = cedar_payload(s)
    assert view == {
        "method": "POST", "url": "https://API.Example.com:8443/v1/charges?x=1", "scheme": "https",
        "host": "api.example.com", "port": 8443, "path": "/v1/charges", "query": "x=1",
        "header_names": ["content-type", "x-trace"], "content_type": "application/json", "body_bytes": 7,
        "body_sha256": "sha256:" + __import__("hashlib").sha256(b'{"a":1}').hexdigest(),
    }
    assert s.target == "POST api.example.com:8443/v1/charges"
    assert spec("https://a.example").path == "/" and spec("https://a.example").target == "GET a.example/"


@pytest.mark.parametrize(("url", "why"), [
    ("https://a.example/x/../admin", "'.' or '..'"),
    ("https://a.example/x/%2E%2e/admin", "'.' or '..'"),
    ("https://a.example/x%2f..", "percent-encoded"),
    ("https://a.example/x\\y", "backslash"),
    ("https://u:p@a.example/", "user information"),
    ("https://a.example/#x", "fragment"),
    ("https://a.example/é", "ASCII"),
    ("ftp://a.example/", "http or https"),
    ("https://2130706433/", "dotted-quad"),
])
def test_urls_that_could_differ_from_what_is_sent_are_refused(url: str, why: str) -> None:
    with pytest.raises(HttpRequestError) as caught:
        spec(url)
    assert caught.value.details["field"] == "payload.url" and why in caught.value.message


def test_headers_the_agent_may_not_set() -> None:
    for name in ("Authorization", "COOKIE", "Proxy-Authorization", "Proxy-Foo", "Host", "TE", "Upgrade", "Expect"):
        with pytest.raises(HttpRequestError) as caught:
            spec("https://a.example/", headers={name: "x"})
        assert caught.value.details["field"] == f"payload.headers.{name}"
    for headers in ({"X-A": "1\r\nX-B: 2"}, {"Bad Name": "1"}, {"X-A": "1", "x-a": "2"}, {"X-A": 1}):
        with pytest.raises(HttpRequestError):
            spec("https://a.example/", headers=headers)
    assert spec("https://a.example/", headers={"X-A": "1"}).headers == (("X-A", "1"),)


def test_the_endpoint_url_must_be_the_url() -> None:
    with pytest.raises(HttpRequestError) as caught:
        parse_http_request({"method": "GET", "url": "https://a.example/"}, "https://b.example/")
    assert caught.value.details["field"] == "endpoint_url"


def test_only_an_explicit_allowlist_entry_allows_an_http_request() -> None:
    s = spec("https://api.example.com/x")
    assert not explicitly_allowed(EndpointAllowlist(strict=False), s).allowed  # no entry: not allowed
    assert not explicitly_allowed(EndpointAllowlist(allow={"other": ["api.example.com"]}), s).allowed
    assert explicitly_allowed(EndpointAllowlist(allow={"http.request": ["*.example.com"]}), s).allowed
    evil = spec("https://api.example.com.evil.io/x")
    assert not explicitly_allowed(EndpointAllowlist(allow={"http.request": ["api.example.com"]}), evil).allowed


@pytest.mark.parametrize("address", [
    "127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1", "0.0.0.0",
    "224.0.0.1", "::1", "fe80::1", "fc00::1", "::ffff:127.0.0.1", "64:ff9b::7f00:1", "2002:7f00:1::",
    "2001:0:4136:e378:8000:63bf:80ff:fffe",  # Teredo whose client is 127.0.0.1
])
def test_addresses_that_are_not_public(address: str) -> None:
    ip = ipaddress.ip_address(address)
    assert not is_public(ip) and not allowed_address(ip, ())


def test_public_addresses_and_the_deployments_exceptions() -> None:
    assert is_public(ipaddress.ip_address("93.184.216.34"))
    assert is_public(ipaddress.ip_address("2606:4700::1111"))
    exceptions = parse_networks("127.0.0.1/32, 10.0.0.0/8")
    assert allowed_address(ipaddress.ip_address("10.9.9.9"), exceptions)
    assert allowed_address(ipaddress.ip_address("::ffff:127.0.0.1"), exceptions)
    assert not allowed_address(ipaddress.ip_address("127.0.0.2"), exceptions)
    with pytest.raises(ValueError, match="WARRANTOR_EXECUTE_ALLOW_PRIVATE"):
        parse_networks("10.0.0.1/8")  # host bits set: a typo, not a network


def test_plain_http_to_a_public_address_is_refused_before_anything_is_sent() -> None:
    config = ExecuteConfig()
    with pytest.raises(ExecuteRefusedError) as caught:
        asyncio.run(resolve(spec("http://93.184.216.34/x"), config))
    assert caught.value.code == "EXECUTE_INSECURE_SCHEME"
    assert str(asyncio.run(resolve(spec("https://93.184.216.34/x"), config))) == "93.184.216.34"
    with pytest.raises(ExecuteRefusedError) as refused:
        asyncio.run(resolve(spec("https://[::1]/x"), config))
    assert refused.value.code == "EXECUTE_ADDRESS_REFUSED"


def _injector(prefix: str, **header: str):  # type: ignore[no-untyped-def]
    return parse_injector({"inject": [{"url_prefix": prefix, "headers": {"Authorization": header}}]},
                          {"TOKEN": TOKEN})


def test_secrets_go_only_to_their_prefix_never_to_a_look_alike() -> None:
    injector = _injector("https://api.example.com/v1", value_env="TOKEN", value_prefix="Bearer ")
    hit = injector.injection_for(spec("https://API.example.com:443/v1/charges"))
    assert hit.headers == (("Authorization", f"Bearer {TOKEN}"),) and hit.secrets == (TOKEN,)
    for url in ("https://api.example.com/v10", "https://api.example.com/v", "http://api.example.com/v1/x",
                "https://api.example.com:8443/v1/x", "https://api.example.com.evil.io/v1/x",
                "https://evil.io/v1/x"):
        assert injector.injection_for(spec(url)).headers == (), url


def test_the_longest_prefix_wins() -> None:
    injector = parse_injector({"inject": [
        {"url_prefix": "https://a.example/", "headers": {"X-Key": {"value_env": "ONE"}}},
        {"url_prefix": "https://a.example/admin/", "headers": {"X-Key": {"value_env": "TWO"}}},
    ]}, {"ONE": "one-secret-value", "TWO": "two-secret-value"})
    assert injector.injection_for(spec("https://a.example/admin/x")).headers == (("X-Key", "two-secret-value"),)
    assert injector.injection_for(spec("https://a.example/x")).headers == (("X-Key", "one-secret-value"),)


def test_a_bad_secrets_file_lists_every_problem(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_injector({"inject": [
            {"url_prefix": "https://u:p@a.example/", "headers": {"Authorization": {"value_env": "TOKEN"}}},
            {"url_prefix": "https://b.example/", "headers": {"Host": {"value_env": "TOKEN"}}},
            {"url_prefix": "https://c.example/", "headers": {"X-K": {"value_env": "MISSING"}}},
            {"url_prefix": "https://d.example/", "headers": {"X-K": {"value_env": "SHORT"}}},
            {"url_prefix": "https://e.example/", "headers": {"X-K": {"value_file": str(tmp_path / "none")}}},
        ]}, {"TOKEN": TOKEN, "SHORT": "abc"})
    text = str(caught.value.problems)
    for needle in ("inject[0].url_prefix", "inject[1].headers.Host", "MISSING", "SHORT", "inject[4]"):
        assert needle in text, needle
    aliases = tmp_path / "aliases.yaml"
    aliases.write_text("a: &x [1]\nb: *x\n")
    with pytest.raises(ConfigError):
        load_injector(aliases, {})


def test_a_secret_file_read_at_each_execution(tmp_path: Path) -> None:
    secret = tmp_path / "key"
    secret.write_text("first-secret-1234\n")
    injector = parse_injector({"inject": [{"url_prefix": "https://a.example/",
                                           "headers": {"X-Key": {"value_file": str(secret)}}}]}, {})
    assert injector.injection_for(spec("https://a.example/")).headers == (("X-Key", "first-secret-1234"),)
    secret.write_text("rotated-secret-5678")
    assert injector.injection_for(spec("https://a.example/")).headers == (("X-Key", "rotated-secret-5678"),)
    secret.unlink()
    with pytest.raises(SecretUnavailableError) as caught:
        injector.injection_for(spec("https://a.example/"))
    assert caught.value.status == 503 and "rotated" not in caught.value.message


def test_redaction_removes_secrets_and_a_truncated_tail_of_one() -> None:
    assert redact(b"a TOKENVALUE b TOKENVALUE", ["TOKENVALUE"], truncated=False) == (
        b"a [redacted] b [redacted]", True)
    assert redact(b"ends with TOKENV", ["TOKENVALUE"], truncated=True) == (b"ends with ", True)
    assert redact(b"ends with TOKENV", ["TOKENVALUE"], truncated=False) == (b"ends with TOKENV", False)
    assert redact(b"nothing here", ["TOKENVALUE"], truncated=True) == (b"nothing here", False)
