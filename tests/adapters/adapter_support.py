"""Shared by the adapter tests: a real Warrantor server (one per test module, started by each
module's ``warrantor`` fixture), a console approver deciding over HTTP, and what the server
recorded.

Each framework's real package is used with a scripted model; nothing reaches the network.
The frameworks are the ``openai-agents``, ``langgraph`` and ``pydantic-ai`` extras (``make test``
installs them); a test module whose framework is missing skips, except in CI, where it fails.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from support import bearer, decide_in_console, server_process
from warrantor.adapters import Gate
from warrantor.client import AsyncClient

BIG = 7_500_000       # 75,000.00 EUR: over 50,000 EUR, held for finance-leads
HUGE = 150_000_000    # 1,500,000.00 EUR: over 1,000,000 EUR, denied by policy
SMALL = 120_000       # 1,200.00 EUR: allowed


def require(module: str, extra: str) -> None:
    """Skip the calling test module when ``module`` is missing (fail in CI)."""
    try:
        __import__(module)
    except ImportError:  # pragma: no cover - the extras are part of make test
        if os.environ.get("CI"):
            raise
        pytest.skip(f"the {extra} extra is not installed: pip install -e '.[{extra}]'", allow_module_level=True)


@dataclass
class Warrantor:
    url: str
    demo: dict[str, Any]

    def client(self) -> AsyncClient:
        return AsyncClient(self.url, self.demo["agent_key"])

    def gate(self, client: AsyncClient) -> Gate:
        return Gate(client, console_url=self.url)

    def action(self, action_id: str) -> dict[str, Any]:
        r = httpx.get(f"{self.url}/v1/actions/{action_id}", headers=bearer(self.demo["admin_key"]), timeout=10)
        r.raise_for_status()
        body: dict[str, Any] = r.json()
        return body

    def count(self) -> int:
        """How many actions the tenant has (every authorize creates one)."""
        r = httpx.get(f"{self.url}/v1/actions?per_page=1", headers=bearer(self.demo["admin_key"]), timeout=10)
        r.raise_for_status()
        return int(r.json()["pagination"]["total"])

    def decide_in_console(self, action_id: str, decision: str = "approve") -> None:
        """An approver logs in to the console and approves or denies (HTTP forms, as the browser would)."""
        decide_in_console(self.url, self.demo["console_email"], self.demo["console_password"], action_id, decision)


@contextmanager
def warrantor_server(data_dir: Path) -> Iterator[Warrantor]:
    with server_process(data_dir) as server:
        yield Warrantor(server.url, json.loads((data_dir / "demo.json").read_text()))


def wire(amount_minor: int, beneficiary: str = "ACME GmbH") -> dict[str, Any]:
    return {"amount_minor": amount_minor, "currency": "EUR", "beneficiary": beneficiary}
