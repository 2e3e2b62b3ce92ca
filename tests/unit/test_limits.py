"""Tests for warrantor.policy.limits: token buckets, budget windows, metric amounts."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from warrantor.policy.limits import (
    BUCKETS_PER_WINDOW,
    ROLLING_WINDOWS,
    WINDOWS,
    BucketResult,
    MetricError,
    TokenBucket,
    WindowError,
    bucket_start,
    bucket_width,
    metric_amount,
    take,
    window_end,
    window_key,
    window_start,
    would_exceed,
)

T0 = 1_700_000_000.0  # a realistic epoch: float subtraction here is not exact

BUCKETS = [
    # (case, tokens, elapsed, rate, burst, cost, allowed, tokens after, retry after)
    ("full_bucket", 10, 0, 1, 10, 1, True, 9, 0),
    ("exactly_one_left", 1, 0, 1, 10, 1, True, 0, 0),
    ("exactly_empty_refused", 0, 0, 1, 10, 1, False, 0, 1),
    ("refill_exactly_one_token", 0, 1, 1, 10, 1, True, 0, 0),
    ("refill_one_token_at_10_per_second", 0, 0.1, 10, 10, 1, True, 0, 0),
    ("refill_just_short", 0, 0.5, 1, 10, 1, False, 0.5, 1),
    ("slow_rate_rounds_up", 0, 0, 0.1, 10, 1, False, 0, 10),
    ("slow_rate_partial_rounds_up", 0.25, 0, 0.1, 10, 1, False, 0.25, 8),
    ("fast_rate_still_one_second", 0, 0, 1000, 10, 1, False, 0, 1),
    ("refill_capped_at_burst", 0, 3600, 5, 10, 1, True, 9, 0),
    ("clock_went_backwards", 0, -5, 1, 10, 1, False, 0, 1),
    ("cost_of_three", 2, 0, 1, 10, 3, False, 2, 1),
    ("cost_equals_burst", 10, 0, 1, 10, 10, True, 0, 0),
    ("zero_cost_always_allowed", 0, 0, 1, 10, 0, True, 0, 0),
    ("fractional_tokens", 0.5, 0.25, 2, 10, 1, True, 0, 0),
]


@pytest.mark.parametrize(
    ("case", "tokens", "elapsed", "rate", "burst", "cost", "allowed", "after", "retry"),
    BUCKETS,
    ids=[b[0] for b in BUCKETS],
)
def test_take(
    case: str, tokens: float, elapsed: float, rate: float, burst: int, cost: float,
    allowed: bool, after: float, retry: float,
) -> None:
    result = take(tokens, T0, T0 + elapsed, rate, burst, cost=cost)
    assert result.allowed is allowed
    assert result.tokens == pytest.approx(after, abs=1e-4)
    assert result.retry_after_seconds == retry
    if not allowed:
        assert result.retry_after_seconds >= 1
        assert float(result.retry_after_seconds).is_integer()


def test_waiting_retry_after_is_enough() -> None:
    refused = take(0.3, T0, T0, 0.5, 5)
    later = T0 + refused.retry_after_seconds
    assert take(refused.tokens, T0, later, 0.5, 5).allowed


def test_bucket_drains_then_refills_over_a_sequence() -> None:
    bucket = TokenBucket(rate_per_second=2, burst=3)
    tokens, at = 3.0, T0
    decisions = []
    for now in (T0, T0, T0, T0, T0 + 0.5, T0 + 0.5):
        result = bucket.take(tokens, at, now)
        decisions.append(result.allowed)
        tokens, at = result.tokens, now
    assert decisions == [True, True, True, False, True, False]


@dataclass(frozen=True)
class RateLimit:  # stand-in for warrantor.policy.config.RateLimit
    rate_per_second: float
    burst: int


def test_token_bucket_from_rate_limit() -> None:
    bucket = TokenBucket.from_rate_limit(RateLimit(50, 100))
    assert bucket == TokenBucket(50.0, 100)
    assert bucket.take(0, T0, T0 + 1) == BucketResult(True, 49.0, 0.0)


@pytest.mark.parametrize(
    ("tokens", "rate", "burst", "cost", "needle"),
    [
        (1, 0, 10, 1, "rate_per_second"),
        (1, -1, 10, 1, "rate_per_second"),
        (1, math.inf, 10, 1, "rate_per_second"),
        (1, 1, 0, 1, "burst"),
        (-1, 1, 10, 1, "tokens"),
        (math.nan, 1, 10, 1, "tokens"),
        (1, 1, 10, 11, "cost"),
        (1, 1, 10, -1, "cost"),
    ],
)
def test_take_rejects_nonsense(
    tokens: float, rate: float, burst: int, cost: float, needle: str
) -> None:
    with pytest.raises(ValueError, match=needle):
        take(tokens, T0, T0, rate, burst, cost=cost)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[arg-type, misc]


NOW = utc(2026, 4, 7, 14, 30, 15)

STARTS = [
    ("rolling_hour", "1h", NOW, utc(2026, 4, 7, 13, 30, 15)),
    ("rolling_day", "1d", NOW, utc(2026, 4, 6, 14, 30, 15)),
    ("rolling_30_days", "30d", NOW, utc(2026, 3, 8, 14, 30, 15)),
    ("calendar_day", "calendar_day", NOW, utc(2026, 4, 7)),
    ("calendar_month", "calendar_month", NOW, utc(2026, 4, 1)),
    ("day_at_midnight", "calendar_day", utc(2026, 4, 7), utc(2026, 4, 7)),
    ("day_just_before_midnight", "calendar_day", utc(2026, 4, 7, 23, 59, 59), utc(2026, 4, 7)),
    ("month_first_instant", "calendar_month", utc(2026, 5, 1), utc(2026, 5, 1)),
    ("month_last_instant", "calendar_month",
     datetime(2026, 4, 30, 23, 59, 59, 999999, tzinfo=UTC), utc(2026, 4, 1)),
    ("leap_day", "calendar_day", utc(2024, 2, 29, 12), utc(2024, 2, 29)),
    ("leap_day_month", "calendar_month", utc(2024, 2, 29, 12), utc(2024, 2, 1)),
    ("rolling_day_over_leap_day", "1d", utc(2024, 3, 1, 6), utc(2024, 2, 29, 6)),
    ("rolling_30d_over_leap_february", "30d", utc(2024, 3, 15), utc(2024, 2, 14)),
    ("rolling_hour_over_new_year", "1h", utc(2027, 1, 1, 0, 30), utc(2026, 12, 31, 23, 30)),
    # 01:30 in UTC+02:00 is still the previous UTC day
    ("offset_converted_to_utc", "calendar_day",
     datetime(2026, 4, 8, 1, 30, tzinfo=timezone(timedelta(hours=2))), utc(2026, 4, 7)),
]


@pytest.mark.parametrize(("case", "window", "now", "expected"), STARTS, ids=[s[0] for s in STARTS])
def test_window_start(case: str, window: str, now: datetime, expected: datetime) -> None:
    start = window_start(window, now)
    assert start == expected
    assert start is not None and start.tzinfo is UTC


def test_run_window_is_the_run_start() -> None:
    started = utc(2026, 4, 7, 9)
    assert window_start("run", NOW, started) == started
    assert window_start("run", NOW, None) is None
    with pytest.raises(WindowError, match="run_started_at"):
        window_start("run", NOW, datetime(2026, 4, 7, 9))


@pytest.mark.parametrize(
    ("window", "now", "expected"),
    [
        ("calendar_day", NOW, utc(2026, 4, 8)),
        ("calendar_day", utc(2024, 2, 28, 23), utc(2024, 2, 29)),
        ("calendar_day", utc(2024, 2, 29, 23), utc(2024, 3, 1)),
        ("calendar_month", NOW, utc(2026, 5, 1)),
        ("calendar_month", utc(2024, 2, 29), utc(2024, 3, 1)),
        ("calendar_month", utc(2026, 12, 31, 23, 59), utc(2027, 1, 1)),
        ("1h", NOW, None),
        ("run", NOW, None),
    ],
)
def test_window_end(window: str, now: datetime, expected: datetime | None) -> None:
    assert window_end(window, now) == expected


@pytest.mark.parametrize(
    ("window", "now", "run_id", "expected"),
    [
        ("calendar_day", NOW, None, "calendar_day:2026-04-07"),
        ("calendar_day", utc(2024, 2, 29), None, "calendar_day:2024-02-29"),
        ("calendar_month", NOW, None, "calendar_month:2026-04"),
        ("30d", NOW, None, "rolling:30d"),
        ("run", NOW, "run_1", "run:run_1"),
        ("run", NOW, None, None),
    ],
)
def test_window_key(window: str, now: datetime, run_id: str | None, expected: str | None) -> None:
    assert window_key(window, now, run_id) == expected


@pytest.mark.parametrize("window", ["2h", "week", "", "calendar_year", "1D"])
def test_unknown_windows(window: str) -> None:
    for function in (window_start, window_end, window_key):
        with pytest.raises(WindowError, match="expected a window"):
            function(window, NOW)


@pytest.mark.parametrize(
    ("window", "when", "expected"),
    [
        ("1h", utc(2026, 4, 7, 14, 30, 15), utc(2026, 4, 7, 14, 30)),
        ("1h", utc(2026, 4, 7, 14, 30), utc(2026, 4, 7, 14, 30)),  # a boundary opens a bucket
        ("1h", utc(2026, 4, 7, 14, 29, 59, 999999), utc(2026, 4, 7, 14, 29)),
        ("1d", utc(2026, 4, 7, 0, 23, 59), utc(2026, 4, 7)),
        ("1d", utc(2026, 4, 7, 0, 24), utc(2026, 4, 7, 0, 24)),
        ("1d", utc(2026, 4, 7, 23, 59, 59), utc(2026, 4, 7, 23, 36)),
        ("30d", utc(2026, 4, 7, 11, 59, 59), utc(2026, 4, 7)),
        ("30d", utc(2026, 4, 7, 12), utc(2026, 4, 7, 12)),
        ("1h", datetime(2026, 4, 7, 16, 30, 15, tzinfo=timezone(timedelta(hours=2))), utc(2026, 4, 7, 14, 30)),
    ],
)
def test_bucket_start(window: str, when: datetime, expected: datetime) -> None:
    assert bucket_start(window, when) == expected
    assert bucket_start(window, when).tzinfo is UTC


@pytest.mark.parametrize("window", list(ROLLING_WINDOWS))
def test_sixty_buckets_per_window(window: str) -> None:
    assert bucket_width(window) * BUCKETS_PER_WINDOW == ROLLING_WINDOWS[window]
    assert [bucket_width(w) for w in ROLLING_WINDOWS] == [
        timedelta(minutes=1), timedelta(minutes=24), timedelta(hours=12)]


@pytest.mark.parametrize("window", list(ROLLING_WINDOWS))
def test_bucketed_window_never_counts_less_than_the_exact_one(window: str) -> None:
    """An amount booked at t counts (its bucket is at or after the oldest counted one)
    while now - t <= window, and stops counting once now - t >= window + one bucket."""
    period, width = ROLLING_WINDOWS[window], bucket_width(window)
    booked = utc(2026, 4, 7, 14, 30, 15)
    for step in range(0, 200):
        now = booked + (period + 2 * width) * step / 199
        counted = bucket_start(window, booked) >= bucket_start(window, now - period)
        if now - booked <= period:
            assert counted, (window, now)
        if now - booked >= period + width:
            assert not counted, (window, now)


@pytest.mark.parametrize("window", ["run", "calendar_day", "calendar_month", "2h"])
def test_bucket_start_needs_a_rolling_window_and_an_aware_time(window: str) -> None:
    with pytest.raises(WindowError, match="expected a rolling window"):
        bucket_start(window, NOW)
    with pytest.raises(WindowError, match="timezone-aware"):
        bucket_start("1h", datetime(2026, 4, 7))


def test_naive_now_is_refused() -> None:
    assert set(WINDOWS) == {"run", "1h", "1d", "30d", "calendar_day", "calendar_month"}
    with pytest.raises(WindowError, match="timezone-aware"):
        window_start("1h", datetime(2026, 4, 7))


PAYLOAD: dict[str, Any] = {
    "amount_minor": 5_000_000,
    "currency": "EUR",
    "fees": {"total_minor": 125, "items": [1, 2]},
    "zero": 0,
    "negative": -5,
    "flag": True,
    "float": 100.0,
    "text": "100",
    "none": None,
}

AMOUNTS = [
    ("count", "count", None, None, 1),
    ("count_ignores_payload", "count", PAYLOAD, {"tokens": 5}, 1),
    ("tokens", "tokens", None, {"tokens": 1234}, 1234),
    ("tokens_absent", "tokens", None, {}, 0),
    ("tokens_none", "tokens", None, {"tokens": None}, 0),
    ("tokens_no_usage", "tokens", None, None, 0),
    ("cost_minor", "cost_minor", None, {"cost_minor": 42, "tokens": 9}, 42),
    ("payload_field", "payload.amount_minor", PAYLOAD, None, 5_000_000),
    ("payload_zero", "payload.zero", PAYLOAD, None, 0),
    ("payload_dotted", "payload.fees.total_minor", PAYLOAD, None, 125),
]


@pytest.mark.parametrize(
    ("case", "metric", "payload", "usage", "expected"), AMOUNTS, ids=[a[0] for a in AMOUNTS]
)
def test_metric_amount(
    case: str, metric: str, payload: dict[str, Any] | None, usage: dict[str, Any] | None,
    expected: int,
) -> None:
    assert metric_amount(metric, payload, usage) == expected


METRIC_ERRORS = [
    ("missing_field", "payload.amount", PAYLOAD, None, "no field 'payload.amount'"),
    ("missing_nested", "payload.fees.vat", PAYLOAD, None, "no field 'payload.fees.vat'"),
    ("through_a_scalar", "payload.currency.x", PAYLOAD, None, "no field 'payload.currency.x'"),
    ("through_a_list", "payload.fees.items.0", PAYLOAD, None, "no field"),
    ("no_payload", "payload.amount_minor", None, None, "no field"),
    ("string", "payload.text", PAYLOAD, None, "expected an integer, got str"),
    ("float", "payload.float", PAYLOAD, None, "expected an integer, got float"),
    ("bool", "payload.flag", PAYLOAD, None, "expected an integer, got bool"),
    ("null", "payload.none", PAYLOAD, None, "expected an integer, got NoneType"),
    ("object", "payload.fees", PAYLOAD, None, "expected an integer, got dict"),
    ("negative", "payload.negative", PAYLOAD, None, "non-negative"),
    ("empty_path", "payload.", PAYLOAD, None, "dotted payload path"),
    ("double_dot", "payload.fees..total_minor", PAYLOAD, None, "dotted payload path"),
    ("bad_tokens", "tokens", None, {"tokens": "12"}, "usage.tokens"),
    ("negative_cost", "cost_minor", None, {"cost_minor": -1}, "non-negative"),
    ("unknown_metric", "requests", None, None, "expected a metric"),
]


@pytest.mark.parametrize(
    ("case", "metric", "payload", "usage", "needle"), METRIC_ERRORS,
    ids=[m[0] for m in METRIC_ERRORS],
)
def test_metric_errors(
    case: str, metric: str, payload: dict[str, Any] | None, usage: dict[str, Any] | None,
    needle: str,
) -> None:
    with pytest.raises(MetricError) as caught:
        metric_amount(metric, payload, usage)
    assert needle in str(caught.value)
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize(
    ("consumed", "amount", "limit", "expected"),
    [(0, 10, 10, False), (0, 11, 10, True), (10, 0, 10, False), (9, 2, 10, True)],
)
def test_would_exceed(consumed: int, amount: int, limit: int, expected: bool) -> None:
    assert would_exceed(consumed, amount, limit) is expected
