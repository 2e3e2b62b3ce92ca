"""Tables for records management: the record sequence, retention, the audit file outbox.

- ``record_sequences``: one counter row per tenant. Every receipt, legal hold and erasure
  receipt of the tenant gets the next number (1, 2, ...) when its write batch is sequenced;
  the row lock taken by ``UPDATE ... RETURNING`` makes the numbers gap-free and unique
  across processes (``store/sequencing.py``).
- ``tenant_retention``: how long an action's erasable details are kept, per tenant, and how
  far the retention job has got (``scanned_before``: every action created before it has been
  erased or is held, or was not yet ended when last seen and lowered it again).
- ``audit_outbox``: one row per state change while ``WARRANTOR_AUDIT_FILE`` is set, written
  in the change's own transaction and deleted once its line is in the file and synced.

Imported at the end of schema.py so that one metadata holds every table.
"""

from __future__ import annotations

import sqlalchemy as sa

from warrantor.store.schema import TS, metadata

record_sequences = sa.Table(
    "record_sequences",
    metadata,
    sa.Column("tenant_id", sa.String(64), sa.ForeignKey("tenants.id"), primary_key=True),
    sa.Column("value", sa.BigInteger, nullable=False),  # the last number handed out
)

tenant_retention = sa.Table(
    "tenant_retention",
    metadata,
    sa.Column("tenant_id", sa.String(64), sa.ForeignKey("tenants.id"), primary_key=True),
    sa.Column("details_days", sa.Integer),  # None: kept until erased on request
    sa.Column("scanned_before", TS),
    sa.Column("updated_at", TS, nullable=False),
)

audit_outbox = sa.Table(
    "audit_outbox",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("line", sa.Text, nullable=False),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("claimed_until", TS),  # a lease: another process may take it once it runs out
)
