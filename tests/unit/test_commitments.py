"""Salted commitments to an intent's erasable fields (evidence/commitments.py)."""

from __future__ import annotations

import hashlib
import json

from warrantor.evidence.canonical import digest
from warrantor.evidence.commitments import (
    commit,
    committed_intent,
    disclosure_problems,
    is_committed,
    split_intent,
)

INTENT = {"action_type": "wire_transfer", "agent_id": "a1", "details": "Pay Jane Roe",
          "payload": {"amount_minor": 100, "beneficiary": "Jane Roe"}, "context": {"ticket": 7}}
SALT = "0123456789abcdefghjkmnpqrs"


def test_a_commitment_is_sha256_of_the_canonical_field_salt_and_value() -> None:
    expected = hashlib.sha256(json.dumps({"field": "payload", "salt": SALT, "value": INTENT["payload"]},
                                         sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    assert commit(SALT, "payload", INTENT["payload"]) == expected
    assert commit(SALT, "payload", {"beneficiary": "Jane Roe", "amount_minor": 100}) == expected  # key order
    assert commit("another salt", "payload", INTENT["payload"]) != expected  # nothing to guess without it
    assert commit(SALT, "context", INTENT["payload"]) != expected  # a value cannot move to another field


def test_the_committed_intent_keeps_no_erasable_value() -> None:
    committed = committed_intent(INTENT, SALT)
    assert set(committed) == {"action_type", "agent_id", "commitments"} and is_committed(committed)
    assert set(committed["commitments"]) == {"details", "payload", "context"}
    assert "Jane" not in json.dumps(committed) and not is_committed(INTENT)
    assert digest(committed) == digest(committed_intent(dict(reversed(INTENT.items())), SALT))
    no_context = {k: v for k, v in INTENT.items() if k != "context"}
    assert set(committed_intent(no_context, SALT)["commitments"]) == {"details", "payload"}


def test_disclosure_problems_name_each_field_that_does_not_match() -> None:
    committed = committed_intent(INTENT, SALT)
    kept, values = split_intent(INTENT)
    assert kept == {"action_type": "wire_transfer", "agent_id": "a1"}
    assert disclosure_problems(committed, values, SALT) == []
    edited = {**values, "payload": {**values["payload"], "amount_minor": 101}}
    assert [p.split(":")[0] for p in disclosure_problems(committed, edited, SALT)] == ["payload"]
    assert disclosure_problems(committed, values, "wrong salt") != []
    missing = {k: v for k, v in values.items() if k != "details"}
    assert disclosure_problems(committed, missing, SALT) == ["details: committed to but not disclosed"]
    assert disclosure_problems(INTENT, values, SALT) == ["expected a committed intent with 'commitments'"]
