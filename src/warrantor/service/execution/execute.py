"""``POST /v1/actions/{id}/execute``: Warrantor performs an authorized HTTP request itself.

docs/execute.md. One call checks, claims, sends, witnesses and notarizes:

1. **Check** (nothing written): an agent or gateway key of the action's agent, or an admin
   (404 for another agent's action, as everywhere); an action of type ``http.request``
   (409 ``NOT_EXECUTABLE`` otherwise) in status ``authorized`` or ``approved`` (409
   ``INVALID_ACTION_STATE``) whose warrant is still valid (409 ``WARRANT_EXPIRED``); the
   enforcing bundle, read fresh, must still name the URL's host for ``http.request`` (403
   ``ENDPOINT_NOT_ALLOWED``: the bundle changed since authorization); the host must resolve
   to allowed addresses only (403 ``EXECUTE_ADDRESS_REFUSED`` / ``EXECUTE_INSECURE_SCHEME``,
   502 ``EXECUTE_UNRESOLVABLE``); injected secrets must be readable (503
   ``EXECUTE_SECRET_UNAVAILABLE``). A refusal leaves the action as it was.
2. **Claim**: one write, under the action's row lock, re-checks status, warrant and the
   enforcing bundle's hash, and moves the action to ``executing``. Two concurrent executes:
   one claims, the other gets 409 ``INVALID_ACTION_STATE``. From here on the action can
   never run again, whatever happens.
3. **Send** (``execute_http.send``), outside any transaction, on the event loop.
4. **Record**: one write moves ``executing`` to ``notarized`` (2xx), ``failed`` (any other
   status, or nothing sent) or ``uncertain`` (it may have run), with a receipt for the
   first two that carries ``evidence_grade: "witnessed"`` and the witness
   ``{request_sha256, response_sha256, executor: "warrantor-http", target: "METHOD
   host/path"}``; the execution record (signed in the receipt) names the executor, the
   address connected to, the upstream status, sizes and the names (never the values) of
   injected headers.

A process that dies between 2 and 4 leaves the action ``executing``; the expiry sweep
moves an execution claimed longer ago than the deadline plus 10 s to ``uncertain``
(``recover_lost``), never back to a runnable state. A result that arrives after that
(a process stalled past the deadline) still resolves the ``uncertain`` action, with its
receipt, if the execution id matches.
"""

from __future__ import annotations

import base64
import functools
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import anyio

from warrantor.domain.clock import isoformat
from warrantor.domain.lifecycle import Event, Status
from warrantor.domain.model import Action, Principal, Role
from warrantor.errors import ConflictError, NotFoundError, PermissionDeniedError, WarrantorError
from warrantor.policy.endpoints import EndpointAllowlist
from warrantor.policy.http_request import HTTP_ACTION, HttpRequestError, HttpRequestSpec, explicitly_allowed
from warrantor.policy.http_request import parse_http_request as parse_request
from warrantor.service.authorization.policies import Policies
from warrantor.service.context import Deps
from warrantor.service.execution.execute_http import (
    EXECUTOR,
    Exchange,
    ExecuteConfig,
    filtered_headers,
    redact,
    resolve,
    send,
)
from warrantor.service.execution.execute_secrets import Injection
from warrantor.service.execution.transitions import Applied, apply
from warrantor.service.tenancy import require_role, sees_agent
from warrantor.store import Repo
from warrantor.store.repo_execute import lost_executions

log = logging.getLogger(__name__)

RUNNABLE = (Status.AUTHORIZED, Status.APPROVED)
_RESULT_EVENTS = {"completed": Event.EXECUTED_COMPLETED, "failed": Event.EXECUTED_FAILED,
                  "unknown": Event.EXECUTED_UNKNOWN}
# A late result for an action the sweep already made ``uncertain``: the ordinary resolutions.
_LATE_EVENTS = {"completed": Event.NOTARIZE_COMPLETED, "failed": Event.NOTARIZE_FAILED}


@dataclass(frozen=True)
class _Claimed:
    action: Action
    spec: HttpRequestSpec
    bundle_hash: str
    pins: tuple[str, ...]


class Executor:
    def __init__(self, deps: Deps, policies: Policies, config: ExecuteConfig) -> None:
        self._d = deps
        self._policies = policies
        self.config = config

    # -- the call --------------------------------------------------------------------------
    async def execute_async(self, principal: Principal, action_id: str) -> dict[str, Any]:
        tenant_id = require_role(principal, Role.AGENT, Role.ADMIN)
        checked = self._check(principal, tenant_id, action_id)
        address = await resolve(checked.spec, self.config)
        injection = self.config.secrets.injection_for(checked.spec)
        execution_id = self._d.ids.new("exe")
        started = self._d.clock.now()
        claim = {"executor": EXECUTOR, "execution_id": execution_id, "started_at": isoformat(started),
                 "address": str(address), "requested_by": principal.key_id}
        await self._d.store.write_async(
            lambda repo: self._claim(repo, principal, tenant_id, action_id, checked.bundle_hash, claim, started))
        self._d.notifier.notify(action_id)
        exchange: Exchange | None = None
        try:
            exchange = await send(checked.spec, address, injection, self.config, checked.pins)
        finally:
            if exchange is None:  # cancelled or failed mid-flight: it may have run
                with anyio.CancelScope(shield=True):
                    await self._record_lost(tenant_id, action_id, execution_id)
        done = exchange
        with anyio.CancelScope(shield=True):  # the result is recorded even if the caller went away
            result: dict[str, Any] = await self._d.store.write_async(
                lambda repo: self._record(repo, tenant_id, action_id, checked.spec, claim, done, injection))
        self._d.notifier.notify(action_id)
        return result

    def _check(self, principal: Principal, tenant_id: str, action_id: str) -> _Claimed:
        """Everything that can refuse before anything is written (rule 1)."""
        now = self._d.clock.now()
        with self._d.store.read() as repo:
            action = repo.get_action(tenant_id, action_id)
            if action is None or not sees_agent(principal, action.agent_id):
                raise NotFoundError(f"no action {action_id!r}", code="NOT_FOUND")
            active = repo.active_bundles(tenant_id).get("enforce")
        _check_runnable(action, now)
        spec = _spec_of(action)
        if active is None:
            raise PermissionDeniedError("expected an enforcing policy bundle that allows this endpoint; none is active",
                                        code="ENDPOINT_NOT_ALLOWED", details={"host": spec.endpoint.host})
        bundle_hash = active[0]
        allowlist = self._policies.compiled(self._policies.get(tenant_id, bundle_hash)).endpoints
        _check_allowed(allowlist, spec, bundle_hash)
        pins = allowlist.pins_for(spec.endpoint.host)
        if pins and spec.endpoint.scheme != "https":
            raise PermissionDeniedError("expected https to a host whose certificate the bundle pins",
                                        code="ENDPOINT_TLS_MISMATCH", details={"host": spec.endpoint.host})
        return _Claimed(action, spec, bundle_hash, tuple(pins))

    def _claim(self, repo: Repo, principal: Principal, tenant_id: str, action_id: str, bundle_hash: str,
               claim: dict[str, Any], now: datetime) -> None:
        """Rule 2: under the row lock, the checks again, then ``executing``."""
        action = repo.get_action(tenant_id, action_id, for_update=True)
        if action is None or not sees_agent(principal, action.agent_id):
            raise NotFoundError(f"no action {action_id!r}", code="NOT_FOUND")
        _check_runnable(action, now)
        active = repo.active_bundles(tenant_id).get("enforce")
        if active is None or active[0] != bundle_hash:
            raise PermissionDeniedError(
                "the enforcing policy bundle changed while this execution was checked; nothing was sent",
                code="ENDPOINT_NOT_ALLOWED", details={"checked_bundle": bundle_hash,
                                                      "active_bundle": active[0] if active else None})
        apply(self._d, repo, action, Event.EXECUTE, now, execution={**claim, "outcome": "executing"})

    # -- recording ---------------------------------------------------------------------------
    def _record(self, repo: Repo, tenant_id: str, action_id: str, spec: HttpRequestSpec, claim: dict[str, Any],
                exchange: Exchange, injection: Injection) -> dict[str, Any]:
        now = self._d.clock.now()
        action = repo.get_action(tenant_id, action_id, for_update=True)
        if action is None or (action.execution or {}).get("execution_id") != claim["execution_id"]:
            raise ConflictError(f"action {action_id} was changed by someone else during its execution",
                                code="INVALID_ACTION_STATE")
        witness = {"request_sha256": exchange.request_sha256, "response_sha256": exchange.response_sha256,
                   "executor": EXECUTOR, "target": spec.target}
        execution = {
            **claim,
            "outcome": exchange.outcome,
            "reported_at": isoformat(now),
            "upstream_status": exchange.status_code,
            "response_bytes": len(exchange.body),
            "truncated": exchange.truncated,
            "error": exchange.error,
            "injected_headers": sorted(injection.names),
            "witness": witness,
        }
        applied: Applied | None = None
        if action.status is Status.EXECUTING:
            event = _RESULT_EVENTS[exchange.outcome]
        elif action.status is Status.UNCERTAIN and exchange.outcome in _LATE_EVENTS:
            event = _LATE_EVENTS[exchange.outcome]  # the sweep presumed it lost; here is the answer
        else:
            event = None
        if event is not None:
            reason = exchange.error if exchange.outcome != "completed" else None
            applied = apply(self._d, repo, action, event, now, execution=execution, reason_code=reason,
                            extra_receipt={"evidence_grade": "witnessed", "witness": witness})
        status = applied.status if applied is not None else action.status
        receipt = applied.receipt_view() if applied is not None else None
        return {
            "action_id": action_id,
            "status": status.value,
            "evidence_grade": "witnessed",
            "witness": witness,
            "request": exchange.request_document,
            "response": _response_view(exchange, injection),
            "error": {"code": exchange.error, "message": exchange.message} if exchange.error else None,
            "receipt": receipt,
        }

    async def _record_lost(self, tenant_id: str, action_id: str, execution_id: str) -> None:
        try:
            await self._d.store.write_async(functools.partial(
                self._lose, tenant_id=tenant_id, action_id=action_id, execution_id=execution_id))
        except WarrantorError as exc:  # the sweep will find it
            log.warning("execution %s of %s could not be marked uncertain: %s", execution_id, action_id, exc)
        self._d.notifier.notify(action_id)

    def _lose(self, repo: Repo, *, tenant_id: str, action_id: str, execution_id: str | None) -> None:
        action = repo.get_action(tenant_id, action_id, for_update=True)
        if action is None or action.status is not Status.EXECUTING:
            return
        record = dict(action.execution or {})
        if execution_id is not None and record.get("execution_id") != execution_id:
            return
        now = self._d.clock.now()
        record.update(outcome="unknown", reported_at=isoformat(now), error="EXECUTION_LOST")
        apply(self._d, repo, action, Event.EXECUTED_UNKNOWN, now, execution=record,
              reason_code="EXECUTION_LOST")

    def recover_lost(self) -> int:
        """The sweep's part: executions claimed longer ago than the deadline allows become
        ``uncertain`` (their process died mid-flight; the request may have gone out)."""
        cutoff = self._d.clock.now() - timedelta(seconds=self.config.lost_after)
        with self._d.store.read() as repo:
            lost = lost_executions(repo, cutoff)
        for tenant_id, action_id in lost:
            try:
                self._d.store.write(functools.partial(self._lose, tenant_id=tenant_id, action_id=action_id,
                                                      execution_id=None))
            except WarrantorError as exc:
                log.info("recovery of execution of %s skipped: %s", action_id, exc)
            self._d.notifier.notify(action_id)
        return len(lost)


def _check_runnable(action: Action, now: datetime) -> None:
    if action.action_type != HTTP_ACTION:
        raise ConflictError(f"expected an action of type {HTTP_ACTION} to execute, got {action.action_type!r}",
                            code="NOT_EXECUTABLE", details={"action_type": action.action_type})
    if action.status not in RUNNABLE:
        raise ConflictError(
            f"expected an authorized or approved action to execute, got {action.status.value!r}",
            code="INVALID_ACTION_STATE", details={"status": action.status.value},
        )
    if action.warrant_expires_at is None or action.warrant_expires_at <= now:
        raise ConflictError("the action's warrant has expired; nothing was sent", code="WARRANT_EXPIRED",
                            details={"warrant_expires_at": isoformat(action.warrant_expires_at)
                                     if action.warrant_expires_at else None})


def _spec_of(action: Action) -> HttpRequestSpec:
    try:
        return parse_request(action.intent.get("payload"), action.intent.get("endpoint_url"))
    except HttpRequestError as exc:  # authorized before these rules existed, or altered in the store
        raise ConflictError(f"the stored request cannot be executed: {exc.message}", code="NOT_EXECUTABLE",
                            details=exc.details) from None


def _check_allowed(allowlist: EndpointAllowlist, spec: HttpRequestSpec, bundle_hash: str) -> None:
    verdict = explicitly_allowed(allowlist, spec)
    if not verdict.allowed:
        raise PermissionDeniedError(
            f"the enforcing bundle does not allow {HTTP_ACTION} to {verdict.host}; nothing was sent",
            code="ENDPOINT_NOT_ALLOWED", details={"host": verdict.host, "bundle_hash": bundle_hash},
        )


def _response_view(exchange: Exchange, injection: Injection) -> dict[str, Any] | None:
    """The upstream's answer for the caller: filtered headers, the bounded body, secrets
    redacted (the digest covers the bytes as received)."""
    if exchange.status_code is None:
        return None
    body, body_redacted = redact(exchange.body, injection.secrets, truncated=exchange.truncated)
    headers = filtered_headers(exchange.headers, injection.secrets)
    try:
        text, encoding = body.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        text, encoding = base64.b64encode(body).decode("ascii"), "base64"
    return {
        "status_code": exchange.status_code,
        "headers": headers,
        "body": text,
        "body_encoding": encoding,
        "truncated": exchange.truncated,
        "redacted": body_redacted or any("[redacted]" in v for _, v in headers),
    }
