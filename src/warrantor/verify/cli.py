"""``warrantor verify BUNDLE... --trust TRUST.json [--pin PINNED.json] [--json]``: the auditor's command.

BUNDLE is a JSON proof bundle or C2SP tlog-proof text. Several bundles are verified in one
run that checks each distinct checkpoint, time-stamp token and pinning once
(``warrantor.verify.verifier.VerifyCache``); each gets its own report, and the exit status
covers them all. With ``--pin``, TRUST (a server's
current ``GET /v1/trust``, say) is believed only as far as signed rotation statements lead
from the keys of PINNED, the bundle the auditor obtained earlier. Exit status: 0 when every check
of every bundle passes, 1 when any check fails, 2 when an input cannot be read or parsed (JSON nested deeper than
64 levels included: the parsers refuse it before they recurse, ``warrantor.evidence.jsontext``,
so a hostile file is reported, never a RecursionError). The main CLI
dispatches ``warrantor verify ...`` here with the arguments after ``verify``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from warrantor.evidence.proofs import TLOG_PROOF_HEADER, ProofBundle, TrustBundle
from warrantor.verify.verifier import Report, VerifyCache, format_report, verify_bundle

EXIT_OK, EXIT_FAILED, EXIT_UNREADABLE = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="warrantor verify",
        description="Verify a Warrantor proof bundle offline, check by check.",
    )
    parser.add_argument(
        "bundle", type=Path, nargs="+", help="proof bundle(s): JSON or C2SP tlog-proof text"
    )
    parser.add_argument(
        "--trust", type=Path, required=True, help="trust bundle JSON (log key, signing keys, TSA)"
    )
    parser.add_argument(
        "--pin", type=Path, default=None,
        help="a trust bundle obtained earlier: keys in --trust count only if signed rotations lead to them",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    return parser


def load_bundle(path: Path) -> ProofBundle:
    text = path.read_text(encoding="utf-8")
    if text.startswith(TLOG_PROOF_HEADER):
        return ProofBundle.from_tlog_proof_text(text)
    return ProofBundle.from_json(text)


def main(argv: Sequence[str] | None = None, *, out: TextIO | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = out or sys.stdout
    try:
        bundles = [load_bundle(path) for path in args.bundle]
        trust = TrustBundle.from_json(args.trust.read_text(encoding="utf-8"))
        pinned = TrustBundle.from_json(args.pin.read_text(encoding="utf-8")) if args.pin else None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        print(f"warrantor verify: cannot read input: {exc}", file=sys.stderr)
        return EXIT_UNREADABLE
    cache = VerifyCache()
    reports = [verify_bundle(bundle, trust, pinned=pinned, cache=cache) for bundle in bundles]
    _write(out, list(zip(args.bundle, reports, strict=True)), as_json=args.json)
    return EXIT_OK if all(r.ok for r in reports) else EXIT_FAILED


def _write(out: TextIO, results: list[tuple[Path, Report]], *, as_json: bool) -> None:
    """One bundle: its report, as always. Several: each under its file name, then a total."""
    if len(results) == 1:
        report = results[0][1]
        out.write(json.dumps(report.to_dict(), indent=2) + "\n" if as_json else format_report(report))
        return
    passed = sum(r.ok for _, r in results)
    if as_json:
        doc = {
            "ok": passed == len(results),
            "bundles": [{"bundle": str(path), **report.to_dict()} for path, report in results],
        }
        out.write(json.dumps(doc, indent=2) + "\n")
        return
    for path, report in results:
        out.write(f"== {path}\n{format_report(report)}")
    out.write(f"{passed} of {len(results)} bundles VERIFIED\n")


if __name__ == "__main__":
    sys.exit(main())
