"""``--help``: every command listed exists and has a description, and the README's "Command
line" block lists exactly the commands ``warrantor --help`` shows (subcommands too)."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from warrantor.cli.main import build_parser
from warrantor.cli.main import main as cli

ROOT = Path(__file__).resolve().parents[2]


def _help(capsys: Any, *words: str) -> str:
    with pytest.raises(SystemExit) as exc:
        cli([*words, "--help"])
    assert exc.value.code == 0
    return str(capsys.readouterr().out)


def _listed(help_text: str) -> list[str]:
    """The commands a --help lists under its COMMAND positional, in order."""
    block = help_text.split("COMMAND\n", 1)[1].split("\noptions:", 1)[0]
    return [m.group(1) for m in re.finditer(r"^    (\S+)", block, re.M)]


def _readme_commands() -> list[list[str]]:
    readme = (ROOT / "README.md").read_text()
    block = readme.split("## Command line", 1)[1].split("```", 2)[1]
    return [line.split() for line in block.splitlines() if line.startswith("warrantor ")]


def _parsers(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    out = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            for name, sub in action.choices.items():
                out.append(((*path, name), sub, helps.get(name)))
                out.extend(_parsers(sub, (*path, name)))
    return out


def test_the_readme_block_lists_exactly_the_commands_help_shows(capsys: Any) -> None:
    top = _listed(_help(capsys))
    readme = _readme_commands()
    assert sorted({words[1] for words in readme}) == sorted(top)
    assert set(top) >= {"serve", "init", "demo", "keys", "policy", "verify", "audit", "mcp-gateway"}
    policy = _listed(_help(capsys, "policy"))
    assert sorted(words[2] for words in readme if words[1] == "policy") == sorted(policy) == [
        "simulate", "test", "validate"]


def test_every_command_has_a_help_line_and_a_description(capsys: Any) -> None:
    parsers = _parsers(build_parser())
    assert len(parsers) >= 11
    for path, parser, help_line in parsers:
        assert help_line, f"warrantor {' '.join(path)} has no line in its parent's --help"
        assert parser.description, f"warrantor {' '.join(path)} --help has no description"
        text = _help(capsys, *path)
        assert text.startswith(f"usage: warrantor {' '.join(path)}")
        for action in parser._actions:
            if action.option_strings and action.dest != "help":
                assert action.help, f"warrantor {' '.join(path)} {action.option_strings[0]} has no help"


@pytest.mark.parametrize("words", [["init"], ["demo"], ["policy", "validate"], ["policy", "test"],
                                   ["policy", "simulate"]])
def test_new_commands_show_the_readme_flags(capsys: Any, words: list[str]) -> None:
    text = _help(capsys, *words)
    line = next(w for w in _readme_commands() if w[1:1 + len(words)] == words)
    for flag in {w.strip("[]|()") for w in line if w.strip("[]|()").startswith("--")}:
        assert flag in text, f"{flag} of the README is not in warrantor {' '.join(words)} --help"


def test_the_installed_entry_point_answers_help() -> None:
    done = subprocess.run([sys.executable, "-m", "warrantor.cli.main", "--help"], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0 and "init" in done.stdout and "policy" in done.stdout
