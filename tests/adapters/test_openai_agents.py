"""The OpenAI Agents SDK adapter with the real ``agents`` package, its ``ScriptedModel`` and a
real Warrantor server: allowed, denied by policy, held then approved or denied in the console,
and the host approving a held call that Warrantor has not approved."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from adapter_support import BIG, HUGE, SMALL, Warrantor, require, warrantor_server, wire

require("agents", "openai-agents")

from agents import Agent, Runner, set_tracing_disabled  # noqa: E402
from agents.testing import ScriptedModel, assistant_message, function_call  # noqa: E402

from warrantor.adapters import ToolAction  # noqa: E402
from warrantor.adapters.openai_agents import WarrantorTools  # noqa: E402

set_tracing_disabled(True)


@pytest.fixture(scope="module")
def wr(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Warrantor]:
    with warrantor_server(tmp_path_factory.mktemp("warrantor")) as server:
        yield server


class Bank:
    """The tool's side effect: every transfer it made."""

    def __init__(self) -> None:
        self.sent: list[tuple[int, str]] = []

    async def send_payment(self, amount_minor: int, beneficiary: str) -> dict[str, Any]:
        """Send a EUR wire transfer.

        Args:
            amount_minor: the amount in euro cents.
            beneficiary: who receives it.
        """
        self.sent.append((amount_minor, beneficiary))
        return {"transfer_id": f"tr_{len(self.sent)}", "amount_minor": amount_minor}


PAYMENT = ToolAction("wire_transfer", payload=lambda a: {**a, "currency": "EUR"},
                     details=lambda a: f"Pay {a['beneficiary']}")


def scripted(amount_minor: int) -> ScriptedModel:
    return ScriptedModel([
        [function_call("send_payment", {"amount_minor": amount_minor, "beneficiary": "ACME GmbH"}, call_id="call_pay")],
        [assistant_message("done")],
    ])


def tool_output(model: ScriptedModel) -> str:
    """What the model was shown as the tool's result, on its second call."""
    items = model.calls[1].input
    outputs = [i for i in items if isinstance(i, dict) and i.get("type") == "function_call_output"]
    assert len(outputs) == 1, items
    return str(outputs[0]["output"])


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_allowed_call_runs_once_and_is_notarized_with_its_result_digest(wr: Warrantor) -> None:
    bank, model = Bank(), scripted(SMALL)
    before = wr.count()

    async def go() -> Any:
        async with wr.client() as client:
            tools = WarrantorTools(wr.gate(client))
            agent = Agent(name="payments", model=model, tools=[tools.tool(bank.send_payment, PAYMENT)])
            result = await Runner.run(agent, "Pay ACME 1,200 EUR")
            return result, tools.report("call_pay")

    result, report = run(go())
    assert bank.sent == [(SMALL, "ACME GmbH")]
    assert result.interruptions == [] and result.final_output == "done"
    assert report is not None and report.status == "notarized" and report.receipt_id
    from warrantor.adapters import result_digest
    assert report.result_sha256 == result_digest({"transfer_id": "tr_1", "amount_minor": SMALL})
    # The output guardrail's result carries the receipt, through the SDK's own record.
    infos = [r.output.output_info for r in result.tool_output_guardrail_results]
    assert infos == [{"warrantor": report.as_dict()}]
    action = wr.action(report.action_id)
    assert action["status"] == "notarized" and action["intent"]["payload"] == wire(SMALL)
    assert action["receipt"]["receipt_id"] == report.receipt_id
    assert "transfer_id" in tool_output(model)
    assert wr.count() == before + 1


def test_denied_call_never_runs_and_the_model_sees_the_denial(wr: Warrantor) -> None:
    bank, model = Bank(), scripted(HUGE)

    async def go() -> Any:
        async with wr.client() as client:
            tools = WarrantorTools(wr.gate(client))
            agent = Agent(name="payments", model=model, tools=[tools.tool(bank.send_payment, PAYMENT)])
            return await Runner.run(agent, "Pay ACME 1.5M EUR")

    result = run(go())
    assert bank.sent == []
    assert result.interruptions == []
    shown = tool_output(model)
    assert "POLICY_DENIED" in shown and "1,000,000 EUR" in shown and "rcpt_" in shown
    rejected = [r for r in result.tool_input_guardrail_results if r.output.behavior["type"] == "reject_content"]
    assert len(rejected) == 1 and rejected[0].output.output_info["code"] == "POLICY_DENIED"


def held_run(wr: Warrantor, bank: Bank, model: ScriptedModel, between: Any) -> tuple[Any, Any, Any, Any]:
    """Run until the approval interruption, call ``between(action_id)``, settle, resume."""

    async def go() -> Any:
        async with wr.client() as client:
            tools = WarrantorTools(wr.gate(client))
            agent = Agent(name="payments", model=model, tools=[tools.tool(bank.send_payment, PAYMENT)])
            first = await Runner.run(agent, "Pay ACME 75,000 EUR")
            assert len(first.interruptions) == 1 and bank.sent == []
            held = tools.decision(first.interruptions[0])
            assert held is not None and held.held and held.console_url == f"{wr.url}/console/actions/{held.action_id}"
            await asyncio.to_thread(between, held.action_id)
            state = first.to_state()
            settled = await tools.settle(state, timeout=5)
            second = await Runner.run(agent, state)
            return held, settled, second, tools.report("call_pay")

    return run(go())  # type: ignore[no-any-return]


def test_held_call_runs_only_after_an_approver_approves_it(wr: Warrantor) -> None:
    bank, model = Bank(), scripted(BIG)
    before = wr.count()
    held, settled, result, report = held_run(wr, bank, model, wr.decide_in_console)
    assert wr.count() == before + 1      # resuming did not authorize again
    assert [d.status for d in settled] == ["approved"]
    assert bank.sent == [(BIG, "ACME GmbH")]
    assert result.final_output == "done"
    assert report is not None and report.action_id == held.action_id and report.receipt_id
    assert wr.action(held.action_id)["status"] == "notarized"


def test_held_call_denied_by_an_approver_never_runs(wr: Warrantor) -> None:
    bank, model = Bank(), scripted(BIG)
    held, settled, _, report = held_run(wr, bank, model, lambda a: wr.decide_in_console(a, "deny"))
    assert [d.status for d in settled] == ["denied_by_human"]
    assert bank.sent == [] and report is None
    shown = tool_output(model)
    assert "DENIED_BY_HUMAN" in shown and held.action_id in shown
    assert wr.action(held.action_id)["status"] == "denied_by_human"


def test_the_host_approving_in_the_sdk_does_not_run_a_call_warrantor_still_holds(wr: Warrantor) -> None:
    """The attacker is the host (or whoever edits a RunState): RunState.approve without Warrantor."""
    bank, model = Bank(), scripted(BIG)

    async def go() -> Any:
        async with wr.client() as client:
            tools = WarrantorTools(wr.gate(client))
            agent = Agent(name="payments", model=model, tools=[tools.tool(bank.send_payment, PAYMENT)])
            first = await Runner.run(agent, "Pay ACME 75,000 EUR")
            state = first.to_state()
            state.approve(first.interruptions[0])
            second = await Runner.run(agent, state)
            return tools.decision(first.interruptions[0]), second

    held, _result = run(go())
    assert bank.sent == []
    assert "holding this call" in tool_output(model)
    assert wr.action(held.action_id)["status"] == "pending_approval"


def test_arguments_edited_in_a_saved_run_state_are_not_run(wr: Warrantor) -> None:
    """Approval was for 75,000 EUR; the serialized state is edited to pay 990,000 EUR instead."""
    bank, model = Bank(), scripted(BIG)

    async def go() -> Any:
        async with wr.client() as client:
            tools = WarrantorTools(wr.gate(client))
            agent = Agent(name="payments", model=model, tools=[tools.tool(bank.send_payment, PAYMENT)])
            first = await Runner.run(agent, "Pay ACME 75,000 EUR")
            held = tools.decision(first.interruptions[0])
            assert held is not None and held.action_id
            await asyncio.to_thread(wr.decide_in_console, held.action_id)
            saved = first.to_state().to_string()
            edited = saved.replace(f'\\"amount_minor\\":{BIG}', '\\"amount_minor\\":99000000')
            assert edited != saved
            # The SDK fingerprints each call's arguments; drop those records too.
            doc = json.loads(edited)
            drop_tool_invocations(doc)
            from agents import RunState
            state = await RunState.from_json(agent, doc)
            await tools.settle(state, timeout=5)
            await Runner.run(agent, state)
            return held

    held = run(go())
    assert bank.sent == []
    assert wr.action(held.action_id)["status"] == "approved"   # approved, never used
    assert "arguments changed" in tool_output(model)


def drop_tool_invocations(node: Any) -> None:
    if isinstance(node, dict):
        node.pop("tool_invocations", None)
        for value in node.values():
            drop_tool_invocations(value)
    elif isinstance(node, list):
        for value in node:
            drop_tool_invocations(value)


def test_a_failing_tool_is_notarized_failed_and_the_model_sees_an_error(wr: Warrantor) -> None:
    model = scripted(SMALL)

    async def send_payment(amount_minor: int, beneficiary: str) -> str:
        """Send a EUR wire transfer."""
        raise ConnectionError("bank down: secret-token-123")

    async def go() -> Any:
        async with wr.client() as client:
            tools = WarrantorTools(wr.gate(client))
            agent = Agent(name="payments", model=model, tools=[tools.tool(send_payment, PAYMENT)])
            await Runner.run(agent, "Pay ACME")
            return tools.report("call_pay")

    report = run(go())
    assert report is not None and report.outcome == "failed" and report.status == "failed" and report.receipt_id
    shown = tool_output(model)
    assert "ConnectionError" in shown and "secret-token" not in shown
    assert json.dumps(wr.action(report.action_id)).count("secret-token") == 0


def test_warrantor_unreachable_refuses_the_call(tmp_path: Path) -> None:
    from warrantor.adapters import Gate
    from warrantor.client import AsyncClient

    bank, model = Bank(), scripted(SMALL)

    async def go() -> Any:
        async with AsyncClient("http://127.0.0.1:9", "wrt_nobody", retries=0, timeout=2) as client:
            tools = WarrantorTools(Gate(client, console_url="http://127.0.0.1:9"))
            agent = Agent(name="payments", model=model, tools=[tools.tool(bank.send_payment, PAYMENT)])
            return await Runner.run(agent, "Pay ACME")

    run(go())
    assert bank.sent == []
    assert "could not be reached" in tool_output(model)


def test_arguments_that_break_the_tool_schema_are_refused_before_authorizing(wr: Warrantor) -> None:
    bank = Bank()
    model = ScriptedModel([
        [function_call("send_payment", {"amount_minor": "lots", "beneficiary": "ACME GmbH"}, call_id="call_pay")],
        [assistant_message("done")],
    ])
    before = wr.count()

    async def go() -> Any:
        async with wr.client() as client:
            tools = WarrantorTools(wr.gate(client))
            agent = Agent(name="payments", model=model, tools=[tools.tool(bank.send_payment, PAYMENT)])
            return await Runner.run(agent, "Pay ACME")

    run(go())
    assert bank.sent == [] and wr.count() == before
    assert "do not fit send_payment" in tool_output(model)
