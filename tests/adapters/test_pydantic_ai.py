"""The Pydantic AI adapter with the real ``pydantic_ai`` package (a ``FunctionModel`` plays the
model) and a real Warrantor server: allowed, denied by policy, held then approved or denied in
the console, and hosts that resume with approvals Warrantor never gave, another action's id,
or arguments changed after the approval."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from adapter_support import BIG, HUGE, SMALL, Warrantor, require, warrantor_server, wire

require("pydantic_ai", "pydantic-ai")

from pydantic_ai import Agent  # noqa: E402
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart, ToolReturnPart  # noqa: E402
from pydantic_ai.models.function import AgentInfo, FunctionModel  # noqa: E402
from pydantic_ai.tools import DeferredToolRequests, DeferredToolResults, ToolApproved, ToolDenied  # noqa: E402
from pydantic_ai.toolsets import FunctionToolset  # noqa: E402

from warrantor.adapters import ToolAction, result_digest  # noqa: E402
from warrantor.adapters.pydantic_ai import WarrantorToolset  # noqa: E402


@pytest.fixture(scope="module")
def wr(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Warrantor]:
    with warrantor_server(tmp_path_factory.mktemp("warrantor")) as server:
        yield server


PAYMENT = ToolAction("wire_transfer", payload=lambda a: {**a, "currency": "EUR"},
                     details=lambda a: f"Pay {a['beneficiary']}")


class Bench:
    """An agent whose scripted model calls send_payment once, then answers with what it saw."""

    def __init__(self, wr: Warrantor, amount_minor: int) -> None:
        self.wr, self.amount = wr, amount_minor
        self.sent: list[tuple[int, str]] = []
        self.seen: list[Any] = []

    async def send_payment(self, amount_minor: int, beneficiary: str) -> dict[str, Any]:
        """Send a EUR wire transfer of amount_minor cents to beneficiary."""
        self.sent.append((amount_minor, beneficiary))
        return {"transfer_id": f"tr_{len(self.sent)}"}

    def model(self, messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        returns = [p for m in messages for p in getattr(m, "parts", ()) if p.part_kind in ("tool-return",
                                                                                             "retry-prompt")]
        if not returns:
            return ModelResponse(parts=[ToolCallPart("send_payment", {"amount_minor": self.amount,
                                                                      "beneficiary": "ACME GmbH"}, "call_pay")])
        self.seen.append(returns[-1])
        return ModelResponse(parts=[TextPart("done")])

    def agent(self, client: Any) -> tuple[Agent[None, Any], WarrantorToolset]:
        toolset = WarrantorToolset(FunctionToolset([self.send_payment]), gate=self.wr.gate(client),
                                   actions={"send_payment": PAYMENT})
        agent = Agent(FunctionModel(self.model), toolsets=[toolset], output_type=[str, DeferredToolRequests])
        return agent, toolset


def test_allowed_call_runs_once_and_is_notarized(wr: Warrantor) -> None:
    bench = Bench(wr, SMALL)
    before = wr.count()

    async def go() -> Any:
        async with wr.client() as client:
            agent, toolset = bench.agent(client)
            result = await agent.run("Pay ACME")
            return result, toolset.report("call_pay")

    result, report = asyncio.run(go())
    assert bench.sent == [(SMALL, "ACME GmbH")] and result.output == "done"
    assert report is not None and report.status == "notarized" and report.receipt_id
    assert report.result_sha256 == result_digest({"transfer_id": "tr_1"})
    [part] = [p for m in result.all_messages() for p in m.parts if isinstance(p, ToolReturnPart)]
    assert part.metadata == {"warrantor": report.as_dict()}          # in the history, not sent to the model
    assert part.content == {"transfer_id": "tr_1"}
    action = wr.action(report.action_id)
    assert action["status"] == "notarized" and action["intent"]["payload"] == wire(SMALL)
    assert wr.count() == before + 1


def test_denied_call_never_runs_and_the_model_sees_the_denial(wr: Warrantor) -> None:
    bench = Bench(wr, HUGE)

    async def go() -> Any:
        async with wr.client() as client:
            agent, _ = bench.agent(client)
            return await agent.run("Pay ACME")

    result = asyncio.run(go())
    assert bench.sent == [] and result.output == "done"
    [seen] = bench.seen
    text = seen.model_response_str() if hasattr(seen, "model_response_str") else str(seen.content)
    assert "POLICY_DENIED" in text and "1,000,000 EUR" in text and "rcpt_" in text


def held(bench: Bench, decide: Any, resume: Any = None, timeout: float = 5) -> tuple[dict[str, Any], Any, Any]:
    """Run to the deferred call, ``decide(action_id)``, then resume with ``settle``'s results
    (or with ``resume(requests)``'s, a host's own)."""
    wr = bench.wr

    async def go() -> Any:
        async with wr.client() as client:
            agent, toolset = bench.agent(client)
            first = await agent.run("Pay ACME")
            requests = first.output
            assert isinstance(requests, DeferredToolRequests) and bench.sent == []
            [call] = requests.approvals
            view = requests.metadata[call.tool_call_id]["warrantor"]
            assert view["verdict"] == "held" and view["console_url"] == f"{wr.url}/console/actions/{view['action_id']}"
            await asyncio.to_thread(decide, view["action_id"])
            results = resume(requests, view) if resume else await toolset.settle(requests, timeout=timeout)
            second = await agent.run(message_history=first.all_messages(), deferred_tool_results=results)
            return view, second, toolset.report("call_pay")

    return asyncio.run(go())


def test_held_call_runs_only_after_an_approver_approves_it(wr: Warrantor) -> None:
    bench = Bench(wr, BIG)
    before = wr.count()
    view, result, report = held(bench, wr.decide_in_console)
    assert bench.sent == [(BIG, "ACME GmbH")] and result.output == "done"
    assert report is not None and report.action_id == view["action_id"] and report.receipt_id
    assert wr.action(view["action_id"])["status"] == "notarized"
    assert wr.count() == before + 1


def test_held_call_denied_by_an_approver_never_runs(wr: Warrantor) -> None:
    bench = Bench(wr, BIG)
    view, result, report = held(bench, lambda a: wr.decide_in_console(a, "deny"))
    assert bench.sent == [] and report is None and result.output == "done"
    [seen] = bench.seen
    assert "DENIED_BY_HUMAN" in str(seen.content) and view["action_id"] in str(seen.content)


def test_a_host_approval_without_warrantor_defers_the_call_again(wr: Warrantor) -> None:
    bench = Bench(wr, BIG)
    view, result, report = held(bench, lambda a: None,
                                resume=lambda requests, view: requests.build_results(approve_all=True))
    assert bench.sent == [] and report is None
    assert isinstance(result.output, DeferredToolRequests)          # still deferred, same action
    [call] = result.output.approvals
    assert result.output.metadata[call.tool_call_id]["warrantor"]["action_id"] == view["action_id"]
    assert wr.action(view["action_id"])["status"] == "pending_approval"


def test_a_call_still_held_when_settled_is_deferred_again(wr: Warrantor) -> None:
    bench = Bench(wr, BIG)
    view, result, report = held(bench, lambda a: None, timeout=0.2)
    assert bench.sent == [] and report is None
    assert isinstance(result.output, DeferredToolRequests)
    assert result.output.metadata["call_pay"]["warrantor"]["action_id"] == view["action_id"]


def test_approved_arguments_cannot_be_overridden_on_resume(wr: Warrantor) -> None:
    bench = Bench(wr, BIG)

    def resume(requests: DeferredToolRequests, view: dict[str, Any]) -> DeferredToolResults:
        return DeferredToolResults(
            approvals={"call_pay": ToolApproved(override_args={"amount_minor": 99_000_000,
                                                               "beneficiary": "Mallory Ltd"})},
            metadata={"call_pay": {"warrantor": view}})

    view, _result, report = held(bench, wr.decide_in_console, resume=resume)
    assert bench.sent == [] and report is None
    [seen] = bench.seen
    assert "not this call's action" in str(seen.content)
    assert wr.action(view["action_id"])["status"] == "approved"     # approved for 75,000 EUR, never used


def test_a_new_process_resumes_with_metadata_and_warrantor_still_decides(wr: Warrantor) -> None:
    """After a restart the toolset knows no holds: the action id comes from the results'
    metadata, and a forged one (another approved action's) is refused for its other payload."""
    other = Bench(wr, BIG + 100)
    other_view, _, _ = held(other, wr.decide_in_console,
                            resume=lambda r, v: DeferredToolResults(approvals={"call_pay": ToolDenied("later")}))
    bench = Bench(wr, BIG)

    async def go() -> Any:
        async with wr.client() as client:
            agent, _ = bench.agent(client)
            first = await agent.run("Pay ACME")
            view = first.output.metadata["call_pay"]["warrantor"]
            await asyncio.to_thread(wr.decide_in_console, view["action_id"])
            restarted, _ = bench.agent(client)         # a fresh toolset: no memory of the hold
            forged = await restarted.run(
                message_history=first.all_messages(),
                deferred_tool_results=DeferredToolResults(approvals={"call_pay": True},
                                                          metadata={"call_pay": {"warrantor": other_view}}))
            assert bench.sent == []
            honest = await restarted.run(
                message_history=first.all_messages(),
                deferred_tool_results=DeferredToolResults(approvals={"call_pay": True},
                                                          metadata={"call_pay": {"warrantor": view}}))
            return forged, honest

    _forged, honest = asyncio.run(go())
    assert "not this call's action" in str(bench.seen[0].content)
    assert bench.sent == [(BIG, "ACME GmbH")] and honest.output == "done"
    assert wr.action(other_view["action_id"])["status"] == "approved"
