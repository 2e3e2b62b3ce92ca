"""The approval link from the e-mail: ``/approve/{code}``, a server-rendered page.

``_mail_codes`` (service/authorization/authorize.py) sends each e-mail approver a link
``{public_url}/approve/{code}``. The single-use approval code in the path is the credential,
so this page needs no login: ``GET`` shows what the approver needs to decide (action type,
agent, details, payload, the rules that held it, quorum progress, expiry, and the approver
the code was issued to) from ``Approvals.review``; ``POST`` (form fields ``decision`` =
``approve``|``deny`` and ``reason``) decides once through ``Approvals.decide_by_code``, the
same call as ``POST /v1/approvals/{code}/confirm``, and shows the result.

Errors are the console's error page: an unknown code is 404, a used or expired one 410
``CODE_EXPIRED``, an action already decided 409 ``ALREADY_RESOLVED``; a deny without a
reason is 422 ``REASON_REQUIRED`` (the form is shown again). Only the code's own action and
approver are ever shown, never another code.

There is no CSRF token: a forged cross-site POST would have to name the code in its URL,
and whoever knows the code may decide anyway. Because the code is a bearer secret in the
URL, every response here also carries ``Referrer-Policy: no-referrer`` (no Referer header
leaks the link) and ``Cache-Control: no-store``, on top of the console's CSP with
``frame-ancestors 'none'`` and ``X-Frame-Options: DENY`` (no clickjacking of the buttons).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from starlette.responses import Response

from warrantor.errors import ValidationError, WarrantorError
from warrantor.server.console import auth
from warrantor.server.console.web import render
from warrantor.server.deps import Svc
from warrantor.service.approval.approvals import DECISIONS, DecisionResult
from warrantor.service.approval.users import MAX_TEXT

router = APIRouter(include_in_schema=False)

Field = Annotated[str, Form(max_length=4096)]
CODE_HEADERS = {"Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}

_MESSAGES = {
    "NOT_FOUND": "This approval link is not valid. Check that the whole link from the e-mail was opened.",
    "CODE_EXPIRED": "This approval link was already used or has expired: each link works once, until "
                    "the approval request expires.",
    "ALREADY_RESOLVED": "This action has already been decided, so this approval link no longer applies.",
}


@router.get("/approve/{code}")
def approve_page(request: Request, svc: Svc, code: str) -> Response:
    try:
        review = svc.approvals.review(code)
    except WarrantorError as exc:
        return _error(request, svc, exc)
    return _form(request, svc, code, review, reason="", error=None, status=200)


@router.post("/approve/{code}")
def approve_submit(request: Request, svc: Svc, code: str, decision: Field = "", reason: Field = "") -> Response:
    text = reason.strip()
    try:
        _check(decision, text)
    except ValidationError as exc:
        return _invalid(request, svc, code, text, exc)
    try:
        result = svc.approvals.decide_by_code(code, decision, text or None)
    except WarrantorError as exc:
        return _error(request, svc, exc)
    return _page(request, svc, {"state": "result", "r": _result(result, decision)}, 200)


def _check(decision: str, reason: str) -> None:
    """The console's rules: a known decision, a reason of bounded length, one to deny."""
    if decision not in DECISIONS:
        raise ValidationError(f"expected decision 'approve' or 'deny', got {decision[:20]!r}",
                              code="INVALID_DECISION")
    if len(reason) > MAX_TEXT:
        raise ValidationError(f"expected a reason of at most {MAX_TEXT} characters, got {len(reason)}",
                              code="VALIDATION_ERROR")
    if decision == "deny" and not reason:
        raise ValidationError("expected a reason when denying an action", code="REASON_REQUIRED")


def _invalid(request: Request, svc: Svc, code: str, reason: str, exc: ValidationError) -> Response:
    """Show the form again with the problem, so the approver can fix it and decide."""
    try:
        review = svc.approvals.review(code)
    except WarrantorError as gone:
        return _error(request, svc, gone)
    message = "Give a reason when you deny an action." if exc.code == "REASON_REQUIRED" else exc.message
    return _form(request, svc, code, review, reason=reason[:MAX_TEXT], error=(exc.code, message),
                 status=exc.status)


def _form(request: Request, svc: Svc, code: str, review: dict[str, Any], *, reason: str,
          error: tuple[str, str] | None, status: int) -> Response:
    context = {"state": "review", "code": code, "a": {**review, "held_by": _held_by(review)},
               "reason": reason, "error": error, "now": svc.deps.clock.now()}
    return _page(request, svc, context, status)


def _held_by(review: dict[str, Any]) -> list[dict[str, Any]]:
    """The rules that held the action (every non-allow rule), else the decision's reason."""
    rules = [r for r in review.get("rules") or [] if r.get("effect") not in (None, "allow")]
    if rules:
        return rules
    return [{"id": "request", "effect": "require_approval", "reason": review.get("reason") or "HELD",
             "message": "held for approval by the authorization pipeline"}]


def _result(result: DecisionResult, decision: str) -> dict[str, Any]:
    status = result.status.value
    if decision == "deny":
        headline = "Denied: a signed receipt records your decision"
    elif status == "approved":
        headline = "Approved: the agent now holds its warrant"
    else:
        headline = (f"Approval recorded: {result.approvals} of {result.quorum} approvals; "
                    "the action waits for the other approvers")
    return {"headline": headline, "decision": decision, "status": status, "action_id": result.action_id,
            "approver": result.approver, "approvals": result.approvals, "quorum": result.quorum}


def _error(request: Request, svc: Svc, exc: WarrantorError) -> Response:
    context = {"code": exc.code, "message": _MESSAGES.get(exc.code, exc.message), "status": exc.status}
    response = render(request, "error.html", context, us=auth.current_user(request, svc), status=exc.status)
    response.headers.update(CODE_HEADERS)
    return response


def _page(request: Request, svc: Svc, context: dict[str, Any], status: int) -> Response:
    response = render(request, "approve.html", context, us=auth.current_user(request, svc), status=status)
    response.headers.update(CODE_HEADERS)
    return response
