"""The figures ``bench/run.py`` reports: each a value, the same-run baseline it is divided by,
and the target from the performance issue; plus the table and the results document.

Rules:

- A figure's *ratio* is ``value / baseline`` (both measured in the same run); a target is on
  the ratio (``on="ratio"``) or on the value itself (``on="value"``, e.g. a p99 in ms).
- A figure that could not be measured keeps ``value=None`` and says why in ``note``; its
  verdict is ``n/a``, never ``pass``.
- Verdicts: ``pass`` or ``miss`` against the target; ``-`` when the figure has no target.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import os
import platform
import shutil
import sqlite3
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

PACKAGES = ("uvicorn", "uvloop", "httptools", "fastapi", "starlette", "pydantic", "sqlalchemy", "psycopg",
            "cryptography", "orjson", "cedarpy", "httpx")


@dataclass(frozen=True)
class Target:
    op: Literal[">=", "<=", "<"]
    bound: float
    on: Literal["ratio", "value"] = "ratio"

    def met(self, value: float | None, ratio: float | None) -> bool | None:
        subject = ratio if self.on == "ratio" else value
        if subject is None:
            return None
        if self.op == ">=":
            return subject >= self.bound
        if self.op == "<=":
            return subject <= self.bound
        return subject < self.bound

    def describe(self, unit: str) -> str:
        return f"{self.op} {self.bound:g}x" if self.on == "ratio" else f"{self.op} {self.bound:g} {unit}"


@dataclass(frozen=True)
class Figure:
    key: str
    name: str
    value: float | None
    unit: str
    baseline: float | None = None
    baseline_name: str = ""
    target: Target | None = None
    detail: str = ""  # shown after the value, e.g. "p50 12 ms, p99 40 ms"
    note: str = ""  # why a figure is missing, or what qualifies it

    @property
    def ratio(self) -> float | None:
        if self.value is None or self.baseline is None or self.baseline == 0:
            return None
        return self.value / self.baseline

    @property
    def verdict(self) -> str:
        if self.target is None:
            return "-" if self.value is not None else "n/a"
        met = self.target.met(self.value, self.ratio)
        return "n/a" if met is None else ("pass" if met else "miss")

    def as_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["ratio"] = None if self.ratio is None else round(self.ratio, 4)
        out["verdict"] = self.verdict
        out["target"] = None if self.target is None else {**dataclasses.asdict(self.target),
                                                         "text": self.target.describe(self.unit)}
        return out


def _num(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def render_table(figures: Sequence[Figure]) -> str:
    """One plain-text table: figure, value, target, ratio to its baseline, pass/miss."""
    header = ("figure", "value", "target", "ratio to baseline", "verdict")
    rows = []
    for f in figures:
        if f.value is None:
            value = f"not measured: {f.note}" if f.note else "not measured"
        else:
            value = f"{_num(f.value)} {f.unit}" + (f" ({f.detail})" if f.detail else "")
        ratio = "-" if f.ratio is None else f"{f.ratio:.2f} of {f.baseline_name}"
        target = "-" if f.target is None else f.target.describe(f.unit)
        rows.append((f.name, value, target, ratio, f.verdict))
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    return "\n".join([line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def results_document(figures: Sequence[Figure], *, command: str, mode: str, machine: dict[str, Any],
                     scenarios: dict[str, Any], errors: dict[str, str], started: str, finished: str
                     ) -> dict[str, Any]:
    """What ``bench/results/run.json`` holds."""
    verdicts = [f.verdict for f in figures if f.target is not None]
    return {
        "benchmark": "bench/run.py: Warrantor against its ceiling, one run",
        "command": command,
        "mode": mode,
        "started": started,
        "finished": finished,
        "machine": machine,
        "summary": {"pass": verdicts.count("pass"), "miss": verdicts.count("miss"), "n/a": verdicts.count("n/a")},
        "figures": [f.as_dict() for f in figures],
        "errors": errors,
        "scenarios": scenarios,
    }


def _run(cmd: Sequence[str], cwd: Path | None = None) -> str:
    try:
        return subprocess.run(cmd, check=False, capture_output=True, text=True, cwd=cwd, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def machine_facts(root: Path) -> dict[str, Any]:
    """CPU, cores, kernel, Python, package versions, wrk, git commit and whether the tree was dirty."""
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    wrk = _run(["wrk", "-v"]).splitlines()[:1] if shutil.which("wrk") else []
    status = _run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root)
    return {
        "cpu_model": cpu,
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "kernel": platform.release(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "packages": versions,
        "wrk": wrk[0] if wrk else None,
        "git_commit": _run(["git", "rev-parse", "HEAD"], cwd=root) or None,
        "git_dirty": bool(status),
        "load_average": list(os.getloadavg()),
    }
