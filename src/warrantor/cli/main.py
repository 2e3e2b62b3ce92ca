"""``warrantor``: the Warrantor server and the tools around it (docs/cli.md).

Each subcommand is a small function; settings come from ``WARRANTOR_*`` variables and
flags, through the same ``Settings`` object the server uses.
"""


from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from warrantor import __version__

DESCRIPTION = ("Warrantor: authorize what AI agents do, put humans in the loop, and prove it afterwards. "
               "New here? `warrantor init`, then `warrantor serve`; or `warrantor demo` for the whole story "
               "on a throwaway server.")


def _serve(args: argparse.Namespace) -> int:
    import os

    import uvicorn

    from warrantor.cli.bootstrap import prepare
    from warrantor.server.app import create_app
    from warrantor.server.settings import Settings

    settings = Settings.from_env(
        host=args.host, port=args.port, data_dir=args.data_dir, database_url=args.database_url,
        demo=True if args.demo else None, workers=args.workers,
    )
    if settings.workers > 1 and not settings.database_url:
        print("warrantor serve: several workers need PostgreSQL (--database-url); SQLite has a single writer",
              file=sys.stderr)
        return 2
    from warrantor.cli.ports import listen_problem

    if (problem := listen_problem(settings.host, settings.port)) is not None:  # before anything is created
        print(f"warrantor serve: {problem}", file=sys.stderr)
        return 1
    from warrantor.store.db import ServerLockedError, lock_sqlite_server

    try:  # held until this process ends: one server per SQLite database
        server_lock = lock_sqlite_server(settings.effective_database_url)
    except ServerLockedError as exc:
        print(f"warrantor serve: {exc.message}", file=sys.stderr)
        return 1
    services = prepare(settings, out=sys.stdout)  # migrations, keys, demo: once, before any worker
    if settings.workers == 1:
        app = create_app(settings, services=services)
        uvicorn.run(app, host=settings.host, port=settings.port, log_level=args.log_level, access_log=False)
        del server_lock
        return 0
    services.store.close()
    os.environ.update(settings.with_(data_dir=settings.data_dir.resolve()).to_env())
    uvicorn.run("warrantor.server.app:app_from_env", factory=True, workers=settings.workers,
                host=settings.host, port=settings.port, log_level=args.log_level, access_log=False)
    return 0


def _keys(args: argparse.Namespace) -> int:
    from warrantor.server.app import open_services
    from warrantor.server.settings import Settings

    settings = Settings.from_env(data_dir=args.data_dir, database_url=args.database_url)
    services = open_services(settings)
    try:
        if args.keys_command == "rotate":
            keyid = services.rotate_signing_key()
            print(f"new signing key {keyid}; restart running servers to sign with it")
        else:
            for key in services.deps.keyring.trusted():
                until = key.not_after.isoformat() if key.not_after else "-"
                print(f"{key.keyid}  {key.not_before.isoformat()}  {until}")
            for finding in services.deps.keyring.row_findings():
                print(f"warning: {finding.detail}", file=sys.stderr)
    finally:
        services.store.close()
    return 0


def _verify(args: argparse.Namespace) -> int:
    from warrantor.verify.cli import main as verify_main

    if args.export is not None:
        from warrantor.cli.export_verify import run as verify_export

        if args.bundle or args.replay or args.pin:
            print("warrantor verify: --export takes no bundles, --replay or --pin", file=sys.stderr)
            return 2
        return verify_export(args)
    if not args.bundle:
        print("warrantor verify: give one or more bundles, or --export FILE", file=sys.stderr)
        return 2
    if args.replay:
        from warrantor.cli.replay import run

        if len(args.bundle) != 1:
            print("warrantor verify: --replay takes one bundle", file=sys.stderr)
            return 2
        return run(argparse.Namespace(**{**vars(args), "bundle": args.bundle[0]}))

    argv = [*map(str, args.bundle), "--trust", str(args.trust)]
    if args.pin:
        argv += ["--pin", str(args.pin)]
    if args.json:
        argv.append("--json")
    return verify_main(argv)


def _init(args: argparse.Namespace) -> int:
    from warrantor.cli.init import run

    return run(args)


def _policy(args: argparse.Namespace) -> int:
    from warrantor.cli import policy

    commands = {"validate": policy.validate, "test": policy.test, "simulate": policy.simulate}
    return commands[args.policy_command](args)


def _demo(args: argparse.Namespace) -> int:
    from warrantor.cli.demo import run

    return run(args)


def _audit(args: argparse.Namespace) -> int:
    from warrantor.cli.audit import run

    return run(args)


def _mcp_gateway(args: argparse.Namespace) -> int:
    import logging

    import anyio

    try:
        from warrantor.mcp_gateway.config import load_config
        from warrantor.mcp_gateway.serve import serve_http, serve_stdio
    except ImportError as exc:
        print(f"warrantor mcp-gateway needs the mcp extra (pip install 'warrantor[mcp]'): {exc}", file=sys.stderr)
        return 2
    from warrantor.policy.config import ConfigError

    # stdout is the MCP channel in stdio mode: everything else goes to stderr.
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"{args.config}: {problem}", file=sys.stderr)
        return 2
    if args.http:
        host, _, port = args.http.rpartition(":")
        if not host or not port.isdigit():
            print(f"warrantor mcp-gateway: expected --http HOST:PORT, got {args.http!r}", file=sys.stderr)
            return 2
        try:
            anyio.run(serve_http, config, host.strip("[]"), int(port))
        except ValueError as exc:
            print(f"warrantor mcp-gateway: {exc}", file=sys.stderr)
            return 2
        return 0
    anyio.run(serve_stdio, config)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="warrantor", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"warrantor {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the HTTP server",
                           description="Run the Warrantor HTTP API and console. On first start it creates the data "
                                       "directory, the signing key and the operator key (docs/operations.md).")
    serve.add_argument("--host", default=None, help="listen address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="listen port (default 8080)")
    serve.add_argument("--data-dir", type=Path, default=None, help="keys and SQLite database (default ./.warrantor)")
    serve.add_argument("--database-url", default=None, help="postgresql://... to use PostgreSQL instead of SQLite")
    serve.add_argument("--demo", action="store_true", help="create a demo tenant, keys and the payments policy")
    serve.add_argument("--workers", type=int, default=None, help="server processes (default 1; >1 needs PostgreSQL)")
    serve.add_argument("--log-level", default="info", help="uvicorn's log level (default info)")
    serve.set_defaults(func=_serve)

    _add_init(sub)
    _add_demo(sub)

    keys = sub.add_parser("keys", help="list or rotate signing keys",
                          description="List the signing keys with their validity, or rotate to a new one "
                                      "(the old key stays valid for evidence it signed).")
    keys.add_argument("keys_command", choices=["list", "rotate"], help="list the keys, or rotate to a new one")
    keys.add_argument("--data-dir", type=Path, default=None, help="the server's data directory (default ./.warrantor)")
    keys.add_argument("--database-url", default=None, help="postgresql://... when the server uses PostgreSQL")
    keys.set_defaults(func=_keys)

    _add_policy(sub)

    verify = sub.add_parser("verify", help="verify proof bundles offline",
                            description="Verify proof bundles (GET /v1/receipts/{id}/bundle) offline against a "
                                        "trust bundle (GET /v1/trust), check by check; exit 1 on any failure.")
    verify.add_argument("bundle", type=Path, nargs="*", help="one or more proof bundles (one with --replay)")
    verify.add_argument("--export", type=Path, default=None, metavar="FILE",
                        help="an audit export (GET /v1/export): every record verified, gaps named (docs/records.md)")
    verify.add_argument("--trust", type=Path, required=True, help="trust bundle (GET /v1/trust)")
    verify.add_argument("--pin", type=Path, default=None,
                        help="an earlier trust bundle: --trust counts only as far as signed rotations lead")
    verify.add_argument("--json", action="store_true", help="print the report as JSON")
    verify.add_argument("--replay", action="store_true", help="re-evaluate the recorded policy decision")
    verify.add_argument("--policy", type=Path, default=None, help="archived bundle (GET /v1/policies/{hash})")
    verify.add_argument("--intent", type=Path, default=None, help="the intent JSON (receipts carry only its digest)")
    verify.add_argument("--server", default=None, help="fetch the policy from this server (with --api-key)")
    verify.add_argument("--api-key", default=None, help="an admin or auditor key for --server")
    verify.set_defaults(func=_verify)

    gateway = sub.add_parser("mcp-gateway", help="authorize every MCP tools/call of one or more MCP servers",
                             description="An MCP server in front of other MCP servers: every tools/call is a "
                                         "Warrantor action (docs/mcp.md).")
    gateway.add_argument("--config", type=Path, required=True, help="the gateway's YAML file (docs/mcp.md)")
    mode = gateway.add_mutually_exclusive_group(required=True)
    mode.add_argument("--stdio", action="store_true", help="serve one MCP client over stdin/stdout")
    mode.add_argument("--http", metavar="HOST:PORT", help="serve MCP clients over Streamable HTTP at /mcp")
    gateway.add_argument("--log-level", default="warning", help="log level on stderr (default warning)")
    gateway.set_defaults(func=_mcp_gateway)

    from warrantor.cli.audit import build_parser as audit_parser

    audit = sub.add_parser("audit", parents=[audit_parser(add_help=False)],
                           help="monitor a transparency log: consistency and inclusion",
                           description="Monitor a server's transparency log: each checkpoint consistent with the "
                                       "last one seen (kept in --state), entries included.")
    audit.set_defaults(func=_audit)
    return parser


def _add_init(sub: Any) -> None:
    init = sub.add_parser(
        "init", help="set up a data directory: keys, database, a first tenant and its keys",
        description="Create the data directory, the signing key, the database (migrated) and the operator key, "
                    "then a first tenant with an admin key and an agent key. The keys are printed once. "
                    "Refuses a directory or database that already holds a deployment; never shows or rotates "
                    "existing keys.")
    init.add_argument("--data-dir", type=Path, default=None, help="where keys and SQLite live (default ./.warrantor)")
    init.add_argument("--database-url", default=None, help="postgresql://... to use PostgreSQL instead of SQLite")
    init.add_argument("--tenant", default="Default", metavar="NAME", help="the first tenant's name (default Default)")
    init.add_argument("--agent", default="agent", metavar="AGENT_ID",
                      help="the agent the agent key is bound to (default agent)")
    init.add_argument("--json", action="store_true", help="print the result (keys included) as JSON")
    init.set_defaults(func=_init)


def _add_demo(sub: Any) -> None:
    demo = sub.add_parser(
        "demo", help="a scripted agent against a server: allow, approval, confirmation, denial, budget, divergence",
        description="Run a scripted payments agent through every kind of decision and verify each receipt "
                    "offline. Without --server it starts its own server on a free loopback port with a temporary "
                    "data directory and stops it at the end. With --server it uses that server's tenant (the "
                    "admin key's): it uploads and enforces its own bundle for the run, then re-activates the "
                    "bundle that was enforced before. Exit 0 only if every step behaved as expected.")
    demo.add_argument("--server", default=None, metavar="URL", help="an existing server (needs --api-key)")
    demo.add_argument("--api-key", default=None, metavar="ADMIN_KEY", help="an admin key of the tenant to use")
    demo.add_argument("--approval-timeout", type=float, default=300.0, metavar="SECONDS",
                      help="with --server: how long to wait for a human to approve the held wire (default 300)")
    demo.add_argument("--json", action="store_true", help="print the story as JSON")
    demo.set_defaults(func=_demo)


def _add_policy(sub: Any) -> None:
    policy = sub.add_parser(
        "policy", help="validate, test and simulate a policy bundle directory",
        description="A bundle directory holds *.cedar policies, exactly one *.cedarschema and an optional "
                    "warrantor.yaml (docs/cli.md).")
    commands = policy.add_subparsers(dest="policy_command", required=True, metavar="COMMAND")
    validate = commands.add_parser(
        "validate", help="the checks an upload runs, each problem with file:line:column",
        description="Run the checks POST /v1/policies runs on the bundle in DIR and print each problem with its "
                    "file, line and column. Exit 0 when valid, 1 on problems, 2 on usage errors. Approver names "
                    "are checked against the tenant only at upload.")
    validate.add_argument("dir", type=Path, metavar="DIR", help="the bundle directory")
    validate.add_argument("--json", action="store_true", help="print the result as JSON")
    validate.set_defaults(func=_policy)
    test = commands.add_parser(
        "test", help="evaluate test cases offline and print a pass/fail table",
        description="Decide each case of CASES.yaml (a list of {name, intent, expect: {effect, rules?, reason?, "
                    "stage?}}) with the server's own detectors, endpoint allowlist and Cedar engine, offline, and "
                    "compare. Exit 0 when every case passes, 1 otherwise, 2 on usage errors.")
    test.add_argument("dir", type=Path, metavar="DIR", help="the bundle directory")
    test.add_argument("cases", type=Path, metavar="CASES.yaml", help="the test cases")
    test.add_argument("--json", action="store_true", help="print the results as JSON")
    test.set_defaults(func=_policy)
    simulate = commands.add_parser(
        "simulate", help="replay the bundle over a server's recorded actions",
        description="Upload the bundle in DIR to a server (stored, not activated) and replay it over the "
                    "tenant's recorded actions (POST /v1/policies/simulate); print every decision that would "
                    "change. Writes nothing else.")
    simulate.add_argument("dir", type=Path, metavar="DIR", help="the bundle directory")
    simulate.add_argument("--server", required=True, metavar="URL", help="the Warrantor server")
    simulate.add_argument("--api-key", required=True, metavar="KEY", help="an admin key of the tenant")
    simulate.add_argument("--since", default=None, metavar="ISO",
                          help="replay actions recorded from this RFC 3339 time (default: the oldest)")
    simulate.add_argument("--json", action="store_true", help="print the report as JSON")
    simulate.set_defaults(func=_policy)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
