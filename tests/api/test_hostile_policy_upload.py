"""A policy upload cannot kill or stall the server: attacks against a real server process."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from support import bearer, server_process

SCHEMA = (
    "entity Agent; entity Resource; action wire_transfer appliesTo "
    "{ principal: [Agent], resource: [Resource], context: {} };"
)


def _cedar(condition: str) -> str:
    return f'@id("x") @reason("R")\npermit (principal, action, resource) when {{ {condition} }};\n'


def test_hostile_bundles_get_422_and_the_server_lives(tmp_path: Path) -> None:
    chain = _cedar(" && ".join(["true"] * 20_000))  # 160 KB: SIGSEGV in cedarpy before the fix
    ifs = _cedar("if true then " * 5_000 + "true" + " else true" * 5_000)
    n = 10_000  # an entity hierarchy chain: gigabytes and minutes in Cedar's closure
    hierarchy = "".join(f"entity E{i} in [E{i + 1}];\n" for i in range(n)) + f"entity E{n};\n" + SCHEMA
    with server_process(tmp_path) as server:
        admin = bearer(json.loads((tmp_path / "demo.json").read_text())["admin_key"])
        for cedar, schema in ((chain, SCHEMA), (ifs, SCHEMA), (_cedar("true"), hierarchy)):
            r = httpx.post(f"{server.url}/v1/policies", headers=admin, timeout=60,
                           json={"cedar": cedar, "schema": schema, "config": {}})
            assert r.status_code == 422, r.text[:300]
            body = r.json()
            assert body["code"] == "POLICY_INVALID"
            problem = body["details"]["problems"][0]
            assert problem["code"] == "POLICY_TOO_COMPLEX", problem
            assert httpx.get(f"{server.url}/healthz", timeout=5).status_code == 200
        assert server.proc.poll() is None
        ok = httpx.post(f"{server.url}/v1/policies", headers=admin, timeout=60,
                        json={"cedar": _cedar("true"), "schema": SCHEMA, "config": {}})
        assert ok.status_code == 201, ok.text
