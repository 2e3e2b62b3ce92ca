"""Pinning: accept a newer trust bundle only as far as the pinned one vouches for it.

An auditor keeps the trust bundle they first obtained out of band (the pin). A newer
bundle, say a server's ``GET /v1/trust`` after a key rotation, is not believed as a whole:

- its signing keys are trusted only when a chain of rotation statements in its
  ``key_history``, each signed by a key already trusted, reaches them; the validity of
  every key comes from those statements (``warrantor.evidence.keyhistory``);
- its log origin, log key and TSA root must equal the pinned ones (they do not rotate),
  and so must its witness keys and witness quorum: a server cannot lower the quorum or
  swap a witness for one it controls under an auditor who pinned them.

Anything else is a problem, reported and never trusted.
"""

from __future__ import annotations

from dataclasses import dataclass

from warrantor.evidence.keyhistory import follow_history
from warrantor.evidence.proofs import TrustBundle


@dataclass(frozen=True)
class PinnedTrust:
    """The trust to verify with, and why any part of the offered bundle was not accepted."""

    trust: TrustBundle
    problems: tuple[str, ...]
    new_keys: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems

    def detail(self) -> str:
        if self.problems:
            return "; ".join(self.problems)
        if self.new_keys:
            return "followed signed rotations to " + ", ".join(k[:16] for k in self.new_keys)
        return "the bundle adds no key to the pinned trust"


def pin_trust(pinned: TrustBundle, offered: TrustBundle) -> PinnedTrust:
    result = follow_history(pinned.signing_keys, offered.key_history, offered.signing_keys)
    problems = list(result.problems)
    if (offered.log_origin, offered.log_verifier) != (pinned.log_origin, pinned.log_verifier):
        problems.append("the log origin or log key differs from the pinned one")
    if offered.tsa_root_pem != pinned.tsa_root_pem:
        problems.append("the TSA root differs from the pinned one")
    if (set(offered.witnesses), offered.witness_quorum) != (set(pinned.witnesses), pinned.witness_quorum):
        problems.append("the witness keys or the witness quorum differ from the pinned ones")
    pinned_ids = {k.keyid for k in pinned.signing_keys}
    trust = TrustBundle(pinned.log_origin, pinned.log_verifier, result.keys, pinned.tsa_root_pem,
                        result.accepted or pinned.key_history, pinned.witnesses, pinned.witness_quorum)
    new = tuple(k.keyid for k in result.keys if k.keyid not in pinned_ids)
    return PinnedTrust(trust, tuple(problems), new)
