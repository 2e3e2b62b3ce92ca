"""Tables for end-user grants, confirmations and webhooks.

- ``grants``: an end user's delegation to an agent (``auth_...``), scopes as JSON.
- ``confirmation_nonces``: one row per ``cnf_`` nonce, keyed by its sha256 (the nonce
  itself is never stored here); ``action_id`` is set when the nonce holds an action in
  ``pending_confirmation``. Single use: ``consumed_at`` is set by a conditional UPDATE.
- ``confirmed_scopes``: what an approved confirmation grants: the exact
  (authorization_id, scope, resource) checks as allowed until ``expires_at``.
- ``webhook_endpoints``, ``webhook_deliveries`` (the durable outbox, one row per event and
  endpoint) and ``webhook_attempts`` (the delivery log).

Imported at the end of schema.py so that one metadata holds every table.
"""

from __future__ import annotations

import sqlalchemy as sa

from warrantor.store.schema import TS, metadata, tenant_column

grants = sa.Table(
    "grants",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    tenant_column(),
    sa.Column("agent_id", sa.String(200), nullable=False),
    sa.Column("subject", sa.String(200), nullable=False),
    sa.Column("scopes_json", sa.Text, nullable=False),
    sa.Column("expires_at", TS),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("revoked_at", TS),
    sa.Column("created_by_key_id", sa.String(64)),
    sa.Index(None, "tenant_id", "created_at"),
)

confirmation_nonces = sa.Table(
    "confirmation_nonces",
    metadata,
    sa.Column("nonce_hash", sa.String(64), primary_key=True),
    tenant_column(),
    sa.Column("authorization_id", sa.String(64), nullable=False),
    sa.Column("scope", sa.String(128), nullable=False),
    sa.Column("resource", sa.String(512), nullable=False),
    sa.Column("prompt_hint", sa.String(500)),
    # No foreign key: the nonce row is written just before its action in one transaction.
    sa.Column("action_id", sa.String(64)),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("expires_at", TS, nullable=False),
    sa.Column("consumed_at", TS),
    sa.Column("decision", sa.String(16)),
    sa.Index(None, "tenant_id", "authorization_id"),
)

confirmed_scopes = sa.Table(
    "confirmed_scopes",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    tenant_column(),
    sa.Column("authorization_id", sa.String(64), nullable=False),
    sa.Column("scope", sa.String(128), nullable=False),
    sa.Column("resource", sa.String(512), nullable=False),
    sa.Column("nonce_hash", sa.String(64), nullable=False),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("expires_at", TS, nullable=False),
    sa.Index(None, "tenant_id", "authorization_id", "scope"),
)

webhook_endpoints = sa.Table(
    "webhook_endpoints",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    tenant_column(),
    sa.Column("url", sa.String(2048), nullable=False),
    sa.Column("events_json", sa.Text, nullable=False),
    # The HMAC key must be readable to sign; it is shown to the admin once, at creation.
    sa.Column("secret", sa.String(128), nullable=False),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("deleted_at", TS),
    sa.Index(None, "tenant_id"),
)

webhook_deliveries = sa.Table(
    "webhook_deliveries",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),  # the ``webhook-id`` header
    tenant_column(),
    sa.Column("endpoint_id", sa.String(64), sa.ForeignKey("webhook_endpoints.id"), nullable=False),
    sa.Column("event_type", sa.String(64), nullable=False),
    sa.Column("body", sa.Text, nullable=False),  # the exact bytes that are signed and sent
    sa.Column("status", sa.String(16), nullable=False),  # pending | delivering | delivered | failed | cancelled
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("next_attempt_at", TS, nullable=False),
    sa.Column("claimed_until", TS),
    sa.Column("last_status_code", sa.Integer),
    sa.Column("last_error", sa.String(500)),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("delivered_at", TS),
    sa.Index(None, "status", "next_attempt_at"),
    sa.Index(None, "tenant_id", "endpoint_id", "created_at"),
)

webhook_attempts = sa.Table(
    "webhook_attempts",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    tenant_column(),
    sa.Column("delivery_id", sa.String(64), sa.ForeignKey("webhook_deliveries.id"), nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("status_code", sa.Integer),
    sa.Column("error", sa.String(500)),
    sa.Column("started_at", TS, nullable=False),
    sa.Column("duration_ms", sa.Integer, nullable=False),
    sa.Index(None, "delivery_id"),
)
