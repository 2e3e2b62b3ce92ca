"""Set-password links: how a human gets a password that no machine chose or saw.

Rules (issue 8, "API keys never approve, directly or indirectly"):

- An API key never sets or learns a human's password. A user created by an API key has no
  usable password; Warrantor mails a set-password link to the user's own address (the
  deployment mailer: SMTP, or the development mailer's log when none is configured), and
  only whoever reads that mailbox can set the password. An admin reset made with an API
  key works the same way: the old password stops working at once, the user's sessions end,
  and a new link is mailed. No API response ever carries the token or the link.
- The token is 160 random bits, only in the link; the store keeps its sha256. It works
  once and expires ``INVITATION_TTL`` after it was issued. A newer link for the same user,
  a password set any other way, disabling or deleting the user void it (the row is gone,
  so the old link is unknown from then on).
- Using a link: unknown (or voided) token 404 ``INVITATION_NOT_FOUND``; used 410
  ``INVITATION_USED``; expired 410 ``INVITATION_EXPIRED``; a password outside the strength
  rules 422 ``WEAK_PASSWORD`` and the link stays usable. Setting the password ends any
  session of the user and lifts the e-mail's failed-login lock-out. Two requests racing
  with one token: exactly one sets the password (a conditional update marks it used).
- E-mail addresses cannot be changed after creation, so a link always goes to the address
  the user was created with.

The trust anchor is the recipient's mailbox, the same channel that carries personal
approval codes: a user who never sets a password still decides by the mailed code.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from warrantor.domain.clock import isoformat, random_token
from warrantor.errors import ConflictError, GoneError, NotFoundError
from warrantor.service.approval.users import Users
from warrantor.service.context import Deps
from warrantor.store import Repo
from warrantor.store import repo_humans as rh
from warrantor.store.repo_humans import Invitation, User

INVITATION_TTL = timedelta(hours=72)
MAX_TOKEN = 128  # longer path segments are not tokens: 404 without a lookup


@dataclass(frozen=True)
class InvitationSent:
    """What an admin learns about a link it caused: the address and expiry, never the link."""

    user: User
    expires_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {**self.user.to_dict(),
                "invitation": {"sent_to": self.user.email, "expires_at": isoformat(self.expires_at)}}


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Invitations:
    def __init__(self, deps: Deps, users: Users) -> None:
        self._d = deps
        self._users = users

    def invite(self, tenant_id: str, *, email: str, name: str, roles: list[str], groups: list[str]) -> InvitationSent:
        """Create a user without a usable password and mail them a set-password link."""
        token, now = random_token(160), self._d.clock.now()
        expires = now + INVITATION_TTL
        user = self._users.create(
            tenant_id, email=email, name=name, password=None, roles=roles, groups=groups,
            also=lambda repo, u: _issue(repo, u, token, now, expires),
        )
        user = replace(user, password_set=False)
        self._mail(user, token, expires, reset=False)
        return InvitationSent(user, expires)

    def resend(self, tenant_id: str, user_id: str) -> InvitationSent:
        """A reset by link: the old password stops working, the user's sessions end, any
        older link is void, and a new one is mailed. 404 ``USER_NOT_FOUND``; 409
        ``USER_DISABLED`` (enable the user first)."""
        token, now = random_token(160), self._d.clock.now()
        expires = now + INVITATION_TTL

        def job(repo: Repo) -> User:
            found = rh.live_user_record(repo, tenant_id, user_id)
            if found is None:
                raise NotFoundError(f"no user {user_id!r}", code="USER_NOT_FOUND")
            if found.user.disabled_at is not None:
                raise ConflictError("expected an enabled user; enable the user before sending a link",
                                    code="USER_DISABLED")
            rh.clear_password(repo, tenant_id, user_id)
            rh.delete_user_sessions(repo, tenant_id, user_id)
            rh.clear_login_failures(repo, found.user.email)
            _issue(repo, found.user, token, now, expires)
            return replace(found.user, password_set=False)

        user = self._d.store.write(job)
        self._mail(user, token, expires, reset=True)
        return InvitationSent(user, expires)

    def review(self, token: str) -> tuple[User, Invitation]:
        """The user a usable link belongs to (for the page), or the error using it would get."""
        with self._d.store.read() as repo:
            return _usable(repo, token, self._d.clock.now())

    def accept(self, token: str, password: str) -> User:
        """Set the password with a link; see the module rules for the errors."""
        self.review(token)  # an unusable link is refused before the password is looked at
        digest = self._users.hash_password(password)

        def job(repo: Repo) -> User:
            now = self._d.clock.now()
            user, inv = _usable(repo, token, now)
            if not rh.use_invitation(repo, inv.token_hash, now):
                raise _used()
            rh.set_password_hash(repo, user.tenant_id, user.id, digest)
            rh.delete_user_sessions(repo, user.tenant_id, user.id)
            rh.clear_login_failures(repo, user.email)
            return replace(user, password_set=True)

        return self._d.store.write(job)

    def _mail(self, user: User, token: str, expires: datetime, *, reset: bool) -> None:
        link = f"{self._d.limits.public_url.rstrip('/')}/invite/{token}"
        why = ("Someone with administrator rights on your Warrantor tenant reset your password: "
               "your old password no longer works." if reset else
               f"An account was created for you on Warrantor (roles: {', '.join(user.roles)}).")
        self._d.mailer.send(
            user.email,
            "Set your Warrantor password",
            f"{why}\n\n"
            f"Set your password: {link}\n"
            f"This link works once and expires {isoformat(expires)}.\n"
            "No one can log in as you until a password is set through this link. If you did not "
            "expect this e-mail, ignore it.\n",
            tenant_id=user.tenant_id,
        )


def _issue(repo: Repo, user: User, token: str, now: datetime, expires: datetime) -> None:
    rh.void_invitations(repo, user.tenant_id, user.id)
    rh.insert_invitation(repo, Invitation(token_hash(token), user.tenant_id, user.id, now, expires, None))


def _usable(repo: Repo, token: str, now: datetime) -> tuple[User, Invitation]:
    inv = rh.invitation_by_hash(repo, token_hash(token)) if 0 < len(token) <= MAX_TOKEN else None
    found = rh.live_user_record(repo, inv.tenant_id, inv.user_id) if inv else None
    if inv is None or found is None or found.user.disabled_at is not None:
        raise NotFoundError("no such set-password link: it is unknown or was replaced by a newer one",
                            code="INVITATION_NOT_FOUND")
    if inv.used_at is not None:
        raise _used()
    if now >= inv.expires_at:
        raise GoneError(f"this set-password link expired at {isoformat(inv.expires_at)}; ask an admin for a new one",
                        code="INVITATION_EXPIRED")
    return found.user, inv


def _used() -> GoneError:
    return GoneError("this set-password link was already used; each link works once", code="INVITATION_USED")
