"""Tenancy bootstrap, policy upload errors, OpenAPI truthfulness, health, metrics, e-mail."""

from __future__ import annotations

import re
import socket
import time
from pathlib import Path

from aiosmtpd.controller import Controller
from fastapi.routing import APIRoute

from support import WIRE, Env, bearer, make_env
from warrantor.demo import demo_bundle
from warrantor.server import routes


def test_operator_creates_tenant_and_keys_admin_creates_more(env: Env) -> None:
    r = env.client.post("/v1/tenants", json={"name": "Globex"}, headers=env.operator)
    assert r.status_code == 201
    tenant_id = r.json()["tenant_id"]
    r = env.client.post(f"/v1/tenants/{tenant_id}/api-keys", json={"role": "admin"}, headers=env.operator)
    admin = r.json()["key"]
    assert admin.startswith("wrt_") and len(admin) >= 4 + 32
    r = env.client.post("/v1/api-keys", json={"role": "agent", "agent_id": "bot"}, headers=bearer(admin))
    assert r.status_code == 201 and r.json()["tenant_id"] == tenant_id
    r = env.client.post("/v1/api-keys", json={"role": "root"}, headers=bearer(admin))
    assert r.status_code == 422
    r = env.client.post("/v1/tenants/ten_missing/api-keys", json={"role": "admin"}, headers=env.operator)
    assert (r.status_code, r.json()["code"]) == (404, "TENANT_NOT_FOUND")


def test_invalid_bundle_lists_every_problem_with_lines(env: Env) -> None:
    bad = {
        "cedar": (
            "permit (principal, action, resource);\n"
            '@id("x") @effect("maybe")\nforbid (principal, action, resource);\n'
        ),
        "schema": demo_bundle()["schema"],
        "config": {"budgets": [{"id": "b", "metric": "nope"}]},
    }
    r = env.client.post("/v1/policies", json=bad, headers=env.h("admin"))
    assert r.status_code == 422
    problems = r.json()["details"]["problems"]
    messages = " | ".join(p["message"] for p in problems)
    assert "@id" in messages and "maybe" in messages and "metric" in messages
    assert any(p.get("line") for p in problems)


def test_upload_is_content_addressed_and_activation_switches_the_bundle(env: Env) -> None:
    r = env.client.post("/v1/policies", json=demo_bundle(), headers=env.h("admin"))
    assert r.json() == {**r.json(), "bundle_hash": env.bundle_hash, "created": False}
    listed = env.client.get("/v1/policies", headers=env.h("admin")).json()["data"]
    assert listed[0]["active_mode"] == "enforce"
    assert env.client.post("/v1/policies/0000/activate", json={}, headers=env.h("admin")).status_code == 404
    archived = env.client.get(f"/v1/policies/{env.bundle_hash}", headers=env.h("auditor")).json()
    assert archived["bundle"]["cedar"] == demo_bundle()["cedar"]


def test_evaluate_is_a_dry_run(env: Env) -> None:
    r = env.client.post(
        "/v1/policies/evaluate",
        json={"action": {"action_type": "wire_transfer", "payload": {**WIRE, "amount_minor": 6_000_000}}},
        headers=env.h("admin"),
    )
    assert r.status_code == 200
    assert r.json()["status"] == "pending_approval"
    decision = r.json()["decision"]
    assert (decision["stage"], decision["reason"]) == ("policy", "APPROVAL_THRESHOLD")
    assert ("policy", "require_approval") in {(s["name"], s["outcome"]) for s in decision["stages"]}
    assert decision["rules"][0]["id"] == "wire-approval-50k"
    assert env.client.get("/v1/actions", headers=env.h("admin")).json()["pagination"]["total"] == 0


def test_openapi_documents_every_route_and_only_routes(env: Env) -> None:
    spec = env.client.get("/openapi.json").json()
    documented = {(path, method.upper()) for path, ops in spec["paths"].items() for method in ops}
    served = {
        (route.path, method)
        for router in routes.all_routers()
        for route in router.routes
        if isinstance(route, APIRoute) and route.include_in_schema
        for method in route.methods
    }
    assert documented == served
    for path, method in documented:  # and every documented operation is really routed
        r = env.client.request(method, path.replace("{", "x").replace("}", ""), headers=env.h("admin"))
        assert r.status_code != 405, (method, path)
        assert not (r.status_code == 404 and r.json().get("detail") == "Not Found"), (method, path)


def test_health_ready_and_metrics(env: Env) -> None:
    assert env.client.get("/healthz").json() == {"status": "ok"}
    assert env.client.get("/readyz").status_code == 200
    env.authorize()
    env.authorize(payload={**WIRE, "amount_minor": 500_000_000})
    text = env.client.get("/metrics").text
    assert 'warrantor_decisions_total{effect="allow",stage="seal"} 1.0' in text
    assert 'warrantor_decisions_total{effect="deny",stage="policy"} 1.0' in text
    assert 'warrantor_http_requests_total{method="POST",route="/v1/actions",status="201"}' in text


def test_readyz_fails_when_the_store_is_gone(env: Env) -> None:
    env.services.store.db.reader_engine.dispose()
    db = Path(env.settings.data_dir) / "warrantor.db"
    db.rename(db.with_suffix(".moved"))
    (Path(env.settings.data_dir) / "warrantor.db").mkdir()
    r = env.client.get("/readyz")
    assert r.status_code == 503 and r.json()["code"] == "NOT_READY"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[bytes] = []

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        self.messages.append(envelope.content)  # type: ignore[attr-defined]
        return "250 OK"


def test_approval_codes_are_mailed_over_smtp(tmp_path: Path) -> None:
    inbox = _Inbox()
    port = _free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        with make_env(tmp_path, smtp_url=f"smtp://127.0.0.1:{port}") as env:
            env.add_approver("cfo@example.com")
            r = env.authorize(payload={**WIRE, "amount_minor": 6_000_000}, approvers=["cfo@example.com"])
            action_id = r.json()["action_id"]
            deadline = time.monotonic() + 10
            while len(inbox.messages) < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
            mails = {m.decode().split("To: ", 1)[1].split("\n", 1)[0].strip(): m.decode() for m in inbox.messages}
            assert sorted(mails) == sorted(["cfo@example.com", env.approver]), "one personal e-mail each"
            code = re.search(r"Approval code: (APR-[A-Z0-9]+)", mails["cfo@example.com"])
            assert code is not None and f"/approve/{code.group(1)}" in mails["cfo@example.com"]
            assert code.group(1) not in mails[env.approver]
            review = env.client.get(f"/v1/approvals/{code.group(1)}").json()
            assert (review["action_id"], review["approver"]) == (action_id, "cfo@example.com")
    finally:
        controller.stop()


def test_private_keys_are_readable_by_the_owner_only(env: Env) -> None:
    keys = Path(env.settings.data_dir) / "keys"
    assert keys.stat().st_mode & 0o077 == 0
    pems = list((keys / "signing").glob("*.pem"))
    assert pems
    assert all(p.stat().st_mode & 0o077 == 0 for p in pems)
