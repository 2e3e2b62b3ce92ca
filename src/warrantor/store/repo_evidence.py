"""Queries of the evidence area, as plain functions over a ``Repo``.

The log tables themselves (``log_entries``, ``checkpoints``, ``counters``) are queried by
``Repo``; what is here serves the integrator (entries with their sequencing time, receipt
timestamps), witness cosignatures and execution confirmations. Every tenant-owned query
filters on ``tenant_id``; the log and its checkpoints are deployment-wide and public.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from warrantor.store import schema as s
from warrantor.store import schema_evidence as se
from warrantor.store.codec import utc_required
from warrantor.store.repo import Repo

_utc = utc_required


@dataclass(frozen=True)
class LogRow:
    index: int
    entry: bytes
    evidence_id: str
    created_at: datetime


def log_rows(repo: Repo, start: int, stop: int) -> list[LogRow]:
    """Log entries with index in ``[start, stop)``, in order."""
    t = s.log_entries
    rows = repo.conn.execute(
        sa.select(t.c.idx, t.c.entry, t.c.evidence_id, t.c.created_at)
        .where(t.c.idx >= start, t.c.idx < stop)
        .order_by(t.c.idx)
    ).all()
    return [LogRow(int(r[0]), bytes(r[1]), r[2], _utc(r[3])) for r in rows]


def receipts_in_range(repo: Repo, start: int, stop: int) -> list[tuple[str, dict[str, object]]]:
    """(evidence id, envelope) of receipts logged at ``[start, stop)`` without a token yet."""
    t = s.evidence
    rows = repo.conn.execute(
        sa.select(t.c.id, t.c.envelope_json).where(
            t.c.log_index >= start, t.c.log_index < stop, t.c.kind == "receipt",
            t.c.timestamp_token.is_(None),
        )
    ).all()
    return [(r[0], json.loads(r[1])) for r in rows]


_SET_TOKEN = (
    sa.update(s.evidence)
    .where(s.evidence.c.id == sa.bindparam("evidence_id"))
    .values(timestamp_token=sa.bindparam("token"))
)


def set_timestamp_tokens(repo: Repo, tokens: list[tuple[str, bytes]]) -> None:
    """Store receipt tokens: one statement executed for the whole batch (executemany)."""
    if tokens:
        repo.conn.execute(_SET_TOKEN, [{"evidence_id": e, "token": t} for e, t in tokens])


# -- witness cosignatures -------------------------------------------------------------
def insert_cosignature(repo: Repo, size: int, key_hash: str, name: str, line: str, cosigned_at: int) -> bool:
    """Store a witness's cosignature line; a newer one from the same witness replaces it."""
    t = se.checkpoint_cosignatures
    repo.conn.execute(sa.delete(t).where(t.c.size == size, t.c.key_hash == key_hash))
    repo.conn.execute(
        sa.insert(t).values(size=size, key_hash=key_hash, name=name, line=line, cosigned_at=cosigned_at)
    )
    return True


def cosignature_lines(repo: Repo, size: int) -> list[str]:
    t = se.checkpoint_cosignatures
    rows = repo.conn.execute(sa.select(t.c.line).where(t.c.size == size).order_by(t.c.name)).all()
    return [r[0] for r in rows]


def newest_cosigned_size(repo: Repo, log_index: int, key_hashes: list[str], quorum: int) -> int | None:
    """The largest checkpoint size above ``log_index`` with cosignatures by at least
    ``quorum`` of the witness keys ``key_hashes`` (hex key IDs), or None."""
    t = se.checkpoint_cosignatures
    query = (
        sa.select(t.c.size)
        .where(t.c.size > log_index, t.c.key_hash.in_(key_hashes))
        .group_by(t.c.size)
        .having(sa.func.count() >= quorum)
        .order_by(t.c.size.desc())
        .limit(1)
    )
    size = repo.conn.execute(query).scalar()
    return None if size is None else int(size)


# -- execution confirmations ----------------------------------------------------------
@dataclass(frozen=True)
class Confirmation:
    id: str
    tenant_id: str
    statement_digest: str  # sha256 of the warrant's DSSE payload: the uniqueness key
    warrant_digest: str
    warrant_id: str
    action_id: str
    receipt_id: str
    integrity_hash: str
    matched: bool
    confirmed_at: datetime


def insert_confirmation(repo: Repo, c: Confirmation) -> None:
    """Raises the store's unique violation when the warrant was confirmed already."""
    repo.conn.execute(
        sa.insert(se.execution_confirmations).values(
            id=c.id, tenant_id=c.tenant_id, statement_digest=c.statement_digest,
            warrant_digest=c.warrant_digest, warrant_id=c.warrant_id,
            action_id=c.action_id, receipt_id=c.receipt_id, integrity_hash=c.integrity_hash,
            matched=c.matched, confirmed_at=c.confirmed_at,
        )
    )


def confirmation_for(repo: Repo, statement_digest: str) -> str | None:
    """The tenant that confirmed this warrant statement, if any (the digest is globally unique)."""
    t = se.execution_confirmations
    row = repo.conn.execute(sa.select(t.c.tenant_id).where(t.c.statement_digest == statement_digest)).first()
    return row[0] if row else None
