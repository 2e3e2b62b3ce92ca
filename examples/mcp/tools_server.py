"""A small MCP server of payments and e-mail tools that write what they do to files.

It stands in for a real provider in the MCP gateway's tests, benchmark and docs: every
call it executes is appended as one JSON line to ``<outbox>/<tool>.jsonl``, so a test can
tell exactly which calls reached it (a denied or held call must never appear there), and
every ``tools/list`` it answers to ``<outbox>/tools_list.jsonl``.

    python examples/mcp/tools_server.py --outbox /tmp/outbox            # stdio
    python examples/mcp/tools_server.py --outbox /tmp/outbox --http 127.0.0.1:9001

Test hooks (for failure tests, never in a real server): ``fail_next`` makes the next call of
a tool raise; ``slow_payment`` sleeps before answering; ``garbage`` answers with a result the
client cannot read.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Annotated

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import Tool as MCPTool
from pydantic import Field

OUTBOX = [Path(".")]  # set by --outbox


def _record(tool: str, arguments: dict[str, object]) -> None:
    OUTBOX[0].mkdir(parents=True, exist_ok=True)
    with (OUTBOX[0] / f"{tool}.jsonl").open("a", encoding="utf-8") as f:
        f.write(json.dumps({"tool": tool, "arguments": arguments, "at": time.time()}, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())


class RecordingServer(MCPServer):
    """Records every ``tools/list`` it answers (the gateway's tests count them)."""

    async def list_tools(self) -> list[MCPTool]:
        _record("tools_list", {})
        return await super().list_tools()


server = RecordingServer("payments-and-mail", instructions="Payments and e-mail for the Warrantor MCP gateway tests.")


@server.tool(description="Send a wire transfer. Amounts are in minor units (cents).")
def send_payment(
    amount_minor: Annotated[int, Field(ge=1, le=10**12)],
    currency: Annotated[str, Field(pattern="^[A-Z]{3}$")],
    beneficiary: Annotated[str, Field(min_length=1, max_length=200)],
) -> dict[str, object]:
    _record("send_payment", {"amount_minor": amount_minor, "currency": currency, "beneficiary": beneficiary})
    return {"payment_id": f"pay_{int(time.time() * 1000)}", "status": "sent"}


@server.tool(description="Send an e-mail.")
def send_email(
    to: Annotated[str, Field(min_length=3, max_length=320)],
    subject: Annotated[str, Field(max_length=200)],
    body: Annotated[str, Field(max_length=10_000)] = "",
) -> str:
    _record("send_email", {"to": to, "subject": subject, "body": body})
    return f"sent to {to}"


@server.tool(description="Delete a file from the shared drive.")
def delete_file(path: Annotated[str, Field(min_length=1, max_length=500)]) -> str:
    _record("delete_file", {"path": path})
    return f"deleted {path}"


@server.tool(description="Test hook: a payment that takes `seconds` to answer.")
def slow_payment(seconds: Annotated[int, Field(ge=0, le=60)]) -> str:
    time.sleep(seconds)
    _record("slow_payment", {"seconds": seconds})
    return "slow payment sent"


@server.tool(description="Test hook: a tool that always fails.")
def broken_tool(reason: str = "boom") -> str:
    _record("broken_tool", {"reason": reason})
    raise ToolError(f"provider failure: {reason}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outbox", type=Path, default=Path("."))
    parser.add_argument("--http", metavar="HOST:PORT", help="serve Streamable HTTP instead of stdio")
    args = parser.parse_args()
    OUTBOX[0] = args.outbox
    if args.http:
        host, _, port = args.http.rpartition(":")
        server.run("streamable-http", host=host, port=int(port))
    else:
        server.run("stdio")


if __name__ == "__main__":
    main()
