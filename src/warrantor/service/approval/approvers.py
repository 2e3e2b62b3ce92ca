"""Who may approve a held action, and whether enough of them have.

Rules (the trust anchor is the tenant's own configuration: its policy bundle, its users
and its approver directory, all written by admins; never a field an agent sends):

- An approver entry is an e-mail address, a group name or ``tenant-admins``. Entries are
  parsed before anything is written: lower case, no whitespace or control characters, at
  most 254 characters, e-mail and group syntax (``APPROVER_INVALID``).
- Every entry must be known to the tenant: an e-mail of an active user with a deciding role
  (approver or admin) or an address on the tenant's approver directory; a group held by at
  least one such user; ``tenant-admins`` while the tenant has an active admin user. Anything
  else is ``APPROVER_UNKNOWN``.
- A held action carries requirements: one per policy rule that held it (its ``@approvers``,
  else the bundle's default approvers, else ``tenant-admins``, with its ``@quorum``), and
  one per approver the agent named in the request (quorum 1). Request approvers are
  required in addition, so a request can only make approval harder.
- Quorum counts distinct humans: an approval is recorded under the human's e-mail, and a
  requirement is met when ``quorum`` distinct approving humans are among its members.
  Membership is resolved when the decision is made, so removing a user from a group or an
  address from the directory withdraws their say at once.
- Approval codes go to people: each member human gets a personal single-use code through
  their own channel (e-mail). No API key ever receives a code.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from warrantor.domain.approvers import TENANT_ADMINS, invalid_approver, parse_approver
from warrantor.domain.clock import isoformat
from warrantor.domain.model import Approval, ApprovalRequest, ApprovalRequirement
from warrantor.errors import NotFoundError, ValidationError
from warrantor.policy.bundle import PolicyBundle
from warrantor.service.context import Deps
from warrantor.store import Repo
from warrantor.store import repo_approvers as ra


@dataclass(frozen=True)
class TenantApprovers:
    """A snapshot of who in a tenant can decide: its deciding users and its directory."""

    deciders: tuple[ra.Decider, ...]
    directory: frozenset[str]

    @classmethod
    def load(cls, repo: Repo, tenant_id: str) -> TenantApprovers:
        return cls(
            tuple(ra.deciders(repo, tenant_id)),
            frozenset(e.address for e in ra.directory(repo, tenant_id)),
        )

    def resolve(self, entry: str) -> frozenset[str]:
        """The humans (e-mail addresses) ``entry`` names; empty when it names nobody."""
        if entry == TENANT_ADMINS:
            return frozenset(d.email for d in self.deciders if "admin" in d.roles)
        if "@" in entry:
            known = entry in self.directory or any(d.email == entry for d in self.deciders)
            return frozenset({entry}) if known else frozenset()
        return frozenset(d.email for d in self.deciders if entry in d.groups)

    def members(self, requirement: ApprovalRequirement) -> frozenset[str]:
        out: set[str] = set()
        for entry in requirement.approvers:
            out |= self.resolve(entry)
        return frozenset(out)

    def everyone(self, request: ApprovalRequest) -> list[str]:
        """Every human who may decide on ``request``, sorted (one code each)."""
        out: set[str] = set()
        for req in request.requirements:
            out |= self.members(req)
        return sorted(out)

    def unknown(self, entries: Iterable[str]) -> list[str]:
        return [e for e in entries if not self.resolve(e)]

    def unreachable(self, requirements: Iterable[ApprovalRequirement]) -> list[str]:
        """A warning per requirement that fewer humans can meet than its quorum needs."""
        out = []
        for req in requirements:
            n = len(self.members(req))
            if n < req.quorum:
                out.append(
                    f"APPROVAL_UNREACHABLE: {req.source} needs {req.quorum} distinct approvers, "
                    f"only {n} can decide"
                )
        return out


@dataclass(frozen=True)
class Progress:
    approvals: int  # distinct humans who approved
    complete: bool
    requirements: list[dict[str, Any]]


def progress(request: ApprovalRequest, approvals: list[Approval], people: TenantApprovers) -> Progress:
    """Whether every requirement of ``request`` is met by the approvals recorded so far."""
    approving = {a.approver for a in approvals if a.decision == "approve"}
    rows = []
    for req in request.requirements:
        got = len(approving & people.members(req))
        rows.append({**req.to_dict(), "approvals": got, "met": got >= req.quorum})
    return Progress(len(approving), all(r["met"] for r in rows), rows)


def requirements_for(
    rule_requirements: list[ApprovalRequirement],
    default_approvers: tuple[str, ...],
    request_approvers: tuple[str, ...],
) -> tuple[ApprovalRequirement, ...]:
    """The held action's requirements: the policy's (or the default) plus the request's."""
    out = list(rule_requirements) or [
        ApprovalRequirement(default_approvers or (TENANT_ADMINS,), 1, "default")
    ]
    for entry in request_approvers:
        out.append(ApprovalRequirement((entry,), 1, "request"))
    unique: list[ApprovalRequirement] = []
    for req in out:
        if req not in unique:
            unique.append(req)
    return tuple(unique)


class ApproverDirectory:
    """The tenant's approver directory: addresses that approve by e-mailed code only.

    Managed by the tenant's admins (an admin API key or a logged-in admin). Removing an
    address withdraws its say on every pending action at once, since membership is
    resolved when a decision is made.
    """

    def __init__(self, deps: Deps) -> None:
        self._d = deps

    def list(self, tenant_id: str) -> list[dict[str, Any]]:
        with self._d.store.read() as repo:
            return [_entry(e) for e in ra.directory(repo, tenant_id)]

    def add(self, tenant_id: str, address: str, name: str) -> tuple[dict[str, Any], bool]:
        value = parse_approver(address, "address")
        if "@" not in value:
            raise invalid_approver("address", f"expected an e-mail address, got {address!r}")
        name = name.strip()
        if len(name) > 200 or any(not c.isprintable() for c in name):
            raise ValidationError("name: expected at most 200 printable characters", code="VALIDATION_ERROR",
                                  details={"field": "name"})
        now = self._d.clock.now()
        created = self._d.store.write(lambda repo: ra.add_directory_entry(repo, tenant_id, value, name, now))
        with self._d.store.read() as repo:
            entry = next(e for e in ra.directory(repo, tenant_id) if e.address == value)
        return _entry(entry), created

    def remove(self, tenant_id: str, address: str) -> None:
        value = address.strip().lower()
        if not self._d.store.write(lambda repo: ra.remove_directory_entry(repo, tenant_id, value)):
            raise NotFoundError(f"no approver {address!r} in this tenant's directory", code="NOT_FOUND")


def _entry(e: ra.DirectoryEntry) -> dict[str, Any]:
    return {"address": e.address, "name": e.name, "created_at": isoformat(e.created_at)}


def bundle_problems(bundle: PolicyBundle, people: TenantApprovers) -> list[dict[str, Any]]:
    """What makes ``bundle``'s approvals impossible in this tenant, in the bundle's problem
    format (with line and column): an approver nobody answers to (``APPROVER_UNKNOWN``) or a
    quorum larger than the humans its approvers name (``QUORUM_UNREACHABLE``).

    Checked for every approver the bundle names (``@approvers`` and the config's default
    approvers) and every explicit ``@quorum``; a rule naming neither falls back to
    ``tenant-admins`` at authorization, where an unreachable quorum is a response warning
    and the action waits (fail closed) until it expires.
    """
    out: list[dict[str, Any]] = []
    defaults = bundle.config.approvals.default_approvers
    for entry in people.unknown(defaults):
        out.append({"message": f"config: approvals.default_approvers: {_unknown(entry)}", "code": "APPROVER_UNKNOWN"})
    for rule in bundle.policies:
        if rule.effect not in HOLDING_EFFECTS or not (rule.approvers or rule.quorum):
            continue
        where: dict[str, Any] = {"policy_id": rule.id}
        if rule.line is not None:
            where.update(line=rule.line, column=1)
        entries = rule.approvers or defaults or (TENANT_ADMINS,)
        unknown = people.unknown(rule.approvers)
        for entry in unknown:
            out.append({"message": f"cedar: @approvers: {_unknown(entry)}", "code": "APPROVER_UNKNOWN", **where})
        if unknown:
            continue  # the quorum is unreachable for that reason alone: one problem is enough
        quorum = rule.quorum or 1
        reachable = len(people.members(ApprovalRequirement(entries, quorum, rule.id)))
        if reachable < quorum:
            out.append({
                "message": f"cedar: @quorum({quorum}) cannot be met: {reachable} distinct human(s) can approve "
                           f"as {', '.join(entries)}",
                "code": "QUORUM_UNREACHABLE", **where,
            })
    return out


HOLDING_EFFECTS = ("require_approval", "confirm")


def _unknown(entry: str) -> str:
    return (f"{entry!r} is not known to this tenant (expected a console user with an approving role, "
            "a group such users hold, or an address on the approver directory)")
