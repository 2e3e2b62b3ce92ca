"""The web console: server-rendered pages under ``/console`` (and ``/`` redirects there).

Pages: login, overview (charts), approvals inbox, action explorer and action detail, log
status, and the public ``/console/verify`` page where anyone checks a proof bundle against
a trust bundle with the offline verifier. Every page but login and verify needs a logged-in
user and shows only that user's tenant. Every state-changing form carries the session's
CSRF token (login: a double-submit token); a wrong one is a 403 ``CSRF_FAILED`` page.
Decisions and cosignatures go through the same service calls as the JSON API.
"""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, File, Form, Request, UploadFile
from starlette.concurrency import run_in_threadpool
from starlette.responses import FileResponse, Response

from warrantor.domain.lifecycle import Status
from warrantor.domain.model import ActionFilter
from warrantor.errors import AuthenticationError, PermissionDeniedError, RateLimitedError, WarrantorError
from warrantor.server.console import auth
from warrantor.server.console.verify_page import MAX_UPLOAD, run_verification
from warrantor.server.console.web import STATIC, redirect, render, safe_next
from warrantor.server.deps import Svc
from warrantor.service import console_views as views
from warrantor.service.approval.users import UserSession

router = APIRouter(include_in_schema=False)

STATIC_FILES = {"console.css": "text/css", "console.js": "text/javascript", "favicon.svg": "image/svg+xml"}
Field = Annotated[str, Form(max_length=4096)]


def _login_redirect(request: Request) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return redirect(f"/console/login?next={safe_next(target)}")


def _page(request: Request, svc: Svc, template: str, context: dict[str, Any], us: UserSession,
          *, nav: str, status: int = 200) -> Response:
    return render(request, template, context, us=us, nav=nav, status=status,
                  pending=views.pending_count(svc, us))


def _error_page(request: Request, exc: WarrantorError, us: UserSession | None) -> Response:
    return render(request, "error.html", {"code": exc.code, "message": exc.message, "status": exc.status},
                  us=us, status=exc.status)


@router.get("/")
def root() -> Response:
    return redirect("/console")


@router.get("/console/static/{name}")
def static(name: str) -> Response:
    if name not in STATIC_FILES:
        return Response(status_code=404)
    return FileResponse(STATIC / name, media_type=STATIC_FILES[name],
                        headers={"Cache-Control": "public, max-age=300", "X-Content-Type-Options": "nosniff"})


# -- login ------------------------------------------------------------------------------
@router.get("/console/login")
def login_page(request: Request, svc: Svc, next: str = "/console") -> Response:
    if auth.current_user(request, svc) is not None:
        return redirect(safe_next(next))
    return _login_form(request, next, None, 200)


def _login_form(request: Request, next_url: str, error: str | None, status: int, email: str = "") -> Response:
    token = auth.new_login_token()
    page = render(request, "login.html", {"next": safe_next(next_url), "error": error, "email": email,
                                          "login_token": token}, status=status)
    auth.set_login_cookie(request, page, token)
    return page


@router.post("/console/login")
def login_submit(
    request: Request, svc: Svc, email: Field = "", password: Field = "", login_token: Field = "",
    next: Field = "/console",
) -> Response:
    try:
        auth.check_login_token(request, login_token)
    except PermissionDeniedError as exc:
        return _error_page(request, exc, None)
    try:
        new = svc.users.login(email, password)
    except RateLimitedError:
        return _login_form(request, next, "Too many failed attempts for this e-mail. Try again in 15 minutes.",
                           429, email)
    except AuthenticationError:
        return _login_form(request, next, "The e-mail or password is wrong.", 401, email)
    response = redirect(safe_next(next))
    auth.set_session_cookie(request, response, new)
    response.delete_cookie(auth.LOGIN_COOKIE, path="/console")
    return response


@router.post("/console/logout")
def logout_submit(request: Request, svc: Svc, csrf_token: Field = "") -> Response:
    us = auth.current_user(request, svc)
    if us is None:
        return redirect("/console/login")
    try:
        svc.users.check_csrf(us, csrf_token)
    except PermissionDeniedError as exc:
        return _error_page(request, exc, us)
    svc.users.logout(request.cookies.get(auth.COOKIE))
    response = redirect("/console/login?flash=logged_out")
    auth.clear_session_cookie(request, response)
    return response


# -- pages ------------------------------------------------------------------------------
@router.get("/console")
def overview_page(request: Request, svc: Svc) -> Response:
    us = auth.current_user(request, svc)
    if us is None:
        return _login_redirect(request)
    data = views.overview(svc, us)
    return _page(request, svc, "overview.html", {"o": data}, us, nav="overview")


@router.get("/console/approvals")
def inbox_page(request: Request, svc: Svc) -> Response:
    us = auth.current_user(request, svc)
    if us is None:
        return _login_redirect(request)
    return _page(request, svc, "inbox.html", {"inbox": views.inbox(svc, us)}, us, nav="approvals")


@router.get("/console/actions")
def explorer_page(
    request: Request, svc: Svc, status: str = "", action_type: str = "", agent_id: str = "", page: int = 1,
    legal_hold: str = "",
) -> Response:
    us = auth.current_user(request, svc)
    if us is None:
        return _login_redirect(request)
    known = {s.value for s in Status}
    flt = ActionFilter(
        status=status if status in known else None,
        action_type=action_type.strip()[:200] or None,
        agent_id=agent_id.strip()[:200] or None,
        legal_hold={"true": True, "false": False}.get(legal_hold),
    )
    data = views.explorer(svc, us, flt, max(1, min(page, 100_000)))
    filters = {"status": flt.status or "", "action_type": flt.action_type or "", "agent_id": flt.agent_id or "",
               "legal_hold": legal_hold if flt.legal_hold is not None else ""}
    return _page(request, svc, "actions.html", {"x": data, "filters": filters, "statuses": sorted(known)},
                 us, nav="actions")


@router.get("/console/actions/{action_id}")
def action_page(request: Request, svc: Svc, action_id: str) -> Response:
    us = auth.current_user(request, svc)
    if us is None:
        return _login_redirect(request)
    try:
        view = views.action_page(svc, us, action_id[:64])
    except WarrantorError as exc:
        return _error_page(request, exc, us)
    return _page(request, svc, "action.html", {"a": view}, us, nav="actions")


@router.get("/console/actions/{action_id}/{kind}.json")
def evidence_bundle(request: Request, svc: Svc, action_id: str, kind: str) -> Response:
    """Download the proof bundle of the action's warrant or receipt (for the verify page)."""
    us = auth.current_user(request, svc)
    if us is None:
        return _login_redirect(request)
    try:
        bundle = views.proof_bundle(svc, us, action_id[:64], kind)
    except WarrantorError as exc:
        return _error_page(request, exc, us)
    filename = f"{action_id[:64]}-{kind}-bundle.json"
    return Response(orjson.dumps(bundle, option=orjson.OPT_INDENT_2), media_type="application/json",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"',
                             "Cache-Control": "no-store"})


@router.get("/console/log")
def log_page(request: Request, svc: Svc) -> Response:
    us = auth.current_user(request, svc)
    if us is None:
        return _login_redirect(request)
    return _page(request, svc, "log.html", {"log": views.log_status(svc)}, us, nav="log")


# -- decisions from the console ---------------------------------------------------------
def _back(action_id: str, back: str) -> str:
    return "/console/approvals" if back == "inbox" else f"/console/actions/{action_id}"


def _decide(request: Request, svc: Svc, action_id: str, decision: str, csrf_token: str, reason: str,
            back: str) -> Response:
    us = auth.current_user(request, svc)
    if us is None:
        return _login_redirect(request)
    try:
        svc.users.check_csrf(us, csrf_token)
    except PermissionDeniedError as exc:
        return _error_page(request, exc, us)
    target = _back(action_id[:64], back)
    try:
        svc.users.decide(us, action_id[:64], decision, reason)
    except WarrantorError as exc:
        return redirect(f"{target}?flash={exc.code}")
    return redirect(f"{target}?flash={'approved' if decision == 'approve' else 'denied'}")


@router.post("/console/actions/{action_id}/approve")
def approve_submit(request: Request, svc: Svc, action_id: str, csrf_token: Field = "", reason: Field = "",
                   back: Field = "") -> Response:
    return _decide(request, svc, action_id, "approve", csrf_token, reason, back)


@router.post("/console/actions/{action_id}/deny")
def deny_submit(request: Request, svc: Svc, action_id: str, csrf_token: Field = "", reason: Field = "",
                back: Field = "") -> Response:
    return _decide(request, svc, action_id, "deny", csrf_token, reason, back)


@router.post("/console/actions/{action_id}/cosign")
def cosign_submit(request: Request, svc: Svc, action_id: str, csrf_token: Field = "",
                  statement: Field = "") -> Response:
    us = auth.current_user(request, svc)
    if us is None:
        return _login_redirect(request)
    try:
        svc.users.check_csrf(us, csrf_token)
    except PermissionDeniedError as exc:
        return _error_page(request, exc, us)
    target = f"/console/actions/{action_id[:64]}"
    try:
        svc.users.cosign(us, action_id[:64], statement)
    except WarrantorError as exc:
        return redirect(f"{target}?flash={exc.code}")
    return redirect(f"{target}?flash=cosigned")


# -- public verification ----------------------------------------------------------------
@router.get("/console/verify")
def verify_page(request: Request, svc: Svc) -> Response:
    us = auth.current_user(request, svc)
    return render(request, "verify.html", {"result": None, "bundle_text": "", "trust_text": ""},
                  us=us, nav="verify")


@router.post("/console/verify")
async def verify_submit(
    request: Request,
    bundle_text: Annotated[str, Form(max_length=MAX_UPLOAD)] = "",
    trust_text: Annotated[str, Form(max_length=MAX_UPLOAD)] = "",
    bundle_file: Annotated[UploadFile | None, File()] = None,
    trust_file: Annotated[UploadFile | None, File()] = None,
) -> Response:
    """Stateless: nothing is stored and no login is needed, so no CSRF token either."""
    us = await run_in_threadpool(auth.current_user, request, request.app.state.services)
    bundle_raw = await _upload(bundle_file) or bundle_text
    trust_raw = await _upload(trust_file) or trust_text
    result = run_verification(bundle_raw, trust_raw)
    return render(request, "verify.html", {"result": result, "bundle_text": bundle_raw, "trust_text": trust_raw},
                  us=us, nav="verify", status=result["status"])


async def _upload(upload: UploadFile | None) -> str:
    if upload is None or not upload.filename:
        return ""
    data = await upload.read(MAX_UPLOAD + 1)
    if len(data) > MAX_UPLOAD:
        return "\x00too-large"
    return data.decode("utf-8", errors="replace")
