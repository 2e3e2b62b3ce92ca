"""Verifying an audit export offline (``warrantor verify --export FILE --trust TRUST.json``).

The export (``GET /v1/export``, ``service/recordkeeping/export.py``) is JSON Lines: ``trust``, ``range``,
one ``record`` per record sequence number, ``open_action`` lines, and a signed ``manifest``.
The auditor's own trust bundle (``--trust``) is what counts: the export's ``trust`` line is
believed only as far as ``--trust`` vouches for it (pinning, ``warrantor.verify.trust``), so
a key rotation in between is followed, a foreign key is not.

Checks, each reported:

- ``trust``: the export's trust bundle is the auditor's, or follows from it by signed
  rotations.
- ``records``: every record line verifies as a proof bundle (envelope signature, key
  validity, subject, inclusion in the range line's checkpoint, checkpoint signature, RFC
  3161 token, witnesses), is of the tenant, and carries inside its signed statement the
  sequence number the line claims; an erasure receipt's subject is ``erasure:<id>`` with the
  digest of its list. An action on its final receipt must fit it: the receipt and the
  warrant (itself a verified proof bundle) sign the action's intent digest, the committed
  intent hashes to it, and details still present match their salted commitments
  (``evidence/commitments.py``); erased details are reported as erased, not as missing.
- ``completeness``: the records are exactly ``first_sequence`` .. ``last_sequence``, each once,
  in order. A number that is missing, or whose line fails a check, is named.
- ``manifest``: the last line is a statement signed by a trusted key (``export:v1``, valid
  when issued) stating the same tenant, period, range and counts, and the sha256 of every
  line before it, byte for byte: a line removed, added, reordered or edited anywhere (an
  open action included) fails it.

Memory does not grow with the export: each line is checked and dropped; only the numbers
found missing or invalid are kept (as ranges). Nothing is read but the file and the trust
bundle: no network, no clock.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from warrantor.evidence import jsontext
from warrantor.evidence.canonical import digest
from warrantor.evidence.commitments import COMMITMENTS, disclosure_problems, split_intent
from warrantor.evidence.dsse import Envelope, verify_envelope
from warrantor.evidence.proofs import ProofBundle, TrustBundle
from warrantor.evidence.statement import ERASURE_V1, EXPORT_V1, HOLD_V1, RECEIPT_V1, WARRANT_V1
from warrantor.verify.verifier import Report, VerifyCache, verify_bundle

FORMAT = "warrantor-export/v1"
PREDICATES = {"receipt": RECEIPT_V1, "hold": HOLD_V1, "erasure": ERASURE_V1}
MAX_PROBLEMS = 200  # problems kept in the report; the rest are counted
CHECKS = ("trust", "records", "completeness", "open_actions", "manifest")

Progress = Callable[[int, int], None]  # (records checked, records expected)


@dataclass
class ExportReport:
    tenant_id: str | None = None
    period: tuple[str | None, str | None] = (None, None)
    first: int = 0
    last: int = -1
    checkpoint_size: int | None = None
    checks: dict[str, tuple[bool, str]] = field(default_factory=dict)
    verified: int = 0
    erased_actions: int = 0
    open_actions: int = 0
    invalid: list[tuple[int, int]] = field(default_factory=list)  # missing or failing numbers, as ranges
    problems: list[str] = field(default_factory=list)
    more_problems: int = 0

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(ok for ok, _ in self.checks.values())

    def ordered(self) -> list[tuple[str, bool, str]]:
        rank = {name: i for i, name in enumerate(CHECKS)}
        return [(n, ok, d) for n, (ok, d) in sorted(self.checks.items(), key=lambda c: rank.get(c[0], len(rank)))]

    def problem(self, text: str) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(text)
        else:
            self.more_problems += 1

    def mark_invalid(self, low: int, high: int | None = None) -> None:
        high = low if high is None else high
        if self.invalid and self.invalid[-1][0] <= low <= self.invalid[-1][1] + 1:
            self.invalid[-1] = (self.invalid[-1][0], max(self.invalid[-1][1], high))
            return
        self.invalid.append((low, high))
        if len(self.invalid) > 1 and self.invalid[-2][0] > low:  # a repeated or late line: rare
            merged: list[tuple[int, int]] = []
            for a, b in sorted(self.invalid):
                if merged and a <= merged[-1][1] + 1:
                    merged[-1] = (merged[-1][0], max(merged[-1][1], b))
                else:
                    merged.append((a, b))
            self.invalid = merged

    def missing_text(self) -> str:
        return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in self.invalid)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok, "tenant_id": self.tenant_id, "from": self.period[0], "to": self.period[1],
            "first_sequence": self.first, "last_sequence": self.last, "checkpoint_size": self.checkpoint_size,
            "records_verified": self.verified, "erased_actions": self.erased_actions,
            "open_actions": self.open_actions,
            "missing_or_invalid": [[a, b] for a, b in self.invalid],
            "checks": [{"name": n, "ok": ok, "detail": d} for n, ok, d in self.ordered()],
            "problems": self.problems, "more_problems": self.more_problems,
        }


def format_export_report(report: ExportReport) -> str:
    head = (f"export of tenant {report.tenant_id} from {report.period[0] or 'the beginning'} to {report.period[1]}: "
            f"records {report.first}..{report.last}, checkpoint size {report.checkpoint_size}")
    width = max((len(n) for n in report.checks), default=0)
    lines = [head]
    lines += [f"{'PASS' if ok else 'FAIL'}  {name.ljust(width)}  {detail}" for name, ok, detail in report.ordered()]
    lines += [f"  {p}" for p in report.problems]
    if report.more_problems:
        lines.append(f"  ... and {report.more_problems} more problems")
    lines.append("VERIFIED" if report.ok else "NOT VERIFIED")
    return "\n".join(lines) + "\n"


class _State:
    def __init__(self, trust: TrustBundle, report: ExportReport, progress: Progress | None) -> None:
        self.pinned = trust
        self.offered: TrustBundle | None = None
        self.report = report
        self.progress = progress
        self.cache = VerifyCache()
        self.lines = hashlib.sha256()
        self.count = 0
        self.records = 0
        self.expected = 0
        self.checkpoint: tuple[int, str, bytes | None] | None = None
        self.range: dict[str, Any] = {}
        self.manifest: dict[str, Any] | None = None


def verify_export(lines: Iterable[bytes], trust: TrustBundle, *, progress: Progress | None = None) -> ExportReport:
    """Check an export line by line (module rules); ``progress(done, total)`` after each record."""
    report = ExportReport()
    st = _State(trust, report, progress)
    for number, raw in enumerate(lines, start=1):
        if st.manifest is not None:
            report.problem(f"line {number}: expected nothing after the manifest")
            st.manifest = {"late": True}
            continue
        try:
            doc = jsontext.loads(raw, f"line {number}")
            if not isinstance(doc, dict):
                raise ValueError("expected a JSON object")
        except ValueError as exc:
            report.problem(f"line {number}: not a JSON object: {exc}")
            _count(st, raw)
            continue
        kind = doc.get("type")
        if kind == "manifest":
            _manifest(st, doc)
            continue
        if (number == 1 and kind != "trust") or (number == 2 and kind != "range"):
            report.problem(f"line {number}: expected the {'trust' if number == 1 else 'range'} line, got {kind!r}")
        if kind == "trust":
            _trust_line(st, doc)
        elif kind == "range":
            _range_line(st, doc)
        elif kind == "record":
            _record_line(st, doc)
        elif kind == "open_action":
            _open_action(st, doc)
        else:
            report.problem(f"line {number}: unknown line type {kind!r}")
        _count(st, raw)
    _finish(st)
    return report


def _count(st: _State, raw: bytes) -> None:
    st.lines.update(raw)
    st.count += 1


# -- the header lines ----------------------------------------------------------------------
def _trust_line(st: _State, doc: dict[str, Any]) -> None:
    try:
        st.offered = TrustBundle.from_dict(doc.get("trust") or {})
    except (ValueError, TypeError, KeyError) as exc:
        st.report.checks["trust"] = (False, f"the export's trust bundle cannot be read: {exc}")
        return
    if st.offered == st.pinned:
        st.report.checks["trust"] = (True, "the export's trust bundle is yours (--trust)")
        return
    pin = st.cache.pin(st.pinned, st.offered)
    st.report.checks["trust"] = (pin.ok, pin.detail() or "the export's trust bundle follows from yours")


def _range_line(st: _State, doc: dict[str, Any]) -> None:
    r = st.report
    try:
        first, last = int(doc["first_sequence"]), int(doc["last_sequence"])
        cp = doc["checkpoint"]
        token = cp.get("timestamp_token")
        st.checkpoint = (int(cp["size"]), str(cp["note"]), base64.b64decode(token, validate=True) if token else None)
    except (KeyError, TypeError, ValueError, binascii.Error) as exc:
        r.problem(f"range line unreadable: {exc}")
        return
    if doc.get("format") != FORMAT or first < 1 or last < first - 1:
        r.problem(f"range line: expected format {FORMAT} and 1 <= first_sequence <= last_sequence + 1")
    st.range = doc
    r.tenant_id, r.period, r.first, r.last = doc.get("tenant_id"), (doc.get("from"), doc.get("to")), first, last
    r.checkpoint_size = st.checkpoint[0]
    st.expected = first


# -- records ---------------------------------------------------------------------------------
def _bundle(st: _State, doc: dict[str, Any]) -> ProofBundle:
    if st.checkpoint is None:
        raise ValueError("no readable range line with the checkpoint before it")
    size, note, token = st.checkpoint
    proof = tuple(base64.b64decode(h, validate=True) for h in doc["inclusion_proof"])
    return ProofBundle(Envelope.from_dict(doc["envelope"]), int(doc["log_index"]), size, proof, note, token)


def _verified(st: _State, bundle: ProofBundle, *, subject_ok: Callable[[dict[str, Any]], str | None] | None = None,
              ) -> tuple[dict[str, Any], list[str]]:
    """The statement and what failed: every check of the bundle (the subject check replaced
    by ``subject_ok`` for statements not about one action)."""
    offered = st.offered if st.offered is not None and st.offered != st.pinned else None
    report: Report = verify_bundle(bundle, offered or st.pinned, pinned=st.pinned if offered else None,
                                   cache=st.cache)
    statement = bundle.envelope.statement()
    failed = [f"{c.name}: {c.detail}" for c in report.checks
              if not c.ok and not (subject_ok is not None and c.name == "subject_digest")]
    if subject_ok is not None and (why := subject_ok(statement)):
        failed.append(f"subject_digest: {why}")
    return statement, failed


def _erasure_subject(statement: dict[str, Any]) -> str | None:
    predicate = statement.get("predicate", {})
    subject = (statement.get("subject") or [{}])[0]
    if subject.get("name") != f"erasure:{predicate.get('erasure_id')}":
        return f"expected the subject erasure:{predicate.get('erasure_id')}, got {subject.get('name')!r}"
    if subject.get("digest", {}).get("sha256") != digest(predicate.get("erased")):
        return "expected the subject digest to be the digest of the erased list"
    return None


def _record_line(st: _State, doc: dict[str, Any]) -> None:
    r = st.report
    seq = doc.get("sequence")
    if not isinstance(seq, int) or isinstance(seq, bool):
        r.problem(f"a record line without a sequence number: {str(doc)[:80]}")
        return
    if seq < st.expected:
        r.problem(f"sequence {seq}: out of order or given twice (expected {st.expected})")
        r.mark_invalid(seq)
        return
    if seq > st.expected:
        r.mark_invalid(st.expected, seq - 1)
        r.problem(f"sequence {st.expected}{'' if seq - 1 == st.expected else f'-{seq - 1}'}: missing")
    st.expected = seq + 1
    st.records += 1
    problems = _record_problems(st, doc, seq)
    if problems:
        r.mark_invalid(seq)
        for p in problems:
            r.problem(f"sequence {seq}: {p}")
    else:
        r.verified += 1
    if st.progress is not None:
        st.progress(st.records, max(r.last - r.first + 1, st.records))


def _record_problems(st: _State, doc: dict[str, Any], seq: int) -> list[str]:
    kind = doc.get("kind")
    if kind not in PREDICATES:
        return [f"expected a receipt, hold or erasure record, got {kind!r}"]
    try:
        bundle = _bundle(st, doc)
        statement, problems = _verified(st, bundle, subject_ok=_erasure_subject if kind == "erasure" else None)
    except (ValueError, TypeError, KeyError, binascii.Error) as exc:
        return [f"the record cannot be read: {exc}"]
    predicate = statement.get("predicate") or {}
    if statement.get("predicateType") != PREDICATES[kind]:
        problems.append(f"expected predicate {PREDICATES[kind]}, got {statement.get('predicateType')!r}")
    if predicate.get("sequence") != seq:
        problems.append(f"the signed statement says sequence {predicate.get('sequence')!r}")
    if predicate.get("tenant_id") != st.report.tenant_id:
        problems.append(f"the signed statement is of tenant {predicate.get('tenant_id')!r}")
    if predicate.get(f"{kind}_id") != doc.get("evidence_id"):
        problems.append(f"the line says {doc.get('evidence_id')!r}, the statement {predicate.get(f'{kind}_id')!r}")
    if kind != "erasure" and predicate.get("action_id") != doc.get("action_id"):
        problems.append(f"the statement is about action {predicate.get('action_id')!r}, the line "
                        f"{doc.get('action_id')!r}")
    action = doc.get("action")
    if isinstance(action, dict):
        subject = (statement.get("subject") or [{}])[0].get("digest", {}).get("sha256")
        problems += _action_problems(st, action, subject, predicate.get("action_id"))
        problems += _warrant_link(action, predicate.get("warrant_digest"))
    return problems


def _warrant_link(action: dict[str, Any], warrant_digest: Any) -> list[str]:
    """A receipt that names a warrant (its envelope digest) must come with that warrant."""
    if not warrant_digest:
        return []
    warrant = action.get("warrant")
    if not isinstance(warrant, dict):
        return [f"the receipt names warrant {str(warrant_digest)[:16]}..., the line has none"]
    try:
        got = hashlib.sha256(Envelope.from_dict(warrant["envelope"]).canonical_bytes()).hexdigest()
    except (ValueError, TypeError, KeyError) as exc:
        return [f"the warrant cannot be read: {exc}"]
    return [] if got == warrant_digest else ["the warrant is not the one the receipt names"]


def _action_problems(st: _State, action: dict[str, Any], signed_digest: str | None, action_id: Any) -> list[str]:
    problems = []
    if action.get("action_id") != action_id:
        problems.append(f"the action block is {action.get('action_id')!r}, the receipt is about {action_id!r}")
    committed = action.get("committed_intent")
    if not isinstance(committed, dict):
        return [*problems, "the action has no committed intent"]
    try:
        computed = digest(committed)
    except ValueError as exc:
        return [*problems, f"the committed intent cannot be canonicalized: {exc}"]
    if computed != action.get("intent_digest") or computed != signed_digest:
        problems.append(f"the committed intent hashes to {computed}, the evidence signs {signed_digest}")
    intent, salt = action.get("intent"), action.get("intent_salt")
    if action.get("erased_at"):
        st.report.erased_actions += 1
        if intent is not None or salt is not None:
            problems.append("the action says its details were erased, yet carries details")
    elif not isinstance(intent, dict) or not isinstance(salt, str):
        problems.append("the action's details are neither given (intent and intent_salt) nor said to be erased")
    else:
        kept, values = split_intent(intent)
        if kept != {k: v for k, v in committed.items() if k != COMMITMENTS}:
            problems.append("the intent differs from the committed intent outside the erasable fields")
        problems += [f"intent {p}" for p in disclosure_problems(committed, values, salt)]
    warrant = action.get("warrant")
    if isinstance(warrant, dict):
        problems += _warrant_problems(st, warrant, committed, action_id)
    return problems


def _warrant_problems(st: _State, warrant: dict[str, Any], committed: dict[str, Any], action_id: Any) -> list[str]:
    try:
        statement, failed = _verified(st, _bundle(st, warrant))
    except (ValueError, TypeError, KeyError, binascii.Error) as exc:
        return [f"the warrant cannot be read: {exc}"]
    problems = [f"warrant {f}" for f in failed]
    predicate = statement.get("predicate") or {}
    if statement.get("predicateType") != WARRANT_V1 or predicate.get("intent") != committed:
        problems.append("the warrant does not sign this action's committed intent")
    if predicate.get("action_id") != action_id or predicate.get("tenant_id") != st.report.tenant_id:
        problems.append("the warrant is not this action's")
    return problems


def _open_action(st: _State, doc: dict[str, Any]) -> None:
    st.report.open_actions += 1
    action = doc.get("action")
    if not isinstance(action, dict):
        st.report.problem("an open_action line without an action")
        return
    warrant = action.get("warrant")
    subject = None
    if isinstance(warrant, dict):
        try:
            subject = Envelope.from_dict(warrant["envelope"]).statement()["subject"][0]["digest"]["sha256"]
        except (ValueError, TypeError, KeyError, IndexError) as exc:
            st.report.problem(f"open action {action.get('action_id')}: the warrant cannot be read: {exc}")
            return
    for p in _action_problems(st, action, subject or action.get("intent_digest"), action.get("action_id")):
        st.report.problem(f"open action {action.get('action_id')}: {p}")
        st.report.checks.setdefault("open_actions", (False, "an open action does not verify"))


# -- the manifest ---------------------------------------------------------------------------
def _manifest(st: _State, doc: dict[str, Any]) -> None:
    st.manifest = doc
    r = st.report
    try:
        envelope = Envelope.from_dict(doc["envelope"])
        statement = envelope.statement()
        predicate = statement["predicate"]
        subject = statement["subject"][0]
        issued = datetime.fromisoformat(str(predicate["issued_at"]).replace("Z", "+00:00"))
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        r.checks["manifest"] = (False, f"the manifest cannot be read: {exc}")
        return
    trust = st.pinned if st.offered is None or st.offered == st.pinned else st.cache.pin(st.pinned, st.offered).trust
    key = verify_envelope(envelope, trust.signing_keys)
    expected = {"first_sequence": r.first, "last_sequence": r.last, "records": st.records,
                "open_actions": r.open_actions, "lines": st.count, "checkpoint_size": r.checkpoint_size,
                "tenant_id": r.tenant_id, "from": r.period[0], "to": r.period[1], "format": FORMAT}
    wrong = [f"{k} {predicate.get(k)!r} (the file has {v!r})" for k, v in expected.items() if predicate.get(k) != v]
    failures = []
    if key is None:
        failures.append("no trusted key signed it")
    elif not key.valid_at(issued):
        failures.append(f"signed by key {key.keyid[:16]} outside its validity")
    if statement.get("predicateType") != EXPORT_V1 or subject.get("name") != f"export:{r.tenant_id}":
        failures.append("it is not an export manifest of this tenant")
    if subject.get("digest", {}).get("sha256") != st.lines.hexdigest():
        failures.append("the lines before it are not the ones it signed (a line was removed, added, moved or edited)")
    if wrong:
        failures.append("it states " + ", ".join(wrong))
    r.checks["manifest"] = (not failures, "; ".join(failures) if failures else
                            f"signed by key {key.keyid[:16] if key else '?'}: {st.count} lines, "
                            f"records {r.first}..{r.last}")


def _finish(st: _State) -> None:
    r = st.report
    r.checks.setdefault("trust", (False, "the export has no trust line"))
    if not st.range:
        r.checks["records"] = (False, "the export has no readable range line")
    if st.range and st.expected <= r.last:
        r.mark_invalid(st.expected, r.last)
        r.problem(f"sequence {st.expected}{'' if st.expected == r.last else f'-{r.last}'}: missing")
    total = r.last - r.first + 1
    if st.range:
        r.checks["records"] = (r.verified == st.records,
                               f"{r.verified} of {st.records} record lines verify ({r.erased_actions} actions with "
                               f"erased details, {r.open_actions} open actions not yet recorded)")
    r.checks["completeness"] = (
        bool(st.range) and not r.invalid and r.verified == total,
        f"all {total} records of {r.first}..{r.last} present and valid" if not r.invalid and st.range
        else f"missing or invalid sequence numbers: {r.missing_text() or 'unknown'}")
    r.checks.setdefault("open_actions", (True, f"{r.open_actions} open actions check out"))
    if st.manifest is None:
        r.checks["manifest"] = (False, "the manifest line is missing: the export is truncated")
    elif st.manifest.get("late"):
        r.checks["manifest"] = (False, "lines follow the manifest")


def read_lines(data: Iterable[bytes]) -> Iterable[bytes]:
    """The lines of an export file opened in binary mode, each with its newline."""
    for line in data:
        if line.strip():
            yield line


def dumps(report: ExportReport) -> str:
    return json.dumps(report.to_dict(), indent=2) + "\n"
