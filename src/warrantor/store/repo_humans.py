"""Queries for the humans area: users, sessions, failed logins, cosignatures.

Plain functions over a ``Repo`` (one open transaction). Every tenant-owned query filters on
``tenant_id``; the two lookups that cannot (a login by e-mail, a session by its hashed id)
return the row's tenant so the caller binds everything after them to it. The records here
are frozen dataclasses, built from rows; the password hash never leaves ``UserRecord``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import RowMapping

from warrantor.domain.clock import isoformat
from warrantor.store.codec import utc as _utc
from warrantor.store.codec import utc_required as _req_utc
from warrantor.store.repo import Repo
from warrantor.store.schema import actions, tenants
from warrantor.store.schema_humans import cosignatures, login_failures, user_invitations, user_sessions, users


@dataclass(frozen=True)
class User:
    id: str
    tenant_id: str
    email: str
    name: str
    roles: tuple[str, ...]
    groups: tuple[str, ...]
    created_at: datetime
    disabled_at: datetime | None = None
    deleted_at: datetime | None = None
    password_set: bool = True  # False until an invited user sets one (never the hash itself)

    def to_dict(self) -> dict[str, Any]:
        return {
            "user_id": self.id,
            "tenant_id": self.tenant_id,
            "email": self.email,
            "name": self.name,
            "roles": list(self.roles),
            "groups": list(self.groups),
            "created_at": isoformat(self.created_at),
            "disabled": self.disabled_at is not None,
            "password_set": self.password_set,
        }


@dataclass(frozen=True)
class UserRecord:
    """A user with the stored password hash: only the login path needs the hash."""

    user: User
    password_hash: str


@dataclass(frozen=True)
class Session:
    id_hash: str
    tenant_id: str
    user_id: str
    csrf_token: str
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime


@dataclass(frozen=True)
class Cosignature:
    id: str
    tenant_id: str
    action_id: str
    user_id: str
    email: str
    name: str
    statement: str | None
    evidence_id: str | None
    created_at: datetime


# -- users ------------------------------------------------------------------------------
def insert_user(repo: Repo, user: User, password_hash: str | None) -> None:
    """``password_hash`` None: an invited user, who cannot log in until they set one."""
    repo.conn.execute(
        sa.insert(users).values(
            id=user.id,
            tenant_id=user.tenant_id,
            email=user.email,
            name=user.name,
            password_hash=password_hash or _NO_PASSWORD,
            roles_json=json.dumps(list(user.roles)),
            groups_json=json.dumps(list(user.groups)),
            created_at=user.created_at,
        )
    )


def email_taken(repo: Repo, email: str) -> bool:
    return repo.conn.execute(sa.select(users.c.id).where(users.c.email == email)).first() is not None


def user_by_email(repo: Repo, email: str) -> UserRecord | None:
    """The login lookup: e-mail is unique across tenants, so this names one tenant."""
    row = repo.conn.execute(
        sa.select(users).where(users.c.email == email, users.c.deleted_at.is_(None))
    ).first()
    return None if row is None else UserRecord(_user(row._mapping), row._mapping["password_hash"])


def live_user_record(repo: Repo, tenant_id: str, user_id: str) -> UserRecord | None:
    """A user of this tenant that is not deleted, with its password hash."""
    row = repo.conn.execute(
        sa.select(users).where(users.c.tenant_id == tenant_id, users.c.id == user_id, users.c.deleted_at.is_(None))
    ).first()
    return None if row is None else UserRecord(_user(row._mapping), row._mapping["password_hash"])


def update_user(
    repo: Repo, tenant_id: str, user_id: str, *, roles: tuple[str, ...], groups: tuple[str, ...],
    disabled_at: datetime | None,
) -> None:
    repo.conn.execute(
        sa.update(users)
        .where(users.c.tenant_id == tenant_id, users.c.id == user_id)
        .values(roles_json=json.dumps(list(roles)), groups_json=json.dumps(list(groups)), disabled_at=disabled_at)
    )


def set_password_hash(repo: Repo, tenant_id: str, user_id: str, password_hash: str) -> None:
    repo.conn.execute(
        sa.update(users).where(users.c.tenant_id == tenant_id, users.c.id == user_id)
        .values(password_hash=password_hash)
    )


_NO_PASSWORD = "!"  # noqa: S105 - not an argon2 hash: verifying any password against it fails


def tombstone_user(repo: Repo, tenant_id: str, user_id: str, now: datetime) -> None:
    """Delete a user but keep its id: e-mail freed (``deleted:<id>`` can never be a login
    name), no roles or groups, a password hash that matches nothing, disabled."""
    repo.conn.execute(
        sa.update(users).where(users.c.tenant_id == tenant_id, users.c.id == user_id).values(
            email=f"deleted:{user_id}", password_hash=_NO_PASSWORD, roles_json="[]", groups_json="[]",
            disabled_at=now, deleted_at=now,
        )
    )


def lock_tenant(repo: Repo, tenant_id: str) -> None:
    """Serialize changes to one tenant's users across processes (a row lock on PostgreSQL;
    SQLite's single writer already serializes)."""
    if repo.dialect == "postgresql":
        repo.conn.execute(sa.select(tenants.c.id).where(tenants.c.id == tenant_id).with_for_update())


def get_user(repo: Repo, tenant_id: str, user_id: str) -> User | None:
    row = repo.conn.execute(
        sa.select(users).where(users.c.tenant_id == tenant_id, users.c.id == user_id)
    ).first()
    return None if row is None else _user(row._mapping)


def list_users(repo: Repo, tenant_id: str) -> list[User]:
    """The tenant's users, deleted ones left out."""
    rows = repo.conn.execute(
        sa.select(users).where(users.c.tenant_id == tenant_id, users.c.deleted_at.is_(None))
        .order_by(users.c.created_at, users.c.id)
    )
    return [_user(r._mapping) for r in rows]


def _user(m: RowMapping) -> User:
    return User(
        id=m["id"],
        tenant_id=m["tenant_id"],
        email=m["email"],
        name=m["name"],
        roles=tuple(json.loads(m["roles_json"])),
        groups=tuple(json.loads(m["groups_json"])),
        created_at=_req_utc(m["created_at"]),
        disabled_at=_utc(m["disabled_at"]),
        deleted_at=_utc(m["deleted_at"]),
        password_set=m["password_hash"] != _NO_PASSWORD,
    )


# -- sessions ---------------------------------------------------------------------------
def insert_session(repo: Repo, session: Session) -> None:
    repo.conn.execute(
        sa.insert(user_sessions).values(
            id_hash=session.id_hash,
            tenant_id=session.tenant_id,
            user_id=session.user_id,
            csrf_token=session.csrf_token,
            created_at=session.created_at,
            last_seen_at=session.last_seen_at,
            expires_at=session.expires_at,
        )
    )


def session_by_hash(repo: Repo, id_hash: str) -> Session | None:
    row = repo.conn.execute(sa.select(user_sessions).where(user_sessions.c.id_hash == id_hash)).first()
    if row is None:
        return None
    m = row._mapping
    return Session(
        id_hash=m["id_hash"],
        tenant_id=m["tenant_id"],
        user_id=m["user_id"],
        csrf_token=m["csrf_token"],
        created_at=_req_utc(m["created_at"]),
        last_seen_at=_req_utc(m["last_seen_at"]),
        expires_at=_req_utc(m["expires_at"]),
    )


def touch_session(repo: Repo, id_hash: str, now: datetime) -> None:
    repo.conn.execute(
        sa.update(user_sessions).where(user_sessions.c.id_hash == id_hash).values(last_seen_at=now)
    )


def delete_session(repo: Repo, id_hash: str) -> bool:
    result = repo.conn.execute(sa.delete(user_sessions).where(user_sessions.c.id_hash == id_hash))
    return bool(result.rowcount)


def delete_user_sessions(repo: Repo, tenant_id: str, user_id: str) -> int:
    """End every session of one user (disabled, deleted, or a new password)."""
    result = repo.conn.execute(
        sa.delete(user_sessions).where(user_sessions.c.tenant_id == tenant_id, user_sessions.c.user_id == user_id)
    )
    return int(result.rowcount or 0)


def delete_stale_sessions(repo: Repo, idle_before: datetime, now: datetime) -> int:
    result = repo.conn.execute(
        sa.delete(user_sessions).where(
            sa.or_(user_sessions.c.last_seen_at < idle_before, user_sessions.c.expires_at <= now)
        )
    )
    return int(result.rowcount or 0)


# -- invitations (set-password links) ----------------------------------------------------
@dataclass(frozen=True)
class Invitation:
    token_hash: str
    tenant_id: str
    user_id: str
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None


def clear_password(repo: Repo, tenant_id: str, user_id: str) -> None:
    """Make the user's password unusable (a reset by link: the old one stops working)."""
    set_password_hash(repo, tenant_id, user_id, _NO_PASSWORD)


def insert_invitation(repo: Repo, inv: Invitation) -> None:
    repo.conn.execute(sa.insert(user_invitations).values(
        token_hash=inv.token_hash, tenant_id=inv.tenant_id, user_id=inv.user_id,
        created_at=inv.created_at, expires_at=inv.expires_at, used_at=inv.used_at,
    ))


def invitation_by_hash(repo: Repo, token_hash: str) -> Invitation | None:
    """The lookup by the link's token: it names one tenant and user, bound to from then on."""
    row = repo.conn.execute(sa.select(user_invitations).where(user_invitations.c.token_hash == token_hash)).first()
    if row is None:
        return None
    m = row._mapping
    return Invitation(m["token_hash"], m["tenant_id"], m["user_id"], _req_utc(m["created_at"]),
                      _req_utc(m["expires_at"]), _utc(m["used_at"]))


def use_invitation(repo: Repo, token_hash: str, now: datetime) -> bool:
    """Mark an unused invitation used; False when another request used it first."""
    result = repo.conn.execute(
        sa.update(user_invitations)
        .where(user_invitations.c.token_hash == token_hash, user_invitations.c.used_at.is_(None))
        .values(used_at=now)
    )
    return bool(result.rowcount)


def void_invitations(repo: Repo, tenant_id: str, user_id: str) -> int:
    """Remove every invitation of one user: its links stop working (unknown from now on)."""
    result = repo.conn.execute(sa.delete(user_invitations).where(
        user_invitations.c.tenant_id == tenant_id, user_invitations.c.user_id == user_id))
    return int(result.rowcount or 0)


# -- failed logins ----------------------------------------------------------------------
_LOGIN_LOCK_SPACE = 0x4C47_4E00  # "LGN": the high half of the per-e-mail advisory lock key


def lock_login_email(repo: Repo, email: str) -> None:
    """Serialize count-then-insert of failed logins for one e-mail across processes.

    PostgreSQL: a transaction-scoped advisory lock keyed by (namespace, 32 bits of the
    e-mail's sha256), released at commit; two e-mails sharing a key only wait for each
    other. SQLite: the writer's ``BEGIN IMMEDIATE`` already holds the database's write lock.
    """
    if repo.dialect != "postgresql":
        return
    low = int.from_bytes(hashlib.sha256(email.encode()).digest()[:4], "big", signed=True)
    repo.conn.execute(
        sa.text("SELECT pg_advisory_xact_lock(CAST(:hi AS integer), CAST(:lo AS integer))"),
        {"hi": _LOGIN_LOCK_SPACE, "lo": low},
    )


def count_login_failures(repo: Repo, email: str, since: datetime) -> int:
    q = sa.select(sa.func.count()).select_from(login_failures).where(
        login_failures.c.email == email, login_failures.c.failed_at > since
    )
    return int(repo.conn.execute(q).scalar_one())


def oldest_login_failure(repo: Repo, email: str, since: datetime) -> datetime | None:
    q = sa.select(sa.func.min(login_failures.c.failed_at)).where(
        login_failures.c.email == email, login_failures.c.failed_at > since
    )
    return _utc(repo.conn.execute(q).scalar_one())


def insert_login_failure(repo: Repo, failure_id: str, email: str, now: datetime) -> None:
    repo.conn.execute(sa.insert(login_failures).values(id=failure_id, email=email, failed_at=now))


def clear_login_failures(repo: Repo, email: str, older_than: datetime | None = None) -> None:
    q = sa.delete(login_failures).where(login_failures.c.email == email)
    if older_than is not None:
        q = q.where(login_failures.c.failed_at <= older_than)
    repo.conn.execute(q)


# -- cosignatures -----------------------------------------------------------------------
def insert_cosignature(repo: Repo, c: Cosignature) -> None:
    repo.conn.execute(
        sa.insert(cosignatures).values(
            id=c.id,
            tenant_id=c.tenant_id,
            action_id=c.action_id,
            user_id=c.user_id,
            email=c.email,
            name=c.name,
            statement=c.statement,
            evidence_id=c.evidence_id,
            created_at=c.created_at,
        )
    )


def has_cosigned(repo: Repo, tenant_id: str, action_id: str, user_id: str) -> bool:
    q = sa.select(cosignatures.c.id).where(
        cosignatures.c.tenant_id == tenant_id,
        cosignatures.c.action_id == action_id,
        cosignatures.c.user_id == user_id,
    )
    return repo.conn.execute(q).first() is not None


def cosignatures_for(repo: Repo, tenant_id: str, action_id: str) -> list[Cosignature]:
    rows = repo.conn.execute(
        sa.select(cosignatures)
        .where(cosignatures.c.tenant_id == tenant_id, cosignatures.c.action_id == action_id)
        .order_by(cosignatures.c.created_at, cosignatures.c.id)
    )
    return [
        Cosignature(
            id=m["id"], tenant_id=m["tenant_id"], action_id=m["action_id"], user_id=m["user_id"],
            email=m["email"], name=m["name"], statement=m["statement"],
            evidence_id=m["evidence_id"], created_at=_req_utc(m["created_at"]),
        )
        for m in (r._mapping for r in rows)
    ]


def cosignatures_view(repo: Repo, tenant_id: str, action_id: str) -> list[dict[str, Any]]:
    """What ``GET /v1/actions/{id}`` shows under ``cosignatures``."""
    out: list[dict[str, Any]] = []
    for c in cosignatures_for(repo, tenant_id, action_id):
        ev = repo.get_evidence(tenant_id, c.evidence_id) if c.evidence_id else None
        out.append({
            "cosignature_id": c.id,
            "user_id": c.user_id,
            "email": c.email,
            "name": c.name,
            "statement": c.statement,
            "created_at": isoformat(c.created_at),
            "envelope": ev.envelope if ev else None,
            "log_index": ev.log_index if ev else None,
        })
    return out


# -- console statistics -----------------------------------------------------------------
def decisions_by_day(repo: Repo, tenant_id: str, since: datetime) -> list[tuple[str, str, int]]:
    """(UTC day ``YYYY-MM-DD``, decision effect, count) for actions created since ``since``.

    The effect is read from the stored decision document inside the database (SQLite
    ``json_extract``, PostgreSQL ``->>``), so the page costs one grouped scan of the
    tenant's recent rows, not one JSON parse per action in Python.
    """
    col = actions.c.decision_json
    if repo.dialect == "postgresql":
        effect: Any = sa.cast(col, postgresql.JSONB)["effect"].astext
        day: Any = sa.func.to_char(sa.func.timezone("UTC", actions.c.created_at), "YYYY-MM-DD")
    else:
        effect = sa.func.json_extract(col, "$.effect")
        day = sa.func.substr(sa.cast(actions.c.created_at, sa.String), 1, 10)
    q = (
        sa.select(day.label("day"), effect.label("effect"), sa.func.count().label("n"))
        .where(actions.c.tenant_id == tenant_id, actions.c.created_at >= since)
        .group_by(day, effect)
    )
    return [(str(r.day), str(r.effect or "unknown"), int(r.n)) for r in repo.conn.execute(q)]


def pending_created_at(repo: Repo, tenant_id: str, limit: int = 5000) -> list[datetime]:
    """Creation times of the tenant's actions awaiting approval, oldest first."""
    q = (
        sa.select(actions.c.created_at)
        .where(actions.c.tenant_id == tenant_id, actions.c.status == "pending_approval")
        .order_by(actions.c.created_at)
        .limit(limit)
    )
    return [_req_utc(r[0]) for r in repo.conn.execute(q)]


def count_by_status(repo: Repo, tenant_id: str) -> dict[str, int]:
    q = (
        sa.select(actions.c.status, sa.func.count())
        .where(actions.c.tenant_id == tenant_id)
        .group_by(actions.c.status)
    )
    return {str(r[0]): int(r[1]) for r in repo.conn.execute(q)}
