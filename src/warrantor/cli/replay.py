"""``warrantor verify BUNDLE --trust T --replay --policy POLICY.json [--intent INTENT.json]``.

Replay re-evaluates the recorded policy decision: the statement's
``decision.policy.bundle_hash`` must be the hash of the archived bundle given (a file, or
``GET /v1/policies/{hash}`` with ``--server URL --api-key KEY``); the intent is the
warrant's ``predicate.intent`` (receipts carry only its digest, so ``--intent`` supplies it
and its sha256 must equal the subject digest); the policy input is rebuilt exactly as the
authorizer builds it; and the evaluation hash (bundle hash, input, effect, matching rules,
and the action's salt where the intent is a committed one)
must equal ``decision.evaluation_hash``.

The offline verifier (``warrantor.verify``) imports no policy code; this command builds the
replay callable and hands it in.

Warrants and receipts sign the *committed* intent (``evidence/commitments.py``): the payload
details are only salted digests there. ``--intent`` then takes the action as
``GET /v1/actions/{id}`` returns it (or its ``action`` in an export line): the intent and its
``intent_salt``, committed again here and compared with the subject digest.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from warrantor.errors import WarrantorError
from warrantor.evidence import jsontext
from warrantor.evidence.canonical import digest
from warrantor.evidence.commitments import committed_intent, is_committed
from warrantor.evidence.proofs import TrustBundle
from warrantor.verify import CheckResult, Replay, format_report, verify_bundle
from warrantor.verify.cli import EXIT_FAILED, EXIT_OK, EXIT_UNREADABLE, load_bundle


def make_replay(bundle_doc: dict[str, Any], intent: dict[str, Any] | None = None, salt: str | None = None) -> Replay:
    """A replay callable over an archived policy bundle (``{"bundle": ...}`` or the bundle
    itself). ``intent`` and ``salt`` (``load_intent``) supply what the evidence only commits to."""
    from warrantor.policy.bundle import parse_bundle
    from warrantor.policy.engine import evaluation_hash
    from warrantor.service.authorization.authorize import Authorizer
    from warrantor.service.authorization.intent import Intent
    from warrantor.service.authorization.policies import ActivePolicy, Compiled

    policy = parse_bundle(bundle_doc.get("bundle", bundle_doc))
    active = ActivePolicy(Compiled.build(policy), "enforce", datetime.now(UTC))

    def replay(statement: dict[str, Any]) -> CheckResult:
        predicate = statement.get("predicate", {})
        decision = predicate.get("decision") or {}
        recorded = (decision.get("policy") or {}).get("bundle_hash")
        if recorded is None or decision.get("evaluation_hash") is None:
            return CheckResult(False, f"no policy evaluation was recorded (decided at stage {decision.get('stage')!r})")
        if recorded != policy.hash:
            return CheckResult(False, f"expected the archived bundle {recorded}, got {policy.hash}")
        signed = predicate.get("intent")
        doc = signed if isinstance(signed, dict) and not is_committed(signed) else intent
        problem = _intent_problem(statement, doc, None if doc is signed else salt)
        if problem or doc is None:
            return CheckResult(False, problem)
        # The authorizer's own normalization, so replay cannot drift from the live pipeline.
        try:
            result, inp = Authorizer._decide(Intent.from_canonical(doc), active)
        except (WarrantorError, TypeError) as exc:
            return CheckResult(False, f"the intent cannot be evaluated: {exc}")
        # Authorizations key the hash with the action's salt (policy/engine.py); evidence
        # from before that, or with the intent signed in full, has an unsalted one.
        computed = evaluation_hash(policy.hash, inp, result, salt if doc is not signed else None)
        if computed != decision["evaluation_hash"] and doc is not signed:
            unsalted = evaluation_hash(policy.hash, inp, result)
            computed = unsalted if unsalted == decision["evaluation_hash"] else computed
        if computed != decision["evaluation_hash"]:
            return CheckResult(
                False, f"expected evaluation hash {decision['evaluation_hash']}, replay gives {computed} "
                       f"(effect {result.effect})",
            )
        return CheckResult(True, f"effect {result.effect} reproduced under bundle {policy.hash[:16]}")

    return replay


def _intent_problem(statement: dict[str, Any], doc: dict[str, Any] | None, salt: str | None) -> str:
    """Why ``doc`` cannot be the statement's intent, or "" when its digest (of the intent
    committed with ``salt``, when given) is the subject's."""
    if doc is None:
        return ("the evidence carries only the intent's digest and commitments: pass --intent with the action "
                "(GET /v1/actions/{id}, or its line of an export: the intent and its intent_salt)")
    subject = statement["subject"][0]["digest"]["sha256"]
    computed = digest(committed_intent(doc, salt) if salt is not None else doc)
    if computed != subject:
        return f"expected an intent with sha256 {subject}, got {computed}"
    return ""


def load_intent(doc: Any) -> tuple[dict[str, Any], str | None]:
    """(intent, salt) from ``--intent``: an action detail or an export's action (``intent``
    and ``intent_salt``), or an intent document alone (evidence from before commitments)."""
    if not isinstance(doc, dict):
        raise ValueError("expected a JSON object for --intent")
    nested = doc.get("action")
    action: dict[str, Any] = nested if isinstance(nested, dict) else doc
    intent, salt = action.get("intent"), action.get("intent_salt")
    if isinstance(intent, dict) and isinstance(salt, str):
        return intent, salt
    if isinstance(intent, dict) and is_committed(intent):
        raise ValueError("the action's details were erased: there is no payload left to replay")
    return doc, None


def _fetch_policy(server: str, api_key: str, bundle_hash: str) -> dict[str, Any]:
    url = f"{server.rstrip('/')}/v1/policies/{bundle_hash}"
    response = httpx.get(url, headers={"Authorization": f"Bearer {api_key}"}, timeout=30)
    response.raise_for_status()
    doc: dict[str, Any] = response.json()
    return doc


def _recorded_bundle_hash(statement: dict[str, Any]) -> str:
    decision = statement.get("predicate", {}).get("decision") or {}
    value = (decision.get("policy") or {}).get("bundle_hash")
    if not isinstance(value, str):
        raise ValueError("the statement records no policy bundle hash to fetch")
    return value


def run(args: argparse.Namespace) -> int:
    """``warrantor verify`` with ``--replay``; exit codes as ``warrantor.verify.cli``."""
    try:
        bundle = load_bundle(args.bundle)
        trust = TrustBundle.from_json(Path(args.trust).read_text(encoding="utf-8"))
        pin = getattr(args, "pin", None)
        pinned = TrustBundle.from_json(Path(pin).read_text(encoding="utf-8")) if pin else None
        intent, salt = (load_intent(jsontext.loads(Path(args.intent).read_text(encoding="utf-8"), "the intent"))
                        if args.intent else (None, None))
        if args.policy:
            policy_doc = jsontext.loads(Path(args.policy).read_text(encoding="utf-8"), "the policy bundle")
        elif args.server and args.api_key:
            policy_doc = _fetch_policy(args.server, args.api_key, _recorded_bundle_hash(bundle.envelope.statement()))
        else:
            raise ValueError("--replay needs --policy POLICY.json, or --server URL and --api-key KEY")
        replay = make_replay(policy_doc, intent, salt)
    except (OSError, UnicodeDecodeError, ValueError, WarrantorError, httpx.HTTPError) as exc:
        print(f"warrantor verify: cannot read input: {exc}", file=sys.stderr)
        return EXIT_UNREADABLE
    report = verify_bundle(bundle, trust, replay=replay, pinned=pinned)
    if args.json:
        sys.stdout.write(json.dumps(report.to_dict(), indent=2) + "\n")
    else:
        sys.stdout.write(format_report(report))
    return EXIT_OK if report.ok else EXIT_FAILED
