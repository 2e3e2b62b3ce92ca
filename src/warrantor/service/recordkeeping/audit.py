"""The SIEM stream: one audit record per state change, as JSON lines to a file and webhooks.

Every state change the service makes (an action authorized, held, approved, denied,
notarized, expired...; a run halted; a legal hold set or lifted; details erased) is emitted
inside the write transaction that makes it (``EventSink.emit``). ``AuditedEvents`` turns
each into an *audit record*:

    {"record_id": "aud_...", "recorded_at": RFC 3339, "tenant_id": ..., "event": "action.notarized",
     "action_id": ..., "status": ..., "action_type": ..., "agent_id": ..., "reason_code": ...}

(the event's own fields after the first four; erasures and holds name their evidence) and
sends it two ways, both only if the change commits:

- **webhooks**: to each endpoint subscribed to ``audit.record``, as the ``data`` of a Standard
  Webhooks delivery (signed, retried; ``service/recordkeeping/webhooks.py``). Each delivery body is one
  line of JSON.
- **a file** (``WARRANTOR_AUDIT_FILE=/path/audit.jsonl``): the record is written to the
  ``audit_outbox`` table in the change's transaction; ``AuditFileSink`` claims outbox rows
  (a lease, so several processes never write the same row), appends one line per record,
  ``fsync``s the file, and only then deletes the rows. So a record that committed reaches
  the file even across a crash (at least once: a crash between the fsync and the delete
  writes those lines again, with the same ``record_id``), and the file is synced at most
  ``interval`` seconds (default 1) after the change. The file is reopened for each pass, so
  a rotation by renaming it starts a new file; lines are appended with one ``write`` each.

Records carry ids and digests, never payload details (nothing erasable leaves this way).
Lines from different processes interleave in commit order only roughly: order by
``recorded_at`` or join on ``action_id``.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import threading
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from warrantor.domain.clock import isoformat
from warrantor.service.context import Deps
from warrantor.service.recordkeeping.webhooks import WebhookEvents
from warrantor.store import Repo
from warrantor.store import repo_records as rr

log = logging.getLogger(__name__)


def audit_record(record_id: str, now: datetime, tenant_id: str, event_type: str,
                 data: dict[str, Any]) -> dict[str, Any]:
    return {"record_id": record_id, "recorded_at": isoformat(now), "tenant_id": tenant_id, "event": event_type,
            **data}


def audit_line(record: dict[str, Any]) -> str:
    """One line of JSON (sorted keys, no whitespace, no newline inside)."""
    return json.dumps(record, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


class AuditedEvents:
    """The ``EventSink``: webhook events as before, plus each change as an audit record to
    the ``audit.record`` webhooks and, with ``to_file``, the audit outbox. A record is built
    only when one of them wants it, so without either nothing is added to a write."""

    def __init__(self, deps: Deps, webhooks: WebhookEvents, *, to_file: bool = False) -> None:
        self._d = deps
        self._webhooks = webhooks
        self.to_file = to_file

    def emit(self, repo: Repo, tenant_id: str, event_type: str, data: dict[str, Any]) -> None:
        hooks = self._webhooks.audit_subscribed(repo, tenant_id)
        if not (hooks or self.to_file):
            self._webhooks.emit(repo, tenant_id, event_type, data)
            return
        now = self._d.clock.now()
        record = audit_record(self._d.ids.new("aud"), now, tenant_id, event_type, data)
        self._webhooks.emit(repo, tenant_id, event_type, data, audit=record if hooks else None)
        if self.to_file:
            rr.insert_audit_lines(repo, [(record["record_id"], audit_line(record))], now)


class AuditFileSink:
    """Moves the audit outbox into ``path``, one line per record (module rules)."""

    def __init__(self, deps: Deps, path: Path, *, interval: float = 1.0, batch: int = 1000,
                 lease_seconds: float = 60.0) -> None:
        self._d = deps
        self.path = path
        self.interval = interval
        self._batch = batch
        self._lease = timedelta(seconds=lease_seconds)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # one pass at a time in this process

    def drain_once(self) -> int:
        """Append every committed record not yet in the file; returns how many."""
        total = 0
        with self._lock:
            while True:
                now = self._d.clock.now()
                claimed = self._d.store.write(functools.partial(
                    rr.claim_audit_lines, now=now, lease_until=now + self._lease, limit=self._batch))
                if not claimed:
                    return total
                self._append([line for _, line in claimed])
                self._d.store.write(functools.partial(rr.delete_audit_lines, ids=[i for i, _ in claimed]))
                total += len(claimed)
                if len(claimed) < self._batch:
                    return total

    def _append(self, lines: list[str]) -> None:
        """Append and fsync; the rows are deleted only after this returns."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            for line in lines:
                data = (line + "\n").encode()
                written = os.write(fd, data)
                if written != len(data):  # pragma: no cover - a full disk; the rows stay and are retried
                    raise OSError(f"short write to {self.path}: {written} of {len(data)} bytes")
            os.fsync(fd)
        finally:
            os.close(fd)

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="warrantor-audit-file", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.drain_once()
            except Exception:
                log.exception("writing audit records to %s failed; retrying", self.path)

    def stop(self) -> None:
        """Stop the thread after one last pass, so records committed before are written."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        try:
            self.drain_once()
        except Exception:
            log.exception("writing audit records to %s failed at shutdown", self.path)
