"""A small trusted scanner for untrusted Cedar text, run before the native parser sees it.

Why it exists: cedarpy's parser crashes the whole process (SIGSEGV, measured with about
1,000 nested parentheses) on deep nesting, and its parse errors carry neither a line nor a
column. This scanner

- measures bracket nesting (``( [ { <``-free: ``<`` is only nesting in schemas, see
  ``angle``) outside strings and ``//`` comments, so deep input is refused without parsing;
- splits a policy file into statements at top-level ``;`` so each statement can be parsed
  alone (every statement's error is reported, not only the first), and records where each
  statement and token starts, so an error can be located by bisection over tokens.

It is not a Cedar parser: it only knows strings, comments, brackets and token edges.
"""

from __future__ import annotations

from dataclasses import dataclass, field

_OPEN = {"(": ")", "[": "]", "{": "}"}
_CLOSE = {")", "]", "}"}
_TWO_CHAR = {"==", "!=", "<=", ">=", "&&", "||", "::"}


class ScanError(Exception):
    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.message = message
        self.offset = offset


@dataclass
class Statement:
    start: int  # offset of the first token
    end: int  # offset just past the terminating ';' (or the last token)
    tokens: list[tuple[int, int]] = field(default_factory=list)  # (start, end) offsets
    terminated: bool = True


def line_col(text: str, offset: int) -> tuple[int, int]:
    """1-based line and column (in characters) of ``offset`` in ``text``."""
    line = text.count("\n", 0, offset) + 1
    col = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return line, col


def _skip_string(text: str, i: int) -> int:
    """Offset just past the string literal opening at ``i``."""
    j = i + 1
    n = len(text)
    while j < n:
        c = text[j]
        if c == "\\":
            j += 2
            continue
        if c == '"':
            return j + 1
        j += 1
    raise ScanError("unterminated string literal", i)


def _token_end(text: str, i: int) -> int:
    c = text[i]
    if c == '"':
        return _skip_string(text, i)
    if c.isalnum() or c == "_":
        end = i + 1
        while end < len(text) and (text[end].isalnum() or text[end] == "_"):
            end += 1
        return end
    return i + 2 if text[i : i + 2] in _TWO_CHAR else i + 1


def _skip_blank(text: str, i: int) -> int:
    """Offset of the next token at or after ``i`` (skipping whitespace and comments)."""
    n = len(text)
    while i < n:
        if text[i].isspace():
            i += 1
        elif text.startswith("//", i):
            nl = text.find("\n", i)
            i = n if nl < 0 else nl + 1
        else:
            break
    return i


def _track(stack: list[tuple[str, int]], c: str, i: int, max_depth: int, angle: bool) -> None:
    if c in _OPEN or (angle and c == "<"):
        stack.append((c, i))
        if len(stack) > max_depth:
            raise ScanError(f"nesting deeper than {max_depth} levels", i)
    elif c in _CLOSE or (angle and c == ">"):
        if not stack or _OPEN.get(stack[-1][0], ">") != c:
            raise ScanError(f"unbalanced {c!r}", i)
        stack.pop()


def scan(text: str, *, max_depth: int, angle: bool = False) -> list[Statement]:
    """Tokens grouped into statements; raises :class:`ScanError` on nesting beyond
    ``max_depth``, unbalanced brackets or an unterminated string."""
    statements: list[Statement] = []
    current: Statement | None = None
    stack: list[tuple[str, int]] = []
    i = _skip_blank(text, 0)
    while i < len(text):
        end = _token_end(text, i)
        if current is None:
            current = Statement(start=i, end=end)
            statements.append(current)
        current.tokens.append((i, end))
        current.end = end
        c = text[i] if end == i + 1 else ""
        _track(stack, c, i, max_depth, angle)
        if c == ";" and not stack:
            current = None
        i = _skip_blank(text, end)
    if stack:
        raise ScanError(f"unclosed {stack[-1][0]!r}", stack[-1][1])
    if statements and current is not None:
        current.terminated = False
    return statements


def json_depth(value: object, limit: int) -> int:
    """Nesting depth of a JSON value, stopping early once it exceeds ``limit``."""
    best = 0
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict | list):
            best = max(best, depth)
            if best > limit:
                return best
            children = node.values() if isinstance(node, dict) else node
            stack.extend((child, depth + 1) for child in children)
    return best
