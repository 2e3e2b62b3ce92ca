"""``warrantor init``: a new deployment in one command, with its first tenant and keys.

The set-up is the server's own (``bootstrap.prepare``: data directory, migrations, signing
key, operator key) and ``bootstrap.create_tenant_with_keys`` (the tenant, an admin key and
an agent key bound to one agent). The keys' secrets are printed once, here, and stored
only as hashes; ``<data dir>/init.json`` (no secrets) marks the directory as initialized.

A directory is refused, with nothing changed, when it already holds a Warrantor
deployment: ``init.json``, a SQLite database, signing keys or an operator key file, or a
database (``--database-url``) that already has an operator key. ``init`` never prints or
rotates existing keys. The marker is created exclusively before any set-up, so two
``init`` runs on one directory cannot both proceed.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from warrantor.cli.progress import Progress

if TYPE_CHECKING:
    from warrantor.server.settings import Settings

EXIT_OK, EXIT_REFUSED, EXIT_USAGE = 0, 1, 2
MARKER = "init.json"
# What a data directory holds once any Warrantor process has used it.
DEPLOYMENT_FILES = ("warrantor.db", "keys", "tsa", "operator.key", "demo.json")


class Refused(Exception):  # noqa: N818 - a refusal the user is told about, not a bug
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def run(args: argparse.Namespace) -> int:
    from pydantic import ValidationError as SchemaError

    from warrantor.server.schemas import ApiKeyIn, TenantIn
    from warrantor.server.settings import Settings

    try:
        settings = Settings.from_env(data_dir=args.data_dir, database_url=args.database_url).with_(demo=False)
    except ValueError as exc:
        return _usage(args, str(exc))
    # the same rules as POST /v1/tenants and POST /v1/tenants/{id}/api-keys
    for flag, model, body in (("--tenant", TenantIn, {"name": args.tenant}),
                              ("--agent", ApiKeyIn, {"role": "agent", "agent_id": args.agent})):
        try:
            model.model_validate(body)
        except SchemaError as exc:
            problem = exc.errors()[0]
            return _usage(args, f"{flag}: expected a value the API accepts ({problem['msg']}), "
                                f"got {problem['input']!r}")
    try:
        result = initialize(settings, tenant_name=args.tenant, agent_id=args.agent)
    except Refused as exc:
        if args.json:
            print(json.dumps({"ok": False, "code": exc.code, "message": exc.message}, indent=2))
        else:
            print(f"warrantor init: {exc.message}", file=sys.stderr)
        return EXIT_REFUSED
    if args.json:
        print(json.dumps({"ok": True, **result}, indent=2))
    else:
        print(_human(result), end="")
    return EXIT_OK


def _usage(args: argparse.Namespace, message: str) -> int:
    if args.json:
        print(json.dumps({"ok": False, "code": "USAGE", "message": message}, indent=2))
    print(f"warrantor init: {message}", file=sys.stderr)
    return EXIT_USAGE


def initialize(settings: Settings, *, tenant_name: str, agent_id: str) -> dict[str, Any]:
    """Set up ``settings.data_dir`` (and its database); raises :class:`Refused`."""
    from warrantor.cli.bootstrap import create_tenant_with_keys, prepare
    from warrantor.domain.clock import isoformat

    data_dir: Path = settings.data_dir
    _refuse_if_used(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    marker = data_dir / MARKER
    try:
        fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise _already(marker) from None
    with os.fdopen(fd, "w") as fh:
        fh.write(json.dumps({"status": "initializing"}) + "\n")
    with Progress(3, "warrantor init") as bar:
        if settings.database_url:
            bar.note("checking the database")
            try:
                _refuse_if_database_used(settings.database_url)
            except Refused:
                marker.unlink()
                raise
        bar.note("migrations, signing key, operator key")
        prepared = io.StringIO()
        services = prepare(settings, out=prepared)  # the server's own first start
        bar.step("database migrated, keys generated")
        try:
            operator_file = data_dir / "operator.key"
            operator_key = operator_file.read_text().strip() if operator_file.exists() else None
            tenant, keys = create_tenant_with_keys(services, tenant_name, {"admin": None, "agent": agent_id})
            bar.step(f"tenant {tenant.id}")
            signing_key = services.deps.keyring.current().keyid
            bar.step("keys created")
        finally:
            services.store.close()
    (admin, admin_secret), (agent, agent_secret) = keys["admin"], keys["agent"]
    record = {
        "initialized_at": isoformat(tenant.created_at),
        "tenant_id": tenant.id,
        "tenant_name": tenant.name,
        "admin_key_id": admin.id,
        "agent_key_id": agent.id,
        "agent_id": agent_id,
        "signing_key_id": signing_key,
    }
    _write_private(marker, json.dumps(record, indent=2) + "\n")
    return {
        "data_dir": str(data_dir.resolve()),
        "database": "postgresql" if settings.database_url else "sqlite",
        "signing_key_id": signing_key,
        "operator_key": operator_key,
        "operator_key_file": str(operator_file.resolve()) if operator_key else None,
        "tenant": {"tenant_id": tenant.id, "name": tenant.name},
        "admin_key": {"key_id": admin.id, "role": "admin", "key": admin_secret},
        "agent_key": {"key_id": agent.id, "role": "agent", "agent_id": agent_id, "key": agent_secret},
        "shown_once": True,
    }


def _refuse_if_used(data_dir: Path) -> None:
    marker = data_dir / MARKER
    if marker.exists():
        raise _already(marker)
    found = [name for name in DEPLOYMENT_FILES if (data_dir / name).exists()]
    if found:
        raise Refused(
            "DATA_DIR_IN_USE",
            f"{data_dir} already holds a Warrantor deployment ({', '.join(found)}), probably from "
            f"`warrantor serve`; init sets up a new one only and never shows or rotates existing keys. "
            f"Use another --data-dir, or create keys with that deployment's operator or admin key.",
        )


def _refuse_if_database_used(url: str) -> None:
    from warrantor.store import Store

    store = Store(url)
    try:
        store.migrate()
        with store.read() as repo:
            used = repo.count_operator_keys() > 0
    finally:
        store.close()
    if used:
        raise Refused(
            "DATABASE_IN_USE",
            "the database at --database-url already belongs to a Warrantor deployment (it has an operator "
            "key); init sets up a new one only and never shows or rotates existing keys.",
        )


def _already(marker: Path) -> Refused:
    try:
        info = json.loads(marker.read_text())
    except (OSError, ValueError):
        info = {}
    if info.get("tenant_id"):
        when = f"on {info.get('initialized_at')}: tenant {info['tenant_id']} ({info.get('tenant_name')})"
    else:
        status = info.get("status", "nothing readable")
        when = f"but did not finish ({marker} says {status}); remove the directory to start over"
    return Refused(
        "ALREADY_INITIALIZED",
        f"{marker.parent} is already initialized: warrantor init ran there {when}. Its keys were shown once "
        f"and are not shown again, nor rotated; create new keys with the admin key (POST /v1/api-keys).",
    )


def _write_private(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    tmp.replace(path)


def _human(r: dict[str, Any]) -> str:
    data_dir = r["data_dir"]
    database = "PostgreSQL (--database-url)" if r["database"] == "postgresql" else f"SQLite, {data_dir}/warrantor.db"
    lines = [
        f"Initialized {data_dir}",
        f"  database      {database}, migrated",
        f"  signing key   {r['signing_key_id']} (Ed25519, private key under {data_dir}/keys, mode 0600)",
    ]
    if r["operator_key"]:
        lines.append(f"  operator key  {r['operator_key']}")
        lines.append(f"                (creates tenants and their keys; also saved in {r['operator_key_file']})")
    else:
        lines.append("  operator key  from WARRANTOR_OPERATOR_KEY (not shown)")
    tenant, admin, agent = r["tenant"], r["admin_key"], r["agent_key"]
    lines += [
        "",
        f"Tenant {tenant['name']!r} ({tenant['tenant_id']})",
        f"  admin key  {admin['key']}",
        "             manages the tenant: policies, keys, users, webhooks",
        f"  agent key  {agent['key']}",
        f"             bound to agent {agent['agent_id']!r}: authorizes and notarizes its actions",
        "",
        "These two keys are shown ONCE, here: Warrantor stores only their hashes. Copy them now.",
        "Running `warrantor init` again on this directory will refuse; it never shows or rotates keys.",
        "",
        "Next:",
        f"  warrantor serve --data-dir {data_dir}",
        "  warrantor policy validate examples/policy/payments     # then upload and activate it",
        "                                                         # with the admin key (docs/cli.md)",
    ]
    return "\n".join(lines) + "\n"
