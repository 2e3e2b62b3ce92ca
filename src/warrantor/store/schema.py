"""The relational schema, as SQLAlchemy Core tables shared by SQLite and PostgreSQL.

Rows are not the domain model: the store turns rows into domain objects and back. Every
tenant-owned table carries ``tenant_id`` and every query filters on it. JSON documents are
stored as text (canonical where they are evidence) so both databases hold the same bytes.
Timestamps are stored as timezone-aware values in UTC.

Migrations live in ``store/migrations`` (Alembic); this module is what queries use.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "pk": "pk_%(table_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s",
    }
)

TS = sa.DateTime(timezone=True)


def tenant_column() -> sa.Column[str]:
    return sa.Column("tenant_id", sa.String(64), sa.ForeignKey("tenants.id"), nullable=False)


tenants = sa.Table(
    "tenants",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("created_at", TS, nullable=False),
)

operator_keys = sa.Table(
    "operator_keys",
    metadata,
    sa.Column("key_hash", sa.String(64), primary_key=True),
    sa.Column("created_at", TS, nullable=False),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    tenant_column(),
    sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("prefix", sa.String(16), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("agent_id", sa.String(200)),
    sa.Column("label", sa.String(200)),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("revoked_at", TS),
)

policy_bundles = sa.Table(
    "policy_bundles",
    metadata,
    tenant_column(),
    sa.Column("hash", sa.String(64), nullable=False),
    sa.Column("bundle_json", sa.Text, nullable=False),
    sa.Column("created_at", TS, nullable=False),
    sa.PrimaryKeyConstraint("tenant_id", "hash"),
)

# The bundle in force per tenant and mode ("enforce" or "shadow").
active_policies = sa.Table(
    "active_policies",
    metadata,
    tenant_column(),
    sa.Column("mode", sa.String(16), nullable=False),
    sa.Column("bundle_hash", sa.String(64), nullable=False),
    sa.Column("activated_at", TS, nullable=False),
    sa.Column("evidence_id", sa.String(64)),
    sa.PrimaryKeyConstraint("tenant_id", "mode"),
)

actions = sa.Table(
    "actions",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    tenant_column(),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("action_type", sa.String(200), nullable=False),
    sa.Column("agent_id", sa.String(200)),
    sa.Column("run_id", sa.String(64)),
    sa.Column("parent_action_id", sa.String(64)),
    sa.Column("parent_json", sa.Text),
    sa.Column("api_key_id", sa.String(64)),
    # The committed intent (erasable values replaced by salted digests, evidence/commitments.py);
    # the values and their salt live apart in details_json / details_salt, which erasure nulls.
    sa.Column("intent_json", sa.Text, nullable=False),
    sa.Column("intent_digest", sa.String(64), nullable=False),
    sa.Column("details_json", sa.Text),
    sa.Column("details_salt", sa.String(64)),
    sa.Column("decision_json", sa.Text, nullable=False),
    sa.Column("idempotency_key", sa.String(255)),
    sa.Column("request_hash", sa.String(64), nullable=False),
    sa.Column("response_status", sa.Integer, nullable=False),
    sa.Column("response_json", sa.Text, nullable=False),
    sa.Column("warrant_id", sa.String(64)),
    sa.Column("warrant_expires_at", TS),
    sa.Column("receipt_id", sa.String(64)),
    sa.Column("execution_json", sa.Text),
    sa.Column("legal_hold", sa.Boolean, nullable=False, default=False),
    sa.Column("erased_at", TS),  # when details_json, details_salt and the stored response were erased
    sa.Column("erasure_id", sa.String(64)),  # the erasure receipt that lists this action
    sa.Column("created_at", TS, nullable=False),
    sa.Column("updated_at", TS, nullable=False),
    sa.UniqueConstraint("tenant_id", "idempotency_key"),
    sa.Index(None, "tenant_id", "created_at"),
    sa.Index(None, "tenant_id", "status"),
    # The expiry sweep (every few seconds, across tenants): held or runnable actions past a
    # deadline are found without reading every action ever recorded.
    sa.Index(None, "status", "warrant_expires_at"),
)

approval_requests = sa.Table(
    "approval_requests",
    metadata,
    sa.Column("action_id", sa.String(64), sa.ForeignKey("actions.id"), primary_key=True),
    tenant_column(),
    sa.Column("approvers_json", sa.Text, nullable=False),
    sa.Column("quorum", sa.Integer, nullable=False),
    sa.Column("requirements_json", sa.Text, nullable=False, server_default="[]"),
    sa.Column("expires_at", TS, nullable=False),
    sa.Column("created_at", TS, nullable=False),
)

approval_codes = sa.Table(
    "approval_codes",
    metadata,
    sa.Column("code", sa.String(64), primary_key=True),
    tenant_column(),
    sa.Column("action_id", sa.String(64), sa.ForeignKey("actions.id"), nullable=False),
    sa.Column("approver", sa.String(320), nullable=False),
    sa.Column("expires_at", TS, nullable=False),
    sa.Column("used_at", TS),
    sa.Index(None, "action_id"),
)

approvals = sa.Table(
    "approvals",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    tenant_column(),
    sa.Column("action_id", sa.String(64), sa.ForeignKey("actions.id"), nullable=False),
    sa.Column("approver", sa.String(320), nullable=False),
    sa.Column("decision", sa.String(16), nullable=False),
    sa.Column("reason", sa.Text),
    sa.Column("via", sa.String(32), nullable=False),
    sa.Column("channel", sa.String(400), nullable=False, server_default=""),
    sa.Column("decided_at", TS, nullable=False),
    sa.UniqueConstraint("action_id", "approver"),
)

# Signed envelopes: warrants, receipts, policy activations, legal holds, erasures.
evidence = sa.Table(
    "evidence",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    tenant_column(),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("action_id", sa.String(64)),
    sa.Column("envelope_json", sa.Text, nullable=False),
    sa.Column("envelope_digest", sa.String(64), nullable=False),
    sa.Column("log_index", sa.BigInteger, unique=True),
    sa.Column("timestamp_token", sa.LargeBinary),
    sa.Column("created_at", TS, nullable=False),
    # Receipts, legal holds and erasures: the tenant's gap-free record sequence (1, 2, ...),
    # also signed inside the statement (store/sequencing.py).
    sa.Column("tenant_seq", sa.BigInteger),
    sa.Index(None, "tenant_id", "action_id"),
    sa.UniqueConstraint("tenant_id", "tenant_seq"),
)

# One append-only log per deployment: the leaf entry is sha256 of the canonical envelope.
log_entries = sa.Table(
    "log_entries",
    metadata,
    sa.Column("idx", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("entry", sa.LargeBinary(32), nullable=False),
    sa.Column("evidence_id", sa.String(64), nullable=False),
    sa.Column("created_at", TS, nullable=False),
)

# Single-row counters: log size (dense indices assigned under this row's lock),
# integrated size, TSA serial numbers.
counters = sa.Table(
    "counters",
    metadata,
    sa.Column("name", sa.String(32), primary_key=True),
    sa.Column("value", sa.BigInteger, nullable=False),
)

checkpoints = sa.Table(
    "checkpoints",
    metadata,
    sa.Column("size", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("root_hash", sa.LargeBinary(32), nullable=False),
    sa.Column("note", sa.Text, nullable=False),
    sa.Column("timestamp_token", sa.LargeBinary),
    sa.Column("created_at", TS, nullable=False),
)

signing_keys = sa.Table(
    "signing_keys",
    metadata,
    sa.Column("keyid", sa.String(64), primary_key=True),
    sa.Column("public_key", sa.LargeBinary(32), nullable=False),
    sa.Column("not_before", TS, nullable=False),
    sa.Column("not_after", TS),
)


# Areas with tables of their own; imported last so they can use ``metadata`` above.
from warrantor.store import (  # noqa: E402, F401
    schema_evidence,
    schema_grants,
    schema_guard,
    schema_humans,
    schema_records,
)
