"""FastAPI dependencies: the services and the calling principal."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from warrantor.domain.model import Principal
from warrantor.service.services import Services


def services(request: Request) -> Services:
    svc: Services = request.app.state.services
    return svc


def principal(request: Request) -> Principal:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    svc: Services = request.app.state.services
    return svc.tenancy.authenticate(token.strip() if scheme.lower() == "bearer" else None)


Svc = Annotated[Services, Depends(services)]
Caller = Annotated[Principal, Depends(principal)]
