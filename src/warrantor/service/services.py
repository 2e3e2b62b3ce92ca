"""Wiring: every use case built over one set of collaborators."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from warrantor.domain.clock import Clock, IdFactory, RandomIds, SystemClock
from warrantor.service.approval.approvals import Approvals
from warrantor.service.approval.approvers import ApproverDirectory
from warrantor.service.approval.invitations import Invitations
from warrantor.service.approval.notify import Mailer, Notifier, NullMailer
from warrantor.service.approval.users import Users
from warrantor.service.authorization.authorize import Authorizer
from warrantor.service.authorization.grants import Grants
from warrantor.service.authorization.grants import install as install_grants
from warrantor.service.authorization.policies import Policies
from warrantor.service.context import Deps, Limits
from warrantor.service.execution.actions import Actions, ExpirySweeper
from warrantor.service.execution.confirm_execution import ExecutionConfirmer
from warrantor.service.execution.execute import Executor
from warrantor.service.execution.execute_http import ExecuteConfig
from warrantor.service.execution.notarize import Notarizer
from warrantor.service.execution.runs import Guardrails, install_guardrails
from warrantor.service.proof.keyring import KeyRing
from warrantor.service.proof.sealing import Sealer
from warrantor.service.proof.transparency import Integrator, LogConfig, Transparency, build_log
from warrantor.service.recordkeeping.audit import AuditedEvents, AuditFileSink
from warrantor.service.recordkeeping.export import Exporter
from warrantor.service.recordkeeping.records import Records
from warrantor.service.recordkeeping.webhooks import WebhookDispatcher, WebhookEvents, Webhooks
from warrantor.service.tenancy import Tenancy
from warrantor.store import Store


@dataclass
class Services:
    deps: Deps
    tenancy: Tenancy
    policies: Policies
    authorizer: Authorizer
    approvals: Approvals
    directory: ApproverDirectory
    notarizer: Notarizer
    actions: Actions
    sweeper: ExpirySweeper
    guardrails: Guardrails
    transparency: Transparency
    integrator: Integrator
    confirmer: ExecutionConfirmer
    users: Users
    invitations: Invitations
    grants: Grants
    webhooks: Webhooks
    webhook_dispatcher: WebhookDispatcher
    executor: Executor
    records: Records
    exporter: Exporter
    audit_file: AuditFileSink | None = None  # WARRANTOR_AUDIT_FILE

    @property
    def store(self) -> Store:
        return self.deps.store

    def rotate_signing_key(self) -> str:
        key = self.deps.keyring.rotate(self.deps.clock.now())
        self.deps.sealer.set_signer(key)
        return key.keyid


def build_services(
    store: Store,
    data_dir: Path,
    *,
    clock: Clock | None = None,
    ids: IdFactory | None = None,
    mailer: Mailer | None = None,
    limits: Limits | None = None,
    log_config: LogConfig | None = None,
    execute: ExecuteConfig | None = None,
    audit_file: Path | None = None,
) -> Services:
    clock = clock or SystemClock()
    ids = ids or RandomIds()
    keyring = KeyRing(data_dir / "keys", store)
    signer = keyring.ensure(clock.now())
    deps = Deps(
        store=store,
        clock=clock,
        ids=ids,
        keyring=keyring,
        sealer=Sealer(signer, ids, current=keyring.current),
        notifier=Notifier(),
        mailer=mailer or NullMailer(),
        limits=limits or Limits(),
    )
    policies = Policies(deps)
    authorizer = Authorizer(deps, policies)
    guardrails = install_guardrails(deps, policies, authorizer)
    grants = install_grants(deps, authorizer)
    webhook_events = WebhookEvents(deps)
    deps.events = AuditedEvents(deps, webhook_events, to_file=audit_file is not None)
    approvals = Approvals(deps)
    users = Users(deps, approvals)
    transparency, integrator = build_log(store, data_dir, keyring, clock, log_config or LogConfig())
    executor = Executor(deps, policies, execute or ExecuteConfig())
    sweeper = ExpirySweeper(deps)
    sweeper.also.append(executor.recover_lost)  # executions that died mid-flight become uncertain
    return Services(
        deps=deps,
        tenancy=Tenancy(deps, cache_principals=store.dialect == "sqlite"),
        policies=policies,
        authorizer=authorizer,
        guardrails=guardrails,
        approvals=approvals,
        directory=ApproverDirectory(deps),
        notarizer=Notarizer(deps),
        actions=Actions(deps),
        sweeper=sweeper,
        transparency=transparency,
        integrator=integrator,
        confirmer=ExecutionConfirmer(deps),
        users=users,
        invitations=Invitations(deps, users),
        grants=grants,
        webhooks=Webhooks(deps, webhook_events),
        webhook_dispatcher=WebhookDispatcher(deps),
        executor=executor,
        records=Records(deps),
        exporter=Exporter(deps, transparency),
        audit_file=AuditFileSink(deps, audit_file) if audit_file is not None else None,
    )
