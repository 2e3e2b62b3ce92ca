"""Log sequencing: dense log indices for evidence, reserved as the last statement before COMMIT.

Rules:

- Every evidence row has exactly one log entry, at an index of the deployment's single log:
  0, 1, 2, ... with no gap and no duplicate across every process sharing the database. The
  row and its entry are written in the transaction of the write that produced the evidence,
  so an acknowledged (committed) evidence row always has its entry and carries its index.
- Indices come from the ``log_size`` counter: ``UPDATE counters SET value = value + n ...
  RETURNING value`` reserves ``n`` of them. Its row lock is held until COMMIT, so every
  process's writer that logs something waits there for the others' commits: indices are
  handed out in commit order and a rolled-back transaction gives its reservation back.
- That lock is the only thing the writers of several processes all queue on, so it is taken
  as late as possible: inside the group-commit writer's batch (``db.py``) a job's evidence
  is queued in a ``LogBatch`` (``Repo.sequence_evidence``), and when every job of the batch
  has run, one ``UPDATE ... RETURNING`` reserves the whole batch's range and two multi-row
  inserts write the evidence and the entries; then the batch commits. The lock is held from
  that UPDATE to the end of COMMIT, never while the jobs run. It is also the last lock a
  writer takes, so it cannot be part of a lock cycle with the jobs' own row locks (budgets,
  rate limits, actions), which used to cost deadlock retries.
- A job rolled back to its savepoint drops what it queued (``mark`` / ``drop_from``). A
  failure while sequencing fails the whole batch: nothing of it commits, nobody is
  acknowledged.
- Until its batch commits, queued evidence is in no table: a job never reads evidence
  recorded in its own transaction (the evidence a job reads, such as a warrant before its
  receipt, always belongs to an earlier, acknowledged write). The index a job recorded is a
  ``LogTicket``, known after the batch is sequenced and before the caller is answered;
  reading it inside the job is a programming error and raises.
- Outside the writer (one-off transactions, tools, tests) there is no batch: evidence is
  sequenced at once, with the same counter and the same lock (``sequence_now``).

Record sequence numbers (receipts, legal holds, erasure receipts; ``schema_records.py``):

- Each tenant's records are numbered 1, 2, ... with no gap and no duplicate, and the number
  is inside the signed statement, so a missing record shows as a missing number. A row that
  needs one carries ``FINISH``: a function of its number that signs the statement and
  returns ``(envelope_json, envelope_digest)``.
- The numbers are reserved with the log indices, at the end of the batch: one ``UPDATE
  record_sequences SET value = value + n ... RETURNING value`` per tenant in the batch, the
  tenants in sorted order, then the log's. Every writer takes these row locks in that one
  order and only after its jobs ran, so they cannot close a lock cycle; like ``log_size``
  they are held until COMMIT, so a rolled-back batch gives its numbers back. The rows are
  signed right there (one Ed25519 signature each; the statement was canonicalized before,
  only its number is spliced in).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection

from warrantor.store import schema as s
from warrantor.store.fastpath import RawInsert, bump_counter, execute, fetch_row, placeholder

LOG_SIZE = "log_size"
FINISH = "_finish"  # a row key: sign with the record sequence number (see the module rules)
_BATCH_KEY = "warrantor_log_batch"
_INSERT_EVIDENCE = RawInsert(s.evidence)
_INSERT_LOG_ENTRY = RawInsert(s.log_entries)


class LogTicket:
    """Where one write's evidence rows land in the log: ``count`` consecutive indices from
    ``first``, known once the transaction that recorded them is sequenced."""

    __slots__ = ("_fills", "_first", "count")

    def __init__(self, count: int) -> None:
        self.count = count
        self._first: int | None = None
        self._fills: list[tuple[dict[str, Any], str, int]] = []

    @property
    def first(self) -> int:
        if self._first is None:
            raise RuntimeError("a log index is known only after its write transaction is sequenced")
        return self._first

    @property
    def last(self) -> int:
        return self.first + self.count - 1

    def fill(self, target: dict[str, Any], key: str, offset: int = 0) -> None:
        """Set ``target[key]`` to the index of entry ``offset`` of this ticket as soon as it
        is known (at once if it already is): for a response built inside the write job."""
        if self._first is not None:
            target[key] = self._first + offset
        else:
            self._fills.append((target, key, offset))

    def _resolve(self, first: int) -> None:
        self._first = first
        for target, key, offset in self._fills:
            target[key] = first + offset
        self._fills.clear()


class LogBatch:
    """The evidence queued by the jobs of one writer transaction, sequenced at its end."""

    def __init__(self) -> None:
        self._queued: list[tuple[LogTicket, list[dict[str, Any]], datetime]] = []

    @staticmethod
    def begin(conn: Connection) -> LogBatch:
        """Queue ``sequence_evidence`` calls on ``conn`` until ``flush`` (the writer does this)."""
        batch = LogBatch()
        conn.info[_BATCH_KEY] = batch
        return batch

    @staticmethod
    def end(info: dict[Any, Any]) -> None:
        """Stop queueing on the connection whose ``info`` this is (also after a failure)."""
        info.pop(_BATCH_KEY, None)

    @staticmethod
    def of(conn: Connection) -> LogBatch | None:
        batch: LogBatch | None = conn.info.get(_BATCH_KEY)
        return batch

    def add(self, rows: list[dict[str, Any]], now: datetime) -> LogTicket:
        ticket = LogTicket(len(rows))
        if rows:
            self._queued.append((ticket, rows, now))
        else:
            ticket._resolve(0)
        return ticket

    def mark(self) -> int:
        return len(self._queued)

    def drop_from(self, mark: int) -> None:
        """Forget what was queued since ``mark`` (its job was rolled back)."""
        del self._queued[mark:]

    def flush(self, conn: Connection) -> None:
        """Reserve one range for everything queued and write it: the batch's last statements."""
        queued, self._queued = self._queued, []
        if queued:
            _write(conn, queued)


def sequence_now(conn: Connection, rows: list[dict[str, Any]], now: datetime) -> LogTicket:
    """Sequence evidence rows in the current transaction, without waiting for a batch end."""
    ticket = LogTicket(len(rows))
    if rows:
        _write(conn, [(ticket, rows, now)])
    else:
        ticket._resolve(0)
    return ticket


def reserve(conn: Connection, name: str, n: int) -> int:
    """Add ``n`` to counter ``name`` (created at 0 if missing) and return its value before;
    the counter's row lock is held until the transaction ends."""
    value = bump_counter(conn, name, n)
    if value is None:
        ph = placeholder(conn)
        execute(conn, f"INSERT INTO counters (name, value) VALUES ({ph}, 0) ON CONFLICT (name) DO NOTHING", (name,))  # noqa: S608
        value = bump_counter(conn, name, n)
        if value is None:  # pragma: no cover - the row exists now, inserted here or concurrently
            raise RuntimeError(f"counter {name!r} could not be created")
    return value - n


def reserve_records(conn: Connection, tenant_id: str, n: int) -> int:
    """Reserve ``n`` record sequence numbers of ``tenant_id``; the first of them. The row
    lock is held until the transaction ends."""
    ph = placeholder(conn)
    sql = f"UPDATE record_sequences SET value = value + {ph} WHERE tenant_id = {ph} RETURNING value"  # noqa: S608
    row = fetch_row(conn, sql, (n, tenant_id))
    if row is None:
        execute(conn, f"INSERT INTO record_sequences (tenant_id, value) VALUES ({ph}, 0) "  # noqa: S608
                      "ON CONFLICT (tenant_id) DO NOTHING", (tenant_id,))
        row = fetch_row(conn, sql, (n, tenant_id))
        if row is None:  # pragma: no cover - the row exists now, inserted here or concurrently
            raise RuntimeError(f"record sequence of {tenant_id!r} could not be created")
    return int(row[0]) - n + 1


def _number_records(conn: Connection, queued: Sequence[tuple[LogTicket, list[dict[str, Any]], datetime]]) -> None:
    """Give each row with ``FINISH`` its tenant's next record number and sign it."""
    by_tenant: dict[str, list[dict[str, Any]]] = {}
    for _, rows, _ in queued:
        for row in rows:
            if FINISH in row:
                by_tenant.setdefault(row["tenant_id"], []).append(row)
    for tenant_id in sorted(by_tenant):
        rows = by_tenant[tenant_id]
        first = reserve_records(conn, tenant_id, len(rows))
        for seq, row in enumerate(rows, start=first):
            row["tenant_seq"] = seq
            row["envelope_json"], row["envelope_digest"] = row.pop(FINISH)(seq)


def _write(conn: Connection, queued: Sequence[tuple[LogTicket, list[dict[str, Any]], datetime]]) -> None:
    _number_records(conn, queued)
    first = reserve(conn, LOG_SIZE, sum(ticket.count for ticket, _, _ in queued))
    evidence: list[dict[str, Any]] = []
    entries: list[dict[str, Any]] = []
    index = first
    for ticket, rows, now in queued:
        ticket._resolve(index)
        for row in rows:
            row["log_index"] = index
            evidence.append(row)
            entries.append({"idx": index, "entry": bytes.fromhex(row["envelope_digest"]),
                            "evidence_id": row["id"], "created_at": now})
            index += 1
    _INSERT_EVIDENCE.execute(conn, evidence)
    _INSERT_LOG_ENTRY.execute(conn, entries)
