"""Server-side SVG charts for the console: no JavaScript, no external assets.

Every chart is a self-contained ``<svg>`` with a ``viewBox`` (it scales to its container),
presentation attributes only (the console's Content-Security-Policy forbids inline
styles), a ``<title>`` per mark for hover text, and ``role="img"`` with an accessible
label. Text is escaped; numbers are formatted here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from markupsafe import Markup, escape

EFFECT_ORDER = ("allow", "confirm", "require_approval", "deny")
EFFECT_COLORS = {
    "allow": "#16a34a",
    "confirm": "#2563eb",
    "require_approval": "#d97706",
    "deny": "#dc2626",
}
EFFECT_LABELS = {
    "allow": "Allowed",
    "confirm": "Confirm",
    "require_approval": "Approval",
    "deny": "Denied",
}
OTHER_COLOR = "#94a3b8"
GRID = "#e2e8f0"
INK = "#475569"


def nice_max(value: int) -> int:
    """A round axis maximum at or above ``value`` (1, 2, 5 x 10^n)."""
    if value <= 4:
        return max(value, 4)
    magnitude = 1
    while magnitude * 10 <= value:
        magnitude *= 10
    for step in (1, 2, 5, 10):
        if step * magnitude >= value:
            return step * magnitude
    return 10 * magnitude


def _svg(width: int, height: int, label: str, body: Iterable[str]) -> Markup:
    head = (
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-label="{escape(label)}" '
        f'xmlns="http://www.w3.org/2000/svg" font-family="system-ui, sans-serif" font-size="11">'
    )
    return Markup(head + "".join(body) + "</svg>")  # noqa: S704 - every part is escaped above


def _effects(days: Sequence[dict[str, Any]]) -> list[str]:
    seen = {e for d in days for e in d["counts"]}
    return [e for e in EFFECT_ORDER if e in seen] + sorted(seen - set(EFFECT_ORDER))


def decisions_chart(days: Sequence[dict[str, Any]]) -> Markup:
    """Stacked bars: one per day, segments by decision effect."""
    width, height, left, bottom, top = 700, 230, 40, 26, 12
    plot_w, plot_h = width - left - 8, height - bottom - top
    totals = [sum(d["counts"].values()) for d in days]
    ymax = nice_max(max(totals, default=0))
    parts: list[str] = []
    for i in range(5):
        value = ymax * i // 4
        y = top + plot_h - plot_h * i / 4
        parts.append(f'<line x1="{left}" x2="{width - 8}" y1="{y:.1f}" y2="{y:.1f}" stroke="{GRID}"/>')
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" fill="{INK}">{value}</text>')
    slot = plot_w / max(len(days), 1)
    bar = slot * 0.62
    effects = _effects(days)
    for i, day in enumerate(days):
        x = left + i * slot + (slot - bar) / 2
        y = top + plot_h
        for effect in effects:
            n = day["counts"].get(effect, 0)
            if not n:
                continue
            h = plot_h * n / ymax
            y -= h
            color = EFFECT_COLORS.get(effect, OTHER_COLOR)
            tip = f"{day['day']}: {n} {EFFECT_LABELS.get(effect, effect)}"
            parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}" fill="{color}" rx="2">'
                f"<title>{escape(tip)}</title></rect>"
            )
        if i % 2 == (len(days) - 1) % 2:
            label = datetime.strptime(day["day"], "%Y-%m-%d").strftime("%b %d")
            parts.append(
                f'<text x="{x + bar / 2:.1f}" y="{height - 8}" text-anchor="middle" fill="{INK}">{label}</text>'
            )
    return _svg(width, height, "Decisions per day by effect, last 14 days", parts)


def legend(days: Sequence[dict[str, Any]]) -> list[dict[str, str]]:
    effects = _effects(days) or list(EFFECT_ORDER)
    return [{"label": EFFECT_LABELS.get(e, e), "color_class": f"dot-{e if e in EFFECT_COLORS else 'other'}"}
            for e in effects]


def age_chart(buckets: Sequence[dict[str, Any]]) -> Markup:
    """Horizontal bars: pending approvals per age bucket."""
    width, row, left = 420, 30, 64
    height = row * len(buckets) + 8
    top = max((b["count"] for b in buckets), default=0)
    scale = (width - left - 40) / max(top, 1)
    colors = ("#16a34a", "#65a30d", "#d97706", "#dc2626")
    parts: list[str] = []
    for i, b in enumerate(buckets):
        y = 4 + i * row
        w = max(b["count"] * scale, 2 if b["count"] else 0)
        parts.append(f'<text x="{left - 8}" y="{y + 18}" text-anchor="end" fill="{INK}">{escape(b["label"])}</text>')
        parts.append(f'<rect x="{left}" y="{y + 4}" width="{width - left - 40}" height="20" fill="#f1f5f9" rx="3"/>')
        if w:
            parts.append(
                f'<rect x="{left}" y="{y + 4}" width="{w:.1f}" height="20" fill="{colors[i % len(colors)]}" rx="3">'
                f"<title>{b['count']} pending, {escape(b['label'])}</title></rect>"
            )
        parts.append(f'<text x="{width - 34}" y="{y + 18}" fill="{INK}">{b["count"]}</text>')
    return _svg(width, height, "Pending approvals by age", parts)


def usage_bar(consumed: int, limit: int) -> Markup:
    """One budget's consumption against its limit; red at 90 % and over."""
    width, height = 300, 14
    share = 0.0 if limit <= 0 else min(consumed / limit, 1.0)
    color = "#dc2626" if share >= 0.9 else "#d97706" if share >= 0.7 else "#16a34a"
    parts = [
        f'<rect x="0" y="0" width="{width}" height="{height}" rx="7" fill="#e2e8f0"/>',
        f'<rect x="0" y="0" width="{width * share:.1f}" height="{height}" rx="7" fill="{color}">'
        f"<title>{consumed:,} of {limit:,}</title></rect>",
    ]
    return _svg(width, height, f"{consumed:,} of {limit:,} used", parts)
