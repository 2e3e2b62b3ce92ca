"""Rendering console pages: one Jinja2 environment, safe headers, flash messages.

Templates are autoescaped HTML under ``server/templates``. Every page is sent with a strict
Content-Security-Policy (same-origin scripts and styles only, no inline script or style,
no framing) and ``Cache-Control: no-store``, since pages show tenant data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from warrantor.server.console import charts
from warrantor.server.console.present import FILTERS
from warrantor.service.approval.users import UserSession

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
STATIC = Path(__file__).resolve().parent.parent / "static"

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; connect-src 'self'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

# Messages for flash codes passed in a redirect's query string (never raw user text).
FLASH = {
    "approved": ("ok", "Approval recorded."),
    "denied": ("ok", "Denial recorded: the action is closed and its receipt minted."),
    "cosigned": ("ok", "Cosignature recorded and signed."),
    "logged_out": ("ok", "You are logged out."),
    "password_changed": ("ok", "Password changed. Your other sessions are logged out."),
    "NOT_AN_APPROVER": ("error", "You are not one of the approvers of this action."),
    "ALREADY_RESOLVED": ("error", "This action was already decided (or you already decided it)."),
    "ALREADY_COSIGNED": ("error", "You have already cosigned this action."),
    "REASON_REQUIRED": ("error", "Give a reason when you deny an action."),
    "INVALID_ACTION_STATE": ("error", "This action is not waiting for approval."),
    "VALIDATION_ERROR": ("error", "The form was not valid."),
    "NOT_FOUND": ("error", "No such action."),
}


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(TEMPLATES)),
        autoescape=select_autoescape(("html",), default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(FILTERS)
    env.globals["charts"] = charts
    return env


_ENV = _environment()


def render(
    request: Request, template: str, context: dict[str, Any], *, us: UserSession | None = None,
    status: int = 200, nav: str = "", pending: int | None = None,
) -> HTMLResponse:
    flash_code = request.query_params.get("flash", "")
    page = _ENV.get_template(template).render(
        request=request,
        user=us.user if us else None,
        csrf_token=us.session.csrf_token if us else "",
        nav=nav,
        pending_count=pending,
        flash=FLASH.get(flash_code),
        **context,
    )
    return HTMLResponse(page, status_code=status, headers=SECURITY_HEADERS)


def redirect(url: str) -> Response:
    return RedirectResponse(url, status_code=303, headers={"Cache-Control": "no-store"})


def safe_next(value: str | None) -> str:
    """Only console paths may follow a login: no open redirects."""
    if value and value.startswith("/console") and "//" not in value and "\\" not in value:
        return value
    return "/console"
