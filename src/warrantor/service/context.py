"""The collaborators every use case needs, built once by the app factory or the CLI."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from warrantor.domain.clock import Clock, IdFactory
from warrantor.domain.lifecycle import Status
from warrantor.domain.model import Action
from warrantor.service.approval.notify import Mailer, Notifier
from warrantor.service.proof.keyring import KeyRing
from warrantor.service.proof.sealing import Sealer
from warrantor.store import Repo, Store


class EventSink(Protocol):
    """Where domain events go (webhooks). ``emit`` runs inside the write transaction, so an
    implementation can write a durable outbox row that commits with the change itself."""

    def emit(self, repo: Repo, tenant_id: str, event_type: str, data: dict[str, Any]) -> None: ...


class NullEvents:
    def emit(self, repo: Repo, tenant_id: str, event_type: str, data: dict[str, Any]) -> None:
        return None


# Called inside the write transaction after every lifecycle transition:
# (repo, action before the change, new status, execution report or None, now).
TransitionHook = Callable[[Repo, Action, Status, "dict[str, Any] | None", datetime], None]


@dataclass(frozen=True)
class Limits:
    """Deployment-wide knobs (from settings)."""

    warrant_ttl_seconds: int = 900
    notarize_grace_seconds: int = 3600
    default_approval_ttl_seconds: int = 86400
    clock_skew_seconds: int = 5  # execution times may lie this far outside their window
    public_url: str = "http://127.0.0.1:8080"


@dataclass
class Deps:
    store: Store
    clock: Clock
    ids: IdFactory
    keyring: KeyRing
    sealer: Sealer
    notifier: Notifier
    mailer: Mailer
    limits: Limits = field(default_factory=Limits)
    events: EventSink = field(default_factory=NullEvents)
    transition_hooks: list[TransitionHook] = field(default_factory=list)
