"""Helpers for the MCP gateway tests, with real processes: a Warrantor server, the project's own MCP tools
server (``examples/mcp/tools_server.py``, which writes every call it executes to an outbox),
and ``warrantor mcp-gateway`` in between, driven by the official SDK's client as the agent.

Needs the ``mcp`` extra (``make test`` installs it); without it these tests skip, except in
CI, where they fail.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from support import bearer

ROOT = Path(__file__).resolve().parents[2]
TOOLS_SERVER = ROOT / "examples" / "mcp" / "tools_server.py"
POLICY = ROOT / "examples" / "mcp" / "policy"
AGENT = "payments-agent"

try:
    import mcp  # noqa: F401
except ImportError:  # pragma: no cover - the extra is part of make test
    if os.environ.get("CI"):
        raise
    pytest.skip("the mcp extra is not installed: pip install -e '.[mcp]'", allow_module_level=True)


@dataclass
class Deployment:
    url: str
    data_dir: Path
    demo: dict[str, Any]
    gateway_key: str
    log_text: Any

    def admin(self) -> dict[str, str]:
        return bearer(self.demo["admin_key"])

    def get(self, path: str, key: str | None = None) -> httpx.Response:
        return httpx.get(self.url + path, headers=bearer(key or self.demo["admin_key"]), timeout=10)

    def actions(self) -> list[dict[str, Any]]:
        r = self.get("/v1/actions?per_page=100")
        r.raise_for_status()
        return list(r.json()["data"])


def upload_mcp_policy(url: str, admin_key: str, config: str | None = None) -> str:
    bundle = {"cedar": (POLICY / "mcp.cedar").read_text(), "schema": (POLICY / "mcp.cedarschema").read_text(),
              "config": config if config is not None else (POLICY / "warrantor.yaml").read_text()}
    r = httpx.post(f"{url}/v1/policies", json=bundle, headers=bearer(admin_key), timeout=30)
    assert r.status_code == 201, r.text
    bundle_hash = r.json()["bundle_hash"]
    r = httpx.post(f"{url}/v1/policies/{bundle_hash}/activate", json={}, headers=bearer(admin_key), timeout=10)
    assert r.status_code == 200, r.text
    return str(bundle_hash)


def create_gateway_key(url: str, admin_key: str, agent_id: str = AGENT) -> str:
    r = httpx.post(f"{url}/v1/api-keys", json={"role": "gateway", "agent_id": agent_id, "label": "mcp gateway"},
                   headers=bearer(admin_key), timeout=10)
    assert r.status_code == 201, r.text
    return str(r.json()["key"])


def write_config(path: Path, deployment: Deployment, outbox: Path, *, wait: float = 1.0,
                 extra: str = "") -> Path:
    python = json.dumps(sys.executable)
    server = json.dumps(str(TOOLS_SERVER))
    path.write_text(f"""
warrantor:
  url: {deployment.url}
  api_key_env: TEST_GATEWAY_KEY
approval:
  wait_seconds: {wait}
upstreams:
  tools:
    command: [{python}, {server}, --outbox, {json.dumps(str(outbox))}]
    timeout_seconds: 20
  slow:
    command: [{python}, {server}, --outbox, {json.dumps(str(outbox))}]
    timeout_seconds: 1
{extra}""")
    return path


def gateway_params(config: Path, deployment: Deployment) -> Any:
    from mcp import StdioServerParameters
    from mcp.client.stdio import get_default_environment

    return StdioServerParameters(
        command=sys.executable, args=["-m", "warrantor.cli.main", "mcp-gateway", "--config", str(config), "--stdio"],
        env={**get_default_environment(), "TEST_GATEWAY_KEY": deployment.gateway_key,
             "PYTHONPATH": os.environ.get("PYTHONPATH", "")},
    )


def outbox_calls(outbox: Path, tool: str) -> list[dict[str, Any]]:
    path = outbox / f"{tool}.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
