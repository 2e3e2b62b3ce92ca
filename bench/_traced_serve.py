"""``warrantor serve``, unchanged, plus a map of its threads for the benchmark.

Python 3.11 does not give its threads operating-system names, so ``/proc/<pid>/task/*``
cannot tell the log integrator from a request thread. This launcher runs
``warrantor.cli.main.main(["serve", *argv])`` in this process and, from a short-lived side
thread, writes ``{"threads": {python name: Linux thread id}, "stack": {...}}`` to the file
named by ``BENCH_THREADS_FILE`` once the thread ``warrantor-integrator`` exists (and the
HTTP stack uvicorn loaded: uvloop and httptools or not). The side thread then ends; the
server's own work is untouched.

    BENCH_THREADS_FILE=/tmp/t.json .venv/bin/python bench/_traced_serve.py --port 8080 --data-dir D --demo
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time

from warrantor.cli.main import main

INTEGRATOR = "warrantor-integrator"


def _watch(path: str, deadline_s: float = 120.0) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        threads = {t.name: t.native_id for t in threading.enumerate()}
        if INTEGRATOR in threads and "uvicorn.protocols.http.auto" in sys.modules:
            stack = {
                "uvloop": "uvloop" in sys.modules,
                "http": "httptools" if "uvicorn.protocols.http.httptools_impl" in sys.modules else "h11",
            }
            tmp = f"{path}.tmp"
            with open(tmp, "w") as f:
                json.dump({"pid": os.getpid(), "threads": threads, "stack": stack}, f)
            os.replace(tmp, path)
            return
        time.sleep(0.1)


if __name__ == "__main__":
    target = os.environ.get("BENCH_THREADS_FILE")
    if target:
        threading.Thread(target=_watch, args=(target,), name="bench-thread-map", daemon=True).start()
    sys.exit(main(["serve", *sys.argv[1:]]))
