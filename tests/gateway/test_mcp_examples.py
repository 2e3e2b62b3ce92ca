"""docs/mcp.md's "Try it", as written: examples/mcp/setup.sh against a real server, then
the gateway with examples/mcp/gateway.yaml and an MCP client."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
from gateway_support import ROOT, outbox_calls
from mcp import Client, StdioServerParameters
from mcp.client.stdio import get_default_environment

from support import server_process
from warrantor.mcp_gateway.config import load_config


def test_setup_script_and_example_config_work_as_documented(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    with server_process(data_dir) as server:
        done = subprocess.run(
            ["bash", str(ROOT / "examples" / "mcp" / "setup.sh")], capture_output=True, text=True, timeout=60,
            env={**os.environ, "WARRANTOR_URL": server.url, "WARRANTOR_DATA_DIR": str(data_dir)}, check=False,
        )
        assert done.returncode == 0, done.stderr
        export = done.stdout.strip()
        assert export.startswith("export WARRANTOR_GATEWAY_KEY=wrt_")
        key = export.split("=", 1)[1]

        outbox = tmp_path / "outbox"
        text = (ROOT / "examples" / "mcp" / "gateway.yaml").read_text()
        assert "http://127.0.0.1:8080" in text and ".warrantor/mcp-outbox" in text
        config = tmp_path / "gateway.yaml"
        config.write_text(text.replace("http://127.0.0.1:8080", server.url)
                          .replace(".warrantor/mcp-outbox", str(outbox))
                          .replace("command: [python,", f"command: [{json.dumps(sys.executable)},"))
        assert load_config(config, {"WARRANTOR_GATEWAY_KEY": key}).upstreams[0].name == "tools"
        params = StdioServerParameters(
            command=sys.executable,
            args=["-m", "warrantor.cli.main", "mcp-gateway", "--config", str(config), "--stdio"],
            env={**get_default_environment(), "WARRANTOR_GATEWAY_KEY": key}, cwd=str(ROOT),
        )
        args = {"amount_minor": 4200, "currency": "EUR", "beneficiary": "Example GmbH"}

        async def go() -> Any:
            async with Client(params, cache=None) as c:
                names = [t.name for t in (await c.list_tools()).tools]
                return names, await c.call_tool("send_payment", args)

        names, result = anyio.run(go)
    assert "send_payment" in names and "delete_file" not in names  # one upstream: plain names
    assert not result.is_error
    assert result.meta["io.warrantor/evidence"]["evidence_grade"] == "witnessed"
    assert [c["arguments"] for c in outbox_calls(outbox, "send_payment")] == [args]
