"""Queries for the guardrails area: agent versions, runs, budget counters and ledger, buckets.

Plain functions over a ``Repo`` (one open transaction). Every query filters on
``tenant_id``. Lock helpers (``lock_counter``, ``lock_bucket``) first make sure the row
exists (``INSERT ... ON CONFLICT DO NOTHING``), then read it ``FOR UPDATE`` on PostgreSQL,
so concurrent writers in several processes serialize on that one row until commit. On
SQLite the single ``BEGIN IMMEDIATE`` writer already serializes every write.

Rolling budget windows keep their consumption in ``budget_buckets`` (one row per fixed
sub-window bucket): ``add_to_window_bucket`` is one upsert, ``window_bucket_sum`` an indexed
range over the primary key (at most 61 rows). The ledger is the audit trail and is not
summed.

The authorization's guards (``reserve_on_counter``, ``lock_window_sum``,
``add_to_window_bucket``, ``insert_ledger``, ``take_from_bucket``) run on the raw DB-API
cursor (``store/fastpath.py``) inside the writer's transaction, and fold the
insert-if-missing / locked read / update sequence into one statement where the database
can decide atomically: a conditional ``INSERT ... ON CONFLICT DO UPDATE ... WHERE ...
RETURNING`` locks the row on PostgreSQL (rows whose ``WHERE`` fails are locked too) and
sees its latest committed version, like ``SELECT ... FOR UPDATE``. When the ``WHERE``
fails, the caller takes the Core path above to explain the refusal. Values are bound
through each column's own bind processor (``fastpath.bind``), so rows are stored exactly
as Core stores them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from warrantor.store import Repo, fastpath
from warrantor.store import schema as core
from warrantor.store.repo import _utc, merged_intent
from warrantor.store.schema_guard import (
    agent_versions,
    budget_buckets,
    budget_counters,
    budget_ledger,
    rate_buckets,
    runs,
)


@dataclass(frozen=True)
class AgentVersion:
    agent_id: str
    version: str
    model_id: str
    instruction_hash: str
    created_at: datetime

    def to_dict(self) -> dict[str, Any]:
        from warrantor.domain.clock import isoformat

        return {"version": self.version, "model_id": self.model_id,
                "instruction_hash": self.instruction_hash, "created_at": isoformat(self.created_at)}


@dataclass(frozen=True)
class Run:
    id: str
    tenant_id: str
    agent_id: str | None
    metadata: dict[str, Any]
    status: str
    tokens: int
    cost_minor: int
    started_at: datetime
    halted_at: datetime | None
    halt: dict[str, Any] | None


@dataclass(frozen=True)
class LedgerRow:
    id: str
    budget_id: str
    scope_key: str
    window_key: str
    metric: str
    action_id: str | None
    run_id: str | None
    amount: int
    state: str
    created_at: datetime
    bucket_start: datetime | None = None  # the rolling window bucket it was booked into


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def _insert_ignore(repo: Repo, table: sa.Table, **values: Any) -> None:
    dialect_insert = postgresql.insert if repo.dialect == "postgresql" else sqlite.insert
    repo.conn.execute(dialect_insert(table).values(**values).on_conflict_do_nothing())


def _locked(repo: Repo, query: sa.Select[Any]) -> sa.Select[Any]:
    return query.with_for_update() if repo.dialect == "postgresql" else query


# -- agents --------------------------------------------------------------------------
def insert_agent_version(repo: Repo, tenant_id: str, v: AgentVersion) -> None:
    repo.conn.execute(sa.insert(agent_versions).values(
        tenant_id=tenant_id, agent_id=v.agent_id, version=v.version, model_id=v.model_id,
        instruction_hash=v.instruction_hash, created_at=v.created_at,
    ))


def get_agent_versions(repo: Repo, tenant_id: str, agent_id: str) -> list[AgentVersion]:
    """Oldest first (the last one is the newest)."""
    t = agent_versions.c
    rows = repo.conn.execute(
        sa.select(agent_versions).where(t.tenant_id == tenant_id, t.agent_id == agent_id)
        .order_by(t.created_at, t.version)
    ).mappings()
    return [AgentVersion(m["agent_id"], m["version"], m["model_id"], m["instruction_hash"],
                         _utc(m["created_at"]) or m["created_at"]) for m in rows]


def list_agents(repo: Repo, tenant_id: str) -> list[tuple[str, int]]:
    t = agent_versions.c
    rows = repo.conn.execute(
        sa.select(t.agent_id, sa.func.count()).where(t.tenant_id == tenant_id)
        .group_by(t.agent_id).order_by(t.agent_id)
    ).all()
    return [(r[0], int(r[1])) for r in rows]


def delete_agent(repo: Repo, tenant_id: str, agent_id: str) -> int:
    t = agent_versions.c
    return int(repo.conn.execute(
        sa.delete(agent_versions).where(t.tenant_id == tenant_id, t.agent_id == agent_id)
    ).rowcount)


# -- runs ----------------------------------------------------------------------------
def insert_run(repo: Repo, run: Run) -> None:
    repo.conn.execute(sa.insert(runs).values(
        id=run.id, tenant_id=run.tenant_id, agent_id=run.agent_id, metadata_json=_dumps(run.metadata),
        status=run.status, tokens=run.tokens, cost_minor=run.cost_minor, started_at=run.started_at,
    ))


def get_run(repo: Repo, tenant_id: str, run_id: str, *, for_update: bool = False) -> Run | None:
    q = sa.select(runs).where(runs.c.tenant_id == tenant_id, runs.c.id == run_id)
    m = repo.conn.execute(_locked(repo, q) if for_update else q).mappings().first()
    if m is None:
        return None
    return Run(
        m["id"], m["tenant_id"], m["agent_id"], json.loads(m["metadata_json"]), m["status"],
        int(m["tokens"]), int(m["cost_minor"]), _utc(m["started_at"]) or m["started_at"],
        _utc(m["halted_at"]), json.loads(m["halt_json"]) if m["halt_json"] else None,
    )


def add_run_usage(repo: Repo, tenant_id: str, run_id: str, tokens: int, cost_minor: int) -> None:
    repo.conn.execute(
        sa.update(runs).where(runs.c.tenant_id == tenant_id, runs.c.id == run_id)
        .values(tokens=runs.c.tokens + tokens, cost_minor=runs.c.cost_minor + cost_minor)
    )


def halt_run(repo: Repo, tenant_id: str, run_id: str, halt: dict[str, Any], now: datetime) -> bool:
    """Mark an active run halted; False when it already was (the first halt is kept)."""
    return bool(repo.conn.execute(
        sa.update(runs)
        .where(runs.c.tenant_id == tenant_id, runs.c.id == run_id, runs.c.status == "active")
        .values(status="halted", halted_at=now, halt_json=_dumps(halt))
    ).rowcount)


def run_actions(repo: Repo, tenant_id: str, run_id: str, limit: int = 500) -> list[dict[str, Any]]:
    a = core.actions.c
    rows = repo.conn.execute(
        sa.select(a.id, a.status, a.action_type, a.created_at, a.agent_id)
        .where(a.tenant_id == tenant_id, a.run_id == run_id).order_by(a.created_at, a.id).limit(limit)
    ).all()
    return [{"action_id": r[0], "status": r[1], "action_type": r[2], "created_at": _utc(r[3]), "agent_id": r[4]}
            for r in rows]


# -- budgets -------------------------------------------------------------------------
def lock_counter(repo: Repo, tenant_id: str, budget_id: str, scope_key: str, window_key: str,
                 window_start: datetime | None, now: datetime) -> int:
    """Create the counter row if needed, lock it and return its ``consumed``."""
    _insert_ignore(repo, budget_counters, tenant_id=tenant_id, budget_id=budget_id, scope_key=scope_key,
                   window_key=window_key, consumed=0, window_start=window_start, updated_at=now)
    c = budget_counters.c
    q = sa.select(c.consumed).where(c.tenant_id == tenant_id, c.budget_id == budget_id,
                                    c.scope_key == scope_key, c.window_key == window_key)
    return int(repo.conn.execute(_locked(repo, q)).scalar_one())


def add_to_counter(repo: Repo, tenant_id: str, budget_id: str, scope_key: str, window_key: str,
                   delta: int, now: datetime) -> None:
    c = budget_counters.c
    repo.conn.execute(
        sa.update(budget_counters)
        .where(c.tenant_id == tenant_id, c.budget_id == budget_id, c.scope_key == scope_key,
               c.window_key == window_key)
        .values(consumed=c.consumed + delta, updated_at=now)
    )


@cache
def _bucket_upsert_sql(ph: str) -> str:
    return (
        "INSERT INTO budget_buckets (tenant_id, budget_id, scope_key, window_key, bucket_start, consumed, "  # noqa: S608
        f"updated_at) VALUES ({ph}, {ph}, {ph}, {ph}, {ph}, {ph}, {ph}) "
        "ON CONFLICT (tenant_id, budget_id, scope_key, window_key, bucket_start) DO UPDATE SET "
        "consumed = budget_buckets.consumed + excluded.consumed, updated_at = excluded.updated_at"
    )


def add_to_window_bucket(repo: Repo, tenant_id: str, budget_id: str, scope_key: str, window_key: str,
                         bucket_start: datetime, delta: int, now: datetime) -> None:
    """Add ``delta`` to one rolling-window bucket, creating it (one upsert, raw cursor)."""
    conn, b = repo.conn, budget_buckets.c
    fastpath.execute(conn, _bucket_upsert_sql(fastpath.placeholder(conn)), (
        tenant_id, budget_id, scope_key, window_key, fastpath.bind(conn, b.bucket_start, bucket_start),
        delta, fastpath.bind(conn, b.updated_at, now),
    ))


def window_bucket_sum(repo: Repo, tenant_id: str, budget_id: str, scope_key: str, window_key: str,
                      since: datetime) -> int:
    """The consumption of the buckets starting at or after ``since`` (a rolling window's)."""
    b = budget_buckets.c
    q = sa.select(sa.func.coalesce(sa.func.sum(b.consumed), 0)).where(
        b.tenant_id == tenant_id, b.budget_id == budget_id, b.scope_key == scope_key,
        b.window_key == window_key, b.bucket_start >= since,
    )
    return int(repo.conn.execute(q).scalar_one())


# The largest BIGINT: hot-path arithmetic stays below it (the Core path handles the rest).
INT64_MAX: Final = 2**63 - 1
_COUNTER_KEY = "tenant_id = {p} AND budget_id = {p} AND scope_key = {p} AND window_key = {p}"


@cache
def _reserve_counter_sql(ph: str) -> str:
    return (
        "INSERT INTO budget_counters (tenant_id, budget_id, scope_key, window_key, consumed, window_start, "  # noqa: S608
        f"updated_at) VALUES ({ph}, {ph}, {ph}, {ph}, {ph}, {ph}, {ph}) "
        "ON CONFLICT (tenant_id, budget_id, scope_key, window_key) DO UPDATE SET "
        "consumed = budget_counters.consumed + excluded.consumed, "
        "updated_at = CASE WHEN excluded.consumed = 0 THEN budget_counters.updated_at "
        "ELSE excluded.updated_at END "
        f"WHERE budget_counters.consumed <= {ph} RETURNING consumed"
    )


def reserve_on_counter(repo: Repo, tenant_id: str, budget_id: str, scope_key: str, window_key: str,
                       window_start: datetime | None, amount: int, limit: int, now: datetime) -> int | None:
    """Add ``amount`` to a calendar or run window's counter row unless that passes ``limit``.

    One statement: creates the row holding ``amount``, or locks it and adds ``amount`` when
    ``consumed + amount <= limit`` (``updated_at`` moves only when ``amount`` is not 0, as
    with ``lock_counter`` + ``add_to_counter``). Returns the consumption before this
    amount, or None when it would pass the limit: nothing changed, and on PostgreSQL the
    row stays locked until the transaction (or its savepoint) ends. Requires ``0 <= amount
    <= limit <= INT64_MAX``, so neither the comparison nor the sum can overflow a BIGINT.
    """
    if not 0 <= amount <= limit <= INT64_MAX:
        raise ValueError(f"expected 0 <= amount <= limit <= {INT64_MAX}, got amount {amount}, limit {limit}")
    conn, c = repo.conn, budget_counters.c
    row = fastpath.fetch_row(conn, _reserve_counter_sql(fastpath.placeholder(conn)), (
        tenant_id, budget_id, scope_key, window_key, amount, fastpath.bind(conn, c.window_start, window_start),
        fastpath.bind(conn, c.updated_at, now), limit - amount,
    ))
    return None if row is None else int(row[0]) - amount


@cache
def _window_sum_sql(ph: str, *, with_lock_row: bool) -> str:
    bucket_sum = (
        "SELECT coalesce(sum(consumed), 0) FROM budget_buckets WHERE "  # noqa: S608
        f"{_COUNTER_KEY.format(p=ph)} AND bucket_start >= {ph}"
    )
    if not with_lock_row:
        return bucket_sum
    return f"SELECT (SELECT 1 FROM budget_counters WHERE {_COUNTER_KEY.format(p=ph)}), ({bucket_sum})"  # noqa: S608


@cache
def _lock_counter_sql(ph: str) -> str:
    return f"SELECT 1 FROM budget_counters WHERE {_COUNTER_KEY.format(p=ph)} FOR UPDATE"  # noqa: S608


def lock_window_sum(repo: Repo, tenant_id: str, budget_id: str, scope_key: str, window_key: str,
                    since: datetime, now: datetime) -> int:
    """Lock (creating) a rolling window's counter row; return its buckets' sum since ``since``.

    PostgreSQL: ``SELECT ... FOR UPDATE`` on the counter row, then the sum in a statement of
    its own, whose snapshot is taken after the lock is granted (READ COMMITTED), so it sees
    every reservation committed by the writer that held the lock before. SQLite: the one
    ``BEGIN IMMEDIATE`` writer already serializes every write, so one statement reads
    whether the row exists and the sum. The row is created (consumed 0, as
    ``lock_counter`` does) the first time; ``GET /v1/budgets`` lists windows from it.
    """
    conn = repo.conn
    ph = fastpath.placeholder(conn)
    key = (tenant_id, budget_id, scope_key, window_key)
    since_bound = fastpath.bind(conn, budget_buckets.c.bucket_start, since)
    if repo.dialect == "postgresql":
        if fastpath.fetch_row(conn, _lock_counter_sql(ph), key) is None:
            lock_counter(repo, tenant_id, budget_id, scope_key, window_key, None, now)
        row = fastpath.fetch_row(conn, _window_sum_sql(ph, with_lock_row=False), (*key, since_bound))
    else:
        row = fastpath.fetch_row(conn, _window_sum_sql(ph, with_lock_row=True), (*key, *key, since_bound))
        assert row is not None
        if row[0] is None:
            lock_counter(repo, tenant_id, budget_id, scope_key, window_key, None, now)
        row = row[1:]
    assert row is not None
    return int(row[0])


def counters(repo: Repo, tenant_id: str, budget_id: str, limit: int = 200) -> list[dict[str, Any]]:
    c = budget_counters.c
    rows = repo.conn.execute(
        sa.select(budget_counters).where(c.tenant_id == tenant_id, c.budget_id == budget_id)
        .order_by(c.updated_at.desc()).limit(limit)
    ).mappings()
    return [dict(m) for m in rows]


_LEDGER_INSERT = fastpath.RawInsert(budget_ledger)


def insert_ledger(repo: Repo, tenant_id: str, rows: Iterable[LedgerRow], now: datetime) -> None:
    """Insert ledger rows (one ``executemany`` on the raw cursor)."""
    _LEDGER_INSERT.execute(repo.conn, [{
        "id": row.id, "tenant_id": tenant_id, "budget_id": row.budget_id, "scope_key": row.scope_key,
        "window_key": row.window_key, "metric": row.metric, "action_id": row.action_id, "run_id": row.run_id,
        "amount": row.amount, "state": row.state, "bucket_start": row.bucket_start,
        "created_at": row.created_at, "updated_at": now,
    } for row in rows])


_LEDGER_FOR_ACTION = (  # built once: it runs in every transition of an action (repo.py's note)
    sa.select(budget_ledger)
    .where(budget_ledger.c.tenant_id == sa.bindparam("b_tenant_id"),
           budget_ledger.c.action_id == sa.bindparam("b_action_id"))
    .order_by(budget_ledger.c.budget_id, budget_ledger.c.scope_key)
)


def ledger_for_action(repo: Repo, tenant_id: str, action_id: str) -> list[LedgerRow]:
    rows = repo.conn.execute(_LEDGER_FOR_ACTION, {"b_tenant_id": tenant_id, "b_action_id": action_id}).mappings()
    return [LedgerRow(m["id"], m["budget_id"], m["scope_key"], m["window_key"], m["metric"], m["action_id"],
                      m["run_id"], int(m["amount"]), m["state"], _utc(m["created_at"]) or m["created_at"],
                      _utc(m["bucket_start"]))
            for m in rows]


def update_ledger(repo: Repo, tenant_id: str, row_id: str, amount: int, state: str, now: datetime) -> bool:
    """Move a reserved row to settled/released; False if it was not reserved any more."""
    g = budget_ledger.c
    return bool(repo.conn.execute(
        sa.update(budget_ledger)
        .where(g.tenant_id == tenant_id, g.id == row_id, g.state == "reserved")
        .values(amount=amount, state=state, updated_at=now)
    ).rowcount)


# -- rate-limit buckets --------------------------------------------------------------
def lock_bucket(repo: Repo, tenant_id: str, kind: str, key: str, burst: int, now: float) -> tuple[float, float]:
    """Create a full bucket if needed, lock it and return ``(tokens, updated_at)``."""
    _insert_ignore(repo, rate_buckets, tenant_id=tenant_id, kind=kind, bucket_key=key,
                   tokens=float(burst), updated_at=now)
    b = rate_buckets.c
    q = sa.select(b.tokens, b.updated_at).where(b.tenant_id == tenant_id, b.kind == kind, b.bucket_key == key)
    row = repo.conn.execute(_locked(repo, q)).one()
    return float(row[0]), float(row[1])


def set_bucket(repo: Repo, tenant_id: str, kind: str, key: str, tokens: float, now: float) -> None:
    b = rate_buckets.c
    repo.conn.execute(
        sa.update(rate_buckets).where(b.tenant_id == tenant_id, b.kind == kind, b.bucket_key == key)
        .values(tokens=tokens, updated_at=now)
    )



@cache
def _take_sql(ph: str, dialect: str) -> str:
    big, small = ("GREATEST", "LEAST") if dialect == "postgresql" else ("max", "min")
    # policy.limits.take, operation for operation, in IEEE doubles:
    # available = min(burst, tokens + max(0, now - updated_at) * rate)
    available = (f"{small}({ph}, rate_buckets.tokens + "
                 f"{big}({ph}, excluded.updated_at - rate_buckets.updated_at) * {ph})")
    return (
        "INSERT INTO rate_buckets (tenant_id, kind, bucket_key, tokens, updated_at) "  # noqa: S608
        f"VALUES ({ph}, {ph}, {ph}, {ph}, {ph}) "
        "ON CONFLICT (tenant_id, kind, bucket_key) DO UPDATE SET "
        f"tokens = {big}({ph}, {available} - {ph}), "
        f"updated_at = {big}(excluded.updated_at, rate_buckets.updated_at) "
        f"WHERE {available} + {ph} >= {ph} RETURNING tokens"
    )


def take_from_bucket(repo: Repo, tenant_id: str, kind: str, key: str, *, fresh_tokens: float, now: float,
                     rate_per_second: float, burst: float, grace: float, cost: float) -> bool:
    """Spend ``cost`` from a token bucket in one statement when ``policy.limits.take`` allows it.

    A missing bucket is created holding ``fresh_tokens`` (what ``take`` leaves in a full
    bucket) at ``now``. An existing one is locked and, when ``available + grace >= cost``,
    set to ``max(0, available - cost)`` at ``max(now, updated_at)``: ``take``'s arithmetic in
    the same order on the same IEEE doubles, so the stored state is bit for bit what
    ``take`` + ``set_bucket`` store. False when the bucket lacks the tokens: nothing
    changed (the row stays locked on PostgreSQL) and the caller asks ``take`` why.
    Every number is passed as a float, so PostgreSQL computes in double precision.
    """
    conn = repo.conn
    zero = 0.0
    row = fastpath.fetch_row(conn, _take_sql(fastpath.placeholder(conn), repo.dialect), (
        tenant_id, kind, key, float(fresh_tokens), float(now),
        zero, float(burst), zero, float(rate_per_second), float(cost),  # SET tokens
        float(burst), zero, float(rate_per_second), float(grace), float(cost),  # WHERE
    ))
    return row is not None


# -- simulation ----------------------------------------------------------------------
def actions_in_range(repo: Repo, tenant_id: str, start: datetime | None, end: datetime | None,
                     limit: int) -> list[tuple[str, dict[str, Any], dict[str, Any], datetime]]:
    """Recorded actions (id, canonical intent, decision, created_at), oldest first; an action
    whose details were erased has its committed intent (``evidence.commitments``)."""
    a = core.actions.c
    q = sa.select(a.id, a.intent_json, a.decision_json, a.created_at, a.details_json).where(a.tenant_id == tenant_id)
    if start is not None:
        q = q.where(a.created_at >= start)
    if end is not None:
        q = q.where(a.created_at < end)
    rows = repo.conn.execute(q.order_by(a.created_at, a.id).limit(limit)).all()
    return [(r[0], merged_intent(json.loads(r[1]), r[4]), json.loads(r[2]), _utc(r[3]) or r[3]) for r in rows]
