"""OpenTelemetry tracing (the ``otel`` extra, ``WARRANTOR_OTEL``): a span per authorization
stage, carrying the action, decision and evidence ids, checked with the SDK's in-memory
exporter; a caller's ``traceparent`` is the parent; no request content on any span; and
with the setting off, the tracing module is never even imported."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from support import OPERATOR_KEY, WIRE, Env, RecordingMailer, make_settings
from warrantor.cli.bootstrap import create_demo
from warrantor.demo import demo_bundle
from warrantor.server import tracing
from warrantor.server.app import create_app, open_services
from warrantor.service.authorization.authorize import Authorizer
from warrantor.service.authorization.intent import Intent
from warrantor.service.authorization.pipeline import Facts

BIG = {"amount_minor": 200_000_000, "currency": "EUR", "beneficiary": "ACME GmbH"}


class Traced(Env):
    exporter: InMemorySpanExporter

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def trace_of(self, root_name: str) -> tuple[ReadableSpan, list[ReadableSpan]]:
        """The newest root span called ``root_name`` and every span of its trace."""
        roots = [s for s in self.spans() if s.name == root_name]
        assert roots, [s.name for s in self.spans()]
        root = roots[-1]
        assert root.context is not None
        return root, [s for s in self.spans() if s.context is not None
                      and s.context.trace_id == root.context.trace_id]


@pytest.fixture
def traced(tmp_path: Path) -> Iterator[Traced]:
    """The app with ``otel`` on, its authorizer traced into an in-memory exporter (the
    provider is passed in, so nothing global changes for other tests)."""
    settings = make_settings(tmp_path, otel=True)
    services = open_services(settings, mailer=RecordingMailer())
    services.tenancy.bootstrap_operator(OPERATOR_KEY)
    demo = create_demo(services)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.install(services.authorizer, provider)
    app = create_app(settings, services=services)  # installs nothing twice; adds the traceparent middleware
    keys = {k.removesuffix("_key"): v for k, v in demo.items() if k.endswith("_key")}
    try:
        with TestClient(app) as client:
            env = Traced(client, services, settings, demo["tenant_id"], keys, demo["bundle_hash"])
            env.exporter = exporter
            yield env
    finally:
        services.store.close()


def children(spans: list[ReadableSpan], parent: ReadableSpan) -> list[str]:
    assert parent.context is not None
    return [s.name for s in spans if s.parent is not None and s.parent.span_id == parent.context.span_id]


def named(spans: list[ReadableSpan], name: str) -> ReadableSpan:
    found = [s for s in spans if s.name == name]
    assert len(found) == 1, (name, [s.name for s in spans])
    return found[0]


def test_an_authorization_is_one_trace_with_a_span_per_stage(traced: Traced) -> None:
    r = traced.authorize()
    assert r.status_code == 201, r.text
    body = r.json()
    root, spans = traced.trace_of("authorize wire_transfer")
    attributes = dict(root.attributes or {})
    assert attributes["gen_ai.tool.name"] == "wire_transfer"
    assert attributes["gen_ai.agent.id"] == "payments-agent"
    assert attributes["warrantor.tenant.id"] == traced.tenant_id
    assert attributes["warrantor.action.id"] == body["action_id"]
    assert attributes["warrantor.action.status"] == "authorized"
    assert attributes["warrantor.warrant.id"] == body["warrant_id"]
    assert attributes["warrantor.decision.effect"] == "allow"
    assert "default-allow" in attributes["warrantor.decision.rules"]

    stages = ["identify", "detectors", "endpoint", "policy", "run", "grant"]
    assert children(spans, root) == ["warrantor.read", *[f"warrantor.stage {s}" for s in stages],
                                     "warrantor.seal", "warrantor.commit"]
    policy = named(spans, "warrantor.stage policy")
    assert dict(policy.attributes or {})["warrantor.stage.outcome"] == "allow"
    seal = named(spans, "warrantor.seal")
    assert dict(seal.attributes or {})["warrantor.warrant.id"] == body["warrant_id"]
    commit = named(spans, "warrantor.commit")
    assert children(spans, commit) == ["warrantor.guard rate_limit", "warrantor.guard budget",
                                       "warrantor.guard confirmation"]
    assert all(dict(s.attributes or {})["warrantor.guard.outcome"] == "pass"
               for s in spans if s.name.startswith("warrantor.guard"))
    assert dict(named(spans, "warrantor.read").attributes or {})["warrantor.idempotent_replay"] is False


def test_a_denial_carries_its_receipt_and_reason(traced: Traced) -> None:
    r = traced.authorize(payload=BIG)
    assert r.status_code == 403
    details = r.json()["details"]
    root, spans = traced.trace_of("authorize wire_transfer")
    attributes = dict(root.attributes or {})
    assert attributes["warrantor.receipt.id"] == details["receipt_id"]
    assert attributes["warrantor.action.id"] == details["action_id"]
    assert attributes["warrantor.decision.effect"] == "deny"
    assert attributes["warrantor.decision.code"] == "POLICY_DENIED"
    assert attributes["warrantor.decision.reason"] == "AMOUNT_CAP"
    assert dict(named(spans, "warrantor.stage policy").attributes or {})["warrantor.stage.outcome"] == "deny"
    # A deny stops the stages: the grant and run stages never ran.
    assert not [s for s in spans if s.name in ("warrantor.stage grant", "warrantor.stage run")]


def test_a_guard_that_stops_the_action_is_its_outcome_not_an_error(traced: Traced) -> None:
    bundle = {**demo_bundle(), "config": {"budgets": [
        {"id": "one", "metric": "count", "scope": "tenant", "window": "1d", "limit": 1, "on_exceed": "deny"}]}}
    r = traced.client.post("/v1/policies", json=bundle, headers=traced.h("admin"))
    traced.client.post(f"/v1/policies/{r.json()['bundle_hash']}/activate", headers=traced.h("admin"))
    assert traced.authorize().status_code == 201
    r = traced.authorize()
    assert r.status_code == 403 and r.json()["code"] == "CUMULATIVE_BUDGET_EXCEEDED"
    root, spans = traced.trace_of("authorize wire_transfer")
    assert dict(root.attributes or {})["warrantor.receipt.id"] == r.json()["details"]["receipt_id"]
    budget = [s for s in spans if s.name == "warrantor.guard budget"]
    assert [dict(s.attributes or {})["warrantor.guard.outcome"] for s in budget] == ["deny"]
    assert budget[0].status.is_ok
    # The guard's stop is followed by the second seal and commit that record the denial.
    assert children(spans, root)[-4:] == ["warrantor.seal", "warrantor.commit", "warrantor.seal", "warrantor.commit"]


def test_an_idempotent_replay_is_marked(traced: Traced) -> None:
    traced.authorize(idempotency_key="k-1")
    traced.authorize(idempotency_key="k-1")
    root, spans = traced.trace_of("authorize wire_transfer")
    assert dict(named(spans, "warrantor.read").attributes or {})["warrantor.idempotent_replay"] is True
    assert children(spans, root) == ["warrantor.read"]  # nothing evaluated, sealed or written again


def test_an_authzen_evaluation_is_traced_like_any_authorization(traced: Traced) -> None:
    r = traced.client.post("/access/v1/evaluation", headers=traced.h("agent"), json={
        "subject": {"type": "agent", "id": "payments-agent"}, "action": {"name": "wire_transfer"},
        "resource": {"type": "account", "id": "1"}, "context": {"payload": WIRE}})
    root, _ = traced.trace_of("authorize wire_transfer")
    assert dict(root.attributes or {})["warrantor.action.id"] == r.json()["context"]["action_id"]


def test_a_callers_traceparent_is_the_parent(traced: Traced) -> None:
    trace_id, parent_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    traced.authorize(headers={"traceparent": f"00-{trace_id}-{parent_id}-01"})
    root, spans = traced.trace_of("authorize wire_transfer")
    assert root.context is not None and root.parent is not None
    assert f"{root.context.trace_id:032x}" == trace_id
    assert f"{root.parent.span_id:016x}" == parent_id and root.parent.is_remote
    assert len(spans) > 5


def test_an_error_is_recorded_with_its_code(traced: Traced) -> None:
    r = traced.authorize(parent_action_id="act_missing")
    assert r.status_code == 404
    root, _ = traced.trace_of("authorize wire_transfer")
    assert dict(root.attributes or {})["error.type"] == "NOT_FOUND"
    assert not root.status.is_ok


def test_no_request_content_reaches_a_span(traced: Traced) -> None:
    traced.authorize(details="Pay invoice 42 to the usual account",
                     payload={**WIRE, "beneficiary": "Zyx Secret Beneficiary"})
    dumped = json.dumps([{**dict(s.attributes or {}), "name": s.name} for s in traced.spans()], default=str)
    assert "Zyx Secret Beneficiary" not in dumped and "invoice 42" not in dumped


def test_traced_evaluation_decides_exactly_as_untraced(traced: Traced) -> None:
    """The traced ``evaluate`` lists the stages itself: it must run the same ones."""
    authorizer = traced.services.authorizer
    with traced.services.store.read() as repo:
        facts = Facts(traced.tenant_id, None, traced.services.policies.active(repo, traced.tenant_id))
    for payload in (WIRE, BIG, {**WIRE, "amount_minor": 6_000_000}):
        intent = Intent("wire_transfer", payload=payload, agent_id="payments-agent")
        token = tracing._AUTHORIZING.set(True)  # as inside an authorization
        try:
            traced_draft = authorizer.evaluate(intent, facts).to_dict()
        finally:
            tracing._AUTHORIZING.reset(token)
        assert any(s.name == "warrantor.stage policy" for s in traced.spans())
        plain_draft = Authorizer.evaluate(authorizer, intent, facts).to_dict()
        for draft in (traced_draft, plain_draft):
            draft["stages"] = [(s["name"], s["outcome"]) for s in draft["stages"]]
        assert traced_draft == plain_draft


def test_with_otel_off_nothing_is_installed_or_imported(tmp_path: Path) -> None:
    """The default: the authorizer runs its own methods, no traceparent middleware, and the
    tracing module and the OpenTelemetry SDK are never imported (a fresh process)."""
    script = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        sys.path.insert(0, {str(Path(__file__).parent.parent)!r})
        from support import make_env
        from warrantor.service.authorization.authorize import Authorizer
        with make_env(Path({str(tmp_path)!r})) as env:
            assert env.authorize().status_code == 201
            a = env.services.authorizer
            assert not set(vars(a)) & {{"authorize", "authorize_async", "evaluate", "_seal", "_read_phase"}}
            assert a.authorize_async.__func__ is Authorizer.authorize_async
            assert all(m.cls.__name__ != "TraceContext" for m in env.client.app.user_middleware)
        print(sorted(m for m in sys.modules if m == "warrantor.server.tracing" or m.startswith("opentelemetry.sdk")))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_the_setting_is_read_from_the_environment() -> None:
    from warrantor.server.settings import Settings

    assert Settings.from_env({}).otel is False
    assert Settings.from_env({"WARRANTOR_OTEL": "true"}).otel is True


def test_warrantor_otel_on_exports_through_the_global_provider(tmp_path: Path) -> None:
    """The production wiring, in a fresh process: ``otel`` on and no provider configured
    makes an SDK provider the global one (here printing with the console exporter); the
    authorization's spans come out, nested under the framework's HTTP span."""
    script = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        sys.path.insert(0, {str(Path(__file__).parent.parent)!r})
        from support import make_env
        with make_env(Path({str(tmp_path)!r}), otel=True) as env:
            assert env.authorize().status_code == 201
    """)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")} | {"OTEL_TRACES_EXPORTER": "console"}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False,
                         env=env)
    assert out.returncode == 0, out.stderr
    spans = [json.loads(chunk) for chunk in re.findall(r"^\{$.*?^\}$", out.stdout, re.M | re.S)]
    by_name = {s["name"]: s for s in spans}
    root = by_name["authorize wire_transfer"]
    assert root["attributes"]["gen_ai.agent.id"] == "payments-agent"
    assert root["resource"]["attributes"]["service.name"] == "warrantor"
    assert "warrantor.stage policy" in by_name and "warrantor.commit" in by_name
    by_id = {s["context"]["span_id"]: s for s in spans}
    ancestors, parent = [], root["parent_id"]
    while parent in by_id:
        ancestors.append(by_id[parent])
        parent = by_id[parent]["parent_id"]
    assert [a["name"] for a in ancestors if a["kind"] == "SpanKind.SERVER"] == ["POST /v1/actions"]


def test_simulations_and_dry_runs_are_not_traced(traced: Traced) -> None:
    """Only authorizations are: a simulation replays every recorded action through the
    stages, and would otherwise leave a span tree per action."""
    traced.authorize()
    traced.exporter.clear()
    r = traced.client.post("/v1/policies/evaluate", headers=traced.h("admin"),
                           json={"action": {"action_type": "wire_transfer", "payload": WIRE}})
    assert r.status_code == 200
    r = traced.client.post("/v1/policies/simulate", headers=traced.h("admin"),
                           json={"bundle_hash": traced.bundle_hash, "from": "2000-01-01T00:00:00Z"})
    assert r.status_code == 200, r.text
    assert traced.spans() == []
