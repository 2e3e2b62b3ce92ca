"""Prometheus metrics, one registry per app (no module-level singletons).

Every counter is exposed with the ``_total`` suffix (``warrantor_http_requests_total``,
``warrantor_decisions_total``, ``warrantor_store_write_batches_total``, ...), as the
exposition format and ``promtool check metrics`` want; gauges and histograms keep their
names. docs/operations.md lists them all.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, MutableMapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "warrantor_http_requests", "HTTP requests by route and status",
            ["method", "route", "status"], registry=self.registry,
        )
        self.latency = Histogram(
            "warrantor_http_request_duration_seconds", "HTTP request latency by route",
            ["method", "route"], registry=self.registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 60),
        )
        self.decisions = Counter(
            "warrantor_decisions", "Authorization decisions by effect and stage",
            ["effect", "stage"], registry=self.registry,
        )
        self.store_writes = _StoreWrites()  # counters the store keeps itself, read at each scrape
        self.registry.register(self.store_writes)
        self.integration_latency = Histogram(
            "warrantor_log_integration_latency_seconds",
            "Time from sequencing a log entry to its inclusion in a signed checkpoint",
            registry=self.registry,
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10),
        )
        self.log_size = Gauge("warrantor_log_size", "Entries in the signed checkpoint", registry=self.registry)

    def observe(self, scope: MutableMapping[str, Any], status: int, seconds: float) -> None:
        route = scope.get("route")
        path = getattr(route, "path", None) or "unmatched"
        method = scope.get("method", "")
        self.requests.labels(method, path, str(status)).inc()
        self.latency.labels(method, path).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _StoreWrites(Collector):
    """The group commit's own running counts (batches, jobs) as Prometheus counters; their
    ratio is the batch size. ``source`` is set by the app factory."""

    def __init__(self) -> None:
        self.source: Callable[[], tuple[int, int]] | None = None

    def collect(self) -> Iterator[CounterMetricFamily]:
        if self.source is None:
            return
        batches, jobs = self.source()
        yield CounterMetricFamily("warrantor_store_write_batches", "Group-commit batches committed", value=batches)
        yield CounterMetricFamily("warrantor_store_write_jobs", "Writes committed through group commit", value=jobs)
