"""POST /v1/actions and friends: idempotency, isolation, roles, validation, lifecycle."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from support import WIRE, Env, bearer


def test_authorized_action_carries_a_warrant_and_a_warning_without_instruction_hash(env: Env) -> None:
    r = env.client.post(
        "/v1/actions",
        json={"action_type": "wire_transfer", "details": "x", "payload": WIRE},
        headers=env.h("agent"),
    )
    assert r.status_code == 201
    body = r.json()
    assert body["status"] == "authorized"
    assert body["decision"]["effect"] == "allow"
    assert body["decision"]["policy"] == {"bundle_hash": env.bundle_hash, "mode": "enforce"}
    assert len(body["decision"]["evaluation_hash"]) == 64
    assert body["warrant"]["signatures"][0]["keyid"]
    assert any("instruction_hash" in w for w in body["warnings"])
    assert body["request_id"].startswith("req_")


def test_same_idempotency_key_and_body_replays_the_first_response(env: Env) -> None:
    first = env.authorize(idempotency_key="k-1")
    again = env.authorize(idempotency_key="k-1")
    assert first.status_code == again.status_code == 201
    a, b = first.json(), again.json()
    assert a.pop("request_id") != b.pop("request_id")
    assert a == b
    listed = env.client.get("/v1/actions", headers=env.h("admin")).json()
    assert listed["pagination"]["total"] == 1


def test_header_key_works_and_other_body_is_duplicate_request(env: Env) -> None:
    assert env.authorize(headers={"Idempotency-Key": "k-2"}).status_code == 201
    r = env.authorize(headers={"Idempotency-Key": "k-2"}, details="something else")
    assert r.status_code == 409
    assert r.json()["code"] == "DUPLICATE_REQUEST"


def test_denial_replays_with_the_same_receipt(env: Env) -> None:
    body = {"payload": {**WIRE, "amount_minor": 500_000_000}, "idempotency_key": "deny-1"}
    first, again = env.authorize(**body), env.authorize(**body)
    assert first.status_code == again.status_code == 403
    assert first.json()["details"]["receipt_id"] == again.json()["details"]["receipt_id"]


def test_concurrent_retries_with_one_key_create_one_action(store_env: Env) -> None:
    env = store_env
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: env.authorize(idempotency_key="race"), range(16)))
    ids = {r.json()["action_id"] for r in results}
    assert {r.status_code for r in results} == {201}
    assert len(ids) == 1


def test_tenants_see_only_their_own_actions(env: Env) -> None:
    other = env.new_tenant()
    mine = env.authorize().json()["action_id"]
    r = env.client.get(f"/v1/actions/{mine}", headers=bearer(other["admin"]))
    assert r.status_code == 404
    assert env.client.get("/v1/actions", headers=bearer(other["admin"])).json()["data"] == []
    r = env.client.post(f"/v1/actions/{mine}/notarize", json={"outcome": "completed"}, headers=bearer(other["agent"]))
    assert r.status_code == 404
    r = env.client.post(
        "/v1/actions",
        json={"action_type": "wire_transfer", "payload": WIRE, "parent_action_id": mine},
        headers=bearer(other["agent"]),
    )
    assert r.status_code == 404
    assert r.json()["code"] == "NOT_FOUND"


def test_roles_are_enforced(env: Env) -> None:
    r = env.authorize(role="app")
    assert r.status_code == 403
    assert r.json()["code"] == "FORBIDDEN_ROLE"
    assert env.authorize(role="auditor").status_code == 403
    assert env.client.get("/v1/actions", headers=env.h("auditor")).status_code == 200
    assert env.client.get("/v1/actions", headers=env.operator).status_code == 403
    r = env.client.post("/v1/tenants", json={"name": "x"}, headers=env.h("admin"))
    assert r.status_code == 403


def test_unknown_key_is_401_problem(env: Env) -> None:
    r = env.client.get("/v1/actions", headers=bearer("wrt_nope"))
    assert r.status_code == 401
    assert r.json()["code"] == "INVALID_API_KEY"
    assert env.client.get("/v1/actions").status_code == 401


def test_agent_bound_key_cannot_act_for_another_agent(env: Env) -> None:
    r = env.authorize(agent_id="someone-else")
    assert r.status_code == 403
    assert r.json()["code"] == "AGENT_MISMATCH"
    assert env.authorize().json()["decision"]["rules"]  # defaults to the bound agent


def test_bad_input_is_4xx_problem_never_500(env: Env) -> None:
    h = {**env.h("agent"), "content-type": "application/json"}
    cases = [
        (b"{not json", 400, "MALFORMED_JSON"),
        (b"[]", 422, "VALIDATION_ERROR"),
        (b'{"action_type": 5}', 422, "VALIDATION_ERROR"),
        (b'{"action_type": "wire_transfer", "surprise": 1}', 422, "VALIDATION_ERROR"),
        (b'{"action_type": "wire transfer"}', 422, "VALIDATION_ERROR"),
        (b'{"action_type": "wire_transfer", "payload": "x"}', 422, "VALIDATION_ERROR"),
        (b'{"action_type": "wire_transfer", "require_approval": "yes"}', 422, "VALIDATION_ERROR"),
        (b'{"action_type": "wire_transfer", "payload": {"amount_minor": 1.5}}', 422, "INVALID_INTENT"),
    ]
    for raw, status, code in cases:
        r = env.client.post("/v1/actions", content=raw, headers=h)
        assert (r.status_code, r.json()["code"]) == (status, code), raw
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["request_id"]
    huge = b'{"action_type": "wire_transfer", "details": "' + b"a" * 2_000_000 + b'"}'
    r = env.client.post("/v1/actions", content=huge, headers=h)
    assert (r.status_code, r.json()["code"]) == (413, "PAYLOAD_TOO_LARGE")
    assert env.client.get("/v1/actions?per_page=101", headers=env.h("admin")).status_code == 422
    assert env.client.get(f"/v1/actions?page={10**22}", headers=env.h("admin")).status_code == 422
    assert env.client.get("/v1/actions?status=bogus", headers=env.h("admin")).status_code == 422
    assert env.client.get("/v1/actions", headers=env.h("admin")).json()["pagination"]["total"] == 0


def test_payload_that_breaks_the_schema_is_refused_as_bad_input_and_not_recorded(env: Env) -> None:
    r = env.authorize(payload={**WIRE, "memo": "unexpected field"})
    assert (r.status_code, r.json()["code"]) == (422, "PAYLOAD_SCHEMA_MISMATCH")
    assert r.json()["details"]["field"] == "payload.memo"
    assert env.client.get("/v1/actions", headers=env.h("admin")).json()["pagination"]["total"] == 0


def test_list_filters_and_pagination(env: Env) -> None:
    for _ in range(3):
        env.authorize()
    env.authorize(payload={**WIRE, "amount_minor": 6_000_000})
    page = env.client.get("/v1/actions?per_page=2&page=1", headers=env.h("admin")).json()
    assert page["pagination"] == {"page": 1, "per_page": 2, "total": 4, "has_more": True}
    held = env.client.get("/v1/actions?status=pending_approval", headers=env.h("admin")).json()
    assert [a["status"] for a in held["data"]] == ["pending_approval"]
    none = env.client.get("/v1/actions?action_type=refund", headers=env.h("admin")).json()
    assert none["data"] == []


def test_long_poll_returns_when_a_human_decides(env: Env) -> None:
    action_id = env.authorize(payload={**WIRE, "amount_minor": 6_000_000}).json()["action_id"]
    code = env.approval_codes(action_id)[0]
    timer = threading.Timer(0.3, lambda: env.client.post(f"/v1/approvals/{code}/confirm", json={"decision": "approve"}))
    timer.start()
    r = env.client.get(f"/v1/actions/{action_id}?wait=10", headers=env.h("agent"))
    timer.join()
    assert r.json()["status"] == "approved"
    assert r.json()["warrant"]["warrant_id"].startswith("wrt_")


def test_long_poll_times_out_with_the_unchanged_action(env: Env) -> None:
    action_id = env.authorize(payload={**WIRE, "amount_minor": 6_000_000}).json()["action_id"]
    r = env.client.get(f"/v1/actions/{action_id}?wait=0.3", headers=env.h("agent"))
    assert r.json()["status"] == "pending_approval"


def test_a_body_that_is_not_declared_json_gets_415_saying_so(env: Env) -> None:
    r = env.client.post("/v1/tenants", content=b'{"name": "x"}', headers={
        **env.operator, "content-type": "application/x-www-form-urlencoded"})
    assert (r.status_code, r.json()["code"]) == (415, "UNSUPPORTED_MEDIA_TYPE")
    assert "application/json" in r.json()["detail"]


def test_numbers_json_cannot_carry_exactly_are_422_everywhere(env: Env) -> None:
    huge = {"amount_minor": 6276775059632718610432}
    r = env.authorize(payload={**WIRE, **huge})
    assert (r.status_code, r.json()["code"]) == (422, "NOT_CANONICAL_JSON")
    r = env.authorize(context={"deep": {"n": 2**60}})
    assert (r.status_code, r.json()["code"]) == (422, "NOT_CANONICAL_JSON")
    action_id = env.authorize().json()["action_id"]
    r = env.client.post(f"/v1/actions/{action_id}/notarize", headers=env.h("agent"),
                        json={"outcome": "completed", "executed": {"payload": huge}})
    assert (r.status_code, r.json()["code"]) == (422, "NOT_CANONICAL_JSON")
    assert env.client.get(f"/v1/actions/{action_id}", headers=env.h("agent")).json()["status"] == "authorized"


def test_long_poll_naming_a_status_already_left_answers_at_once(env: Env) -> None:
    """A caller that missed the change (it saw pending_approval, the human already decided)
    gets the answer at once instead of waiting for a second change that may never come."""
    import time

    action_id = env.authorize(payload={**WIRE, "amount_minor": 6_000_000}).json()["action_id"]
    code = env.approval_codes(action_id)[0]
    assert env.client.post(f"/v1/approvals/{code}/confirm", json={"decision": "approve"}).status_code == 200
    started = time.monotonic()
    r = env.client.get(f"/v1/actions/{action_id}?wait=30&status=pending_approval", headers=env.h("agent"))
    assert r.json()["status"] == "approved"
    assert time.monotonic() - started < 10, "the long poll waited although the status was already left"
    r = env.client.get(f"/v1/actions/{action_id}?wait=0.3&status=approved", headers=env.h("agent"))
    assert r.json()["status"] == "approved"  # still in the named status: waited, then the unchanged action


def test_long_poll_status_must_be_a_known_status(env: Env) -> None:
    action_id = env.authorize().json()["action_id"]
    r = env.client.get(f"/v1/actions/{action_id}?wait=1&status=pending", headers=env.h("agent"))
    assert r.status_code == 422 and r.json()["code"] == "INVALID_FILTER"
