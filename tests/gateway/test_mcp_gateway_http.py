"""The gateway over Streamable HTTP: a real ``warrantor mcp-gateway --http`` process on a
free loopback port, with a bearer token its clients must present."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
import pytest
from gateway_support import Deployment, outbox_calls, write_config
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from support import free_port

TOKEN = "gateway-token-for-tests-0123456789"


@pytest.fixture
def http_gateway(deployment: Deployment, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    outbox = tmp_path / "outbox"
    config = write_config(tmp_path / "gateway.yaml", deployment, outbox, extra="http:\n  token_env: TEST_HTTP_TOKEN\n")
    port = free_port()
    log = (tmp_path / "gateway.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "warrantor.cli.main", "mcp-gateway", "--config", str(config),
         "--http", f"127.0.0.1:{port}"],
        env={**os.environ, "TEST_GATEWAY_KEY": deployment.gateway_key, "TEST_HTTP_TOKEN": TOKEN},
        stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/mcp"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, (tmp_path / "gateway.log").read_text()
            try:
                httpx.get(url, timeout=1)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        yield url, outbox
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()


def test_http_gateway_requires_its_token(http_gateway: tuple[str, Path]) -> None:
    url, _ = http_gateway
    r = httpx.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, timeout=5)
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    r = httpx.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, timeout=5,
                   headers={"Authorization": "Bearer wrong-token-wrong-token-wrong"})
    assert r.status_code == 401


def test_http_gateway_authorizes_and_forwards(http_gateway: tuple[str, Path]) -> None:
    url, outbox = http_gateway
    args = {"amount_minor": 700, "currency": "EUR", "beneficiary": "HTTP GmbH"}

    async def go() -> Any:
        async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}) as http, \
                Client(streamable_http_client(url, http_client=http), cache=None) as c:
            names = [t.name for t in (await c.list_tools()).tools]
            return names, await c.call_tool("tools__send_payment", args)

    names, result = anyio.run(go)
    assert "tools__send_payment" in names and "tools__delete_file" not in names
    assert not result.is_error
    assert result.meta["io.warrantor/evidence"]["evidence_grade"] == "witnessed"
    assert [c["arguments"] for c in outbox_calls(outbox, "send_payment")] == [args]


def test_http_gateway_refuses_a_public_address_without_a_token(deployment: Deployment, tmp_path: Path) -> None:
    config = write_config(tmp_path / "gateway.yaml", deployment, tmp_path / "outbox")
    r = subprocess.run(
        [sys.executable, "-m", "warrantor.cli.main", "mcp-gateway", "--config", str(config), "--http", "0.0.0.0:1"],
        env={**os.environ, "TEST_GATEWAY_KEY": deployment.gateway_key}, capture_output=True, text=True, timeout=60,
        check=False,
    )
    assert r.returncode == 2 and "without http.token" in r.stderr
