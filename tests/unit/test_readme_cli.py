"""The README's command-line synopsis and the CLI's --help agree (STYLE.md habit 14)."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from warrantor.cli.main import build_parser

ROOT = Path(__file__).resolve().parents[2]


def _synopsis() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    block = readme.split("## Command line", 1)[1].split("```", 2)[1]
    return [line.strip() for line in block.splitlines() if line.strip()]


def _subcommands(parser: argparse.ArgumentParser | None = None) -> dict[str, argparse.ArgumentParser]:
    parser = parser or build_parser()
    action = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
    return dict(action.choices) if action else {}


def test_every_subcommand_is_in_the_readme_and_every_readme_flag_exists() -> None:
    lines = _synopsis()
    commands = _subcommands()
    documented = {line.split()[1] for line in lines if line.startswith("warrantor ")}
    assert documented == set(commands), "README 'Command line' lists exactly the CLI's subcommands"
    current: argparse.ArgumentParser | None = None
    for line in lines:
        if line.startswith("warrantor "):
            words = line.split()
            current = commands[words[1]]
            nested = _subcommands(current)  # warrantor policy validate ...: the flags are validate's
            if nested:
                assert words[2] in nested, f"README shows {' '.join(words[:3])} which --help does not have"
                current = nested[words[2]]
        assert current is not None
        flags = set(re.findall(r"--[a-z][a-z-]*", line))
        known = {opt for a in current._actions for opt in a.option_strings}
        assert flags <= known, f"{current.prog}: README shows {sorted(flags - known)} which --help does not have"


def test_make_targets_in_the_readme_exist() -> None:
    makefile = (ROOT / "Makefile").read_text()
    for target in set(re.findall(r"^make (\w+)", (ROOT / "README.md").read_text(), re.M)):
        assert re.search(rf"^{target}:", makefile, re.M), target
