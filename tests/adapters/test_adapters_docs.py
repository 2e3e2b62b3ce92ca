"""The three examples in docs/adapters.md, run as written against a real Warrantor server:
allowed, denied by policy, and held until an approver approves in the console."""

from __future__ import annotations

import asyncio
import importlib.util
import re
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from adapter_support import BIG, HUGE, SMALL, Warrantor, require, warrantor_server

from support import bearer

DOC = Path(__file__).resolve().parents[2] / "docs" / "adapters.md"
SECTIONS = {"OpenAI Agents SDK": ("agents", "openai-agents"), "LangGraph": ("langgraph", "langgraph"),
            "Pydantic AI": ("pydantic_ai", "pydantic-ai")}


@pytest.fixture(scope="module")
def wr(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Warrantor]:
    with warrantor_server(tmp_path_factory.mktemp("warrantor")) as server:
        yield server


def example(section: str, tmp_path: Path) -> ModuleType:
    """The first python block under ``## <section>``, imported as a module."""
    text = DOC.read_text()
    body = text.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    code = re.search(r"```python\n(.*?)```", body, re.S)
    assert code, f"no python example under {section}"
    stem = "doc_" + re.sub(r"\W", "_", section).lower()
    path = tmp_path / f"{stem}.py"
    path.write_text(code.group(1))
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)
    return module


def newest(wr: Warrantor) -> dict[str, Any]:
    r = httpx.get(f"{wr.url}/v1/actions?per_page=1", headers=bearer(wr.demo["admin_key"]), timeout=10)
    r.raise_for_status()
    return dict(r.json()["data"][0])


@pytest.mark.parametrize("section", list(SECTIONS))
def test_the_documented_example_runs_as_written(section: str, wr: Warrantor, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    require(*SECTIONS[section])
    monkeypatch.setenv("WARRANTOR_URL", wr.url)
    monkeypatch.setenv("WARRANTOR_API_KEY", wr.demo["agent_key"])
    doc = example(section, tmp_path)

    assert asyncio.run(doc.main(SMALL)) == "done"
    allowed = newest(wr)
    assert allowed["status"] == "notarized" and allowed["action_type"] == "wire_transfer"

    assert asyncio.run(doc.main(HUGE)) == "done"
    assert newest(wr)["status"] == "denied"

    outcome: dict[str, Any] = {}
    worker = threading.Thread(target=lambda: outcome.update(out=asyncio.run(doc.main(BIG))))
    worker.start()
    deadline = time.monotonic() + 30
    while (held := newest(wr))["status"] != "pending_approval" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert held["status"] == "pending_approval" and held["action_id"] != allowed["action_id"]
    wr.decide_in_console(held["action_id"])
    worker.join(timeout=60)
    assert outcome.get("out") == "done"
    assert wr.action(held["action_id"])["status"] == "notarized"
    assert f"Held by Warrantor, decide at {wr.url}/console/actions/{held['action_id']}" in capsys.readouterr().out
