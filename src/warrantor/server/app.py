"""The ASGI application factory.

``create_app(settings)`` opens the store (running migrations), loads or creates keys,
builds the services, and mounts the routes. Background work (the expiry sweep, the log
integrator) runs in threads started and stopped by the app's lifespan.
"""

from __future__ import annotations

import gc
import logging
import os
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio.to_thread
from fastapi import FastAPI

from warrantor import __version__
from warrantor.server import openapi, problems, routes
from warrantor.server.metrics import Metrics
from warrantor.server.middleware import RequestContext
from warrantor.server.routes.actions import HOT_ROUTE
from warrantor.server.settings import Settings
from warrantor.service.approval.notify import DevMailer, Mailer, SmtpMailer
from warrantor.service.context import Limits
from warrantor.service.execution.execute_http import ExecuteConfig, parse_networks
from warrantor.service.execution.execute_secrets import load_injector
from warrantor.service.proof.transparency import LogConfig
from warrantor.service.services import Services, build_services
from warrantor.store import Store

log = logging.getLogger(__name__)


class _Periodic:
    """A daemon thread calling ``fn`` every ``interval`` seconds until stopped."""

    def __init__(self, name: str, interval: float, fn: Callable[[], Any]) -> None:
        self._stop = threading.Event()
        self._interval = interval
        self._fn = fn
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._fn()
            except Exception:
                log.exception("periodic task %s failed", self._thread.name)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def _integration_metrics(metrics: Metrics) -> Callable[[int, list[float]], None]:
    def observe(size: int, latencies: list[float]) -> None:
        metrics.log_size.set(size)
        for seconds in latencies:
            metrics.integration_latency.observe(seconds)

    return observe


def _tune_gc() -> None:
    """Everything built at start-up (routes, compiled policies, SQLAlchemy metadata) moves
    to the permanent generation, and young collections run less often: the request path
    allocates many short-lived objects that die young, and scanning the start-up heap on
    every collection cost about a tenth of the CPU per request in the profile."""
    gc.collect()
    gc.freeze()
    gen0, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(max(gen0, 20_000), gen1, gen2)


def open_services(settings: Settings, *, mailer: Mailer | None = None, **kwargs: Any) -> Services:
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    store = Store(settings.effective_database_url)
    store.migrate()
    if mailer is None:  # no SMTP server: approval mails go to the log (development only)
        mailer = SmtpMailer(settings.smtp_url, settings.smtp_from) if settings.smtp_url else DevMailer()
    limits = Limits(
        warrant_ttl_seconds=settings.warrant_ttl_seconds,
        notarize_grace_seconds=settings.notarize_grace_seconds,
        default_approval_ttl_seconds=settings.default_approval_ttl_seconds,
        clock_skew_seconds=settings.clock_skew_seconds,
        public_url=settings.effective_public_url,
    )
    kwargs.setdefault("execute", execute_config(settings))
    kwargs.setdefault("audit_file", settings.audit_file)
    kwargs.setdefault("log_config", LogConfig(
        origin=settings.log_origin, integrate_interval_ms=settings.integrate_interval_ms,
        tsa_url=settings.tsa_url, tsa_root_cert=settings.tsa_root_cert,
        timestamp_receipts=settings.timestamp_receipts, witness_keys=settings.witness_keys,
        scrub_interval_seconds=settings.log_scrub_seconds, witness_quorum=settings.witness_quorum,
    ))
    return build_services(store, settings.data_dir, mailer=mailer, limits=limits, **kwargs)


def execute_config(settings: Settings) -> ExecuteConfig:
    """The executor's settings; the secrets file's ``value_env`` names are read from the
    environment here, once (docs/execute.md)."""
    return ExecuteConfig(
        connect_timeout=settings.execute_connect_timeout_seconds,
        read_timeout=settings.execute_read_timeout_seconds,
        deadline=settings.execute_deadline_seconds,
        max_response_bytes=settings.execute_max_response_bytes,
        allow_private=parse_networks(settings.execute_allow_private),
        secrets=load_injector(settings.execute_secrets, os.environ),
    )


def create_app(settings: Settings, *, services: Services | None = None, hot_routes: bool = True) -> FastAPI:
    """``hot_routes=False`` serves every request through FastAPI (the reference the hot
    routes are tested against)."""
    svc = services or open_services(settings)
    metrics = Metrics()
    sweeper = _Periodic("warrantor-expiry", settings.sweep_interval_seconds, svc.sweeper.sweep)
    retention = _Periodic("warrantor-retention", settings.retention_interval_seconds, svc.records.sweep)
    svc.integrator.on_checkpoint = _integration_metrics(metrics)
    metrics.store_writes.source = lambda: (svc.store.db.batches, svc.store.db.jobs)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # Sync routes run in this many threads; long-polls are async and hold none.
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.request_threads
        if isinstance(svc.deps.mailer, DevMailer):
            svc.deps.mailer.announce()
        _tune_gc()
        sweeper.start()
        retention.start()
        svc.integrator.start()
        svc.webhook_dispatcher.start()
        if svc.audit_file is not None:
            svc.audit_file.start()
        try:
            yield
        finally:
            if svc.audit_file is not None:
                svc.audit_file.stop()
            svc.webhook_dispatcher.close()
            svc.integrator.stop()
            retention.stop()
            sweeper.stop()

    app = FastAPI(
        title="Warrantor",
        version=__version__,
        summary="Authorize what AI agents do, put humans in the loop, and prove it afterwards.",
        lifespan=lifespan,
    )
    app.state.services = svc
    app.state.settings = settings
    app.state.metrics = metrics
    problems.install(app)
    for router in routes.all_routers():
        app.include_router(router)
    if hot_routes:  # first, so they match before the FastAPI routes they stand in for
        app.router.routes.insert(0, HOT_ROUTE)
    openapi.install(app)  # every status and problem body per route, security schemes
    app.add_middleware(RequestContext, max_body_bytes=settings.max_body_bytes, metrics=metrics)
    if settings.otel:  # off: the tracing module is never imported (docs/operations.md)
        from warrantor.server import tracing

        tracing.install(svc.authorizer)
        app.add_middleware(tracing.TraceContext)
    return app


def app_from_env() -> FastAPI:
    """The app factory each worker process calls (``warrantor serve --workers N``).

    The parent process has already migrated the database and bootstrapped keys; every
    worker rebuilds the same settings from the ``WARRANTOR_*`` environment it inherits.
    """
    return create_app(Settings.from_env())
