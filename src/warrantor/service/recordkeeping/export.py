"""Audit export: a tenant's records for a period, as JSON Lines an auditor verifies offline.

``GET /v1/export?from=&to=`` (auditor or admin) streams, one JSON object per line:

1. ``{"type": "trust", ...}``: the trust bundle (``GET /v1/trust``) the records verify under;
2. ``{"type": "range", ...}``: tenant, ``from``, ``to``, the record sequence numbers covered
   (``first_sequence`` .. ``last_sequence``) and the signed checkpoint (note, RFC 3161 token)
   every inclusion proof of the file is against;
3. one ``{"type": "record", ...}`` per record of the tenant (receipt, legal hold, erasure
   receipt) numbered ``first_sequence`` .. ``last_sequence``, in order: its DSSE envelope, log
   index and inclusion proof (with the checkpoint of line 2, a proof bundle), and, on the
   final receipt of an action, the ``action``: its status, decision, approvals, warrant (with
   its proof), the committed intent, and the intent's details with their salt while they
   are kept (``erased_at`` and what was erased once they are not);
4. one ``{"type": "open_action", ...}`` per action created in the period that has not ended
   (no final receipt yet, so no sequence number: it will be a record of a later period);
5. ``{"type": "manifest", "envelope": ...}``: a statement signed by the current signing key
   (predicate ``export:v1``, not logged) naming the tenant, the period, the sequence range,
   the counts, the checkpoint size, and ``sha256`` of every line before it.

Which records: the period is mapped to sequence numbers. ``first_sequence`` is the first
record recorded at or after ``from`` and ``last_sequence`` the last one recorded before
``to`` (``to`` defaults to now and may not be later), found by bisection over the sequence;
every record numbered in between is included. So consecutive periods give consecutive
ranges (the next export's ``first_sequence`` is this one's ``last_sequence + 1``); an empty
period has ``last_sequence = first_sequence - 1``. Each record's sequence number is inside
its signed statement, so a missing or altered record shows as a missing number
(``warrantor verify --export``).

Streaming: records are read by keyset pages of ``PAGE`` over ``(tenant_id, tenant_seq)``, each
page in its own read transaction, with its actions, approvals and warrants fetched for the
page alone; memory does not grow with the period. The checkpoint is chosen before the first
line: the newest one covering everything the log held when the export began (waiting up to
``WAIT_SECONDS`` for the integrator, else 409 ``NOT_YET_INTEGRATED``; with a witness quorum,
the newest cosigned one, else 409 ``NOT_YET_WITNESSED``).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import orjson

from warrantor.domain.clock import isoformat
from warrantor.domain.model import Action, Approval, Evidence, Principal, Role
from warrantor.errors import ValidationError
from warrantor.service.context import Deps
from warrantor.service.proof.sealing import approvals_view
from warrantor.service.proof.transparency import StoredCheckpoint, Transparency
from warrantor.service.recordkeeping.records import erased_view
from warrantor.service.tenancy import require_role
from warrantor.store import Repo
from warrantor.store import repo_records as rr

FORMAT = "warrantor-export/v1"
PAGE = 500
WAIT_SECONDS = 10.0


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _line(doc: dict[str, Any]) -> bytes:
    return orjson.dumps(doc) + b"\n"  # compact UTF-8 JSON, one line


def action_block(action: Action, approvals: list[Approval], warrant: dict[str, Any] | None) -> dict[str, Any]:
    """An action as an export line carries it."""
    return {
        "action_id": action.id, "action_type": action.action_type, "agent_id": action.agent_id,
        "status": action.status.value, "created_at": isoformat(action.created_at),
        "updated_at": isoformat(action.updated_at), "legal_hold": action.legal_hold,
        "intent_digest": action.intent_digest, "committed_intent": action.committed_intent,
        "intent": None if action.erased else action.intent, "intent_salt": action.details_salt,
        **erased_view(action),
        "decision": action.decision, "execution": action.execution,
        "approvals": approvals_view(approvals), "warrant": warrant, "receipt_id": action.receipt_id,
    }


class Exporter:
    def __init__(self, deps: Deps, transparency: Transparency) -> None:
        self._d = deps
        self._t = transparency

    def export(self, principal: Principal, start: datetime | None, end: datetime | None) -> Iterator[bytes]:
        """Check the request and fix what the export covers (raising before any byte is
        sent), then return the lines as a generator."""
        tenant_id = require_role(principal, Role.AUDITOR, Role.ADMIN)
        now = self._d.clock.now()
        if end is None or end > now:
            if end is not None:
                raise ValidationError(f"to: expected a time not later than now ({isoformat(now)}), got "
                                      f"{isoformat(end)}", code="INVALID_RANGE", details={"field": "to"})
            end = now
        if start is not None and start >= end:
            raise ValidationError("expected 'from' before 'to', got an empty or reversed range",
                                  code="INVALID_RANGE", details={"field": "from"})
        with self._d.store.read() as repo:
            log_size = repo.counter("log_size")
            last_committed = rr.last_sequence(repo, tenant_id)
            first = _boundary(repo, tenant_id, start, last_committed) if start is not None else 1
            last = _boundary(repo, tenant_id, end, last_committed) - 1
        checkpoint = self._checkpoint(log_size)
        trust = self._t.trust_bundle().to_dict()
        return self._lines(tenant_id, start, end, first, last, checkpoint, trust, now)

    def _checkpoint(self, log_size: int) -> StoredCheckpoint:
        checkpoint = self._t._wait_for(log_size, WAIT_SECONDS) if log_size else self._t.latest()
        if getattr(self._t, "witness_quorum", 0) and log_size:
            checkpoint = self._t._witnessed(log_size - 1)
        return checkpoint

    def _lines(self, tenant_id: str, start: datetime | None, end: datetime, first: int, last: int,
               checkpoint: StoredCheckpoint, trust: dict[str, Any], now: datetime) -> Iterator[bytes]:
        digest = hashlib.sha256()
        count = {"lines": 0, "records": 0, "open_actions": 0}

        def emit(doc: dict[str, Any]) -> bytes:
            data = _line(doc)
            digest.update(data)
            count["lines"] += 1
            return data

        note = self._t.note_with_cosignatures(checkpoint)
        yield emit({"type": "trust", "format": FORMAT, "trust": trust})
        yield emit({
            "type": "range", "format": FORMAT, "tenant_id": tenant_id,
            "from": isoformat(start) if start else None, "to": isoformat(end),
            "first_sequence": first, "last_sequence": last, "generated_at": isoformat(now),
            "checkpoint": {"size": checkpoint.size, "note": note,
                           "timestamp_token": _b64(checkpoint.timestamp_token) if checkpoint.timestamp_token else None},
        })
        size = checkpoint.size
        next_seq = first
        while next_seq <= last:
            with self._d.store.read() as repo:
                page = rr.records_page(repo, tenant_id, next_seq, last, PAGE)
                lines = self._record_lines(repo, tenant_id, page, size)
            if not page:
                break  # a committed number is never missing; the verifier names the gap if it were
            for doc in lines:
                count["records"] += 1
                yield emit(doc)
            next_seq = (page[-1].sequence or last) + 1
        after: tuple[datetime, str] | None = None
        while True:
            with self._d.store.read() as repo:
                actions = rr.open_actions_page(repo, tenant_id, start, end, after, PAGE)
                blocks = self._action_blocks(repo, tenant_id, actions, size)
            for block in blocks:
                count["open_actions"] += 1
                yield emit({"type": "open_action", "action": block})
            if len(actions) < PAGE:
                break
            after = (actions[-1].created_at, actions[-1].id)
        envelope = self._d.sealer.export_manifest(tenant_id=tenant_id, lines_sha256=digest.hexdigest(), predicate={
            "format": FORMAT, "from": isoformat(start) if start else None, "to": isoformat(end),
            "first_sequence": first, "last_sequence": last, "records": count["records"],
            "open_actions": count["open_actions"], "lines": count["lines"], "checkpoint_size": size,
            "issued_at": isoformat(now),
        })
        yield _line({"type": "manifest", "envelope": envelope.to_dict()})

    # -- one page ---------------------------------------------------------------------------
    def _proof(self, ev: Evidence, size: int) -> dict[str, Any]:
        index = ev.log_index
        assert index is not None and index < size, "the checkpoint covers every committed entry"
        return {"log_index": index,
                "inclusion_proof": [_b64(h) for h in self._t._tree.inclusion_proof(index, size)]}

    def _record_lines(self, repo: Repo, tenant_id: str, page: list[Evidence], size: int) -> list[dict[str, Any]]:
        action_ids = [e.action_id for e in page if e.kind == "receipt" and e.action_id]
        actions = rr.actions_by_id(repo, tenant_id, action_ids)
        finals = {a.id: a for a in actions.values() if a.receipt_id is not None}
        blocks = {b["action_id"]: b for b in self._action_blocks(repo, tenant_id, list(finals.values()), size)}
        out = []
        for ev in page:
            owner = finals.get(ev.action_id or "")
            out.append({
                "type": "record", "sequence": ev.sequence, "kind": ev.kind, "evidence_id": ev.id,
                "action_id": ev.action_id, "created_at": isoformat(ev.created_at), "envelope": ev.envelope,
                **self._proof(ev, size),
                "action": blocks.get(owner.id) if owner is not None and owner.receipt_id == ev.id else None,
            })
        return out

    def _action_blocks(self, repo: Repo, tenant_id: str, actions: list[Action], size: int) -> list[dict[str, Any]]:
        approvals = rr.approvals_for_actions(repo, tenant_id, [a.id for a in actions])
        warrants = rr.evidence_by_id(repo, tenant_id, [a.warrant_id for a in actions if a.warrant_id])
        blocks = []
        for action in actions:
            ev = warrants.get(action.warrant_id or "")
            warrant = None
            if ev is not None and ev.log_index is not None and ev.log_index < size:
                warrant = {"evidence_id": ev.id, "envelope": ev.envelope, **self._proof(ev, size)}
            blocks.append(action_block(action, approvals.get(action.id, []), warrant))
        return blocks


def _boundary(repo: Repo, tenant_id: str, when: datetime, last_committed: int) -> int:
    """The first record number recorded at or after ``when`` (``last_committed + 1`` when
    none is), by bisection over the sequence: records are numbered in commit order, which
    follows their time closely, and the same data always gives the same boundary, so two
    exports that meet at ``when`` meet at the same number."""
    low, high = 1, last_committed + 1
    while low < high:
        mid = (low + high) // 2
        recorded = rr.record_time(repo, tenant_id, mid)
        if recorded is not None and recorded < when:
            low = mid + 1
        else:
            high = mid
    return low
