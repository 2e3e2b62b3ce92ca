"""Settings: one object, built from ``WARRANTOR_*`` environment variables and CLI flags.

Nothing else reads the environment; everything else takes explicit arguments.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

# A skew wider than this would let a report from minutes outside the warrant pass as a match.
MAX_CLOCK_SKEW_SECONDS = 300


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path(".warrantor")
    database_url: str | None = None  # None: SQLite under data_dir
    host: str = "127.0.0.1"
    port: int = 8080
    operator_key: str | None = None
    smtp_url: str | None = None
    smtp_from: str = "warrantor@localhost"
    public_url: str | None = None
    warrant_ttl_seconds: int = 900
    notarize_grace_seconds: int = 3600
    default_approval_ttl_seconds: int = 86400
    clock_skew_seconds: int = 5  # tolerance on reported execution times, like JWT leeway
    max_body_bytes: int = 1_048_576
    request_threads: int = 40
    workers: int = 1  # server processes; more than one needs PostgreSQL
    sweep_interval_seconds: float = 5.0
    retention_interval_seconds: float = 3600.0  # how often the retention job runs (docs/records.md)
    audit_file: Path | None = None  # JSON Lines: one audit record per state change (docs/records.md)
    log_origin: str = "warrantor.local/log"
    integrate_interval_ms: int = 500
    log_scrub_seconds: float = 60.0  # how often the stored log is re-checked against its checkpoint
    tsa_url: str | None = None
    tsa_root_cert: Path | None = None  # PEM root of the external TSA at tsa_url
    witness_keys: str | None = None  # comma-separated C2SP cosigner vkeys of trusted witnesses
    witness_quorum: int = 0  # cosignatures by that many of them make a checkpoint witnessed
    timestamp_receipts: bool = False
    otel: bool = False  # OpenTelemetry spans per authorization stage (the otel extra; docs/operations.md)
    # POST /v1/actions/{id}/execute (docs/execute.md)
    execute_secrets: Path | None = None  # YAML: URL prefixes -> headers to inject
    execute_allow_private: str | None = None  # comma-separated networks the executor may reach
    execute_connect_timeout_seconds: float = 5.0
    execute_read_timeout_seconds: float = 10.0
    execute_deadline_seconds: float = 30.0
    execute_max_response_bytes: int = 1_048_576
    demo: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.clock_skew_seconds <= MAX_CLOCK_SKEW_SECONDS:
            raise ValueError(
                f"expected WARRANTOR_CLOCK_SKEW_SECONDS between 0 and {MAX_CLOCK_SKEW_SECONDS}, "
                f"got {self.clock_skew_seconds}"
            )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(f"WARRANTOR_{f.name.upper()}")
            if raw is None or raw == "":
                continue
            values[f.name] = _coerce(f.type, raw, f.name)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def to_env(self) -> dict[str, str]:
        """The ``WARRANTOR_*`` variables that rebuild these settings (for worker processes)."""
        out: dict[str, str] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            out[f"WARRANTOR_{f.name.upper()}"] = str(value).lower() if isinstance(value, bool) else str(value)
        return out

    def with_(self, **changes: Any) -> Settings:
        return replace(self, **changes)

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir.resolve() / 'warrantor.db'}"

    @property
    def effective_public_url(self) -> str:
        return self.public_url or f"http://{self.host}:{self.port}"


def _coerce(kind: Any, raw: str, name: str) -> Any:
    kind = str(kind)
    try:
        if "Path" in kind:
            return Path(raw)
        if "bool" in kind:
            if raw.lower() not in ("1", "0", "true", "false", "yes", "no"):
                raise ValueError(raw)
            return raw.lower() in ("1", "true", "yes")
        if "int" in kind:
            return int(raw)
        if "float" in kind:
            return float(raw)
    except ValueError:
        raise ValueError(f"expected WARRANTOR_{name.upper()} to be a {kind}, got {raw!r}") from None
    return raw
