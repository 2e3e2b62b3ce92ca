"""Login throttling holds across server processes: failures are counted in the database.

Two real ``warrantor serve`` processes share one PostgreSQL database (the deployment
``--workers`` makes). Wrong-password logins for one e-mail are fired at both at once; the
number of attempts the servers accept (answered 401, i.e. a password was checked) is
exactly the stated limit, never more, and after it even the right password is 429.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from support import pg_database, server_process
from warrantor.service.approval.users import MAX_LOGIN_FAILURES


@pytest.mark.postgres
def test_concurrent_wrong_passwords_on_two_processes_never_exceed_the_limit(tmp_path: Path) -> None:
    with pg_database() as url, server_process(tmp_path, url) as first, server_process(tmp_path, url) as second:
        demo = json.loads((tmp_path / "demo.json").read_text())
        assert first.proc.pid != second.proc.pid
        # The demo user, then two unknown addresses (throttled alike, so that guessing cannot
        # tell them apart): a burst of concurrent guesses each, three chances for a race to show
        # (without the per-e-mail lock, most bursts let 11 or more through).
        emails = [demo["console_email"], "ghost-1@example.com", "ghost-2@example.com"]
        accepted = {}
        with ThreadPoolExecutor(16) as pool:
            for email in emails:

                def guess(i: int, email: str = email) -> int:
                    server = (first, second)[i % 2]
                    r = httpx.post(f"{server.url}/v1/sessions", json={"email": email, "password": f"wrong {i}"},
                                   timeout=120)
                    return r.status_code

                codes = list(pool.map(guess, range(4 * MAX_LOGIN_FAILURES)))
                assert set(codes) <= {401, 429}, codes
                accepted[email] = codes.count(401)
        assert accepted == dict.fromkeys(emails, MAX_LOGIN_FAILURES)  # the limit, never more
        for server in (first, second):
            right = httpx.post(f"{server.url}/v1/sessions",
                               json={"email": demo["console_email"], "password": demo["console_password"]},
                               timeout=60)
            assert right.status_code == 429 and right.json()["code"] == "LOGIN_RATE_LIMITED"
