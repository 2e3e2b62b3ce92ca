"""Tables for the guardrails area: agent registry, runs, budgets and rate-limit buckets.

Imported at the end of schema.py so that one metadata holds every table. Queries are in
``repo_guard.py``; the use cases in ``service/authorization/agents.py``, ``runs.py``, ``budgets.py`` and
``ratelimit.py``. Everything that must be atomic across server processes (budget counters,
token buckets) is a row that writers lock (``SELECT ... FOR UPDATE`` on PostgreSQL; the
single ``BEGIN IMMEDIATE`` writer on SQLite).
"""

from __future__ import annotations

import sqlalchemy as sa

from warrantor.store.schema import TS, metadata, tenant_column

# One row per registered agent version; each POST /v1/agents adds one.
agent_versions = sa.Table(
    "agent_versions",
    metadata,
    tenant_column(),
    sa.Column("agent_id", sa.String(200), nullable=False),
    sa.Column("version", sa.String(128), nullable=False),
    sa.Column("model_id", sa.String(256), nullable=False),
    sa.Column("instruction_hash", sa.String(256), nullable=False),
    sa.Column("created_at", TS, nullable=False),
    sa.PrimaryKeyConstraint("tenant_id", "agent_id", "version"),
)

# One agent run/session: its consumption and whether it was halted by a run budget.
runs = sa.Table(
    "runs",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    tenant_column(),
    sa.Column("agent_id", sa.String(200)),
    sa.Column("metadata_json", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # active | halted
    sa.Column("tokens", sa.BigInteger, nullable=False),
    sa.Column("cost_minor", sa.BigInteger, nullable=False),
    sa.Column("started_at", TS, nullable=False),
    sa.Column("halted_at", TS),
    sa.Column("halt_json", sa.Text),
    sa.Index(None, "tenant_id", "started_at"),
)

# Per (budget, scope key, window): the lock row writers serialize on, and for calendar and
# run windows the running total itself. Rolling windows sum their budget_buckets rows under
# this row's lock.
budget_counters = sa.Table(
    "budget_counters",
    metadata,
    tenant_column(),
    sa.Column("budget_id", sa.String(128), nullable=False),
    sa.Column("scope_key", sa.String(200), nullable=False),
    sa.Column("window_key", sa.String(128), nullable=False),
    sa.Column("consumed", sa.BigInteger, nullable=False),
    sa.Column("window_start", TS),
    sa.Column("updated_at", TS, nullable=False),
    sa.PrimaryKeyConstraint("tenant_id", "budget_id", "scope_key", "window_key"),
)

# Per (budget, scope key, rolling window, bucket): the consumption booked into one of the
# window's 60 fixed sub-window buckets (policy.limits.bucket_start). A reservation adds to
# the bucket of its time; its release or settlement adjusts that same bucket.
budget_buckets = sa.Table(
    "budget_buckets",
    metadata,
    tenant_column(),
    sa.Column("budget_id", sa.String(128), nullable=False),
    sa.Column("scope_key", sa.String(200), nullable=False),
    sa.Column("window_key", sa.String(128), nullable=False),
    sa.Column("bucket_start", TS, nullable=False),
    sa.Column("consumed", sa.BigInteger, nullable=False),
    sa.Column("updated_at", TS, nullable=False),
    sa.PrimaryKeyConstraint("tenant_id", "budget_id", "scope_key", "window_key", "bucket_start"),
)

# Every reservation, settlement and reported usage: state reserved | settled | released.
# The audit trail; rolling rows name their bucket (``bucket_start``), which is what counts.
budget_ledger = sa.Table(
    "budget_ledger",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    tenant_column(),
    sa.Column("budget_id", sa.String(128), nullable=False),
    sa.Column("scope_key", sa.String(200), nullable=False),
    sa.Column("window_key", sa.String(128), nullable=False),
    sa.Column("metric", sa.String(200), nullable=False),
    sa.Column("action_id", sa.String(64)),
    sa.Column("run_id", sa.String(64)),
    sa.Column("amount", sa.BigInteger, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("bucket_start", TS),  # rolling windows only
    sa.Column("created_at", TS, nullable=False),
    sa.Column("updated_at", TS, nullable=False),
    sa.Index(None, "tenant_id", "budget_id", "scope_key", "created_at"),
    sa.Index(None, "tenant_id", "action_id"),
)

# Token buckets for rate limits, shared by every process on one database.
rate_buckets = sa.Table(
    "rate_buckets",
    metadata,
    tenant_column(),
    sa.Column("kind", sa.String(16), nullable=False),  # key | agent
    sa.Column("bucket_key", sa.String(200), nullable=False),
    sa.Column("tokens", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),  # epoch seconds
    sa.PrimaryKeyConstraint("tenant_id", "kind", "bucket_key"),
)
