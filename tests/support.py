"""Shared test support: a real app on a real store, with a tenant, keys and a policy.

``Env`` wraps a ``TestClient`` (the real ASGI app, no network) and the credentials a
test needs; ``pg_database`` creates and drops a PostgreSQL database of its own.
"""

from __future__ import annotations

import io
import os
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from warrantor.cli.bootstrap import create_demo, prepare
from warrantor.cli.localserver import free_port, stop, wait_ready
from warrantor.server.app import create_app, open_services
from warrantor.server.settings import Settings
from warrantor.service.services import Services

OPERATOR_KEY = "wrt_testoperatortestoperatortestop"
PG_ADMIN_URL = os.environ.get("WARRANTOR_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")

WIRE = {"amount_minor": 1000, "currency": "EUR", "beneficiary": "ACME GmbH"}


class RecordingMailer:
    """The mail channel as a test sees it: every message, in order, nothing delivered."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def send(self, to: str, subject: str, body: str, *, tenant_id: str | None = None) -> None:
        self.sent.append({"to": to, "subject": subject, "body": body, "tenant_id": tenant_id})

    def codes(self, action_id: str) -> dict[str, str]:
        """The approval codes mailed for ``action_id``, by recipient."""
        out = {}
        for mail in self.sent:
            found = re.search(r"Approval code: (APR-[A-Z0-9]+)", mail["body"])
            if found and f"Action: {action_id}\n" in mail["body"]:
                out[mail["to"]] = found.group(1)
        return out

    def invitation_token(self, email: str) -> str:
        """The token of the newest set-password link mailed to ``email``."""
        for mail in reversed(self.sent):
            found = re.search(r"/invite/([0-9a-z]+)$", mail["body"], re.M)
            if found and mail["to"] == email:
                return found.group(1)
        raise AssertionError(f"no set-password link was mailed to {email}")


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@dataclass
class Env:
    client: TestClient
    services: Services
    settings: Settings
    tenant_id: str
    keys: dict[str, str]
    bundle_hash: str
    extra: dict[str, Any] = field(default_factory=dict)
    approver: str = ""  # the demo tenant's console approver (finance-leads, comms-reviewers, admin)
    approver_password: str = ""

    def h(self, role: str) -> dict[str, str]:
        return bearer(self.keys[role])

    @property
    def operator(self) -> dict[str, str]:
        return bearer(OPERATOR_KEY)

    def authorize(self, *, role: str = "agent", headers: dict[str, str] | None = None, **body: Any) -> Any:
        body.setdefault("action_type", "wire_transfer")
        body.setdefault("details", "Pay invoice 42")
        body.setdefault("payload", dict(WIRE))
        body.setdefault("instruction_hash", "sha256:" + "ab" * 32)
        return self.client.post("/v1/actions", json=body, headers={**self.h(role), **(headers or {})})

    @property
    def mail(self) -> RecordingMailer:
        mailer = self.services.deps.mailer
        assert isinstance(mailer, RecordingMailer), "this env delivers mail elsewhere"
        return mailer

    def approval_codes(self, action_id: str) -> list[str]:
        """The personal codes e-mailed for ``action_id``, ordered by recipient."""
        codes = self.mail.codes(action_id)
        return [codes[to] for to in sorted(codes)]

    def code_for(self, action_id: str, email: str) -> str:
        return self.mail.codes(action_id)[email]

    def add_user(self, email: str, *, groups: tuple[str, ...] = (), roles: tuple[str, ...] = ("approver",),
                 password: str = "correct horse battery staple") -> dict[str, Any]:
        """A console user of the tenant who can log in with ``password``: created by the
        tenant's admin key (which cannot choose a password), then the user sets it with the
        link mailed to them."""
        r = self.client.post("/v1/users", headers=self.h("admin"), json={
            "email": email, "name": email.split("@", maxsplit=1)[0], "roles": list(roles), "groups": list(groups)})
        assert r.status_code == 201, r.text
        self.accept_invitation(email, password)
        body: dict[str, Any] = r.json()
        return body

    def accept_invitation(self, email: str, password: str) -> dict[str, Any]:
        """Set ``email``'s password with the newest link mailed to it, as that person would."""
        r = self.client.post(f"/v1/invitations/{self.mail.invitation_token(email.lower())}",
                             json={"password": password})
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    def add_approver(self, address: str, *, key: str | None = None) -> None:
        """Put ``address`` on the tenant's approver directory (as the tenant's admin)."""
        r = self.client.post("/v1/approvers", json={"address": address},
                             headers=bearer(key) if key else self.h("admin"))
        assert r.status_code in (200, 201), r.text

    def new_tenant(self) -> dict[str, str]:
        """A second tenant with the demo policy, for isolation tests."""
        demo = create_demo(self.services)
        return {k.removesuffix("_key"): v for k, v in demo.items() if k.endswith("_key")}


def _admin_connect(url: str) -> Any:
    import psycopg

    return psycopg.connect(url, autocommit=True, connect_timeout=3)


@contextmanager
def pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database for one test run; dropped afterwards."""
    try:
        admin = _admin_connect(PG_ADMIN_URL)
    except Exception as exc:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL at {PG_ADMIN_URL} is unreachable in CI: {exc}")
        pytest.skip(
            f"PostgreSQL not reachable at {PG_ADMIN_URL} ({exc}); start it or set "
            "WARRANTOR_TEST_POSTGRES_URL to run the PostgreSQL tests"
        )
    name = f"warrantor_test_{uuid.uuid4().hex[:12]}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with _admin_connect(PG_ADMIN_URL) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def make_settings(data_dir: Path, database_url: str | None = None, **overrides: Any) -> Settings:
    return Settings(
        data_dir=data_dir, database_url=database_url, operator_key=OPERATOR_KEY,
        sweep_interval_seconds=3600, **overrides,
    )


@contextmanager
def make_env(data_dir: Path, database_url: str | None = None, *, services_kwargs: dict[str, Any] | None = None,
             **overrides: Any) -> Iterator[Env]:
    settings = make_settings(data_dir, database_url, **overrides)
    recording = {} if settings.smtp_url else {"mailer": RecordingMailer()}
    services = open_services(settings, **{**recording, **(services_kwargs or {})})
    services.tenancy.bootstrap_operator(OPERATOR_KEY)
    demo = create_demo(services)
    app = create_app(settings, services=services)
    keys = {k.removesuffix("_key"): v for k, v in demo.items() if k.endswith("_key")}
    try:
        with TestClient(app) as client:
            yield Env(client, services, settings, demo["tenant_id"], keys, demo["bundle_hash"],
                      approver=demo["console_email"], approver_password=demo["console_password"])
    finally:
        services.store.close()


__all__ = ["WIRE", "Env", "bearer", "io", "make_env", "make_settings", "pg_database", "prepare"]


@dataclass
class ServerHandle:
    url: str
    proc: Any
    log_path: Path | None = None

    def log_text(self) -> str:
        """Everything the server wrote to stdout and stderr so far."""
        return self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path else ""

    def kill(self) -> None:
        """SIGKILL: a crash, not a shutdown."""
        self.proc.kill()
        self.proc.wait(timeout=10)


@contextmanager
def server_process(data_dir: Path, database_url: str | None = None, *, demo: bool = True,
                   env: dict[str, str] | None = None, args: tuple[str, ...] = ()) -> Iterator[ServerHandle]:
    """``warrantor serve`` in a child process on a free loopback port; yields its base URL.

    Waits for ``/readyz`` and stops by PID (SIGTERM, then SIGKILL) when the block ends,
    whatever happened, through ``warrantor.cli.localserver`` (the demo's server uses them too).
    """
    import subprocess
    import sys

    port = free_port()
    cmd = [sys.executable, "-m", "warrantor.cli.main", "serve", "--host", "127.0.0.1", "--port", str(port),
           "--data-dir", str(data_dir), "--log-level", "warning"]
    if database_url:
        cmd += ["--database-url", database_url]
    if demo:
        cmd.append("--demo")
    cmd.extend(args)
    child_env = {**os.environ, "WARRANTOR_OPERATOR_KEY": OPERATOR_KEY, **(env or {})}
    # Output goes to a file, not a pipe: a pipe nobody reads fills up and blocks the server.
    log_path = Path(data_dir) / f"server-{port}.log"
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(cmd, env=child_env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(proc, url, log_path, timeout=30, name="server")
        yield ServerHandle(url, proc, log_path)
    finally:
        stop(proc)


def decide_in_console(url: str, email: str, password: str, action_id: str, decision: str = "approve") -> None:
    """A human approver logs in to the console and approves or denies ``action_id`` through
    its HTML forms (login token, CSRF token), as a browser would; asserts the console said so."""
    import httpx

    with httpx.Client(base_url=url, timeout=10) as web:
        page = web.get("/console/login")
        login = re.search(r'name="login_token" value="([^"]+)"', page.text)
        assert login, page.text[:500]
        r = web.post("/console/login", data={"email": email, "password": password,
                                             "next": f"/console/actions/{action_id}", "login_token": login.group(1)})
        assert r.status_code in (200, 303), r.text
        detail = web.get(f"/console/actions/{action_id}")
        token = re.search(r'name="csrf_token" value="([^"]+)"', detail.text)
        assert token, detail.text[:500]
        r = web.post(f"/console/actions/{action_id}/{decision}",
                     data={"csrf_token": token.group(1), "reason": "checked", "back": "detail"})
    # The console redirects with ?flash=approved / denied, or the error's code.
    flash = "approved" if decision == "approve" else "denied"
    assert r.status_code == 303 and r.headers["location"].endswith(f"?flash={flash}"), (r.status_code, r.headers)
