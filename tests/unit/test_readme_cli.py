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


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_every_subcommand_is_in_the_readme_and_every_readme_flag_exists() -> None:
    lines = _synopsis()
    commands = _subcommands()
    documented = {line.split()[1] for line in lines if line.startswith("warrantor ")}
    assert documented == set(commands), "README 'Command line' lists exactly the CLI's subcommands"
    current = ""
    for line in lines:
        if line.startswith("warrantor "):
            current = line.split()[1]
        flags = set(re.findall(r"--[a-z][a-z-]*", line))
        known = {opt for a in commands[current]._actions for opt in a.option_strings}
        assert flags <= known, f"{current}: README shows {sorted(flags - known)} which --help does not have"


def test_make_targets_in_the_readme_exist() -> None:
    makefile = (ROOT / "Makefile").read_text()
    for target in set(re.findall(r"^make (\w+)", (ROOT / "README.md").read_text(), re.M)):
        assert re.search(rf"^{target}:", makefile, re.M), target
