"""Hostile request input gets a 4xx with a stable code, the same on both stores.

Deep JSON (422 JSON_TOO_DEEP on every route that takes a body, the verify page and the
verify CLI included), NUL characters (422 NUL_CHARACTER on SQLite and PostgreSQL alike)
and bodies over the size limit that arrive chunked (413).
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from support import WIRE, Env
from warrantor.evidence.jsontext import MAX_JSON_DEPTH
from warrantor.verify import cli as verify_cli

DEEP = 100_000


def _nested(depth: int, inner: str = "1") -> str:
    return "[" * depth + inner + "]" * depth


def _json_routes(app: Any) -> list[tuple[str, str]]:
    """(method, path) of every route whose OpenAPI operation takes a JSON body."""
    out = []
    for path, item in app.openapi()["paths"].items():
        for method, op in item.items():
            content = op.get("requestBody", {}).get("content", {})
            if "application/json" in content:
                out.append((method.upper(), path.replace("{", "x").replace("}", "")))
    return out


def test_deep_json_is_422_on_every_route_that_takes_json(env: Env) -> None:
    routes = _json_routes(env.client.app)
    assert ("POST", "/v1/actions") in routes and ("POST", "/v1/verify") in routes and len(routes) > 10
    anon = TestClient(env.client.app, raise_server_exceptions=False)
    body = '{"a": ' + _nested(DEEP) + "}"
    for method, path in routes:
        r = anon.request(method, path, content=body, headers={**env.h("admin"), "content-type": "application/json"})
        assert r.status_code == 422, (method, path, r.status_code, r.text[:200])
        assert r.json()["code"] == "JSON_TOO_DEEP", (method, path)


def test_depth_limit_is_exact_and_strings_do_not_count(env: Env) -> None:
    # 65 levels inside a valid action body: refused before any parsing
    too_deep = {"action_type": "wire_transfer", "payload": {"x": json.loads(_nested(MAX_JSON_DEPTH - 1))}}
    r = env.client.post("/v1/actions", json=too_deep, headers=env.h("agent"))
    assert (r.status_code, r.json()["code"]) == (422, "JSON_TOO_DEEP")
    # 64 levels pass this rule (the payload's own Cedar depth limit answers instead)
    ok_depth = {"action_type": "wire_transfer", "payload": {"x": json.loads(_nested(MAX_JSON_DEPTH - 2))}}
    r = env.client.post("/v1/actions", json=ok_depth, headers=env.h("agent"))
    assert r.status_code == 422 and r.json()["code"] != "JSON_TOO_DEEP"
    # brackets inside strings are text, not nesting
    r = env.authorize(details="[" * 5000 + "{" * 5000, payload={**WIRE, "beneficiary": '"]]]\\"[[[' * 100})
    assert r.status_code == 201, r.text


def test_verify_refuses_deep_json_hidden_in_a_tlog_proof(env: Env) -> None:
    extra = base64.b64encode(('{"envelope": ' + _nested(DEEP) + "}").encode()).decode()
    text = f"c2sp.org/tlog-proof@v1\nextra {extra}\nindex 0\n\ncheckpoint\n"
    r = TestClient(env.client.app, raise_server_exceptions=False).post("/v1/verify", json={"bundle": text})
    assert r.status_code == 422 and "nested deeper than 64" in r.json()["detail"], r.text[:300]


def test_verify_page_answers_422_for_deep_json(env: Env) -> None:
    anon = TestClient(env.client.app, raise_server_exceptions=False)
    trust = env.client.get("/v1/trust").text
    r = anon.post("/console/verify", data={"bundle_text": '{"log": ' + _nested(DEEP) + "}", "trust_text": trust})
    assert r.status_code == 422, r.status_code
    assert "could not be read" in r.text and "nested deeper than 64" in r.text
    deep_file = ('{"log": ' + _nested(DEEP) + "}").encode()
    r = anon.post("/console/verify", files={"bundle_file": ("b.json", deep_file, "application/json"),
                                            "trust_file": ("t.json", trust.encode(), "application/json")})
    assert r.status_code == 422 and "proof bundle could not be read" in r.text


def test_verify_cli_reports_deep_json_instead_of_crashing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    deep = tmp_path / "deep.json"
    deep.write_text('{"log": ' + _nested(DEEP) + "}")
    trust = tmp_path / "trust.json"
    trust.write_text("{}")
    assert verify_cli.main([str(deep), "--trust", str(trust)], out=io.StringIO()) == verify_cli.EXIT_UNREADABLE
    err = capsys.readouterr().err
    assert "cannot read input" in err and "nested deeper than 64" in err


# -- NUL characters: one answer on both stores ----------------------------------------------
def _count_actions(env: Env) -> int:
    return len(env.client.get("/v1/actions", headers=env.h("admin")).json()["data"])


NUL_BODIES: dict[str, dict[str, Any]] = {
    "payload_value": {"payload": {**WIRE, "beneficiary": "ACME\u0000GmbH"}},
    "payload_key": {"payload": {**WIRE, "no\u0000te": "x"}},
    "details": {"details": "pay\u0000invoice"},
    "labels": {"labels": ["urgent\u0000"]},
    "scope": {"scope": "payments\u0000"},
    "agent_version": {"agent_version": "1.0\u0000"},
}


def test_nul_characters_are_422_on_both_stores(store_env: Env) -> None:
    env = store_env
    before = _count_actions(env)
    for name, body in NUL_BODIES.items():
        r = env.authorize(**body)
        assert (r.status_code, r.json()["code"]) == (422, "NUL_CHARACTER"), (name, r.text[:300])
    r = env.authorize(headers={"Idempotency-Key": "k%00"})  # percent-encoding in a header is text
    assert r.status_code == 201, r.text
    anon = TestClient(env.client.app, raise_server_exceptions=False)
    for path in ("/v1/actions?agent_id=a%00b", "/v1/actions/act_%00x", "/v1/receipts/rcp%00"):
        r = anon.get(path, headers=env.h("admin"))
        assert (r.status_code, r.json()["code"]) == (422, "NUL_CHARACTER"), (path, r.text[:300])
    r = anon.post("/console/login", data={"email": "a\u0000@example.com", "password": "x", "login_token": "t"})
    assert (r.status_code, r.json()["code"]) == (422, "NUL_CHARACTER")
    r = anon.post("/v1/users", headers=env.h("admin"), json={
        "email": "nul\u0000@example.com", "name": "n", "password": "correct horse battery staple", "roles": []})
    assert (r.status_code, r.json()["code"]) == (422, "NUL_CHARACTER")
    assert _count_actions(env) == before + 1  # only the idempotency-key action was written
    # an escaped backslash followed by "u0000" is text, not a NUL
    assert env.authorize(details="C:\\u0000\\path").status_code == 201


# -- bodies over the limit, without a Content-Length --------------------------------------
def _chunks(total: int, size: int = 64 * 1024) -> Iterator[bytes]:
    yield b'{"action_type": "wire_transfer", "payload": ' + json.dumps(WIRE).encode() + b', "details": "'
    sent = 0
    while sent < total:
        yield b"x" * size
        sent += size
    yield b'"}'


def test_an_oversized_chunked_body_is_413(env: Env) -> None:
    limit = env.settings.max_body_bytes
    headers = {**env.h("agent"), "content-type": "application/json"}
    r = env.client.post("/v1/actions", content=_chunks(limit + 1), headers=headers)
    assert "content-length" not in {k.lower() for k in r.request.headers}
    assert (r.status_code, r.json()["code"]) == (413, "PAYLOAD_TOO_LARGE"), r.text[:200]
    small = env.client.post("/v1/actions", content=_chunks(8 * 1024, 1024), headers=headers)
    assert small.status_code == 201, small.text[:300]
