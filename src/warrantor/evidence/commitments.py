"""Salted commitments to the erasable parts of an intent, so evidence outlives the data.

Warrants and receipts must keep verifying after retention or an erasure request has
removed an action's payload details, and the transparency log must stay consistent. So
nothing erasable is ever inside a signed statement: a warrant carries the *committed
intent*, where each erasable field is replaced by a salted digest of its value.

Rules:

- Erasable fields of an intent: ``details``, ``payload`` and ``context`` (what the agent
  says, the arguments, the attested context). Of an execution report: ``outcome_details``
  and the executed ``payload``.
- ``commit(salt, field, value) = sha256(JCS({"field": field, "salt": salt, "value": value}))``
  as lowercase hex. ``salt`` is a random string of at least 128 bits chosen once per action
  and stored with the erasable values, never in evidence.
- ``committed_intent(intent, salt)`` is the intent without its erasable fields, plus
  ``commitments``: ``{field: commit(salt, field, value)}`` for each erasable field present.
  The intent digest, the subject of every warrant and receipt of the action, is
  ``sha256(JCS(committed_intent))``.
- Erasure deletes the values and the salt. Without the salt a digest says nothing about
  the value, even a guessable one (an amount, a name): that is what the salt is for.
- Anyone holding the values and the salt (an export made before the erasure, the action
  detail) recomputes the commitments; ``disclosure_problems`` says which do not match.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from warrantor.evidence.canonical import digest

INTENT_FIELDS = ("details", "payload", "context")
COMMITMENTS = "commitments"


def commit(salt: str, field: str, value: Any) -> str:
    """The salted digest of one erasable value."""
    return digest({"field": field, "salt": salt, "value": value})


def committed_intent(intent: Mapping[str, Any], salt: str) -> dict[str, Any]:
    """The intent with each erasable field replaced by its commitment (module rules)."""
    out = {k: v for k, v in intent.items() if k not in INTENT_FIELDS}
    out[COMMITMENTS] = {name: commit(salt, name, intent[name]) for name in INTENT_FIELDS if name in intent}
    return out


def split_intent(intent: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the intent without its erasable fields, the erasable fields)."""
    kept = {k: v for k, v in intent.items() if k not in INTENT_FIELDS}
    return kept, {k: intent[k] for k in INTENT_FIELDS if k in intent}


def is_committed(intent: Mapping[str, Any]) -> bool:
    """Whether ``intent`` is a committed intent (its erasable values replaced by digests)."""
    return COMMITMENTS in intent and not any(k in intent for k in INTENT_FIELDS)


def disclosure_problems(committed: Mapping[str, Any], disclosed: Mapping[str, Any], salt: str) -> list[str]:
    """What in ``disclosed`` (erasable values) does not match ``committed``'s commitments;
    empty when every value is committed to and every commitment is disclosed."""
    commitments = committed.get(COMMITMENTS)
    if not isinstance(commitments, Mapping):
        return ["expected a committed intent with 'commitments'"]
    problems = []
    for name in INTENT_FIELDS:
        expected = commitments.get(name)
        if name not in disclosed:
            if expected is not None:
                problems.append(f"{name}: committed to but not disclosed")
            continue
        if expected is None:
            problems.append(f"{name}: disclosed but not committed to")
        elif commit(salt, name, disclosed[name]) != expected:
            problems.append(f"{name}: does not match its commitment {expected}")
    return problems
