"""``warrantor verify --export FILE --trust TRUST.json [--json]``: an audit export, offline.

Reads the file line by line (``warrantor.verify.export``), drawing a progress bar on stderr
when it is a terminal. Exit status as for bundles: 0 verified, 1 a check failed (the report
names each missing or invalid record sequence number), 2 the input cannot be read.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TextIO

from warrantor.cli.progress import Progress
from warrantor.evidence.proofs import TrustBundle
from warrantor.verify.cli import EXIT_FAILED, EXIT_OK, EXIT_UNREADABLE
from warrantor.verify.export import format_export_report, read_lines, verify_export


def run(args: argparse.Namespace, *, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out or sys.stdout
    path = Path(args.export)
    try:
        trust = TrustBundle.from_json(Path(args.trust).read_text(encoding="utf-8"))
        handle = path.open("rb")
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        print(f"warrantor verify: cannot read input: {exc}", file=sys.stderr)
        return EXIT_UNREADABLE
    with handle, Progress(1, f"verifying {path.name}", stream=err) as bar:
        def progress(done: int, total: int) -> None:
            if done % 100 == 0 or done == total:  # redrawing costs more than checking a record
                bar.total, bar.done = max(total, 1), min(done, max(total, 1))
                bar.note(f"record {done}")

        report = verify_export(read_lines(handle), trust, progress=progress)
    out.write(json.dumps(report.to_dict(), indent=2) + "\n" if args.json else format_export_report(report))
    return EXIT_OK if report.ok else EXIT_FAILED
