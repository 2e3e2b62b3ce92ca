"""Queries of the records area (legal hold, retention, erasure, export, the audit outbox),
as plain functions over a ``Repo``. Every query filters on ``tenant_id``.

Erasure is one compare-and-set ``UPDATE`` per action (``erase_action``): it clears the
erasable values and their salt, the stored replay response and the unsalted request hash,
and only when the action is still unheld and unerased, so it can never win against a legal
hold set concurrently (``Repo.set_legal_hold`` checks ``erased_at`` the same way).

Pages are keyset pages (``(created_at, id) > (after)``, or the record sequence), so a scan
of a large tenant reads each row once and holds one page at a time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from warrantor.domain.model import Action, Approval, Evidence
from warrantor.store import schema as s
from warrantor.store import schema_grants as g
from warrantor.store import schema_records as r
from warrantor.store.codec import dumps, utc, utc_required
from warrantor.store.repo import Repo, _action, _evidence


# -- retention settings ----------------------------------------------------------------
@dataclass(frozen=True)
class Retention:
    tenant_id: str
    details_days: int | None
    scanned_before: datetime | None
    updated_at: datetime | None


def get_retention(repo: Repo, tenant_id: str) -> Retention:
    row = repo.conn.execute(sa.select(r.tenant_retention).where(r.tenant_retention.c.tenant_id == tenant_id)).first()
    if row is None:
        return Retention(tenant_id, None, None, None)
    m = row._mapping
    return Retention(tenant_id, m["details_days"], utc(m["scanned_before"]), utc(m["updated_at"]))


def set_retention(repo: Repo, tenant_id: str, details_days: int | None, now: datetime) -> None:
    t = r.tenant_retention
    n = repo.conn.execute(
        sa.update(t).where(t.c.tenant_id == tenant_id).values(details_days=details_days, updated_at=now)
    ).rowcount
    if not n:
        repo.conn.execute(sa.insert(t).values(tenant_id=tenant_id, details_days=details_days, updated_at=now))


def set_scanned_before(repo: Repo, tenant_id: str, scanned_before: datetime, *, only_lower: bool = False) -> None:
    """Move the retention job's mark; with ``only_lower``, only back in time (a hold lifted
    on an older action makes the job look at it again)."""
    t = r.tenant_retention
    q = sa.update(t).where(t.c.tenant_id == tenant_id)
    if only_lower:
        q = q.where(t.c.scanned_before > scanned_before)
    repo.conn.execute(q.values(scanned_before=scanned_before))


def move_scanned_before(repo: Repo, tenant_id: str, expected: datetime | None, mark: datetime) -> bool:
    """Advance the mark from ``expected`` to ``mark``, unless it moved meanwhile (a hold
    lifted during the job's scan lowered it: the next run starts there)."""
    t = r.tenant_retention
    current = t.c.scanned_before.is_(None) if expected is None else t.c.scanned_before == expected
    n = repo.conn.execute(sa.update(t).where(t.c.tenant_id == tenant_id, current).values(scanned_before=mark)).rowcount
    return bool(n)


def tenants_with_retention(repo: Repo) -> list[str]:
    t = r.tenant_retention
    rows = repo.conn.execute(sa.select(t.c.tenant_id).where(t.c.details_days.is_not(None)).order_by(t.c.tenant_id))
    return [row[0] for row in rows]


# -- scans and erasure ------------------------------------------------------------------
def actions_page(
    repo: Repo, tenant_id: str, *, after: tuple[datetime, str] | None, limit: int,
    start: datetime | None = None, before: datetime | None = None, agent_id: str | None = None,
    open_only: bool = False,
) -> list[Action]:
    """Actions of the tenant in ``(created_at, id)`` order after ``after``, created in
    ``[start, before)`` (with ``open_only``, only those without their final receipt yet);
    one keyset page (index ``(tenant_id, created_at)``)."""
    a = s.actions.c
    q = sa.select(s.actions).where(a.tenant_id == tenant_id)
    if open_only:
        q = q.where(a.receipt_id.is_(None))
    if start is not None:
        q = q.where(a.created_at >= start)
    if before is not None:
        q = q.where(a.created_at < before)
    if agent_id is not None:
        q = q.where(a.agent_id == agent_id)
    if after is not None:
        q = q.where(sa.or_(a.created_at > after[0], sa.and_(a.created_at == after[0], a.id > after[1])))
    rows = repo.conn.execute(q.order_by(a.created_at, a.id).limit(limit)).all()
    return [_action(row._mapping) for row in rows]


def erase_action(repo: Repo, action: Action, erasure_id: str, now: datetime) -> bool:
    """Erase the action's details unless it is held or erased already (compare-and-set).

    What goes: the erasable values and their salt (``details_json``, ``details_salt``), the
    stored replay response (replaced by a stub naming the erasure) and the unsalted request
    hash (replaced by the intent digest, which commits to nothing without the salt). What
    stays: the committed intent and every digest, decision and piece of evidence.
    """
    a = s.actions.c
    stub = dumps({"action_id": action.id, "status": action.status.value, "erased": True, "erasure_id": erasure_id})
    n = repo.conn.execute(
        sa.update(s.actions)
        .where(a.tenant_id == action.tenant_id, a.id == action.id, a.erased_at.is_(None), a.legal_hold.is_(False))
        .values(details_json=None, details_salt=None, response_json=stub, request_hash=a.intent_digest,
                erased_at=now, erasure_id=erasure_id)
    ).rowcount
    return bool(n)


def grant_ids_for_subject(repo: Repo, tenant_id: str, subject: str) -> list[str]:
    t = g.grants.c
    rows = repo.conn.execute(sa.select(t.id).where(t.tenant_id == tenant_id, t.subject == subject).order_by(t.id))
    return [row[0] for row in rows]


# -- the record sequence ------------------------------------------------------------------
def last_sequence(repo: Repo, tenant_id: str) -> int:
    """The highest record number committed for the tenant (0 before the first)."""
    t = s.evidence.c
    value = repo.conn.execute(
        sa.select(sa.func.max(t.tenant_seq)).where(t.tenant_id == tenant_id)
    ).scalar_one()
    return int(value or 0)


def record_time(repo: Repo, tenant_id: str, sequence: int) -> datetime | None:
    t = s.evidence.c
    row = repo.conn.execute(
        sa.select(t.created_at).where(t.tenant_id == tenant_id, t.tenant_seq == sequence)
    ).first()
    return None if row is None else utc_required(row[0])


def records_page(repo: Repo, tenant_id: str, first: int, last: int, limit: int) -> list[Evidence]:
    """The tenant's records with sequence numbers in ``[first, last]``, in order, at most ``limit``."""
    t = s.evidence.c
    rows = repo.conn.execute(
        sa.select(s.evidence)
        .where(t.tenant_id == tenant_id, t.tenant_seq >= first, t.tenant_seq <= last)
        .order_by(t.tenant_seq).limit(limit)
    ).all()
    return [_evidence(row._mapping) for row in rows]


def actions_by_id(repo: Repo, tenant_id: str, ids: Sequence[str]) -> dict[str, Action]:
    if not ids:
        return {}
    t = s.actions.c
    rows = repo.conn.execute(sa.select(s.actions).where(t.tenant_id == tenant_id, t.id.in_(list(ids)))).all()
    return {row._mapping["id"]: _action(row._mapping) for row in rows}


def evidence_by_id(repo: Repo, tenant_id: str, ids: Sequence[str]) -> dict[str, Evidence]:
    if not ids:
        return {}
    t = s.evidence.c
    rows = repo.conn.execute(sa.select(s.evidence).where(t.tenant_id == tenant_id, t.id.in_(list(ids)))).all()
    return {row._mapping["id"]: _evidence(row._mapping) for row in rows}


def approvals_for_actions(repo: Repo, tenant_id: str, ids: Sequence[str]) -> dict[str, list[Approval]]:
    out: dict[str, list[Approval]] = {}
    if not ids:
        return out
    t = s.approvals.c
    rows = repo.conn.execute(
        sa.select(s.approvals).where(t.tenant_id == tenant_id, t.action_id.in_(list(ids)))
        .order_by(t.decided_at, t.id)
    ).all()
    for row in rows:
        m = row._mapping
        out.setdefault(m["action_id"], []).append(Approval(
            m["id"], m["tenant_id"], m["action_id"], m["approver"], m["decision"], m["reason"], m["via"],
            utc_required(m["decided_at"]), m["channel"],
        ))
    return out


def open_actions_page(repo: Repo, tenant_id: str, start: datetime | None, before: datetime,
                      after: tuple[datetime, str] | None, limit: int) -> list[Action]:
    """Actions created in ``[start, before)`` without their final receipt yet, one keyset page."""
    return actions_page(repo, tenant_id, after=after, limit=limit, start=start, before=before, open_only=True)


# -- the audit outbox (WARRANTOR_AUDIT_FILE) ---------------------------------------------
def insert_audit_lines(repo: Repo, lines: Sequence[tuple[str, str]], now: datetime) -> None:
    """(id, line) pairs, in the caller's transaction."""
    if lines:
        repo.conn.execute(sa.insert(r.audit_outbox), [
            {"id": line_id, "line": line, "created_at": now, "claimed_until": None} for line_id, line in lines])


def claim_audit_lines(repo: Repo, now: datetime, lease_until: datetime, limit: int) -> list[tuple[str, str]]:
    """Lines not claimed, or whose claim ran out, oldest first; claimed until ``lease_until``."""
    t = r.audit_outbox.c
    due = sa.or_(t.claimed_until.is_(None), t.claimed_until < now)
    q = sa.select(t.id).where(due).order_by(t.created_at, t.id).limit(limit)
    if repo.dialect == "postgresql":
        q = q.with_for_update(skip_locked=True)
    ids = [row[0] for row in repo.conn.execute(q).all()]
    if not ids:
        return []
    repo.conn.execute(sa.update(r.audit_outbox).where(t.id.in_(ids)).values(claimed_until=lease_until))
    rows = repo.conn.execute(sa.select(t.id, t.line).where(t.id.in_(ids)).order_by(t.created_at, t.id)).all()
    return [(row[0], row[1]) for row in rows]


def delete_audit_lines(repo: Repo, ids: Sequence[str]) -> None:
    if ids:
        repo.conn.execute(sa.delete(r.audit_outbox).where(r.audit_outbox.c.id.in_(list(ids))))
