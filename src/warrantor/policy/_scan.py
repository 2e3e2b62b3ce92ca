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

With ``max_expr`` it also bounds the depth of the tree Cedar will build, because deep trees
without any brackets are just as fatal: a ~160 KB ``true && true && ...`` crashed the
process in cedarpy's JSON conversion, ~4,400 nested ``if ... then ... else`` crash its
parser, and a ``has a.b.c...`` path is expanded quadratically (3,000 segments: 40 s, 4 GB).
The bound is cheap and conservative: every token that can add a level to Cedar's tree (an
operator, ``.``, an opening bracket, and the words ``if then else has like is in``) counts
one; a ``,`` starts a new sibling; the bound of a statement is the largest sum of counts
along any path of nested brackets. Cedar's tree is never deeper than a small multiple of
that sum, so refusing statements above ``max_expr`` keeps every native call on a small,
known stack (measured in ``tests/unit/test_policy_limits.py``). With ``max_has_path`` the
number of ``.`` segments after a ``has`` is bounded too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

_OPEN = {"(": ")", "[": "]", "{": "}"}
_CLOSE = {")", "]", "}"}
_TWO_CHAR = {"==", "!=", "<=", ">=", "&&", "||", "::"}


_CLOSERS_AND_SEPARATORS = frozenset({")", "]", "}", ",", ";"})
_OPERATOR_WORDS = frozenset({"if", "then", "else", "has", "like", "is", "in"})
TOO_COMPLEX = "POLICY_TOO_COMPLEX"


class ScanError(Exception):
    def __init__(self, message: str, offset: int, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.offset = offset
        self.code = code


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
            raise ScanError(f"nesting deeper than {max_depth} levels", i, TOO_COMPLEX)
    elif c in _CLOSE or (angle and c == ">"):
        if not stack or _OPEN.get(stack[-1][0], ">") != c:
            raise ScanError(f"unbalanced {c!r}", i)
        stack.pop()


class _ExprBound:
    """The tree-depth bound of the module docstring, one frame per open bracket.

    A frame is ``[above, count, child, best]``: the counts of the enclosing segments, the
    count of the current segment, the largest bound of a bracket group closed inside it,
    and the largest finished sibling segment. Checked at every counted token and at every
    close, so the error points at the token where the limit is first exceeded.
    """

    def __init__(self, limit: int, max_has_path: int | None) -> None:
        self.limit = limit
        self.max_has_path = max_has_path
        self.frames: list[list[int]] = [[0, 0, 0, 0]]
        self.has_at = -1  # offset of the ``has`` whose path is being read, else -1
        self.has_dots = 0
        self.expect_name = False

    def token(self, text: str, start: int, end: int) -> None:
        tok = text[start:end]
        self._has_path(tok, start)
        frame = self.frames[-1]
        if tok == ",":
            frame[3] = max(frame[3], frame[1] + frame[2])
            frame[1] = frame[2] = 0
        elif tok in _CLOSERS_AND_SEPARATORS:
            if tok == ";" and len(self.frames) == 1:
                self.frames = [[0, 0, 0, 0]]
            elif tok != ";" and len(self.frames) > 1:
                done = self.frames.pop()
                parent = self.frames[-1]
                parent[2] = max(parent[2], done[3], done[1] + done[2])
                self._check(parent, start)
        elif not (tok[0].isalnum() or tok[0] in "_\"") or tok in _OPERATOR_WORDS:
            frame[1] += 1
            self._check(frame, start)
            if tok in _OPEN:
                self.frames.append([frame[0] + frame[1], 0, 0, 0])

    def _check(self, frame: list[int], offset: int) -> None:
        if frame[0] + frame[1] + frame[2] > self.limit:
            raise ScanError(
                f"expression too deep: more than {self.limit} operators, '.' and brackets "
                "nested along one path (split the condition, or use parentheses and sets)",
                offset,
                TOO_COMPLEX,
            )

    def _has_path(self, tok: str, start: int) -> None:
        if self.max_has_path is None:
            return
        if tok == "has":
            self.has_at, self.has_dots, self.expect_name = start, 0, True
        elif self.has_at >= 0 and self.expect_name and (tok[0].isalpha() or tok[0] in "_\""):
            self.expect_name = False
        elif self.has_at >= 0 and not self.expect_name and tok == ".":
            self.has_dots += 1
            self.expect_name = True
            if self.has_dots >= self.max_has_path:
                raise ScanError(
                    f"'has' path longer than {self.max_has_path} attributes", self.has_at, TOO_COMPLEX
                )
        else:
            self.has_at = -1


def scan(
    text: str,
    *,
    max_depth: int,
    angle: bool = False,
    max_expr: int | None = None,
    max_has_path: int | None = None,
) -> list[Statement]:
    """Tokens grouped into statements; raises :class:`ScanError` on nesting beyond
    ``max_depth``, unbalanced brackets, an unterminated string, and (when given) a tree
    bound above ``max_expr`` or a ``has`` path of ``max_has_path`` attributes or more."""
    statements: list[Statement] = []
    current: Statement | None = None
    stack: list[tuple[str, int]] = []
    bound = _ExprBound(max_expr, max_has_path) if max_expr is not None else None
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
        if bound is not None:
            bound.token(text, i, end)
        if c == ";" and not stack:
            current = None
        i = _skip_blank(text, end)
    if stack:
        raise ScanError(f"unclosed {stack[-1][0]!r}", stack[-1][1])
    if statements and current is not None:
        current.terminated = False
    return statements


def policy_head(text: str, stmt: Statement) -> tuple[int, int]:
    """Indexes in ``stmt.tokens`` of the effect (``permit``/``forbid``) and of the ``)``
    that closes the scope, for a statement Cedar has already parsed; skips ``@name`` and
    ``@name("value")`` annotations. ``ValueError`` if the statement has no such shape."""
    toks = [text[a:b] for a, b in stmt.tokens]
    i = 0
    while i + 1 < len(toks) and toks[i] == "@":
        i += 5 if i + 2 < len(toks) and toks[i + 2] == "(" else 2
    if i + 1 >= len(toks) or toks[i] not in ("permit", "forbid") or toks[i + 1] != "(":
        raise ValueError("expected annotations, then permit or forbid and a scope")
    depth = 0
    for j in range(i + 1, len(toks)):
        depth += {"(": 1, ")": -1}.get(toks[j], 0)
        if depth == 0:
            return i, j
    raise ValueError("unclosed scope")


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
