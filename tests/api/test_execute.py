"""POST /v1/actions/{id}/execute against real HTTP servers on 127.0.0.1 (docs/execute.md).

Warrantor sends an authorized ``http.request`` itself, once, within limits, with secrets the
agent never holds, and notarizes what happened as witnessed. The attacker is the agent: it
would like the request to run twice, to reach what the allowlist or the network rules keep
it from, or to learn the injected secret.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import ssl
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from execute_upstream import HUGE_BYTES, Upstream, leaf_for_127, make_ca, serve_certificate, upstream
from support import Env, bearer, free_port, make_env, pg_database
from warrantor.client import AsyncClient, Client, ExecuteResult
from warrantor.demo import demo_bundle
from warrantor.errors import InvalidTransitionError
from warrantor.evidence.canonical import digest
from warrantor.evidence.dsse import Envelope
from warrantor.service.execution.execute_http import ExecuteConfig, parse_networks
from warrantor.verify.cli import main as verify_main

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "http"
SECRET = "s3cr3t-upstream-token-0123456789"
AGENT = "payments-agent"  # the demo agent key's agent
LOCAL = "127.0.0.1/32"


def http_bundle(hosts: list[str], *, strict: bool = True) -> dict[str, Any]:
    """The example HTTP bundle (examples/http) with the test servers' host allowed."""
    return {
        "cedar": (EXAMPLE / "http.cedar").read_text(),
        "schema": (EXAMPLE / "http.cedarschema").read_text(),
        "config": {"endpoints": {"strict": strict, "allow": {"http.request": hosts}}},
    }


def activate(env: Env, bundle: dict[str, Any]) -> str:
    r = env.client.post("/v1/policies", json=bundle, headers=env.h("admin"))
    assert r.status_code in (200, 201), r.text
    bundle_hash = str(r.json()["bundle_hash"])
    r = env.client.post(f"/v1/policies/{bundle_hash}/activate", json={"mode": "enforce"}, headers=env.h("admin"))
    assert r.status_code == 200, r.text
    return bundle_hash


@pytest.fixture
def up() -> Iterator[Upstream]:
    with upstream() as server:
        yield server


def _env(tmp_path: Path, up: Upstream | None, database_url: str | None = None, **overrides: Any) -> Iterator[Env]:
    settings: dict[str, Any] = {"execute_allow_private": LOCAL, "execute_read_timeout_seconds": 1.0,
                                "integrate_interval_ms": 50, **overrides}
    if up is not None and "execute_secrets" not in settings:
        secrets = tmp_path / "execute-secrets.yaml"
        secrets.write_text(f"inject:\n  - url_prefix: {up.base}/\n    headers:\n"
                           "      Authorization: {value_env: TEST_UPSTREAM_TOKEN, value_prefix: 'Bearer '}\n")
        settings["execute_secrets"] = secrets
    with make_env(tmp_path, database_url, **settings) as env:
        activate(env, http_bundle(["127.0.0.1"]))
        yield env


@pytest.fixture
def env(tmp_path: Path, up: Upstream, monkeypatch: pytest.MonkeyPatch) -> Iterator[Env]:
    """The app, the example HTTP bundle allowing 127.0.0.1, 127.0.0.1 allowed as a private
    exception, a 1 s read timeout, and a secret injected into every request to ``up``."""
    monkeypatch.setenv("TEST_UPSTREAM_TOKEN", SECRET)
    yield from _env(tmp_path, up)


def request(url: str, method: str = "GET", **payload: Any) -> dict[str, Any]:
    return {"action_type": "http.request", "details": f"{method} {url}", "endpoint_url": url,
            "payload": {"method": method, "url": url, **payload}}


def authorized(env: Env, url: str, method: str = "GET", *, headers: dict[str, str] | None = None,
               **payload: Any) -> str:
    r = env.authorize(headers=headers, **request(url, method, **payload))
    assert r.status_code == 201 and r.json()["status"] == "authorized", r.text
    return str(r.json()["action_id"])


def execute(env: Env, action_id: str, headers: dict[str, str] | None = None) -> httpx.Response:
    return env.client.post(f"/v1/actions/{action_id}/execute", headers=headers or env.h("agent"))


def status(env: Env, action_id: str) -> str:
    return str(env.client.get(f"/v1/actions/{action_id}", headers=env.h("admin")).json()["status"])


def predicate(envelope: dict[str, Any]) -> dict[str, Any]:
    statement: dict[str, Any] = Envelope.from_dict(envelope).statement()
    return dict(statement["predicate"])


def stored_bytes(env: Env) -> bytes:
    """Every byte of the SQLite database and its write-ahead log."""
    return b"".join(p.read_bytes() for p in sorted(env.settings.data_dir.glob("warrantor.db*")))


# -- the request runs, once, with the secret injected ------------------------------------------
def test_a_request_runs_with_the_secret_injected_and_the_secret_appears_nowhere(
        env: Env, up: Upstream, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    url = f"{up.base}/created?x=1"
    action_id = authorized(env, url, "POST", headers=None, body={"amount": 100, "to": "ACME"})
    r = execute(env, action_id)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["status"] == "notarized" and out["evidence_grade"] == "witnessed"
    assert out["response"]["status_code"] == 201 and json.loads(out["response"]["body"]) == {"created": True}
    # The upstream got exactly the authorized request, and the secret.
    assert len(up.seen) == 1
    seen = up.seen[0]
    assert (seen.method, seen.path) == ("POST", "/created?x=1")
    assert seen.headers["authorization"] == f"Bearer {SECRET}"
    assert seen.headers["host"] == f"127.0.0.1:{up.port}" and seen.headers["content-type"] == "application/json"
    assert seen.body == b'{"amount":100,"to":"ACME"}'  # RFC 8785: the bytes the digest covers
    # The request digest is recomputable from what the answer shows, and shows no secret.
    sent = out["request"]
    assert ["authorization", "[injected]"] in sent["headers"]
    assert out["witness"]["request_sha256"] == "sha256:" + digest(sent)
    assert out["witness"]["executor"] == "warrantor-http"
    assert out["witness"]["target"] == f"POST 127.0.0.1:{up.port}/created"
    receipt = predicate(out["receipt"]["envelope"])
    assert receipt["evidence_grade"] == "witnessed" and receipt["witness"] == out["witness"]
    assert receipt["execution"]["injected_headers"] == ["authorization"]
    assert receipt["execution"]["upstream_status"] == 201 and receipt["status"] == "notarized"
    # Nowhere: the answer, the receipt, the action, the database, the logs.
    detail = env.client.get(f"/v1/actions/{action_id}", headers=env.h("admin")).text
    receipt_text = env.client.get(f"/v1/receipts/{out['receipt']['receipt_id']}", headers=env.h("auditor")).text
    for where, text in (("answer", r.text), ("action", detail), ("receipt", receipt_text), ("logs", caplog.text)):
        assert SECRET not in text, where
    assert SECRET.encode() not in stored_bytes(env)


def test_an_upstream_echoing_the_secret_has_it_redacted_from_the_answer(env: Env, up: Upstream) -> None:
    action_id = authorized(env, f"{up.base}/echo-headers")
    out = execute(env, action_id).json()
    assert out["status"] == "notarized" and out["response"]["redacted"] is True
    assert SECRET not in json.dumps(out)
    assert json.loads(out["response"]["body"])["authorization"] == "Bearer [redacted]"
    assert ["X-Echo-Auth", "Bearer [redacted]"] in out["response"]["headers"]
    assert up.seen[0].headers["authorization"] == f"Bearer {SECRET}"


def test_response_headers_are_filtered(env: Env, up: Upstream) -> None:
    out = execute(env, authorized(env, f"{up.base}/ok")).json()
    names = {name.lower() for name, _ in out["response"]["headers"]}
    assert "x-upstream" in names and "set-cookie" not in names and "connection" not in names


def test_an_agent_cannot_send_a_credential_or_framing_header(env: Env, up: Upstream) -> None:
    for name in ("Authorization", "authorization", "Cookie", "Proxy-Authorization", "Host", "Content-Length",
                 "Transfer-Encoding", "Connection"):
        r = env.authorize(**request(f"{up.base}/ok", headers={name: "x"}))
        assert r.status_code == 422, (name, r.text)
        assert r.json()["code"] == "INVALID_HTTP_REQUEST" and r.json()["details"]["field"] == f"payload.headers.{name}"
    assert env.client.get("/v1/actions", headers=env.h("admin")).json()["pagination"]["total"] == 0


def test_the_payload_must_be_exactly_an_http_request(env: Env, up: Upstream) -> None:
    url = f"{up.base}/ok"
    cases = [
        ({**request(url), "endpoint_url": f"{up.base}/other"}, "endpoint_url"),
        ({**request(url), "endpoint_url": None}, "endpoint_url"),
        (request(url, "TRACE"), "payload.method"),
        (request(url, "GET", body="x"), "payload.body"),
        (request(url, "POST", body=None), "payload.body"),
        (request(f"{up.base}/a/../admin"), "payload.url"),
        (request(f"{up.base}/a/%2e%2e/admin"), "payload.url"),
        (request(f"{up.base}/a%2Fb"), "payload.url"),
        (request(f"http://user:pw@127.0.0.1:{up.port}/ok"), "payload.url"),
        (request(f"{up.base}/ok#frag"), "payload.url"),
        (request("file:///etc/passwd"), "payload.url"),
        (request(f"gopher://127.0.0.1:{up.port}/"), "payload.url"),
        ({**request(url), "payload": {"method": "GET", "url": url, "extra": 1}}, "payload.extra"),
    ]
    for case, field in cases:
        body = {k: v for k, v in case.items() if v is not None}
        r = env.authorize(**body)
        assert r.status_code == 422 and r.json()["code"] == "INVALID_HTTP_REQUEST", (body, r.text)
        assert r.json()["details"]["field"] == field, (body, r.json())
    assert up.seen == []


# -- exactly once --------------------------------------------------------------------------------
def test_a_second_execute_is_409_and_the_upstream_saw_one_request(env: Env, up: Upstream) -> None:
    action_id = authorized(env, f"{up.base}/ok")
    assert execute(env, action_id).json()["status"] == "notarized"
    again = execute(env, action_id)
    assert again.status_code == 409 and again.json()["code"] == "INVALID_ACTION_STATE"
    assert len(up.seen) == 1


def test_concurrent_executes_one_wins_the_other_is_409(env: Env, up: Upstream) -> None:
    action_id = authorized(env, f"{up.base}/slow")
    results: list[httpx.Response] = []
    first = threading.Thread(target=lambda: results.append(execute(env, action_id)))
    first.start()
    assert up.arrived.wait(10), "the first execute never reached the upstream"
    assert status(env, action_id) == "executing"
    second = execute(env, action_id)  # while the first is in flight
    assert second.status_code == 409 and second.json()["code"] == "INVALID_ACTION_STATE"
    assert second.json()["details"]["status"] == "executing"
    notarize = env.client.post(f"/v1/actions/{action_id}/notarize", json={"outcome": "completed"},
                               headers=env.h("agent"))
    assert notarize.status_code == 409  # nor can the agent report over Warrantor's own execution
    up.release.set()
    first.join(30)
    assert len(results) == 1 and results[0].status_code == 200
    assert len(up.seen) == 1


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def both(request: pytest.FixtureRequest, tmp_path: Path, up: Upstream,
         monkeypatch: pytest.MonkeyPatch) -> Iterator[Env]:
    """``env`` on each store: the claim must be one winner on both."""
    monkeypatch.setenv("TEST_UPSTREAM_TOKEN", SECRET)
    if request.param == "sqlite":
        yield from _env(tmp_path, up)
    else:
        with pg_database() as url:
            yield from _env(tmp_path, up, url)


def test_racing_executes_run_the_request_once(both: Env, up: Upstream) -> None:
    env = both
    action_id = authorized(env, f"{up.base}/ok")
    barrier = threading.Barrier(4)
    answers: list[int] = []

    def go() -> None:
        barrier.wait()
        answers.append(execute(env, action_id).status_code)

    threads = [threading.Thread(target=go) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(answers) == [200, 409, 409, 409]
    assert len(up.seen) == 1 and status(env, action_id) == "notarized"


# -- who, and in which state --------------------------------------------------------------------
def test_only_the_actions_agent_its_gateway_or_an_admin_may_execute(env: Env, up: Upstream) -> None:
    action_id = authorized(env, f"{up.base}/ok")
    other = env.client.post("/v1/api-keys", headers=env.h("admin"), json={"role": "agent", "agent_id": "other-agent"})
    other_gateway = env.client.post("/v1/api-keys", headers=env.h("admin"),
                                    json={"role": "gateway", "agent_id": "other-agent"})
    for key in (other.json()["key"], other_gateway.json()["key"]):
        r = execute(env, action_id, bearer(key))
        assert r.status_code == 404 and r.json()["code"] == "NOT_FOUND", r.text
    for role in ("app", "auditor"):
        r = execute(env, action_id, env.h(role))
        assert r.status_code == 403 and r.json()["code"] == "FORBIDDEN_ROLE", role
    assert up.seen == [] and status(env, action_id) == "authorized"
    gateway = env.client.post("/v1/api-keys", headers=env.h("admin"), json={"role": "gateway", "agent_id": AGENT})
    assert execute(env, action_id, bearer(gateway.json()["key"])).json()["status"] == "notarized"
    by_admin = authorized(env, f"{up.base}/ok")
    assert execute(env, by_admin, env.h("admin")).json()["status"] == "notarized"


def test_a_held_action_runs_only_once_approved(env: Env, up: Upstream) -> None:
    r = env.authorize(**request(f"{up.base}/item/1", "DELETE"))
    assert r.status_code == 201 and r.json()["status"] == "pending_approval", r.text
    action_id = r.json()["action_id"]
    held = execute(env, action_id)
    assert held.status_code == 409 and held.json()["code"] == "INVALID_ACTION_STATE" and up.seen == []
    code = env.approval_codes(action_id)[0]
    assert env.client.post(f"/v1/approvals/{code}/confirm", json={"decision": "approve"}).status_code == 200
    out = execute(env, action_id).json()
    assert out["status"] == "notarized" and [s.method for s in up.seen] == ["DELETE"]
    assert predicate(out["receipt"]["envelope"])["approvals"], "the receipt names who approved"


def test_denied_and_other_action_types_are_not_executable(env: Env, up: Upstream) -> None:
    denied = env.authorize(**request(f"{up.base}/admin/users"))
    assert denied.status_code == 403 and denied.json()["code"] == "POLICY_DENIED"
    r = execute(env, denied.json()["details"]["action_id"])
    assert r.status_code == 409 and r.json()["code"] == "INVALID_ACTION_STATE"
    assert r.json()["details"]["status"] == "denied"
    activate(env, demo_bundle())
    wire = env.authorize()
    assert wire.status_code == 201, wire.text
    r = execute(env, wire.json()["action_id"])
    assert r.status_code == 409 and r.json()["code"] == "NOT_EXECUTABLE"
    assert execute(env, "act_doesnotexist").status_code == 404
    assert up.seen == []


def test_an_expired_warrant_is_not_executed(tmp_path: Path, up: Upstream, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_UPSTREAM_TOKEN", SECRET)
    for env in _env(tmp_path, up, warrant_ttl_seconds=1):
        action_id = authorized(env, f"{up.base}/ok")
        with env.services.store.read() as repo:
            expires = repo.get_action(env.tenant_id, action_id).warrant_expires_at  # type: ignore[union-attr]
        env.services.deps.clock = _FrozenClock(expires)
        r = execute(env, action_id)
        assert r.status_code == 409 and r.json()["code"] == "WARRANT_EXPIRED", r.text
        assert up.seen == []


class _FrozenClock:
    def __init__(self, now: Any) -> None:
        self._now = now

    def now(self) -> Any:
        return self._now



def test_a_result_after_the_sweep_presumed_it_lost_still_resolves_it(env: Env, up: Upstream) -> None:
    """A process stalled past the deadline: the sweep makes the action uncertain (never
    runnable), and the answer that arrives later still resolves it with its receipt."""
    action_id = authorized(env, f"{up.base}/slow")
    results: list[httpx.Response] = []
    caller = threading.Thread(target=lambda: results.append(execute(env, action_id)))
    caller.start()
    assert up.arrived.wait(10)
    later = env.services.deps.clock.now() + timedelta(seconds=env.services.executor.config.lost_after + 1)
    env.services.deps.clock = _FrozenClock(later)
    assert env.services.sweeper.sweep() >= 1
    detail = env.client.get(f"/v1/actions/{action_id}", headers=env.h("admin")).json()
    assert detail["status"] == "uncertain" and detail["execution"]["error"] == "EXECUTION_LOST"
    assert execute(env, action_id).status_code == 409
    up.release.set()
    caller.join(30)
    out = results[0].json()
    assert out["status"] == "notarized" and out["receipt"] is not None, out
    assert predicate(out["receipt"]["envelope"])["evidence_grade"] == "witnessed" and len(up.seen) == 1

# -- the allowlist, at authorize and again at execute --------------------------------------------
def test_a_url_not_allowlisted_is_denied_at_authorize(env: Env, up: Upstream) -> None:
    r = env.authorize(**request(f"http://localhost:{up.port}/ok"))
    assert r.status_code == 403 and r.json()["code"] == "ENDPOINT_NOT_ALLOWED"
    # Not strict and no entry for http.request: still denied (Warrantor would send it itself).
    activate(env, http_bundle([], strict=False))
    r = env.authorize(**request(f"{up.base}/ok"))
    assert r.status_code == 403 and r.json()["code"] == "ENDPOINT_NOT_ALLOWED"
    assert up.seen == []


def test_execute_refuses_when_the_bundle_no_longer_allows_the_host(env: Env, up: Upstream) -> None:
    action_id = authorized(env, f"{up.base}/ok")
    activate(env, http_bundle(["api.example.com"]))
    r = execute(env, action_id)
    assert r.status_code == 403 and r.json()["code"] == "ENDPOINT_NOT_ALLOWED", r.text
    assert up.seen == [] and status(env, action_id) == "authorized"
    activate(env, http_bundle(["127.0.0.1"]))
    assert execute(env, action_id).json()["status"] == "notarized"


# -- network rules: SSRF, redirects, schemes -------------------------------------------------------
def test_loopback_is_refused_without_the_private_allowance(
        tmp_path: Path, up: Upstream, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_UPSTREAM_TOKEN", SECRET)
    for env in _env(tmp_path, up, execute_allow_private=None):
        activate(env, http_bundle(["127.0.0.1", "localhost", "0.0.0.0"]))
        for url in (f"{up.base}/ok", f"http://localhost:{up.port}/ok", f"http://0.0.0.0:{up.port}/ok"):
            action_id = authorized(env, url)
            r = execute(env, action_id)
            assert r.status_code == 403 and r.json()["code"] == "EXECUTE_ADDRESS_REFUSED", (url, r.text)
            assert status(env, action_id) == "authorized"
        assert up.seen == []


def test_a_loopback_address_outside_the_exceptions_is_refused(
        tmp_path: Path, up: Upstream, monkeypatch: pytest.MonkeyPatch) -> None:
    """127.0.0.2 is loopback but not in the exception list: refused as an address."""
    monkeypatch.setenv("TEST_UPSTREAM_TOKEN", SECRET)
    for env in _env(tmp_path, up):
        activate(env, http_bundle(["127.0.0.2"]))
        r = execute(env, authorized(env, f"http://127.0.0.2:{up.port}/ok"))
        assert r.status_code == 403 and r.json()["code"] == "EXECUTE_ADDRESS_REFUSED"


def test_redirects_are_not_followed_to_another_host_or_the_same_one(env: Env, up: Upstream) -> None:
    with upstream() as elsewhere:
        up.redirect_to = f"{elsewhere.base}/ok"
        out = execute(env, authorized(env, f"{up.base}/redirect")).json()
        assert out["status"] == "failed" and out["response"]["status_code"] == 302
        assert out["error"]["code"] == "UPSTREAM_STATUS"
        assert elsewhere.seen == []
        up.redirect_to = f"{up.base}/ok"
        out = execute(env, authorized(env, f"{up.base}/redirect")).json()
        assert out["status"] == "failed" and up.paths() == ["/redirect", "/redirect"]
        assert predicate(out["receipt"]["envelope"])["evidence_grade"] == "witnessed"


# -- TLS: the certificate is verified, and pins are checked on the very connection ------------------
def test_tls_pins_are_checked_on_the_connection_that_would_carry_the_request(tmp_path: Path) -> None:
    ca = make_ca()
    (tmp_path / "ca.pem").write_bytes(ca[2])
    genuine, impostor = leaf_for_127(ca), leaf_for_127(ca)  # both valid for 127.0.0.1, one pinned
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    serve_certificate(server_tls, genuine, tmp_path)
    trusting = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
    config = ExecuteConfig(allow_private=parse_networks(LOCAL), ssl_context=trusting)
    with upstream(server_tls) as tls_up, make_env(tmp_path, services_kwargs={"execute": config}) as env:
        bundle = http_bundle(["127.0.0.1"])
        bundle["config"]["endpoints"]["pins"] = {"127.0.0.1": [genuine.sha256]}
        activate(env, bundle)
        action_id = authorized(env, f"{tls_up.base}/ok")  # the pin held at authorize
        serve_certificate(server_tls, impostor, tmp_path)  # then someone else answers
        out = execute(env, action_id).json()
        assert out["status"] == "failed" and out["error"]["code"] == "ENDPOINT_TLS_MISMATCH", out
        assert tls_up.seen == [], "a byte of the request reached the impostor"
        assert predicate(out["receipt"]["envelope"])["reason_code"] == "ENDPOINT_TLS_MISMATCH"
        serve_certificate(server_tls, genuine, tmp_path)
        out = execute(env, authorized(env, f"{tls_up.base}/ok")).json()
        assert out["status"] == "notarized" and len(tls_up.seen) == 1, out


def test_an_untrusted_certificate_fails_before_anything_is_sent(env: Env, tmp_path: Path) -> None:
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    serve_certificate(server_tls, leaf_for_127(make_ca()), tmp_path)
    with upstream(server_tls) as tls_up:
        out = execute(env, authorized(env, f"{tls_up.base}/ok")).json()
        assert out["status"] == "failed" and out["error"]["code"] == "EXECUTE_CONNECTION_FAILED", out
        assert tls_up.seen == []


def test_an_unreadable_secret_refuses_the_execution_and_sends_nothing(
        tmp_path: Path, up: Upstream) -> None:
    key = tmp_path / "upstream.key"
    key.write_text(SECRET)
    secrets = tmp_path / "secrets.yaml"
    secrets.write_text(f"inject:\n  - url_prefix: {up.base}/\n    headers:\n      X-Api-Key: {{value_file: {key}}}\n")
    for env in _env(tmp_path, up, execute_secrets=secrets):
        first = execute(env, authorized(env, f"{up.base}/ok")).json()
        assert first["status"] == "notarized" and up.seen[0].headers["x-api-key"] == SECRET
        key.unlink()  # gone (rotated badly, unmounted)
        action_id = authorized(env, f"{up.base}/ok")
        r = execute(env, action_id)
        assert r.status_code == 503 and r.json()["code"] == "EXECUTE_SECRET_UNAVAILABLE", r.text
        assert SECRET not in r.text and len(up.seen) == 1 and status(env, action_id) == "authorized"


# -- what happened, when it went wrong -----------------------------------------------------------
def test_a_server_error_is_failed_with_a_witnessed_receipt(env: Env, up: Upstream) -> None:
    out = execute(env, authorized(env, f"{up.base}/fail")).json()
    assert out["status"] == "failed" and out["response"]["status_code"] == 500
    pred = predicate(out["receipt"]["envelope"])
    assert pred["status"] == "failed" and pred["reason_code"] == "UPSTREAM_STATUS"
    assert pred["witness"]["response_sha256"] == out["witness"]["response_sha256"]


def test_a_slow_server_leaves_the_action_uncertain(env: Env, up: Upstream) -> None:
    action_id = authorized(env, f"{up.base}/slow")
    out = execute(env, action_id).json()
    assert out["status"] == "uncertain" and out["error"]["code"] == "EXECUTE_TIMEOUT"
    assert out["receipt"] is None and out["response"] is None
    assert len(up.seen) == 1
    again = execute(env, action_id)
    assert again.status_code == 409 and again.json()["details"]["status"] == "uncertain"
    detail = env.client.get(f"/v1/actions/{action_id}", headers=env.h("admin")).json()
    assert detail["execution"]["witness"] == out["witness"]  # the digests are kept for later
    up.release.set()


def test_a_reset_in_the_middle_of_the_response_is_uncertain(env: Env, up: Upstream) -> None:
    action_id = authorized(env, f"{up.base}/reset")
    out = execute(env, action_id).json()
    assert out["status"] == "uncertain" and out["error"]["code"] == "EXECUTE_CONNECTION_FAILED", out
    assert len(up.seen) == 1 and execute(env, action_id).status_code == 409


def test_a_refused_connection_is_failed_nothing_was_sent(env: Env, up: Upstream) -> None:
    dead = free_port()  # nothing listens there
    action_id = authorized(env, f"http://127.0.0.1:{dead}/ok")
    out = execute(env, action_id).json()
    assert out["status"] == "failed" and out["error"]["code"] == "EXECUTE_CONNECTION_FAILED"
    assert out["response"] is None
    assert predicate(out["receipt"]["envelope"])["reason_code"] == "EXECUTE_CONNECTION_FAILED"


def test_a_huge_response_is_read_to_the_limit_and_marked_truncated(
        tmp_path: Path, up: Upstream, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_UPSTREAM_TOKEN", SECRET)
    for env in _env(tmp_path, up, execute_max_response_bytes=65536):
        out = execute(env, authorized(env, f"{up.base}/huge")).json()
        assert out["status"] == "notarized" and out["response"]["truncated"] is True
        assert len(out["response"]["body"]) == 65536 < HUGE_BYTES
        assert predicate(out["receipt"]["envelope"])["execution"]["truncated"] is True


# -- evidence -----------------------------------------------------------------------------------
def test_the_witnessed_receipt_verifies_offline(env: Env, up: Upstream, tmp_path: Path) -> None:
    out = execute(env, authorized(env, f"{up.base}/ok")).json()
    bundle = env.client.get(f"/v1/receipts/{out['receipt']['receipt_id']}/bundle", headers=env.h("auditor"))
    assert bundle.status_code == 200, bundle.text
    (tmp_path / "receipt.json").write_text(bundle.text)
    (tmp_path / "trust.json").write_text(env.client.get("/v1/trust").text)
    text = io.StringIO()
    assert verify_main([str(tmp_path / "receipt.json"), "--trust", str(tmp_path / "trust.json")], out=text) == 0
    for check in ("signature", "key_validity", "subject_digest", "inclusion", "checkpoint_signature", "timestamp"):
        assert f"PASS  {check}" in text.getvalue(), text.getvalue()
    assert predicate(bundle.json()["envelope"])["witness"]["executor"] == "warrantor-http"


# -- the SDK ------------------------------------------------------------------------------------
def _forwarding(env: Env) -> httpx.MockTransport:
    """A transport that hands each request to the real app."""
    def handle(req: httpx.Request) -> httpx.Response:
        r = env.client.request(req.method, req.url.raw_path.decode(), content=req.content,
                               headers={k: v for k, v in req.headers.items() if k.lower() != "host"})
        headers = {k: v for k, v in r.headers.items() if k.lower() not in ("content-encoding", "content-length")}
        return httpx.Response(r.status_code, headers=headers, content=r.content)

    return httpx.MockTransport(handle)


def test_the_sdk_executes_and_a_second_call_raises_the_conflict(env: Env, up: Upstream) -> None:
    with Client("http://warrantor.test", env.keys["agent"], transport=_forwarding(env)) as wr:
        auth = wr.authorize("http.request", details="create", endpoint_url=f"{up.base}/created",
                            payload={"method": "POST", "url": f"{up.base}/created", "body": "hello"},
                            instruction_hash="sha256:" + "ab" * 32)
        result = wr.execute(auth.action_id)
        assert (result.status, result.status_code, result.evidence_grade) == ("notarized", 201, "witnessed")
        assert result.receipt_id and result.witness["executor"] == "warrantor-http"
        with pytest.raises(InvalidTransitionError):
            wr.execute(auth.action_id)
    assert [s.body for s in up.seen] == [b"hello"]
    assert up.seen[0].headers["content-type"] == "text/plain; charset=utf-8"


def test_the_async_sdk_executes(env: Env, up: Upstream) -> None:
    async def scenario() -> ExecuteResult:
        transport = httpx.ASGITransport(app=env.client.app)
        async with AsyncClient("http://warrantor.test", env.keys["agent"], transport=transport) as wr:
            auth = await wr.authorize("http.request", endpoint_url=f"{up.base}/fail",
                                      payload={"method": "GET", "url": f"{up.base}/fail"},
                                      instruction_hash="sha256:" + "ab" * 32)
            return await wr.execute(auth.action_id)

    result = asyncio.run(scenario())
    assert (result.status, result.status_code) == ("failed", 500)
    assert result.error == {"code": "UPSTREAM_STATUS", "message": "the upstream answered 500"}


def test_no_gateway_can_claim_to_be_warrantors_own_executor(env: Env, up: Upstream) -> None:
    """A receipt whose witness names warrantor-http comes from Warrantor's executor only."""
    gateway = env.client.post("/v1/api-keys", headers=env.h("admin"), json={"role": "gateway", "agent_id": AGENT})
    action_id = authorized(env, f"{up.base}/ok")
    digest_ = "sha256:" + "ab" * 32
    for label in ("warrantor-http", "Warrantor-HTTP", " warrantor-http "):
        r = env.client.post(f"/v1/actions/{action_id}/notarize", headers=bearer(gateway.json()["key"]), json={
            "outcome": "completed", "evidence_grade": "witnessed",
            "witness": {"request_sha256": digest_, "response_sha256": digest_, "executor": label}})
        assert r.status_code == 422 and r.json()["details"]["field"] == "witness.executor", (label, r.text)
    assert status(env, action_id) == "authorized" and up.seen == []
