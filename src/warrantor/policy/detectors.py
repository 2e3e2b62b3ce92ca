"""Content detectors: signatures for secrets, card numbers and prompt-injection markers.

Implements the ``detectors`` stage of the authorization pipeline (docs/architecture.md) and
the ``detectors`` block of a bundle's config (docs/guardrails.md)::

    detectors:
      builtin: {secrets: deny, cards: deny, injection: require_approval}
      custom:
        - {id: codename, pattern: "(?i)project\\s+falcon", mode: deny}

What it does:

- ``DetectorSet.from_config`` compiles every enabled signature once with RE2 (``google-re2``),
  whose matching time is linear in the text, so a tenant's pattern cannot hang a worker
  the way ``(a+)+$`` hangs Python's ``re``. Patterns RE2 refuses, over-long patterns, too many
  custom detectors, unknown built-ins and unknown modes are all reported together in one
  ``DetectorConfigError``. A built-in the config does not mention is ``off``.
- ``DetectorSet.scan`` walks ``details`` (a string), ``payload`` and ``context`` (JSON
  values): every string, every object key and every integer (a card number sent as a JSON
  number is still a card number). Object members are visited in sorted key order, so the
  result does not depend on the order keys arrived in.
- A ``Finding`` names the detector, its kind, its mode, where it matched (an RFC 6901 JSON
  pointer such as ``/payload/note``) and ``finding_hash``: with a ``salt`` (an
  authorization passes the action's commitment salt, ``evidence/commitments.py``), the hex
  HMAC-SHA256 of the matched text's UTF-8 bytes keyed with the salt's UTF-8 bytes; without
  one (dry runs, which record nothing), their plain hex sha256. The matched text itself is
  never kept, logged or put in an exception, and never in a pointer either: a key that a
  detector matched (a card number sent as an object key) is written ``~k<n>``, the
  object's n-th key in sorted order (``~k`` is not an RFC 6901 escape, so it cannot be a
  key's own text), in its own finding's path and in the path of every finding below it.
  Pointers are signed into warrants and receipts, which outlive erasure; a secret there
  would outlive it too.
- ``strongest(findings)`` folds findings into one mode: deny > require_approval > report.

How a scan runs: the strings are joined with newlines and searched once with the RE2 union
of all signatures (multi-line, so ``^`` and ``$`` also fit each string); only the strings a
union match touches are then searched signature by signature, and only those results count,
so no match ever spans two strings. Custom patterns that use ``\\A``, ``\\z`` or turn
multi-line off skip the union and run on every string. Patterns that can match empty text
are refused (they would flag everything and iterate once per byte). Measured on this
machine (bench/results/detectors.json): about 33 us for a clean 1 KB action and 1.5 ms for
a clean 64 KB one, every built-in on.

Size cap (fail closed): at most ``MAX_SCAN_BYTES`` (1 MiB) of UTF-8 text is scanned per
action. Text beyond the cap is not scanned; instead the scan adds one finding with
``detector_id`` and ``kind`` ``"oversize"`` and mode ``deny`` at the pointer where scanning
stopped (its ``finding_hash`` is that of the empty string, since nothing matched).
Findings in the first MiB are still reported. The oversize finding is only produced when at
least one detector is enabled: with every detector off there is nothing to fail closed on.

Bounded cost of custom detectors (a tenant writes them, the server pays for them). RE2 is
linear in the text, but the constant is the pattern's size: a pattern such as ``a.{25}b``
blows up RE2's DFA and falls back to simulating its program, about 3 to 8 ns per byte per
instruction on this machine (1.4 s for one such pattern over 1 MiB). So:

- at most ``MAX_CUSTOM_DETECTORS`` (32) patterns of at most ``MAX_PATTERN_LENGTH`` (512)
  characters, each compiling to at most ``MAX_PROGRAM_SIZE`` (1,000) RE2 instructions and
  all together to at most ``MAX_CUSTOM_PROGRAM_SIZE`` (4,000);
- custom patterns never join the built-ins' union, and scan an action's strings only up to
  a fixed amount of work, ``CUSTOM_SCAN_WORK`` (2**24) units, where a string of ``b`` bytes
  costs ``b`` times the patterns' total program size plus ``CALL_COST`` (2,048) per pattern
  (the fixed cost of one regex call from Python, which dominates for short strings). So
  the worst case is the same whatever the patterns: for the largest configuration about
  4 KiB of long strings; for five patterns of 40 instructions about 85 KiB of long strings
  or 1,500 short ones. Strings beyond the budget add an ``oversize`` finding (mode
  ``deny``, signature ``custom_scan_budget``) where custom scanning stopped: fail closed;
- matches cost Python work (a hash, a finding), so once ``MAX_MATCHES`` (1,024) matches
  have been processed in one scan, a signature whose mode is not stronger than the
  strongest found so far is not searched further: the findings can no longer change the
  decision. ``bench/detectors.py`` measures the worst case at these limits.

Findings are de-duplicated on (detector, signature, path, hash) and capped at
``MAX_FINDINGS``; past the cap a finding is kept only if its mode is stronger than every
kept one, so ``strongest`` over the kept list equals ``strongest`` over all of them.

What it does not do: decide the action's effect (the pipeline maps ``strongest`` to deny,
hold or a warning, code ``CONTENT_SIGNATURE_MATCH``), store findings, or detect secrets
by entropy. Card detection is deliberately conservative: 13-19 digits in groups separated
by single spaces or dashes, a major network's prefix and length, a valid Luhn checksum,
and no letter or digit right next to the number. ``finding_hash`` is keyed with the action's
salt because a plain hash of a low-entropy match (a card number) can be brute-forced: the
salt is erased with the action's details, and then the hash confirms no guess.
"""

from __future__ import annotations

import bisect
import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Final, Literal

import re2

Kind = Literal["secrets", "cards", "injection", "custom", "oversize"]
Mode = Literal["deny", "require_approval", "report"]

MODES: tuple[str, ...] = ("deny", "require_approval", "report", "off")
BUILTIN_KINDS: tuple[str, ...] = ("secrets", "cards", "injection")
MAX_SCAN_BYTES = 1 << 20
MAX_CUSTOM_DETECTORS = 32
MAX_PATTERN_LENGTH = 512
MAX_PROGRAM_SIZE = 1_000
MAX_CUSTOM_PROGRAM_SIZE = 4_000
CUSTOM_SCAN_WORK = 1 << 24
CALL_COST = 2048
MAX_FINDINGS = 256
MAX_MATCHES = 1024
CUSTOM_BUDGET: Final = "custom_scan_budget"
OVERSIZE: Final = "oversize"

_RANK: dict[str, int] = {"deny": 3, "require_approval": 2, "report": 1}
_PREFILTER_MAX_MEM = 64 << 20
_EMPTY_PROBES = (b"", b"a", b" a ", b"0", b"\n", b"a\nb")

# (signature name, RE2 pattern). Kept narrow on purpose: each has a fixed, documented prefix.
_SECRET_SIGNATURES: tuple[tuple[str, str], ...] = (
    ("aws_access_key_id", r"\b(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}\b"),
    ("github_token", r"\bgh[pousr]_[A-Za-z0-9]{36,255}\b"),
    ("github_fine_grained_pat", r"\bgithub_pat_[A-Za-z0-9_]{22,255}\b"),
    ("slack_token", r"\bxox[abeoprs]-[A-Za-z0-9-]{10,255}"),
    ("stripe_live_key", r"\b(?:sk|rk)_live_[A-Za-z0-9]{16,247}\b"),
    ("google_api_key", r"\bAIza[A-Za-z0-9_\-]{35}"),
    ("pem_private_key", r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"),
    ("jwt", r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"),
    ("bearer_token", r"(?i)\bbearer\s+[A-Za-z0-9._~+/-]{20,}=*"),
)

_INJECTION_SIGNATURES: tuple[tuple[str, str], ...] = (
    (
        "ignore_previous_instructions",
        r"(?i)\b(?:ignore|forget)\s+(?:all\s+)?(?:of\s+)?(?:the\s+|your\s+)?"
        r"(?:previous|prior|above|earlier)\s+(?:instructions|prompts|directions|rules)\b",
    ),
    (
        "disregard_system_prompt",
        r"(?i)\bdisregard\s+(?:all\s+)?(?:the\s+|your\s+|any\s+)?(?:previous\s+|prior\s+)?"
        r"(?:system\s+prompt|instructions)\b",
    ),
    ("you_are_now_dan", r"(?i)\byou\s+are\s+now\s+(?:DAN\b|in\s+developer\s+mode\b)"),
    ("chat_template_token", r"(?i)<\|(?:im_start|im_end|im_sep|endoftext|system)\|>|<<SYS>>"),
    ("system_prompt_delimiter", r"(?i)\b(?:BEGIN|END)\s+SYSTEM\s+PROMPT\b"),
    ("reveal_system_prompt", r"(?i)\breveal\s+(?:your|the)\s+(?:system\s+prompt|instructions)\b"),
)

# A run of at least 13 digits, each separated from the next by at most one space or dash.
_DIGIT_RUN = r"[0-9](?:[ -]?[0-9]){12,}"
_UNFILTERABLE = re2.compile(rb"\\[Az]|\(\?[a-zA-Z]*-[a-zA-Z]*m")

# (network, prefix ranges as (low, high, prefix length), allowed lengths)
_CARD_NETWORKS: tuple[tuple[str, tuple[tuple[int, int, int], ...], frozenset[int]], ...] = (
    ("visa", ((4, 4, 1),), frozenset({13, 16, 19})),
    ("mastercard", ((51, 55, 2), (2221, 2720, 4)), frozenset({16})),
    ("amex", ((34, 34, 2), (37, 37, 2)), frozenset({15})),
    ("discover", ((6011, 6011, 4), (644, 649, 3), (65, 65, 2)), frozenset(range(16, 20))),
    ("diners", ((300, 305, 3), (36, 36, 2), (38, 39, 2)), frozenset(range(14, 20))),
    ("jcb", ((3528, 3589, 4),), frozenset(range(16, 20))),
    ("unionpay", ((62, 62, 2),), frozenset(range(16, 20))),
)


class DetectorConfigError(ValueError):
    """The ``detectors`` config is invalid; ``problems`` lists every fault, one per entry."""

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems: tuple[str, ...] = tuple(problems)
        super().__init__("invalid detectors config: " + "; ".join(self.problems))


@dataclass(frozen=True, slots=True)
class Finding:
    """One detector match. Carries a hash of the matched text, never the text."""

    detector_id: str
    kind: Kind
    mode: Mode
    path: str
    finding_hash: str
    signature: str = ""

    def to_dict(self) -> dict[str, str]:
        return {
            "detector_id": self.detector_id,
            "kind": self.kind,
            "mode": self.mode,
            "path": self.path,
            "finding_hash": self.finding_hash,
            "signature": self.signature,
        }


def strongest(findings: Iterable[Finding]) -> Mode | None:
    """The strongest mode among ``findings`` (deny > require_approval > report), or None."""
    best: Mode | None = None
    for finding in findings:
        if best is None or _RANK[finding.mode] > _RANK[best]:
            best = finding.mode
    return best


@dataclass(frozen=True, slots=True)
class _Signature:
    detector_id: str
    kind: Kind
    mode: Mode
    name: str
    regex: Any  # a compiled re2 pattern over UTF-8 bytes
    luhn: bool = False

    @property
    def prefilterable(self) -> bool:
        # \A, \z and turning multi-line off would not see piece boundaries in the joined text
        return _UNFILTERABLE.search(self.regex.pattern) is None


def _options(max_mem: int | None = None) -> Any:
    options = re2.Options()
    options.log_errors = False  # a tenant's bad pattern is a config error, not a log line
    if max_mem is not None:
        options.max_mem = max_mem
    return options


def _compile(pattern: str) -> Any:
    return re2.compile(pattern.encode("utf-8"), _options())


def _builtin_signatures(kind: str, mode: Mode) -> list[_Signature]:
    if kind == "cards":
        return [_Signature("cards", "cards", mode, "card_number", _compile(_DIGIT_RUN), True)]
    table = _SECRET_SIGNATURES if kind == "secrets" else _INJECTION_SIGNATURES
    return [_Signature(kind, kind, mode, name, _compile(p)) for name, p in table]  # type: ignore[arg-type]


def _custom_fields(item: Any) -> tuple[Any, Any, Any]:
    """(id, pattern, mode) from a CustomDetector-like object, a mapping or a 3-tuple."""
    if isinstance(item, Mapping):
        return item.get("id"), item.get("pattern"), item.get("mode", "deny")
    if hasattr(item, "pattern"):
        return getattr(item, "id", None), item.pattern, getattr(item, "mode", "deny")
    if isinstance(item, tuple | list) and len(item) == 3:
        return item[0], item[1], item[2]
    return None, None, None


def _check_custom(det_id: Any, pattern: Any, mode: Any, seen: set[str]) -> tuple[Any, list[str]]:
    """The compiled regex (or None) and the problems of one custom detector."""
    label = f"custom detector {det_id!r}"
    problems: list[str] = []
    if not isinstance(det_id, str) or not det_id:
        problems.append(f"{label}: expected a non-empty string id")
    elif det_id in seen or det_id in BUILTIN_KINDS or det_id == OVERSIZE:
        problems.append(f"{label}: id is already used or reserved")
    if mode not in MODES:
        problems.append(f"{label}: expected mode one of {', '.join(MODES)}, got {mode!r}")
    if not isinstance(pattern, str) or not pattern:
        problems.append(f"{label}: expected a non-empty string pattern")
        return None, problems
    if len(pattern) > MAX_PATTERN_LENGTH:
        problems.append(f"{label}: pattern is {len(pattern)} characters, max {MAX_PATTERN_LENGTH}")
        return None, problems
    try:
        regex = _compile(pattern)
    except re2.error as exc:
        reason = exc.args[0].decode("utf-8", "replace") if exc.args else "rejected"
        problems.append(f"{label}: RE2 rejects the pattern: {reason}")
        return None, problems
    if any(_matches_empty(regex, probe) for probe in _EMPTY_PROBES):
        problems.append(f"{label}: pattern matches empty text; it would flag everything")
        return None, problems
    if regex.programsize > MAX_PROGRAM_SIZE:
        problems.append(f"{label}: pattern compiles too large ({regex.programsize} > "
                        f"{MAX_PROGRAM_SIZE}); simplify its repetitions")
        return None, problems
    return regex, problems


def _matches_empty(regex: Any, probe: bytes) -> bool:
    return any(m.start() == m.end() for m in regex.finditer(probe))


class _Group:
    """Signatures scanned together over the same bytes: the built-ins, or the custom ones."""

    __slots__ = ("per_byte", "per_piece", "prefilter", "signatures", "unfiltered")

    def __init__(self, signatures: Iterable[_Signature], *, metered: bool) -> None:
        self.signatures: tuple[_Signature, ...] = tuple(signatures)
        # work units per byte and per string scanned; 0 means unmetered (the built-ins)
        self.per_byte = sum(s.regex.programsize for s in self.signatures) if metered else 0
        self.per_piece = CALL_COST * len(self.signatures) if metered else 0
        self.prefilter = _build_prefilter(s for s in self.signatures if s.prefilterable)
        self.unfiltered = tuple(s for s in self.signatures if self.prefilter is None or not s.prefilterable)

    def scan(self, pieces: list[tuple[str, bytes]], collector: _Collector) -> None:
        touched = self._touched(pieces)
        for index, (path, data) in enumerate(pieces):
            signatures = self.signatures if index in touched else self.unfiltered
            if signatures:
                _scan_text(path, data, signatures, collector)

    def _touched(self, pieces: list[tuple[str, bytes]]) -> set[int]:
        """Indexes of the pieces that may hold a match, from one pass over the joined text.

        A match of the union that starts or ends in a piece marks it; the search then resumes
        at the next unmarked piece, so the loop runs at most once per piece, and any piece
        with a real match is marked (a match spanning a separator only marks extra pieces).
        """
        if self.prefilter is None or not pieces:
            return set()
        starts, offset = [], 0
        for _, data in pieces:
            starts.append(offset)
            offset += len(data) + 1
        joined = b"\n".join(data for _, data in pieces)
        touched: set[int] = set()
        pos = 0
        while (match := self.prefilter.search(joined, pos)) is not None:
            first = bisect.bisect_right(starts, match.start()) - 1
            last = bisect.bisect_right(starts, max(match.start(), match.end() - 1)) - 1
            touched.update(range(first, last + 1))
            if last + 1 >= len(starts):
                break
            pos = starts[last + 1]
        return touched


    def within_budget(self, pieces: list[tuple[str, bytes]]) -> tuple[list[tuple[str, bytes]], str | None]:
        """The pieces this group may scan, and the pointer where it stops short of the rest."""
        if not self.per_byte:
            return pieces, None
        out: list[tuple[str, bytes]] = []
        work = CUSTOM_SCAN_WORK
        for path, data in pieces:
            work -= self.per_piece
            if work < 0:
                return out, path
            if len(data) * self.per_byte > work:
                out.append((path, data[: work // self.per_byte]))
                return out, path
            work -= len(data) * self.per_byte
            out.append((path, data))
        return out, None


class DetectorSet:
    """Compiled detectors for one policy bundle. Immutable and safe to share across threads."""

    __slots__ = ("_groups", "_signatures")

    def __init__(self, signatures: Iterable[_Signature] = ()) -> None:
        self._signatures: tuple[_Signature, ...] = tuple(signatures)
        builtin = [s for s in self._signatures if s.kind != "custom"]
        custom = [s for s in self._signatures if s.kind == "custom"]
        groups = (_Group(builtin, metered=False), _Group(custom, metered=True))
        self._groups = tuple(g for g in groups if g.signatures)

    @classmethod
    def from_config(
        cls, builtin: Mapping[str, str] | None = None, custom: Iterable[Any] = ()
    ) -> DetectorSet:
        """Compile ``builtin`` ({kind: mode}) and ``custom`` ((id, pattern, mode) items)."""
        problems: list[str] = []
        signatures: list[_Signature] = []
        for kind, mode in (builtin or {}).items():
            if kind not in BUILTIN_KINDS:
                problems.append(f"builtin detector {kind!r}: expected one of "
                                f"{', '.join(BUILTIN_KINDS)}")
            elif mode not in MODES:
                problems.append(f"builtin detector {kind!r}: expected mode one of "
                                f"{', '.join(MODES)}, got {mode!r}")
            elif mode != "off":
                signatures.extend(_builtin_signatures(kind, mode))  # type: ignore[arg-type]
        signatures.extend(cls._compile_custom(list(custom), problems))
        if problems:
            raise DetectorConfigError(problems)
        return cls(signatures)

    @classmethod
    def from_detectors_config(cls, config: Any) -> DetectorSet:
        """From a ``DetectorsConfig``-like object with ``builtin`` and ``custom``."""
        if config is None:
            return cls()
        return cls.from_config(getattr(config, "builtin", None), getattr(config, "custom", ()))

    @staticmethod
    def _compile_custom(items: list[Any], problems: list[str]) -> list[_Signature]:
        if len(items) > MAX_CUSTOM_DETECTORS:
            problems.append(f"expected at most {MAX_CUSTOM_DETECTORS} custom detectors, "
                            f"got {len(items)}")
            return []
        seen: set[str] = set()
        compiled: list[_Signature] = []
        total = 0
        for item in items:
            det_id, pattern, mode = _custom_fields(item)
            regex, found = _check_custom(det_id, pattern, mode, seen)
            problems.extend(found)
            if isinstance(det_id, str):
                seen.add(det_id)
            if regex is not None and not found and mode != "off":
                compiled.append(_Signature(det_id, "custom", mode, det_id, regex))
                total += regex.programsize
        if total > MAX_CUSTOM_PROGRAM_SIZE:
            problems.append(f"custom detectors compile to {total} RE2 instructions together, max "
                            f"{MAX_CUSTOM_PROGRAM_SIZE}; use fewer or simpler patterns")
        return compiled

    @property
    def enabled(self) -> bool:
        """Whether any detector is on."""
        return bool(self._signatures)

    @property
    def detector_ids(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(s.detector_id for s in self._signatures))

    @property
    def custom_scan_bytes(self) -> int:
        """Bytes of one long string the custom detectors scan per action (module docstring)."""
        group = next((g for g in self._groups if g.per_byte), None)
        if group is None:
            return MAX_SCAN_BYTES
        return min(MAX_SCAN_BYTES, (CUSTOM_SCAN_WORK - group.per_piece) // group.per_byte)

    def scan(self, details: str | None, payload: Any = None, context: Any = None, *,
             salt: str | None = None) -> list[Finding]:
        """Findings over ``details``, ``payload`` and ``context``; the built-ins' in walk
        order, then the custom detectors'. ``salt`` keys each ``finding_hash``."""
        if not self._groups:
            return []
        pieces, cut_at, keys = _collect(details, payload, context)
        collector = _Collector(salt)
        empty = collector.hash(b"")
        for group in self._groups:
            mine, short_at = group.within_budget(pieces)
            group.scan(mine, collector)
            if short_at is not None:
                collector.add(Finding(OVERSIZE, OVERSIZE, "deny", short_at, empty, CUSTOM_BUDGET))
        if cut_at is not None:
            collector.add(Finding(OVERSIZE, OVERSIZE, "deny", cut_at, empty, OVERSIZE))
        return _redact_keys(collector.findings, keys)


def _scan_text(path: str, data: bytes, signatures: tuple[_Signature, ...], collector: _Collector) -> None:
    for sig in signatures:
        if collector.saturated(sig.mode):
            continue
        for match in sig.regex.finditer(data):
            if match.start() == match.end():
                break  # empty-width matches carry no text; config rejects such patterns
            for start, end in _card_spans(data, match) if sig.luhn else [match.span()]:
                text_hash = collector.hash(data[start:end])
                collector.add(Finding(sig.detector_id, sig.kind, sig.mode, path, text_hash, sig.name))
            collector.matches += 1
            if collector.saturated(sig.mode):
                break


def _build_prefilter(signatures: Iterable[_Signature]) -> Any:
    """One RE2 union of the patterns, multi-line so ``^``/``$`` also fit piece boundaries."""
    parts = [b"(?:" + sig.regex.pattern + b")" for sig in signatures]
    if not parts:
        return None
    try:
        return re2.compile(b"(?m)" + b"|".join(parts), _options(_PREFILTER_MAX_MEM))
    except re2.error:
        return None  # too big together: scan every piece with every signature instead


def _collect(
    details: str | None, payload: Any, context: Any
) -> tuple[list[tuple[str, bytes]], str | None, dict[str, str]]:
    """(pointer, UTF-8 text) for every string, key and integer, depth first, keys sorted,
    up to ``MAX_SCAN_BYTES`` of text; the pointer where text was cut, if it was; and for
    each key's piece (pointer ``<object>/~k<n>``) the pointer of its member."""
    pieces: list[tuple[str, bytes]] = []
    keys: dict[str, str] = {}
    budget = MAX_SCAN_BYTES
    stack: list[tuple[str, Any]] = [("/context", context), ("/payload", payload)]
    stack.append(("/details", details))
    while stack:
        path, node = stack.pop()
        if isinstance(node, Mapping):
            children = []
            for n, key in enumerate(_sorted_keys(node)):
                text = str(key)
                child = f"{path}/{_pointer_token(text)}"
                marker = f"{path}/~k{n}"  # the key's own piece: its text is not in its pointer
                keys[marker] = child
                key_text = _encode(text)
                if len(key_text) > budget:
                    pieces.append((marker, key_text[:budget]))
                    return pieces, marker, keys
                budget -= len(key_text)
                pieces.append((marker, key_text))
                children.append((child, node[key]))
            stack.extend(reversed(children))
            continue
        if isinstance(node, list | tuple):
            stack.extend(reversed([(f"{path}/{i}", item) for i, item in enumerate(node)]))
            continue
        data = _scalar_text(node)
        if data is None:
            continue
        if len(data) > budget:
            pieces.append((path, data[:budget]))
            return pieces, path, keys
        budget -= len(data)
        pieces.append((path, data))
    return pieces, None, keys


def _redact_keys(findings: list[Finding], keys: dict[str, str]) -> list[Finding]:
    """Every finding's path with each matched key written ``~k<n>`` (module docstring)."""
    matched = {keys[f.path]: f.path.rsplit("/", 1)[1] for f in findings if f.path in keys}
    if not matched:
        return findings
    out = []
    for finding in findings:
        real, shown = "", ""
        for token in finding.path.split("/")[1:]:
            real += "/" + token
            shown += "/" + matched.get(real, token)
        out.append(replace(finding, path=shown))
    return out


def _sorted_keys(node: Mapping[Any, Any]) -> list[Any]:
    try:
        return sorted(node)
    except TypeError:  # mixed key types (not JSON, but a Mapping may hold them)
        return sorted(node, key=str)


def _scalar_text(node: Any) -> bytes | None:
    """The text of a string or integer (a card number may be sent as a number), else None."""
    if isinstance(node, str):
        return _encode(node)
    if isinstance(node, int) and not isinstance(node, bool):
        return str(node).encode("ascii")
    return None


class _Collector:
    """De-duplicates findings and caps their number without weakening ``strongest``."""

    def __init__(self, salt: str | None = None) -> None:
        self._key = salt.encode("utf-8") if salt is not None else None
        self.findings: list[Finding] = []
        self.matches = 0
        self._seen: set[Finding] = set()
        self._best = 0

    def hash(self, matched: bytes) -> str:
        """``finding_hash`` of matched bytes (module docstring)."""
        if self._key is None:
            return hashlib.sha256(matched).hexdigest()
        return hmac.new(self._key, matched, hashlib.sha256).hexdigest()

    def saturated(self, mode: str) -> bool:
        """Past ``MAX_MATCHES``, a match of ``mode`` can no longer change the outcome."""
        return self.matches >= MAX_MATCHES and _RANK[mode] <= self._best

    def add(self, finding: Finding) -> None:
        if finding in self._seen:
            return
        rank = _RANK[finding.mode]
        if len(self.findings) >= MAX_FINDINGS and rank <= self._best:
            return
        self._seen.add(finding)
        self.findings.append(finding)
        self._best = max(self._best, rank)


def _pointer_token(key: str) -> str:
    if "~" not in key and "/" not in key:
        return key
    return key.replace("~", "~0").replace("/", "~1")


def _encode(text: str) -> bytes:
    # surrogatepass: JSON may carry lone surrogates ("\ud800"); they must not crash a scan.
    return text.encode("utf-8", "surrogatepass")


def _is_word_byte(data: bytes, index: int) -> bool:
    if index < 0 or index >= len(data):
        return False
    byte = data[index]
    return chr(byte).isalnum() if byte < 128 else False


def _card_spans(data: bytes, match: Any) -> list[tuple[int, int]]:
    """Spans of card numbers inside one digit run: whole groups only, network and Luhn ok."""
    run_start, run_end = match.span()
    if _is_word_byte(data, run_start - 1) or _is_word_byte(data, run_end):
        return []
    groups = _digit_groups(data, run_start, run_end)
    spans: list[tuple[int, int]] = []
    i = 0
    while i < len(groups):
        hit = _card_from(groups, i)
        if hit is None:
            i += 1
            continue
        j = hit
        spans.append((groups[i][0], groups[j][1]))
        i = j + 1
    return spans


def _digit_groups(data: bytes, start: int, end: int) -> list[tuple[int, int, bytes]]:
    groups: list[tuple[int, int, bytes]] = []
    pos = start
    while pos < end:
        stop = pos
        while stop < end and 48 <= data[stop] <= 57:
            stop += 1
        groups.append((pos, stop, data[pos:stop]))
        pos = stop + 1  # skip the single separator
    return groups


def _card_from(groups: list[tuple[int, int, bytes]], i: int) -> int | None:
    """The last group index of the longest card number starting at group ``i``."""
    digits = ""
    best: int | None = None
    for j in range(i, len(groups)):
        digits += groups[j][2].decode("ascii")
        if len(digits) > 19:
            break
        if len(digits) >= 13 and _is_card_number(digits):
            best = j
    return best


def _is_card_number(digits: str) -> bool:
    return _network(digits) is not None and _luhn_ok(digits)


def _network(digits: str) -> str | None:
    for name, ranges, lengths in _CARD_NETWORKS:
        if len(digits) not in lengths:
            continue
        for low, high, width in ranges:
            if low <= int(digits[:width]) <= high:
                return name
    return None


def _luhn_ok(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if index % 2 == 1:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0
