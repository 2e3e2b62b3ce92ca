"""Warrantor's one exception tree.

Every error that can reach a client carries a stable upper-case ``code`` and the HTTP
status it maps to. The server turns any ``WarrantorError`` into RFC 9457
``application/problem+json`` in one handler; the SDK maps the ``code`` back to the
same class, so callers catch the same exceptions whether they run in process or not.

    WarrantorError
     +-- ValidationError          400/422  bad input (``VALIDATION_ERROR`` and friends)
     +-- AuthenticationError      401      missing or unknown credentials
     +-- PermissionDeniedError    403      authenticated, but not allowed
     +-- ActionDeniedError        403      the authorization pipeline said no
     +-- NotFoundError            404
     +-- ConflictError            409      ``INVALID_ACTION_STATE``, ``DUPLICATE_REQUEST``...
     +-- GoneError                410      expired or consumed codes and nonces
     +-- RateLimitedError         429
     +-- StorageError             503      the store failed; wraps the driver's exception
     +-- EvidenceError                     evidence could not be built or verified

Messages read "expected X, got Y" where that helps the caller fix the request.
"""

from __future__ import annotations

from typing import Any


class WarrantorError(Exception):
    """Base of every Warrantor error: a stable ``code``, an HTTP ``status``, ``details``."""

    code = "INTERNAL_ERROR"
    status = 500
    title = "Internal error"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.details = details or {}
        self.headers = headers or {}


class ValidationError(WarrantorError):
    code = "VALIDATION_ERROR"
    status = 422
    title = "Invalid request"


class AuthenticationError(WarrantorError):
    code = "UNAUTHORIZED"
    status = 401
    title = "Unauthorized"


class PermissionDeniedError(WarrantorError):
    code = "FORBIDDEN"
    status = 403
    title = "Forbidden"


class ActionDeniedError(WarrantorError):
    """The authorization pipeline refused an action; ``details`` names the receipt."""

    code = "POLICY_DENIED"
    status = 403
    title = "Action denied"


class NotFoundError(WarrantorError):
    code = "NOT_FOUND"
    status = 404
    title = "Not found"


class ConflictError(WarrantorError):
    code = "CONFLICT"
    status = 409
    title = "Conflict"


class InvalidTransitionError(ConflictError):
    """An event that the action lifecycle does not allow in the current state."""

    code = "INVALID_ACTION_STATE"


class GoneError(WarrantorError):
    code = "GONE"
    status = 410
    title = "Gone"


class RateLimitedError(WarrantorError):
    code = "RATE_LIMITED"
    status = 429
    title = "Too many requests"


class StorageError(WarrantorError):
    code = "STORAGE_UNAVAILABLE"
    status = 503
    title = "Storage unavailable"


class EvidenceError(WarrantorError):
    code = "EVIDENCE_INVALID"
    status = 422
    title = "Invalid evidence"


_BY_STATUS: dict[int, type[WarrantorError]] = {
    400: ValidationError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    410: GoneError,
    422: ValidationError,
    429: RateLimitedError,
    503: StorageError,
}

_BY_CODE: dict[str, type[WarrantorError]] = {
    "INVALID_ACTION_STATE": InvalidTransitionError,
    "POLICY_DENIED": ActionDeniedError,
    "ENDPOINT_NOT_ALLOWED": ActionDeniedError,
    "ENDPOINT_TLS_MISMATCH": ActionDeniedError,
    "CONTENT_SIGNATURE_MATCH": ActionDeniedError,
    "BUDGET_EXHAUSTED": ActionDeniedError,
    "CUMULATIVE_BUDGET_EXCEEDED": ActionDeniedError,
    "AGENT_NOT_REGISTERED": ActionDeniedError,
    "INSTRUCTION_HASH_MISMATCH": ActionDeniedError,
    "GRANT_DENIED": ActionDeniedError,
    "INTEGRITY_INVALID_ATTESTATION": EvidenceError,
    "INTEGRITY_UNVERIFIED_SIGNATURE": EvidenceError,
    "INTEGRITY_DUPLICATE_SIGNATURE": EvidenceError,
}


def error_class_for(code: str, status: int) -> type[WarrantorError]:
    """The exception class the SDK raises for a problem document's ``code`` and status."""
    return _BY_CODE.get(code) or _BY_STATUS.get(status, WarrantorError)
