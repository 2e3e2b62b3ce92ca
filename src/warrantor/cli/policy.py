"""``warrantor policy validate | test | simulate``: a bundle directory before it goes live.

- ``validate DIR``: the checks ``POST /v1/policies`` runs before it looks at the tenant,
  with the same functions: ``service.policies.check_upload`` in the sandboxed child
  (``policy.sandbox.run_isolated``), then ``compile_upload`` (``parse_bundle``, detectors,
  endpoint allowlist) in this process. Every problem is printed with its file, line and
  column. Not checked offline: whether the approvers the bundle names exist in a tenant
  (``APPROVER_UNKNOWN``, ``QUORUM_UNREACHABLE`` at upload).
- ``test DIR CASES.yaml``: each case's intent is parsed as ``POST /v1/actions`` parses it
  (``schemas.ActionIn``, ``intent_from``) and decided by the authorizer's built-in stages
  (detectors, endpoint allowlist, Cedar policy: ``service.authorize.run_stages``) with the
  bundle as the enforcing one, as ``POST /v1/policies/evaluate`` does, without a server.
  Server state is not part of it: the agent registry, grants, runs, budgets and rate limits.
- ``simulate DIR --server URL --api-key KEY``: uploads the bundle (stored in the tenant,
  not activated) and asks the server to replay it over its recorded actions
  (``POST /v1/policies/simulate``); prints each decision that would change.

Exit status: 0 valid / every case passed / simulation ran; 1 problems, a failed or broken
case, or a refusal by the server; 2 usage errors (a missing directory or cases file, a
cases file that is not a list of cases, a bad ``--since``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from warrantor.cli.bundle_dir import BundleDir, BundleDirError, format_hint, format_problem, read_bundle_dir
from warrantor.cli.progress import Progress

if TYPE_CHECKING:
    from warrantor.service.authorization.policies import Compiled

EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE = 0, 1, 2
EFFECTS = ("allow", "deny", "require_approval", "confirm")
OFFLINE_SCOPE = ("detectors, endpoint allowlist and Cedar policies; not evaluated offline: the agent registry, "
                 "grants, runs, budgets and rate limits (server state)")


class UsageError(Exception):
    pass


# -- shared -----------------------------------------------------------------------------
def check_bundle(raw: dict[str, Any]) -> tuple[Compiled | None, list[dict[str, Any]]]:
    """What ``Policies.upload`` checks before it reads the tenant: the sandboxed
    ``check_upload``, then ``compile_upload``. Returns the compiled bundle or the problems."""
    from warrantor.policy.bundle import BundleInvalidError
    from warrantor.policy.sandbox import SandboxError, SandboxLimits, run_isolated
    from warrantor.service.authorization.policies import check_upload, compile_upload

    try:
        answer = run_isolated(check_upload, raw, SandboxLimits())
    except SandboxError as exc:  # the message and code upload answers with
        return None, [{"message": f"cedar: the bundle could not be checked within the policy engine's "
                                  f"limits: {exc.reason}", "code": "POLICY_TOO_COMPLEX"}]
    if answer.get("problems"):
        return None, list(answer["problems"])
    try:
        return compile_upload(raw), []
    except BundleInvalidError as exc:
        return None, exc.problems


def _load(path: Path) -> tuple[BundleDir, Compiled | None, list[dict[str, Any]]]:
    bundle_dir = read_bundle_dir(path)
    if bundle_dir.problems:
        return bundle_dir, None, list(bundle_dir.problems)
    compiled, problems = check_bundle(bundle_dir.raw)
    return bundle_dir, compiled, [bundle_dir.located(p) for p in problems]


def _emit(doc: dict[str, Any]) -> None:
    print(json.dumps(doc, indent=2, default=str))


def _usage(args: argparse.Namespace, message: str) -> int:
    if getattr(args, "json", False):
        _emit({"ok": False, "error": message})
    print(f"warrantor policy {args.policy_command}: {message}", file=sys.stderr)
    return EXIT_USAGE


def _print_problems(problems: list[dict[str, Any]], bundle_dir: BundleDir) -> None:
    for problem in problems:
        print(format_problem(problem))
    for hint in bundle_dir.hints:
        print(format_hint(hint))
    files = len(bundle_dir.files)
    print(f"{len(problems)} problem{'s' if len(problems) != 1 else ''} in the bundle ({files} file"
          f"{'s' if files != 1 else ''} read)")


# -- validate ---------------------------------------------------------------------------
def validate(args: argparse.Namespace) -> int:
    try:
        with Progress(1, "policy validate") as bar:
            bar.note("checking in the sandbox")
            bundle_dir, compiled, problems = _load(args.dir)
            bar.step()
    except BundleDirError as exc:
        return _usage(args, str(exc))
    files = [str(p) for p in bundle_dir.files]
    if compiled is None:
        if args.json:
            _emit({"ok": False, "dir": str(args.dir), "files": files, "problems": problems,
                   "hints": bundle_dir.hints})
        else:
            _print_problems(problems, bundle_dir)
        return EXIT_PROBLEMS
    bundle = compiled.bundle
    located = [(p, bundle_dir.policy_location(p.line)) for p in bundle.policies]
    policies = [{"id": p.id, "effect": p.effect, "reason": p.reason, "approvers": list(p.approvers),
                 "file": str(loc.path), "line": loc.line} for p, loc in located]
    approvers = sorted({a for p in bundle.policies for a in p.approvers}
                       | set(bundle.config.approvals.default_approvers))
    if args.json:
        _emit({"ok": True, "dir": str(args.dir), "files": files, "bundle_hash": bundle.hash,
               "policies": policies, "approvers": approvers, "problems": []})
        return EXIT_OK
    print(f"{args.dir}: valid, {len(policies)} policies, bundle {bundle.hash}")
    wheres = [f"{loc.path.name}:{loc.line}" for _, loc in located]
    width = max((len(w) for w in wheres), default=0)
    for (p, _), where in zip(located, wheres, strict=True):
        print(f"  {where.ljust(width)}  {p.id:<28} {p.effect:<17} {p.reason}")
    if approvers:
        print(f"Approvers named: {', '.join(approvers)}; upload checks that the tenant has them.")
    return EXIT_OK


# -- test -------------------------------------------------------------------------------
def load_cases(path: Path) -> list[dict[str, Any]]:
    """The cases file: a YAML list of ``{name, intent, expect}``; raises :class:`UsageError`."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"{path}: cannot read: {exc}") from exc
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: invalid YAML: {exc}") from exc
    if not isinstance(data, list) or not data:
        raise UsageError(f"{path}: expected a non-empty YAML list of cases ({{name, intent, expect}}), "
                         f"got {type(data).__name__}")
    names: set[str] = set()
    for i, case in enumerate(data, 1):
        _check_case(f"{path}: case {i}", case, names)
    return data


def _check_case(where: str, case: Any, names: set[str]) -> None:
    if not isinstance(case, dict):
        raise UsageError(f"{where}: expected a mapping with name, intent, expect")
    unknown = sorted(set(case) - {"name", "intent", "expect"})
    if unknown:
        raise UsageError(f"{where}: unknown keys {unknown}; expected name, intent, expect")
    name = case.get("name")
    if not isinstance(name, str) or not name.strip():
        raise UsageError(f"{where}: expected a non-empty name")
    if name in names:
        raise UsageError(f"{where}: duplicate name {name!r}")
    names.add(name)
    where = f"{where} ({name})"
    if not isinstance(case.get("intent"), dict):
        raise UsageError(f"{where}: expected intent to be a mapping (action_type, payload, ...)")
    expect = case.get("expect")
    if not isinstance(expect, dict):
        raise UsageError(f"{where}: expected expect to be a mapping with effect")
    unknown = sorted(set(expect) - {"effect", "rules", "reason", "stage"})
    if unknown:
        raise UsageError(f"{where}: unknown expect keys {unknown}; expected effect, rules, reason, stage")
    if expect.get("effect") not in EFFECTS:
        raise UsageError(f"{where}: expected expect.effect in {', '.join(EFFECTS)}, got {expect.get('effect')!r}")
    rules = expect.get("rules")
    if rules is not None and (not isinstance(rules, list) or not all(isinstance(r, str) for r in rules)):
        raise UsageError(f"{where}: expected expect.rules to be a list of rule ids")
    for key in ("reason", "stage"):
        if expect.get(key) is not None and not isinstance(expect[key], str):
            raise UsageError(f"{where}: expected expect.{key} to be a string")


def evaluate_case(compiled: Compiled, intent_doc: dict[str, Any]) -> dict[str, Any]:
    """The decision the server's built-in stages reach for ``intent_doc`` under ``compiled``
    as the enforcing bundle: ``{effect, stage, reason, rules, matched}``. Raises
    ``UsageError`` for an intent the API would refuse or that needs server state."""
    from pydantic import ValidationError as SchemaError

    from warrantor.errors import WarrantorError
    from warrantor.server.routes.actions import intent_from
    from warrantor.server.schemas import ActionIn
    from warrantor.service.authorization.authorize import BUILTIN_STAGES, Facts, run_stages
    from warrantor.service.authorization.policies import ActivePolicy

    try:
        body = ActionIn.model_validate(intent_doc)
    except SchemaError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise UsageError(f"intent.{field}: {first['msg']} (POST /v1/actions would answer 422)") from None
    needs = [f for f in ("authorization_id", "run_id") if getattr(body, f)]
    if needs:
        raise UsageError(f"intent.{needs[0]}: needs server state (a grant, a run); test it against a server")
    intent = intent_from(body)
    facts = Facts("offline", None, {"enforce": ActivePolicy(compiled, "enforce", datetime.now(UTC))})
    try:
        draft = run_stages(intent, facts, list(BUILTIN_STAGES))
    except WarrantorError as exc:
        raise UsageError(f"{exc.code}: {exc} (POST /v1/actions would answer {exc.status})") from None
    effect = draft.effect.value
    return {
        "effect": effect,
        "stage": draft.stage,
        "reason": draft.reason,
        "rules": [r["id"] for r in draft.rules if r.get("effect") == effect],
        "matched": [r["id"] for r in draft.rules],
        "evaluation_hash": draft.evaluation_hash,
    }


def compare(expect: dict[str, Any], got: dict[str, Any]) -> list[str]:
    """Each way ``got`` differs from ``expect``; ``rules`` are the deciding rules, as a set."""
    out = []
    if expect["effect"] != got["effect"]:
        out.append(f"effect: expected {expect['effect']}, got {got['effect']}")
    if expect.get("rules") is not None and sorted(set(expect["rules"])) != sorted(set(got["rules"])):
        out.append(f"rules: expected {sorted(set(expect['rules']))}, got {sorted(set(got['rules']))}")
    for key in ("reason", "stage"):
        if expect.get(key) is not None and expect[key] != got[key]:
            out.append(f"{key}: expected {expect[key]}, got {got[key]}")
    return out


def test(args: argparse.Namespace) -> int:
    try:
        cases = load_cases(args.cases)
        bundle_dir, compiled, problems = _load(args.dir)
    except (UsageError, BundleDirError) as exc:
        return _usage(args, str(exc))
    if compiled is None:
        if args.json:
            _emit({"ok": False, "dir": str(args.dir), "problems": problems, "hints": bundle_dir.hints,
                   "cases": []})
        else:
            print(f"{args.dir}: the bundle is invalid, no case was run")
            _print_problems(problems, bundle_dir)
        return EXIT_PROBLEMS
    results = []
    with Progress(len(cases), "policy test") as bar:
        for case in cases:
            result: dict[str, Any] = {"name": case["name"], "expected": case["expect"]}
            try:
                got = evaluate_case(compiled, case["intent"])
            except UsageError as exc:
                result.update(result="error", error=str(exc), got=None, mismatches=[])
            else:
                mismatches = compare(case["expect"], got)
                result.update(result="fail" if mismatches else "pass", got=got, mismatches=mismatches)
            results.append(result)
            bar.step(case["name"])
    counts = {k: sum(r["result"] == k for r in results) for k in ("pass", "fail", "error")}
    notes = _offline_notes(compiled)
    ok = counts["pass"] == len(results)
    if args.json:
        _emit({"ok": ok, "dir": str(args.dir), "cases_file": str(args.cases), "bundle_hash": compiled.bundle.hash,
               "evaluated": OFFLINE_SCOPE, "notes": notes, "passed": counts["pass"], "failed": counts["fail"],
               "errors": counts["error"], "cases": results})
    else:
        print(f"policy test: bundle {compiled.bundle.hash[:12]} ({args.dir}), {len(results)} cases from {args.cases}")
        print(f"Evaluated offline: {OFFLINE_SCOPE}.")
        for note in notes:
            print(f"Note: {note}")
        print()
        _print_table(results)
        print(f"\n{counts['pass']} passed, {counts['fail']} failed, {counts['error']} errors")
    return EXIT_OK if ok else EXIT_PROBLEMS


def _offline_notes(compiled: Compiled) -> list[str]:
    config = compiled.bundle.config
    notes = []
    if config.agents.strict or config.agents.on_instruction_mismatch:
        notes.append("this bundle checks the agent registry (agents.strict / on_instruction_mismatch); "
                     "those checks need a server and are not part of these results")
    if config.budgets or config.rate_limits.per_key or config.rate_limits.per_agent:
        notes.append("this bundle has budgets or rate limits: they are write-time guards on a server, "
                     "not part of these results")
    if config.endpoints.pins:
        notes.append("this bundle pins TLS certificates: a case with a pinned endpoint_url connects to "
                     "that host to check its certificate, as the server does")
    return notes


def _describe(d: dict[str, Any] | None) -> str:
    if d is None:
        return "-"
    text = str(d["effect"])
    if d.get("stage"):
        text += f" ({d['stage']})"
    if d.get("reason"):
        text += f" {d['reason']}"
    if d.get("rules"):
        text += f" [{', '.join(d['rules'])}]"
    return text


def _print_table(results: Sequence[dict[str, Any]]) -> None:
    rows = [(r["result"].upper(), r["name"], _describe(r["expected"]), _describe(r["got"])) for r in results]
    head = ("RESULT", "CASE", "EXPECTED", "GOT")
    widths = [max(len(row[i]) for row in [head, *rows]) for i in range(3)]
    for row, result in zip([head, *rows], [None, *results], strict=True):
        print("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:3])) + "  " + row[3])
        if result is None:
            continue
        for line in result["mismatches"] + ([result["error"]] if result.get("error") else []):
            print(" " * (widths[0] + 2) + f"-> {line}")


# -- simulate ---------------------------------------------------------------------------
def simulate(args: argparse.Namespace) -> int:
    from warrantor.cli.api import ApiError
    from warrantor.domain.clock import parse_time

    try:
        bundle_dir = read_bundle_dir(args.dir)
        if args.since is not None:
            parse_time(args.since)
    except BundleDirError as exc:
        return _usage(args, str(exc))
    except ValueError:
        return _usage(args, f"--since: expected an RFC 3339 timestamp (2026-11-15T00:00:00Z), got {args.since!r}")
    if bundle_dir.problems:
        return _refused(args, bundle_dir, bundle_dir.problems, "the bundle directory is incomplete")
    try:
        uploaded, report = _upload_and_replay(args, bundle_dir)
    except ApiError as exc:
        problems = exc.body.get("details", {}).get("problems") if isinstance(exc.body, dict) else None
        if exc.code == "POLICY_INVALID" and problems:
            return _refused(args, bundle_dir, [bundle_dir.located(p) for p in problems],
                            f"{args.server} refused the bundle")
        if args.json:
            _emit({"ok": False, "server": args.server,
                   "error": {"status": exc.status, "code": exc.code, "detail": exc.detail}})
        print(f"warrantor policy simulate: {exc.code}: {exc.detail}", file=sys.stderr)
        return EXIT_PROBLEMS
    if args.json:
        _emit({"ok": True, "server": args.server, "uploaded": {"bundle_hash": uploaded["bundle_hash"],
                                                               "created": uploaded.get("created"),
                                                               "activated": False}, **report})
    else:
        _print_simulation(args, uploaded, report)
    return EXIT_OK


def _upload_and_replay(args: argparse.Namespace, bundle_dir: BundleDir) -> tuple[dict[str, Any], dict[str, Any]]:
    """``POST /v1/policies`` (stored, not activated), then ``POST /v1/policies/simulate``."""
    from warrantor.cli.api import Api

    with Api(args.server, args.api_key) as api, Progress(2, "policy simulate") as bar:
        bar.note("uploading the bundle")
        uploaded: dict[str, Any] = api.post("/v1/policies", bundle_dir.raw)
        bar.step("uploaded")
        body: dict[str, Any] = {"bundle_hash": uploaded["bundle_hash"]}
        if args.since is not None:
            body["from"] = args.since
        bar.note("replaying recorded actions")
        report: dict[str, Any] = api.post("/v1/policies/simulate", body)
        bar.step("replayed")
    return uploaded, report


def _refused(args: argparse.Namespace, bundle_dir: BundleDir, problems: list[dict[str, Any]], why: str) -> int:
    if args.json:
        _emit({"ok": False, "dir": str(args.dir), "error": why, "problems": problems,
               "hints": bundle_dir.hints})
    else:
        print(f"{args.dir}: {why}")
        _print_problems(problems, bundle_dir)
    return EXIT_PROBLEMS


def _rule_text(d: dict[str, Any]) -> str:
    text = str(d.get("effect"))
    extra = [str(x) for x in (d.get("stage"), d.get("reason")) if x]
    if extra:
        text += f" ({', '.join(extra)})"
    if d.get("rules"):
        text += f" [{', '.join(d['rules'])}]"
    return text


def _print_simulation(args: argparse.Namespace, uploaded: dict[str, Any], report: dict[str, Any]) -> None:
    stored = "stored" if uploaded.get("created") else "already stored"
    print(f"Bundle {uploaded['bundle_hash']} {stored} on {args.server} (not activated).")
    since = f" since {report['from']}" if report.get("from") else ""
    print(f"Replayed {report['replayed']} recorded actions{since}; {report['not_replayed']} not replayed "
          f"(stopped by a budget or rate limit, which depend on what ran at the time).")
    if not report["changed"]:
        print("No decision would change.")
    else:
        print(f"{report['changed']} decision{'s' if report['changed'] != 1 else ''} would change:")
        for transition, n in report["transitions"].items():
            print(f"  {transition.replace('->', ' -> '):<34} {n}")
        print()
        rows = [(c["action_id"], _rule_text(c["old"]), _rule_text(c["new"])) for c in report["changes"]]
        head = ("ACTION", "RECORDED", "WITH THIS BUNDLE")
        widths = [max(len(r[i]) for r in [head, *rows]) for i in range(2)]
        for row in [head, *rows]:
            print(f"  {row[0].ljust(widths[0])}  {row[1].ljust(widths[1])}  {row[2]}")
    if report.get("rules"):
        print("\nRules of this bundle over the replayed actions:")
        width = max(len(r) for r in report["rules"])
        print(f"  {'RULE'.ljust(width)}  MATCHED  CHANGED")
        for rule, n in report["rules"].items():
            print(f"  {rule.ljust(width)}  {n['matched']:>7}  {n['changed']:>7}")
