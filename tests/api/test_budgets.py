"""Budgets and runs end to end: reserve, halt receipts, release, settle, run halts, isolation."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from support import WIRE, Env, make_env, pg_database
from warrantor.demo import demo_bundle
from warrantor.domain.clock import FixedClock, isoformat

BIG = {"amount_minor": 6_000_000, "currency": "EUR", "beneficiary": "ACME GmbH"}  # needs approval


def activate(env: Env, config: dict[str, Any]) -> str:
    r = env.client.post("/v1/policies", json={**demo_bundle(), "config": config}, headers=env.h("admin"))
    assert r.status_code == 201, r.text
    bundle_hash = r.json()["bundle_hash"]
    r = env.client.post(f"/v1/policies/{bundle_hash}/activate", json={"mode": "enforce"}, headers=env.h("admin"))
    assert r.status_code == 200, r.text
    return bundle_hash


def budget(id_: str, metric: str, scope: str, window: str, limit: int, on_exceed: str = "deny") -> dict[str, Any]:
    return {"id": id_, "metric": metric, "scope": scope, "window": window, "limit": limit, "on_exceed": on_exceed}


def predicate(env: Env, receipt_id: str) -> dict[str, Any]:
    r = env.client.get(f"/v1/receipts/{receipt_id}", headers=env.h("auditor"))
    assert r.status_code == 200, r.text
    statement = json.loads(base64.b64decode(r.json()["envelope"]["payload"]))
    return statement["predicate"]


def usage_of(env: Env, budget_id: str) -> list[dict[str, Any]]:
    data = env.client.get("/v1/budgets", headers=env.h("auditor")).json()["data"]
    return next(b for b in data if b["budget_id"] == budget_id)["usage"]


def new_run(env: Env) -> str:
    r = env.client.post("/v1/runs", json={"metadata": {"task": "pay invoices"}}, headers=env.h("agent"))
    assert r.status_code == 201, r.text
    return r.json()["run_id"]


def test_cumulative_budget_halts_with_signed_receipt(env: Env) -> None:
    activate(env, {"budgets": [budget("daily-count", "count", "tenant", "calendar_day", 2)]})
    assert env.authorize().status_code == 201
    assert env.authorize().status_code == 201
    r = env.authorize()
    assert r.status_code == 403
    problem = r.json()
    assert problem["code"] == "CUMULATIVE_BUDGET_EXCEEDED"
    halt = problem["details"]["halt"]
    assert (halt["budget_id"], halt["limit"], halt["consumed"], halt["requested"]) == ("daily-count", 2, 2, 1)
    assert halt["window"] == "calendar_day" and halt["window_start"].endswith("T00:00:00.000Z")
    p = predicate(env, problem["details"]["receipt_id"])
    assert p["reason_code"] == "CUMULATIVE_BUDGET_EXCEEDED"
    assert p["decision"]["stage"] == "budget" and p["decision"]["halt"]["budget_hash"] == halt["budget_hash"]
    assert usage_of(env, "daily-count") == [{
        "scope_key": "tenant", "window_key": usage_of(env, "daily-count")[0]["window_key"],
        "window_start": halt["window_start"], "consumed": 2, "remaining": 0}]


def test_policy_denied_actions_do_not_reserve(env: Env) -> None:
    activate(env, {"budgets": [budget("c", "count", "tenant", "1d", 1)]})
    huge = {"amount_minor": 200_000_000, "currency": "EUR", "beneficiary": "X"}
    assert env.authorize(payload=huge).json()["code"] == "POLICY_DENIED"
    assert env.authorize().status_code == 201


def test_human_denial_and_failure_release_the_reservation(env: Env) -> None:
    activate(env, {"budgets": [budget("wires", "payload.amount_minor", "tenant", "1d", 6_000_000)]})
    held = env.authorize(payload=BIG).json()
    assert held["status"] == "pending_approval"
    assert usage_of(env, "wires")[0]["consumed"] == 6_000_000
    assert env.authorize().json()["code"] == "CUMULATIVE_BUDGET_EXCEEDED"
    code = env.approval_codes(held["action_id"])[0]
    r = env.client.post(f"/v1/approvals/{code}/confirm", json={"decision": "deny"})
    assert r.status_code == 200, r.text
    assert usage_of(env, "wires")[0]["consumed"] == 0
    ok = env.authorize(payload={**WIRE, "amount_minor": 5_000_000}).json()
    assert ok["status"] == "authorized"
    r = env.client.post(f"/v1/actions/{ok['action_id']}/notarize", json={"outcome": "failed"}, headers=env.h("agent"))
    assert r.status_code == 200, r.text
    assert usage_of(env, "wires")[0]["consumed"] == 0


def test_notarize_settles_actual_tokens_and_run_budget_halts(env: Env) -> None:
    activate(env, {"budgets": [budget("run-tokens", "tokens", "run", "run", 1000)]})
    run_id = new_run(env)
    first = env.authorize(run_id=run_id, usage={"tokens": 600}).json()
    assert first["status"] == "authorized"
    over = env.authorize(run_id=run_id, usage={"tokens": 600})
    assert over.status_code == 403 and over.json()["code"] == "BUDGET_EXHAUSTED"
    assert over.json()["details"]["halt"]["consumed"] == 600
    r = env.client.post(f"/v1/actions/{first['action_id']}/notarize", headers=env.h("agent"),
                        json={"outcome": "completed", "usage": {"tokens": 100}})
    assert r.status_code == 200, r.text
    assert env.authorize(run_id=run_id, usage={"tokens": 600}).status_code == 201
    run = env.client.get(f"/v1/runs/{run_id}", headers=env.h("agent")).json()
    assert run["status"] == "active" and run["consumption"]["tokens"] == 100
    assert len(run["actions"]) == 3


def test_reported_usage_over_a_run_budget_halts_the_run(env: Env) -> None:
    activate(env, {"budgets": [budget("run-tokens", "tokens", "run", "run", 1000),
                               budget("run-cost", "cost_minor", "run", "run", 500)]})
    run_id = new_run(env)
    r = env.client.post(f"/v1/runs/{run_id}/usage", json={"tokens": 900, "cost_minor": 10}, headers=env.h("agent"))
    assert r.json()["status"] == "active"
    r = env.client.post(f"/v1/runs/{run_id}/usage", json={"tokens": 145}, headers=env.h("agent"))
    run = r.json()
    assert run["status"] == "halted" and run["consumption"]["tokens"] == 1045
    assert (run["halt"]["budget_id"], run["halt"]["limit"], run["halt"]["consumed"]) == ("run-tokens", 1000, 1045)
    denied = env.authorize(run_id=run_id)
    assert denied.status_code == 403 and denied.json()["code"] == "BUDGET_EXHAUSTED"
    p = predicate(env, denied.json()["details"]["receipt_id"])
    assert p["reason_code"] == "BUDGET_EXHAUSTED" and p["decision"]["halt"]["run_id"] == run_id
    assert env.authorize().status_code == 201  # other work outside the run goes on


def test_require_approval_on_exceed_and_approval_reserves(env: Env) -> None:
    activate(env, {"budgets": [budget("c", "count", "agent", "calendar_month", 1, "require_approval")]})
    assert env.authorize().status_code == 201
    held = env.authorize().json()
    assert held["status"] == "pending_approval" and held["decision"]["stage"] == "budget"
    code = env.approval_codes(held["action_id"])[0]
    assert env.client.post(f"/v1/approvals/{code}/confirm", json={"decision": "approve"}).status_code == 200
    assert usage_of(env, "c")[0] == {**usage_of(env, "c")[0], "scope_key": "payments-agent", "consumed": 2}


def test_unknown_run_is_404_and_nothing_is_written(env: Env) -> None:
    r = env.authorize(run_id="run_nope")
    assert r.status_code == 404 and r.json()["code"] == "RUN_NOT_FOUND"
    assert env.client.get("/v1/actions", headers=env.h("admin")).json()["pagination"]["total"] == 0
    assert env.client.get("/v1/runs/run_nope", headers=env.h("admin")).status_code == 404
    bad = env.client.post("/v1/runs/x/usage", json={"tokens": -1}, headers=env.h("agent"))
    assert bad.status_code == 422


def test_payload_metric_skips_absent_fields_and_denies_unmeasurable_ones(env: Env) -> None:
    activate(env, {"budgets": [budget("w", "payload.amount_minor", "tenant", "1h", 10**9),
                               budget("s", "payload.subject", "tenant", "1h", 10**9)]})
    r = env.authorize(action_type="refund", payload={"amount_minor": 100, "currency": "EUR", "order_id": "o1"})
    assert r.status_code == 201  # no 'subject': budget s does not apply
    # a string cannot be measured against a limit: fail closed
    r = env.authorize(action_type="send_email", payload={"to": "a@example.com", "subject": "hi"})
    assert r.status_code == 403 and r.json()["code"] == "BUDGET_METRIC_INVALID"
    assert usage_of(env, "w")[0]["consumed"] == 100


def test_runs_and_budgets_are_tenant_isolated(env: Env) -> None:
    activate(env, {"budgets": [budget("c", "count", "tenant", "1d", 5)]})
    run_id = new_run(env)
    env.authorize(run_id=run_id)
    other = env.new_tenant()
    h = {"Authorization": f"Bearer {other['admin']}"}
    assert env.client.get(f"/v1/runs/{run_id}", headers=h).status_code == 404
    assert env.client.post(f"/v1/runs/{run_id}/usage", json={"tokens": 1}, headers=h).status_code == 404
    assert env.client.get("/v1/budgets", headers=h).json()["data"] == []
    r = env.client.post("/v1/actions", headers={"Authorization": f"Bearer {other['agent']}"}, json={
        "action_type": "wire_transfer", "payload": WIRE, "run_id": run_id})
    assert r.status_code == 404
    assert env.client.get("/v1/budgets", headers=env.h("agent")).status_code == 403


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def clock_env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Env, FixedClock]]:
    """The app on a FixedClock, on both stores (bucket keys are timestamps in both)."""
    # 30 s into a minute: the 1 h window's 1-minute buckets are easy to reason about
    clock = FixedClock(datetime.now(UTC).replace(second=30, microsecond=0))
    with ExitStack() as stack:
        url = stack.enter_context(pg_database()) if request.param == "postgresql" else None
        yield stack.enter_context(make_env(tmp_path, url, services_kwargs={"clock": clock})), clock


def minutes(clock: FixedClock, n: float) -> None:
    clock.advance(n * 60)


def test_rolling_hour_forgets_reservations_older_than_61_minutes(clock_env: tuple[Env, FixedClock]) -> None:
    env, clock = clock_env
    t0 = clock.now()
    activate(env, {"budgets": [budget("hourly", "count", "tenant", "1h", 3)]})
    assert env.authorize().status_code == 201
    assert env.authorize().status_code == 201
    minutes(clock, 30)
    assert env.authorize().status_code == 201
    denied = env.authorize().json()
    assert denied["code"] == "CUMULATIVE_BUDGET_EXCEEDED" and denied["details"]["halt"]["consumed"] == 3
    minutes(clock, 30)  # t0 + 60 min: the t0 bucket is still counted whole (fail closed)
    halt = env.authorize().json()["details"]["halt"]
    assert (halt["consumed"], halt["window_start"]) == (3, isoformat(t0.replace(second=0)))
    minutes(clock, 1)  # t0 + 61 min: the two t0 reservations have left the window
    assert usage_of(env, "hourly")[0]["consumed"] == 1
    assert env.authorize().status_code == 201
    assert env.authorize().status_code == 201
    assert env.authorize().json()["details"]["halt"]["consumed"] == 3
    usage = usage_of(env, "hourly")[0]
    assert (usage["consumed"], usage["remaining"]) == (3, 0)
    assert usage["window_start"] == isoformat(t0.replace(second=0) + timedelta(minutes=1))


def test_release_in_a_later_bucket_gives_back_exactly_what_was_reserved(
        clock_env: tuple[Env, FixedClock]) -> None:
    env, clock = clock_env
    activate(env, {"budgets": [budget("wires", "payload.amount_minor", "tenant", "1h", 7_000_000)]})
    held = env.authorize(payload=BIG).json()  # reserves 6,000,000 in the t0 bucket
    assert held["status"] == "pending_approval"
    minutes(clock, 5)
    assert env.authorize(payload={**WIRE, "amount_minor": 500_000}).status_code == 201
    assert env.authorize(payload={**WIRE, "amount_minor": 500_001}).json()["code"] == "CUMULATIVE_BUDGET_EXCEEDED"
    code = env.approval_codes(held["action_id"])[0]
    assert env.client.post(f"/v1/approvals/{code}/confirm", json={"decision": "deny"}).status_code == 200
    assert usage_of(env, "wires")[0]["consumed"] == 500_000
    minutes(clock, 58)  # t0 + 63 min: the t0 bucket (6,000,000 - 6,000,000) has left the window
    assert usage_of(env, "wires")[0]["consumed"] == 500_000
    assert env.authorize(payload={**WIRE, "amount_minor": 5_000_000}).status_code == 201
    over = env.authorize(payload={**WIRE, "amount_minor": 1_500_001}).json()
    assert over["details"]["halt"]["consumed"] == 5_500_000
    assert env.authorize(payload={**WIRE, "amount_minor": 1_500_000}).status_code == 201


def test_settlement_in_a_later_bucket_adjusts_the_reserved_bucket(clock_env: tuple[Env, FixedClock]) -> None:
    env, clock = clock_env
    activate(env, {"budgets": [budget("tokens", "tokens", "agent", "1h", 1000)]})
    first = env.authorize(usage={"tokens": 600}).json()
    minutes(clock, 2)
    assert env.authorize(usage={"tokens": 300}).status_code == 201
    r = env.client.post(f"/v1/actions/{first['action_id']}/notarize", headers=env.h("agent"),
                        json={"outcome": "completed", "usage": {"tokens": 100}})
    assert r.status_code == 200, r.text
    assert usage_of(env, "tokens")[0]["consumed"] == 400
    minutes(clock, 60)  # the first bucket (600 - 500) leaves; the 300 stay
    assert usage_of(env, "tokens")[0]["consumed"] == 300
    assert env.authorize(usage={"tokens": 700}).status_code == 201
    assert env.authorize(usage={"tokens": 1}).json()["code"] == "CUMULATIVE_BUDGET_EXCEEDED"


@pytest.mark.parametrize("window", ["calendar_day", "1h"])
def test_a_limit_is_reached_exactly_and_never_passed(clock_env: tuple[Env, FixedClock], window: str) -> None:
    env, _ = clock_env
    activate(env, {"budgets": [budget("wires", "payload.amount_minor", "tenant", window, 5000),
                               budget("tokens", "tokens", "agent", window, 0)]})
    assert env.authorize(payload={**WIRE, "amount_minor": 3000}).status_code == 201
    assert env.authorize(payload={**WIRE, "amount_minor": 2000}).status_code == 201  # exactly the limit
    halt = env.authorize(payload={**WIRE, "amount_minor": 1}).json()["details"]["halt"]
    assert (halt["budget_id"], halt["consumed"], halt["requested"]) == ("wires", 5000, 1)
    assert env.authorize(payload={**WIRE, "amount_minor": 0}).status_code == 201  # 5000 + 0 fits
    # an amount above the limit in an empty window: denied, nothing consumed
    halt = env.authorize(payload={**WIRE, "amount_minor": 0}, usage={"tokens": 1}).json()["details"]["halt"]
    assert (halt["budget_id"], halt["consumed"], halt["requested"]) == ("tokens", 0, 1)
    assert [u["consumed"] for u in usage_of(env, "wires")] == [5000]
    assert [u["consumed"] for u in usage_of(env, "tokens")] == [0]
