"""Pure arithmetic for rate limits and budgets: token buckets, budget windows, metrics.

Follows the ``budgets`` and ``rate_limits`` blocks of a bundle's config (docs/guardrails.md)
and the ``run budget`` / ``cumulative budget and rate limit`` stages of the pipeline
(docs/architecture.md)::

    budgets:
      - {id: daily-wires, metric: payload.amount_minor, scope: tenant, window: 1d,
         limit: 50000000, on_exceed: deny}
    rate_limits:
      per_key: {rate_per_second: 50, burst: 100}

What it does:

- ``take`` (and ``TokenBucket.take``) decides one token-bucket request from the stored state
  ``(tokens, updated_at)``: refill at ``rate_per_second`` since ``updated_at``, capped at
  ``burst``; spend ``cost`` if available. A refusal carries ``retry_after_seconds``, whole
  seconds rounded up and at least 1, ready for a ``Retry-After`` header. A clock that went
  backwards refills nothing. One microsecond of grace absorbs the float rounding of epoch
  timestamps (``1700000000.1 - 1700000000.0`` is not exactly ``0.1``).
- ``window_start`` gives the start of a budget window: ``run`` (the run's start), rolling
  ``1h``, ``1d``, ``30d`` (``now`` minus the period) and ``calendar_day`` /
  ``calendar_month`` (UTC midnight / the first of the month, UTC). ``window_end`` gives the
  next reset of calendar windows and ``window_key`` a stable label for one window period.
- ``bucket_start`` places a moment in its sub-window bucket of a rolling window: each
  window is cut into ``BUCKETS_PER_WINDOW`` (60) fixed buckets of ``bucket_width`` (``1h``:
  1 minute, ``1d``: 24 minutes, ``30d``: 12 hours), aligned on the Unix epoch (so on UTC
  midnight). The database keeps one counter per bucket; a rolling window's consumption
  is the sum of the buckets from ``bucket_start(window, window_start(window, now))`` on,
  the oldest (partly expired) one counted whole, so the sum is never below the exact
  rolling figure.
- ``metric_amount`` is how much one action consumes of a metric: ``count`` (1), ``tokens`` and
  ``cost_minor`` (from ``usage``, 0 when absent) or ``payload.<field>`` (a dotted path to a
  non-negative integer in the payload). Anything else raises ``MetricError``; callers fail
  closed (deny), since a budget that cannot be measured must not be skipped.

What it does not do: store or lock anything. The database holds bucket state and
consumption and applies these decisions atomically (docs/storage.md).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

ROLLING_WINDOWS: Final = {
    "1h": timedelta(hours=1),
    "1d": timedelta(days=1),
    "30d": timedelta(days=30),
}
WINDOWS: Final = ("run", *ROLLING_WINDOWS, "calendar_day", "calendar_month")
BUCKETS_PER_WINDOW: Final = 60
EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
METRICS: Final = ("count", "tokens", "cost_minor", "payload.<field>")
GRACE_SECONDS: Final = 1e-6


class WindowError(ValueError):
    """An unknown budget window, or a naive datetime."""


class MetricError(ValueError):
    """A metric that cannot be measured for this action; the caller must deny."""


@dataclass(frozen=True, slots=True)
class BucketResult:
    allowed: bool
    tokens: float
    retry_after_seconds: float


def take(
    tokens: float,
    updated_at: float,
    now: float,
    rate_per_second: float,
    burst: int,
    *,
    cost: float = 1,
) -> BucketResult:
    """Spend ``cost`` from a bucket holding ``tokens`` at ``updated_at`` (epoch seconds).

    The returned ``tokens`` is the new state as of ``now`` whether or not the request was
    allowed. Raises ``ValueError`` for a non-positive rate, a burst below 1, a negative or
    non-finite input, or a ``cost`` above ``burst`` (which no wait could ever satisfy).
    """
    _check_bucket(tokens, rate_per_second, burst, cost)
    elapsed = max(0.0, now - updated_at)
    available = min(float(burst), tokens + elapsed * rate_per_second)
    if available + GRACE_SECONDS * rate_per_second >= cost:
        return BucketResult(True, max(0.0, available - cost), 0.0)
    wait = (cost - available) / rate_per_second - GRACE_SECONDS
    return BucketResult(False, available, float(max(1, math.ceil(wait))))


def _check_bucket(tokens: float, rate_per_second: float, burst: int, cost: float) -> None:
    if not (math.isfinite(rate_per_second) and rate_per_second > 0):
        raise ValueError(f"expected rate_per_second > 0, got {rate_per_second!r}")
    if burst < 1:
        raise ValueError(f"expected burst >= 1, got {burst!r}")
    if not (math.isfinite(tokens) and tokens >= 0):
        raise ValueError(f"expected stored tokens >= 0, got {tokens!r}")
    if not (math.isfinite(cost) and 0 <= cost <= burst):
        raise ValueError(f"expected 0 <= cost <= burst ({burst}), got {cost!r}")


@dataclass(frozen=True, slots=True)
class TokenBucket:
    """One rate limit's parameters; ``take`` decides a request against stored state."""

    rate_per_second: float
    burst: int

    @classmethod
    def from_rate_limit(cls, rate_limit: Any) -> TokenBucket:
        """From a ``RateLimit``-like object with ``rate_per_second`` and ``burst``."""
        return cls(float(rate_limit.rate_per_second), int(rate_limit.burst))

    def take(self, tokens: float, updated_at: float, now: float, cost: float = 1) -> BucketResult:
        return take(tokens, updated_at, now, self.rate_per_second, self.burst, cost=cost)


def _utc(moment: datetime, name: str) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise WindowError(f"expected a timezone-aware {name}, got a naive datetime")
    return moment.astimezone(UTC)


def _check_window(window: str) -> None:
    if window not in WINDOWS:
        raise WindowError(f"expected a window in {', '.join(WINDOWS)}, got {window!r}")


def window_start(
    window: str, now: datetime, run_started_at: datetime | None = None
) -> datetime | None:
    """When the window containing ``now`` began (UTC); None for ``run`` without a run."""
    _check_window(window)
    now = _utc(now, "now")
    if window == "run":
        return None if run_started_at is None else _utc(run_started_at, "run_started_at")
    if window in ROLLING_WINDOWS:
        return now - ROLLING_WINDOWS[window]
    return _calendar_start(window, now)


def _calendar_start(window: str, now: datetime) -> datetime:
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return midnight if window == "calendar_day" else midnight.replace(day=1)


def window_end(window: str, now: datetime) -> datetime | None:
    """When a calendar window resets (UTC); None for rolling and run windows."""
    _check_window(window)
    if not window.startswith("calendar_"):
        return None
    start = _calendar_start(window, _utc(now, "now"))
    if window == "calendar_day":
        return start + timedelta(days=1)
    if start.month == 12:
        return start.replace(year=start.year + 1, month=1)
    return start.replace(month=start.month + 1)


def window_key(window: str, now: datetime, run_id: str | None = None) -> str | None:
    """A stable label for the window period containing ``now``.

    ``calendar_day:2026-04-07``, ``calendar_month:2026-04``, ``run:<run_id>`` (None without
    a run) and ``rolling:1h`` (a rolling window has no fixed period: consumption is the sum
    of its ``bucket_start`` buckets).
    """
    _check_window(window)
    now = _utc(now, "now")
    if window == "run":
        return None if run_id is None else f"run:{run_id}"
    if window == "calendar_day":
        return f"calendar_day:{now:%Y-%m-%d}"
    if window == "calendar_month":
        return f"calendar_month:{now:%Y-%m}"
    return f"rolling:{window}"


def bucket_width(window: str) -> timedelta:
    """The width of one counter bucket of a rolling window (the window / 60)."""
    if window not in ROLLING_WINDOWS:
        raise WindowError(f"expected a rolling window in {', '.join(ROLLING_WINDOWS)}, got {window!r}")
    return ROLLING_WINDOWS[window] / BUCKETS_PER_WINDOW


def bucket_start(window: str, when: datetime) -> datetime:
    """The start (UTC) of the rolling window's counter bucket that contains ``when``.

    Buckets are ``[start, start + bucket_width)``, aligned on the Unix epoch; a moment on
    a boundary opens the next bucket.
    """
    width = bucket_width(window)
    offset = _utc(when, "when") - EPOCH
    return EPOCH + width * (offset // width)


def would_exceed(consumed: int, amount: int, limit: int) -> bool:
    """Whether spending ``amount`` on top of ``consumed`` goes past ``limit``."""
    return consumed + amount > limit


def metric_amount(
    metric: str, payload: Mapping[str, Any] | None, usage: Mapping[str, Any] | None
) -> int:
    """How much of ``metric`` one action consumes; ``MetricError`` when it cannot be known."""
    if metric == "count":
        return 1
    if metric in ("tokens", "cost_minor"):
        value = (usage or {}).get(metric)
        return 0 if value is None else _non_negative_int(value, f"usage.{metric}")
    if metric.startswith("payload."):
        return _non_negative_int(_lookup(payload, metric), metric)
    raise MetricError(f"expected a metric in {', '.join(METRICS)}, got {metric!r}")


def _lookup(payload: Mapping[str, Any] | None, metric: str) -> Any:
    parts = metric.split(".")[1:]
    if not all(parts):
        raise MetricError(f"expected a dotted payload path like payload.amount_minor, "
                          f"got {metric!r}")
    node: Any = payload
    for depth, part in enumerate(parts):
        if not isinstance(node, Mapping) or part not in node:
            where = ".".join(["payload", *parts[: depth + 1]])
            raise MetricError(f"budget metric {metric!r}: the payload has no field {where!r}")
        node = node[part]
    return node


def _non_negative_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise MetricError(f"budget metric {name!r}: expected an integer, "
                          f"got {type(value).__name__}")
    if value < 0:
        raise MetricError(f"budget metric {name!r}: expected a non-negative integer, got {value}")
    return value
