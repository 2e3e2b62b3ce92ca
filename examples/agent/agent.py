"""An invoice-paying agent under Warrantor: a Pydantic AI agent whose ``send_payment`` tool goes
through ``warrantor.adapters.pydantic_ai.WarrantorToolset``, and a summary e-mail sent by a
function under the SDK's ``@guard``. The tools call a bank and a mail provider over HTTP;
this script starts fake ones on 127.0.0.1 (``providers.py``).

    export WARRANTOR_API_KEY=wrt_...          # the demo tenant's agent key (demo.json)
    python examples/agent/agent.py --warrantor-url http://127.0.0.1:8080 \\
        --invoice "ACME GmbH=1200.00=INV-1" --invoice "Globex AG=75000.00=INV-2" \\
        --notify finance@example.com --outbox /tmp/outbox

With the demo policy, INV-1 is paid at once, INV-2 (over 50,000 EUR) waits for an approver
(the script prints the console link and waits up to ``--approval-timeout`` seconds), and an
invoice over 1,000,000 EUR is refused; the model sees each answer. The script prints a JSON
summary: every payment with its Warrantor action and receipt, the e-mail, anything still held.

The model is a scripted planner (one ``send_payment`` call per invoice line of the prompt), so
the example runs without an LLM; ``--model`` takes any Pydantic AI model name instead (for
example ``openai:gpt-4o``, which needs ``pydantic-ai-slim[openai]`` and an API key; the tests
do not run that path).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import tools
from providers import Provider
from pydantic_ai import Agent
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart, ToolReturnPart
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.tools import DeferredToolRequests
from pydantic_ai.toolsets import FunctionToolset

from warrantor.adapters import Gate, ToolAction
from warrantor.adapters.pydantic_ai import WarrantorToolset
from warrantor.client import ApprovalTimeoutError, AsyncClient
from warrantor.errors import ActionDeniedError

LINE = re.compile(r"^- (?P<ref>[^:]+): pay (?P<minor>\d+) cents to (?P<who>.+)$", re.M)

PAYMENT = ToolAction(
    "wire_transfer",
    payload=lambda a: {"amount_minor": a["amount_minor"], "currency": "EUR", "beneficiary": a["beneficiary"],
                       "reference": a["reference"]},
    details=lambda a: f"Pay invoice {a['reference']} to {a['beneficiary']}",
    fields={"labels": ["invoice-run"]},
)


def planner(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    """The scripted model: pay every invoice line of the prompt, then sum up what happened."""
    returns = [p for m in messages for p in getattr(m, "parts", ()) if isinstance(p, ToolReturnPart)]
    if not returns:
        prompt = "\n".join(str(p.content) for m in messages for p in getattr(m, "parts", ())
                           if p.part_kind == "user-prompt")
        return ModelResponse(parts=[
            ToolCallPart("send_payment", {"amount_minor": int(m["minor"]), "beneficiary": m["who"],
                                          "reference": m["ref"]}, f"pay_{m['ref']}")
            for m in LINE.finditer(prompt)])
    return ModelResponse(parts=[TextPart("\n".join(f"{p.tool_call_id}: {p.model_response_str()}" for p in returns))])


def invoice(text: str) -> tuple[str, int, str]:
    """``"ACME GmbH=1200.00=INV-1"`` -> (beneficiary, amount in cents, reference)."""
    try:
        who, amount, ref = text.split("=")
        minor = int(Decimal(amount) * 100)
    except (ValueError, InvalidOperation) as exc:
        raise argparse.ArgumentTypeError(f"expected BENEFICIARY=AMOUNT=REFERENCE, got {text!r}") from exc
    return who.strip(), minor, ref.strip()


async def pay_invoices(agent: Agent[None, Any], toolset: WarrantorToolset, prompt: str,
                       approval_timeout: float) -> tuple[list[ModelMessage], list[dict[str, Any]]]:
    """Run the agent; while Warrantor holds calls, wait for the approvers and resume."""
    result = await agent.run(prompt)
    held_before: set[str] = set()
    while isinstance(result.output, DeferredToolRequests):
        held = {str(result.output.metadata[c.tool_call_id]["warrantor"]["action_id"]): c.tool_call_id
                for c in result.output.approvals if "warrantor" in result.output.metadata.get(c.tool_call_id, {})}
        if set(held) == held_before:      # nobody decided within the timeout: stop, report them
            return result.all_messages(), [result.output.metadata[c]["warrantor"] for c in held.values()]
        for action_id, call_id in held.items():
            link = result.output.metadata[call_id]["warrantor"]["console_url"]
            print(f"{call_id} is held by Warrantor ({action_id}): approve or deny at {link}", file=sys.stderr,
                  flush=True)
        held_before = set(held)
        decided = await toolset.settle(result.output, timeout=approval_timeout)
        result = await agent.run(message_history=result.all_messages(), deferred_tool_results=decided)
    return result.all_messages(), []


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--warrantor-url", required=True)
    parser.add_argument("--console-url", help="where approvers open held actions (default: --warrantor-url)")
    parser.add_argument("--api-key-env", default="WARRANTOR_API_KEY")
    parser.add_argument("--invoice", type=invoice, action="append", required=True,
                        help="BENEFICIARY=AMOUNT_EUR=REFERENCE, repeatable")
    parser.add_argument("--notify", required=True, help="who gets the summary e-mail")
    parser.add_argument("--approval-timeout", type=float, default=300.0)
    parser.add_argument("--outbox", type=Path, help="the fake providers write what they accept here")
    parser.add_argument("--model", help="a Pydantic AI model name instead of the scripted planner")
    args = parser.parse_args(argv)

    bank = Provider.start("bank", "/transfers", "tr", args.outbox)
    mail = Provider.start("mail", "/messages", "msg", args.outbox)
    tools.BANK_URL[0], tools.MAIL_URL[0] = bank.url, mail.url
    prompt = "Pay these invoices:\n" + "\n".join(f"- {ref}: pay {minor} cents to {who}"
                                                 for who, minor, ref in args.invoice)
    try:
        async with AsyncClient(args.warrantor_url, os.environ[args.api_key_env]) as wr:
            toolset = WarrantorToolset(FunctionToolset([tools.send_payment]),
                                       gate=Gate(wr, console_url=args.console_url or args.warrantor_url),
                                       actions={"send_payment": PAYMENT})
            agent = Agent(args.model or FunctionModel(planner), toolsets=[toolset],
                          output_type=[str, DeferredToolRequests])
            messages, pending = await pay_invoices(agent, toolset, prompt, args.approval_timeout)
            payments = [{"tool_call_id": p.tool_call_id, "result": p.model_response_str(),
                         "warrantor": (p.metadata or {}).get("warrantor") if isinstance(p.metadata, dict) else None}
                        for m in messages for p in getattr(m, "parts", ())
                        if isinstance(p, ToolReturnPart) and p.tool_name == "send_payment"]

            @wr.guard("send_email", payload=lambda to, subject, body: {"to": to, "subject": subject},
                      details="Invoice run summary", approval_timeout=args.approval_timeout)
            async def notify(to: str, subject: str, body: str) -> str:
                return await tools.send_email(to, subject, body)

            lines = [f"{p['tool_call_id']}: {p['result']}" for p in payments]
            try:
                email: dict[str, Any] = {"message_id": await notify(args.notify, "Invoice run", "\n".join(lines))}
            except (ActionDeniedError, ApprovalTimeoutError) as exc:
                email = {"refused": exc.code, "details": exc.details}
    finally:
        bank.stop()
        mail.stop()
    print(json.dumps({"payments": payments, "pending": pending, "email": email}, indent=2, default=str))
    return 3 if pending else 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
