"""``Authorizer.authorize``, the blocking entry point beside the server's ``authorize_async``:
both run ``Authorizer._authorize``'s one set of steps, this one to its end without an event
loop. It authorizes with a warrant, replays the first answer for the same idempotency key,
and records a write guard's halt (a budget's ``GuardStop`` rolls the first write back and a
second write records the denial), as the HTTP API then shows them."""

from __future__ import annotations

from test_budgets import activate, budget

from support import WIRE, Env
from warrantor.service.authorization.intent import Intent


def _intent(invoice: int) -> Intent:
    return Intent(action_type="wire_transfer", details=f"Pay invoice {invoice}", payload=dict(WIRE),
                  instruction_hash="sha256:" + "ab" * 32)


def test_blocking_authorize_decides_replays_and_halts(env: Env) -> None:
    activate(env, {"budgets": [budget("one-a-day", "count", "tenant", "calendar_day", 1)]})
    authorizer = env.services.authorizer
    agent = env.services.tenancy.authenticate(env.keys["agent"])

    first = authorizer.authorize(agent, _intent(1), "invoice-1")
    assert first.status_code == 201 and first.body["status"] == "authorized", first.body
    assert first.body["warrant"]
    assert authorizer.authorize(agent, _intent(1), "invoice-1") == first  # replayed, not a second action

    halted = authorizer.authorize(agent, _intent(2), None)
    assert halted.status_code == 403 and halted.body["code"] == "CUMULATIVE_BUDGET_EXCEEDED", halted.body
    shown = env.client.get(f"/v1/actions/{first.body['action_id']}", headers=env.h("admin")).json()
    assert shown["status"] == "authorized"
    shown = env.client.get(f"/v1/actions/{halted.body['details']['action_id']}", headers=env.h("admin")).json()
    assert shown["status"] == "denied" and shown["decision"]["stage"] == "budget"
    listed = env.client.get("/v1/actions", headers=env.h("admin")).json()["pagination"]["total"]
    assert listed == 2
