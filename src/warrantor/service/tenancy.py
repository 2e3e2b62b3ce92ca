"""Tenants, API keys and the operator key; turning a bearer token into a ``Principal``.

API keys are ``wrt_`` + 160 random bits. Only their sha256 is stored (a key of that
entropy needs no slow hash); lookup is by hash and the final comparison is constant-time.
The operator key (``WARRANTOR_OPERATOR_KEY``, or generated on first start) may create,
list and revoke tenants' keys and nothing else.

Lifecycle rules:

- A revoked key is refused by the very next request, in every server process. On
  PostgreSQL, where several processes (and hosts) serve one database, every request looks
  its key up in the database. On SQLite, where ``warrantor serve`` is the only process that
  serves the database (it holds ``<database>.serve-lock``; a second one refuses to start),
  a key's principal is cached in the process after its first lookup, and revoking a key
  clears the cache before the revocation answers; a lookup that raced with a revocation is
  not cached (``_generation``). Unknown and revoked keys are never cached. The lookup is the
  one read every request made: on the event loop it released the interpreter lock and often
  waited for the writer thread to give it back (about 12 % of authorize's time, profiled).
- Listing keys shows ``key_id``, role, agent binding, label, the first characters of the
  key (``prefix``), creation and revocation times; never the key or its hash.
- A tenant admin lists and revokes its own tenant's keys only: another tenant's key id is
  404, exactly like an unknown one. The operator may do both for any tenant.
- Setting ``WARRANTOR_OPERATOR_KEY`` to a new value retires every other operator key at
  the next start. Without the variable, the stored (generated) key stays.
- An agent key bound to agent X sees only X's actions, their evidence and chains
  (``sees_agent``); unbound keys see the whole tenant.
- A gateway key is always bound to one agent (``AGENT_ID_REQUIRED`` otherwise) and passes
  every ``require_role`` that admits agent keys: it acts for its agent, never beyond.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets

from warrantor.domain.clock import random_token
from warrantor.domain.model import ApiKey, Principal, Role, Tenant
from warrantor.errors import AuthenticationError, NotFoundError, PermissionDeniedError, ValidationError
from warrantor.service.context import Deps
from warrantor.store import Repo

log = logging.getLogger(__name__)

KEY_PREFIX = "wrt_"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_api_key() -> str:
    return KEY_PREFIX + random_token(160)


MAX_CACHED_PRINCIPALS = 100_000


class Tenancy:
    def __init__(self, deps: Deps, *, cache_principals: bool = False) -> None:
        """``cache_principals``: only where this process is the database's only server
        (SQLite; module docstring)."""
        self._d = deps
        self._principals: dict[str, Principal] | None = {} if cache_principals else None
        self._generation = 0  # bumped by every revocation, after its commit

    # -- operator ---------------------------------------------------------------------
    def bootstrap_operator(self, configured_key: str | None) -> str | None:
        """Register the operator key; returns a newly generated key to print once, if any."""
        now = self._d.clock.now()
        if configured_key:
            if not configured_key.startswith(KEY_PREFIX) or len(configured_key) < 26:
                raise ValidationError("expected WARRANTOR_OPERATOR_KEY to look like wrt_<at least 22 chars>")
            digest = hash_key(configured_key)

            def register(repo: Repo) -> int:
                if not repo.operator_key_exists(digest):
                    repo.insert_operator_key(digest, now)
                return repo.retire_operator_keys(keep_hash=digest)

            if retired := self._d.store.write(register):
                log.warning("WARRANTOR_OPERATOR_KEY changed: %d previous operator key(s) retired", retired)
            return None
        with self._d.store.read() as repo:
            if repo.count_operator_keys():
                return None
        key = new_api_key()
        self._d.store.write(lambda repo: repo.insert_operator_key(hash_key(key), now))
        return key

    def create_tenant(self, name: str) -> Tenant:
        tenant = Tenant(self._d.ids.new("ten"), name, self._d.clock.now())
        self._d.store.write(lambda repo: repo.insert_tenant(tenant))
        return tenant

    def create_api_key(
        self, tenant_id: str, role: str, agent_id: str | None, label: str | None = None,
    ) -> tuple[ApiKey, str]:
        try:
            parsed_role = Role(role)
        except ValueError:
            raise ValidationError(
                f"expected role to be one of {', '.join(Role)}, got {role!r}", code="INVALID_ROLE",
            ) from None
        if agent_id is not None and not parsed_role.acts_as_agent:
            raise ValidationError("expected agent_id only on keys of role agent or gateway", code="INVALID_ROLE")
        if parsed_role is Role.GATEWAY and not agent_id:
            raise ValidationError(
                "expected agent_id on a gateway key: a gateway executes the calls of one agent",
                code="AGENT_ID_REQUIRED",
            )
        secret = new_api_key()
        key = ApiKey(
            id=self._d.ids.new("key"),
            tenant_id=tenant_id,
            role=parsed_role,
            agent_id=agent_id,
            prefix=secret[:10],
            created_at=self._d.clock.now(),
            label=label,
        )

        def job(repo: Repo) -> None:
            if repo.get_tenant(tenant_id) is None:
                raise NotFoundError(f"tenant {tenant_id!r} does not exist", code="TENANT_NOT_FOUND")
            repo.insert_api_key(key, hash_key(secret))

        self._d.store.write(job)
        return key, secret

    def list_api_keys(self, tenant_id: str) -> list[ApiKey]:
        """A tenant's keys, revoked ones included (404 ``TENANT_NOT_FOUND`` for no tenant)."""
        with self._d.store.read() as repo:
            if repo.get_tenant(tenant_id) is None:
                raise NotFoundError(f"tenant {tenant_id!r} does not exist", code="TENANT_NOT_FOUND")
            return repo.list_api_keys(tenant_id)

    def revoke_api_key(self, tenant_id: str, key_id: str) -> ApiKey:
        """Revoke at once (idempotent); 404 ``API_KEY_NOT_FOUND`` outside ``tenant_id``."""
        now = self._d.clock.now()

        def job(repo: Repo) -> ApiKey | None:
            repo.revoke_api_key(tenant_id, key_id, now)
            return repo.get_api_key(tenant_id, key_id)

        try:
            key = self._d.store.write(job)
        finally:  # committed or not, no cached principal outlives this call
            self._generation += 1
            if self._principals is not None:
                self._principals.clear()
        if key is None:
            raise NotFoundError(f"no API key {key_id!r} in this tenant", code="API_KEY_NOT_FOUND")
        log.info("API key %s of tenant %s revoked", key_id, tenant_id)
        return key

    # -- authentication ---------------------------------------------------------------
    def authenticate(self, token: str | None) -> Principal:
        """The principal of a bearer token: from the database, or on SQLite from this
        process's cache of live keys (module docstring)."""
        if not token:
            raise AuthenticationError("expected an Authorization: Bearer <api key> header")
        digest = hash_key(token)
        cache = self._principals
        if cache is None:
            return self._lookup(token, digest)
        if (cached := cache.get(digest)) is not None:
            return cached
        generation = self._generation
        principal = self._lookup(token, digest)
        if principal.tenant_id is not None and generation == self._generation:
            if len(cache) >= MAX_CACHED_PRINCIPALS:
                cache.clear()
            cache[digest] = principal
        return principal

    def _lookup(self, token: str, digest: str) -> Principal:
        found = self._d.store.key_principal(digest)
        is_operator = False
        if found is None:
            with self._d.store.read() as repo:
                is_operator = repo.operator_key_exists(digest)
        if is_operator:
            return Principal(tenant_id=None, role=None)
        # Compare in constant time even though the lookup already matched the hash, so a
        # timing difference can never tell which prefix of a hash exists.
        if found is None or not hmac.compare_digest(found[5], digest) or found[4]:
            secrets.compare_digest(digest, digest)
            raise AuthenticationError("the API key is unknown or revoked", code="INVALID_API_KEY")
        key_id, tenant_id, role, agent_id = found[:4]
        return Principal(tenant_id=tenant_id, role=Role(role), key_id=key_id, agent_id=agent_id)


def bound_agent(principal: Principal, agent_id: str | None) -> str | None:
    """The agent a request acts for: a key bound to an agent acts for that agent only (naming
    another is 403 ``AGENT_MISMATCH``); any other key acts for the agent it names, if any."""
    if principal.agent_id is None:
        return agent_id
    if agent_id not in (None, principal.agent_id):
        raise PermissionDeniedError(
            f"expected agent_id {principal.agent_id!r} (bound to this key), got {agent_id!r}",
            code="AGENT_MISMATCH",
        )
    return principal.agent_id


def require_role(principal: Principal, *roles: Role) -> str:
    """The principal's tenant, if its role is among ``roles`` (a gateway key counts as an
    agent key); 403 otherwise."""
    if principal.tenant_id is None or principal.role is None:
        raise PermissionDeniedError("expected a tenant API key, got the operator key")
    if principal.role not in roles and not (principal.role is Role.GATEWAY and Role.AGENT in roles):
        allowed = ", ".join(r.value for r in roles)
        raise PermissionDeniedError(
            f"expected a key with role {allowed}, got {principal.role.value}", code="FORBIDDEN_ROLE"
        )
    return principal.tenant_id


def sees_agent(principal: Principal, agent_id: str | None) -> bool:
    """Whether ``principal`` may see what agent ``agent_id`` did: a key bound to an agent
    sees that agent only (nothing without an agent); every other principal sees all."""
    return principal.agent_id is None or principal.agent_id == agent_id


def require_operator(principal: Principal) -> None:
    if not principal.is_operator:
        raise PermissionDeniedError("expected the operator key", code="FORBIDDEN_ROLE")
