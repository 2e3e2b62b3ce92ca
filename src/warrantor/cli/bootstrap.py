"""First start: operator key, and with ``--demo`` a demo tenant with keys and a policy.

The demo credentials (API keys per role, and a console approver's e-mail and password) are
written to ``<data_dir>/demo.json`` (mode 0600) so that the README's walkthrough can read
them; nothing secret is printed.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Mapping
from typing import TextIO

from warrantor.demo import demo_bundle
from warrantor.domain.model import ApiKey, Tenant
from warrantor.server.app import open_services
from warrantor.server.settings import Settings
from warrantor.service.services import Services


def prepare(settings: Settings, out: TextIO) -> Services:
    services = open_services(settings)
    generated = services.tenancy.bootstrap_operator(settings.operator_key)
    if generated:
        path = settings.data_dir / "operator.key"
        _write_secret(path, generated + "\n")
        print(f"Operator key (shown once, also saved to {path}):\n  {generated}", file=out)
    if settings.demo and not (settings.data_dir / "demo.json").exists():
        demo = create_demo(services)
        _write_secret(settings.data_dir / "demo.json", json.dumps(demo, indent=2) + "\n")
        where = settings.data_dir / "demo.json"
        print(f"Demo tenant {demo['tenant_id']} with the payments policy; keys and the console", file=out)
        print(f"login ({demo['console_email']}) in {where}", file=out)
    return services


def create_demo(services: Services) -> dict[str, str]:
    """A tenant with API keys per role, a console approver and the payments policy.

    The approver comes first: the policy names the groups ``finance-leads`` and
    ``comms-reviewers``, and a bundle whose approvers name nobody is refused at upload.
    """
    tenant, keys = create_tenant_with_keys(
        services, "Demo Payments", {"admin": None, "agent": "payments-agent", "app": None, "auditor": None}
    )
    approver = create_demo_approver(services, tenant.id)
    bundle, _ = services.policies.upload(tenant.id, demo_bundle())
    services.policies.activate(tenant.id, bundle.hash, "enforce")
    return {"tenant_id": tenant.id, "bundle_hash": bundle.hash,
            **{f"{r}_key": secret for r, (_, secret) in keys.items()}, **approver}


def create_tenant_with_keys(
    services: Services, name: str, roles: Mapping[str, str | None]
) -> tuple[Tenant, dict[str, tuple[ApiKey, str]]]:
    """A tenant and one API key per role in ``roles`` (role -> the agent a key is bound to,
    or None). The secrets are returned here only: the store keeps their hashes."""
    tenant = services.tenancy.create_tenant(name)
    keys = {role: services.tenancy.create_api_key(tenant.id, role, agent) for role, agent in roles.items()}
    return tenant, keys


def create_demo_approver(services: Services, tenant_id: str) -> dict[str, str]:
    """A console user in finance-leads and comms-reviewers (approver and admin)."""
    email = f"approver-{tenant_id.removeprefix('ten_')[:10]}@demo.example"
    password = secrets.token_urlsafe(18)
    services.users.create(
        tenant_id, email=email, name="Demo Approver", password=password,
        roles=["approver", "admin"], groups=["finance-leads", "comms-reviewers"],
    )
    return {"console_email": email, "console_password": password}


def _write_secret(path: os.PathLike[str], text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
