"""Optional OpenTelemetry tracing of the authorization pipeline (docs/operations.md).

Off by default. ``WARRANTOR_OTEL=true`` (the ``otel`` extra installed) makes the app
factory call :func:`install` once at start-up; with it off this module is never imported
and the pipeline runs exactly the code it runs without the extra: no tracer, no span, no
check per request.

:func:`install` wraps one ``Authorizer``'s entry points in place, so the pipeline's code
knows nothing of tracing. One trace per authorization (``POST /v1/actions``, AuthZEN
evaluations):

- ``authorize {action_type}``: the whole authorization. At the start ``gen_ai.agent.id``,
  ``gen_ai.agent.version``, ``gen_ai.tool.name`` (the action type: the tool an agent asks
  to run) from the GenAI semantic conventions, ``warrantor.tenant.id``,
  ``warrantor.action.type``, ``warrantor.run.id``; at the end ``warrantor.action.id``,
  ``warrantor.action.status``, ``warrantor.decision.effect``, ``.stage``, ``.reason``,
  ``.code`` (denials), ``.rules`` (rule ids), ``warrantor.warrant.id`` or
  ``warrantor.receipt.id``, ``warrantor.idempotent_replay``; ``error.type`` (the problem
  code) when it is refused with an error.
- children, one per stage: ``warrantor.read`` (idempotency lookup and facts),
  ``warrantor.stage {name}`` for each evaluation stage (``warrantor.stage.outcome``,
  ``warrantor.decision.effect`` so far), ``warrantor.seal`` (signing; the action and
  evidence ids), ``warrantor.commit`` (the write job, in the store's writer thread) with
  ``warrantor.guard {name}`` for each budget, rate-limit and confirmation guard
  (``warrantor.guard.outcome``: ``pass`` or the effect it imposed).

No payload, details or other request content is ever put on a span. A ``traceparent``
header (W3C Trace Context) on the request makes the authorization a child of the caller's
span (an agent framework's ``execute_tool`` span, a gateway's), unless an HTTP
instrumentation already started one (:class:`TraceContext`).

The tracer provider: the process's global one when something configured it (the
``opentelemetry-instrument`` launcher, an embedding application), else an SDK provider
exporting over OTLP/HTTP as the standard ``OTEL_EXPORTER_OTLP_*`` variables say
(``OTEL_TRACES_EXPORTER=console`` prints spans instead), service name ``warrantor``
unless ``OTEL_SERVICE_NAME`` says otherwise.
"""

from __future__ import annotations

import contextvars
import dataclasses
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import Span, Tracer, TracerProvider

from warrantor import __version__
from warrantor.domain.model import Principal
from warrantor.errors import WarrantorError
from warrantor.service.authorization.authorize import BUILTIN_STAGES, Authorizer, run_stages
from warrantor.service.authorization.intent import Intent
from warrantor.service.authorization.pipeline import Draft, Facts, GuardStop, Outcome, Stage, WriteGuard

TRACER_NAME = "warrantor"
# Set while a traced authorization runs: evaluation outside one (simulate, explain) is not traced.
_AUTHORIZING: contextvars.ContextVar[bool] = contextvars.ContextVar("warrantor_authorizing", default=False)


def install(authorizer: Authorizer, provider: TracerProvider | None = None) -> None:
    """Trace ``authorizer`` from now on (idempotent); ``provider`` defaults to :func:`default_provider`."""
    if getattr(authorizer, "_traced", False):
        return
    tracer = (provider or default_provider()).get_tracer(TRACER_NAME, __version__)
    traced = _Traced(authorizer, tracer)
    # Instance attributes shadow the class's methods for this one authorizer.
    authorizer.authorize = traced.authorize  # type: ignore[method-assign]
    authorizer.authorize_async = traced.authorize_async  # type: ignore[method-assign]
    authorizer._read_phase = traced.read_phase  # type: ignore[method-assign]
    authorizer.evaluate = traced.evaluate  # type: ignore[method-assign]
    authorizer._seal = traced.seal  # type: ignore[method-assign]
    authorizer.guards[:] = [_TracedGuard(g, tracer) for g in authorizer.guards]
    authorizer._traced = True  # type: ignore[attr-defined]


def default_provider() -> TracerProvider:
    """The global provider if one was configured, else a new SDK provider made global."""
    current = trace.get_tracer_provider()
    if not isinstance(current, trace.ProxyTracerProvider | trace.NoOpTracerProvider):
        return current
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

    exporter: SpanExporter
    if os.environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() == "console":
        exporter = ConsoleSpanExporter()
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()
    sdk = SdkTracerProvider(resource=Resource.create({"service.name": "warrantor",
                                                      "service.version": __version__}))
    sdk.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(sdk)
    return sdk


class _Traced:
    """The traced versions of one authorizer's entry points (the originals are kept)."""

    def __init__(self, authorizer: Authorizer, tracer: Tracer) -> None:
        self._a, self._t = authorizer, tracer
        self._authorize, self._authorize_async = authorizer.authorize, authorizer.authorize_async
        self._read_phase, self._seal = authorizer._read_phase, authorizer._seal
        self._evaluate = authorizer.evaluate

    @contextmanager
    def _root(self, principal: Principal, intent: Intent) -> Iterator[Span]:
        token = _AUTHORIZING.set(True)
        try:
            with self._span(principal, intent) as span:
                yield span
        finally:
            _AUTHORIZING.reset(token)

    @contextmanager
    def _span(self, principal: Principal, intent: Intent) -> Iterator[Span]:
        attributes = {"gen_ai.tool.name": intent.action_type, "warrantor.action.type": intent.action_type,
                      "gen_ai.agent.id": intent.agent_id or principal.agent_id,
                      "gen_ai.agent.version": intent.agent_version, "warrantor.tenant.id": principal.tenant_id,
                      "warrantor.run.id": intent.run_id}
        with self._t.start_as_current_span(
            f"authorize {intent.action_type}", attributes={k: v for k, v in attributes.items() if v is not None},
            record_exception=False, set_status_on_exception=False,
        ) as span:
            try:
                yield span
            except WarrantorError as exc:
                _failed(span, exc.code, exc)
                raise
            except Exception as exc:
                _failed(span, type(exc).__qualname__, exc)
                raise

    def authorize(self, principal: Principal, intent: Intent, idempotency_key: str | None) -> Outcome:
        with self._root(principal, intent) as span:
            outcome = self._authorize(principal, intent, idempotency_key)
            _decided(span, outcome)
            return outcome

    async def authorize_async(self, principal: Principal, intent: Intent, idempotency_key: str | None) -> Outcome:
        with self._root(principal, intent) as span:
            outcome = await self._authorize_async(principal, intent, idempotency_key)
            _decided(span, outcome)
            return outcome

    def read_phase(self, tenant_id: str, intent: Intent, key: str | None, request_hash: str) -> Any:
        with self._t.start_as_current_span("warrantor.read") as span:
            replay, prepared = self._read_phase(tenant_id, intent, key, request_hash)
            span.set_attribute("warrantor.idempotent_replay", replay is not None)
            return replay, prepared

    def evaluate(self, intent: Intent, facts: Facts) -> Draft:
        """``Authorizer.evaluate`` with each stage in a span of its own, inside an
        authorization only (a simulation over a week of actions or a dry run is not traced)."""
        if not _AUTHORIZING.get():
            return self._evaluate(intent, facts)
        stages: list[Stage] = [_TracedStage(s, self._t)
                               for s in (*self._a.early_stages, *BUILTIN_STAGES, *self._a.late_stages)]
        return run_stages(intent, facts, stages)

    def seal(self, principal: Principal, p: Any, draft: Draft, *, guarded: bool) -> Any:
        parent = otel_context.get_current()  # the job runs in the writer thread: carry the trace there
        with self._t.start_as_current_span("warrantor.seal") as span:
            sealed = self._seal(principal, p, draft, guarded=guarded)
            action = sealed.action
            span.set_attributes(_ids(action.id, action.warrant_id, action.receipt_id, action.status.value))
        tracer, job = self._t, sealed.job

        def traced_job(repo: Any) -> None:
            with tracer.start_as_current_span("warrantor.commit", context=parent,
                                               attributes={"warrantor.action.id": action.id},
                                               record_exception=False, set_status_on_exception=False) as span:
                try:
                    job(repo)
                except GuardStop as stop:  # a guard decided; the authorizer records that outcome next
                    span.set_attribute("warrantor.guard.stopped", stop.stage)
                    raise
                except Exception as exc:
                    _failed(span, exc.code if isinstance(exc, WarrantorError) else type(exc).__qualname__, exc)
                    raise

        return dataclasses.replace(sealed, job=traced_job)


class _TracedStage:
    def __init__(self, stage: Stage, tracer: Tracer) -> None:
        self.name, self._stage, self._t = stage.name, stage, tracer

    def run(self, draft: Draft, intent: Intent, facts: Facts) -> str:
        with self._t.start_as_current_span(f"warrantor.stage {self.name}",
                                           attributes={"warrantor.stage.name": self.name}) as span:
            outcome = self._stage.run(draft, intent, facts)
            span.set_attributes({"warrantor.stage.outcome": outcome, "warrantor.decision.effect": draft.effect.value})
            return outcome


class _TracedGuard:
    def __init__(self, guard: WriteGuard, tracer: Tracer) -> None:
        self.name, self._guard, self._t = guard.name, guard, tracer

    def reserve(self, repo: Any, principal: Principal, action_id: str, intent: Intent, draft: Draft,
                now: Any) -> None:
        with self._t.start_as_current_span(f"warrantor.guard {self.name}",
                                           attributes={"warrantor.guard.name": self.name},
                                           record_exception=False, set_status_on_exception=False) as span:
            try:
                self._guard.reserve(repo, principal, action_id, intent, draft, now)
            except GuardStop as stop:  # not an error: the guard decided
                span.set_attributes({"warrantor.guard.outcome": stop.effect.value,
                                     "warrantor.decision.reason": stop.reason})
                raise
            except WarrantorError as exc:
                _failed(span, exc.code, exc)
                raise
            span.set_attribute("warrantor.guard.outcome", "pass")


def _ids(action_id: str | None, warrant_id: str | None, receipt_id: str | None, status: str | None) -> dict[str, str]:
    values = {"warrantor.action.id": action_id, "warrantor.warrant.id": warrant_id,
              "warrantor.receipt.id": receipt_id, "warrantor.action.status": status}
    return {k: v for k, v in values.items() if v}


def _decided(span: Span, outcome: Outcome) -> None:
    body = outcome.body
    if outcome.status_code >= 400:  # a denial: the problem document names the action and receipt
        details = body.get("details") or {}
        decision = {"effect": "deny", "stage": details.get("stage"), "reason": details.get("reason"),
                    "rules": details.get("rules")}
        span.set_attributes(_ids(details.get("action_id"), None, details.get("receipt_id"), "denied"))
        span.set_attribute("warrantor.decision.code", str(body.get("code")))
    else:
        decision = body.get("decision") or {}
        span.set_attributes(_ids(body.get("action_id"), body.get("warrant_id"), None, body.get("status")))
    rules = [str(r["id"]) for r in decision.get("rules") or () if isinstance(r, dict) and r.get("id")]
    values = {"warrantor.decision.effect": decision.get("effect"), "warrantor.decision.stage": decision.get("stage"),
              "warrantor.decision.reason": decision.get("reason")}
    span.set_attributes({k: str(v) for k, v in values.items() if v})
    span.set_attribute("warrantor.decision.rules", rules)


def _failed(span: Span, error_type: str, exc: BaseException) -> None:
    span.set_attribute("error.type", error_type)
    span.record_exception(exc)
    span.set_status(trace.Status(trace.StatusCode.ERROR, str(exc)[:200]))


class TraceContext:
    """Pure ASGI middleware: a request's W3C ``traceparent``/``tracestate`` becomes the
    parent of the spans made while answering it (unless a span is already current)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or trace.get_current_span().get_span_context().is_valid:
            await self.app(scope, receive, send)
            return
        carrier = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", ())
                   if k in (b"traceparent", b"tracestate")}
        if "traceparent" not in carrier:
            await self.app(scope, receive, send)
            return
        token = otel_context.attach(propagate.extract(carrier))
        try:
            await self.app(scope, receive, send)
        finally:
            otel_context.detach(token)
