"""The set-password link from the invitation e-mail: ``/invite/{token}``, a server-rendered page.

``Invitations`` (service/approval/invitations.py) mails ``{public_url}/invite/{token}`` to a user an
API key created, or whose password an API key reset. The token in the path is the
credential, so the page needs no login: ``GET`` shows whose password is being set (name,
e-mail, tenant roles) and a form; ``POST`` (``password``, ``confirm_password``) sets it once
through ``Invitations.accept``, the same call as ``POST /v1/invitations/{token}``, and
points to the login page.

Errors: unknown or replaced link 404 ``INVITATION_NOT_FOUND``, used 410
``INVITATION_USED``, expired 410 ``INVITATION_EXPIRED`` (the console's error page); a weak
password or two different ones show the form again (422) and the link stays usable.

Like the approval page there is no CSRF token (a forged POST would have to know the
token), and every response carries ``Referrer-Policy: no-referrer`` and ``Cache-Control:
no-store`` on top of the console's CSP with ``frame-ancestors 'none'`` and
``X-Frame-Options: DENY``. The page ignores any console session the browser may have.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from starlette.responses import Response

from warrantor.errors import ValidationError, WarrantorError
from warrantor.server.console.web import render
from warrantor.server.deps import Svc
from warrantor.server.routes.approve_page import CODE_HEADERS
from warrantor.service.approval.users import MIN_PASSWORD

router = APIRouter(include_in_schema=False)

Secret = Annotated[str, Form(max_length=1024)]

_MESSAGES = {
    "INVITATION_NOT_FOUND": "This link is not valid. Check that the whole link from the e-mail was opened; "
                            "if you received a newer e-mail, use the link in that one.",
    "INVITATION_USED": "This link was already used: each link works once. Log in with the password you set, "
                       "or ask an admin to send a new link.",
    "INVITATION_EXPIRED": "This link has expired. Ask an admin to send a new one.",
}
_FORM_ERRORS = {
    "PASSWORDS_DIFFER": "The two passwords differ.",
    "WEAK_PASSWORD": f"Choose a password of at least {MIN_PASSWORD} characters.",
}


@router.get("/invite/{token}")
def invite_page(request: Request, svc: Svc, token: str) -> Response:
    try:
        user, inv = svc.invitations.review(token)
    except WarrantorError as exc:
        return _error(request, exc)
    return _page(request, {"state": "form", "token": token, "u": user, "expires_at": inv.expires_at}, 200)


@router.post("/invite/{token}")
def invite_submit(request: Request, svc: Svc, token: str, password: Secret = "",
                  confirm_password: Secret = "") -> Response:
    try:
        if password != confirm_password:
            svc.invitations.review(token)  # an unusable link is its own error, whatever was typed
            raise ValidationError("expected the new password twice, got two different ones", code="PASSWORDS_DIFFER")
        user = svc.invitations.accept(token, password)
    except WarrantorError as exc:
        if exc.code in _FORM_ERRORS:
            return _again(request, svc, token, _FORM_ERRORS[exc.code], exc.status)
        return _error(request, exc)
    return _page(request, {"state": "done", "u": user}, 200)


def _again(request: Request, svc: Svc, token: str, message: str, status: int) -> Response:
    try:
        user, inv = svc.invitations.review(token)
    except WarrantorError as exc:
        return _error(request, exc)
    context = {"state": "form", "token": token, "u": user, "expires_at": inv.expires_at, "error": message}
    return _page(request, context, status)


def _error(request: Request, exc: WarrantorError) -> Response:
    context = {"code": exc.code, "message": _MESSAGES.get(exc.code, exc.message), "status": exc.status}
    response = render(request, "error.html", context, status=exc.status)
    response.headers.update(CODE_HEADERS)
    return response


def _page(request: Request, context: dict[str, Any], status: int) -> Response:
    response = render(request, "invite.html", {"min_password": MIN_PASSWORD, "error": None, **context}, status=status)
    response.headers.update(CODE_HEADERS)
    return response
