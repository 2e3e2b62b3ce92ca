"""Users, sessions and human decisions: the JSON API behind the console.

- ``POST /v1/users`` / ``GET /v1/users``: a tenant-admin API key or a logged-in admin.
- ``PATCH /v1/users/{id}`` (roles, groups, ``disabled``), ``DELETE /v1/users/{id}`` and
  ``POST /v1/users/{id}/password`` (an admin's reset): the same admins, own tenant only.
- An API key never chooses a human's password (422 ``PASSWORD_NOT_ALLOWED_FOR_API_KEYS``,
  nothing written): it creates users without one, and its reset voids the old one; either
  way a set-password link goes to the user's address. A logged-in admin may set one, or
  omit it to send the link. ``POST /v1/invitations/{token}`` sets the password with the
  link's token (``service/approval/invitations.py``).
- ``POST /v1/me/password``: the logged-in user changes their own password (current
  password and CSRF header required); the response carries a new session cookie.
- ``POST /v1/sessions`` logs in (sets the ``warrantor_session`` cookie and returns the
  CSRF token); ``GET /v1/sessions/current`` says who is logged in; ``DELETE
  /v1/sessions/current`` logs out.
- ``POST /v1/actions/{id}/approve``, ``/deny`` and ``/cosign``: logged-in humans only,
  with the ``X-CSRF-Token`` header; API keys get 403 ``HUMAN_SESSION_REQUIRED``.

The rules themselves live in ``service/approval/users.py``; this module only maps HTTP onto them.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Body, Request
from pydantic import Field, model_validator
from starlette.responses import Response

from warrantor.domain.clock import isoformat
from warrantor.errors import ValidationError
from warrantor.server.console.auth import (
    COOKIE,
    Admin,
    AdminCaller,
    AdminTenant,
    Human,
    HumanWrite,
    clear_session_cookie,
    set_session_cookie,
)
from warrantor.server.deps import Svc
from warrantor.server.problems import request_id_of
from warrantor.server.schemas import Strict
from warrantor.service.approval.approvals import DecisionResult

router = APIRouter(tags=["humans"])


class UserIn(Strict):
    email: str = Field(min_length=3, max_length=320)
    name: str = Field(min_length=1, max_length=200)
    password: str | None = Field(default=None, min_length=1, max_length=1024)  # logged-in admins only
    roles: list[Literal["approver", "admin", "auditor"]] = Field(min_length=1, max_length=3)
    groups: list[str] = Field(default_factory=list, max_length=50)


class UserPatchIn(Strict):
    disabled: bool | None = None
    roles: list[Literal["approver", "admin", "auditor"]] | None = Field(default=None, min_length=1, max_length=3)
    groups: list[str] | None = Field(default=None, max_length=50)

    @model_validator(mode="after")
    def _something(self) -> UserPatchIn:
        if self.disabled is None and self.roles is None and self.groups is None:
            raise ValueError("expected at least one of disabled, roles, groups")
        return self


class PasswordResetIn(Strict):
    password: str | None = Field(default=None, min_length=1, max_length=1024)  # logged-in admins only


class InvitationIn(Strict):
    password: str = Field(min_length=1, max_length=1024)


class PasswordChangeIn(Strict):
    current_password: str = Field(min_length=1, max_length=1024)
    new_password: str = Field(min_length=1, max_length=1024)


class SessionIn(Strict):
    email: str = Field(min_length=1, max_length=320)
    password: str = Field(min_length=1, max_length=1024)


class DecisionIn(Strict):
    reason: str | None = Field(default=None, max_length=2000)


class CosignIn(Strict):
    statement: str | None = Field(default=None, max_length=2000)


def _no_password_from_keys(admin: Admin, password: str | None) -> None:
    if admin.is_key and password is not None:
        raise ValidationError(
            "expected no 'password' from an API key: a machine never sets a human's password; omit it "
            "and Warrantor mails the user a set-password link",
            code="PASSWORD_NOT_ALLOWED_FOR_API_KEYS", details={"field": "password"},
        )


@router.post("/v1/users", status_code=201)
def create_user(body: UserIn, svc: Svc, admin: AdminCaller) -> dict[str, Any]:
    """Create a console user (never returns the password hash). 409 ``EMAIL_TAKEN``.
    Without ``password``, the user is mailed a set-password link (``invitation`` in the
    answer says where and until when; the link itself is never returned)."""
    _no_password_from_keys(admin, body.password)
    if body.password is None:
        return svc.invitations.invite(
            admin.tenant_id, email=body.email, name=body.name, roles=list(body.roles), groups=body.groups,
        ).to_dict()
    user = svc.users.create(
        admin.tenant_id, email=body.email, name=body.name, password=body.password,
        roles=list(body.roles), groups=body.groups,
    )
    return user.to_dict()


@router.get("/v1/users")
def list_users(svc: Svc, tenant_id: AdminTenant) -> dict[str, Any]:
    return {"data": [u.to_dict() for u in svc.users.list(tenant_id)]}


@router.patch("/v1/users/{user_id}")
def update_user(user_id: str, body: UserPatchIn, svc: Svc, tenant_id: AdminTenant) -> dict[str, Any]:
    """Change roles, groups or ``disabled``; disabling ends the user's sessions at once.
    404 ``USER_NOT_FOUND`` (also for other tenants' users); 409 ``LAST_ADMIN``."""
    user = svc.users.update(
        tenant_id, user_id, disabled=body.disabled,
        roles=list(body.roles) if body.roles is not None else None, groups=body.groups,
    )
    return user.to_dict()


@router.delete("/v1/users/{user_id}", status_code=204)
def delete_user(user_id: str, svc: Svc, tenant_id: AdminTenant) -> Response:
    """Delete a user: its sessions end and it can no longer log in; 409 ``LAST_ADMIN``."""
    svc.users.delete(tenant_id, user_id)
    return Response(status_code=204)


@router.post("/v1/users/{user_id}/password")
def reset_password(
    user_id: str, svc: Svc, admin: AdminCaller, body: Annotated[PasswordResetIn | None, Body()] = None,
) -> dict[str, Any]:
    """An admin resets a user's password; every session of that user ends. A logged-in
    admin may set the new one; otherwise (always for API keys) the old one stops working
    and a set-password link is mailed to the user. 409 ``USER_DISABLED`` for a link."""
    password = body.password if body else None
    _no_password_from_keys(admin, password)
    if password is None:
        return svc.invitations.resend(admin.tenant_id, user_id).to_dict()
    return svc.users.reset_password(admin.tenant_id, user_id, password).to_dict()


@router.post("/v1/invitations/{token}")
def accept_invitation(token: str, body: InvitationIn, svc: Svc) -> Response:
    """Set your password with the token from the mailed link (no login: the token is the
    credential). 404 ``INVITATION_NOT_FOUND``, 410 ``INVITATION_USED`` /
    ``INVITATION_EXPIRED``, 422 ``WEAK_PASSWORD``. Log in with ``POST /v1/sessions`` after."""
    user = svc.invitations.accept(token, body.password)
    return Response(orjson.dumps({"user": user.to_dict()}), media_type="application/json",
                    headers={"Referrer-Policy": "no-referrer", "Cache-Control": "no-store"})


@router.post("/v1/me/password")
def change_own_password(body: PasswordChangeIn, request: Request, svc: Svc, us: HumanWrite) -> Response:
    """Change your own password (current one required: 403 ``WRONG_PASSWORD``). Every
    session of yours ends; this response sets a new session cookie and CSRF token."""
    new = svc.users.change_password(us, body.current_password, body.new_password)
    payload = {"user": new.user.to_dict(), "csrf_token": new.csrf_token, "expires_at": isoformat(new.expires_at)}
    response = Response(orjson.dumps(payload), media_type="application/json")
    set_session_cookie(request, response, new)
    return response


@router.post("/v1/sessions", status_code=201)
def login(body: SessionIn, request: Request, svc: Svc) -> Response:
    """Log in: 201 with the CSRF token and a session cookie; 401 ``INVALID_CREDENTIALS``;
    429 ``LOGIN_RATE_LIMITED`` after too many failures for the e-mail."""
    new = svc.users.login(body.email, body.password)
    payload = {
        "user": new.user.to_dict(),
        "csrf_token": new.csrf_token,
        "expires_at": isoformat(new.expires_at),
        "request_id": request_id_of(request),
    }
    response = Response(orjson.dumps(payload), status_code=201, media_type="application/json")
    set_session_cookie(request, response, new)
    return response


@router.get("/v1/sessions/current")
def whoami(us: Human) -> dict[str, Any]:
    return {"user": us.user.to_dict(), "csrf_token": us.session.csrf_token,
            "expires_at": isoformat(us.session.expires_at)}


@router.delete("/v1/sessions/current", status_code=204)
def logout(request: Request, svc: Svc, _us: HumanWrite) -> Response:
    svc.users.logout(request.cookies.get(COOKIE))
    response = Response(status_code=204)
    clear_session_cookie(request, response)
    return response


def _decision(result: DecisionResult) -> dict[str, Any]:
    return {
        "action_id": result.action_id,
        "status": result.status.value,
        "approver": result.approver,
        "approvals": result.approvals,
        "quorum": result.quorum,
    }


@router.post("/v1/actions/{action_id}/approve")
def approve(
    action_id: str, svc: Svc, us: HumanWrite, body: Annotated[DecisionIn | None, Body()] = None,
) -> dict[str, Any]:
    """Approve as the logged-in human. 403 ``NOT_AN_APPROVER``; 409 ``ALREADY_RESOLVED``."""
    return _decision(svc.users.decide(us, action_id, "approve", body.reason if body else None))


@router.post("/v1/actions/{action_id}/deny")
def deny(action_id: str, body: DecisionIn, svc: Svc, us: HumanWrite) -> dict[str, Any]:
    """Deny (a veto) as the logged-in human; ``reason`` is required."""
    return _decision(svc.users.decide(us, action_id, "deny", body.reason))


@router.post("/v1/actions/{action_id}/cosign", status_code=201)
def cosign(
    action_id: str, svc: Svc, us: HumanWrite, body: Annotated[CosignIn | None, Body()] = None,
) -> dict[str, Any]:
    """Record the human's signed cosignature. 409 ``ALREADY_COSIGNED``."""
    return svc.users.cosign(us, action_id, body.statement if body else None)
