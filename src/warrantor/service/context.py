"""The collaborators every use case needs, built once by the app factory or the CLI."""

from __future__ import annotations

from dataclasses import dataclass, field

from warrantor.domain.clock import Clock, IdFactory
from warrantor.service.keyring import KeyRing
from warrantor.service.notify import Mailer, Notifier
from warrantor.service.sealing import Sealer
from warrantor.store import Store


@dataclass(frozen=True)
class Limits:
    """Deployment-wide knobs (from settings)."""

    warrant_ttl_seconds: int = 900
    notarize_grace_seconds: int = 3600
    default_approval_ttl_seconds: int = 86400
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
