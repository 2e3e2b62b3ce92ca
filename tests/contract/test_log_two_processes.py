"""Two server processes on one PostgreSQL database share one log (one integrator at a time).

Both processes authorize concurrently; the log must have dense indices, one chain of
checkpoints signed by the one log key (each consistent with the next), and every warrant's
inclusion proof, fetched from either process, must verify offline.
"""

from __future__ import annotations

import base64
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from support import WIRE, bearer, pg_database, server_process
from warrantor.evidence.checkpoint import open_checkpoint
from warrantor.evidence.merkle import leaf_hash, root_from_leaves, verify_consistency
from warrantor.evidence.proofs import ProofBundle, TrustBundle
from warrantor.verify import verify_bundle

pytestmark = pytest.mark.postgres
FAST = {"WARRANTOR_INTEGRATE_INTERVAL_MS": "50"}
PER_PROCESS = 20


def _authorize(url: str, key: str, i: int) -> str:
    r = httpx.post(f"{url}/v1/actions", headers=bearer(key), timeout=30,
                   json={"action_type": "wire_transfer", "details": f"#{i}", "payload": WIRE})
    assert r.status_code == 201, r.text
    warrant_id: str = r.json()["warrant_id"]
    return warrant_id


def _bundle(url: str, key: str, warrant_id: str) -> ProofBundle:
    for _ in range(100):
        r = httpx.get(f"{url}/v1/warrants/{warrant_id}/bundle", headers=bearer(key), timeout=30)
        if r.status_code == 200:
            return ProofBundle.from_dict(r.json())
        assert r.status_code == 409, r.text
        time.sleep(0.1)
    raise AssertionError(f"{warrant_id} never integrated")


def test_two_processes_share_one_log(tmp_path: Path) -> None:
    with pg_database() as db_url, server_process(tmp_path, db_url, env=FAST) as a:
        keys = json.loads((tmp_path / "demo.json").read_text())
        with server_process(tmp_path, db_url, env=FAST) as b:
            urls = [a.url, b.url]
            with ThreadPoolExecutor(max_workers=8) as pool:
                warrants = list(pool.map(lambda i: (urls[i % 2], _authorize(urls[i % 2], keys["agent_key"], i)),
                                         range(2 * PER_PROCESS)))
            trust = TrustBundle.from_dict(httpx.get(f"{b.url}/v1/trust").json())
            assert trust.to_dict() == httpx.get(f"{a.url}/v1/trust").json()
            for i, (_, warrant_id) in enumerate(warrants):
                bundle = _bundle(urls[(i + 1) % 2], keys["auditor_key"], warrant_id)  # ask the other process
                report = verify_bundle(bundle, trust)
                assert report.ok, report.to_dict()
            _check_log(db_url, trust, [a.url, b.url])


def _check_log(db_url: str, trust: TrustBundle, urls: list[str]) -> None:
    engine = sa.create_engine("postgresql+psycopg://" + db_url.removeprefix("postgresql://"))
    try:
        with engine.connect() as conn:
            indices = [r[0] for r in conn.execute(sa.text("SELECT idx FROM log_entries ORDER BY idx"))]
            entries = [bytes(r[0]) for r in conn.execute(sa.text("SELECT entry FROM log_entries ORDER BY idx"))]
            size = conn.execute(sa.text("SELECT value FROM counters WHERE name = 'log_size'")).scalar_one()
            checkpoints = conn.execute(sa.text("SELECT size, root_hash, note FROM checkpoints ORDER BY size")).all()
    finally:
        engine.dispose()
    assert indices == list(range(size))  # dense, no gaps, no duplicates
    leaves = [leaf_hash(e) for e in entries]
    previous = None
    for cp_size, root, note in checkpoints:
        signed = open_checkpoint(note, trust.log_verifier, origin=trust.log_origin)
        assert signed.size == cp_size and signed.root_hash == bytes(root) == root_from_leaves(leaves[:cp_size])
        if previous is not None:
            doc = httpx.get(f"{urls[cp_size % 2]}/v1/log/proof/consistency",
                            params={"old": previous[0], "new": cp_size}).json()
            proof = [base64.b64decode(h) for h in doc["consistency_path"]]
            assert verify_consistency(previous[0], cp_size, proof, previous[1], bytes(root))
        previous = (cp_size, bytes(root))
    assert previous is not None and previous[0] == size
