"""Queries that resolve approvers: the tenant's approver directory and its deciding users.

An approver entry names humans: an e-mail address (a console user with a deciding role, or
an address on the tenant's directory), a group (the tenant's active users holding it and a
deciding role) or ``tenant-admins`` (the tenant's active admins). Every query filters on
``tenant_id``: one tenant's users never resolve another tenant's approvers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from warrantor.store.codec import utc_required as _req_utc
from warrantor.store.repo import Repo
from warrantor.store.schema_humans import approver_directory, users

_DECIDING = ("approver", "admin")


@dataclass(frozen=True)
class DirectoryEntry:
    address: str
    name: str
    created_at: datetime


@dataclass(frozen=True)
class Decider:
    """An active user of the tenant who holds a deciding role (approver or admin)."""

    email: str
    roles: tuple[str, ...]
    groups: tuple[str, ...]


def directory(repo: Repo, tenant_id: str) -> list[DirectoryEntry]:
    rows = repo.conn.execute(
        sa.select(approver_directory)
        .where(approver_directory.c.tenant_id == tenant_id)
        .order_by(approver_directory.c.address)
    )
    return [DirectoryEntry(r.address, r.name, _req_utc(r.created_at)) for r in rows]


def add_directory_entry(repo: Repo, tenant_id: str, address: str, name: str, now: datetime) -> bool:
    """Add ``address``; False when it is listed already (the listing is left as it was)."""
    exists = repo.conn.execute(
        sa.select(approver_directory.c.address).where(
            approver_directory.c.tenant_id == tenant_id, approver_directory.c.address == address
        )
    ).first()
    if exists is not None:
        return False
    repo.conn.execute(
        sa.insert(approver_directory).values(tenant_id=tenant_id, address=address, name=name, created_at=now)
    )
    return True


def remove_directory_entry(repo: Repo, tenant_id: str, address: str) -> bool:
    n = repo.conn.execute(
        sa.delete(approver_directory).where(
            approver_directory.c.tenant_id == tenant_id, approver_directory.c.address == address
        )
    ).rowcount
    return bool(n)


def deciders(repo: Repo, tenant_id: str) -> list[Decider]:
    """The tenant's active users with a deciding role, by e-mail."""
    rows = repo.conn.execute(
        sa.select(users.c.email, users.c.roles_json, users.c.groups_json)
        .where(users.c.tenant_id == tenant_id, users.c.disabled_at.is_(None))
        .order_by(users.c.email)
    )
    out = []
    for r in rows:
        roles = tuple(json.loads(r.roles_json))
        if any(role in _DECIDING for role in roles):
            out.append(Decider(r.email, roles, tuple(json.loads(r.groups_json))))
    return out
