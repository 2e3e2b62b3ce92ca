"""Rate limits per API key and per agent: token buckets shared by every process.

docs/guardrails.md (``rate_limits: {per_key, per_agent}`` in the bundle's config) and the
``rate limit`` stage of section 2. ``RateLimitGuard`` runs first among the write guards,
inside the authorization's write transaction: it locks the bucket row (tenant, kind, key),
applies ``policy.limits.take`` and stores the new state, so every server process on one
database shares one bucket. The allowed path is one ``INSERT ... ON CONFLICT DO UPDATE ...
WHERE ... RETURNING`` per bucket that computes ``take``'s arithmetic in the database
(PostgreSQL locks the row and works on its latest committed version); a refusal is
decided by ``take`` itself on the row read under its lock (``FOR UPDATE`` on PostgreSQL)
and raises ``RateLimitedError`` (429 ``RATE_LIMITED`` with ``Retry-After`` in whole
seconds): the transaction's savepoint rolls back and nothing about the request is written.

What it does not do: limit reads, replays of an idempotent request (answered before the
write), or requests that fail validation. Buckets refill from the database clock of the
writer (``Deps.clock``); no process memory is involved.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final

from warrantor.domain.model import Principal
from warrantor.errors import RateLimitedError
from warrantor.policy.config import RateLimit
from warrantor.policy.limits import GRACE_SECONDS, take
from warrantor.service.authorization.authorize import Draft
from warrantor.service.authorization.intent import Intent
from warrantor.service.authorization.policies import Policies
from warrantor.store import Repo
from warrantor.store import repo_guard as rg

# Above this rate, ``rate * elapsed`` could overflow a double (PostgreSQL raises where
# Python gives infinity): such buckets take the read-then-update path.
MAX_SQL_RATE: Final = 1e200


class RateLimitGuard:
    """WriteGuard ``rate_limit``: one token per authorization from each configured bucket."""

    name = "rate_limit"

    def __init__(self, policies: Policies) -> None:
        self._policies = policies

    def reserve(self, repo: Repo, principal: Principal, action_id: str, intent: Intent,
                draft: Draft, now: datetime) -> None:
        tenant_id = principal.tenant_id
        if tenant_id is None:
            return
        enforce = self._policies.active(repo, tenant_id).get("enforce")
        if enforce is None:
            return
        limits = enforce.bundle.config.rate_limits
        buckets: list[tuple[str, str, RateLimit]] = []
        if limits.per_key is not None and principal.key_id is not None:
            buckets.append(("key", principal.key_id, limits.per_key))
        if limits.per_agent is not None and intent.agent_id is not None:
            buckets.append(("agent", intent.agent_id, limits.per_agent))
        for kind, key, limit in buckets:  # fixed order: key, then agent
            take_token(repo, tenant_id, kind, key, limit, now)


def take_token(repo: Repo, tenant_id: str, kind: str, key: str, limit: RateLimit, now: datetime) -> None:
    """Spend one token from the bucket row or raise ``RateLimitedError``.

    The allowed path is one statement (``repo_guard.take_from_bucket``: ``take``'s
    arithmetic in SQL, under the row lock). When it finds too few tokens, or the rate is so
    high that PostgreSQL's double arithmetic could overflow where Python's gives infinity,
    the bucket is read under its lock and ``take`` itself decides and says when to retry.
    """
    epoch = now.timestamp()
    rate, burst = limit.rate_per_second, limit.burst
    if rate <= MAX_SQL_RATE and rg.take_from_bucket(
        repo, tenant_id, kind, key, fresh_tokens=take(float(burst), epoch, epoch, rate, burst).tokens,
        now=epoch, rate_per_second=rate, burst=burst, grace=GRACE_SECONDS * rate, cost=1,
    ):
        return
    tokens, updated_at = rg.lock_bucket(repo, tenant_id, kind, key, burst, epoch)
    result = take(tokens, updated_at, epoch, rate, burst)
    if not result.allowed:
        seconds = int(result.retry_after_seconds)
        raise RateLimitedError(
            f"expected at most {rate:g} requests per second (burst {burst}) "
            f"per {'API key' if kind == 'key' else 'agent'}, got more; retry in {seconds} s",
            details={"limit": kind, "retry_after_seconds": seconds},
            headers={"Retry-After": str(seconds)},
        )
    rg.set_bucket(repo, tenant_id, kind, key, result.tokens, max(epoch, updated_at))
