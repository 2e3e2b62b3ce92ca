"""What the console's pages show, assembled from the store for one logged-in human.

Read-only views (the console's decisions go through ``service/approval/users.py``). Each function
takes the services and the ``UserSession`` and returns plain data for a template; every
query is bound to the user's tenant. Nothing here renders HTML.

- ``inbox``: actions awaiting approval, with the rules that held them, quorum progress and
  whether this user may decide.
- ``explorer``: the paged, filtered action list.
- ``action_page``: one action explained: stages, rules, approvals, cosignatures, warrant
  and receipt with their signature checked against the key ring's trusted keys, the
  stored intent checked against the signed digest (``integrity``), the parent chain.
- ``overview``: decisions per day and effect, pending approvals by age, budgets.
- ``log_status``: the transparency log's size and latest checkpoint.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from warrantor.domain.clock import isoformat
from warrantor.domain.model import ActionFilter, Principal, Role
from warrantor.errors import NotFoundError, WarrantorError
from warrantor.evidence.dsse import Envelope, verify_envelope
from warrantor.service.approval.users import UserSession, may_decide
from warrantor.service.execution.actions import detail, summary
from warrantor.store import Repo
from warrantor.store import repo_humans as rh

if TYPE_CHECKING:
    from warrantor.service.services import Services

log = logging.getLogger(__name__)

CHART_DAYS = 14
AGE_BUCKETS = ((3600, "< 1 h"), (4 * 3600, "1-4 h"), (24 * 3600, "4-24 h"), (None, "> 24 h"))


@dataclass(frozen=True)
class SignatureCheck:
    """Whether an envelope's signature verifies under a key the key ring trusts."""

    ok: bool
    keyid: str | None
    detail: str


def check_signature(svc: Services, envelope: dict[str, Any] | None) -> SignatureCheck | None:
    if not envelope:
        return None
    try:
        parsed = Envelope.from_dict(envelope)
    except ValueError as exc:
        return SignatureCheck(False, None, f"malformed envelope: {exc}")
    keys = svc.deps.keyring.trusted_keys()
    key = verify_envelope(parsed, keys)
    if key is None:
        ids = ", ".join(s.keyid[:16] for s in parsed.signatures)
        return SignatureCheck(False, None, f"no trusted key verifies it (key ids {ids})")
    return SignatureCheck(True, key.keyid, "verifies under a trusted key")


def _held_by(decision: dict[str, Any]) -> list[dict[str, Any]]:
    """The rules that stopped the action (every non-allow rule), else the decision's reason."""
    rules = [r for r in decision.get("rules") or [] if r.get("effect") not in (None, "allow")]
    if rules:
        return rules
    reason = decision.get("reason") or "HELD"
    return [{"id": decision.get("stage", "request"), "effect": decision.get("effect"), "reason": reason,
             "message": "held by the pipeline stage " + str(decision.get("stage", "?"))}]


# -- inbox ------------------------------------------------------------------------------
def inbox(svc: Services, us: UserSession, limit: int = 100) -> dict[str, Any]:
    now = svc.deps.clock.now()
    items = []
    with svc.store.read() as repo:
        page = repo.list_actions(us.tenant_id, ActionFilter(status="pending_approval"), 1, limit)
        for action in page.items:
            request = repo.get_approval_request(us.tenant_id, action.id)
            approvals = repo.approvals_for(us.tenant_id, action.id)
            if request is None:
                continue
            approved = sum(1 for a in approvals if a.decision == "approve")
            items.append({
                **summary(action),
                "payload": action.intent.get("payload") or {},
                "details": action.intent.get("details") or "",
                "endpoint_url": action.intent.get("endpoint_url"),
                "held_by": _held_by(action.decision),
                "approvers": list(request.approvers),
                "quorum": request.quorum,
                "approved": approved,
                "approvals": [{"approver": a.approver, "decision": a.decision, "reason": a.reason}
                              for a in approvals],
                "expires_at": request.expires_at,
                "created": action.created_at,
                "age_seconds": (now - action.created_at).total_seconds(),
                "can_decide": may_decide(us.user, request.approvers),
                "decided_by_me": any(a.approver == us.user.email for a in approvals),
            })
    items.sort(key=lambda i: (not (i["can_decide"] and not i["decided_by_me"]), i["created"]))
    return {"items": items, "total": page.total, "now": now}


def pending_count(svc: Services, us: UserSession) -> int:
    with svc.store.read() as repo:
        return rh.count_by_status(repo, us.tenant_id).get("pending_approval", 0)


# -- explorer ---------------------------------------------------------------------------
def explorer(svc: Services, us: UserSession, flt: ActionFilter, page: int, per_page: int = 25) -> dict[str, Any]:
    with svc.store.read() as repo:
        result = repo.list_actions(us.tenant_id, flt, page, per_page)
    pages = max(1, -(-result.total // per_page))
    return {
        "items": [{**summary(a), "created": a.created_at, "payload": a.intent.get("payload") or {}}
                  for a in result.items],
        "page": page, "pages": pages, "total": result.total, "has_more": result.has_more,
        "per_page": per_page,
    }


# -- one action -------------------------------------------------------------------------
def action_page(svc: Services, us: UserSession, action_id: str) -> dict[str, Any]:
    with svc.store.read() as repo:
        action = repo.get_action(us.tenant_id, action_id)
        if action is None:
            raise NotFoundError(f"no action {action_id!r}", code="NOT_FOUND")
        view = detail(repo, action, svc.deps.keyring.trusted_keys())
        chain = _chain(repo, us.tenant_id, action.parent_action_id)
    view["raw"] = copy.deepcopy(view)
    for key in ("warrant", "receipt"):
        if view.get(key):
            view[key]["check"] = check_signature(svc, view[key]["envelope"])
    for cosig in view["cosignatures"]:
        cosig["check"] = check_signature(svc, cosig.get("envelope"))
    approval = view.get("approval")
    approvers = approval["approvers"] if approval else []
    view["can_decide"] = bool(approval) and view["status"] == "pending_approval" and may_decide(us.user, approvers)
    view["decided_by_me"] = any(a["approver"] == us.user.email for a in view["approvals"])
    view["cosigned_by_me"] = any(c["user_id"] == us.user.id for c in view["cosignatures"])
    view["approved_count"] = sum(1 for a in view["approvals"] if a["decision"] == "approve")
    view["held_by"] = _held_by(action.decision) if approval else []
    view["chain"] = chain
    view["created"] = action.created_at
    return view


def _chain(repo: Repo, tenant_id: str, parent_id: str | None, max_depth: int = 16) -> list[dict[str, Any]]:
    """Ancestors, nearest first (each one the tenant's own)."""
    out: list[dict[str, Any]] = []
    while parent_id is not None and len(out) < max_depth:
        parent = repo.get_action(tenant_id, parent_id)
        if parent is None:
            out.append({"action_id": parent_id, "missing": True})
            break
        out.append({**summary(parent), "intent_digest": parent.intent_digest, "missing": False})
        parent_id = parent.parent_action_id
    return out


# -- overview ---------------------------------------------------------------------------
def overview(svc: Services, us: UserSession) -> dict[str, Any]:
    now = svc.deps.clock.now()
    start = (now - timedelta(days=CHART_DAYS - 1)).replace(hour=0, minute=0, second=0, microsecond=0)
    with svc.store.read() as repo:
        rows = rh.decisions_by_day(repo, us.tenant_id, start)
        pending = rh.pending_created_at(repo, us.tenant_id)
        by_status = rh.count_by_status(repo, us.tenant_id)
    days = [(start + timedelta(days=i)).strftime("%Y-%m-%d") for i in range(CHART_DAYS)]
    series: dict[str, dict[str, int]] = {d: {} for d in days}
    for day, effect, n in rows:
        if day in series:
            series[day][effect] = series[day].get(effect, 0) + n
    return {
        "days": [{"day": d, "counts": series[d]} for d in days],
        "decisions_total": sum(n for _, _, n in rows),
        "denied_total": sum(n for _, effect, n in rows if effect == "deny"),
        "pending_ages": _age_buckets(pending, now),
        "pending_total": len(pending),
        "oldest_pending": pending[0] if pending else None,
        "by_status": by_status,
        "budgets": budgets(svc, us),
        "now": now,
    }


def _age_buckets(created: list[datetime], now: datetime) -> list[dict[str, Any]]:
    counts = [0] * len(AGE_BUCKETS)
    for ts in created:
        age = (now - ts).total_seconds()
        for i, (limit, _) in enumerate(AGE_BUCKETS):
            if limit is None or age < limit:
                counts[i] += 1
                break
    return [{"label": label, "count": counts[i]} for i, (_, label) in enumerate(AGE_BUCKETS)]


def budgets(svc: Services, us: UserSession) -> dict[str, Any] | None:
    """Budget consumption from the budgets service when the deployment has one."""
    service = getattr(getattr(svc, "guardrails", None), "budgets", None) or getattr(svc, "budgets", None)
    if service is None or not hasattr(service, "overview"):
        return None
    reader = Principal(tenant_id=us.tenant_id, role=Role.AUDITOR, user_id=us.user.id)
    try:
        data: dict[str, Any] = service.overview(reader)
    except WarrantorError as exc:
        log.warning("budget overview unavailable: %s", exc)
        return None
    return data


# -- log --------------------------------------------------------------------------------
def log_status(svc: Services) -> dict[str, Any]:
    """The log's size (entries sequenced) and its latest signed checkpoint, if any."""
    with svc.store.read() as repo:
        size = repo.counter("log_size")
        latest = repo.latest_checkpoint()
    transparency = getattr(svc, "transparency", None)
    out: dict[str, Any] = {"size": size, "checkpoint": None, "pending": size,
                           "origin": getattr(transparency, "origin", None),
                           "has_log_service": transparency is not None}
    if latest is not None:
        out["checkpoint"] = {
            "size": int(latest["size"]),
            "root_hash": bytes(latest["root_hash"]).hex(),
            "note": latest["note"],
            "timestamped": latest["timestamp_token"] is not None,
            "created_at": isoformat(_aware(latest["created_at"])) if latest["created_at"] else None,
        }
        out["origin"] = out["origin"] or str(latest["note"]).split("\n", 1)[0]
        out["pending"] = max(0, size - int(latest["size"]))
    return out


def _aware(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; the store writes UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


# -- proof bundles ----------------------------------------------------------------------
def proof_bundle(svc: Services, us: UserSession, action_id: str, kind: str) -> dict[str, Any]:
    """The proof bundle (JSON form) of the action's warrant or receipt, once it is logged."""
    if kind not in ("warrant", "receipt"):
        raise NotFoundError(f"expected warrant or receipt, got {kind!r}", code="NOT_FOUND")
    transparency = getattr(svc, "transparency", None)
    if transparency is None:
        raise NotFoundError("this deployment has no transparency log yet", code="NOT_FOUND")
    with svc.store.read() as repo:
        action = repo.get_action(us.tenant_id, action_id)
    evidence_id = getattr(action, f"{kind}_id", None) if action else None
    if evidence_id is None:
        raise NotFoundError(f"no {kind} for action {action_id!r}", code="NOT_FOUND")
    bundle = transparency.bundle(us.tenant_id, evidence_id, kind, wait=2.0)
    out: dict[str, Any] = bundle.to_dict()
    return out
