"""Every example bundle in docs/policies.md validates, and its cases file passes with
``warrantor policy test`` as the guide says to run it; every rule the guide quotes is in
the example's files."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from warrantor.cli.main import main as cli

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "policies.md"
EXAMPLES = [
    (ROOT / "examples" / "policy" / "payments", ROOT / "examples" / "policy" / "payments-cases.yaml"),
    (ROOT / "examples" / "policy" / "data-access", ROOT / "examples" / "policy" / "data-access-cases.yaml"),
    (ROOT / "examples" / "mcp" / "policy", ROOT / "examples" / "policy" / "mcp-tools-cases.yaml"),
]


@pytest.mark.parametrize(("bundle", "cases"), EXAMPLES, ids=[b.name for b, _ in EXAMPLES])
def test_each_example_validates_and_its_cases_pass(bundle: Path, cases: Path, capsys: Any) -> None:
    assert cli(["policy", "validate", str(bundle)]) == 0, capsys.readouterr().out
    capsys.readouterr()
    code = cli(["policy", "test", str(bundle), str(cases)])
    out = capsys.readouterr().out
    n = len(yaml.safe_load(cases.read_text()))
    assert code == 0 and f"{n} passed, 0 failed, 0 errors" in out, out


def test_every_rule_the_guide_quotes_is_in_an_example() -> None:
    text = GUIDE.read_text()
    quoted = re.findall(r'@id\("([a-z0-9-]+)"\)', text)
    assert len(quoted) >= 6
    sources = "\n".join(p.read_text() for bundle, _ in EXAMPLES for p in bundle.glob("*.cedar"))
    for rule_id in quoted:
        assert f'@id("{rule_id}")' in sources, rule_id
    for _bundle, cases in EXAMPLES:
        assert str(cases.relative_to(ROOT)) in text or cases.name in text, cases
