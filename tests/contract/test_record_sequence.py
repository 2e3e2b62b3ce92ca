"""The per-tenant record sequence: gap-free and unique on both stores, across processes.

Every receipt, legal hold and erasure receipt of a tenant is numbered 1, 2, ... inside its
signed statement (``store/sequencing.py``). Concurrent writers in one process, a job rolled
back after it queued a record, and two server processes on one PostgreSQL database must all
leave the numbers dense, and an export taken from either process must verify complete.
"""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from support import WIRE, Env, bearer, pg_database, server_process
from warrantor.errors import ConflictError
from warrantor.evidence.dsse import Envelope
from warrantor.evidence.proofs import TrustBundle
from warrantor.service.proof.sealing import record
from warrantor.store import Repo
from warrantor.verify.export import read_lines, verify_export

DENIED = {**WIRE, "amount_minor": 200_000_000}  # over the demo policy's cap: a receipt at once


def _numbers(env: Env) -> list[tuple[int, dict[str, Any]]]:
    with env.services.store.read() as repo:
        rows = repo.conn.execute(sa.text(
            "SELECT tenant_seq, envelope_json FROM evidence WHERE tenant_id = :t AND tenant_seq IS NOT NULL "
            "ORDER BY tenant_seq"), {"t": env.tenant_id}).all()
    return [(int(seq), Envelope.from_dict(json.loads(doc)).statement()["predicate"]) for seq, doc in rows]


def test_concurrent_writers_and_a_rolled_back_job_leave_no_gap(store_env: Env) -> None:
    env = store_env
    errors: list[str] = []

    def work() -> None:
        for _ in range(5):
            r = env.authorize(payload=DENIED)
            if r.status_code != 403:
                errors.append(r.text)

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []

    # A job that queued a record and then failed gives its number back.
    action_id = env.authorize().json()["action_id"]
    with env.services.store.read() as repo:
        action = repo.get_action(env.tenant_id, action_id)
    assert action is not None
    now = env.services.deps.clock.now()
    sealed = env.services.deps.sealer.legal_hold(
        tenant_id=env.tenant_id, action_id=action_id, intent_digest=action.intent_digest, legal_hold=True,
        reason="rolled back", by={"role": "test"}, issued_at=now)

    def failing(repo: Repo) -> None:
        record(repo, [(sealed, env.tenant_id, action_id)], now)
        raise ConflictError("this job fails after queuing its record")

    with pytest.raises(ConflictError):
        env.services.store.write(failing)
    held = env.client.post(f"/v1/actions/{action_id}/hold", json={"reason": "kept"}, headers=env.h("auditor"))
    assert held.json()["sequence"] == 31

    numbers = _numbers(env)
    assert [seq for seq, _ in numbers] == list(range(1, 32))
    assert all(predicate["sequence"] == seq for seq, predicate in numbers)
    assert [p["reason"] for _, p in numbers if "legal_hold" in p] == ["kept"]


@pytest.mark.postgres
def test_two_processes_number_one_tenant_densely(tmp_path: Path) -> None:
    fast = {"WARRANTOR_INTEGRATE_INTERVAL_MS": "50"}
    with pg_database() as db_url, server_process(tmp_path, db_url, env=fast) as a:
        keys = json.loads((tmp_path / "demo.json").read_text())
        with server_process(tmp_path, db_url, env=fast) as b:
            urls = [a.url, b.url]

            def deny(i: int) -> int:
                r = httpx.post(f"{urls[i % 2]}/v1/actions", headers=bearer(keys["agent_key"]), timeout=30,
                               json={"action_type": "wire_transfer", "details": f"#{i}", "payload": DENIED})
                return r.status_code

            with ThreadPoolExecutor(max_workers=8) as pool:
                assert set(pool.map(deny, range(40))) == {403}
            exported = httpx.get(f"{b.url}/v1/export", headers=bearer(keys["auditor_key"]), timeout=60)
            trust = TrustBundle.from_dict(httpx.get(f"{a.url}/v1/trust").json())
        engine = sa.create_engine("postgresql+psycopg://" + db_url.removeprefix("postgresql://"))
        try:
            with engine.connect() as conn:
                seqs = [r[0] for r in conn.execute(sa.text(
                    "SELECT tenant_seq FROM evidence WHERE tenant_seq IS NOT NULL ORDER BY tenant_seq"))]
        finally:
            engine.dispose()
    assert seqs == list(range(1, 41))
    assert exported.status_code == 200, exported.text
    report = verify_export(read_lines(exported.content.splitlines(keepends=True)), trust)
    assert report.ok, report.to_dict()
    assert (report.first, report.last, report.verified) == (1, 40, 40)
