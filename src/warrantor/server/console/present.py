"""Display helpers for the console's templates (registered as Jinja2 filters).

Pure functions: statuses to badge colours, ages to "3 min", amounts in minor units to
"60,000.00 EUR", payloads to label/value rows. They never raise on odd input: a console
page must render whatever an agent sent.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

STATUS_TONES = {
    "authorized": "green",
    "approved": "green",
    "notarized": "green",
    "pending_approval": "amber",
    "pending_confirmation": "amber",
    "uncertain": "amber",
    "executing": "amber",
    "denied": "red",
    "denied_by_human": "red",
    "denied_by_user": "red",
    "failed": "red",
    "diverged": "red",
    "expired": "grey",
}
EFFECT_TONES = {"allow": "green", "confirm": "blue", "require_approval": "amber", "deny": "red"}
OUTCOME_TONES = {"pass": "green", "allow": "green", "skipped": "grey", "deny": "red",
                 "require_approval": "amber", "confirm": "blue", "report": "blue"}
# Currencies whose minor unit is not 1/100 (ISO 4217).
_EXPONENTS = {"JPY": 0, "KRW": 0, "ISK": 0, "CLP": 0, "VND": 0, "BHD": 3, "KWD": 3, "OMR": 3, "JOD": 3, "TND": 3}


def tone(value: Any, kind: str = "status") -> str:
    table = {"status": STATUS_TONES, "effect": EFFECT_TONES, "outcome": OUTCOME_TONES}.get(kind, {})
    return table.get(str(value), "grey")


def label(value: Any) -> str:
    """``pending_approval`` -> ``pending approval``."""
    return str(value).replace("_", " ") if value is not None else ""


def ago(value: datetime | str | None, now: datetime | None = None) -> str:
    if value is None:
        return ""
    ts = _time(value)
    seconds = int(((now or datetime.now(UTC)) - ts).total_seconds())
    if seconds < 0:
        return "in " + _span(-seconds)
    return "just now" if seconds < 10 else _span(seconds) + " ago"


def duration(seconds: float) -> str:
    return _span(int(seconds))


def _span(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


def when(value: datetime | str | None) -> str:
    """``2024-03-01 14:02 UTC``."""
    return "" if value is None else _time(value).strftime("%Y-%m-%d %H:%M UTC")


def _time(value: datetime | str) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def money(minor: Any, currency: Any) -> str | None:
    """``6000000, "EUR"`` -> ``60,000.00 EUR``; ``None`` when the inputs are not money."""
    if isinstance(minor, bool) or not isinstance(minor, int) or not isinstance(currency, str):
        return None
    code = currency.upper()
    exp = _EXPONENTS.get(code, 2)
    sign = "-" if minor < 0 else ""
    whole, frac = divmod(abs(minor), 10**exp)
    text = f"{whole:,}" + (f".{frac:0{exp}d}" if exp else "")
    return f"{sign}{text} {code}"


def payload_rows(payload: Any) -> list[dict[str, str]]:
    """Label/value rows for a payload; money is shown formatted next to the raw field."""
    if not isinstance(payload, dict):
        return [{"key": "payload", "value": _cell(payload), "hint": ""}]
    rows = []
    for key, value in payload.items():
        hint = ""
        if key.endswith("amount_minor"):
            hint = money(value, payload.get("currency")) or ""
        rows.append({"key": label(key), "value": _cell(value), "hint": hint})
    return rows


def _cell(value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        return f"{value:,}" if isinstance(value, int) else str(value)
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def headline(payload: Any) -> str:
    """A one-line summary for lists: the amount, or the first fields."""
    if not isinstance(payload, dict):
        return ""
    amount = money(payload.get("amount_minor"), payload.get("currency"))
    party = payload.get("beneficiary") or payload.get("to") or payload.get("customer")
    if amount and isinstance(party, str):
        return f"{amount} to {party}"
    if amount:
        return amount
    parts = [f"{label(k)}: {_cell(v)}" for k, v in list(payload.items())[:2]]
    return ", ".join(parts)[:120]


def short(value: Any, n: int = 12) -> str:
    text = str(value or "")
    return text if len(text) <= n + 1 else text[:n] + "…"


def pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)


def micros(value: Any) -> str:
    if not isinstance(value, int):
        return ""
    return f"{value} µs" if value < 1000 else f"{value / 1000:.1f} ms"


FILTERS = {
    "tone": tone, "label": label, "ago": ago, "when": when, "duration": duration, "money": money,
    "payload_rows": payload_rows, "headline": headline, "short": short, "pretty": pretty, "micros": micros,
}
