"""Say what every byte is: docs/predicates/*.schema.json hold for real warrants and
receipts of every kind (and every other statement Warrantor signs), they refuse what
Warrantor never signs, and the byte recipes of docs/offline-verification.md rebuild the
log entries and digests from live evidence with ``hashlib``, ``base64`` and ``rfc8785``."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from execute_upstream import upstream
from support import WIRE, Env, bearer, make_env
from warrantor.demo import demo_bundle
from warrantor.domain.clock import FixedClock
from warrantor.evidence.dsse import Envelope
from warrantor.evidence.proofs import TrustBundle
from warrantor.evidence.statement import PREDICATE_TYPES
from warrantor.verify import verify_envelope_only

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "docs" / "predicates"
HELD = {**WIRE, "amount_minor": 6_000_000}
STRIPE = "https://api.stripe.com/v1/transfers"
GUARDED = {
    "detectors": {"builtin": {"secrets": "deny", "cards": "deny", "injection": "require_approval"}},
    "endpoints": {"strict": True, "allow": {"wire_transfer": ["api.stripe.com"]}},
}
AWS_KEY = "AKIA" + "Z7Q3XH2KLM4PN5RT"
# What the brief of this feature names, and every other kind a deployment signs.
KINDS = (
    "warrant allowed", "warrant with a parent", "warrant approved", "warrant with a shadow decision",
    "receipt notarized (reported)", "receipt failed", "receipt denied by policy", "receipt denied by a detector",
    "receipt diverged", "receipt denied by a human", "receipt witnessed (gateway key)",
    "receipt witnessed (warrantor-http)", "receipt confirmed execution", "receipt diverged execution",
    "receipt warrant expired", "receipt approval expired", "legal hold set", "legal hold lifted",
    "erasure", "export manifest", "policy enforce", "policy shadow", "signing key genesis", "signing key rotation",
)


# -- the corpus: real evidence from one live app --------------------------------------------
class Corpus:
    def __init__(self, env: Env, clock: FixedClock) -> None:
        self.env, self.clock = env, clock
        self.envelopes: dict[str, dict[str, Any]] = {}
        self.activations: dict[str, str] = {}  # mode -> the last activation statement's evidence id

    def add(self, kind: str, envelope: dict[str, Any]) -> None:
        assert kind in KINDS and kind not in self.envelopes, kind
        self.envelopes[kind] = envelope

    def statement(self, kind: str) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(base64.b64decode(self.envelopes[kind]["payload"]))
        return value

    def post(self, path: str, body: dict[str, Any], role: str = "agent", headers: dict[str, str] | None = None) -> Any:
        r = self.env.client.post(path, json=body, headers=headers or self.env.h(role))
        assert r.status_code < 300, r.text
        return r.json()

    def detail(self, action_id: str) -> dict[str, Any]:
        doc: dict[str, Any] = self.env.client.get(f"/v1/actions/{action_id}", headers=self.env.h("admin")).json()
        return doc

    def receipt_of(self, action_id: str) -> dict[str, Any]:
        envelope: dict[str, Any] = self.detail(action_id)["receipt"]["envelope"]
        return envelope

    def authorized(self, **body: Any) -> dict[str, Any]:
        r = self.env.authorize(**body)
        assert r.status_code == 201, r.text
        return dict(r.json())

    def notarize(self, action_id: str, headers: dict[str, str] | None = None, **body: Any) -> None:
        self.post(f"/v1/actions/{action_id}/notarize", body, headers=headers)

    def activate(self, bundle: dict[str, Any], mode: str = "enforce") -> str:
        bundle_hash = str(self.post("/v1/policies", bundle, "admin")["bundle_hash"])
        activated = self.post(f"/v1/policies/{bundle_hash}/activate", {"mode": mode}, "admin")
        self.activations[mode] = activated["evidence_id"]
        return bundle_hash


def _executed(payload: dict[str, Any]) -> dict[str, Any]:
    return {"action_type": "wire_transfer", "payload": payload}


def _collect_actions(c: Corpus) -> None:
    allowed = c.authorized()
    c.add("warrant allowed", allowed["warrant"])
    child = c.authorized(parent_action_id=allowed["action_id"], details="child of the first")
    c.add("warrant with a parent", child["warrant"])
    c.notarize(allowed["action_id"], outcome="completed", outcome_details="bank ref 8821", executed=_executed(WIRE),
               usage={"tokens": 1200})
    c.add("receipt notarized (reported)", c.receipt_of(allowed["action_id"]))
    c.notarize(child["action_id"], outcome="failed", outcome_details="upstream said no")
    c.add("receipt failed", c.receipt_of(child["action_id"]))
    r = c.env.authorize(payload={**WIRE, "amount_minor": 200_000_000})
    assert r.status_code == 403
    c.add("receipt denied by policy", c.receipt_of(r.json()["details"]["action_id"]))
    held = c.authorized(payload=HELD)["action_id"]
    c.post(f"/v1/approvals/{c.env.approval_codes(held)[0]}/confirm", {"decision": "approve", "reason": "checked"})
    c.add("warrant approved", c.detail(held)["warrant"]["envelope"])
    c.notarize(held, outcome="completed", executed=_executed({**HELD, "amount_minor": 1}))
    c.add("receipt diverged", c.receipt_of(held))
    refused = c.authorized(payload=HELD)["action_id"]
    c.post(f"/v1/approvals/{c.env.approval_codes(refused)[0]}/confirm", {"decision": "deny", "reason": "not today"})
    c.add("receipt denied by a human", c.receipt_of(refused))
    gateway = bearer(c.post("/v1/api-keys", {"role": "gateway", "agent_id": "payments-agent"}, "admin")["key"])
    seen = c.authorized(headers=gateway)["action_id"]
    c.notarize(seen, gateway, outcome="completed", executed=_executed(WIRE), evidence_grade="witnessed",
               witness={"request_sha256": "sha256:" + "1a" * 32, "response_sha256": "sha256:" + "2b" * 32,
                        "executor": "mcp-gateway", "target": "mcp:payments/send_payment"})
    c.add("receipt witnessed (gateway key)", c.receipt_of(seen))
    for kind, payload in (("receipt confirmed execution", WIRE), ("receipt diverged execution", {**WIRE, "x": 1})):
        authorized = c.authorized()
        executed = {"type": "wire_transfer", "payload": payload, "executed_at": authorized["created_at"],
                    "executed_by": "core-banking"}
        proof = c.post("/v1/confirm-execution", {"warrant": authorized["warrant"], "executed_action": executed})
        c.add(kind, proof["receipt"]["envelope"])
    c.post(f"/v1/actions/{seen}/hold", {"reason": "litigation 2026-17"}, "auditor")
    r = c.env.client.request("DELETE", f"/v1/actions/{seen}/hold", json={"reason": "settled"}, headers=c.env.h("admin"))
    assert r.status_code == 200, r.text


def _collect_expiry(c: Corpus) -> None:
    waiting = c.authorized(payload=HELD)["action_id"]
    unused = c.authorized()["action_id"]
    c.clock.advance(86400 + 60)  # past the approval's life and the warrant's notarization grace
    assert c.env.services.sweeper.sweep() >= 2  # also the warrants confirmed above, never notarized
    c.add("receipt warrant expired", c.receipt_of(unused))
    c.add("receipt approval expired", c.receipt_of(waiting))


def _collect_guarded(c: Corpus) -> None:
    c.activate({**demo_bundle(), "config": GUARDED})
    c.activate(demo_bundle(), "shadow")
    r = c.env.authorize(details=f"use key {AWS_KEY} for this", endpoint_url=STRIPE)
    assert r.status_code == 403 and r.json()["details"]["stage"] == "detectors", r.text
    c.add("receipt denied by a detector", c.receipt_of(r.json()["details"]["action_id"]))
    c.add("warrant with a shadow decision", c.authorized(endpoint_url=STRIPE)["warrant"])


def _collect_execute(c: Corpus) -> None:
    example = ROOT / "examples" / "http"
    with upstream() as up:
        c.activate({"cedar": (example / "http.cedar").read_text(), "schema": (example / "http.cedarschema").read_text(),
                    "config": {"endpoints": {"strict": True, "allow": {"http.request": ["127.0.0.1"]}}}})
        url = f"{up.base}/echo"
        action_id = c.authorized(action_type="http.request", details=f"GET {url}", endpoint_url=url,
                                 payload={"method": "GET", "url": url})["action_id"]
        r = c.env.client.post(f"/v1/actions/{action_id}/execute", headers=c.env.h("agent"))
        assert r.status_code == 200, r.text
    c.add("receipt witnessed (warrantor-http)", c.receipt_of(action_id))


def _collect_records(c: Corpus, start: str) -> None:
    c.clock.advance(1)  # an export covers what was recorded before its end, "now"
    r = c.env.client.get(f"/v1/export?from={start}", headers=c.env.h("auditor"))
    assert r.status_code == 200, r.text
    lines = [json.loads(line) for line in r.text.splitlines()]
    records = [line for line in lines if line["type"] == "record"]
    holds = [line["envelope"] for line in records if line["kind"] == "hold"]
    c.add("legal hold set", holds[0])
    c.add("legal hold lifted", holds[1])
    c.add("export manifest", lines[-1]["envelope"])
    r = c.env.client.post("/v1/erasures", json={"agent_id": "payments-agent", "reason": "right to erasure"},
                          headers=c.env.h("admin"))
    assert r.status_code == 200 and r.json()["erased"] > 0, r.text
    erasure_id = r.json()["erasures"][0]["erasure_id"]
    c.clock.advance(1)
    r = c.env.client.get(f"/v1/export?from={start}", headers=c.env.h("auditor"))
    records = [line for line in map(json.loads, r.text.splitlines()) if line["type"] == "record"]
    found = [e["envelope"] for e in records if e["evidence_id"] == erasure_id]
    assert found, [(e["kind"], e["evidence_id"]) for e in records] + [erasure_id]
    c.add("erasure", found[0])


def _collect_keys_and_policies(c: Corpus) -> None:
    keyring = c.env.services.deps.keyring
    keyring.rotate(c.clock.now())
    history = c.env.client.get("/v1/trust").json()["key_history"]
    c.add("signing key genesis", history[0])
    c.add("signing key rotation", history[1])
    with c.env.services.store.read() as repo:  # activation statements are served by no route: the stored row
        for mode in ("enforce", "shadow"):
            stored = repo.get_evidence(c.env.tenant_id, c.activations[mode])
            assert stored is not None and stored.kind == "policy"
            c.add(f"policy {mode}", stored.envelope)


@contextmanager
def collect(data_dir: Path) -> Iterator[Corpus]:
    clock = FixedClock(datetime(2026, 3, 2, 9, 0, tzinfo=UTC))
    with make_env(data_dir, integrate_interval_ms=50, execute_allow_private="127.0.0.1/32",
                  services_kwargs={"clock": clock}) as env:
        corpus = Corpus(env, clock)
        start = "2026-03-02T08:59:00Z"
        _collect_actions(corpus)
        _collect_expiry(corpus)
        _collect_guarded(corpus)
        _collect_execute(corpus)
        _collect_records(corpus, start)
        _collect_keys_and_policies(corpus)
        yield corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Corpus]:
    with collect(tmp_path_factory.mktemp("corpus")) as c:
        yield c


# -- the schemas ---------------------------------------------------------------------------
def _schemas() -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text(encoding="utf-8")) for p in sorted(SCHEMAS.glob("*.schema.json"))}


def _validator() -> Draft202012Validator:
    schemas = _schemas()
    registry: Registry[Any] = Registry().with_resources(
        (doc["$id"], Resource.from_contents(doc)) for doc in schemas.values())
    return Draft202012Validator(schemas["statement.schema.json"], registry=registry)


def _errors(statement: dict[str, Any]) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in _validator().iter_errors(statement)]


def test_every_predicate_type_has_a_draft_2020_12_schema_named_by_it() -> None:
    schemas = _schemas()
    ids = {doc["$id"] for doc in schemas.values()}
    assert ids >= PREDICATE_TYPES, sorted(PREDICATE_TYPES - ids)
    for name, doc in schemas.items():
        assert doc["$schema"] == "https://json-schema.org/draft/2020-12/schema", name
        Draft202012Validator.check_schema(doc)
    statement = schemas["statement.schema.json"]
    assert set(statement["properties"]["predicateType"]["enum"]) == PREDICATE_TYPES


def test_the_corpus_has_every_kind_and_every_predicate_type(corpus: Corpus) -> None:
    assert set(corpus.envelopes) == set(KINDS)
    assert {corpus.statement(k)["predicateType"] for k in KINDS} == PREDICATE_TYPES


@pytest.mark.parametrize("kind", KINDS)
def test_real_evidence_of_every_kind_validates(corpus: Corpus, kind: str) -> None:
    assert _errors(corpus.statement(kind)) == []


def _mutated(corpus: Corpus, kind: str, change: Any) -> dict[str, Any]:
    statement = copy.deepcopy(corpus.statement(kind))
    change(statement["predicate"])
    return statement


@pytest.mark.parametrize(("kind", "change", "path"), [
    ("warrant allowed", lambda p: p.update(note="trust me"), "predicate"),
    ("warrant allowed", lambda p: p["intent"].update(payload={"amount_minor": 1}), "predicate/intent"),
    ("warrant allowed", lambda p: p["intent"].pop("commitments"), "predicate/intent"),
    ("warrant allowed", lambda p: p["decision"].update(effect="maybe"), "predicate/decision/effect"),
    ("warrant approved", lambda p: p["approvals"][0].update(decision="abstain"), "predicate/approvals/0/decision"),
    ("warrant allowed", lambda p: p.update(issued_at="2026-03-02 09:00:00"), "predicate/issued_at"),
    ("receipt notarized (reported)", lambda p: p.pop("sequence"), "predicate"),
    ("receipt notarized (reported)", lambda p: p.update(status="approved_by_me"), "predicate/status"),
    ("receipt notarized (reported)", lambda p: p["execution"].update(outcome_details="bank ref 8821"),
     "predicate/execution"),
    ("receipt witnessed (gateway key)", lambda p: p.pop("witness"), "predicate"),
    ("receipt witnessed (gateway key)", lambda p: p["witness"].update(request_sha256="sha256:abc"),
     "predicate/witness/request_sha256"),
    ("receipt notarized (reported)", lambda p: p.update(evidence_grade="confirmed"), "predicate"),
    ("receipt confirmed execution", lambda p: p.pop("integrity_hash"), "predicate"),
    ("legal hold set", lambda p: p.update(reason=""), "predicate/reason"),
    ("erasure", lambda p: p["erased"][0]["fields"].append("salt"), "predicate/erased/0/fields/2"),
    ("signing key rotation", lambda p: p.update(previous_keyid=None), "predicate/previous_keyid"),
    ("policy enforce", lambda p: p.update(mode="audit"), "predicate/mode"),
    ("export manifest", lambda p: p.update(format="csv"), "predicate/format"),
])
def test_what_warrantor_never_signs_is_refused_naming_the_field(corpus: Corpus, kind: str, change: Any,
                                                                path: str) -> None:
    """Strict where the statement is fully specified: an extra member, a raw value where a
    commitment belongs, a missing record number or witness, an unknown status, all fail."""
    errors = _errors(_mutated(corpus, kind, change))
    assert errors, "the schema accepted a statement Warrantor never signs"
    assert any(e.startswith(path + ":") or e.startswith(path + "/") for e in errors), errors


def test_the_subject_name_must_fit_the_predicate_type(corpus: Corpus) -> None:
    statement = copy.deepcopy(corpus.statement("warrant allowed"))
    statement["subject"][0]["name"] = "policy:" + "0" * 64
    assert _errors(statement)


# -- the byte recipes of docs/offline-verification.md ---------------------------------------
def _log_entries(env: Env) -> dict[int, str]:
    r = env.client.get("/v1/log/entries?limit=10000")
    return {e["index"]: e["entry"] for e in r.json()["entries"]}


@pytest.mark.parametrize("kind", [k for k in KINDS if k != "export manifest"])  # the manifest is not logged
def test_each_log_entry_is_sha256_of_the_jcs_envelope(corpus: Corpus, kind: str) -> None:
    envelope = corpus.envelopes[kind]
    entry = hashlib.sha256(rfc8785.dumps(envelope)).digest()
    assert base64.b64encode(entry).decode() in _log_entries(corpus.env).values()


@pytest.mark.parametrize("kind", KINDS)
def test_the_payload_is_the_jcs_statement_and_the_subject_its_documented_digest(corpus: Corpus, kind: str) -> None:
    payload = base64.b64decode(corpus.envelopes[kind]["payload"])
    statement = json.loads(payload)
    assert payload == rfc8785.dumps(statement)
    subject, predicate = statement["subject"][0], statement["predicate"]
    sha = subject["digest"]["sha256"]
    checked = 0
    if "intent" in predicate:  # warrants: the committed intent, nothing erasable
        assert sha == hashlib.sha256(rfc8785.dumps(predicate["intent"])).hexdigest()
        assert not {"details", "payload", "context"} & set(predicate["intent"])
        checked += 1
    if "intent_digest" in predicate:
        assert sha == predicate["intent_digest"]
        checked += 1
    if "erased" in predicate:
        assert sha == hashlib.sha256(rfc8785.dumps(predicate["erased"])).hexdigest()
        checked += 1
    if statement["predicateType"].endswith(":signing-key:v1"):
        assert sha == predicate["keyid"] == hashlib.sha256(base64.b64decode(predicate["public_key"])).hexdigest()
        checked += 1
    # Every kind must meet one documented digest rule; a kind meeting none would pass unchecked.
    assert checked or kind in SUBJECT_RULE_EXEMPT, f"{kind}: no documented subject digest rule applied"


# Kinds whose subject digest this test does not yet recompute (their schemas are still
# validated above). Listed so that a new kind cannot pass here without any digest check.
SUBJECT_RULE_EXEMPT = frozenset({"legal hold set", "legal hold lifted", "export manifest", "policy enforce",
                                 "policy shadow"})


@pytest.mark.parametrize("kind", [k for k in KINDS if k.startswith(("warrant", "receipt"))])
def test_every_warrant_and_receipt_passes_the_offline_envelope_checks(corpus: Corpus, kind: str) -> None:
    """An approved warrant once signed the raw intent under the committed intent's digest:
    it failed ``subject_digest`` and kept erasable values in permanent evidence."""
    trust = TrustBundle.from_dict(corpus.env.client.get("/v1/trust").json())
    report = verify_envelope_only(Envelope.from_dict(corpus.envelopes[kind]), trust)
    assert report.ok, report.to_dict()
