"""Queries for grants, confirmation nonces and webhooks: plain functions over a ``Repo``.

Every query filters on ``tenant_id``. What must be atomic across processes is done in the
database: a nonce is consumed by ``UPDATE ... WHERE consumed_at IS NULL`` (exactly one
caller sees a row count of 1), and the webhook dispatcher claims outbox rows with
``FOR UPDATE SKIP LOCKED`` on PostgreSQL (SQLite has a single writer per database file).

The records returned here are frozen dataclasses (the grants area has no module in
``domain/`` of its own); rows never leave this module.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import RowMapping

from warrantor.store import Repo
from warrantor.store import schema_grants as g
from warrantor.store.codec import dumps, utc, utc_required

_utc = utc
_req = utc_required


_dumps = dumps


# -- records ----------------------------------------------------------------------------
@dataclass(frozen=True)
class ScopeGrant:
    scope: str
    decision: str  # "allow" | "confirm"
    resources: tuple[str, ...]
    confirm_prompt_hint: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"scope": self.scope, "decision": self.decision, "resources": list(self.resources)}
        if self.confirm_prompt_hint is not None:
            out["confirm_prompt_hint"] = self.confirm_prompt_hint
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ScopeGrant:
        return cls(d["scope"], d["decision"], tuple(d["resources"]), d.get("confirm_prompt_hint"))


@dataclass(frozen=True)
class Grant:
    id: str
    tenant_id: str
    agent_id: str
    subject: str
    scopes: tuple[ScopeGrant, ...]
    expires_at: datetime | None
    created_at: datetime
    revoked_at: datetime | None = None
    created_by_key_id: str | None = None

    def scope(self, name: str) -> ScopeGrant | None:
        return next((s for s in self.scopes if s.scope == name), None)


@dataclass(frozen=True)
class Nonce:
    nonce_hash: str
    tenant_id: str
    authorization_id: str
    scope: str
    resource: str
    prompt_hint: str | None
    action_id: str | None
    created_at: datetime
    expires_at: datetime
    consumed_at: datetime | None = None
    decision: str | None = None


@dataclass(frozen=True)
class Endpoint:
    id: str
    tenant_id: str
    url: str
    events: tuple[str, ...]
    secret: str
    created_at: datetime


@dataclass(frozen=True)
class Delivery:
    id: str
    tenant_id: str
    endpoint_id: str
    event_type: str
    body: str
    status: str
    attempts: int
    next_attempt_at: datetime
    created_at: datetime
    delivered_at: datetime | None
    last_status_code: int | None
    last_error: str | None


@dataclass(frozen=True)
class Attempt:
    attempt: int
    status_code: int | None
    error: str | None
    started_at: datetime
    duration_ms: int


# -- grants -----------------------------------------------------------------------------
def insert_grant(repo: Repo, grant: Grant) -> None:
    repo.conn.execute(sa.insert(g.grants).values(
        id=grant.id, tenant_id=grant.tenant_id, agent_id=grant.agent_id, subject=grant.subject,
        scopes_json=_dumps([s.to_dict() for s in grant.scopes]), expires_at=grant.expires_at,
        created_at=grant.created_at, revoked_at=None, created_by_key_id=grant.created_by_key_id,
    ))


def get_grant(repo: Repo, tenant_id: str, grant_id: str) -> Grant | None:
    row = repo.conn.execute(
        sa.select(g.grants).where(g.grants.c.tenant_id == tenant_id, g.grants.c.id == grant_id)
    ).first()
    if row is None:
        return None
    m = row._mapping
    return Grant(
        m["id"], m["tenant_id"], m["agent_id"], m["subject"],
        tuple(ScopeGrant.from_dict(s) for s in json.loads(m["scopes_json"])),
        _utc(m["expires_at"]), _req(m["created_at"]), _utc(m["revoked_at"]), m["created_by_key_id"],
    )


def revoke_grant(repo: Repo, tenant_id: str, grant_id: str, now: datetime) -> None:
    """Revoke once; unconsumed nonces and live confirmations of the grant end with it."""
    repo.conn.execute(
        sa.update(g.grants)
        .where(g.grants.c.tenant_id == tenant_id, g.grants.c.id == grant_id, g.grants.c.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    n = g.confirmation_nonces.c
    repo.conn.execute(
        sa.update(g.confirmation_nonces)
        .where(n.tenant_id == tenant_id, n.authorization_id == grant_id, n.consumed_at.is_(None))
        .values(consumed_at=now, decision="revoked")
    )
    c = g.confirmed_scopes.c
    repo.conn.execute(
        sa.update(g.confirmed_scopes)
        .where(c.tenant_id == tenant_id, c.authorization_id == grant_id, c.expires_at > now)
        .values(expires_at=now)
    )


# -- nonces and confirmed scopes -------------------------------------------------------
def insert_nonce(repo: Repo, nonce: Nonce) -> None:
    repo.conn.execute(sa.insert(g.confirmation_nonces).values(
        nonce_hash=nonce.nonce_hash, tenant_id=nonce.tenant_id, authorization_id=nonce.authorization_id,
        scope=nonce.scope, resource=nonce.resource, prompt_hint=nonce.prompt_hint, action_id=nonce.action_id,
        created_at=nonce.created_at, expires_at=nonce.expires_at, consumed_at=None, decision=None,
    ))


def get_nonce(repo: Repo, tenant_id: str, nonce_hash: str) -> Nonce | None:
    row = repo.conn.execute(
        sa.select(g.confirmation_nonces).where(
            g.confirmation_nonces.c.tenant_id == tenant_id,
            g.confirmation_nonces.c.nonce_hash == nonce_hash,
        )
    ).first()
    if row is None:
        return None
    m = row._mapping
    return Nonce(
        m["nonce_hash"], m["tenant_id"], m["authorization_id"], m["scope"], m["resource"], m["prompt_hint"],
        m["action_id"], _req(m["created_at"]), _req(m["expires_at"]), _utc(m["consumed_at"]), m["decision"],
    )


def consume_nonce(repo: Repo, tenant_id: str, nonce_hash: str, decision: str, now: datetime) -> bool:
    """Mark a live nonce used; True for exactly one caller, however many race."""
    n = g.confirmation_nonces.c
    count = repo.conn.execute(
        sa.update(g.confirmation_nonces)
        .where(n.tenant_id == tenant_id, n.nonce_hash == nonce_hash, n.consumed_at.is_(None), n.expires_at > now)
        .values(consumed_at=now, decision=decision)
    ).rowcount
    return count == 1


def insert_confirmed_scope(
    repo: Repo, row_id: str, nonce: Nonce, now: datetime, expires_at: datetime
) -> None:
    repo.conn.execute(sa.insert(g.confirmed_scopes).values(
        id=row_id, tenant_id=nonce.tenant_id, authorization_id=nonce.authorization_id, scope=nonce.scope,
        resource=nonce.resource, nonce_hash=nonce.nonce_hash, created_at=now, expires_at=expires_at,
    ))


def confirmed_until(
    repo: Repo, tenant_id: str, authorization_id: str, scope: str, resource: str, now: datetime
) -> datetime | None:
    """The latest expiry of a live confirmation of exactly this triple, if any."""
    c = g.confirmed_scopes.c
    value = repo.conn.execute(
        sa.select(sa.func.max(c.expires_at)).where(
            c.tenant_id == tenant_id, c.authorization_id == authorization_id, c.scope == scope,
            c.resource == resource, c.expires_at > now,
        )
    ).scalar()
    return _utc(value)


# -- webhook endpoints ------------------------------------------------------------------
def insert_endpoint(repo: Repo, ep: Endpoint) -> None:
    repo.conn.execute(sa.insert(g.webhook_endpoints).values(
        id=ep.id, tenant_id=ep.tenant_id, url=ep.url, events_json=_dumps(list(ep.events)),
        secret=ep.secret, created_at=ep.created_at, deleted_at=None,
    ))


def _endpoint(m: RowMapping) -> Endpoint:
    return Endpoint(m["id"], m["tenant_id"], m["url"], tuple(json.loads(m["events_json"])), m["secret"],
                    _req(m["created_at"]))


_LIST_ENDPOINTS = (  # built once: every event of every action reads it (repo.py's note)
    sa.select(g.webhook_endpoints)
    .where(g.webhook_endpoints.c.tenant_id == sa.bindparam("b_tenant_id"), g.webhook_endpoints.c.deleted_at.is_(None))
    .order_by(g.webhook_endpoints.c.created_at, g.webhook_endpoints.c.id)
)


def list_endpoints(repo: Repo, tenant_id: str) -> list[Endpoint]:
    rows = repo.conn.execute(_LIST_ENDPOINTS, {"b_tenant_id": tenant_id}).all()
    return [_endpoint(r._mapping) for r in rows]


def get_endpoint(repo: Repo, tenant_id: str, endpoint_id: str) -> Endpoint | None:
    e = g.webhook_endpoints.c
    row = repo.conn.execute(
        sa.select(g.webhook_endpoints).where(e.tenant_id == tenant_id, e.id == endpoint_id, e.deleted_at.is_(None))
    ).first()
    return _endpoint(row._mapping) if row else None


def delete_endpoint(repo: Repo, tenant_id: str, endpoint_id: str, now: datetime) -> bool:
    e, d = g.webhook_endpoints.c, g.webhook_deliveries.c
    n = repo.conn.execute(
        sa.update(g.webhook_endpoints)
        .where(e.tenant_id == tenant_id, e.id == endpoint_id, e.deleted_at.is_(None))
        .values(deleted_at=now)
    ).rowcount
    repo.conn.execute(
        sa.update(g.webhook_deliveries)
        .where(d.tenant_id == tenant_id, d.endpoint_id == endpoint_id, d.status == "pending")
        .values(status="cancelled")
    )
    return bool(n)


# -- the outbox -------------------------------------------------------------------------
def insert_delivery(repo: Repo, delivery_id: str, tenant_id: str, endpoint_id: str, event_type: str,
                    body: str, now: datetime) -> None:
    repo.conn.execute(sa.insert(g.webhook_deliveries).values(
        id=delivery_id, tenant_id=tenant_id, endpoint_id=endpoint_id, event_type=event_type, body=body,
        status="pending", attempts=0, next_attempt_at=now, claimed_until=None, created_at=now,
    ))


def _delivery(m: RowMapping) -> Delivery:
    return Delivery(
        m["id"], m["tenant_id"], m["endpoint_id"], m["event_type"], m["body"], m["status"], m["attempts"],
        _req(m["next_attempt_at"]), _req(m["created_at"]), _utc(m["delivered_at"]), m["last_status_code"],
        m["last_error"],
    )


def claim_deliveries(repo: Repo, now: datetime, lease_until: datetime, limit: int,
                     skip_endpoints: Collection[str] = ()) -> list[tuple[Delivery, Endpoint]]:
    """Claim due deliveries for one sender: each row is handed to exactly one claimer.

    A claim is a lease: a sender that dies mid-delivery leaves a row in ``delivering``
    whose lease runs out, and the row is claimed again (at-least-once after a crash).
    ``skip_endpoints``: endpoints the sender is still busy with (claimed on a later pass).
    """
    d = g.webhook_deliveries.c
    due = sa.or_(
        sa.and_(d.status == "pending", d.next_attempt_at <= now),
        sa.and_(d.status == "delivering", d.claimed_until < now),
    )
    q = sa.select(d.id).where(due).order_by(d.next_attempt_at).limit(limit)
    if skip_endpoints:
        q = q.where(d.endpoint_id.not_in(list(skip_endpoints)))
    if repo.dialect == "postgresql":
        q = q.with_for_update(skip_locked=True)
    ids = [r[0] for r in repo.conn.execute(q).all()]
    if not ids:
        return []
    repo.conn.execute(
        sa.update(g.webhook_deliveries).where(d.id.in_(ids), due)
        .values(status="delivering", claimed_until=lease_until, attempts=d.attempts + 1)
    )
    e = g.webhook_endpoints.c
    rows = repo.conn.execute(
        sa.select(g.webhook_deliveries, g.webhook_endpoints.c.url, g.webhook_endpoints.c.events_json,
                  g.webhook_endpoints.c.secret, g.webhook_endpoints.c.created_at.label("ep_created_at"))
        .join(g.webhook_endpoints, e.id == d.endpoint_id)
        .where(d.id.in_(ids), d.status == "delivering")
    ).all()
    out = []
    for r in rows:
        m = r._mapping
        ep = Endpoint(m["endpoint_id"], m["tenant_id"], m["url"], tuple(json.loads(m["events_json"])),
                      m["secret"], _req(m["ep_created_at"]))
        out.append((_delivery(m), ep))
    return out


def record_attempt(repo: Repo, attempt_id: str, delivery: Delivery, status_code: int | None,
                   error: str | None, started_at: datetime, duration_ms: int) -> None:
    repo.conn.execute(sa.insert(g.webhook_attempts).values(
        id=attempt_id, tenant_id=delivery.tenant_id, delivery_id=delivery.id, attempt=delivery.attempts,
        status_code=status_code, error=error[:500] if error else None, started_at=started_at,
        duration_ms=duration_ms,
    ))


def finish_delivery(repo: Repo, delivery: Delivery, *, status: str, status_code: int | None,
                    error: str | None, next_attempt_at: datetime, now: datetime) -> None:
    """Settle a claimed delivery; fenced on the attempt number so a stale claimer cannot."""
    d = g.webhook_deliveries.c
    repo.conn.execute(
        sa.update(g.webhook_deliveries)
        .where(d.id == delivery.id, d.attempts == delivery.attempts, d.status == "delivering")
        .values(status=status, last_status_code=status_code, last_error=error[:500] if error else None,
                next_attempt_at=next_attempt_at, claimed_until=None,
                delivered_at=now if status == "delivered" else None)
    )


def wake_endpoint(repo: Repo, tenant_id: str, endpoint_id: str, now: datetime) -> int:
    """Make an endpoint's deliveries that wait for a retry due now: it answers again."""
    d = g.webhook_deliveries.c
    return int(repo.conn.execute(
        sa.update(g.webhook_deliveries)
        .where(d.status == "pending", d.next_attempt_at > now, d.tenant_id == tenant_id, d.endpoint_id == endpoint_id)
        .values(next_attempt_at=now)
    ).rowcount)


def deliveries_for(repo: Repo, tenant_id: str, endpoint_id: str, limit: int) -> list[tuple[Delivery, list[Attempt]]]:
    d, a = g.webhook_deliveries.c, g.webhook_attempts.c
    rows = repo.conn.execute(
        sa.select(g.webhook_deliveries).where(d.tenant_id == tenant_id, d.endpoint_id == endpoint_id)
        .order_by(d.created_at.desc(), d.id.desc()).limit(limit)
    ).all()
    deliveries = [_delivery(r._mapping) for r in rows]
    attempts: dict[str, list[Attempt]] = {x.id: [] for x in deliveries}
    if deliveries:
        for r in repo.conn.execute(
            sa.select(g.webhook_attempts).where(a.tenant_id == tenant_id, a.delivery_id.in_(list(attempts)))
            .order_by(a.attempt)
        ).all():
            m = r._mapping
            attempts[m["delivery_id"]].append(
                Attempt(m["attempt"], m["status_code"], m["error"], _req(m["started_at"]), m["duration_ms"])
            )
    return [(x, attempts[x.id]) for x in deliveries]
