#!/usr/bin/env bash
# The README's walkthrough as a script: tenant, keys (it creates every key it uses but the
# operator's) and an approver, a policy, one action through authorize -> approve by the
# e-mailed code -> notarize, one through deny, an auditor's key reading the receipt, and
# every signature checked against the published keys. Needs a running server without SMTP (its
# development mailer writes approval mails to the server log) and curl + python3.
#
#   make run 2>&1 | tee .warrantor/server.log          # first terminal
#   WARRANTOR_URL=http://127.0.0.1:8080 OPERATOR_KEY=$(cat .warrantor/operator.key) \
#     WARRANTOR_LOG=.warrantor/server.log examples/walkthrough.sh
set -euo pipefail
URL=${WARRANTOR_URL:-http://127.0.0.1:8080}
OP=${OPERATOR_KEY:?set OPERATOR_KEY (printed by make run, saved in .warrantor/operator.key)}
LOG=${WARRANTOR_LOG:?set WARRANTOR_LOG to the server log file (the approval e-mail is written there)}
HERE=$(cd "$(dirname "$0")" && pwd)
PY=${PYTHON:-python3}
json() { "$PY" -c "import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1], {}, {'d': d}))" "$1"; }
post() { curl -sS -X POST "$URL$1" -H "Authorization: Bearer $2" -H 'Content-Type: application/json' -d "$3"; }

echo "== tenant and keys"
TENANT=$(post /v1/tenants "$OP" '{"name": "Acme"}' | json 'd["tenant_id"]')
ADMIN=$(post "/v1/tenants/$TENANT/api-keys" "$OP" '{"role": "admin"}' | json 'd["key"]')
AGENT=$(post "/v1/tenants/$TENANT/api-keys" "$OP" '{"role": "agent", "agent_id": "payments-agent"}' | json 'd["key"]')
echo "tenant $TENANT"

echo "== an approver: a console user in the groups the policy names"
# No password: an API key never chooses one. The user is mailed a set-password link for the
# console; approving by the mailed code below needs no password at all.
post /v1/users "$ADMIN" '{"email": "lead@acme.example", "name": "Finance Lead", "roles": ["approver"],
  "groups": ["finance-leads", "comms-reviewers"]}' | json '(d["email"], d["invitation"]["sent_to"])'

echo "== policy"
HASH=$(post /v1/policies "$ADMIN" "@$HERE/payments-policy.json" | json 'd["bundle_hash"]')
post "/v1/policies/$HASH/activate" "$ADMIN" '{"mode": "enforce"}' | json 'd["mode"]'

echo "== a wire of 60,000 EUR is held for approval"
HELD=$(post /v1/actions "$AGENT" '{"action_type": "wire_transfer", "details": "Pay invoice 42",
  "instruction_hash": "sha256:ab", "idempotency_key": "walkthrough-1",
  "payload": {"amount_minor": 6000000, "currency": "EUR", "beneficiary": "ACME GmbH"}}')
ACTION=$(echo "$HELD" | json 'd["action_id"]')
echo "$ACTION $(echo "$HELD" | json 'd["status"]')"
curl -sS "$URL/v1/actions/$ACTION/approval" -H "Authorization: Bearer $ADMIN" | json '(d["notified"], d["requirements"])'
# The code went to lead@acme.example only; with no SMTP server, the server log has the mail.
CODE=$("$PY" - "$LOG" "$ACTION" <<'PYEOF'
import re, sys, time
log, action = sys.argv[1], sys.argv[2]
for _ in range(100):
    for mail in open(log, encoding="utf-8", errors="replace").read().split("development mailer, not delivered:"):
        if f"Action: {action}" in mail:
            # Warrantor's own line, not anything the agent wrote into the mail's quoted part.
            print(re.search(r"^\s*Review and decide: \S+/approve/(APR-[A-Z0-9]+)$", mail, re.M).group(1))
            sys.exit(0)
    time.sleep(0.1)
sys.exit(f"no approval mail for {action} in {log}")
PYEOF
)
echo "approval link for lead@acme.example: $URL/approve/$CODE"
curl -sS "$URL/v1/approvals/$CODE" | json '(d["action_type"], d["payload"], d["rules"][0]["message"])'
post "/v1/approvals/$CODE/confirm" "" '{"decision": "approve", "reason": "invoice checked"}' | json 'd["status"]'

echo "== the agent runs it and reports what ran"
post "/v1/actions/$ACTION/notarize" "$AGENT" '{"outcome": "completed", "outcome_details": "bank ref 8821",
  "executed": {"action_type": "wire_transfer",
               "payload": {"amount_minor": 6000000, "currency": "EUR", "beneficiary": "ACME GmbH"}}}' \
  | json '(d["status"], d["match"], d["receipt"]["receipt_id"])'

echo "== a wire of 2,000,000 EUR is denied, with a signed receipt"
post /v1/actions "$AGENT" '{"action_type": "wire_transfer", "details": "Too much",
  "payload": {"amount_minor": 200000000, "currency": "EUR", "beneficiary": "ACME GmbH"}}' \
  | json '(d["code"], d["details"]["receipt_id"], d["detail"])'

echo "== an auditor's own read-only key reads the receipt"
AUDITOR=$(post /v1/api-keys "$ADMIN" '{"role": "auditor"}' | json 'd["key"]')
RECEIPT=$(curl -sS "$URL/v1/actions/$ACTION" -H "Authorization: Bearer $AUDITOR" | json 'd["receipt"]["receipt_id"]')
curl -sS "$URL/v1/receipts/$RECEIPT" -H "Authorization: Bearer $AUDITOR" | json '("auditor reads", d["receipt_id"])'

echo "== every signature checks out against GET /v1/keys"
curl -sS "$URL/v1/keys" > /tmp/warrantor-keys.json
curl -sS "$URL/v1/actions/$ACTION" -H "Authorization: Bearer $ADMIN" > /tmp/warrantor-action.json
"$PY" - <<'PYEOF'
import base64, json
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
keys = {k["keyid"]: base64.b64decode(k["public_key"]) for k in json.load(open("/tmp/warrantor-keys.json"))["keys"]}
action = json.load(open("/tmp/warrantor-action.json"))
for name in ("warrant", "receipt"):
    env = action[name]["envelope"]
    body = base64.b64decode(env["payload"])
    ptype = env["payloadType"].encode()
    pae = b"DSSEv1 %d %s %d %s" % (len(ptype), ptype, len(body), body)
    sig = env["signatures"][0]
    Ed25519PublicKey.from_public_bytes(keys[sig["keyid"]]).verify(base64.b64decode(sig["sig"]), pae)
    print(f"{name}: signature by {sig['keyid'][:16]}... verifies")
PYEOF
