"""A policy bundle as a directory: ``*.cedar`` files, one ``*.cedarschema``, ``warrantor.yaml``.

``read_bundle_dir`` turns the directory into the body ``POST /v1/policies`` takes
(``{"cedar", "schema", "config"}``), byte for byte what the files hold: the ``.cedar`` files
in name order, each ending in a newline (one is added to a file that lacks it, only when
there are several), the schema file's text, and the config as YAML text (``{}`` without
``warrantor.yaml``, as the API's default). Other files are ignored.

Positions in a problem (``line``/``column`` of the concatenated Cedar text, of the schema
or of the config YAML) are mapped back to the file they came from by :meth:`BundleDir.locate`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CONFIG_NAME = "warrantor.yaml"
_YAML_MARK = re.compile(r"invalid YAML at line (\d+), column (\d+)")


class BundleDirError(Exception):
    """The directory cannot be read at all (a usage error)."""


@dataclass(frozen=True)
class CedarSource:
    path: Path
    first_line: int  # the line of the concatenated text this file starts on (1-based)


@dataclass(frozen=True)
class Location:
    path: Path
    line: int | None = None
    column: int | None = None

    def __str__(self) -> str:
        if self.line is None:
            return str(self.path)
        return f"{self.path}:{self.line}:{self.column or 1}"


@dataclass
class BundleDir:
    root: Path
    cedar_files: list[CedarSource]
    schema_file: Path | None
    config_file: Path | None
    raw: dict[str, Any]
    problems: list[dict[str, Any]] = field(default_factory=list)  # layout problems, located
    hints: list[dict[str, Any]] = field(default_factory=list)  # what a problem in the joined text may come from

    @property
    def files(self) -> list[Path]:
        out = [c.path for c in self.cedar_files]
        out += [p for p in (self.schema_file, self.config_file) if p is not None]
        return out

    def locate(self, problem: dict[str, Any]) -> Location:
        """Where a bundle problem (``{"message", "line"?, "column"?}``) is, file by file."""
        message = str(problem.get("message", ""))
        line, column = problem.get("line"), problem.get("column")
        if message.startswith("schema") and self.schema_file is not None:
            return Location(self.schema_file, line, column)
        if message.startswith("config") and self.config_file is not None:
            if line is None and (found := _YAML_MARK.search(message)):  # invalid YAML names its place
                line, column = int(found[1]), int(found[2])
            return Location(self.config_file, line, column)
        if message.startswith("cedar") and self.cedar_files:
            if isinstance(line, int):
                source = self.cedar_files[0]
                for candidate in self.cedar_files:
                    if candidate.first_line <= line:
                        source = candidate
                return Location(source.path, line - source.first_line + 1, column)
            if len(self.cedar_files) == 1:
                return Location(self.cedar_files[0].path)
        return Location(self.root, None, None)

    def located(self, problem: dict[str, Any]) -> dict[str, Any]:
        """The problem with ``file``, ``line`` and ``column`` in that file; the bundle's own
        ``line``/``column`` stay as ``bundle_line``/``bundle_column``."""
        where = self.locate(problem)
        out = {k: v for k, v in problem.items() if k not in ("line", "column")}
        out["file"] = str(where.path)
        if where.line is not None:
            out["line"], out["column"] = where.line, where.column or 1
        if "line" in problem:
            out["bundle_line"] = problem["line"]
            out["bundle_column"] = problem.get("column")
        return out

    def policy_location(self, line: int | None) -> Location:
        return self.locate({"message": "cedar", "line": line, "column": 1})


def read_bundle_dir(root: Path) -> BundleDir:
    """Read ``root``; raises :class:`BundleDirError` when it is not a readable directory.
    A missing or doubled file, or one that is not UTF-8, is a problem in ``problems``."""
    if not root.is_dir():
        raise BundleDirError(f"{root}: expected a bundle directory (*.cedar, one *.cedarschema, "
                             f"an optional {CONFIG_NAME})")
    try:
        entries = sorted(p for p in root.iterdir() if p.is_file())
    except OSError as exc:
        raise BundleDirError(f"{root}: {exc}") from exc
    problems: list[dict[str, Any]] = []
    cedar_paths = [p for p in entries if p.suffix == ".cedar"]
    schemas = [p for p in entries if p.suffix == ".cedarschema"]
    config = root / CONFIG_NAME if (root / CONFIG_NAME).is_file() else None
    if not cedar_paths:
        problems.append({"file": str(root), "message": "expected at least one *.cedar policy file, found none",
                         "code": "BUNDLE_LAYOUT"})
    if len(schemas) != 1:
        found = ", ".join(p.name for p in schemas) or "none"
        problems.append({"file": str(root), "message": f"expected exactly one *.cedarschema file, found {found}",
                         "code": "BUNDLE_LAYOUT"})
    texts: dict[Path, str] = {}
    for path in [*cedar_paths, *schemas[:1], *([config] if config else [])]:
        try:
            texts[path] = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError as exc:
            problems.append({"file": str(path), "message": f"expected UTF-8 text: {exc}", "code": "BUNDLE_LAYOUT"})
        except OSError as exc:
            problems.append({"file": str(path), "message": f"cannot read: {exc}", "code": "BUNDLE_LAYOUT"})
    sources: list[CedarSource] = []
    chunks: list[str] = []
    line = 1
    for path in cedar_paths:
        text = texts.get(path, "")
        if len(cedar_paths) > 1 and not text.endswith("\n"):
            text += "\n"
        sources.append(CedarSource(path, line))
        chunks.append(text)
        line += text.count("\n")
    hints = [h for path in cedar_paths if len(cedar_paths) > 1 and (h := _unterminated(path, texts.get(path, "")))]
    schema = schemas[0] if len(schemas) == 1 else None
    raw: dict[str, Any] = {
        "cedar": "".join(chunks),
        "schema": texts.get(schema, "") if schema else "",
        "config": texts.get(config, "{}") if config else {},
    }
    return BundleDir(root, sources, schema, config, raw, problems, hints)


def _unterminated(path: Path, text: str) -> dict[str, Any] | None:
    """A file whose last policy lacks its ``;``: Cedar reads the next file as the rest of
    that policy, so the error it reports lands in the next file."""
    from warrantor.policy._scan import ScanError, line_col, scan
    from warrantor.policy.bundle import MAX_NESTING

    try:
        statements = scan(text, max_depth=MAX_NESTING)
    except ScanError:
        return None  # reported with its position by the bundle's own checks
    if not statements or statements[-1].terminated:
        return None
    line, column = line_col(text, statements[-1].start)
    return {"file": str(path), "line": line, "column": column,
            "message": "this file's last policy has no ';', so the next file is read as its continuation"}


def format_hint(hint: dict[str, Any]) -> str:
    return f"hint: {hint['file']}:{hint['line']}:{hint['column']}: {hint['message']}"


def format_problem(problem: dict[str, Any]) -> str:
    """``file:line:col: message [policy id] (CODE)``, as compilers print them."""
    where = problem["file"]
    if problem.get("line") is not None:
        where += f":{problem['line']}:{problem.get('column') or 1}"
    text = f"{where}: {problem['message']}"
    if problem.get("policy_id"):
        text += f" [policy {problem['policy_id']}]"
    if problem.get("code"):
        text += f" ({problem['code']})"
    return text
