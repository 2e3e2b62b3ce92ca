"""Approver entries: the names a policy or a request may give to the humans who approve.

An entry is an e-mail address, a group name or ``tenant-admins``, in canonical form: lower
case, no whitespace or control characters (nothing that could split a mail header), at most
254 characters, e-mail or group syntax. Anything else is ``APPROVER_INVALID`` naming the
field, raised before anything is written. Whether an entry names anybody is the tenant's
business (``service/approval/approvers.py``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from warrantor.errors import ValidationError

TENANT_ADMINS = "tenant-admins"
MAX_APPROVER_LENGTH = 254
MAX_REQUEST_APPROVERS = 32
_EMAIL = re.compile(r"[^@\s<>()\[\]\\,;:\"]{1,64}@(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9-]{2,63}")
_GROUP = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")


def parse_approver(raw: object, field: str = "approvers") -> str:
    """One approver entry in its canonical form, or ``APPROVER_INVALID`` naming ``field``."""
    if not isinstance(raw, str):
        raise invalid_approver(field, f"expected a string, got {type(raw).__name__}")
    if len(raw) > MAX_APPROVER_LENGTH:
        raise invalid_approver(field, f"expected at most {MAX_APPROVER_LENGTH} characters, got {len(raw)}")
    if any(c.isspace() or not c.isprintable() for c in raw):
        raise invalid_approver(field, f"expected no whitespace or control characters, got {raw!r}")
    value = raw.lower()
    pattern = _EMAIL if "@" in value else _GROUP
    if not pattern.fullmatch(value):
        kind = "an e-mail address" if "@" in value else "a group name ([a-z0-9._-], at most 64)"
        raise invalid_approver(field, f"expected {kind}, got {raw!r}")
    return value


def parse_approvers(raw: Iterable[object], field: str = "approvers") -> tuple[str, ...]:
    out: list[str] = []
    for i, item in enumerate(raw):
        value = parse_approver(item, f"{field}[{i}]")
        if value not in out:
            out.append(value)
    if len(out) > MAX_REQUEST_APPROVERS:
        raise invalid_approver(field, f"expected at most {MAX_REQUEST_APPROVERS} approvers, got {len(out)}")
    return tuple(out)


def invalid_approver(field: str, message: str) -> ValidationError:
    return ValidationError(f"{field}: {message}", code="APPROVER_INVALID", details={"field": field})
