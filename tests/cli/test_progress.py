"""The CLI's progress bar: drawn on a terminal, never into a pipe or a file."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

from warrantor.cli.progress import Progress

ROOT = Path(__file__).resolve().parents[2]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_nothing_is_written_when_stderr_is_not_a_terminal() -> None:
    stream = io.StringIO()
    with Progress(3, "work", stream) as bar:
        for n in range(3):
            bar.step(f"item {n}")
    assert not bar.enabled and stream.getvalue() == ""


def test_on_a_terminal_the_bar_counts_and_is_erased_at_the_end() -> None:
    stream = Terminal()
    with Progress(4, "work", stream) as bar:
        bar.step("one")
        assert bar.render("one").startswith("work [######..................] 1/4 one")
        bar.step("two")
    drawn = stream.getvalue()
    assert "\r\x1b[2Kwork [############............] 2/4 two" in drawn
    assert drawn.endswith("\r\x1b[2K")  # the line is cleared for the command's own output


def test_a_command_piped_to_a_file_gets_no_control_characters(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "warrantor.cli.main", "policy", "test", str(ROOT / "examples/policy/payments"),
         str(ROOT / "examples/policy/payments-cases.yaml")], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "\r" not in done.stdout + done.stderr and "\x1b" not in done.stdout + done.stderr
