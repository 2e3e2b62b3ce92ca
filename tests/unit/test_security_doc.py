"""docs/security.md names the tests that prove each control: every name must exist.

A reference is ``path::test_name`` in backticks; ``::test_name`` alone continues the last
file named, and a bare ``test_x.py::name`` is looked up under ``tests/``. A renamed or
deleted test fails here, so the threat model cannot quietly point at nothing.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REF = re.compile(r"`((?:[\w/.-]+\.py)?)(::\w+)?`")


def _resolve(name: str) -> Path:
    path = ROOT / name
    if path.exists():
        return path
    found = sorted((ROOT / "tests").rglob(Path(name).name))
    assert len(found) == 1, f"{name}: expected one file named so under tests/, found {found}"
    return found[0]


def test_every_test_named_in_the_security_model_exists() -> None:
    text = (ROOT / "docs" / "security.md").read_text()
    current: Path | None = None
    checked = 0
    for line in text.splitlines():
        for file_part, test_part in REF.findall(line):
            if file_part:
                current = _resolve(file_part)
            if test_part:
                assert current is not None, f"{test_part} names no file: {line}"
                name = test_part[2:]
                assert re.search(rf"^(async )?def {name}\b", current.read_text(), re.M), (
                    f"docs/security.md names {current.relative_to(ROOT)}::{name}, which does not exist")
                checked += 1
    assert checked > 50  # the model names its tests; an empty page would pass vacuously
