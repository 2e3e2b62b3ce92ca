"""The console's account page: who is logged in, and a form to change one's own password.

The form posts the session's CSRF token and goes through ``Users.change_password``, the
call behind ``POST /v1/me/password``: the current password is required (a wrong one counts
as a failed login), every other session of the user ends, and this browser gets a new
session cookie.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from starlette.responses import Response

from warrantor.errors import ValidationError, WarrantorError
from warrantor.server.console import auth
from warrantor.server.console.web import redirect, render
from warrantor.server.deps import Svc
from warrantor.service.approval.users import MIN_PASSWORD, UserSession

router = APIRouter(include_in_schema=False)

Secret = Annotated[str, Form(max_length=1024)]


def _account_page(request: Request, us: UserSession, error: str | None = None, status: int = 200) -> Response:
    return render(request, "account.html", {"error": error, "min_password": MIN_PASSWORD}, us=us,
                  nav="account", status=status)


@router.get("/console/account")
def account_page(request: Request, svc: Svc) -> Response:
    us = auth.current_user(request, svc)
    if us is None:
        return redirect("/console/login?next=/console/account")
    return _account_page(request, us)


# Inline messages for the form's failures, by error code; anything else is an error page.
_FORM_ERRORS = {
    "PASSWORDS_DIFFER": "The two new passwords differ.",
    "WEAK_PASSWORD": f"Choose a password of at least {MIN_PASSWORD} characters.",
    "WRONG_PASSWORD": "The current password is wrong.",
    "LOGIN_RATE_LIMITED": "Too many wrong passwords for this account. Try again in 15 minutes.",
}


@router.post("/console/account/password")
def change_password_submit(
    request: Request, svc: Svc, csrf_token: Secret = "", current_password: Secret = "",
    new_password: Secret = "", confirm_password: Secret = "",
) -> Response:
    us = auth.current_user(request, svc)
    if us is None:
        return redirect("/console/login?next=/console/account")
    try:
        svc.users.check_csrf(us, csrf_token)
        if new_password != confirm_password:
            raise ValidationError("expected the new password twice, got two different ones", code="PASSWORDS_DIFFER")
        new = svc.users.change_password(us, current_password, new_password)
    except WarrantorError as exc:
        if exc.code in _FORM_ERRORS:
            return _account_page(request, us, _FORM_ERRORS[exc.code], exc.status)
        return render(request, "error.html", {"code": exc.code, "message": exc.message, "status": exc.status},
                      us=us, status=exc.status)
    response = redirect("/console/account?flash=password_changed")
    auth.set_session_cookie(request, response, new)
    return response
