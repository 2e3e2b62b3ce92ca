"""A small progress bar on stderr for the CLI's longer commands; no dependency.

Drawn only when the stream is a terminal: piped or redirected output (scripts, ``--json``
consumers, CI logs) never sees a control character. The bar is one line redrawn with
``\\r`` and erased when the work ends, so the command's own output starts on a clean line.
"""

from __future__ import annotations

import shutil
import sys
from types import TracebackType
from typing import TextIO

WIDTH = 24


class Progress:
    """``with Progress(total, "label") as bar: ... bar.step("what was done")``."""

    def __init__(self, total: int, label: str, stream: TextIO | None = None) -> None:
        self.total = max(total, 1)
        self.label = label
        self.done = 0
        self._stream = stream if stream is not None else sys.stderr
        self.enabled = _is_tty(self._stream)
        self._drawn = False

    def __enter__(self) -> Progress:
        self._draw("")
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def step(self, note: str = "") -> None:
        """One unit of work finished; ``note`` says which."""
        self.done = min(self.done + 1, self.total)
        self._draw(note)

    def note(self, note: str) -> None:
        """Redraw with a new note (the work in progress), without counting a step."""
        self._draw(note)

    def close(self) -> None:
        if self.enabled and self._drawn:
            self._stream.write("\r\x1b[2K")
            self._stream.flush()
            self._drawn = False

    def render(self, note: str) -> str:
        """The line as drawn, without the leading carriage return."""
        filled = WIDTH * self.done // self.total
        line = f"{self.label} [{'#' * filled}{'.' * (WIDTH - filled)}] {self.done}/{self.total}"
        if note:
            line += f" {note}"
        columns = shutil.get_terminal_size((80, 24)).columns
        return line[: max(columns - 1, 10)]

    def _draw(self, note: str) -> None:
        if not self.enabled:
            return
        self._stream.write("\r\x1b[2K" + self.render(note))
        self._stream.flush()
        self._drawn = True


def _is_tty(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # closed or not a real stream
        return False
