"""Records management: legal holds, retention of payload details, erasure on request.

Evidence must outlive the data it is about. An action's erasable values (``details``,
``payload``, attested ``context``; outcome details are never stored, only committed to) sit
apart from its committed intent, and every warrant and receipt signs only the commitments
(``evidence/commitments.py``). Erasing deletes the values and their salt; every digest,
decision, approval and piece of evidence stays, so warrants and receipts keep verifying
offline and the log is untouched.

Rules:

- **Legal hold** (``POST``/``DELETE /v1/actions/{id}/hold`` with a ``reason``; admin or
  auditor): each change is a signed *record* (predicate ``legal-hold:v1``: who, why, when)
  appended to the transparency log with the tenant's next record sequence number. Setting
  a hold that is set (or lifting one that is not) changes nothing and records nothing
  (``changed: false``). A hold set after the details were erased is too late: 409
  ``ACTION_ERASED``. Erasure and hold are compare-and-set updates of the same row
  (``repo_records.erase_action``), so they cannot both win.
- **Retention** (``PUT /v1/retention {"details_days": N}``; admin): the details of an action
  created more than N days ago are erased by the retention job (every
  ``WARRANTOR_RETENTION_INTERVAL_SECONDS``, or ``POST /v1/retention/run`` now), unless it is
  held or has not ended (a held action is erased once its hold is lifted, an open one once
  it ends). The job remembers how far it got (``scanned_before``); lifting a hold on an
  older action moves that mark back.
- **Erasure on request** (``POST /v1/erasures`` with ``subject`` (an end user: the actions
  under that subject's grants) or ``agent_id``, and a ``reason``; admin): the details of
  every such action that has ended and is not held are erased now; the others are listed
  under ``skipped`` with why.
- Every erasure (the job's and a request's) is recorded by an **erasure receipt**
  (predicate ``erasure:v1``, subject ``erasure:<id>``, a record with a sequence number,
  logged) listing each erased action by id, intent digest and the commitments to what was
  erased; at most ``ERASE_CHUNK`` actions per receipt. The action then says ``erased_at``,
  ``erasure_id`` and ``erased_fields``; its stored replay response and unsalted request hash
  are gone too, so an idempotent retry is 409 ``ACTION_ERASED``.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from warrantor.domain.clock import isoformat
from warrantor.domain.lifecycle import is_terminal
from warrantor.domain.model import Action, Evidence, Principal, Role
from warrantor.errors import ConflictError, NotFoundError, ValidationError
from warrantor.evidence.commitments import COMMITMENTS
from warrantor.evidence.dsse import Envelope
from warrantor.service.context import Deps
from warrantor.service.proof.sealing import record
from warrantor.service.tenancy import require_role, sees_agent
from warrantor.store import Repo
from warrantor.store import repo_records as rr

log = logging.getLogger(__name__)

MAX_REASON = 2000
MAX_RETENTION_DAYS = 36_500
ERASE_CHUNK = 500  # actions per erasure receipt
_PAGE = 500
SYSTEM = {"role": "system", "job": "retention"}


def by_view(principal: Principal) -> dict[str, Any]:
    """Who made a records change, as the signed records name them."""
    return {"role": principal.role.value if principal.role else "operator", "key_id": principal.key_id,
            "user_id": principal.user_id}


def erased_view(action: Action) -> dict[str, Any]:
    """What an action says about erasure (detail, list, export)."""
    fields = sorted(action.committed_intent.get(COMMITMENTS, {})) if action.erased else []
    return {"erased_at": isoformat(action.erased_at) if action.erased_at else None,
            "erasure_id": action.erasure_id, "erased_fields": fields}


def hold_history(evidence: list[Evidence]) -> list[dict[str, Any]]:
    """Every legal hold change of an action, oldest first, from its signed records."""
    out = []
    for ev in evidence:
        if ev.kind != "hold":
            continue
        predicate = Envelope.from_dict(ev.envelope).statement().get("predicate", {})
        out.append({"hold_id": ev.id, "legal_hold": predicate.get("legal_hold"), "reason": predicate.get("reason"),
                    "by": predicate.get("by"), "at": predicate.get("issued_at"), "sequence": ev.sequence,
                    "log_index": ev.log_index})
    return out


def _reason(reason: str) -> str:
    text = reason.strip()
    if not 1 <= len(text) <= MAX_REASON or any(c < " " and c not in "\t\n" for c in text):
        raise ValidationError(f"reason: expected 1 to {MAX_REASON} printable characters saying why",
                              code="INVALID_REASON", details={"field": "reason"})
    return text


def erased_conflict(action: Action) -> ConflictError:
    when = isoformat(action.erased_at) if action.erased_at else "?"
    return ConflictError(
        f"the details of action {action.id} were erased at {when} (erasure {action.erasure_id}): "
        "a legal hold set now is too late to preserve them",
        code="ACTION_ERASED", details={"action_id": action.id, "erased_at": when, "erasure_id": action.erasure_id},
    )


def _chunks(items: list[Action], size: int) -> Iterator[list[Action]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


class Records:
    def __init__(self, deps: Deps) -> None:
        self._d = deps

    # -- legal hold ---------------------------------------------------------------------
    def set_legal_hold(self, principal: Principal, action_id: str, hold: bool, reason: str) -> dict[str, Any]:
        tenant_id = require_role(principal, Role.ADMIN, Role.AUDITOR)
        reason = _reason(reason)
        with self._d.store.read() as repo:
            action = repo.get_action(tenant_id, action_id)
        if action is None or not sees_agent(principal, action.agent_id):
            raise NotFoundError(f"no action {action_id!r}", code="NOT_FOUND")
        if action.erased:
            raise erased_conflict(action)
        unchanged = {"action_id": action_id, "legal_hold": hold, "changed": False}
        if action.legal_hold == hold:
            return unchanged
        now = self._d.clock.now()
        by = by_view(principal)
        sealed = self._d.sealer.legal_hold(tenant_id=tenant_id, action_id=action_id,
                                           intent_digest=action.intent_digest, legal_hold=hold, reason=reason,
                                           by=by, issued_at=now)

        def job(repo: Repo) -> dict[str, Any] | None:
            if not repo.set_legal_hold(tenant_id, action_id, hold):
                current = repo.get_action(tenant_id, action_id)
                if current is not None and current.erased:
                    raise erased_conflict(current)
                return None  # someone made the same change first
            if not hold:  # the retention job looks at this action again
                rr.set_scanned_before(repo, tenant_id, action.created_at, only_lower=True)
            ticket = record(repo, [(sealed, tenant_id, action_id)], now)
            view: dict[str, Any] = {"action_id": action_id, "legal_hold": hold, "changed": True, "reason": reason,
                                    "by": by, "changed_at": isoformat(now), "hold_id": sealed.evidence_id,
                                    "sequence": None, "log_index": None}
            sealed.when_sealed(lambda s: view.update(sequence=s.sequence))
            ticket.fill(view, "log_index")
            self._d.events.emit(repo, tenant_id, "action.legal_hold_set" if hold else "action.legal_hold_lifted", {
                "action_id": action_id, "legal_hold": hold, "hold_id": sealed.evidence_id, "by": by})
            return view

        result = self._d.store.write(job)
        log.info("legal hold %s on %s by %s", "set" if hold else "lifted", action_id, by)
        return result if result is not None else unchanged

    # -- retention ----------------------------------------------------------------------
    def retention(self, principal: Principal) -> dict[str, Any]:
        tenant_id = require_role(principal, Role.ADMIN, Role.AUDITOR)
        with self._d.store.read() as repo:
            return _retention_view(rr.get_retention(repo, tenant_id))

    def set_retention(self, principal: Principal, details_days: int | None) -> dict[str, Any]:
        tenant_id = require_role(principal, Role.ADMIN)
        if details_days is not None and not 1 <= details_days <= MAX_RETENTION_DAYS:
            raise ValidationError(
                f"details_days: expected a whole number of days from 1 to {MAX_RETENTION_DAYS}, or null to keep "
                f"details until erased on request, got {details_days}",
                code="INVALID_RETENTION", details={"field": "details_days"})
        now = self._d.clock.now()

        def job(repo: Repo) -> rr.Retention:
            rr.set_retention(repo, tenant_id, details_days, now)
            return rr.get_retention(repo, tenant_id)

        return _retention_view(self._d.store.write(job))

    def run_retention(self, principal: Principal) -> dict[str, Any]:
        """``POST /v1/retention/run``: the job, now, for the caller's tenant."""
        tenant_id = require_role(principal, Role.ADMIN)
        return self.apply_retention(tenant_id, by_view(principal))

    def sweep(self) -> int:
        """The periodic job: every tenant with a retention period; how many actions it erased."""
        with self._d.store.read() as repo:
            tenants = rr.tenants_with_retention(repo)
        erased = 0
        for tenant_id in tenants:
            try:
                erased += self.apply_retention(tenant_id, SYSTEM)["erased"]
            except Exception:
                log.exception("retention of tenant %s failed; the next run retries", tenant_id)
        return erased

    def apply_retention(self, tenant_id: str, by: dict[str, Any]) -> dict[str, Any]:
        now = self._d.clock.now()
        with self._d.store.read() as repo:
            cfg = rr.get_retention(repo, tenant_id)
        out: dict[str, Any] = {"details_days": cfg.details_days, "erased": 0, "held": 0, "not_ended": 0,
                               "erasures": []}
        if cfg.details_days is None:
            return out
        cutoff = now - timedelta(days=cfg.details_days)
        out["cutoff"] = isoformat(cutoff)
        mark = cutoff  # every action created before it is erased, held, or was open
        scope = {"kind": "retention", "details_days": cfg.details_days, "cutoff": isoformat(cutoff)}
        reason = f"retention: payload details are kept {cfg.details_days} days"
        after: tuple[datetime, str] | None = None
        while True:
            with self._d.store.read() as repo:
                page = rr.actions_page(repo, tenant_id, after=after, limit=_PAGE, start=cfg.scanned_before,
                                       before=cutoff)
            if not page:
                break
            after = (page[-1].created_at, page[-1].id)
            candidates = []
            for action in page:
                if action.erased:
                    continue
                if action.legal_hold:
                    out["held"] += 1
                elif not is_terminal(action.status):
                    out["not_ended"] += 1
                    mark = min(mark, action.created_at)
                else:
                    candidates.append(action)
            for view in self._erase(tenant_id, candidates, scope=scope, reason=reason, by=by, now=now):
                out["erased"] += view["actions"]
                out["erasures"].append(view)
            if len(page) < _PAGE:
                break
        if cfg.scanned_before is None or mark > cfg.scanned_before:
            self._d.store.write(lambda repo: rr.move_scanned_before(repo, tenant_id, cfg.scanned_before, mark))
        if out["erased"]:
            log.info("retention erased the details of %d actions of tenant %s", out["erased"], tenant_id)
        return out

    # -- erasure on request ---------------------------------------------------------------
    def erase(self, principal: Principal, *, subject: str | None, agent_id: str | None, reason: str) -> dict[str, Any]:
        tenant_id = require_role(principal, Role.ADMIN)
        if (subject is None) == (agent_id is None):
            raise ValidationError("expected exactly one of subject (an end user) and agent_id",
                                  code="INVALID_ERASURE_REQUEST", details={"field": "subject"})
        reason = _reason(reason)
        now = self._d.clock.now()
        grants: set[str] = set()
        if subject is not None:
            with self._d.store.read() as repo:
                grants = set(rr.grant_ids_for_subject(repo, tenant_id, subject))
        scope: dict[str, Any] = {"kind": "subject"} if subject is not None else {"kind": "agent", "agent_id": agent_id}
        erasures: list[dict[str, Any]] = []
        skipped: list[dict[str, Any]] = []
        after: tuple[datetime, str] | None = None
        while subject is None or grants:
            with self._d.store.read() as repo:
                page = rr.actions_page(repo, tenant_id, after=after, limit=_PAGE, agent_id=agent_id)
            if not page:
                break
            after = (page[-1].created_at, page[-1].id)
            candidates = []
            for action in page:
                if subject is not None and action.committed_intent.get("authorization_id") not in grants:
                    continue
                why = ("already_erased" if action.erased else "legal_hold" if action.legal_hold
                       else None if is_terminal(action.status) else "not_ended")
                if why is None:
                    candidates.append(action)
                else:
                    skipped.append({"action_id": action.id, "reason": why})
            erasures += self._erase(tenant_id, candidates, scope=scope, reason=reason, by=by_view(principal), now=now)
            if len(page) < _PAGE:
                break
        return {"scope": scope, "erased": sum(e["actions"] for e in erasures), "erasures": erasures,
                "skipped": skipped}

    # -- the erasure itself -----------------------------------------------------------------
    def _erase(self, tenant_id: str, actions: list[Action], *, scope: dict[str, Any], reason: str,
               by: dict[str, Any], now: datetime) -> list[dict[str, Any]]:
        """Erase ``actions`` (each only if still unheld and unerased), one erasure receipt per
        chunk; the receipts' views."""
        views = []
        for chunk in _chunks(actions, ERASE_CHUNK):
            job = functools.partial(self._erase_job, tenant_id=tenant_id, chunk=chunk,
                                    erasure_id=self._d.ids.new("ers"), scope=scope, reason=reason, by=by, now=now)
            view = self._d.store.write(job)
            if view is not None:
                views.append(view)
        return views

    def _erase_job(self, repo: Repo, *, tenant_id: str, chunk: list[Action], erasure_id: str,
                   scope: dict[str, Any], reason: str, by: dict[str, Any], now: datetime) -> dict[str, Any] | None:
        erased = []
        for action in chunk:
            if rr.erase_action(repo, action, erasure_id, now):
                commitments = action.committed_intent.get(COMMITMENTS, {})
                erased.append({"action_id": action.id, "intent_digest": action.intent_digest,
                               "fields": sorted(commitments), "commitments": commitments})
        if not erased:
            return None
        sealed = self._d.sealer.erasure(erasure_id=erasure_id, tenant_id=tenant_id, scope=scope, reason=reason,
                                        by=by, erased=erased, issued_at=now)
        ticket = record(repo, [(sealed, tenant_id, None)], now)
        view: dict[str, Any] = {"erasure_id": erasure_id, "actions": len(erased),
                                "action_ids": [e["action_id"] for e in erased], "erased_at": isoformat(now),
                                "sequence": None, "log_index": None}
        sealed.when_sealed(lambda s: view.update(sequence=s.sequence))
        ticket.fill(view, "log_index")
        for item in erased:
            self._d.events.emit(repo, tenant_id, "action.erased", {
                "action_id": item["action_id"], "erasure_id": erasure_id, "fields": item["fields"],
                "reason": scope["kind"]})
        return view


def _retention_view(cfg: rr.Retention) -> dict[str, Any]:
    return {"details_days": cfg.details_days,
            "scanned_before": isoformat(cfg.scanned_before) if cfg.scanned_before else None,
            "updated_at": isoformat(cfg.updated_at) if cfg.updated_at else None}
