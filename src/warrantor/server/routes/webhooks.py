"""Webhook endpoints and their delivery log (tenant admins). See docs/webhooks.md."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from warrantor.server.deps import Caller, Svc

router = APIRouter(tags=["webhooks"])


class WebhookIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    url: str = Field(min_length=1, max_length=2048)
    events: list[str] = Field(min_length=1, max_length=32)


@router.post("/v1/webhooks", status_code=201)
def create_webhook(body: WebhookIn, svc: Svc, caller: Caller) -> dict[str, Any]:
    """Register an endpoint; the response holds its signing ``secret``, shown only here."""
    return svc.webhooks.create(caller, body.url, body.events)


@router.get("/v1/webhooks")
def list_webhooks(svc: Svc, caller: Caller) -> dict[str, Any]:
    return svc.webhooks.list(caller)


@router.delete("/v1/webhooks/{webhook_id}", status_code=204)
def delete_webhook(webhook_id: str, svc: Svc, caller: Caller) -> Response:
    """Delete an endpoint; deliveries not yet sent to it are cancelled."""
    svc.webhooks.delete(caller, webhook_id)
    return Response(status_code=204)


@router.get("/v1/webhooks/{webhook_id}/deliveries")
def webhook_deliveries(
    webhook_id: str, svc: Svc, caller: Caller, limit: Annotated[int, Query(ge=1, le=200)] = 50
) -> dict[str, Any]:
    """The delivery log, newest first: each event with every attempt."""
    return svc.webhooks.deliveries(caller, webhook_id, limit)
