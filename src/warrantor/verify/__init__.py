"""Offline verification of Warrantor evidence (docs/offline-verification.md).

Imports ``warrantor.evidence`` only: no server, store, HTTP or framework code, so an
auditor can verify a proof bundle with nothing but the bundle and a trust bundle.
"""

from warrantor.verify.verifier import (
    Check,
    CheckResult,
    Replay,
    Report,
    VerifyCache,
    format_report,
    verify_bundle,
    verify_bundles,
    verify_envelope_only,
)

__all__ = [
    "Check",
    "CheckResult",
    "Replay",
    "Report",
    "VerifyCache",
    "format_report",
    "verify_bundle",
    "verify_bundles",
    "verify_envelope_only",
]
