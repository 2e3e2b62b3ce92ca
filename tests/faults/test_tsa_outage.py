"""The external RFC 3161 TSA goes away and comes back.

Actions keep flowing while it is gone (authorizations and denials are signed and sequenced
as usual); the log publishes no checkpoint without a timestamp, so proofs answer 409
``NOT_YET_INTEGRATED`` for a while; once the TSA answers again the backlog drains: every
entry gets a timestamped checkpoint that verifies offline, and every receipt its own token.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fault_servers import child

from support import WIRE, Env, make_env
from warrantor.evidence.checkpoint import NoteSigner
from warrantor.evidence.keys import SigningKey
from warrantor.evidence.proofs import ProofBundle, TrustBundle
from warrantor.evidence.tsa import BuiltinTSA, generate_chain
from warrantor.service.proof.timestamping import TSAUnavailableError
from warrantor.service.proof.transparency import Integrator, LogTree
from warrantor.store import repo_evidence as rq
from warrantor.verify import verify_bundle


def _eventually(check: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _untimestamped_receipts(env: Env) -> list[str]:
    with env.services.store.read() as repo:
        size = repo.counter("log_size")
        return [evidence_id for evidence_id, _ in rq.receipts_in_range(repo, 0, size)]


def _bundle(env: Env, kind: str, evidence_id: str) -> ProofBundle | None:
    r = env.client.get(f"/v1/{kind}s/{evidence_id}/bundle", headers=env.h("admin"))
    if r.status_code == 409:
        assert r.json()["code"] == "NOT_YET_INTEGRATED"
        return None
    assert r.status_code == 200, r.text
    return ProofBundle.from_dict(r.json())


def test_tsa_outage_lets_actions_flow_and_the_backlog_drains(tmp_path: Path) -> None:
    tsa_dir = tmp_path / "tsa"
    tsa_dir.mkdir()
    with child("tsa", tsa_dir) as tsa, make_env(
        tmp_path / "server", tsa_url=tsa.url, tsa_root_cert=tsa_dir / "root.pem",
        timestamp_receipts=True, integrate_interval_ms=50,
    ) as env:
        trust = TrustBundle.from_dict(env.client.get("/v1/trust").json())
        assert trust.tsa_root_pem == (tsa_dir / "root.pem").read_text()

        tsa.stop()
        ok = [env.authorize(details=f"during the outage {i}") for i in range(3)]
        assert [r.status_code for r in ok] == [201, 201, 201]
        denied = env.authorize(payload={**WIRE, "amount_minor": 200_000_000})
        assert denied.status_code == 403
        receipt_id = denied.json()["details"]["receipt_id"]
        time.sleep(0.3)  # several integration cycles, all refused by the missing TSA
        assert _bundle(env, "warrant", ok[0].json()["warrant_id"]) is None
        assert receipt_id in _untimestamped_receipts(env)

        tsa.start()  # same chain, new process: the server is not restarted
        evidence = [("warrant", r.json()["warrant_id"]) for r in ok] + [("receipt", receipt_id)]
        _eventually(lambda: all(_bundle(env, kind, i) is not None for kind, i in evidence), "proofs")
        for kind, evidence_id in evidence:
            bundle = _bundle(env, kind, evidence_id)
            assert bundle is not None and bundle.timestamp_token is not None
            report = verify_bundle(bundle, trust)
            assert report.ok, report
        _eventually(lambda: not _untimestamped_receipts(env), "receipt timestamps")


class FlakyTSA:
    """A TSA that answers ``answers`` more requests and then refuses, as an unreachable one does."""

    def __init__(self) -> None:
        serials = iter(range(1, 1_000_000))
        self.inner = BuiltinTSA(generate_chain("flaky TSA"), lambda: next(serials), lambda: datetime.now(UTC))
        self.answers: int | None = None  # None: always

    def timestamp(self, data: bytes) -> bytes:
        if self.answers is not None:
            if self.answers <= 0:
                raise TSAUnavailableError("the TSA at test://flaky did not answer")
            self.answers -= 1
        return self.inner.timestamp(data)


def _own_integrator(env: Env, tsa: FlakyTSA) -> Integrator:
    """The deployment's log (same store and log key) integrated with ``tsa``."""
    env.services.integrator.stop()
    signer = NoteSigner(env.settings.log_origin, SigningKey.load(env.settings.data_dir / "keys" / "log.pem"))
    return Integrator(env.services.store, LogTree(env.services.store, signer.verifier()), signer, tsa,
                      env.services.deps.clock, origin=env.settings.log_origin, timestamp_receipts=True)


def test_receipts_whose_timestamp_failed_are_timestamped_later(env: Env) -> None:
    """The TSA answers for a checkpoint, then fails for the receipts it covers: those receipts
    are not skipped for good; a later cycle gives them their tokens."""
    tsa = FlakyTSA()
    integrator = _own_integrator(env, tsa)
    integrator.cycle()
    receipt_id = env.authorize(payload={**WIRE, "amount_minor": 200_000_000}).json()["details"]["receipt_id"]

    tsa.answers = 1  # the checkpoint's token, then nothing
    with pytest.raises(TSAUnavailableError):
        integrator.cycle()
    assert receipt_id in _untimestamped_receipts(env)

    tsa.answers = None
    assert integrator.cycle() is None  # nothing new to integrate, but the backlog drains
    assert _untimestamped_receipts(env) == []
