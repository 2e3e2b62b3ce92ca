"""Queries for executions Warrantor performs itself (``POST /v1/actions/{id}/execute``)."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from warrantor.domain.lifecycle import Status
from warrantor.store import schema as s
from warrantor.store.repo import Repo


def lost_executions(repo: Repo, started_before: datetime, limit: int = 200) -> list[tuple[str, str]]:
    """(tenant, action) of actions still ``executing`` that were claimed before
    ``started_before``: their executor stopped before reporting (a crash mid-flight)."""
    t = s.actions
    rows = repo.conn.execute(
        sa.select(t.c.tenant_id, t.c.id)
        .where(t.c.status == Status.EXECUTING.value, t.c.updated_at < started_before)
        .limit(limit)
    ).all()
    return [(r[0], r[1]) for r in rows]
