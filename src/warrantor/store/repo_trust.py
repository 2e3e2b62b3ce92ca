"""Queries for the trust anchors and the tamper checks, as plain functions over a ``Repo``.

Nothing read here is trusted by itself: the callers compare it with the key files and the
signed checkpoints. ``signing_keys`` rows are a mirror that the key ring writes for
operators; a row naming a key the ring does not hold is reported, never believed.
Key history statements are logged as log entries without an evidence row (they belong
to the deployment, not to a tenant); ``log_entries.evidence_id`` names them ``keystmt_...``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from warrantor.store import schema as s
from warrantor.store.repo import Repo


def log_statements(repo: Repo, statements: list[tuple[str, bytes]], now: datetime) -> list[int]:
    """Sequence each ``(ref, entry)`` (a key statement's sha256) in the log unless that
    entry is there under that ref already; returns the indices. The ``log_size`` row lock
    is taken first, so two processes starting together log each statement once. One scan
    of ``log_entries`` (they are few, and this runs at start and on rotation)."""
    repo.next_counter("log_size", 0)
    t = s.log_entries
    refs = [ref for ref, _ in statements]
    rows = repo.conn.execute(sa.select(t.c.idx, t.c.entry, t.c.evidence_id).where(t.c.evidence_id.in_(refs))).all()
    logged = {(r[2], bytes(r[1])): int(r[0]) for r in rows}
    out = []
    for ref, entry in statements:
        index = logged.get((ref, entry))
        if index is None:
            index = repo.next_counter("log_size", 1)
            repo.conn.execute(sa.insert(t).values(idx=index, entry=entry, evidence_id=ref, created_at=now))
        out.append(index)
    return out


def log_entries_page(repo: Repo, start: int, stop: int) -> list[tuple[int, bytes]]:
    """(index, entry) of the stored log entries with index in ``[start, stop)``, in order;
    a deleted row is simply absent."""
    t = s.log_entries
    rows = repo.conn.execute(
        sa.select(t.c.idx, t.c.entry).where(t.c.idx >= start, t.c.idx < stop).order_by(t.c.idx)
    ).all()
    return [(int(r[0]), bytes(r[1])) for r in rows]


def log_entries_at(repo: Repo, indices: list[int]) -> dict[int, bytes]:
    """The stored entries at these indices (missing ones are absent from the result)."""
    if not indices:
        return {}
    t = s.log_entries
    rows = repo.conn.execute(sa.select(t.c.idx, t.c.entry).where(t.c.idx.in_(indices))).all()
    return {int(r[0]): bytes(r[1]) for r in rows}


@dataclass(frozen=True)
class SignedRow:
    """An evidence row as stored, for the integrity check (nothing here is verified)."""

    id: str
    action_id: str
    kind: str
    envelope: Any
    envelope_digest: str
    log_index: int | None


def signed_rows(repo: Repo, tenant_id: str, action_ids: list[str]) -> list[SignedRow]:
    """The evidence rows of these actions of the tenant (one query for a page of actions)."""
    if not action_ids:
        return []
    t = s.evidence
    rows = repo.conn.execute(
        sa.select(t.c.id, t.c.action_id, t.c.kind, t.c.envelope_json, t.c.envelope_digest, t.c.log_index)
        .where(t.c.tenant_id == tenant_id, t.c.action_id.in_(action_ids))
        .order_by(t.c.created_at)
    ).all()
    out = []
    for r in rows:
        try:
            envelope = json.loads(r[3])
        except ValueError:
            envelope = None  # a rewritten row that is not even JSON: the check reports it
        out.append(SignedRow(r[0], r[1], r[2], envelope, r[4], None if r[5] is None else int(r[5])))
    return out
