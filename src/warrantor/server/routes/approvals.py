"""The approval-code flow: the code is the credential, no API key needed."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from warrantor.server.deps import Svc
from warrantor.server.schemas import ApprovalDecisionIn

router = APIRouter(tags=["approvals"])


@router.get("/v1/approvals/{code}")
def review_approval(code: str, svc: Svc) -> dict[str, Any]:
    """What the approver needs to decide. 404 unknown, 410 ``CODE_EXPIRED``."""
    return svc.approvals.review(code)


@router.post("/v1/approvals/{code}/confirm")
def confirm_approval(code: str, body: ApprovalDecisionIn, svc: Svc) -> dict[str, Any]:
    """Approve or deny once. 409 ``ALREADY_RESOLVED``, 410 ``CODE_EXPIRED``."""
    result = svc.approvals.decide_by_code(code, body.decision, body.reason)
    return {
        "action_id": result.action_id,
        "status": result.status.value,
        "approver": result.approver,
        "approvals": result.approvals,
        "quorum": result.quorum,
    }
