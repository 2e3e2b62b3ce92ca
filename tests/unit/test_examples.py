"""The README's example files stay true to the code they show."""

from __future__ import annotations

import json
from pathlib import Path

from warrantor.demo import demo_bundle

ROOT = Path(__file__).resolve().parents[2]


def test_example_policy_is_the_demo_bundle() -> None:
    assert json.loads((ROOT / "examples" / "payments-policy.json").read_text()) == demo_bundle()
