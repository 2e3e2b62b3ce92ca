"""The transparency log: integration into signed checkpoints, proofs, bundles, trust.

Entries are sequenced by the write that records their evidence (``Repo.sequence_evidence``:
dense indices under the ``log_size`` row lock). This module turns them into evidence:

- ``LogTree``: each process's in-memory RFC 6962 tree of the log, rebuilt from
  ``log_entries`` at start and extended as checkpoints appear. Whenever it reaches a stored
  checkpoint it checks that checkpoint's root (and, once, its signature); a mismatch means
  the database was rewritten, and the tree refuses to serve or integrate from then on
  (``LogInconsistentError``, 503 ``LOG_INCONSISTENT``). Rows below that checkpoint are
  never re-read for serving, so ``scrub`` re-reads them every ``scrub_interval`` seconds
  and compares each with the leaf that reproduced the signed root: a deleted or altered
  row is named ("entry 3: leaf hash differs") and the tree fails the same way; ``/readyz``
  then answers 503 ``LOG_INCONSISTENT``.
- ``Integrator``: one per deployment. Every ``interval`` it appends the newly sequenced
  entries, signs a C2SP checkpoint (key ``<data_dir>/keys/log.pem``, key name = origin),
  gets an RFC 3161 token over the checkpoint body, and stores both. On PostgreSQL every
  process runs one, but only the holder of an advisory lock (held on a dedicated
  connection) integrates; the others follow.
- ``Transparency``: the read side: checkpoints (with witness cosignatures), inclusion and
  consistency proofs (RFC 9162), proof bundles, the trust bundle (keys and their signed
  history from the key ring's files, never from rows; the witness keys and quorum),
  witness cosignatures. With a witness quorum, a proof bundle is proven against the
  newest checkpoint that enough configured witnesses cosigned (409 ``NOT_YET_WITNESSED``
  while there is none), so the bundle passes the quorum its own trust bundle names.

Not here: the formats (``warrantor.evidence``) and verification (``warrantor.verify``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn

from warrantor.domain.clock import Clock
from warrantor.errors import ConflictError, EvidenceError, NotFoundError, StorageError, ValidationError
from warrantor.evidence.checkpoint import (
    COSIG_SIG_TYPE,
    Checkpoint,
    NoteSignature,
    NoteSigner,
    NoteVerifier,
    open_checkpoint,
    sign_note,
    verify_cosignature,
)
from warrantor.evidence.dsse import Envelope
from warrantor.evidence.keys import SigningKey
from warrantor.evidence.merkle import MerkleTree, leaf_hash
from warrantor.evidence.proofs import ProofBundle, TrustBundle
from warrantor.evidence.tsa import TimestampAuthority
from warrantor.service.proof.keyring import KeyRing, load_or_create_key
from warrantor.service.proof.timestamping import TSAUnavailableError, open_tsa
from warrantor.store import Repo, Store
from warrantor.store import repo_evidence as rq
from warrantor.store import repo_trust as rt
from warrantor.store.locks import SessionLock

log = logging.getLogger(__name__)

INTEGRATED_COUNTER = "log_integrated"
RECEIPTS_COUNTER = "receipts_timestamped"  # receipts below this log index have their tokens
_RECEIPT_BATCH = 500  # TSA requests per cycle at most, so a backlog drains without a long stall
PG_INTEGRATOR_LOCK = 0x5741_4C47  # "WALG": the one integrator per PostgreSQL database
_BATCH = 10_000


class LogInconsistentError(StorageError):
    """The stored log does not reproduce a checkpoint it signed: rows were rewritten."""

    code = "LOG_INCONSISTENT"


@dataclass(frozen=True)
class StoredCheckpoint:
    size: int
    root_hash: bytes
    note: str
    timestamp_token: bytes | None
    created_at: datetime

    @classmethod
    def from_row(cls, row: Any) -> StoredCheckpoint:
        token = row["timestamp_token"]
        return cls(int(row["size"]), bytes(row["root_hash"]), row["note"],
                   bytes(token) if token else None, row["created_at"])


class LogTree:
    """The log's Merkle tree in memory, checked against every stored checkpoint it reaches."""

    def __init__(self, store: Store, verifier: NoteVerifier) -> None:
        self._store = store
        self._verifier = verifier
        self._tree = MerkleTree()
        self._verified_size = -1
        self._failure: str | None = None
        self.lock = threading.RLock()

    @property
    def size(self) -> int:
        return self._tree.size

    @property
    def failure(self) -> str | None:
        return self._failure

    def check(self) -> None:
        if self._failure is not None:
            raise LogInconsistentError(self._failure)

    def append(self, leaves: Sequence[bytes]) -> None:
        with self.lock:
            self._tree.extend(leaves)

    def sync(self) -> StoredCheckpoint | None:
        """Extend to the latest stored checkpoint and check its root; return it."""
        with self.lock:
            self.check()
            with self._store.read() as repo:
                row = repo.latest_checkpoint()
                latest = StoredCheckpoint.from_row(row) if row else None
                if latest is not None and latest.size > self._tree.size:
                    self._extend_from(repo, latest.size)
            if latest is not None and latest.size != self._verified_size:
                self._verify(latest)
            return latest

    def _extend_from(self, repo: Repo, stop: int) -> None:
        while self._tree.size < stop:
            rows = repo.log_entries_from(self._tree.size, min(_BATCH, stop - self._tree.size))
            if not rows:
                self._fail(f"the log has {self._tree.size} entries, a checkpoint says {stop}")
            self._tree.extend(leaf_hash(entry) for entry in rows)

    def _verify(self, checkpoint: StoredCheckpoint) -> None:
        if self._tree.root(checkpoint.size) != checkpoint.root_hash:
            self._fail(f"the stored entries do not reproduce the root of checkpoint {checkpoint.size}")
        if self._verified_size < 0:  # once per process: the row's root is the signed one
            try:
                signed = open_checkpoint(checkpoint.note, self._verifier)
            except EvidenceError as exc:
                self._fail(f"checkpoint {checkpoint.size} is not signed by the log key: {exc.message}")
            if signed.root_hash != checkpoint.root_hash or signed.size != checkpoint.size:
                self._fail(f"checkpoint {checkpoint.size}'s note disagrees with its stored root")
        self._verified_size = checkpoint.size

    def scrub(self) -> None:
        """Compare every stored entry below the verified checkpoint with the tree's leaf;
        fail naming the entries that were deleted or altered."""
        with self.lock:
            self.check()
            size = self._verified_size
        problems: list[str] = []
        for start in range(0, max(size, 0), _BATCH):
            stop = min(start + _BATCH, size)
            with self._store.read() as repo:
                stored = dict(rt.log_entries_page(repo, start, stop))
            for index in range(start, stop):
                entry = stored.get(index)
                if entry is None:
                    problems.append(f"entry {index}: missing (deleted)")
                elif leaf_hash(entry) != self._tree.leaf(index):
                    problems.append(f"entry {index}: leaf hash differs")
        if problems:
            more = f" and {len(problems) - 5} more" if len(problems) > 5 else ""
            self._fail(f"the stored log no longer matches checkpoint {size}: {'; '.join(problems[:5])}{more}")

    def _fail(self, message: str) -> NoReturn:
        self._failure = message
        log.error("transparency log inconsistent, refusing to continue: %s", message)
        raise LogInconsistentError(message)

    def root(self, size: int) -> bytes:
        with self.lock:
            return self._tree.root(size)

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        with self.lock:
            self.check()
            return self._tree.inclusion_proof(index, size)

    def consistency_proof(self, old: int, new: int) -> list[bytes]:
        with self.lock:
            self.check()
            return self._tree.consistency_proof(old, new)


OnCheckpoint = Callable[[int, list[float]], None]


class Integrator:
    """Turns sequenced entries into signed, timestamped checkpoints; see the module doc."""

    def __init__(
        self, store: Store, tree: LogTree, signer: NoteSigner, tsa: TimestampAuthority, clock: Clock, *,
        origin: str, interval: float = 0.5, timestamp_receipts: bool = False,
        on_checkpoint: OnCheckpoint | None = None, scrub_interval: float = 60.0,
    ) -> None:
        self._store, self._tree, self._signer, self._tsa, self._clock = store, tree, signer, tsa, clock
        self._origin = origin
        self.interval = interval
        self.scrub_interval = scrub_interval
        self._timestamp_receipts = timestamp_receipts
        self.on_checkpoint = on_checkpoint
        self._lock = SessionLock(store.db, PG_INTEGRATOR_LOCK)
        self._announced = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.integrated = threading.Condition()

    # -- one cycle -------------------------------------------------------------------
    def cycle(self) -> StoredCheckpoint | None:
        """Integrate what is sequenced; returns the new checkpoint, or None when idle."""
        if self._tree.failure is not None or not self._hold_lock():
            return None
        latest = self._tree.sync()
        base = latest.size if latest else 0
        with self._store.read() as repo:
            size = repo.counter("log_size")
            rows = rq.log_rows(repo, base, size)
        if len(rows) != size - base or any(r.index != base + i for i, r in enumerate(rows)):
            raise LogInconsistentError(f"expected dense log entries [{base}, {size}), got {len(rows)}")
        if latest is not None and size == latest.size:
            self._drain_receipts(size)
            return None
        self._tree.append([leaf_hash(r.entry) for r in rows[self._tree.size - base:]])
        checkpoint = self._publish(size)
        now = self._clock.now()
        latencies = [max(0.0, (checkpoint.created_at - r.created_at).total_seconds()) for r in rows]
        with self.integrated:
            self.integrated.notify_all()
        if self.on_checkpoint is not None:
            self.on_checkpoint(size, latencies)
        log.debug("checkpoint %d signed at %s", size, now)
        self._drain_receipts(size)
        return checkpoint

    def _publish(self, size: int) -> StoredCheckpoint:
        root = self._tree.root(size)
        body = Checkpoint(self._origin, size, root).body()
        note = sign_note(body, [self._signer])
        token = self._tsa.timestamp(body.encode())
        now = self._clock.now()

        def job(repo: Repo) -> None:
            if repo.checkpoint(size) is None:
                repo.insert_checkpoint(size, root, note, token, now)
            repo.set_counter(INTEGRATED_COUNTER, max(size, repo.counter(INTEGRATED_COUNTER)))

        self._store.write(job)
        return StoredCheckpoint(size, root, note, token, now)

    def ensure_initial(self) -> None:
        """Make sure a checkpoint exists before the server reports ready: on a fresh
        deployment the empty tree's, otherwise one covering what is already sequenced."""
        if not self._hold_lock():
            return
        if self._tree.sync() is None and self._tree.size == 0:
            with self._store.read() as repo:
                if repo.counter("log_size") > 0:
                    self.cycle()
                    return
            self._publish(0)

    def _drain_receipts(self, checkpointed: int) -> None:
        """With ``timestamp_receipts``: give a token to each receipt below ``checkpointed``
        that has none, from the persisted mark ``receipts_timestamped`` on. A TSA failure
        keeps the tokens already obtained but leaves the mark, so the next cycle retries the
        rest: a receipt is never skipped because the TSA was down when its range was
        checkpointed."""
        if not self._timestamp_receipts:
            return
        with self._store.read() as repo:
            start = repo.counter(RECEIPTS_COUNTER)
            stop = min(checkpointed, start + _RECEIPT_BATCH)
            receipts = rq.receipts_in_range(repo, start, stop) if start < stop else []
        if start >= stop:
            return
        tokens: list[tuple[str, bytes]] = []
        failure: TSAUnavailableError | None = None
        for evidence_id, envelope in receipts:
            try:
                tokens.append((evidence_id, self._tsa.timestamp(Envelope.from_dict(envelope).canonical_bytes())))
            except TSAUnavailableError as exc:
                failure = exc
                break

        def job(repo: Repo) -> None:
            rq.set_timestamp_tokens(repo, tokens)
            if failure is None:
                repo.set_counter(RECEIPTS_COUNTER, max(stop, repo.counter(RECEIPTS_COUNTER)))

        if tokens or failure is None:
            self._store.write(job)
        if failure is not None:
            raise failure

    # -- one integrator per deployment -----------------------------------------------
    def _hold_lock(self) -> bool:
        """SQLite: always (one server process). PostgreSQL: the advisory lock's holder."""
        held = self._lock.held()
        if held and not self._announced:
            log.info("this process is the log integrator")
            self._announced = True
        return held

    def _release(self) -> None:
        self._lock.release()
        self._announced = False

    def start(self) -> None:
        """Publish the first checkpoint (synchronously: readiness implies one exists), then
        integrate in a background thread."""
        self._stop.clear()
        try:
            self.ensure_initial()
        except Exception:
            log.exception("publishing the initial checkpoint failed; the integrator will retry")
        self._thread = threading.Thread(target=self._run, name="warrantor-integrator", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        next_run = time.monotonic() + self.interval
        next_scrub = time.monotonic() + self.scrub_interval
        while not self._stop.wait(max(0.0, next_run - time.monotonic())):
            next_run += self.interval  # a fixed rate: a slow cycle does not push the next one back
            next_run = max(next_run, time.monotonic())
            try:
                try:
                    if self.cycle() is None and not self._lock.is_held:
                        self._tree.sync()  # a follower keeps its tree current for proofs
                except TSAUnavailableError:
                    pass  # logged once per outage by the TSA client; the next cycle retries
                if time.monotonic() >= next_scrub:
                    next_scrub = time.monotonic() + self.scrub_interval
                    self._tree.scrub()
            except LogInconsistentError:
                pass  # logged once by the tree; integration stays stopped
            except Exception:
                log.exception("log integration failed; retrying")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._release()


class Transparency:
    """Read side of the log and the trust anchors, for the routes and the CLI."""

    def __init__(self, store: Store, tree: LogTree, keyring: KeyRing, signer: NoteSigner, origin: str,
                 tsa_root_pem: str | None, witnesses: Sequence[NoteVerifier] = (),
                 integrator: Integrator | None = None, witness_quorum: int = 0) -> None:
        self._store, self._tree, self._keyring = store, tree, keyring
        self.log_signer = signer  # signs checkpoints (Integrator) and SCITT receipts (service/proof/scitt.py)
        self.log_verifier = signer.verifier()
        self.origin = origin
        self.tsa_root_pem = tsa_root_pem
        self.witnesses = tuple(witnesses)
        if not 0 <= witness_quorum <= len(self.witnesses):
            raise ValueError(f"expected WARRANTOR_WITNESS_QUORUM between 0 and {len(self.witnesses)} "
                             f"(the witnesses in WARRANTOR_WITNESS_KEYS), got {witness_quorum}")
        self.witness_quorum = witness_quorum
        self.integrator = integrator

    # -- checkpoints -----------------------------------------------------------------
    @property
    def failure(self) -> str | None:
        """Why the stored log no longer matches its signed checkpoints, if it does not."""
        return self._tree.failure

    def scrub(self) -> None:
        self._tree.scrub()

    def latest(self) -> StoredCheckpoint:
        latest = self._tree.sync()
        if latest is None:
            raise NotFoundError("no checkpoint has been signed yet", code="NO_CHECKPOINT",
                                headers={"Retry-After": "1"})
        return latest

    def note_with_cosignatures(self, checkpoint: StoredCheckpoint) -> str:
        with self._store.read() as repo:
            lines = rq.cosignature_lines(repo, checkpoint.size)
        return checkpoint.note + "".join(lines)

    # -- proofs ----------------------------------------------------------------------
    def inclusion(self, index: int, size: int) -> list[bytes]:
        published = self.latest().size
        if not 0 <= index < size <= published:
            raise ValidationError(
                f"expected 0 <= index < size <= {published} (the latest checkpoint), got index={index}, size={size}",
                code="INVALID_PROOF_RANGE",
            )
        return self._tree.inclusion_proof(index, size)

    def consistency(self, old: int, new: int) -> list[bytes]:
        published = self.latest().size
        if not 0 <= old <= new <= published:
            raise ValidationError(
                f"expected 0 <= old <= new <= {published} (the latest checkpoint), got old={old}, new={new}",
                code="INVALID_PROOF_RANGE",
            )
        return self._tree.consistency_proof(old, new)

    def bundle(self, tenant_id: str, evidence_id: str, kind: str, *, wait: float = 2.0) -> ProofBundle:
        """The proof bundle of one warrant or receipt of this tenant, against the latest checkpoint."""
        with self._store.read() as repo:
            ev = repo.get_evidence(tenant_id, evidence_id)
        if ev is None or ev.kind != kind or ev.log_index is None:
            raise NotFoundError(f"no {kind} {evidence_id!r}", code="NOT_FOUND")
        checkpoint = self._wait_for(ev.log_index + 1, wait)
        if self.witness_quorum:
            checkpoint = self._witnessed(ev.log_index)
        proof = self._tree.inclusion_proof(ev.log_index, checkpoint.size)
        return ProofBundle(Envelope.from_dict(ev.envelope), ev.log_index, checkpoint.size, tuple(proof),
                           self.note_with_cosignatures(checkpoint), checkpoint.timestamp_token)

    def _witnessed(self, log_index: int) -> StoredCheckpoint:
        """The newest checkpoint covering ``log_index`` that ``witness_quorum`` configured
        witnesses cosigned (their lines were verified when accepted)."""
        key_hashes = [w.key_hash.hex() for w in self.witnesses]
        with self._store.read() as repo:
            size = rq.newest_cosigned_size(repo, log_index, key_hashes, self.witness_quorum)
            row = repo.checkpoint(size) if size is not None else None
        if row is None:
            raise ConflictError(
                f"the entry is in a signed checkpoint, but no checkpoint covering it has cosignatures by "
                f"{self.witness_quorum} of the configured witnesses yet; retry once they have cosigned",
                code="NOT_YET_WITNESSED", headers={"Retry-After": "5"},
                details={"log_index": log_index, "witness_quorum": self.witness_quorum},
            )
        return StoredCheckpoint.from_row(row)

    def _wait_for(self, size: int, wait: float) -> StoredCheckpoint:
        deadline = time.monotonic() + wait
        while True:
            latest = self._tree.sync()
            if latest is not None and latest.size >= size:
                return latest
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ConflictError(
                    "the entry is sequenced but not yet in a signed checkpoint; retry shortly",
                    code="NOT_YET_INTEGRATED", headers={"Retry-After": "1"},
                )
            if self.integrator is not None:
                with self.integrator.integrated:
                    self.integrator.integrated.wait(min(0.1, remaining))
            else:
                time.sleep(min(0.05, remaining))

    def entries(self, start: int, limit: int) -> dict[str, Any]:
        """Stored entries ``[start, start + limit)`` below the latest stored checkpoint, for
        monitors that recompute the tree; a deleted row shows as a gap. Served as stored
        even when the log is inconsistent: that is when a monitor needs them most."""
        with self._store.read() as repo:
            latest = repo.latest_checkpoint()
            size = int(latest["size"]) if latest else 0
            stop = min(size, start + limit)
            rows = rt.log_entries_page(repo, start, stop) if start < stop else []
        return {"tree_size": size, "start": start, "entries": rows}

    # -- trust -----------------------------------------------------------------------
    def trust_bundle(self) -> TrustBundle:
        """Keys and their signed history from the key ring's files (never from rows)."""
        keys = tuple(self._keyring.trusted_keys())
        return TrustBundle(self.origin, self.log_verifier, keys, self.tsa_root_pem, self._keyring.history(),
                           self.witnesses, self.witness_quorum)

    # -- witnesses -------------------------------------------------------------------
    def add_cosignature(self, size: int, line: str) -> dict[str, Any]:
        """Accept one C2SP tlog-cosignature line from a configured witness for checkpoint ``size``."""
        try:
            signature = NoteSignature.from_line(line.rstrip("\n"))
        except ValueError as exc:
            raise ValidationError(f"expected a cosignature line: {exc}", code="INVALID_COSIGNATURE") from exc
        witness = next((w for w in self.witnesses if w.matches(signature)), None)
        if witness is None:
            raise ValidationError(f"expected a cosignature by a configured witness, got {signature.name!r}",
                                  code="UNKNOWN_WITNESS")
        with self._store.read() as repo:
            row = repo.checkpoint(size)
        if row is None:
            raise NotFoundError(f"no checkpoint of size {size}", code="NOT_FOUND")
        note, line = row["note"], signature.to_line()
        try:
            cosigned_at = verify_cosignature(note + line, witness)
        except EvidenceError as exc:
            raise ValidationError(exc.message, code="INVALID_COSIGNATURE") from exc
        key_hash = signature.key_hash.hex()
        self._store.write(lambda repo: rq.insert_cosignature(repo, size, key_hash, witness.name, line, cosigned_at))
        return {"size": size, "witness": witness.name, "key_id": key_hash, "timestamp": cosigned_at}


@dataclass(frozen=True)
class LogConfig:
    """The log's settings (``WARRANTOR_LOG_ORIGIN``, ``_INTEGRATE_INTERVAL_MS``, ``_TSA_URL``,
    ``_TSA_ROOT_CERT``, ``_TIMESTAMP_RECEIPTS``, ``_WITNESS_KEYS``, ``_WITNESS_QUORUM``,
    ``_LOG_SCRUB_SECONDS``)."""

    origin: str = "warrantor.local/log"
    integrate_interval_ms: int = 500
    tsa_url: str | None = None
    tsa_root_cert: Path | None = None
    timestamp_receipts: bool = False
    witness_keys: str | None = None
    scrub_interval_seconds: float = 60.0
    witness_quorum: int = 0


def build_log(store: Store, data_dir: Path, keyring: KeyRing, clock: Clock,
              config: LogConfig) -> tuple[Transparency, Integrator]:
    """The log's key (``<data_dir>/keys/log.pem``), TSA, tree, integrator and read side."""
    if not 10 <= config.integrate_interval_ms <= 1000:
        raise ValueError(f"expected an integrate interval in [10, 1000] ms, got {config.integrate_interval_ms}")
    if not 0 < config.scrub_interval_seconds <= 86400:
        raise ValueError(f"expected WARRANTOR_LOG_SCRUB_SECONDS in (0, 86400], got {config.scrub_interval_seconds}")
    signer = NoteSigner(config.origin, _log_key(data_dir / "keys" / "log.pem"))
    tsa, root = open_tsa(data_dir, store, clock.now, tsa_url=config.tsa_url, tsa_root_cert=config.tsa_root_cert)
    tree = LogTree(store, signer.verifier())
    integrator = Integrator(store, tree, signer, tsa, clock, origin=config.origin,
                            interval=config.integrate_interval_ms / 1000,
                            timestamp_receipts=config.timestamp_receipts,
                            scrub_interval=config.scrub_interval_seconds)
    transparency = Transparency(store, tree, keyring, signer, config.origin, root,
                                parse_witness_keys(config.witness_keys), integrator, config.witness_quorum)
    return transparency, integrator


def _log_key(path: Path) -> SigningKey:
    try:
        return load_or_create_key(path)
    except FileExistsError:  # another process created it a moment ago
        time.sleep(0.1)
        return SigningKey.load(path)


def parse_witness_keys(value: str | None) -> tuple[NoteVerifier, ...]:
    """``WARRANTOR_WITNESS_KEYS``: comma-separated cosigner vkeys (signature type 0x04)."""
    out = []
    for vkey in filter(None, (v.strip() for v in (value or "").split(","))):
        verifier = NoteVerifier.from_vkey(vkey)
        if verifier.sig_type != COSIG_SIG_TYPE:
            raise ValueError(f"expected a cosignature (type 0x04) witness vkey, got {vkey!r}")
        out.append(verifier)
    return tuple(out)
