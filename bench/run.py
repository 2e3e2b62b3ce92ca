"""``make bench``: Warrantor measured against its ceiling, every figure in one run.

One process tree: this script starts every server as its child on a free loopback port,
drives it over real HTTP, and stops it by PID. Phases (``--only`` picks some):

- ``ceiling``: ``bench/ceiling/app.py`` (parse ~1 KB JSON, Ed25519 sign, Merkle append,
  SQLite WAL ``synchronous=FULL`` group commit) at saturation, wrk 64 connections.
- ``sqlite``: ``warrantor serve --demo`` on SQLite (through ``_traced_serve.py``, which only
  records thread ids): authorize (allow path, ``_server.AUTHORIZE_LUA``) at 16 and 64
  connections; the full flow (authorize, then notarize with a receipt) in complete actions
  per second, chained inside one wrk Lua script; latency at a fixed offered rate of half the
  measured capacity with the open-loop driver ``openloop.py`` (Debian has no wrk2), and the
  ceiling at the same rate as its baseline; the log integrator thread's CPU share at 1,000
  authorizations/s, or at the most this machine sustains (stated).
- ``postgres``: the same authorize on PostgreSQL (127.0.0.1:5432, user postgres, a fresh
  database per run, dropped after) with ``--workers 1`` and ``--workers 2``.
- ``decision``: authorize latency, one connection, after 10^3 and after 10^6 recorded
  actions (seeded by direct SQL into a fresh SQLite data dir; see ``seed``).
- ``offline``: receipts verified per second of CPU time (``verify_offline.measure``) against
  bare Ed25519 verification in the same rounds, and Merkle proof generation at 10^6 entries.

Prints one table (figure, value, target, ratio to its baseline, pass/miss) and writes
``bench/results/run.json`` (``--quick``: ``run-quick.json``) with the machine, versions,
commit and command. Exit status 1 when a phase failed; missed targets are reported, not fatal.

    .venv/bin/python bench/run.py [--quick] [--only ceiling,sqlite,postgres,decision,offline]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import hashlib
import json
import os
import random
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _server import AUTHORIZE_LUA, ROOT, SERVE, free_port, start_server, stop_server, wait_ready
from authorize import parse_wrk
from harness import Figure, Target, machine_facts, render_table, results_document
from openloop import HttpConnection, http_request, open_loop, summarize

BENCH = ROOT / "bench"
PHASES = ("ceiling", "sqlite", "postgres", "decision", "offline")
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
INTEGRATOR_RATE = 1000.0


@dataclass(frozen=True)
class Mode:
    name: str
    seconds: int  # one wrk measurement
    warmup: int
    rounds: int  # medians over this many measurements
    open_loop_seconds: int
    seed_small: int
    seed_large: int
    latency_seconds: int
    verify_runs: int
    merkle_size: int
    merkle_samples: int
    integrator_seconds: int


FULL = Mode("full", seconds=10, warmup=2, rounds=3, open_loop_seconds=30, seed_small=10**3, seed_large=10**6,
            latency_seconds=20, verify_runs=7, merkle_size=10**6, merkle_samples=2000, integrator_seconds=20)
QUICK = Mode("quick", seconds=2, warmup=1, rounds=1, open_loop_seconds=3, seed_small=10**3, seed_large=20_000,
             latency_seconds=3, verify_runs=2, merkle_size=10**5, merkle_samples=200, integrator_seconds=4)

# The same bodies go through wrk (Lua string.format) and the open-loop driver (Python %).
AUTHORIZE_BODY = ('{"action_type":"wire_transfer","details":"bench %d","instruction_hash":"sha256:ab",'
                  '"payload":{"amount_minor":%d,"currency":"EUR","beneficiary":"ACME GmbH"}}')
CEILING_BODY = ('{"action_type":"wire_transfer","details":"bench %d","instruction_hash":"sha256:ab",'
                '"payload":{"amount_minor":%d,"currency":"EUR","beneficiary":"ACME GmbH","notes":"'
                + "lorem ipsum " * 70 + '"}}')

# A POST script: JSON, the agent's key when the server wants one, one counter per wrk thread.
LUA_HEAD = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
{AUTH}
local n = 0
"""
LUA_EXPECT_201 = """
response = function(status, headers, body)
  if status ~= 201 then io.stderr:write("unexpected status " .. status .. "\\n") end
end
"""
LUA_NEXT_BODY = "string.format('{BODY}', n, 1000 + (n % 997))"


def lua_script(body: str, middle: str, *, key: str | None = None, tail: str = LUA_EXPECT_201) -> str:
    auth = f'wrk.headers["Authorization"] = "Bearer {key}"' if key else ""
    return (LUA_HEAD.replace("{AUTH}", auth) + middle + tail).replace("{NEXT_BODY}", LUA_NEXT_BODY
                                                                      ).replace("{BODY}", body)


CEILING_LUA = lua_script(CEILING_BODY, """
request = function()
  n = n + 1
  return wrk.format(nil, "/v1/actions", nil, {NEXT_BODY})
end
""")

# Authorize, then notarize the action just authorized on the same connection (wrk calls
# response() before it asks request() for the connection's next request). Counts per thread,
# summed in done(): complete actions = notarize answers carrying a receipt.
FLOW_MIDDLE = """
local pending = {}
completed, authorized, errors = 0, 0, 0
local threads = {}
setup = function(thread) table.insert(threads, thread) end
request = function()
  local id = table.remove(pending)
  if id then
    return wrk.format(nil, "/v1/actions/" .. id .. "/notarize", nil, '{"outcome":"completed"}')
  end
  n = n + 1
  return wrk.format(nil, "/v1/actions", nil, {NEXT_BODY})
end
"""
FLOW_TAIL = """
response = function(status, headers, body)
  if status == 201 then
    local id = string.match(body, '"action_id":"([%w_]+)"')
    if id then authorized = authorized + 1; table.insert(pending, id) else errors = errors + 1 end
  elseif status == 200 and string.find(body, '"receipt"', 1, true) then
    completed = completed + 1
  else
    errors = errors + 1
  end
end
done = function(summary, latency, requests)
  local c, a, e = 0, 0, 0
  for _, t in ipairs(threads) do c = c + t:get("completed"); a = a + t:get("authorized"); e = e + t:get("errors") end
  io.write(string.format("FLOW completed=%d authorized=%d errors=%d duration_us=%d\\n", c, a, e, summary.duration))
end
"""

# One connection, a fresh Idempotency-Key per request (the seeded rows have keys too, so the
# unique index the lookup uses holds every recorded action). {TAG} keeps runs apart.
DECISION_MIDDLE = """
request = function()
  n = n + 1
  local headers = {["Idempotency-Key"] = "{TAG}-" .. n}  -- wrk.format replaces wrk.headers with this table
  for k, v in pairs(wrk.headers) do headers[k] = v end
  return wrk.format(nil, "/v1/actions", headers, {NEXT_BODY})
end
"""


# -- tools --------------------------------------------------------------------------------

def wrk(url: str, seconds: int, connections: int, script: Path | None,
        threads: int = 2) -> tuple[dict[str, float], str]:
    """One wrk run (bounded: killed ``seconds + 30`` s after it starts); parsed figures and stdout."""
    cmd = ["wrk", f"-t{min(threads, connections)}", f"-c{connections}", f"-d{seconds}s", "--latency",
           "--timeout", "10s", *(["-s", str(script)] if script else []), url]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=seconds + 30).stdout
    result = parse_wrk(out)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    result["socket_errors"] = float(sum(map(int, socket_errors.groups()))) if socket_errors else 0.0
    if result["non_2xx"]:  # a rate of refusals is not the figure asked for
        raise RuntimeError(f"wrk saw {result['non_2xx']:.0f} non-2xx answers from {url}")
    return result, out


def median_runs(runs: list[dict[str, float]]) -> dict[str, float]:
    return {k: round(statistics.median(r[k] for r in runs), 3) for k in runs[0]}


def wrk_rounds(mode: Mode, url: str, connections: int, script: Path | None) -> dict[str, Any]:
    wrk(url, mode.warmup, connections, script)
    runs = [wrk(url, mode.seconds, connections, script)[0] for _ in range(mode.rounds)]
    return {"connections": connections, "seconds": mode.seconds, "median": median_runs(runs), "rounds": runs}


def cpu_seconds(pid: int, tid: int | None = None) -> float:
    """User + system CPU of a process (all its threads) or of one of its threads, from /proc."""
    path = f"/proc/{pid}/task/{tid}/stat" if tid else f"/proc/{pid}/stat"
    fields = Path(path).read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime (fields 14, 15)


def run_open_loop(port: int, build: Callable[[int], bytes], rate: float, seconds: float,
                  connections: int = 32) -> dict[str, Any]:
    async def go() -> dict[str, Any]:
        samples = await open_loop(lambda: HttpConnection.open("127.0.0.1", port, build), rate=rate,
                                  duration=seconds, connections=connections, timeout=seconds + 60)
        return summarize(samples, rate)

    try:
        import uvloop

        return uvloop.run(go())
    except ImportError:
        return asyncio.run(go())


def post_builder(port: int, body: str, headers: dict[str, str]) -> Callable[[int], bytes]:
    def build(i: int) -> bytes:
        return http_request("POST", "/v1/actions", f"127.0.0.1:{port}",
                            {"Content-Type": "application/json", **headers},
                            (body % (i + 1, 1000 + (i + 1) % 997)).encode())

    return build


@contextmanager
def ceiling_server(tmp: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    port = free_port()
    cmd = [sys.executable, str(BENCH / "ceiling" / "app.py"), "--port", str(port), "--data-dir", str(tmp / "ceiling")]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    try:
        wait_ready(proc, f"http://127.0.0.1:{port}/healthz")
        yield port, httpx.get(f"http://127.0.0.1:{port}/stack").json()
    finally:
        stop_server(proc)


@contextmanager
def warrantor_server(data_dir: Path, env: dict[str, str] | None = None, *, trace: bool = False,
                     ready_timeout: float = 60) -> Iterator[tuple[int, subprocess.Popen[bytes], dict[str, Any]]]:
    """``warrantor serve --demo``; with ``trace`` through the launcher that records thread ids
    (one process only). Yields the port, the process and the thread map (empty without ``trace``)."""
    port = free_port()
    threads_file = data_dir.parent / f"{data_dir.name}-threads.json"
    threads_file.unlink(missing_ok=True)
    proc = start_server(data_dir, port, env={**(env or {}), "BENCH_THREADS_FILE": str(threads_file)},
                        serve=[sys.executable, str(BENCH / "_traced_serve.py")] if trace else SERVE,
                        ready_timeout=ready_timeout)
    try:
        deadline = time.monotonic() + 10
        while trace and not threads_file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        info = json.loads(threads_file.read_text()) if threads_file.exists() else {}
        yield port, proc, info
    finally:
        stop_server(proc)


def agent_key(data_dir: Path) -> str:
    return str(json.loads((data_dir / "demo.json").read_text())["agent_key"])


def lua(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# -- phases ------------------------------------------------------------------------------

@dataclass
class Ctx:
    mode: Mode
    tmp: Path
    details: dict[str, Any]


def phase_ceiling(ctx: Ctx, ceiling: tuple[int, dict[str, Any]]) -> dict[str, Any]:
    port, stack = ceiling
    script = lua(ctx.tmp / "ceiling.lua", CEILING_LUA)
    result = wrk_rounds(ctx.mode, f"http://127.0.0.1:{port}", 64, script)
    after = httpx.get(f"http://127.0.0.1:{port}/stack").json()
    return {"stack": stack, "body_bytes": len(CEILING_BODY % (1, 1000)), "saturation_64": result,
            "group_commit_rows_per_batch": round(after["rows"] / after["batches"], 2) if after["batches"] else None}


def phase_sqlite(ctx: Ctx, ceiling: tuple[int, dict[str, Any]] | None) -> dict[str, Any]:
    mode, out = ctx.mode, {}
    data_dir = ctx.tmp / "sqlite"
    with warrantor_server(data_dir, trace=True) as (port, proc, info):
        base = f"http://127.0.0.1:{port}"
        key = agent_key(data_dir)
        out["stack"] = info.get("stack")
        script = lua(ctx.tmp / "authorize.lua", AUTHORIZE_LUA % key)
        out["authorize_16"] = wrk_rounds(mode, base, 16, script)
        out["authorize_64"] = wrk_rounds(mode, base, 64, script)
        capacity = max(out["authorize_16"]["median"]["rps"], out["authorize_64"]["median"]["rps"])
        out["capacity_rps"] = capacity

        flow = lua(ctx.tmp / "flow.lua", lua_script(AUTHORIZE_BODY, FLOW_MIDDLE, key=key, tail=FLOW_TAIL))
        flows = []
        wrk(base, mode.warmup, 64, flow)
        for _ in range(mode.rounds):
            stdout = wrk(base, mode.seconds, 64, flow)[1]
            m = re.search(r"FLOW completed=(\d+) authorized=(\d+) errors=(\d+) duration_us=(\d+)", stdout)
            if m is None:
                raise RuntimeError(f"the flow script printed no summary: {stdout[-500:]}")
            done, authorized, errors, duration_us = map(int, m.groups())
            flows.append({"complete_actions_per_s": round(done / (duration_us / 1e6), 2),
                          "completed": done, "authorized": authorized, "errors": errors})
        out["full_flow_64"] = {"driver": "wrk -t2 -c64, one Lua script chaining authorize -> notarize",
                               "median_complete_actions_per_s": statistics.median(
                                   f["complete_actions_per_s"] for f in flows), "rounds": flows}

        rate = round(capacity / 2, 1)
        build = post_builder(port, AUTHORIZE_BODY, {"Authorization": f"Bearer {key}"})
        out["open_loop_half"] = run_open_loop(port, build, rate, mode.open_loop_seconds)
        if ceiling is not None:
            cport = ceiling[0]
            out["open_loop_half_ceiling"] = run_open_loop(cport, post_builder(cport, CEILING_BODY, {}), rate,
                                                          mode.open_loop_seconds)
        out["integrator"] = integrator_share(ctx, port, proc.pid, info, capacity, build, script)
    return out


def integrator_share(ctx: Ctx, port: int, pid: int, info: dict[str, Any], capacity: float,
                     build: Callable[[int], bytes], script: Path) -> dict[str, Any]:
    """CPU of the thread ``warrantor-integrator`` over a window of authorize load, as % of one core."""
    tid = (info.get("threads") or {}).get("warrantor-integrator")
    if tid is None:
        raise RuntimeError("no thread named warrantor-integrator in the server (thread map: "
                           f"{sorted(info.get('threads') or {})})")
    seconds = ctx.mode.integrator_seconds
    size_before = httpx.get(f"http://127.0.0.1:{port}/v1/log/checkpoint?format=json").json()["size"]
    thread0, proc0, t0 = cpu_seconds(pid, tid), cpu_seconds(pid), time.monotonic()
    if capacity >= INTEGRATOR_RATE * 1.1:
        load = run_open_loop(port, build, INTEGRATOR_RATE, seconds)
        how, achieved = f"open loop at {INTEGRATOR_RATE:.0f}/s", load["achieved_rate"]
    else:
        load = wrk(f"http://127.0.0.1:{port}", seconds, 16, script)[0]
        how, achieved = "wrk -c16 at saturation (this machine cannot sustain 1,000/s)", load["rps"]
    thread1, proc1, t1 = cpu_seconds(pid, tid), cpu_seconds(pid), time.monotonic()
    time.sleep(1.5)  # let the last cycle land before reading the log size
    size_after = httpx.get(f"http://127.0.0.1:{port}/v1/log/checkpoint?format=json").json()["size"]
    wall = t1 - t0
    return {"load": how, "achieved_actions_per_s": achieved, "window_s": round(wall, 2),
            "integrator_core_pct": round(100 * (thread1 - thread0) / wall, 2),
            "process_core_pct": round(100 * (proc1 - proc0) / wall, 2),
            "entries_integrated": size_after - size_before, "thread_id": tid, "load_detail": load}


def phase_postgres(ctx: Ctx) -> dict[str, Any]:
    import psycopg

    out: dict[str, Any] = {}
    for workers in (1, 2):
        name = f"warrantor_bench_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=3) as admin:
            out.setdefault("server_version", admin.execute("SHOW server_version").fetchone()[0])  # type: ignore[index]
            admin.execute(f'CREATE DATABASE "{name}"')
        try:
            data_dir = ctx.tmp / f"pg-w{workers}"
            env = {"WARRANTOR_DATABASE_URL": f"postgresql://postgres@127.0.0.1:5432/{name}",
                   "WARRANTOR_WORKERS": str(workers)}
            with warrantor_server(data_dir, env) as (port, _proc, _info):
                script = lua(ctx.tmp / f"authorize-pg{workers}.lua", AUTHORIZE_LUA % agent_key(data_dir))
                out[f"workers_{workers}"] = wrk_rounds(ctx.mode, f"http://127.0.0.1:{port}", 64, script)
        finally:
            with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=3) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return out


def seed(db: Path, n: int) -> dict[str, Any]:
    """Record ``n`` more actions by direct SQL, copying the shape of the one real action in ``db``.

    Each seeded action gets an ``actions`` row (status ``notarized``, so the expiry sweep has
    nothing to do; unique id and Idempotency-Key; every indexed column set as for a real
    row), a ``warrant`` row in ``evidence`` and a ``log_entries`` row at the next dense index,
    and ``counters.log_size`` grows by ``n``. The JSON columns hold a short stand-in instead of
    the ~7 KB a real action, warrant and response take, so 10^6 of them take about 1 GB;
    the indexes the authorize path reads are those of a real deployment of that size (the API
    reports these rows' integrity as "mismatch": the stand-in intent is not the one signed).
    Log entries are random 32-byte leaves; the server integrates them into a signed checkpoint
    at start. Rows are generated by SQL (a recursive series), not by Python per row.
    """
    started = time.monotonic()
    con = sqlite3.connect(db, isolation_level=None)
    con.row_factory = sqlite3.Row
    con.execute("PRAGMA synchronous=OFF")  # the server is stopped; a crash here only loses the seed
    con.execute("PRAGMA cache_size=-262144")  # 256 MB: index pages stay in memory while they grow
    action = dict(con.execute("SELECT * FROM actions ORDER BY created_at LIMIT 1").fetchone())
    warrant = dict(con.execute("SELECT * FROM evidence WHERE kind = 'warrant' AND action_id = ?",
                               (action["id"],)).fetchone())
    size = int(con.execute("SELECT value FROM counters WHERE name = 'log_size'").fetchone()[0])
    t0 = datetime.strptime(action["created_at"][:26], "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=UTC)
    whole = int(t0.timestamp())
    # Generated in SQL, no Python per row: i = 0..n-1, created i+1 microseconds after the real action.
    series = "WITH RECURSIVE s(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM s WHERE i + 1 < :n) "
    us = ":us0 + i + 1"
    ts = f"printf('%s.%06d', datetime(:s0 + ({us}) / 1000000, 'unixepoch'), ({us}) % 1000000)"
    computed_a = {"id": "printf('act_seed%010d', i)", "status": "'notarized'",
                  "idempotency_key": "printf('seed-%010d', i)", "request_hash": "lower(hex(randomblob(32)))",
                  "warrant_id": "printf('wrt_seed%010d', i)", "created_at": ts, "updated_at": ts,
                  "intent_json": ":stand_in", "decision_json": ":stand_in", "response_json": ":stand_in",
                  "execution_json": ":stand_in", "receipt_id": "NULL"}
    computed_e = {"id": "printf('wrt_seed%010d', i)", "action_id": "printf('act_seed%010d', i)",
                  "envelope_json": ":stand_in", "envelope_digest": "lower(hex(randomblob(32)))",
                  "log_index": ":size + i", "timestamp_token": "NULL", "created_at": ts}
    params: dict[str, Any] = {"n": n, "s0": whole, "us0": t0.microsecond, "size": size, "stand_in": '{"seeded":true}'}

    def insert(table: str, row: dict[str, Any], computed: dict[str, str]) -> str:
        for c, value in row.items():
            if c not in computed:
                params[f"{table}_{c}"] = value
        exprs = [computed.get(c, f":{table}_{c}") for c in row]
        return f"INSERT INTO {table} ({', '.join(row)}) {series}SELECT {', '.join(exprs)} FROM s"

    statements = [
        insert("actions", action, computed_a),
        insert("evidence", warrant, computed_e),
        f"INSERT INTO log_entries (idx, entry, evidence_id, created_at) {series}"
        f"SELECT :size + i, randomblob(32), printf('wrt_seed%010d', i), {ts} FROM s",
    ]
    con.execute("BEGIN")
    for statement in statements:
        con.execute(statement, params)
    con.execute("COMMIT")
    con.execute("UPDATE counters SET value = ? WHERE name = 'log_size'", (size + n,))
    total = int(con.execute("SELECT count(*) FROM actions").fetchone()[0])
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    return {"seeded": n, "actions_total": total, "log_size": size + n, "seconds": round(time.monotonic() - started, 1),
            "db_mb": round(db.stat().st_size / 2**20, 1)}


def phase_decision(ctx: Ctx) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for label, n in (("small", ctx.mode.seed_small), ("large", ctx.mode.seed_large)):
        data_dir = ctx.tmp / f"decision-{label}"
        with warrantor_server(data_dir) as (port, _proc, _info):
            key = agent_key(data_dir)
            r = httpx.post(f"http://127.0.0.1:{port}/v1/actions", content=(AUTHORIZE_BODY % (0, 1000)).encode(),
                           headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"}, timeout=30)
            r.raise_for_status()
        seeded = seed(data_dir / "warrantor.db", n)
        with warrantor_server(data_dir, ready_timeout=600) as (port, _proc, _info):
            base = f"http://127.0.0.1:{port}"
            started = time.monotonic()
            while httpx.get(f"{base}/v1/log/checkpoint?format=json", timeout=30).json()["size"] < seeded["log_size"]:
                if time.monotonic() - started > 600:
                    raise RuntimeError("the seeded log entries were not integrated within 600 s")
                time.sleep(0.5)
            seeded["integrated_after_s"] = round(time.monotonic() - started, 1)
            warm = lua(ctx.tmp / f"decision-{label}-warm.lua",
                       lua_script(AUTHORIZE_BODY, DECISION_MIDDLE.replace("{TAG}", f"warm-{label}"), key=key))
            wrk(base, ctx.mode.warmup, 1, warm, threads=1)
            script = lua(ctx.tmp / f"decision-{label}.lua",
                         lua_script(AUTHORIZE_BODY, DECISION_MIDDLE.replace("{TAG}", f"lat-{label}"), key=key))
            result = wrk(base, ctx.mode.latency_seconds, 1, script, threads=1)[0]
        out[label] = {"recorded_actions": seeded["actions_total"], "seed": seeded,
                      "closed_loop": "wrk -t1 -c1, a new Idempotency-Key per request", "latency": result}
        shutil.rmtree(data_dir, ignore_errors=True)
    return out


def phase_offline(ctx: Ctx) -> dict[str, Any]:
    """``verify_offline.measure``: receipts verified per second of CPU time, every batch shape,
    against bare Ed25519 in the same rounds; then proof generation in a large tree."""
    from merkle_proofs import median_us
    from verify_offline import measure

    from warrantor.evidence.merkle import MerkleTree, leaf_hash

    rates = measure(ctx.mode.verify_runs)

    def pick(label: str) -> tuple[str, float]:
        for how in ("one_run", "separate_calls"):
            if (key := f"one_checkpoint_{label}_{how}") in rates:
                return key, rates[key]
        raise RuntimeError(f"verify_offline.measure gave no one_checkpoint_{label} rate: {sorted(rates)}")

    with_tsa, without_tsa = pick("with_rfc3161"), pick("without_tsa")
    out: dict[str, Any] = {
        "verify_per_cpu_s": {"with_rfc3161": with_tsa[1], "without_tsa": without_tsa[1],
                             "bare_ed25519": rates["baseline_bare_ed25519_verify_of_pae"]},
        "verify_workloads": {"with_rfc3161": with_tsa[0], "without_tsa": without_tsa[0]},
        "verify_all_rates": rates,
    }
    n, rng = ctx.mode.merkle_size, random.Random(6962)
    t = time.perf_counter()
    tree = MerkleTree(leaf_hash(hashlib.sha256(i.to_bytes(8, "big")).digest()) for i in range(n))
    build_s = time.perf_counter() - t
    inc = [rng.randrange(n) for _ in range(ctx.mode.merkle_samples)]
    cons = [rng.randrange(1, n) for _ in range(ctx.mode.merkle_samples)]
    node_input = b"\x01" + bytes(64)
    out["merkle"] = {
        "tree_size": n, "build_s": round(build_s, 2), "samples": ctx.mode.merkle_samples,
        "median_us": {
            "inclusion_proof": median_us([lambda i=i: tree.inclusion_proof(i, n) for i in inc]),
            "consistency_proof": median_us([lambda m=m: tree.consistency_proof(m, n) for m in cons]),
            "one_sha256": median_us([lambda: hashlib.sha256(node_input).digest()] * ctx.mode.merkle_samples),
        },
    }
    return out


# -- figures -----------------------------------------------------------------------------

def _latency_detail(m: dict[str, float]) -> str:
    return f"p50 {m['p50_ms']:.1f} ms, p99 {m['p99_ms']:.1f} ms"


def _get(d: dict[str, Any], *path: str) -> Any:
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return None
        d = d[p]
    return d


def build_figures(details: dict[str, Any], errors: dict[str, str]) -> list[Figure]:
    """The table's rows from the phases' details; a missing phase gives rows marked not measured."""
    def why(phase: str) -> str:
        return errors.get(phase, "phase not run").splitlines()[0][:120]

    figs: list[Figure] = []
    ceiling = _get(details, "ceiling", "saturation_64", "median")
    ceiling_rps = ceiling["rps"] if ceiling else None
    figs.append(Figure("ceiling_rps", "ceiling, saturation (64 conn)", ceiling_rps, "req/s",
                       detail=_latency_detail(ceiling) if ceiling else "", note=why("ceiling")))
    for conns in (16, 64):
        m = _get(details, "sqlite", f"authorize_{conns}", "median")
        figs.append(Figure(f"authorize_sqlite_{conns}", f"authorize SQLite ({conns} conn)",
                           m["rps"] if m else None, "req/s", ceiling_rps, "ceiling", Target(">=", 0.40),
                           detail=_latency_detail(m) if m else "", note=why("sqlite")))
    flow = _get(details, "sqlite", "full_flow_64", "median_complete_actions_per_s")
    figs.append(Figure("full_flow", "full flow: authorize + notarize (64 conn)", flow, "actions/s", ceiling_rps,
                       "ceiling", Target(">=", 0.20), note=why("sqlite")))
    ol = _get(details, "sqlite", "open_loop_half")
    olc = _get(details, "sqlite", "open_loop_half_ceiling")
    figs.append(Figure(
        "open_loop_p99", f"authorize p99, open loop at half capacity ({ol['offered_rate']:g}/s)" if ol
        else "authorize p99, open loop at half capacity", ol["latency_ms"]["p99"] if ol else None, "ms",
        olc["latency_ms"]["p99"] if olc else None, "ceiling's p99 at that rate", Target("<", 25, on="value"),
        detail=(f"p50 {ol['latency_ms']['p50']:.1f} ms, achieved {ol['achieved_rate']:g}/s, "
                f"send lag p99 {ol['send_lag_ms']['p99']:.1f} ms"
                + (f", {ol['errors']} failed" if ol.get("errors") else "")) if ol else "", note=why("sqlite")))
    pg1 = _get(details, "postgres", "workers_1", "median")
    pg2 = _get(details, "postgres", "workers_2", "median")
    figs.append(Figure("authorize_pg_1", "authorize PostgreSQL, 1 worker (64 conn)", pg1["rps"] if pg1 else None,
                       "req/s", ceiling_rps, "ceiling", detail=_latency_detail(pg1) if pg1 else "",
                       note=why("postgres")))
    figs.append(Figure("authorize_pg_2", "authorize PostgreSQL, 2 workers (64 conn)", pg2["rps"] if pg2 else None,
                       "req/s", pg1["rps"] if pg1 else None, "1 worker", Target(">=", 1.7),
                       detail=_latency_detail(pg2) if pg2 else "", note=why("postgres")))
    small, large = _get(details, "decision", "small"), _get(details, "decision", "large")
    figs.append(Figure("decision_small", f"decision p50 after {small['recorded_actions']:,} actions" if small
                       else "decision p50 after 10^3 actions", small["latency"]["p50_ms"] if small else None, "ms",
                       detail=f"p99 {small['latency']['p99_ms']:.1f} ms, 1 conn" if small else "",
                       note=why("decision")))
    figs.append(Figure("decision_large", f"decision p50 after {large['recorded_actions']:,} actions" if large
                       else "decision p50 after 10^6 actions", large["latency"]["p50_ms"] if large else None, "ms",
                       small["latency"]["p50_ms"] if small else None, "the small log", Target("<=", 1.2),
                       detail=f"p99 {large['latency']['p99_ms']:.1f} ms, 1 conn" if large else "",
                       note=why("decision")))
    v = _get(details, "offline", "verify_per_cpu_s")
    for key, name in (("with_rfc3161", "offline verification, with RFC 3161 token"),
                      ("without_tsa", "offline verification, no TSA in trust bundle")):
        figs.append(Figure(f"verify_{key}", name, v[key] if v else None, "receipts/CPU-s",
                           v["bare_ed25519"] if v else None, "bare Ed25519 verify", Target(">=", 0.50),
                           note=why("offline")))
    mk = _get(details, "offline", "merkle")
    figs.append(Figure("inclusion_proof", f"inclusion proof at {mk['tree_size']:,} entries" if mk
                       else "inclusion proof at 10^6 entries", mk["median_us"]["inclusion_proof"] if mk else None,
                       "us", mk["median_us"]["one_sha256"] if mk else None, "one sha256",
                       detail=f"consistency proof {mk['median_us']['consistency_proof']:.1f} us" if mk else "",
                       note=why("offline")))
    ig = _get(details, "sqlite", "integrator")
    figs.append(Figure(
        "integrator_cpu", f"log integrator CPU at {ig['achieved_actions_per_s']:,.0f} actions/s" if ig
        else "log integrator CPU at 1,000 actions/s", ig["integrator_core_pct"] if ig else None, "% of a core",
        ig["process_core_pct"] if ig else None, "server process CPU", Target("<", 5, on="value"),
        detail=ig["load"] if ig else "",
        note=why("sqlite") if not ig else ("" if ig["achieved_actions_per_s"] >= 0.95 * INTEGRATOR_RATE
                                           else "below 1,000/s: the most this machine sustained")))
    return figs


def served_by(details: dict[str, Any]) -> dict[str, str]:
    """Which event loop and HTTP parser the ceiling and Warrantor actually ran (they should match)."""
    out = {}
    if stack := _get(details, "ceiling", "stack"):
        out["ceiling"] = f"{'uvloop' if stack['loop'].startswith('uvloop') else stack['loop']}+{stack['http']}"
    if stack := _get(details, "sqlite", "stack"):
        out["warrantor"] = f"{'uvloop' if stack['uvloop'] else 'asyncio'}+{stack['http']}"
    return out


# -- main --------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="seconds per scenario: proves it runs, not a result")
    parser.add_argument("--only", default=",".join(PHASES), help=f"comma-separated phases of {PHASES}")
    parser.add_argument("--out", type=Path, default=None, help="default bench/results/run.json (quick: run-quick.json)")
    parser.add_argument("--decision-actions", type=int, default=None,
                        help="recorded actions for the large decision-latency run (default 10^6; quick 2*10^4)")
    args = parser.parse_args(argv)
    mode = QUICK if args.quick else FULL
    if args.decision_actions:
        mode = dataclasses.replace(mode, seed_large=args.decision_actions)
    phases = [p.strip() for p in args.only.split(",") if p.strip()]
    if unknown := set(phases) - set(PHASES):
        parser.error(f"unknown phases {sorted(unknown)}")
    if shutil.which("wrk") is None and set(phases) - {"offline"}:
        raise SystemExit("wrk is required: apt-get install wrk (make bench installs it)")
    out = args.out or BENCH / "results" / ("run-quick.json" if args.quick else "run.json")
    started = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    machine = machine_facts(ROOT)
    details: dict[str, Any] = {}
    errors: dict[str, str] = {}
    tmp = Path(tempfile.mkdtemp(prefix="warrantor-bench-run-"))
    ctx = Ctx(mode, tmp, details)

    def attempt(name: str, fn: Callable[[], dict[str, Any]]) -> None:
        print(f"[bench] {name} ({mode.name}) ...", file=sys.stderr, flush=True)
        t = time.monotonic()
        try:
            details[name] = fn()
        except (Exception, SystemExit) as exc:
            errors[name] = f"{type(exc).__name__}: {exc}"
            traceback.print_exc(file=sys.stderr)
        print(f"[bench] {name} done in {time.monotonic() - t:.0f} s", file=sys.stderr, flush=True)

    try:
        if "ceiling" in phases or "sqlite" in phases:
            try:
                with ceiling_server(tmp) as ceiling:
                    if "ceiling" in phases:
                        attempt("ceiling", lambda: phase_ceiling(ctx, ceiling))
                    if "sqlite" in phases:
                        attempt("sqlite", lambda: phase_sqlite(ctx, ceiling))
            except (Exception, SystemExit) as exc:  # the ceiling server did not start
                for name in {"ceiling", "sqlite"} & set(phases):
                    errors.setdefault(name, f"ceiling server: {type(exc).__name__}: {exc}")
        if "postgres" in phases:
            attempt("postgres", lambda: phase_postgres(ctx))
        if "decision" in phases:
            attempt("decision", lambda: phase_decision(ctx))
        if "offline" in phases:
            attempt("offline", lambda: phase_offline(ctx))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    figures = build_figures(details, errors)
    machine["served_by"] = served_by(details)
    machine["load_average_end"] = list(os.getloadavg())
    command = " ".join([".venv/bin/python bench/run.py", *(argv if argv is not None else sys.argv[1:])])
    doc = results_document(figures, command=command, mode=mode.name, machine=machine, scenarios=details,
                           errors=errors, started=started, finished=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print(render_table(figures))
    if machine["served_by"]:
        print("\nevent loop + HTTP parser: " + ", ".join(f"{k} {v}" for k, v in machine["served_by"].items()))
    print(f"\n{mode.name} run; results in {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}"
          + (f"; phases failed: {', '.join(errors)}" if errors else ""))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
