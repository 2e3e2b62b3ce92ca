"""The ``deployment`` fixture: a real Warrantor server with the MCP policy and a gateway key
(``gateway_support.py`` has the rest)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from gateway_support import Deployment, create_gateway_key, upload_mcp_policy

from support import server_process


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    data_dir = tmp_path_factory.mktemp("warrantor")
    with server_process(data_dir, env={"WARRANTOR_SWEEP_INTERVAL_SECONDS": "0.5"}) as server:
        demo = json.loads((data_dir / "demo.json").read_text())
        upload_mcp_policy(server.url, demo["admin_key"])
        key = create_gateway_key(server.url, demo["admin_key"])
        yield Deployment(server.url, data_dir, demo, key, server.log_text)


