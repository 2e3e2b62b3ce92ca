"""Policy bundles: upload (validated, content-addressed), activation, lookup, engines.

Bundles are kept forever by their sha256. Activation per tenant and mode (``enforce`` or
``shadow``) is itself evidence: a signed policy statement goes into the log, so an auditor
can tell which bundle was in force when.

Untrusted bundle text reaches cedarpy (native code) in this process only after the same
steps ran in a forked child under hard limits (:mod:`warrantor.policy.sandbox`): a crash,
a time-out or a memory blow-up there is a 422 ``POLICY_INVALID`` whose problem has code
``POLICY_TOO_COMPLEX``, and this process never runs that input. Bundles read back from the
store were checked when they were uploaded.

Compiled engines are cached by bundle hash: a bundle never changes once stored, so neither
does its policy outlook (:mod:`warrantor.policy.outlook`), analysed on first use and kept
with the engine. Which bundle is active per tenant is cached for ``ACTIVE_CACHE_SECONDS``:
an activation takes effect at once in the process that made it, and within that time in the
other processes sharing the database.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Any

from warrantor.domain.model import Principal
from warrantor.errors import NotFoundError, ValidationError
from warrantor.policy.bundle import BundleInvalidError, PolicyBundle, parse_bundle
from warrantor.policy.detectors import DetectorConfigError, DetectorSet
from warrantor.policy.endpoints import EndpointAllowlist
from warrantor.policy.engine import PolicyEngine
from warrantor.policy.outlook import NO_ACTIVE_POLICY, BundleOutlook, Outlook, analyse
from warrantor.policy.sandbox import SandboxError, SandboxLimits, run_isolated
from warrantor.service.approval.approvers import TenantApprovers, bundle_problems
from warrantor.service.context import Deps
from warrantor.service.proof.sealing import record
from warrantor.service.tenancy import bound_agent
from warrantor.store import Repo

log = logging.getLogger(__name__)

MODES = ("enforce", "shadow")
ACTIVE_CACHE_SECONDS = 1.0


@dataclass(frozen=True)
class Compiled:
    """Everything evaluation needs from one bundle, built once per process."""

    bundle: PolicyBundle
    engine: PolicyEngine
    detectors: DetectorSet
    endpoints: EndpointAllowlist

    @classmethod
    def build(cls, bundle: PolicyBundle) -> Compiled:
        return cls(
            bundle,
            PolicyEngine(bundle),
            DetectorSet.from_detectors_config(bundle.config.detectors),
            EndpointAllowlist.from_endpoints_config(bundle.config.endpoints),
        )

    @cached_property
    def outlook(self) -> BundleOutlook:
        """The bundle's policy outlook, analysed on first use (not every engine needs one)."""
        analysed = analyse(self.bundle)
        if analysed.error is not None:
            log.warning("policy outlook of bundle %s could not be analysed, every outlook is the "
                        "conservative one: %s", self.bundle.hash, analysed.error)
        return analysed


@dataclass(frozen=True)
class ActivePolicy:
    compiled: Compiled
    mode: str
    activated_at: datetime

    @property
    def bundle(self) -> PolicyBundle:
        return self.compiled.bundle


def compile_upload(raw: Any) -> Compiled:
    """Every native step an upload runs, with detector problems as bundle problems."""
    bundle = parse_bundle(raw)
    try:
        return Compiled.build(bundle)  # compiles detectors and the allowlist: bad patterns now
    except (DetectorConfigError, ValueError) as exc:
        problems = getattr(exc, "problems", None) or [str(exc)]
        raise BundleInvalidError([{"message": f"config.detectors: {p}"} for p in problems]) from exc


def check_upload(raw: Any) -> dict[str, Any]:
    """What the sandboxed child runs: ``{"ok": true}`` or ``{"problems": [...]}``."""
    try:
        compiled = compile_upload(raw)
    except BundleInvalidError as exc:
        return {"problems": exc.problems}
    # the outlook's native calls meet this bundle here first, so one that would crash the
    # server kills this child instead (a failed analysis is no problem: see policy.outlook)
    analyse(compiled.bundle)
    return {"ok": True}


class Policies:
    def __init__(self, deps: Deps, cache_size: int = 64, sandbox: SandboxLimits | None = None) -> None:
        """``sandbox``: limits for the child that checks an upload first (the defaults when
        None; the child cannot be turned off)."""
        self._d = deps
        self._sandbox = sandbox or SandboxLimits()
        self._engines: OrderedDict[str, Compiled] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self._active: dict[str, tuple[float, dict[str, tuple[str, datetime]]]] = {}

    def upload(self, tenant_id: str, raw: dict[str, Any]) -> tuple[PolicyBundle, bool]:
        try:
            answer = run_isolated(check_upload, raw, self._sandbox)
        except SandboxError as exc:
            raise BundleInvalidError([{
                "message": f"cedar: the bundle could not be checked within the policy engine's "
                           f"limits: {exc.reason}", "code": "POLICY_TOO_COMPLEX",
            }]) from exc
        if answer.get("problems"):
            raise BundleInvalidError(list(answer["problems"]))
        compiled = compile_upload(raw)  # the child accepted exactly these steps on this input
        bundle = compiled.bundle
        self._remember(bundle, compiled)
        with self._d.store.read() as repo:
            people = TenantApprovers.load(repo, tenant_id)
        if problems := bundle_problems(bundle, people):
            raise BundleInvalidError(problems)
        now = self._d.clock.now()
        created = self._d.store.write(
            lambda repo: repo.insert_bundle(tenant_id, bundle.hash, bundle.to_dict(), now)
        )
        return bundle, created

    def activate(self, tenant_id: str, bundle_hash: str, mode: str) -> dict[str, Any]:
        if mode not in MODES:
            raise ValidationError(f"expected mode enforce or shadow, got {mode!r}", code="INVALID_MODE")
        self.get(tenant_id, bundle_hash)  # 404 before anything is signed
        now = self._d.clock.now()
        sealed = self._d.sealer.policy_activation(
            tenant_id=tenant_id, bundle_hash=bundle_hash, mode=mode, issued_at=now
        )

        def job(repo: Repo) -> None:
            record(repo, [(sealed, tenant_id, None)], now)
            repo.activate_bundle(tenant_id, mode, bundle_hash, now, sealed.evidence_id)

        self._d.store.write(job)
        self._forget_active(tenant_id)
        return {"bundle_hash": bundle_hash, "mode": mode, "activated_at": now, "evidence_id": sealed.evidence_id}

    def deactivate(self, tenant_id: str, mode: str) -> None:
        self._d.store.write(lambda repo: repo.deactivate(tenant_id, mode))
        self._forget_active(tenant_id)

    def get(self, tenant_id: str, bundle_hash: str) -> PolicyBundle:
        with self._lock:
            hit = self._engines.get(bundle_hash)
        with self._d.store.read() as repo:
            row = repo.get_bundle(tenant_id, bundle_hash)
        if row is None:
            raise NotFoundError(f"no policy bundle {bundle_hash!r} in this tenant", code="POLICY_NOT_FOUND")
        if hit is not None:
            return hit.bundle
        bundle = parse_bundle(row[0])
        self._remember(bundle)
        return bundle

    def compiled(self, bundle: PolicyBundle) -> Compiled:
        return self._remember(bundle)

    def _remember(self, bundle: PolicyBundle, compiled: Compiled | None = None) -> Compiled:
        with self._lock:
            hit = self._engines.get(bundle.hash)
            if hit is not None:
                self._engines.move_to_end(bundle.hash)
                return hit
        compiled = compiled or Compiled.build(bundle)
        with self._lock:
            self._engines[bundle.hash] = compiled
            while len(self._engines) > self._cache_size:
                self._engines.popitem(last=False)
        return compiled

    def active(self, repo: Repo, tenant_id: str) -> dict[str, ActivePolicy]:
        """The bundles in force for a tenant, by mode, read within the caller's transaction."""
        out: dict[str, ActivePolicy] = {}
        for mode, (bundle_hash, activated_at) in self._active_rows(repo, tenant_id).items():
            with self._lock:
                hit = self._engines.get(bundle_hash)
            if hit is None:
                row = repo.get_bundle(tenant_id, bundle_hash)
                if row is None:
                    continue
                hit = self._remember(parse_bundle(row[0]))
            out[mode] = ActivePolicy(hit, mode, activated_at)
        return out

    def _active_rows(self, repo: Repo, tenant_id: str) -> dict[str, tuple[str, datetime]]:
        now = time.monotonic()
        with self._lock:
            hit = self._active.get(tenant_id)
        if hit is not None and hit[0] > now:
            return hit[1]
        rows = repo.active_bundles(tenant_id)
        with self._lock:
            if len(self._active) > 10_000:
                self._active.clear()
            self._active[tenant_id] = (now + ACTIVE_CACHE_SECONDS, rows)
        return rows

    def _forget_active(self, tenant_id: str) -> None:
        with self._lock:
            self._active.pop(tenant_id, None)

    def outlook(
        self, tenant_id: str, principal: Principal, agent_id: str | None, action_types: Sequence[str]
    ) -> dict[str, Any]:
        """What the enforcing bundle can decide for each action type and one agent, without a
        payload (docs/guardrails.md, "Outlook"). A key bound to an agent asks for that agent
        only; any other key names the agent."""
        agent_id = bound_agent(principal, agent_id)
        if agent_id is None:
            raise ValidationError(
                "agent_id: expected the agent whose outlook this is (a key not bound to an agent "
                "must name one)", code="AGENT_ID_REQUIRED", details={"field": "agent_id"},
            )
        with self._d.store.read_lazy() as repo:  # no transaction when the active bundle is cached
            enforce = self.active(repo, tenant_id).get("enforce")
        if enforce is None:
            outlooks = [Outlook.denied(t, NO_ACTIVE_POLICY) for t in action_types]
        else:
            analysed = enforce.compiled.outlook
            outlooks = [analysed.outlook(agent_id, t) for t in action_types]
        return {
            "bundle_hash": enforce.bundle.hash if enforce else None,
            "agent_id": agent_id,
            "outlooks": [o.to_dict() for o in outlooks],
        }

    def list(self, tenant_id: str) -> list[dict[str, Any]]:
        with self._d.store.read() as repo:
            active = repo.active_bundles(tenant_id)
            bundles = repo.list_bundles(tenant_id)
        modes = {h: m for m, (h, _) in active.items()}
        return [
            {"bundle_hash": h, "created_at": created, "active_mode": modes.get(h)}
            for h, created in bundles
        ]
