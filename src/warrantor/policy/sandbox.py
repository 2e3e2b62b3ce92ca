"""Run the native policy checks on an untrusted bundle in a child process first.

Why: cedarpy is native code. The scanner in :mod:`warrantor.policy._scan` refuses every
input shape known to crash it or to cost too much (deep brackets, deep expression trees,
long ``has`` paths), but a shape nobody has found yet would otherwise take the whole server
down (SIGSEGV) or hold a worker for minutes (a schema whose entity hierarchy is a 10,000
long chain costs Cedar minutes and gigabytes). So an upload first runs every native step it
will later run in the server (parse, validate, build the engine, compile the detectors) in
a forked child with hard limits; only a bundle the child accepted is parsed in the server.

The rules:

- The child is ``os.fork()``-ed from the calling thread and runs only code that is already
  imported (the policy package and cedarpy), then leaves with ``os._exit``: no atexit
  handlers, no flushing of the parent's buffers, no use of the parent's sockets or locks.
- Limits, set in the child before it reads the bundle: address space (the parent's current
  size plus ``memory_bytes``, ``RLIMIT_AS``), CPU time (``RLIMIT_CPU``), no core file (a core
  would hold a copy of the server's memory), and a thread stack of ``stack_bytes`` (smaller
  than the server's threads, so what passes here has room to spare there).
- The parent waits at most ``timeout_seconds`` of wall time, then SIGKILLs the child by its
  pid, and always reaps it. A child that dies (signal, resource limit) or does not answer
  is reported as :class:`SandboxError`: the upload is refused, fail closed.
- The child answers with JSON on a pipe: ``{"problems": [...]}`` or ``{"ok": true}``; no
  pickle crosses the boundary.

Where ``os.fork`` does not exist (Windows) the check runs in-process and only the scanner's
limits protect the server. Evaluation of an accepted bundle stays in-process: no child per
authorization.
"""

from __future__ import annotations

import contextlib
import faulthandler
import json
import os
import select
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

try:
    import resource
except ImportError:  # pragma: no cover - not POSIX; the timeout still applies
    resource = None  # type: ignore[assignment]

_CHUNK = 65536


@dataclass(frozen=True)
class SandboxLimits:
    timeout_seconds: float = 20.0
    cpu_seconds: int = 10
    memory_bytes: int = 512 * 1024 * 1024
    stack_bytes: int = 2 * 1024 * 1024


class SandboxError(Exception):
    """The child did not answer: it crashed, hit a limit, or ran out of time."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def run_isolated(
    check: Callable[[Any], dict[str, Any]], arg: Any, limits: SandboxLimits
) -> dict[str, Any]:
    """``check(arg)`` in a forked child under ``limits``; its JSON-able answer.

    Raises :class:`SandboxError` when the child crashes, exceeds a limit or times out.
    """
    if not hasattr(os, "fork"):
        return check(arg)
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        os.close(read_fd)
        _child(check, arg, limits, write_fd)
    os.close(write_fd)
    deadline = time.monotonic() + limits.timeout_seconds
    data, timed_out = b"", True
    try:
        data, timed_out = _read_until(read_fd, deadline)
    finally:
        os.close(read_fd)
        status = _reap(pid, deadline if not timed_out else 0.0)
    if timed_out:
        raise SandboxError(f"the check took longer than {limits.timeout_seconds:g} s")
    if os.WIFSIGNALED(status):
        name = _signal_name(os.WTERMSIG(status))
        raise SandboxError(f"the policy engine died with {name} (a resource limit or a crash)")
    try:
        answer = json.loads(data)
    except ValueError as exc:
        raise SandboxError(f"the check ended without an answer (exit status {status})") from exc
    if not isinstance(answer, dict):
        raise SandboxError("the check answered with something other than an object")
    if "failed" in answer:
        raise SandboxError(f"the check failed: {answer['failed']}")
    return answer


def _reap(pid: int, deadline: float) -> int:
    """The child's wait status. A child that closed the pipe is exiting: it gets until
    ``deadline`` to finish; one still running then (or at once, after a time-out) is
    SIGKILLed."""
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done != 0:
            return status
        if time.monotonic() >= deadline:
            break
        time.sleep(0.001)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    return status


def _read_until(fd: int, deadline: float) -> tuple[bytes, bool]:
    """Everything the child writes until it closes the pipe, or (partial, True) at the
    deadline. ``poll``, not ``select``: a busy server has descriptors above FD_SETSIZE."""
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLHUP)
    chunks: list[bytes] = []
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return b"".join(chunks), True
        if not poller.poll(remaining * 1000):
            continue
        chunk = os.read(fd, _CHUNK)
        if not chunk:
            return b"".join(chunks), False
        chunks.append(chunk)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _child(check: Callable[[Any], dict[str, Any]], arg: Any, limits: SandboxLimits, fd: int) -> None:
    code = 1
    try:
        _quiet_signals()
        _apply_limits(limits)
        answer: list[dict[str, Any]] = []
        threading.stack_size(limits.stack_bytes)
        worker = threading.Thread(target=lambda: answer.append(_answer(check, arg)), daemon=True)
        worker.start()
        worker.join()
        if answer:
            data = json.dumps(answer[0]).encode()
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            code = 0
    finally:
        os._exit(code)


def _answer(check: Callable[[Any], dict[str, Any]], arg: Any) -> dict[str, Any]:
    """``check(arg)``, or ``{"failed": ...}``: an exception is reported, never printed
    (the parent's stderr lock may have been held by another thread at fork time)."""
    try:
        return check(arg)
    except Exception as exc:
        return {"failed": f"{type(exc).__name__}: {exc}"[:500]}


def _quiet_signals() -> None:
    """The parent's handlers (uvicorn's) write to a wake-up fd the child shares: reset them."""
    with contextlib.suppress(ValueError, OSError):
        signal.set_wakeup_fd(-1)
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(ValueError, OSError):
            signal.signal(sig, signal.SIG_DFL)
    faulthandler.disable()  # the parent reports the crash; no traceback on its stderr


def _apply_limits(limits: SandboxLimits) -> None:
    if resource is None:
        return
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds + 1))
    size = _address_space()
    if size is not None:
        cap = size + limits.memory_bytes
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))


def _address_space() -> int | None:
    """This process's current virtual size in bytes (Linux), else None."""
    try:
        with open("/proc/self/statm", encoding="ascii") as fh:
            pages = int(fh.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE")
