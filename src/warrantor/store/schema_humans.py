"""Tables for the humans area (see the service modules that use them).

Imported at the end of schema.py so that one metadata holds every table.
"""

from __future__ import annotations

from warrantor.store.schema import TS, metadata, tenant_column  # noqa: F401
