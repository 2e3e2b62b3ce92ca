"""Queries: rows in, domain records out. One ``Repo`` wraps one open transaction.

Every tenant-owned query takes ``tenant_id`` and filters on it; there is no method that
reads another tenant's row by id alone. Dialect differences (row locks) are handled here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, RowMapping

from warrantor.domain.lifecycle import Status
from warrantor.domain.model import (
    Action,
    ActionFilter,
    ApiKey,
    Approval,
    ApprovalCode,
    ApprovalRequest,
    ApprovalRequirement,
    Evidence,
    Page,
    Role,
    Tenant,
)
from warrantor.evidence.commitments import COMMITMENTS, split_intent
from warrantor.store import schema as s
from warrantor.store.codec import dumps, loads, utc, utc_required
from warrantor.store.fastpath import RawInsert
from warrantor.store.sequencing import LogBatch, LogTicket, reserve, sequence_now

_dumps = dumps
_utc = utc
_req_utc = utc_required


class Repo:
    def __init__(self, conn: Connection, dialect: str) -> None:
        self.conn = conn
        self.dialect = dialect

    # -- counters --------------------------------------------------------------------
    def next_counter(self, name: str, n: int = 1) -> int:
        """Add ``n`` to a counter and return its value before; the row lock serializes."""
        return reserve(self.conn, name, n)

    def counter(self, name: str) -> int:
        row = self.conn.execute(
            sa.select(s.counters.c.value).where(s.counters.c.name == name)
        ).first()
        return int(row[0]) if row else 0

    def set_counter(self, name: str, value: int) -> None:
        updated = self.conn.execute(
            sa.update(s.counters).where(s.counters.c.name == name).values(value=value)
        ).rowcount
        if not updated:
            self.conn.execute(sa.insert(s.counters).values(name=name, value=value))

    # -- tenants and keys ------------------------------------------------------------
    def insert_tenant(self, tenant: Tenant) -> None:
        self.conn.execute(
            sa.insert(s.tenants).values(id=tenant.id, name=tenant.name, created_at=tenant.created_at)
        )

    def get_tenant(self, tenant_id: str) -> Tenant | None:
        row = self.conn.execute(sa.select(s.tenants).where(s.tenants.c.id == tenant_id)).first()
        if row is None:
            return None
        m = row._mapping
        return Tenant(m["id"], m["name"], _req_utc(m["created_at"]))

    def insert_operator_key(self, key_hash: str, now: datetime) -> None:
        self.conn.execute(sa.insert(s.operator_keys).values(key_hash=key_hash, created_at=now))

    def operator_key_exists(self, key_hash: str) -> bool:
        q = sa.select(s.operator_keys.c.key_hash).where(s.operator_keys.c.key_hash == key_hash)
        return self.conn.execute(q).first() is not None

    def count_operator_keys(self) -> int:
        return int(self.conn.execute(sa.select(sa.func.count()).select_from(s.operator_keys)).scalar_one())

    def insert_api_key(self, key: ApiKey, key_hash: str) -> None:
        self.conn.execute(
            sa.insert(s.api_keys).values(
                id=key.id,
                tenant_id=key.tenant_id,
                key_hash=key_hash,
                prefix=key.prefix,
                role=key.role.value,
                agent_id=key.agent_id,
                label=key.label,
                created_at=key.created_at,
            )
        )

    def list_api_keys(self, tenant_id: str) -> list[ApiKey]:
        rows = self.conn.execute(
            sa.select(s.api_keys)
            .where(s.api_keys.c.tenant_id == tenant_id)
            .order_by(s.api_keys.c.created_at, s.api_keys.c.id)
        )
        return [_api_key(r._mapping) for r in rows]

    def get_api_key(self, tenant_id: str, key_id: str) -> ApiKey | None:
        row = self.conn.execute(
            sa.select(s.api_keys).where(s.api_keys.c.tenant_id == tenant_id, s.api_keys.c.id == key_id)
        ).first()
        return None if row is None else _api_key(row._mapping)

    def revoke_api_key(self, tenant_id: str, key_id: str, now: datetime) -> bool:
        """Mark a live key revoked; False when it is unknown in this tenant or already revoked."""
        result = self.conn.execute(
            sa.update(s.api_keys)
            .where(s.api_keys.c.tenant_id == tenant_id, s.api_keys.c.id == key_id,
                   s.api_keys.c.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        return bool(result.rowcount)

    def retire_operator_keys(self, keep_hash: str) -> int:
        """Delete every operator key except ``keep_hash``; returns how many were retired."""
        result = self.conn.execute(sa.delete(s.operator_keys).where(s.operator_keys.c.key_hash != keep_hash))
        return int(result.rowcount or 0)

    # -- policies --------------------------------------------------------------------
    def insert_bundle(self, tenant_id: str, bundle_hash: str, bundle: dict[str, Any], now: datetime) -> bool:
        """Store a bundle once; returns False when it was already there (content-addressed)."""
        exists = self.conn.execute(
            sa.select(s.policy_bundles.c.hash).where(
                s.policy_bundles.c.tenant_id == tenant_id, s.policy_bundles.c.hash == bundle_hash
            )
        ).first()
        if exists:
            return False
        self.conn.execute(
            sa.insert(s.policy_bundles).values(
                tenant_id=tenant_id, hash=bundle_hash, bundle_json=_dumps(bundle), created_at=now
            )
        )
        return True

    def get_bundle(self, tenant_id: str, bundle_hash: str) -> tuple[dict[str, Any], datetime] | None:
        row = self.conn.execute(
            sa.select(s.policy_bundles).where(
                s.policy_bundles.c.tenant_id == tenant_id, s.policy_bundles.c.hash == bundle_hash
            )
        ).first()
        if row is None:
            return None
        return loads(row._mapping["bundle_json"]), _req_utc(row._mapping["created_at"])

    def list_bundles(self, tenant_id: str) -> list[tuple[str, datetime]]:
        rows = self.conn.execute(
            sa.select(s.policy_bundles.c.hash, s.policy_bundles.c.created_at)
            .where(s.policy_bundles.c.tenant_id == tenant_id)
            .order_by(s.policy_bundles.c.created_at)
        ).all()
        return [(r[0], _req_utc(r[1])) for r in rows]

    def activate_bundle(
        self, tenant_id: str, mode: str, bundle_hash: str, now: datetime, evidence_id: str | None
    ) -> None:
        self.conn.execute(
            sa.delete(s.active_policies).where(
                s.active_policies.c.tenant_id == tenant_id, s.active_policies.c.mode == mode
            )
        )
        self.conn.execute(
            sa.insert(s.active_policies).values(
                tenant_id=tenant_id, mode=mode, bundle_hash=bundle_hash, activated_at=now,
                evidence_id=evidence_id,
            )
        )

    def deactivate(self, tenant_id: str, mode: str) -> None:
        self.conn.execute(
            sa.delete(s.active_policies).where(
                s.active_policies.c.tenant_id == tenant_id, s.active_policies.c.mode == mode
            )
        )

    def active_bundles(self, tenant_id: str) -> dict[str, tuple[str, datetime]]:
        rows = self.conn.execute(
            sa.select(s.active_policies).where(s.active_policies.c.tenant_id == tenant_id)
        ).all()
        return {r._mapping["mode"]: (r._mapping["bundle_hash"], _req_utc(r._mapping["activated_at"])) for r in rows}

    # -- actions ---------------------------------------------------------------------
    def insert_action(self, a: Action | dict[str, Any]) -> None:
        """Insert an action; pass ``action_values(a)`` computed outside the write job to keep
        JSON encoding off the single writer thread."""
        _INSERT_ACTION.execute(self.conn, [a if isinstance(a, dict) else action_values(a)])

    def get_action(self, tenant_id: str, action_id: str, *, for_update: bool = False) -> Action | None:
        q = _GET_ACTION_FOR_UPDATE if for_update and self.dialect == "postgresql" else _GET_ACTION
        row = self.conn.execute(q, {"b_tenant_id": tenant_id, "b_id": action_id}).first()
        return _action(row._mapping) if row else None

    def action_by_idempotency_key(self, tenant_id: str, key: str) -> Action | None:
        row = self.conn.execute(_ACTION_BY_KEY, {"b_tenant_id": tenant_id, "b_key": key}).first()
        return _action(row._mapping) if row else None

    def update_action(self, tenant_id: str, action_id: str, expected: Status, **values: Any) -> bool:
        """Compare-and-set on the status: False if another writer moved the action first."""
        if "status" in values and isinstance(values["status"], Status):
            values["status"] = values["status"].value
        for key in ("execution", "response"):
            if key in values:
                values[f"{key}_json"] = _dumps(values.pop(key))
        statement = _update_action(tuple(sorted(values)))
        params = {"b_tenant_id": tenant_id, "b_id": action_id, "b_expected": expected.value, **values}
        return bool(self.conn.execute(statement, params).rowcount)

    def set_legal_hold(self, tenant_id: str, action_id: str, hold: bool) -> bool:
        """Set or lift the hold of an action whose details are not erased; False when the
        action is unknown, erased, or already so (a compare-and-set: erasure checks the
        hold in its own ``UPDATE``, so the two can never both win)."""
        n = self.conn.execute(
            sa.update(s.actions)
            .where(s.actions.c.tenant_id == tenant_id, s.actions.c.id == action_id,
                   s.actions.c.erased_at.is_(None), s.actions.c.legal_hold == (not hold))
            .values(legal_hold=hold)
        ).rowcount
        return bool(n)

    def list_actions(self, tenant_id: str, flt: ActionFilter, page: int, per_page: int) -> Page:
        cond = [s.actions.c.tenant_id == tenant_id]
        if flt.action_type:
            cond.append(s.actions.c.action_type == flt.action_type)
        if flt.agent_id:
            cond.append(s.actions.c.agent_id == flt.agent_id)
        if flt.status:
            cond.append(s.actions.c.status == flt.status)
        if flt.created_after:
            cond.append(s.actions.c.created_at >= flt.created_after)
        if flt.created_before:
            cond.append(s.actions.c.created_at < flt.created_before)
        if flt.legal_hold is not None:
            cond.append(s.actions.c.legal_hold == flt.legal_hold)
        total = self.conn.execute(
            sa.select(sa.func.count()).select_from(s.actions).where(*cond)
        ).scalar_one()
        rows = self.conn.execute(
            sa.select(s.actions)
            .where(*cond)
            .order_by(s.actions.c.created_at.desc(), s.actions.c.id.desc())
            .limit(per_page)
            .offset((page - 1) * per_page)
        ).all()
        return Page([_action(r._mapping) for r in rows], page, per_page, int(total))

    def due_for_expiry(self, now: datetime, grace_seconds: int, limit: int = 200) -> list[tuple[str, str, str]]:
        """(tenant, action, status) of held actions past their approval expiry and of
        runnable actions past their warrant validity plus the grace period."""
        held = self.conn.execute(
            sa.select(s.actions.c.tenant_id, s.actions.c.id, s.actions.c.status)
            .join(s.approval_requests, s.approval_requests.c.action_id == s.actions.c.id)
            .where(
                s.actions.c.status.in_([Status.PENDING_APPROVAL.value, Status.PENDING_CONFIRMATION.value]),
                s.approval_requests.c.expires_at < now,
            )
            .limit(limit)
        ).all()
        cutoff = now - timedelta(seconds=grace_seconds)
        lapsed = self.conn.execute(
            sa.select(s.actions.c.tenant_id, s.actions.c.id, s.actions.c.status)
            .where(
                s.actions.c.status.in_([Status.AUTHORIZED.value, Status.APPROVED.value]),
                s.actions.c.warrant_expires_at < cutoff,
            )
            .limit(limit)
        ).all()
        return [(r[0], r[1], r[2]) for r in [*held, *lapsed]]

    # -- approvals -------------------------------------------------------------------
    def insert_approval_request(self, req: ApprovalRequest) -> None:
        self.conn.execute(
            sa.insert(s.approval_requests).values(
                action_id=req.action_id,
                tenant_id=req.tenant_id,
                approvers_json=_dumps(list(req.approvers)),
                quorum=req.quorum,
                requirements_json=_dumps([r.to_dict() for r in req.requirements]),
                expires_at=req.expires_at,
                created_at=req.created_at,
            )
        )

    def get_approval_request(self, tenant_id: str, action_id: str) -> ApprovalRequest | None:
        row = self.conn.execute(
            sa.select(s.approval_requests).where(
                s.approval_requests.c.tenant_id == tenant_id,
                s.approval_requests.c.action_id == action_id,
            )
        ).first()
        if row is None:
            return None
        m = row._mapping
        return ApprovalRequest(
            m["action_id"], m["tenant_id"], tuple(loads(m["approvers_json"])), m["quorum"],
            _req_utc(m["expires_at"]), _req_utc(m["created_at"]),
            tuple(ApprovalRequirement.from_dict(r) for r in loads(m["requirements_json"]))
            or (ApprovalRequirement(tuple(loads(m["approvers_json"])), m["quorum"], "request"),),
        )

    def insert_approval_codes(self, codes: Iterable[ApprovalCode]) -> None:
        rows = [
            {
                "code": code_hash(c.code),  # a database reader must not be able to approve
                "tenant_id": c.tenant_id,
                "action_id": c.action_id,
                "approver": c.approver,
                "expires_at": c.expires_at,
                "used_at": None,
            }
            for c in codes
        ]
        if rows:
            self.conn.execute(sa.insert(s.approval_codes), rows)

    def get_approval_code(self, code: str) -> ApprovalCode | None:
        """The code's row, found by its hash (the ``code`` field of the result is the hash)."""
        row = self.conn.execute(
            sa.select(s.approval_codes).where(s.approval_codes.c.code == code_hash(code))
        ).first()
        if row is None:
            return None
        return _code(row._mapping)

    def approval_codes_for(self, tenant_id: str, action_id: str) -> list[ApprovalCode]:
        rows = self.conn.execute(
            sa.select(s.approval_codes)
            .where(s.approval_codes.c.tenant_id == tenant_id, s.approval_codes.c.action_id == action_id)
            .order_by(s.approval_codes.c.approver)
        ).all()
        return [_code(r._mapping) for r in rows]

    def use_approval_code(self, code: str, now: datetime) -> bool:
        """Mark a code used exactly once; False if it was used already (by anyone)."""
        n = self.conn.execute(
            sa.update(s.approval_codes)
            .where(s.approval_codes.c.code == code_hash(code), s.approval_codes.c.used_at.is_(None))
            .values(used_at=now)
        ).rowcount
        return bool(n)

    def insert_approval(self, a: Approval) -> None:
        self.conn.execute(
            sa.insert(s.approvals).values(
                id=a.id, tenant_id=a.tenant_id, action_id=a.action_id, approver=a.approver,
                decision=a.decision, reason=a.reason, via=a.via, decided_at=a.decided_at,
                channel=a.channel,
            )
        )

    def approvals_for(self, tenant_id: str, action_id: str) -> list[Approval]:
        rows = self.conn.execute(_APPROVALS_FOR, {"b_tenant_id": tenant_id, "b_action_id": action_id}).all()
        return [
            Approval(
                m["id"], m["tenant_id"], m["action_id"], m["approver"], m["decision"], m["reason"],
                m["via"], _req_utc(m["decided_at"]), m["channel"],
            )
            for m in (r._mapping for r in rows)
        ]

    # -- evidence and the log --------------------------------------------------------
    def sequence_evidence(self, rows: list[dict[str, Any]], now: datetime) -> LogTicket:
        """Record evidence rows (from ``evidence_values``) at dense log indices, with their
        log entries, atomically with this transaction; the ticket gives the indices.

        In the group-commit writer the rows are queued and sequenced for the whole batch in
        its last statements (the ``log_size`` row lock is held only from there to COMMIT);
        elsewhere at once. Rules: ``sequencing.py``.
        """
        batch = LogBatch.of(self.conn)
        if batch is not None:
            return batch.add(rows, now)
        return sequence_now(self.conn, rows, now)

    def get_evidence(self, tenant_id: str, evidence_id: str) -> Evidence | None:
        row = self.conn.execute(_GET_EVIDENCE, {"b_tenant_id": tenant_id, "b_id": evidence_id}).first()
        return _evidence(row._mapping) if row else None

    def get_evidence_seq(self, tenant_id: str, evidence_id: str) -> int | None:
        """The record sequence number of a receipt, legal hold or erasure (None for others)."""
        row = self.conn.execute(
            sa.select(s.evidence.c.tenant_seq).where(s.evidence.c.tenant_id == tenant_id,
                                                     s.evidence.c.id == evidence_id)
        ).first()
        return None if row is None or row[0] is None else int(row[0])

    def evidence_for_action(self, tenant_id: str, action_id: str) -> list[Evidence]:
        rows = self.conn.execute(
            sa.select(s.evidence)
            .where(s.evidence.c.tenant_id == tenant_id, s.evidence.c.action_id == action_id)
            .order_by(s.evidence.c.created_at)
        ).all()
        return [_evidence(r._mapping) for r in rows]

    def log_entries_from(self, start: int, limit: int) -> list[bytes]:
        rows = self.conn.execute(
            sa.select(s.log_entries.c.entry)
            .where(s.log_entries.c.idx >= start)
            .order_by(s.log_entries.c.idx)
            .limit(limit)
        ).all()
        return [bytes(r[0]) for r in rows]

    def insert_checkpoint(self, size: int, root: bytes, note: str, token: bytes | None, now: datetime) -> None:
        self.conn.execute(
            sa.insert(s.checkpoints).values(
                size=size, root_hash=root, note=note, timestamp_token=token, created_at=now
            )
        )

    def latest_checkpoint(self) -> RowMapping | None:
        row = self.conn.execute(
            sa.select(s.checkpoints).order_by(s.checkpoints.c.size.desc()).limit(1)
        ).first()
        return row._mapping if row else None

    def checkpoint(self, size: int) -> RowMapping | None:
        row = self.conn.execute(sa.select(s.checkpoints).where(s.checkpoints.c.size == size)).first()
        return row._mapping if row else None

    # -- signing keys ----------------------------------------------------------------
    def upsert_signing_key(
        self, keyid: str, public_key: bytes, not_before: datetime, not_after: datetime | None
    ) -> None:
        n = self.conn.execute(
            sa.update(s.signing_keys).where(s.signing_keys.c.keyid == keyid).values(not_after=not_after)
        ).rowcount
        if not n:
            self.conn.execute(
                sa.insert(s.signing_keys).values(
                    keyid=keyid, public_key=public_key, not_before=not_before, not_after=not_after
                )
            )

    def signing_keys(self) -> list[tuple[str, bytes, datetime, datetime | None]]:
        rows = self.conn.execute(sa.select(s.signing_keys).order_by(s.signing_keys.c.not_before)).all()
        return [
            (m["keyid"], bytes(m["public_key"]), _req_utc(m["not_before"]), _utc(m["not_after"]))
            for m in (r._mapping for r in rows)
        ]


_INSERT_ACTION = RawInsert(s.actions)

# The statements every authorization and notarization runs, built once: SQLAlchemy then
# finds their compiled form by a memoized cache key, where building the expression per call
# cost about four times the query itself (109 us against 25 us for ``get_action``). Bound
# parameter names start with ``b_``: an UPDATE reserves the column names for its SET clause.
_A = s.actions.c
_GET_ACTION = sa.select(s.actions).where(_A.tenant_id == sa.bindparam("b_tenant_id"), _A.id == sa.bindparam("b_id"))
_GET_ACTION_FOR_UPDATE = _GET_ACTION.with_for_update()
_ACTION_BY_KEY = sa.select(s.actions).where(_A.tenant_id == sa.bindparam("b_tenant_id"),
                                            _A.idempotency_key == sa.bindparam("b_key"))
_APPROVALS_FOR = (sa.select(s.approvals)
                  .where(s.approvals.c.tenant_id == sa.bindparam("b_tenant_id"),
                         s.approvals.c.action_id == sa.bindparam("b_action_id"))
                  .order_by(s.approvals.c.decided_at, s.approvals.c.id))
_GET_EVIDENCE = sa.select(s.evidence).where(s.evidence.c.tenant_id == sa.bindparam("b_tenant_id"),
                                            s.evidence.c.id == sa.bindparam("b_id"))
_UPDATES: dict[tuple[str, ...], sa.Update] = {}


def _update_action(columns: tuple[str, ...]) -> sa.Update:
    """The compare-and-set ``UPDATE actions`` for this set of columns, built once per set
    (a handful of sets exist: one per kind of transition)."""
    statement = _UPDATES.get(columns)
    if statement is None:
        statement = (sa.update(s.actions)
                     .where(_A.tenant_id == sa.bindparam("b_tenant_id"), _A.id == sa.bindparam("b_id"),
                            _A.status == sa.bindparam("b_expected"))
                     .values({c: sa.bindparam(c, type_=s.actions.c[c].type) for c in columns}))
        _UPDATES[columns] = statement
    return statement


def action_values(a: Action) -> dict[str, Any]:
    """The row for an action, JSON already encoded (cheap to insert in the writer)."""
    return {
        "id": a.id,
        "tenant_id": a.tenant_id,
        "status": a.status.value,
        "action_type": a.action_type,
        "agent_id": a.agent_id,
        "run_id": a.run_id,
        "parent_action_id": a.parent_action_id,
        "parent_json": _dumps(a.parent) if a.parent else None,
        "api_key_id": a.api_key_id,
        "intent_json": _dumps(a.committed_intent),
        "intent_digest": a.intent_digest,
        "details_json": None if a.erased_at is not None else _dumps(split_intent(a.intent)[1]),
        "details_salt": a.details_salt,
        "erased_at": a.erased_at,
        "erasure_id": a.erasure_id,
        "decision_json": _dumps(a.decision),
        "idempotency_key": a.idempotency_key,
        "request_hash": a.request_hash,
        "response_status": a.response_status,
        "response_json": _dumps(a.response),
        "warrant_id": a.warrant_id,
        "warrant_expires_at": a.warrant_expires_at,
        "receipt_id": a.receipt_id,
        "execution_json": _dumps(a.execution) if a.execution is not None else None,
        "legal_hold": a.legal_hold,
        "created_at": a.created_at,
        "updated_at": a.updated_at,
    }


def evidence_values(e: Evidence) -> dict[str, Any]:
    return {
        "id": e.id, "tenant_id": e.tenant_id, "kind": e.kind, "action_id": e.action_id,
        "envelope_json": _dumps(e.envelope), "envelope_digest": e.envelope_digest,
        "log_index": e.log_index, "timestamp_token": e.timestamp_token, "created_at": e.created_at,
        "tenant_seq": e.sequence,
    }


def merged_intent(committed: dict[str, Any], details_json: str | None) -> dict[str, Any]:
    """The full intent from the committed one and the stored details; the committed one
    itself once the details are erased (``details_json`` is NULL)."""
    if details_json is None:
        return committed
    kept = {k: v for k, v in committed.items() if k != COMMITMENTS}
    kept.update(loads(details_json))
    return kept


def _action(m: RowMapping) -> Action:
    committed = loads(m["intent_json"])
    return Action(
        id=m["id"],
        tenant_id=m["tenant_id"],
        status=Status(m["status"]),
        action_type=m["action_type"],
        agent_id=m["agent_id"],
        run_id=m["run_id"],
        parent_action_id=m["parent_action_id"],
        intent=merged_intent(committed, m["details_json"]),
        committed_intent=committed,
        details_salt=m["details_salt"],
        erased_at=_utc(m["erased_at"]),
        erasure_id=m["erasure_id"],
        intent_digest=m["intent_digest"],
        decision=loads(m["decision_json"]),
        idempotency_key=m["idempotency_key"],
        request_hash=m["request_hash"],
        response_status=m["response_status"],
        response=loads(m["response_json"]),
        created_at=_req_utc(m["created_at"]),
        updated_at=_req_utc(m["updated_at"]),
        warrant_id=m["warrant_id"],
        warrant_expires_at=_utc(m["warrant_expires_at"]),
        receipt_id=m["receipt_id"],
        execution=loads(m["execution_json"]) if m["execution_json"] else None,
        legal_hold=bool(m["legal_hold"]),
        api_key_id=m["api_key_id"],
        parent=loads(m["parent_json"]) if m["parent_json"] else None,
    )


def _api_key(m: RowMapping) -> ApiKey:
    return ApiKey(
        id=m["id"],
        tenant_id=m["tenant_id"],
        role=Role(m["role"]),
        agent_id=m["agent_id"],
        prefix=m["prefix"],
        created_at=_req_utc(m["created_at"]),
        revoked_at=_utc(m["revoked_at"]),
        label=m["label"],
    )


def code_hash(code: str) -> str:
    """Approval codes are stored as their sha256, like passwords and set-password links: a
    code is a credential, and read access to the database (a backup, a replica) must not be
    enough to decide as a human. 100 random bits need no salt or slow hash."""
    return hashlib.sha256(code.encode()).hexdigest()


def _code(m: RowMapping) -> ApprovalCode:
    return ApprovalCode(
        m["code"], m["tenant_id"], m["action_id"], m["approver"], _req_utc(m["expires_at"]), _utc(m["used_at"])
    )


def _evidence(m: RowMapping) -> Evidence:
    return Evidence(
        id=m["id"],
        tenant_id=m["tenant_id"],
        kind=m["kind"],
        action_id=m["action_id"],
        envelope=loads(m["envelope_json"]),
        envelope_digest=m["envelope_digest"],
        log_index=m["log_index"],
        created_at=_req_utc(m["created_at"]),
        timestamp_token=bytes(m["timestamp_token"]) if m["timestamp_token"] else None,
        sequence=m["tenant_seq"],
    )
