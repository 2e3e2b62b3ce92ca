"""Human sessions over HTTP: the ``warrantor_session`` cookie, CSRF, and who may call what.

- The cookie carries the session id only; it is ``HttpOnly``, ``SameSite=Lax``, ``Path=/``
  and ``Secure`` when the deployment's public URL is https.
- Human-only endpoints refuse any request with an ``Authorization`` header (403
  ``HUMAN_SESSION_REQUIRED``): an API key never approves, denies or cosigns, even when a
  cookie rides along. Without a live session they answer 401 ``HUMAN_SESSION_REQUIRED``.
- State-changing JSON calls made with the cookie need the session's CSRF token in the
  ``X-CSRF-Token`` header; console forms carry it in a hidden ``csrf_token`` field. A
  missing or wrong token is 403 ``CSRF_FAILED``.
- The login form, which has no session yet, is protected by a double-submit token: a
  random value in a short-lived cookie that the form must echo.
- ``AdminCaller`` says whether a tenant admin is an API key (a machine) or a logged-in
  human: only a human admin may choose another human's password.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from starlette.responses import Response

from warrantor.domain.clock import random_token
from warrantor.domain.model import Role
from warrantor.errors import AuthenticationError, PermissionDeniedError
from warrantor.server.deps import Svc, authenticate
from warrantor.server.problems import BEARER_CHALLENGE, SESSION_CHALLENGE
from warrantor.service.approval.users import SESSION_MAX_AGE, NewSession, UserSession
from warrantor.service.tenancy import require_role

COOKIE = "warrantor_session"
LOGIN_COOKIE = "warrantor_login_csrf"
CSRF_HEADER = "x-csrf-token"


def _secure(request: Request) -> bool:
    return str(request.app.state.services.deps.limits.public_url).lower().startswith("https://")


def set_session_cookie(request: Request, response: Response, new: NewSession) -> None:
    response.set_cookie(
        COOKIE, new.session_id, max_age=int(SESSION_MAX_AGE.total_seconds()), path="/",
        httponly=True, samesite="lax", secure=_secure(request),
    )


def clear_session_cookie(request: Request, response: Response) -> None:
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="lax", secure=_secure(request))


def new_login_token() -> str:
    return random_token(160)


def set_login_cookie(request: Request, response: Response, token: str) -> None:
    response.set_cookie(
        LOGIN_COOKIE, token, max_age=3600, path="/console", httponly=True, samesite="lax",
        secure=_secure(request),
    )


def check_login_token(request: Request, submitted: str | None) -> None:
    expected = request.cookies.get(LOGIN_COOKIE, "")
    if not expected or not submitted or not hmac.compare_digest(expected.encode(), submitted.encode()[:256]):
        raise PermissionDeniedError(
            "expected the login form's CSRF token, got a missing or wrong one; reload the page",
            code="CSRF_FAILED",
        )


def current_user(request: Request, svc: Svc) -> UserSession | None:
    """The logged-in human, or ``None``; cached on the request."""
    if "warrantor_user" not in request.scope:
        request.scope["warrantor_user"] = svc.users.authenticate(request.cookies.get(COOKIE))
    us: UserSession | None = request.scope["warrantor_user"]
    return us


def human(request: Request, svc: Svc) -> UserSession:
    """A logged-in human and never an API key (see the module rules)."""
    if request.headers.get("authorization"):
        raise PermissionDeniedError(
            "expected a logged-in user: API keys cannot approve, deny or cosign",
            code="HUMAN_SESSION_REQUIRED",
        )
    us = current_user(request, svc)
    if us is None:
        raise AuthenticationError(
            f"expected a logged-in user session (cookie {COOKIE}); log in with POST /v1/sessions",
            code="HUMAN_SESSION_REQUIRED",
        )
    return us


def human_with_csrf(request: Request, svc: Svc) -> UserSession:
    us = human(request, svc)
    svc.users.check_csrf(us, request.headers.get(CSRF_HEADER))
    return us


def admin_tenant(request: Request, svc: Svc) -> str:
    """The tenant of a tenant-admin API key or of a logged-in admin (with CSRF header)."""
    if request.headers.get("authorization"):
        return require_role(authenticate(request), Role.ADMIN)
    try:
        us = human(request, svc)
    except AuthenticationError as exc:  # neither a key nor a session: either one will do
        exc.headers["WWW-Authenticate"] = f"{BEARER_CHALLENGE}, {SESSION_CHALLENGE}"
        raise
    if not us.is_admin:
        raise PermissionDeniedError(f"expected a user with role admin, got {', '.join(us.user.roles)}",
                                    code="FORBIDDEN_ROLE")
    if request.method not in ("GET", "HEAD"):
        svc.users.check_csrf(us, request.headers.get(CSRF_HEADER))
    return us.tenant_id


@dataclass(frozen=True)
class Admin:
    """A tenant admin: ``user`` is the logged-in human, or None for an API key."""

    tenant_id: str
    user: UserSession | None

    @property
    def is_key(self) -> bool:
        return self.user is None


def admin_caller(request: Request, svc: Svc) -> Admin:
    """``admin_tenant``, and who it was: an API key or a logged-in admin."""
    tenant_id = admin_tenant(request, svc)
    return Admin(tenant_id, None if request.headers.get("authorization") else current_user(request, svc))


Human = Annotated[UserSession, Depends(human)]
HumanWrite = Annotated[UserSession, Depends(human_with_csrf)]
AdminTenant = Annotated[str, Depends(admin_tenant)]
AdminCaller = Annotated[Admin, Depends(admin_caller)]
