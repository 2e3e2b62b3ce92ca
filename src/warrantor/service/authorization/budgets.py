"""Budgets: reserve at authorization, settle at notarize, release on deny, failure, expiry.

docs/guardrails.md (``budgets:`` in the bundle's config) and the ``run budget`` and
``cumulative budget`` stages of section 2; halt semantics after the seed's CCV (per-run,
``BUDGET_EXHAUSTED``) and MACC (cumulative, ``CUMULATIVE_BUDGET_EXCEEDED``) halts.

How one action is counted against one budget (a *slot*):

- scope key: the run id (``scope: run``; a budget of scope or window ``run`` does not apply
  to an action outside a run), the agent id (``scope: agent``; actions without an agent
  share the key ``-``) or ``tenant``;
- window: the run, rolling ``1h``/``1d``/``30d`` or ``calendar_day``/``calendar_month`` (UTC);
- amount: ``policy.limits.metric_amount`` over the payload and the intent's ``usage``
  estimate. A ``payload.<field>`` budget does not apply to an action whose payload has no
  such field; a field that is not a non-negative integer denies (``BUDGET_METRIC_INVALID``):
  a budget that cannot be measured is never skipped.

Atomicity (docs/storage.md): ``BudgetGuard.reserve`` runs inside the authorization's write
transaction. For each slot, in a fixed order, it locks the counter row
(tenant, budget, scope key, window key); calendar and run windows keep the total in that
row, rolling windows keep it in bucket rows read under the same lock. Every process on
one database therefore serializes on the row and no limit is overshot.

Cost (the guard runs in the single writer thread, so every statement is paid serially):
an allowed reservation is one conditional upsert for a calendar or run window (lock, add
and compare in the database: ``repo_guard.reserve_on_counter``), and for a rolling window
the locked read of the bucket sum (one statement on SQLite, two on PostgreSQL) plus the
bucket upsert; the ledger rows of all slots are one ``executemany``. When the fast path
finds the amount does not fit (or the numbers are too large for BIGINT arithmetic), the
slot is re-read under its lock and compared in Python (``would_exceed``), which decides
and explains the breach exactly as before.

Rolling windows (``1h``, ``1d``, ``30d``) are bucketed, so a reservation costs the same
however many reservations the window holds. Each window is cut into 60 fixed buckets
(``policy.limits.bucket_start``: 1 minute, 24 minutes, 12 hours, aligned on the Unix
epoch) with one counter row each (``budget_buckets``). An amount is booked into the bucket
of the moment it was reserved (or its usage reported); the ledger row stores that bucket,
and its release or settlement adjusts that same bucket, whenever it happens. The
consumption at ``now`` is the sum of the buckets starting at or after
``bucket_start(window, now - window)``: at most 61 rows, the oldest partly expired bucket
counted whole. So an amount booked at ``t`` counts for at least the whole window (up to
``now = t + window`` inclusive) and stops counting at ``bucket_start(t) + bucket width +
window``, i.e. at most one bucket width (1 min / 24 min / 12 h) later than an exact
rolling window would drop it. The bucketed figure is never below the exact one: a budget
may deny up to one bucket early, never overshoot (fail closed). The halt's and ``GET
/v1/budgets``' ``window_start`` is that oldest counted bucket's start, and ``GET
/v1/budgets`` sums the same buckets as the guard. Ledger rows are the audit trail and are
no longer summed. A breach raises ``GuardStop``
(the savepoint drops this action's other reservations); the authorizer then records the
action denied (or held, ``on_exceed: require_approval``) with a signed receipt whose
``decision.halt`` carries budget id, limit, consumption, request, window and window start.

``BudgetHook`` (a transition hook) releases reservations when an action ends denied,
expired or failed, settles the actual figure when it is notarized (``usage`` from the
notarize body for tokens and cost; the reserved amount otherwise), adds that usage to the
action's run, and halts the run when a run budget is now over its limit. An action held
because of a budget reserves (over the limit: a human approved it) when it is approved.
Only actions that reserved are ever counted.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from warrantor.domain.clock import isoformat
from warrantor.domain.lifecycle import Status
from warrantor.domain.model import Action, Effect, Principal, Role
from warrantor.evidence.canonical import digest
from warrantor.policy.config import Budget
from warrantor.policy.limits import (
    ROLLING_WINDOWS,
    MetricError,
    bucket_start,
    metric_amount,
    window_key,
    window_start,
    would_exceed,
)
from warrantor.service.authorization.authorize import Draft, GuardStop
from warrantor.service.authorization.intent import Intent
from warrantor.service.authorization.policies import Policies
from warrantor.service.context import Deps
from warrantor.service.tenancy import require_role
from warrantor.store import Repo
from warrantor.store import repo_guard as rg

RELEASED_ON = frozenset({Status.DENIED_BY_HUMAN, Status.DENIED_BY_USER, Status.EXPIRED, Status.FAILED})
SETTLED_ON = frozenset({Status.NOTARIZED, Status.DIVERGED})
NO_AGENT = "-"


@dataclass(frozen=True)
class Slot:
    """One budget applied to one action: where it is counted."""

    budget: Budget
    scope_key: str
    window_key: str
    window_start: datetime | None  # rolling: the start of the oldest bucket counted
    bucket: datetime | None = None  # rolling: the bucket ``now`` books into

    @property
    def rolling(self) -> bool:
        return self.budget.window in ROLLING_WINDOWS

    @property
    def order(self) -> tuple[str, str, str]:
        return (self.budget.id, self.scope_key, self.window_key)


def budget_hash(budget: Budget) -> str:
    """sha256 of the budget's canonical definition (it is in every halt)."""
    return digest({"id": budget.id, "metric": budget.metric, "scope": budget.scope,
                   "window": budget.window, "limit": budget.limit, "on_exceed": budget.on_exceed})


def scope_key(budget: Budget, agent_id: str | None, run: rg.Run | None) -> str | None:
    if budget.scope == "run":
        return run.id if run else None
    if budget.scope == "agent":
        return agent_id or NO_AGENT
    return "tenant"


def slot_for(budget: Budget, agent_id: str | None, run: rg.Run | None, now: datetime) -> Slot | None:
    key = scope_key(budget, agent_id, run)
    wkey = window_key(budget.window, now, run.id if run else None)
    if key is None or wkey is None:
        return None
    start = window_start(budget.window, now, run.started_at if run else None)
    if budget.window not in ROLLING_WINDOWS:
        return Slot(budget, key, wkey, start)
    return Slot(budget, key, wkey, counted_since(budget.window, now), bucket_start(budget.window, now))


def counted_since(window: str, now: datetime) -> datetime:
    """A rolling window's consumption is its buckets from this one on (the oldest counted whole)."""
    start = window_start(window, now)
    assert start is not None
    return bucket_start(window, start)


def amount_for(metric: str, payload: Mapping[str, Any] | None, usage: Mapping[str, Any] | None) -> int | None:
    """The action's consumption of ``metric``; None when a payload field is absent."""
    if metric.startswith("payload."):
        node: Any = payload or {}
        for part in metric.split(".")[1:]:
            if not isinstance(node, Mapping) or part not in node:
                return None
            node = node[part]
    return metric_amount(metric, payload, usage)


def consumed(repo: Repo, tenant_id: str, slot: Slot, now: datetime) -> int:
    """Lock the slot's counter row and return what the window has consumed so far."""
    total = rg.lock_counter(repo, tenant_id, slot.budget.id, slot.scope_key, slot.window_key,
                            None if slot.rolling else slot.window_start, now)
    if slot.rolling:
        assert slot.window_start is not None
        return rg.window_bucket_sum(repo, tenant_id, slot.budget.id, slot.scope_key, slot.window_key,
                                    slot.window_start)
    return total


def halt_details(slot: Slot, used: int, requested: int) -> dict[str, Any]:
    b = slot.budget
    return {
        "budget_id": b.id, "budget_hash": budget_hash(b), "metric": b.metric, "scope": b.scope,
        "scope_key": slot.scope_key, "window": b.window,
        "window_start": isoformat(slot.window_start) if slot.window_start else None,
        "limit": b.limit, "consumed": used, "requested": requested,
        "reason_code": halt_reason(b),
    }


def halt_reason(budget: Budget) -> str:
    return "BUDGET_EXHAUSTED" if budget.scope == "run" else "CUMULATIVE_BUDGET_EXCEEDED"


class Ledger:
    """Reservations and their settlement, shared by the guard, the hook and runs."""

    def __init__(self, deps: Deps, policies: Policies) -> None:
        self._d = deps
        self._policies = policies

    def budgets(self, repo: Repo, tenant_id: str) -> tuple[Budget, ...]:
        enforce = self._policies.active(repo, tenant_id).get("enforce")
        return enforce.bundle.config.budgets if enforce else ()

    def slots(self, budgets: Iterable[Budget], agent_id: str | None, run: rg.Run | None,
              now: datetime) -> list[Slot]:
        found = (slot_for(b, agent_id, run, now) for b in budgets)
        return sorted((s for s in found if s is not None), key=lambda s: s.order)

    def reserve(self, repo: Repo, tenant_id: str, action_id: str, intent: Intent, now: datetime,
                *, force: bool = False, run: rg.Run | None = None) -> None:
        """Reserve the intent's consumption on every matching budget, or raise GuardStop.

        ``run`` is the intent's run when the caller has already read it in this transaction.
        """
        budgets = self.budgets(repo, tenant_id)
        if not budgets:
            return
        if run is None and intent.run_id:
            run = rg.get_run(repo, tenant_id, intent.run_id)
        rows: list[rg.LedgerRow] = []
        for slot in self.slots(budgets, intent.agent_id, run, now):
            try:
                amount = amount_for(slot.budget.metric, intent.payload, intent.usage)
            except MetricError as exc:
                if force:
                    continue
                raise GuardStop("budget", Effect.DENY, "BUDGET_METRIC_INVALID",
                                details={"budget_id": slot.budget.id, "error": str(exc)}) from exc
            if amount is None:
                continue
            row = self._row(slot, amount, now, action_id=action_id, run_id=intent.run_id, state="reserved")
            if force or not self._reserve_fast(repo, tenant_id, slot, row, now):
                self._reserve_slow(repo, tenant_id, slot, row, now, force=force)
            rows.append(row)
        rg.insert_ledger(repo, tenant_id, rows, now)

    def _reserve_fast(self, repo: Repo, tenant_id: str, slot: Slot, row: rg.LedgerRow, now: datetime) -> bool:
        """The allowed path in as few statements as the window allows; False: use the slow path.

        Calendar and run windows: one conditional upsert that adds the amount only when it
        fits (``reserve_on_counter``). Rolling windows: the locked row and the bucket sum
        (``lock_window_sum``), then the bucket upsert when the amount fits. A breach
        returns False before anything is booked; so does an amount or limit too large for
        the BIGINT arithmetic, which the slow path checks in Python.
        """
        limit, amount = slot.budget.limit, row.amount
        if not amount <= limit <= rg.INT64_MAX:
            return False
        if not slot.rolling:
            return rg.reserve_on_counter(repo, tenant_id, slot.budget.id, slot.scope_key, slot.window_key,
                                         slot.window_start, amount, limit, now) is not None
        assert slot.window_start is not None
        used = rg.lock_window_sum(repo, tenant_id, slot.budget.id, slot.scope_key, slot.window_key,
                                  slot.window_start, now)
        if would_exceed(used, amount, limit):
            return False
        self._adjust(repo, tenant_id, row, amount, now)
        return True

    def _reserve_slow(self, repo: Repo, tenant_id: str, slot: Slot, row: rg.LedgerRow, now: datetime,
                      *, force: bool) -> None:
        """Lock, read, compare in Python and book; raises GuardStop with the halt on a breach."""
        used = consumed(repo, tenant_id, slot, now)
        if not force and would_exceed(used, row.amount, slot.budget.limit):
            effect = Effect.DENY if slot.budget.on_exceed == "deny" else Effect.REQUIRE_APPROVAL
            reason = halt_reason(slot.budget)
            raise GuardStop("budget", effect, reason, code=reason, details=halt_details(slot, used, row.amount))
        self._adjust(repo, tenant_id, row, row.amount, now)

    def record_usage(self, repo: Repo, run: rg.Run, usage: Mapping[str, int], now: datetime) -> list[dict[str, Any]]:
        """Book reported run usage on every tokens/cost budget; return the run budgets now over."""
        over: list[dict[str, Any]] = []
        for slot in self.slots(self.budgets(repo, run.tenant_id), run.agent_id, run, now):
            amount = usage.get(slot.budget.metric)
            if not amount:
                continue
            used = consumed(repo, run.tenant_id, slot, now)
            self._book(repo, run.tenant_id, slot, amount, now, action_id=None, run_id=run.id, state="settled")
            if slot.budget.scope == "run" and used + amount > slot.budget.limit:
                over.append(halt_details(slot, used + amount, amount))
        return over

    def runs_over(self, repo: Repo, run: rg.Run, now: datetime) -> list[dict[str, Any]]:
        """Run-scoped budgets whose consumption is past their limit."""
        out = []
        for slot in self.slots(self.budgets(repo, run.tenant_id), run.agent_id, run, now):
            if slot.budget.scope != "run":
                continue
            used = consumed(repo, run.tenant_id, slot, now)
            if used > slot.budget.limit:
                out.append(halt_details(slot, used, 0))
        return out

    def _row(self, slot: Slot, amount: int, now: datetime, *, action_id: str | None, run_id: str | None,
             state: str) -> rg.LedgerRow:
        return rg.LedgerRow(self._d.ids.new("bgt"), slot.budget.id, slot.scope_key, slot.window_key,
                            slot.budget.metric, action_id, run_id, amount, state, now, slot.bucket)

    def _book(self, repo: Repo, tenant_id: str, slot: Slot, amount: int, now: datetime, *,
              action_id: str | None, run_id: str | None, state: str) -> None:
        row = self._row(slot, amount, now, action_id=action_id, run_id=run_id, state=state)
        rg.insert_ledger(repo, tenant_id, [row], now)
        self._adjust(repo, tenant_id, row, amount, now)

    def release(self, repo: Repo, tenant_id: str, action_id: str, now: datetime) -> None:
        for row in rg.ledger_for_action(repo, tenant_id, action_id):
            if row.state == "reserved" and rg.update_ledger(repo, tenant_id, row.id, row.amount, "released", now):
                self._adjust(repo, tenant_id, row, -row.amount, now)

    def settle(self, repo: Repo, tenant_id: str, action_id: str, usage: Mapping[str, Any] | None,
               now: datetime) -> None:
        for row in rg.ledger_for_action(repo, tenant_id, action_id):
            if row.state != "reserved":
                continue
            actual = _actual(row, usage)
            if rg.update_ledger(repo, tenant_id, row.id, actual, "settled", now):
                self._adjust(repo, tenant_id, row, actual - row.amount, now)

    @staticmethod
    def _adjust(repo: Repo, tenant_id: str, row: rg.LedgerRow, delta: int, now: datetime) -> None:
        """Add ``delta`` where the row is counted: its rolling bucket, else its counter row."""
        if not delta:
            return
        if not row.window_key.startswith("rolling:"):
            rg.add_to_counter(repo, tenant_id, row.budget_id, row.scope_key, row.window_key, delta, now)
        elif row.bucket_start is not None:
            rg.add_to_window_bucket(repo, tenant_id, row.budget_id, row.scope_key, row.window_key,
                                    row.bucket_start, delta, now)


def _actual(row: rg.LedgerRow, usage: Mapping[str, Any] | None) -> int:
    if row.metric in ("tokens", "cost_minor") and usage and isinstance(usage.get(row.metric), int):
        return max(0, int(usage[row.metric]))
    return row.amount


class BudgetGuard:
    """WriteGuard ``budget``: reserves, or stops the action with a halt."""

    name = "budget"

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger

    def reserve(self, repo: Repo, principal: Principal, action_id: str, intent: Intent,
                draft: Draft, now: datetime) -> None:
        if draft.effect is Effect.DENY or principal.tenant_id is None:
            return
        run = None
        if intent.run_id:
            run = rg.get_run(repo, principal.tenant_id, intent.run_id, for_update=True)
            if run is not None and run.status == "halted":
                raise GuardStop("budget", Effect.DENY, "BUDGET_EXHAUSTED", code="BUDGET_EXHAUSTED",
                                details={**(run.halt or {}), "run_id": run.id, "run_status": "halted"})
        self._ledger.reserve(repo, principal.tenant_id, action_id, intent, now, run=run)


class BudgetHook:
    """Transition hook: release, settle, reserve-on-approval, halt runs over budget."""

    def __init__(self, deps: Deps, ledger: Ledger) -> None:
        self._d = deps
        self._ledger = ledger

    def __call__(self, repo: Repo, action: Action, new_status: Status,
                 execution: dict[str, Any] | None, now: datetime) -> None:
        if new_status in RELEASED_ON:
            self._ledger.release(repo, action.tenant_id, action.id, now)
        elif new_status in SETTLED_ON:
            usage = (execution or {}).get("usage") or None
            self._ledger.settle(repo, action.tenant_id, action.id, usage, now)
            if action.run_id:
                self._settle_run(repo, action, usage or {}, now)
        elif new_status is Status.APPROVED and _held_by_budget(repo, action):
            intent = Intent.from_canonical(action.intent)
            self._ledger.reserve(repo, action.tenant_id, action.id, intent, now, force=True)

    def _settle_run(self, repo: Repo, action: Action, usage: Mapping[str, Any], now: datetime) -> None:
        assert action.run_id is not None
        tokens, cost = _int(usage.get("tokens")), _int(usage.get("cost_minor"))
        if tokens or cost:
            rg.add_run_usage(repo, action.tenant_id, action.run_id, tokens, cost)
        run = rg.get_run(repo, action.tenant_id, action.run_id, for_update=True)
        if run is not None and run.status == "active":
            over = self._ledger.runs_over(repo, run, now)
            if over:
                halt(self._d, repo, run, over[0], now)


def _held_by_budget(repo: Repo, action: Action) -> bool:
    """Held at stage ``budget`` (on_exceed: require_approval) and not reserved yet."""
    if (action.decision or {}).get("stage") != "budget":
        return False
    return not rg.ledger_for_action(repo, action.tenant_id, action.id)


def halt(deps: Deps, repo: Repo, run: rg.Run, details: dict[str, Any], now: datetime) -> bool:
    """Halt a run (once) and emit ``run.halted`` in the same transaction."""
    record = {**details, "halted_at": isoformat(now)}
    if not rg.halt_run(repo, run.tenant_id, run.id, record, now):
        return False
    deps.events.emit(repo, run.tenant_id, "run.halted", {"run_id": run.id, "agent_id": run.agent_id, **record})
    return True


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


class Budgets:
    """``GET /v1/budgets``: consumption per budget, scope key and current window."""

    def __init__(self, deps: Deps, ledger: Ledger) -> None:
        self._d = deps
        self._ledger = ledger

    def overview(self, principal: Principal) -> dict[str, Any]:
        tenant_id = require_role(principal, Role.ADMIN, Role.AUDITOR)
        now = self._d.clock.now()
        with self._d.store.read() as repo:
            budgets = self._ledger.budgets(repo, tenant_id)
            data = [self._one(repo, tenant_id, b, now) for b in budgets]
        return {"data": data, "as_of": isoformat(now)}

    def _one(self, repo: Repo, tenant_id: str, budget: Budget, now: datetime) -> dict[str, Any]:
        usage = []
        current = window_key(budget.window, now, "-")
        for row in rg.counters(repo, tenant_id, budget.id):
            key = row["window_key"]
            if budget.window == "run":
                start = row["window_start"]
            elif key != current:
                continue
            elif budget.window in ROLLING_WINDOWS:
                start = counted_since(budget.window, now)
            else:
                start = window_start(budget.window, now)
            used = int(row["consumed"])
            if budget.window in ROLLING_WINDOWS:
                assert start is not None
                used = rg.window_bucket_sum(repo, tenant_id, budget.id, row["scope_key"], key, start)
            usage.append({
                "scope_key": row["scope_key"], "window_key": key,
                "window_start": isoformat(_aware(start)) if start else None,
                "consumed": used, "remaining": max(0, budget.limit - used),
            })
        return {"budget_id": budget.id, "budget_hash": budget_hash(budget), "metric": budget.metric,
                "scope": budget.scope, "window": budget.window, "limit": budget.limit,
                "on_exceed": budget.on_exceed, "usage": usage}


def _aware(value: datetime) -> datetime:
    from datetime import UTC

    return value if value.tzinfo else value.replace(tzinfo=UTC)
