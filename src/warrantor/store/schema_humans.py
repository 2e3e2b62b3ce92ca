"""Tables for the humans area: users, console sessions, failed logins, cosignatures.

Imported at the end of schema.py so that one metadata holds every table. Queries live in
``repo_humans.py``; the use cases in ``service/approval/users.py``.

- ``users``: e-mail is unique across the deployment (it is the login name, and a login
  form has no tenant picker); only an argon2id hash of the password is stored (``!``, which
  matches nothing, for a user who has not set one through an invitation yet). A deleted
  user stays as a tombstone (``deleted_at`` set, e-mail freed, no roles, no usable
  password) so that cosignatures and decisions keep naming an existing user id.
- ``user_sessions``: the session id (160 random bits) lives only in the cookie; the table
  holds its sha256. Sessions expire after an idle period and after an absolute lifetime.
- ``login_failures``: one row per failed (or in-flight) login per e-mail, counted over a
  sliding window to stop password guessing. Keyed by e-mail rather than tenant, because a
  failed login belongs to no tenant yet.
- ``user_invitations``: single-use set-password links. The token (160 random bits) is
  only in the mailed link; the table holds its sha256, the user, the expiry and when it
  was used. A newer invitation, a password set any other way, disabling or deleting the
  user removes the user's outstanding rows, so an older link stops working.
- ``cosignatures``: a human's signed attestation on an action, one per user and action.
- ``approver_directory``: e-mail addresses an admin has declared as approvers of the
  tenant without a console account (they decide by e-mailed code only).
"""

from __future__ import annotations

import sqlalchemy as sa

from warrantor.store.schema import TS, metadata, tenant_column

users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    tenant_column(),
    sa.Column("email", sa.String(320), nullable=False, unique=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("password_hash", sa.String(255), nullable=False),
    sa.Column("roles_json", sa.Text, nullable=False),
    sa.Column("groups_json", sa.Text, nullable=False),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("disabled_at", TS),
    sa.Column("deleted_at", TS),
    sa.Index(None, "tenant_id", "created_at"),
)

user_sessions = sa.Table(
    "user_sessions",
    metadata,
    sa.Column("id_hash", sa.String(64), primary_key=True),
    tenant_column(),
    sa.Column("user_id", sa.String(64), sa.ForeignKey("users.id"), nullable=False),
    sa.Column("csrf_token", sa.String(64), nullable=False),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("last_seen_at", TS, nullable=False),
    sa.Column("expires_at", TS, nullable=False),
    sa.Index(None, "user_id"),
)

login_failures = sa.Table(
    "login_failures",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("email", sa.String(320), nullable=False),
    sa.Column("failed_at", TS, nullable=False),
    sa.Index(None, "email", "failed_at"),
)

user_invitations = sa.Table(
    "user_invitations",
    metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),
    tenant_column(),
    sa.Column("user_id", sa.String(64), sa.ForeignKey("users.id"), nullable=False),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("expires_at", TS, nullable=False),
    sa.Column("used_at", TS),
    sa.Index(None, "user_id"),
)

cosignatures = sa.Table(
    "cosignatures",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    tenant_column(),
    sa.Column("action_id", sa.String(64), sa.ForeignKey("actions.id"), nullable=False),
    sa.Column("user_id", sa.String(64), sa.ForeignKey("users.id"), nullable=False),
    sa.Column("email", sa.String(320), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("statement", sa.Text),
    sa.Column("evidence_id", sa.String(64)),
    sa.Column("created_at", TS, nullable=False),
    sa.UniqueConstraint("action_id", "user_id"),
    sa.Index(None, "tenant_id", "action_id"),
)

approver_directory = sa.Table(
    "approver_directory",
    metadata,
    tenant_column(),
    sa.Column("address", sa.String(254), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("created_at", TS, nullable=False),
    sa.PrimaryKeyConstraint("tenant_id", "address"),
)
