"""Tables for the evidence area: execution confirmations and witness cosignatures.

``execution_confirmations`` holds one row per confirmed warrant; the UNIQUE constraint on
``statement_digest`` (sha256 of the signed in-toto statement, the DSSE payload, so neither
extra nor reordered signatures make a second key) is what makes
``POST /v1/confirm-execution`` succeed exactly once, even across processes.
``checkpoint_cosignatures`` keeps the C2SP tlog-cosignature lines that
configured witnesses sent for a stored checkpoint (one per witness key and size).

Imported at the end of schema.py so that one metadata holds every table.
"""

from __future__ import annotations

import sqlalchemy as sa

from warrantor.store.schema import TS, metadata, tenant_column

execution_confirmations = sa.Table(
    "execution_confirmations",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    tenant_column(),
    sa.Column("statement_digest", sa.String(64), nullable=False, unique=True),
    sa.Column("warrant_digest", sa.String(64), nullable=False),
    sa.Column("warrant_id", sa.String(64), nullable=False),
    sa.Column("action_id", sa.String(64), nullable=False),
    sa.Column("receipt_id", sa.String(64), nullable=False),
    sa.Column("integrity_hash", sa.String(64), nullable=False),
    sa.Column("matched", sa.Boolean, nullable=False),
    sa.Column("confirmed_at", TS, nullable=False),
    sa.Index(None, "tenant_id", "action_id"),
)

checkpoint_cosignatures = sa.Table(
    "checkpoint_cosignatures",
    metadata,
    sa.Column("size", sa.BigInteger, sa.ForeignKey("checkpoints.size"), nullable=False),
    sa.Column("key_hash", sa.String(8), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("line", sa.Text, nullable=False),
    sa.Column("cosigned_at", sa.BigInteger, nullable=False),
    sa.PrimaryKeyConstraint("size", "key_hash"),
)
