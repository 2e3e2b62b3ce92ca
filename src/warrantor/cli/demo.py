"""``warrantor demo``: a scripted payments agent through every kind of decision.

Six steps, each ending in a signed receipt that is verified offline, in this process, with
``warrantor.verify`` and the trust bundle from ``GET /v1/trust`` (with the subject digest
computed here from what the agent sent, as ``POST /v1/actions`` computes it):

1. allow: a 1,000 EUR wire in a run is authorized, executed and notarized;
2. approval: a 60,000 EUR wire is held for finance-leads; an approver approves (the
   demo's console user, logging in with its password and approving with the session's
   CSRF token, as the console does; with ``--server``, a human in the console);
3. end-user confirmation: a 200 EUR refund under a grant whose scope says ``confirm``;
   the app's backend reports the customer's yes with its app key;
4. denial: a 2,000,000 EUR wire is denied by rule ``wire-cap-1m``;
5. budget: 9,500 EUR more in the run does not fit its 10,000 EUR wire budget
   (``BUDGET_EXHAUSTED``, with the halt);
6. divergence: a wire authorized for 500 EUR is reported as having sent 5,000 EUR.

Set-up, with the tenant's admin key: an agent key bound to ``demo-agent`` and an app key
(both revoked at the end), and the payments bundle with a per-run wire budget
(``warrantor/demo/story.yaml``) enforced; the bundle enforced before is re-activated at the
end. Without ``--server`` the demo starts its own server (:mod:`warrantor.cli.localserver`).
Exit status 0 only when every step behaved as expected, 1 otherwise, 2 on usage errors.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from typing import TYPE_CHECKING, Any

from warrantor.cli.api import Api, ApiError
from warrantor.cli.progress import Progress
from warrantor.errors import WarrantorError

if TYPE_CHECKING:
    from warrantor.client import Client
    from warrantor.evidence.proofs import TrustBundle

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
AGENT_ID = "demo-agent"
INSTRUCTION_HASH = "sha256:" + "d3" * 32  # the demo agent's prompt, as registered nowhere
RUN_BUDGET_MINOR = 1_000_000
VERIFY_WAIT_SECONDS = 15.0


def story_bundle() -> dict[str, Any]:
    """The payments policies and schema (the demo bundle) with ``story.yaml`` as config."""
    from warrantor.demo import demo_bundle_yaml

    return {**demo_bundle_yaml(), "config": resources.files("warrantor.demo").joinpath("story.yaml").read_text()}


def eur(minor: int) -> str:
    return f"{minor / 100:,.0f} EUR"


@dataclass
class Step:
    key: str
    title: str
    lines: list[str] = field(default_factory=list)
    action_id: str | None = None
    status: str | None = None
    decision: dict[str, Any] | None = None
    receipt_id: str | None = None
    receipt_status: str | None = None
    verification: dict[str, Any] | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and bool(self.verification and self.verification.get("ok"))

    def say(self, line: str) -> None:
        self.lines.append(line)

    def expect(self, what: str, expected: Any, got: Any) -> bool:
        if expected != got:
            self.problems.append(f"{what}: expected {expected}, got {got}")
            return False
        return True

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.key, "title": self.title, "ok": self.ok, "action_id": self.action_id,
                "status": self.status, "decision": self.decision, "receipt_id": self.receipt_id,
                "receipt_status": self.receipt_status, "verification": self.verification,
                "story": self.lines, "problems": self.problems}


class SessionApprover:
    """A console user of the tenant: logs in with its password and approves with the
    session's CSRF token (``POST /v1/sessions``, ``POST /v1/actions/{id}/approve``)."""

    def __init__(self, url: str, email: str, password: str) -> None:
        self.url, self.email, self._password = url, email, password

    def approve(self, action_id: str, step: Step) -> None:
        step.say(f"an approver approves: {self.email} (console user in finance-leads) logs in with its "
                 f"password (POST /v1/sessions) and approves with the session's CSRF token "
                 f"(POST /v1/actions/{action_id}/approve), as the console's Approve button does")
        with Api(self.url) as human:
            session = human.post("/v1/sessions", {"email": self.email, "password": self._password})
            csrf = {"X-CSRF-Token": session["csrf_token"]}
            human.post(f"/v1/actions/{action_id}/approve", {"reason": "checked by warrantor demo"}, headers=csrf)
            human.call("DELETE", "/v1/sessions/current", headers=csrf)


class ConsoleApprover:
    """``--server``: API keys never approve, so a human approves in the console."""

    def __init__(self, url: str, timeout: float) -> None:
        self.url, self.timeout = url, timeout

    def approve(self, action_id: str, step: Step) -> None:
        link = f"{self.url}/console/actions/{action_id}"
        step.say(f"an approver approves: a human in finance-leads, in the console at {link} "
                 f"(the demo waited up to {self.timeout:g} s)")
        on_bar = "\n" if sys.stderr.isatty() else ""  # below the progress bar's line, not on it
        print(f"{on_bar}warrantor demo: waiting up to {self.timeout:g} s for an approver in finance-leads to approve "
              f"{action_id}: {link}", file=sys.stderr)


class Story:
    def __init__(self, url: str, admin_key: str, approver: SessionApprover | ConsoleApprover,
                 approval_timeout: float) -> None:
        self.url = url
        self.admin = Api(url, admin_key)
        self.app = Api(url)  # keys are set by set_up
        self.agent_api = Api(url)
        self._agent: Client | None = None
        self.approver = approver
        self.approval_timeout = approval_timeout
        self.setup_lines: list[str] = []
        self.cleanup_lines: list[str] = []
        self._created_keys: list[str] = []
        self._previous_bundle: str | None = None
        self.bundle_hash = ""
        self.run_id = ""
        self.trust: TrustBundle | None = None

    @property
    def agent(self) -> Client:
        assert self._agent is not None, "set_up() creates the agent's client"
        return self._agent

    # -- set-up and clean-up --------------------------------------------------------------
    def _key(self, role: str, agent_id: str | None) -> str:
        body = {"role": role, "label": "warrantor demo"} | ({"agent_id": agent_id} if agent_id else {})
        created = self.admin.post("/v1/api-keys", body)
        self._created_keys.append(created["key_id"])
        return str(created["key"])

    def set_up(self) -> None:
        from warrantor.client import Client
        from warrantor.evidence.proofs import TrustBundle

        self.trust = TrustBundle.from_dict(Api(self.url).get("/v1/trust"))
        agent_key = self._key("agent", AGENT_ID)
        self._agent = Client(self.url, agent_key, timeout=30.0)
        self.agent_api.http.headers["Authorization"] = f"Bearer {agent_key}"
        self.app.http.headers["Authorization"] = f"Bearer {self._key('app', None)}"
        listed = self.admin.get("/v1/policies")["data"]
        self._previous_bundle = next((b["bundle_hash"] for b in listed if b.get("active_mode") == "enforce"), None)
        uploaded = self.admin.post("/v1/policies", story_bundle())
        self.bundle_hash = uploaded["bundle_hash"]
        self.admin.post(f"/v1/policies/{self.bundle_hash}/activate", {"mode": "enforce"})
        self.run_id = self.agent_api.post("/v1/runs", {"metadata": {"by": "warrantor demo"}})["run_id"]
        self.setup_lines += [
            f"the admin key created an agent key (bound to {AGENT_ID!r}) and an app key for this demo",
            f"enforced bundle {self.bundle_hash[:12]}: the payments policies with a wire budget of "
            f"{eur(RUN_BUDGET_MINOR)} per run (demo-run-wires)",
            f"the agent opened run {self.run_id}",
        ]

    def clean_up(self) -> None:
        if self._previous_bundle and self._previous_bundle != self.bundle_hash:
            try:
                self.admin.post(f"/v1/policies/{self._previous_bundle}/activate", {"mode": "enforce"})
                self.cleanup_lines.append(f"re-activated the bundle enforced before ({self._previous_bundle[:12]})")
            except ApiError as exc:
                self.cleanup_lines.append(f"could not re-activate bundle {self._previous_bundle[:12]}: {exc}")
        elif self._previous_bundle is None and self.bundle_hash:
            self.cleanup_lines.append("no bundle was enforced before: the demo's bundle stays enforced")
        for key_id in self._created_keys:
            try:
                self.admin.delete(f"/v1/api-keys/{key_id}")
            except ApiError as exc:
                self.cleanup_lines.append(f"could not revoke key {key_id}: {exc}")
        if self._created_keys:
            self.cleanup_lines.append(f"revoked the demo's {len(self._created_keys)} API keys")
        if self._agent is not None:
            self._agent.close()
        for api in (self.admin, self.app, self.agent_api):
            api.close()

    # -- the agent's moves ---------------------------------------------------------------
    def _ask(self, step: Step, action_type: str, details: str, payload: dict[str, Any],
             **fields: Any) -> tuple[Any, str]:
        """Authorize; returns the SDK's Authorization (or the denial error) and the digest of
        the intent as the server computes it, for the receipt's subject check."""
        body = {"action_type": action_type, "details": details, "payload": payload,
                "instruction_hash": INSTRUCTION_HASH, **fields}
        try:
            auth = self.agent.authorize(action_type, details=details, payload=payload,
                                        instruction_hash=INSTRUCTION_HASH, **fields)
        except WarrantorError as exc:
            if exc.status != 403 or "receipt_id" not in exc.details:
                raise
            expected_digest = intent_digest(body, str(exc.details.get("intent_salt")))
            step.action_id = exc.details.get("action_id")
            step.status = "denied"
            step.decision = {"effect": "deny", "code": exc.code, "stage": exc.details.get("stage"),
                             "reason": exc.details.get("reason"), "rules": deciding("deny", exc.details)}
            step.receipt_id = str(exc.details["receipt_id"])
            step.receipt_status = "denied"
            return exc, expected_digest
        step.action_id, step.status = auth.action_id, auth.status
        expected_digest = intent_digest(body, str(auth.raw.get("intent_salt")))
        effect = auth.decision.get("effect")
        step.decision = {"effect": effect, "stage": auth.decision.get("stage"),
                         "reason": auth.decision.get("reason"), "rules": deciding(effect, auth.decision)}
        return auth, expected_digest

    def _execute(self, step: Step, action_id: str, action_type: str, payload: dict[str, Any],
                 digest: str, expected: str = "notarized") -> None:
        step.say(f"the agent executes it and reports what ran: {action_type} {describe(payload)}")
        result = self.agent.notarize(action_id, "completed", executed={"action_type": action_type,
                                                                        "payload": payload})
        step.status = result.status
        step.receipt_id, step.receipt_status = result.receipt_id, result.status
        if result.match is not None and expected == "diverged":
            step.say("the server compares the report with the warrant: "
                     + ", ".join(f"{k} {str(v).lower()}" for k, v in result.match.items() if k.endswith("match")
                                 or k == "payload_consistent"))
        step.expect("status after notarize", expected, result.status)
        self._verify(step, digest)

    def _verify(self, step: Step, digest: str) -> None:
        from warrantor.evidence.proofs import ProofBundle
        from warrantor.verify import verify_bundle

        if step.receipt_id is None:
            step.problems.append("no receipt to verify")
            return
        deadline = time.monotonic() + VERIFY_WAIT_SECONDS
        while True:  # the receipt is logged at once and reaches a signed checkpoint shortly after
            try:
                doc = self.agent.receipt_bundle(step.receipt_id)
                break
            except WarrantorError as exc:
                if exc.code != "NOT_YET_INTEGRATED" or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        assert self.trust is not None
        report = verify_bundle(ProofBundle.from_dict(doc), self.trust, expected_subject_digest=digest)
        step.verification = report.to_dict()
        verdict = "VERIFIED" if report.ok else "NOT VERIFIED"
        step.say(f"receipt {step.receipt_id} ({step.receipt_status}), verified offline with the trust bundle: "
                 f"{verdict} ({', '.join(('' if c.ok else 'FAILED ') + c.name for c in report.checks)})")

    def _decision_line(self, step: Step) -> None:
        d = step.decision or {}
        rules = f", rules {', '.join(d['rules'])}" if d.get("rules") else ""
        reason = f" {d['reason']}" if d.get("reason") else ""
        code = f" {d['code']}" if d.get("code") else ""
        step.say(f"decision: {step.status}{code} ({d.get('effect')} at stage {d.get('stage')}{reason}{rules})")

    # -- the steps -----------------------------------------------------------------------
    def allow(self, step: Step) -> None:
        payload = {"amount_minor": 100_000, "currency": "EUR", "beneficiary": "ACME GmbH", "reference": "INV-1001"}
        step.say(f"the agent asks to wire {eur(100_000)} to ACME GmbH, in run {self.run_id}")
        auth, digest = self._ask(step, "wire_transfer", "Pay invoice INV-1001", payload, run_id=self.run_id)
        self._decision_line(step)
        if step.expect("status", "authorized", step.status):
            step.say("the answer carries a signed warrant: the agent may run the transfer now")
            self._execute(step, auth.action_id, "wire_transfer", payload, digest)

    def approval(self, step: Step) -> None:
        payload = {"amount_minor": 6_000_000, "currency": "EUR", "beneficiary": "ACME GmbH", "reference": "INV-1002"}
        step.say(f"the agent asks to wire {eur(6_000_000)} to ACME GmbH")
        auth, digest = self._ask(step, "wire_transfer", "Pay invoice INV-1002", payload)
        self._decision_line(step)
        if not step.expect("status", "pending_approval", step.status):
            return
        step.expect("rules that held it", ["wire-approval-50k"], (step.decision or {}).get("rules"))
        step.say("the agent waits (long-polling GET /v1/actions/{id}?wait=...) while a human decides")
        self.approver.approve(auth.action_id, step)
        detail = self.agent.wait_for_decision(auth.action_id, self.approval_timeout)
        step.status = detail.status
        if step.expect("status after the approval", "approved", detail.status):
            step.say("approved: the agent's wait returns with the warrant")
            self._execute(step, auth.action_id, "wire_transfer", payload, digest)

    def confirmation(self, step: Step) -> None:
        grant = self.app.post("/v1/grants", {
            "agent_id": AGENT_ID, "subject": "customer-1001",
            "scopes": [{"scope": "refunds", "decision": "confirm", "resources": ["order:*"],
                        "confirm_prompt_hint": "Refund 200 EUR for order 1001?"}]})
        auth_id = grant["authorization_id"]
        try:
            step.say(f"customer-1001 granted the agent scope 'refunds' on order:* with 'confirm' "
                     f"(grant {auth_id}, created by the app)")
            payload = {"amount_minor": 20_000, "currency": "EUR", "order_id": "1001"}
            step.say(f"the agent asks to refund {eur(20_000)} for order 1001 under that grant")
            auth, digest = self._ask(step, "refund", "Refund order 1001", payload, authorization_id=auth_id,
                                     scope="refunds", resource="order:1001")
            self._decision_line(step)
            if not step.expect("status", "pending_confirmation", step.status):
                return
            nonce = (auth.confirmation or {}).get("confirm_nonce")
            step.say("the end user confirms in the app, and the app's backend reports it with its app key "
                     "(POST /v1/confirmations/{nonce}); the agent's key could not")
            answer = self.app.post(f"/v1/confirmations/{nonce}", {"approved": True})
            step.expect("confirmation", "approved", answer.get("decision"))
            detail = self.agent.wait_for_decision(auth.action_id, 30)
            step.status = detail.status
            if step.expect("status after the confirmation", "approved", detail.status):
                self._execute(step, auth.action_id, "refund", payload, digest)
        finally:
            self.app.delete(f"/v1/grants/{auth_id}")

    def denial(self, step: Step) -> None:
        payload = {"amount_minor": 200_000_000, "currency": "EUR", "beneficiary": "ACME GmbH"}
        step.say(f"the agent asks to wire {eur(200_000_000)}")
        _, digest = self._ask(step, "wire_transfer", "Pay invoice INV-1003", payload)
        self._decision_line(step)
        if step.expect("status", "denied", step.status):
            step.expect("rules that denied it", ["wire-cap-1m"], (step.decision or {}).get("rules"))
            step.say("nothing runs; the denial has a signed receipt too")
            self._verify(step, digest)

    def budget(self, step: Step) -> None:
        payload = {"amount_minor": 950_000, "currency": "EUR", "beneficiary": "ACME GmbH", "reference": "INV-1004"}
        step.say(f"the agent asks to wire {eur(950_000)} more in run {self.run_id} "
                 f"({eur(100_000)} of its {eur(RUN_BUDGET_MINOR)} wire budget already spent)")
        denial, digest = self._ask(step, "wire_transfer", "Pay invoice INV-1004", payload, run_id=self.run_id)
        self._decision_line(step)
        if not step.expect("status", "denied", step.status):
            return
        step.expect("code", "BUDGET_EXHAUSTED", (step.decision or {}).get("code"))
        halt = denial.details.get("halt") or {}
        if halt:
            step.say(f"halt: budget {halt.get('budget_id')}, limit {halt.get('limit')}, consumed "
                     f"{halt.get('consumed')}, requested {halt.get('requested')} (minor units)")
        self._verify(step, digest)

    def diverged(self, step: Step) -> None:
        asked = {"amount_minor": 50_000, "currency": "EUR", "beneficiary": "ACME GmbH", "reference": "INV-1005"}
        step.say(f"the agent asks to wire {eur(50_000)} to ACME GmbH")
        auth, digest = self._ask(step, "wire_transfer", "Pay invoice INV-1005", asked)
        self._decision_line(step)
        if not step.expect("status", "authorized", step.status):
            return
        ran = {**asked, "amount_minor": 500_000}
        step.say(f"but what ran was different: it reports {eur(500_000)}")
        self._execute(step, auth.action_id, "wire_transfer", ran, digest, expected="diverged")


STEPS: tuple[tuple[str, str, Callable[[Story, Step], None]], ...] = (
    ("allow", "Allow: a small wire runs at once", Story.allow),
    ("approval", "Approval: a large wire waits for a human", Story.approval),
    ("confirmation", "Confirmation: the end user says yes to a refund", Story.confirmation),
    ("denial", "Denial: a wire over the cap", Story.denial),
    ("budget", "Budget: the run's wire budget runs out", Story.budget),
    ("diverged", "Divergence: what ran is not what was authorized", Story.diverged),
)


def intent_digest(body: dict[str, Any], salt: str) -> str:
    """The intent digest the evidence signs, computed from the agent's own request: the
    intent as ``POST /v1/actions`` reads it for the demo's agent key, committed with the salt
    the answer names (``sha256(JCS(committed intent))``, evidence/commitments.py)."""
    from warrantor.evidence.canonical import digest
    from warrantor.evidence.commitments import committed_intent
    from warrantor.server.routes.actions import intent_from
    from warrantor.server.schemas import ActionIn

    intent = intent_from(ActionIn.model_validate(body)).with_agent(AGENT_ID).canonical()
    return digest(committed_intent(intent, salt))


def deciding(effect: Any, decision: dict[str, Any]) -> list[str]:
    """The ids of the rules whose effect is the decision's (the others matched too, and lost)."""
    return [str(r["id"]) for r in decision.get("rules") or [] if isinstance(r, dict) and r.get("effect") == effect]


def describe(payload: dict[str, Any]) -> str:
    if "amount_minor" in payload:
        return f"{eur(int(payload['amount_minor']))}" + (f" to {payload['beneficiary']}" if "beneficiary" in payload
                                                         else f" for order {payload.get('order_id')}")
    return json.dumps(payload)


# -- the command ---------------------------------------------------------------------------
def run(args: argparse.Namespace) -> int:
    if (args.server is None) != (args.api_key is None):
        return _usage(args, "--server and --api-key go together (an admin key of the tenant to use)")
    if args.approval_timeout <= 0:
        return _usage(args, f"--approval-timeout: expected a positive number of seconds, got {args.approval_timeout}")
    if args.server is not None:
        console = ConsoleApprover(args.server.rstrip("/"), args.approval_timeout)
        return _tell(args, args.server.rstrip("/"), args.api_key, console, started=None)
    from warrantor.cli.localserver import local_server

    if not args.json:
        print("Starting a server for the demo (temporary data directory, SQLite, a free loopback port)...",
              file=sys.stderr)
    try:
        with local_server() as server:
            demo = server.demo
            approver = SessionApprover(server.url, demo["console_email"], demo["console_password"])
            return _tell(args, server.url, demo["admin_key"], approver, started=server.pid)
    except RuntimeError as exc:
        return _failed(args, str(exc))


def _tell(args: argparse.Namespace, url: str, admin_key: str, approver: SessionApprover | ConsoleApprover,
          started: int | None) -> int:
    steps: list[Step] = []
    where = (f"{url}, started for this demo (pid {started}, temporary data directory; stopped at the end)"
             if started else url)
    if not args.json:
        print(f"Warrantor demo: a scripted payments agent against {where}\n")
    story = Story(url, admin_key, approver, args.approval_timeout)
    try:
        story.set_up()
        if not args.json:
            print("Set-up")
            for line in story.setup_lines:
                print(f"   {line}")
            print()
        with Progress(len(STEPS), "warrantor demo") as bar:
            for n, (key, title, play) in enumerate(STEPS, 1):
                step = Step(key, title)
                bar.note(title)
                try:
                    play(story, step)
                except (ApiError, WarrantorError) as exc:
                    step.problems.append(f"{type(exc).__name__}: {exc}")
                steps.append(step)
                bar.close()
                if not args.json:
                    _print_step(n, step)
                bar.step(key)
    except (ApiError, WarrantorError) as exc:
        return _failed(args, f"set-up failed: {_explain(exc)}", steps)
    finally:
        story.clean_up()
    ok = len(steps) == len(STEPS) and all(s.ok for s in steps)
    if args.json:
        print(json.dumps({"ok": ok, "server": url, "started_server": started is not None, "server_pid": started,
                          "bundle_hash": story.bundle_hash, "run_id": story.run_id,
                          "set_up": story.setup_lines, "clean_up": story.cleanup_lines,
                          "finished_at": datetime.now(UTC).isoformat(),
                          "steps": [s.to_dict() for s in steps]}, indent=2))
    else:
        for line in story.cleanup_lines:
            print(f"Clean-up: {line}")
        passed = sum(s.ok for s in steps)
        print(f"\n{passed} of {len(STEPS)} steps behaved as expected, every receipt verified offline."
              if ok else f"\n{passed} of {len(STEPS)} steps behaved as expected.")
    return EXIT_OK if ok else EXIT_FAILED


def _explain(exc: Exception) -> str:
    body = exc.body if isinstance(exc, ApiError) else None
    problems = body.get("details", {}).get("problems") if isinstance(body, dict) else None
    if not problems:
        return str(exc)
    listed = "; ".join(f"{p.get('message')} ({p.get('code', 'POLICY_INVALID')})" for p in problems)
    hint = (" The demo's bundle names the approver groups finance-leads and comms-reviewers: the tenant needs a "
            "console user in each (the demo tenant of `warrantor serve --demo` has one)."
            if any(p.get("code") == "APPROVER_UNKNOWN" for p in problems) else "")
    return f"the server refused the demo's bundle: {listed}.{hint}"


def _print_step(n: int, step: Step) -> None:
    print(f"{n}. {step.title}  [{'OK' if step.ok else 'UNEXPECTED'}]")
    for line in step.lines:
        print(f"   {line}")
    for problem in step.problems:
        print(f"   !! {problem}")
    print()


def _usage(args: argparse.Namespace, message: str) -> int:
    if args.json:
        print(json.dumps({"ok": False, "error": message}))
    print(f"warrantor demo: {message}", file=sys.stderr)
    return EXIT_USAGE


def _failed(args: argparse.Namespace, message: str, steps: list[Step] | None = None) -> int:
    if args.json:
        print(json.dumps({"ok": False, "error": message, "steps": [s.to_dict() for s in steps or []]}, indent=2))
    print(f"warrantor demo: {message}", file=sys.stderr)
    return EXIT_FAILED
