"""Humans: users, console sessions, human decisions on held actions, cosignatures.

Rules (docs/security.md; issue 4):

- A user belongs to one tenant and has roles ``approver``, ``admin`` and/or ``auditor`` and
  approver groups (``finance-leads``). E-mail is the login name, unique across the
  deployment. Passwords are hashed with argon2id (argon2-cffi defaults); nothing returns
  the hash.
- Login creates a server-side session: a 160-bit random id that only the cookie holds (the
  table keeps its sha256) and a per-session CSRF token. A session ends on logout, after
  ``SESSION_IDLE`` without use, or ``SESSION_MAX_AGE`` after login, whichever comes first.
- Password guessing is throttled per e-mail in the database: ``MAX_LOGIN_FAILURES`` failed
  attempts within ``LOGIN_WINDOW`` lock that e-mail out until the oldest ages out (429
  ``LOGIN_RATE_LIMITED``). An attempt is counted before the password is checked, and the
  count and the insert run in one write transaction under a per-e-mail lock (a PostgreSQL
  advisory transaction lock; SQLite's single writer), so concurrent guesses cannot
  overshoot the limit, whichever server processes answer them. Checking the current
  password on a password change counts the same way. Unknown e-mails cost the same argon2
  verification as known ones, so timing does not reveal accounts.
- Passwords are chosen by the person: a user created without one (by an API key, see
  ``service/approval/invitations.py``) cannot log in until they set one through the mailed link.
  Disabling, deleting or setting a password any other way voids outstanding links.
- User lifecycle (admins): roles, groups and ``disabled`` change with ``update``; ``delete``
  leaves a tombstone (see ``schema_humans``). Disabling, deleting, an admin's password
  reset and a user's own password change end the user's sessions at once (the user's own
  change re-issues one new session to the browser that made it). A change that would
  leave a tenant that has an admin without any enabled admin is 409 ``LAST_ADMIN``.
- A user may decide on a held action when they hold the ``approver`` or ``admin`` role and
  the approval request lists their e-mail, one of their groups, or ``tenant-admins`` while
  they are an admin. Otherwise 403 ``NOT_AN_APPROVER``. Quorum counts distinct humans:
  the approver recorded is the user's e-mail, and one person decides once.
- A cosignature is any logged-in user's signed attestation on an action of their tenant:
  a DSSE envelope (predicate ``urn:warrantor:predicate:cosignature:v1``) signed by the
  server key, naming the user, appended to the log. One per user and action (409
  ``ALREADY_COSIGNED``).

API keys never act as humans: the routes refuse them on these endpoints.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from warrantor.domain.clock import isoformat, random_token
from warrantor.domain.lifecycle import Status
from warrantor.errors import (
    AuthenticationError,
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    ValidationError,
)
from warrantor.evidence.canonical import sha256_hex
from warrantor.evidence.statement import STATEMENT_TYPE, sign_statement
from warrantor.service.approval.approvals import Approvals, Decider, DecisionResult
from warrantor.service.context import Deps
from warrantor.service.proof.sealing import Sealed, record
from warrantor.store import Repo, UniqueViolationError
from warrantor.store import repo_humans as rh
from warrantor.store.repo_humans import Session, User
from warrantor.store.sequencing import LogTicket

ROLES = ("approver", "admin", "auditor")
DECIDING_ROLES = frozenset({"approver", "admin"})
TENANT_ADMINS = "tenant-admins"
COSIGNATURE_V1 = "urn:warrantor:predicate:cosignature:v1"

SESSION_IDLE = timedelta(hours=12)
SESSION_MAX_AGE = timedelta(days=7)
SESSION_TOUCH_EVERY = timedelta(seconds=60)  # last_seen_at is written at most this often
LOGIN_WINDOW = timedelta(minutes=15)
MAX_LOGIN_FAILURES = 10

MIN_PASSWORD = 12
MAX_PASSWORD = 1024
MAX_TEXT = 2000
_EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s]+\.[^@\s]+")
_GROUP = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")


@dataclass(frozen=True)
class UserSession:
    """A logged-in human: the session and the user it belongs to."""

    session: Session
    user: User

    @property
    def tenant_id(self) -> str:
        return self.user.tenant_id

    @property
    def is_admin(self) -> bool:
        return "admin" in self.user.roles


@dataclass(frozen=True)
class NewSession:
    """A fresh login: ``session_id`` goes into the cookie and is never stored."""

    session_id: str
    csrf_token: str
    user: User
    expires_at: datetime


def session_hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def normalize_email(email: str) -> str:
    return email.strip().lower()


def may_decide(user: User, approvers: tuple[str, ...] | list[str]) -> bool:
    """Whether ``user`` is one of ``approvers`` (the approval request's list)."""
    if not DECIDING_ROLES & set(user.roles):
        return False
    names = {a.strip().lower() for a in approvers}
    if user.email in names or any(g in names for g in user.groups):
        return True
    return TENANT_ADMINS in names and "admin" in user.roles


class Users:
    def __init__(self, deps: Deps, approvals: Approvals) -> None:
        self._d = deps
        self._approvals = approvals
        self._hasher = PasswordHasher()
        self._dummy_hash: str | None = None
        self._lock = threading.Lock()

    # -- users ----------------------------------------------------------------------------
    def create(
        self, tenant_id: str, *, email: str, name: str, password: str | None, roles: list[str], groups: list[str],
        also: Callable[[Repo, User], None] | None = None,
    ) -> User:
        """A user with ``password`` (None: no usable password yet, for an invitation); ``also``
        runs in the same transaction once the user row is written."""
        user = User(
            id=self._d.ids.new("usr"),
            tenant_id=tenant_id,
            email=_valid_email(email),
            name=_valid_name(name),
            roles=_valid_roles(roles),
            groups=_valid_groups(groups),
            created_at=self._d.clock.now(),
            password_set=password is not None,
        )
        digest = None if password is None else self.hash_password(password)

        def job(repo: Repo) -> None:
            if repo.get_tenant(tenant_id) is None:
                raise NotFoundError(f"tenant {tenant_id!r} does not exist", code="TENANT_NOT_FOUND")
            if rh.email_taken(repo, user.email):
                raise ConflictError(f"a user with e-mail {user.email} already exists", code="EMAIL_TAKEN")
            rh.insert_user(repo, user, digest)
            if also is not None:
                also(repo, user)

        try:
            self._d.store.write(job)
        except UniqueViolationError as exc:
            raise ConflictError(f"a user with e-mail {user.email} already exists", code="EMAIL_TAKEN") from exc
        return user

    def list(self, tenant_id: str) -> list[User]:
        with self._d.store.read() as repo:
            return rh.list_users(repo, tenant_id)

    def update(
        self, tenant_id: str, user_id: str, *, disabled: bool | None = None,
        roles: Sequence[str] | None = None, groups: Sequence[str] | None = None,
    ) -> User:
        """Change roles, groups or ``disabled``; disabling ends the user's sessions."""
        new_roles = _valid_roles([*roles]) if roles is not None else None
        new_groups = _valid_groups([*groups]) if groups is not None else None
        now = self._d.clock.now()

        def job(repo: Repo) -> User:
            rh.lock_tenant(repo, tenant_id)
            user = _live_user(repo, tenant_id, user_id)
            disabled_at = user.disabled_at
            if disabled is not None:
                disabled_at = (user.disabled_at or now) if disabled else None
            after = replace(user, roles=user.roles if new_roles is None else new_roles,
                            groups=user.groups if new_groups is None else new_groups, disabled_at=disabled_at)
            _keep_an_admin(repo, user, after)
            rh.update_user(repo, tenant_id, user_id, roles=after.roles, groups=after.groups, disabled_at=disabled_at)
            if disabled_at is not None:
                rh.delete_user_sessions(repo, tenant_id, user_id)
                rh.void_invitations(repo, tenant_id, user_id)
            return after

        return self._d.store.write(job)

    def delete(self, tenant_id: str, user_id: str) -> None:
        """Delete a user (a tombstone keeps the id for the record); ends its sessions."""
        now = self._d.clock.now()

        def job(repo: Repo) -> None:
            rh.lock_tenant(repo, tenant_id)
            user = _live_user(repo, tenant_id, user_id)
            gone = User(user.id, user.tenant_id, user.email, user.name, (), (), user.created_at, now)
            _keep_an_admin(repo, user, gone)
            rh.delete_user_sessions(repo, tenant_id, user_id)
            rh.void_invitations(repo, tenant_id, user_id)
            rh.tombstone_user(repo, tenant_id, user_id, now)

        self._d.store.write(job)

    def reset_password(self, tenant_id: str, user_id: str, password: str) -> User:
        """A logged-in admin sets a user's password (API keys send a link instead, see
        ``service/approval/invitations.py``): every session of that user ends, outstanding
        set-password links are void, and the e-mail's failed-login lock-out is lifted."""
        digest = self.hash_password(password)

        def job(repo: Repo) -> User:
            user = _live_user(repo, tenant_id, user_id)
            rh.set_password_hash(repo, tenant_id, user_id, digest)
            rh.delete_user_sessions(repo, tenant_id, user_id)
            rh.void_invitations(repo, tenant_id, user_id)
            rh.clear_login_failures(repo, user.email)
            return replace(user, password_set=True)

        return self._d.store.write(job)

    def change_password(self, us: UserSession, current: str, new: str) -> NewSession:
        """The user changes their own password: the current one is required (wrong: 403
        ``WRONG_PASSWORD``, counted like a failed login). Every session of the user ends,
        and a new one is returned for the browser that made the change."""
        _valid_password(new)
        email = us.user.email
        self._reserve_attempt(email)
        with self._d.store.read() as repo:
            found = rh.live_user_record(repo, us.tenant_id, us.user.id)
        if found is None or not self._verify(found.password_hash, current):
            raise PermissionDeniedError("the current password is wrong", code="WRONG_PASSWORD")
        digest = self._hasher.hash(new)
        now = self._d.clock.now()
        session_id, csrf = random_token(160), random_token(160)
        session = Session(session_hash(session_id), us.tenant_id, us.user.id, csrf, now, now, now + SESSION_MAX_AGE)

        def job(repo: Repo) -> None:
            if rh.live_user_record(repo, us.tenant_id, us.user.id) is None:
                raise AuthenticationError("the user no longer exists", code="HUMAN_SESSION_REQUIRED")
            rh.set_password_hash(repo, us.tenant_id, us.user.id, digest)
            rh.delete_user_sessions(repo, us.tenant_id, us.user.id)
            rh.void_invitations(repo, us.tenant_id, us.user.id)
            rh.clear_login_failures(repo, email)
            rh.insert_session(repo, session)

        self._d.store.write(job)
        return NewSession(session_id, csrf, found.user, session.expires_at)

    # -- sessions -------------------------------------------------------------------------
    def login(self, email: str, password: str) -> NewSession:
        """Check the password and open a session; 401 ``INVALID_CREDENTIALS`` or 429."""
        email = normalize_email(email)[:320]
        self._reserve_attempt(email)
        with self._d.store.read() as repo:
            found = rh.user_by_email(repo, email)
        ok = self._verify(found.password_hash if found else None, password)
        if found is None or not ok or found.user.disabled_at is not None:
            raise AuthenticationError("the e-mail or password is wrong", code="INVALID_CREDENTIALS")
        user = found.user
        now = self._d.clock.now()
        session_id, csrf = random_token(160), random_token(160)
        session = Session(session_hash(session_id), user.tenant_id, user.id, csrf, now, now, now + SESSION_MAX_AGE)

        def job(repo: Repo) -> None:
            rh.clear_login_failures(repo, email)  # includes this attempt's reservation
            rh.insert_session(repo, session)
            rh.delete_stale_sessions(repo, now - SESSION_IDLE, now)

        self._d.store.write(job)
        return NewSession(session_id, csrf, user, session.expires_at)

    def _reserve_attempt(self, email: str) -> None:
        """Count this attempt as a failure up front; a successful login removes it."""
        now = self._d.clock.now()
        since = now - LOGIN_WINDOW
        attempt = self._d.ids.new("lgf")

        def job(repo: Repo) -> None:
            rh.lock_login_email(repo, email)  # count-then-insert is atomic across processes
            rh.clear_login_failures(repo, email, older_than=since)
            if rh.count_login_failures(repo, email, since) >= MAX_LOGIN_FAILURES:
                oldest = rh.oldest_login_failure(repo, email, since) or now
                retry = max(1, int((oldest + LOGIN_WINDOW - now).total_seconds()) + 1)
                raise RateLimitedError(
                    f"expected at most {MAX_LOGIN_FAILURES} failed logins in "
                    f"{int(LOGIN_WINDOW.total_seconds() // 60)} minutes, got more; try again later",
                    code="LOGIN_RATE_LIMITED",
                    headers={"Retry-After": str(retry)},
                )
            rh.insert_login_failure(repo, attempt, email, now)

        self._d.store.write(job)

    def hash_password(self, password: str) -> str:
        """The argon2id hash of a password that meets the strength rules (422 otherwise)."""
        return self._hasher.hash(_valid_password(password))

    def _verify(self, stored: str | None, password: str) -> bool:
        """Whether ``password`` matches ``stored``. No hash, or no usable one (a user who has
        not set a password), costs the same argon2 work as a real one and never matches."""
        if len(password) > MAX_PASSWORD:
            return False
        usable = stored if stored and stored.startswith("$argon2") else None
        try:
            return bool(self._hasher.verify(usable or self._dummy(), password)) and usable is not None
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def _dummy(self) -> str:
        with self._lock:
            if self._dummy_hash is None:
                self._dummy_hash = self._hasher.hash(random_token(80))
            return self._dummy_hash

    def authenticate(self, session_id: str | None) -> UserSession | None:
        """The live session for a cookie value, or ``None`` (unknown, expired, disabled)."""
        if not session_id or len(session_id) > 128:
            return None
        digest = session_hash(session_id)
        now = self._d.clock.now()
        with self._d.store.read() as repo:
            session = rh.session_by_hash(repo, digest)
            user = rh.get_user(repo, session.tenant_id, session.user_id) if session else None
        if session is None:
            return None
        if user is None or user.disabled_at is not None or _expired(session, now):
            self._d.store.write(lambda repo: rh.delete_session(repo, digest))
            return None
        if now - session.last_seen_at >= SESSION_TOUCH_EVERY:
            self._d.store.write(lambda repo: rh.touch_session(repo, digest, now))
        return UserSession(session, user)

    def logout(self, session_id: str | None) -> bool:
        if not session_id or len(session_id) > 128:
            return False
        digest = session_hash(session_id)
        return bool(self._d.store.write(lambda repo: rh.delete_session(repo, digest)))

    @staticmethod
    def check_csrf(us: UserSession, token: str | None) -> None:
        """403 ``CSRF_FAILED`` unless ``token`` is this session's CSRF token."""
        expected = us.session.csrf_token.encode()
        if not token or not hmac.compare_digest(token.encode()[:256], expected):
            raise PermissionDeniedError(
                "expected the session's CSRF token with this request, got a missing or wrong one",
                code="CSRF_FAILED",
            )

    # -- decisions --------------------------------------------------------------------------
    def decide(self, us: UserSession, action_id: str, decision: str, reason: str | None) -> DecisionResult:
        """Approve or deny a held action as ``us``; see the module rules."""
        reason = (reason or "").strip() or None
        if reason is not None and len(reason) > MAX_TEXT:
            raise ValidationError(f"expected a reason of at most {MAX_TEXT} characters", code="VALIDATION_ERROR")
        if decision == "deny" and reason is None:
            raise ValidationError("expected a reason when denying an action", code="REASON_REQUIRED")
        with self._d.store.read() as repo:
            action = repo.get_action(us.tenant_id, action_id)
            request = repo.get_approval_request(us.tenant_id, action_id) if action else None
        if action is None:
            raise NotFoundError(f"no action {action_id!r}", code="NOT_FOUND")
        if request is None:
            raise ConflictError(
                f"expected an action held for approval, got one that is {action.status.value}",
                code="INVALID_ACTION_STATE",
            )
        if not may_decide(us.user, request.approvers):
            raise PermissionDeniedError(
                f"expected one of the approvers {', '.join(request.approvers)}, got {us.user.email}",
                code="NOT_AN_APPROVER",
            )
        who = Decider(us.user.email, "console", f"console session of user {us.user.id} ({us.user.email})")
        return self._approvals.decide_by_user(us.tenant_id, action_id, who, decision, reason)

    # -- cosignatures -----------------------------------------------------------------------
    def cosign(self, us: UserSession, action_id: str, statement: str | None) -> dict[str, Any]:
        statement = (statement or "").strip() or None
        if statement is not None and len(statement) > MAX_TEXT:
            raise ValidationError(f"expected a statement of at most {MAX_TEXT} characters", code="VALIDATION_ERROR")
        with self._d.store.read() as repo:
            action = repo.get_action(us.tenant_id, action_id)
        if action is None:
            raise NotFoundError(f"no action {action_id!r}", code="NOT_FOUND")
        now = self._d.clock.now()
        cosig_id = self._d.ids.new("cos")
        sealed = self._seal(us.user, action_id, action.intent_digest, action.status, statement, cosig_id, now)
        row = rh.Cosignature(
            cosig_id, us.tenant_id, action_id, us.user.id, us.user.email, us.user.name, statement,
            sealed.evidence_id, now,
        )

        def job(repo: Repo) -> LogTicket:
            if rh.has_cosigned(repo, us.tenant_id, action_id, us.user.id):
                raise ConflictError("you have already cosigned this action", code="ALREADY_COSIGNED")
            items: list[tuple[Sealed, str, str | None]] = [(sealed, us.tenant_id, action_id)]
            logged = record(repo, items, now)
            rh.insert_cosignature(repo, row)
            return logged

        try:
            log_index = self._d.store.write(job).first
        except UniqueViolationError as exc:
            raise ConflictError("you have already cosigned this action", code="ALREADY_COSIGNED") from exc
        return {
            "cosignature_id": cosig_id,
            "action_id": action_id,
            "user_id": us.user.id,
            "email": us.user.email,
            "name": us.user.name,
            "statement": statement,
            "created_at": isoformat(now),
            "envelope": sealed.envelope.to_dict(),
            "log_index": log_index,
        }

    def _seal(
        self, user: User, action_id: str, intent_digest: str, status: Status, statement: str | None,
        cosig_id: str, now: datetime,
    ) -> Sealed:
        body = {
            "_type": STATEMENT_TYPE,
            "subject": [{"name": f"action:{action_id}", "digest": {"sha256": intent_digest}}],
            "predicateType": COSIGNATURE_V1,
            "predicate": {
                "cosignature_id": cosig_id,
                "tenant_id": user.tenant_id,
                "action_id": action_id,
                "action_status": status.value,
                "signer": {"user_id": user.id, "email": user.email, "name": user.name},
                "statement": statement,
                "issued_at": isoformat(now),
            },
        }
        envelope = sign_statement(body, self._d.keyring.active)
        return Sealed(self._d.ids.new("cse"), "cosignature", envelope, sha256_hex(envelope.canonical_bytes()))


def _live_user(repo: Repo, tenant_id: str, user_id: str) -> User:
    found = rh.live_user_record(repo, tenant_id, user_id)
    if found is None:
        raise NotFoundError(f"no user {user_id!r}", code="USER_NOT_FOUND")
    return found.user


def _is_admin(user: User) -> bool:
    return "admin" in user.roles and user.disabled_at is None


def _keep_an_admin(repo: Repo, before: User, after: User) -> None:
    """409 ``LAST_ADMIN`` when ``before`` -> ``after`` leaves the tenant without an enabled
    admin. The caller holds the tenant lock, so two admins cannot demote each other."""
    if not _is_admin(before) or _is_admin(after):
        return
    others = [u for u in rh.list_users(repo, before.tenant_id) if u.id != before.id and _is_admin(u)]
    if not others:
        raise ConflictError(
            "expected the tenant to keep at least one enabled admin; make another user admin first",
            code="LAST_ADMIN",
        )


def _expired(session: Session, now: datetime) -> bool:
    return now >= session.expires_at or now - session.last_seen_at > SESSION_IDLE


def _valid_email(email: str) -> str:
    value = normalize_email(email)
    if len(value) > 320 or not _EMAIL.fullmatch(value):
        raise ValidationError(f"expected an e-mail address, got {email[:80]!r}", code="INVALID_EMAIL")
    return value


def _valid_name(name: str) -> str:
    value = name.strip()
    if not 1 <= len(value) <= 200:
        raise ValidationError("expected a name of 1 to 200 characters", code="VALIDATION_ERROR")
    return value


def _valid_password(password: str) -> str:
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise ValidationError(
            f"expected a password of {MIN_PASSWORD} to {MAX_PASSWORD} characters, got {len(password)}",
            code="WEAK_PASSWORD",
        )
    return password


def _valid_roles(roles: list[str]) -> tuple[str, ...]:
    unknown = [r for r in roles if r not in ROLES]
    if not roles or unknown:
        raise ValidationError(
            f"expected roles among {', '.join(ROLES)}, got {roles!r}", code="INVALID_ROLE"
        )
    return tuple(r for r in ROLES if r in roles)


def _valid_groups(groups: list[str]) -> tuple[str, ...]:
    if len(groups) > 50:
        raise ValidationError(f"expected at most 50 groups, got {len(groups)}", code="INVALID_GROUP")
    out: list[str] = []
    for group in groups:
        if not _GROUP.fullmatch(group):
            raise ValidationError(
                f"expected a group name of lower-case letters, digits, '.', '_' or '-', got {group[:80]!r}",
                code="INVALID_GROUP",
            )
        if group == TENANT_ADMINS:
            raise ValidationError(
                f"{TENANT_ADMINS!r} is reserved: it means every user with the admin role",
                code="INVALID_GROUP",
            )
        if group not in out:
            out.append(group)
    return tuple(out)
