"""Choosing the deployment's RFC 3161 time-stamp authority (docs/offline-verification.md).

Two implementations of ``evidence.tsa.TimestampAuthority``:

- the built-in TSA (``BuiltinTSA``): an ECDSA P-256 root and TSA certificate generated at
  first start under ``<data_dir>/tsa/`` (``root.pem``, ``tsa.pem``, ``tsa.key`` with mode
  0600), serial numbers reserved in blocks from the persisted counter ``tsa_serial`` so that
  they stay unique across restarts and processes;
- ``RemoteTSA``: an RFC 3161 client that POSTs ``application/timestamp-query`` to
  ``WARRANTOR_TSA_URL`` (RFC 3161 section 3.4) and checks that the token it gets back covers
  the bytes it asked for, chaining to the configured root (``WARRANTOR_TSA_ROOT_CERT``).
  A TSA that does not answer (connection refused, timeout, non-200) raises
  ``TSAUnavailableError``; the integrator then publishes nothing and retries every cycle,
  so an outage delays checkpoints and receipt tokens but never stops actions, and never
  yields a checkpoint without a timestamp. The outage and the recovery are logged once each.
  A token that does not verify is an ``EvidenceError``: a TSA answering wrongly is not an
  outage.

Not here: what gets timestamped and when (``transparency.Integrator``), and verification
(``evidence.tsa.verify_timestamp``).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import httpx

from warrantor.errors import EvidenceError
from warrantor.evidence.tsa import (
    BuiltinTSA,
    TimestampAuthority,
    TSAChain,
    generate_chain,
    make_request,
    token_from_response,
    verify_timestamp,
)
from warrantor.store import Store

log = logging.getLogger(__name__)

SERIAL_COUNTER = "tsa_serial"
_FILES = ("root.pem", "tsa.pem", "tsa.key")


class TSAUnavailableError(EvidenceError):
    """The time-stamp authority did not answer; the caller retries later."""

    code = "TSA_UNAVAILABLE"
    status = 503
    title = "Time-stamp authority unavailable"


class RemoteTSA:
    """An RFC 3161 client over HTTP. Every token is checked before it is used."""

    def __init__(self, url: str, root_cert_pem: str, *, timeout: float = 10.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        self._url = url
        self.root_cert_pem = root_cert_pem
        self._client = httpx.Client(timeout=timeout, transport=transport)
        self._down_since: float | None = None

    def timestamp(self, data: bytes) -> bytes:
        try:
            response = self._client.post(
                self._url, content=make_request(data),
                headers={"Content-Type": "application/timestamp-query",
                         "Accept": "application/timestamp-reply"},
            )
        except httpx.HTTPError as exc:
            raise self._unavailable(f"the TSA at {self._url} did not answer: {type(exc).__name__}: {exc}") from exc
        if response.status_code != 200:
            raise self._unavailable(f"expected HTTP 200 from the TSA at {self._url}, got {response.status_code}")
        token = token_from_response(response.content)
        verify_timestamp(token, data, self.root_cert_pem)
        if self._down_since is not None:
            log.warning("the TSA at %s answers again after %.0f s; timestamping resumes",
                        self._url, time.monotonic() - self._down_since)
            self._down_since = None
        return token

    def _unavailable(self, message: str) -> TSAUnavailableError:
        if self._down_since is None:
            self._down_since = time.monotonic()
            log.warning("%s; checkpoints and receipt timestamps wait until it answers (actions continue)", message)
        return TSAUnavailableError(message)

    def close(self) -> None:
        self._client.close()


def _load_chain(directory: Path) -> TSAChain:
    root, cert, key = (directory / name for name in _FILES)
    return TSAChain(root.read_bytes(), cert.read_bytes(), key.read_bytes())


def ensure_chain(directory: Path, common_name: str = "Warrantor built-in TSA") -> TSAChain:
    """Load the built-in chain, generating it on first start.

    The files are written to a private temporary directory that is renamed into place, so
    two processes starting at once both end up with the one chain that won.
    """
    if (directory / _FILES[0]).exists():
        return _load_chain(directory)
    directory.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    chain = generate_chain(common_name)
    staging = Path(tempfile.mkdtemp(prefix=".tsa-", dir=directory.parent))
    for name, data in zip(_FILES, (chain.root_cert_pem, chain.tsa_cert_pem, chain.tsa_key_pem), strict=True):
        fd = os.open(staging / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
    try:
        os.rename(staging, directory)
    except OSError:  # another process won the race: use its chain
        shutil.rmtree(staging, ignore_errors=True)
    return _load_chain(directory)


class SerialSource:
    """Fresh TSA serial numbers from the persisted counter ``tsa_serial``, reserved in blocks.

    A block of ``block`` numbers is reserved with one committed write, so a restart or
    another process never reuses a number (unused ones of a block are skipped: RFC 3161
    asks for unique serials, not consecutive ones). The reservation is its own write, so
    it must not run inside a write job. A block of 1,024 lasts a checkpoint-only integrator
    (two tokens a second) for minutes and one with receipt tokens at 1,000 receipts a second
    for about a second: one committed write, not sixteen.
    """

    def __init__(self, store: Store, block: int = 1024) -> None:
        self._store = store
        self._block = block
        self._next = self._end = 0
        self._lock = threading.Lock()

    def __call__(self) -> int:
        with self._lock:
            if self._next >= self._end:
                start = self._store.write(lambda repo: repo.next_counter(SERIAL_COUNTER, self._block))
                self._next, self._end = start + 1, start + 1 + self._block
            serial = self._next
            self._next += 1
            return serial


def open_tsa(
    data_dir: Path, store: Store, clock: Callable[[], datetime], *,
    tsa_url: str | None = None, tsa_root_cert: Path | None = None,
) -> tuple[TimestampAuthority, str]:
    """The configured TSA and the PEM root certificate its tokens chain to."""
    if tsa_url:
        if tsa_root_cert is None:
            raise ValueError("expected WARRANTOR_TSA_ROOT_CERT (the external TSA's root PEM) with WARRANTOR_TSA_URL")
        root = tsa_root_cert.read_text(encoding="utf-8")
        log.info("using the external TSA at %s", tsa_url)
        return RemoteTSA(tsa_url, root), root
    chain = ensure_chain(data_dir / "tsa")
    return BuiltinTSA(chain, SerialSource(store), clock), chain.root_cert_pem.decode()
