"""The Warrantor Python SDK: ``Client``, ``AsyncClient`` and their ``guard`` decorator.

    from warrantor.client import Client
    from warrantor.errors import ActionDeniedError

    with Client("https://warrantor.example", "wrt_...") as wr:
        auth = wr.authorize("wire_transfer", details="Pay invoice 42",
                            payload={"amount_minor": 1000, "currency": "EUR", "beneficiary": "ACME"})
        ...
        wr.notarize(auth.action_id, "completed")

Errors are ``warrantor.errors`` classes, chosen by the problem document's ``code``, plus
``TransportError`` (no HTTP answer) and ``ApprovalTimeoutError`` (a guard stopped waiting).
This module is the whole public surface (a test pins ``__all__``); the underscored modules
behind it are private: ``_calls`` (endpoints as data, retry rule), ``_models`` (returned
dataclasses), ``_errors``, ``_guard`` (decorator rules), ``_sync``, ``_async``.
Spec: README.md (API v1). The server is not imported here.
"""

from warrantor.client._async import AsyncClient
from warrantor.client._calls import IntentFields
from warrantor.client._errors import ApprovalTimeoutError, TransportError
from warrantor.client._models import (
    ActionDetail,
    ActionPage,
    ApprovalResult,
    Authorization,
    ExecuteResult,
    NotarizeResult,
)
from warrantor.client._sync import Client

__all__ = [
    "ActionDetail",
    "ActionPage",
    "ApprovalResult",
    "ApprovalTimeoutError",
    "AsyncClient",
    "Authorization",
    "Client",
    "ExecuteResult",
    "IntentFields",
    "NotarizeResult",
    "TransportError",
]
