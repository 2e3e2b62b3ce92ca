"""FastAPI dependencies: the services and the calling principal.

Both are ``async def``: FastAPI runs a sync dependency in the thread pool, a hand-off that
costs more than the work itself (a dict lookup; one indexed read of the key's row, which
takes microseconds on SQLite and is never cached, so a revoked key stops at once).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from warrantor.domain.model import Principal
from warrantor.service.services import Services


async def services(request: Request) -> Services:
    svc: Services = request.app.state.services
    return svc


def authenticate(request: Request) -> Principal:
    """The principal of the request's bearer API key (401 without a valid one)."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    svc: Services = request.app.state.services
    return svc.tenancy.authenticate(token.strip() if scheme.lower() == "bearer" else None)


async def principal(request: Request) -> Principal:
    return authenticate(request)


Svc = Annotated[Services, Depends(services)]
Caller = Annotated[Principal, Depends(principal)]
