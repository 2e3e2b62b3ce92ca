"""Held by the gateway, approved by a human in a real browser (Debian's Chromium)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest
from gateway_support import Deployment, outbox_calls, write_config
from test_mcp_gateway import BIG, client, evidence, text, verify_receipt

from e2e.chromium import launch, screenshot

pytestmark = pytest.mark.browser


def approve_in_browser(deployment: Deployment, url: str) -> None:
    with launch() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(url)
        assert "/console/login" in page.url  # the link alone grants nothing
        page.fill("input[name=email]", deployment.demo["console_email"])
        page.fill("input[name=password]", deployment.demo["console_password"])
        page.click("button[type=submit]")
        page.wait_for_url(url)
        body = page.inner_text("main").lower()  # inner_text applies the page's text-transform
        assert "waiting for approval" in body and "browser gmbh" in body, body
        screenshot(page, "mcp-01-held-tool-call")
        page.locator("[data-testid=approve]").first.click()
        page.wait_for_selector(".flash-ok")
        screenshot(page, "mcp-02-approved")


def test_held_tool_call_approved_in_a_browser_then_runs(deployment: Deployment, tmp_path: Path) -> None:
    outbox = tmp_path / "outbox"
    config = write_config(tmp_path / "gateway.yaml", deployment, outbox, wait=0.5)
    args = {**BIG, "beneficiary": "Browser GmbH"}

    async def go() -> tuple[Any, Any]:
        async with client(config, deployment) as c:
            pending = await c.call_tool("tools__send_payment", args)
            url = evidence(pending)["approval_url"]
            await anyio.to_thread.run_sync(approve_in_browser, deployment, url)
            return pending, await c.call_tool("tools__send_payment", args)

    pending, done = anyio.run(go)
    assert pending.is_error and evidence(pending)["status"] == "pending_approval"
    assert not done.is_error, text(done)
    assert evidence(done)["action_id"] == evidence(pending)["action_id"]
    assert [c["arguments"] for c in outbox_calls(outbox, "send_payment")] == [args]
    verified = verify_receipt(deployment, evidence(done)["receipt_id"], tmp_path)
    assert verified.returncode == 0, verified.stdout + verified.stderr
