#!/usr/bin/env bash
# The README's walkthrough as a script: tenant and keys, a policy, one action through
# authorize -> approve by code -> notarize, one through deny, and every signature checked
# against the published keys. Needs a running server (`make run`) and curl + python3.
#
#   WARRANTOR_URL=http://127.0.0.1:8080 OPERATOR_KEY=$(cat .warrantor/operator.key) examples/walkthrough.sh
set -euo pipefail
URL=${WARRANTOR_URL:-http://127.0.0.1:8080}
OP=${OPERATOR_KEY:?set OPERATOR_KEY (printed by make run, saved in .warrantor/operator.key)}
HERE=$(cd "$(dirname "$0")" && pwd)
PY=${PYTHON:-python3}
json() { "$PY" -c "import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1], {}, {'d': d}))" "$1"; }
post() { curl -sS -X POST "$URL$1" -H "Authorization: Bearer $2" -H 'Content-Type: application/json' -d "$3"; }

echo "== tenant and keys"
TENANT=$(post /v1/tenants "$OP" '{"name": "Acme"}' | json 'd["tenant_id"]')
ADMIN=$(post "/v1/tenants/$TENANT/api-keys" "$OP" '{"role": "admin"}' | json 'd["key"]')
AGENT=$(post "/v1/tenants/$TENANT/api-keys" "$OP" '{"role": "agent", "agent_id": "payments-agent"}' | json 'd["key"]')
echo "tenant $TENANT"

echo "== policy"
HASH=$(post /v1/policies "$ADMIN" "@$HERE/payments-policy.json" | json 'd["bundle_hash"]')
post "/v1/policies/$HASH/activate" "$ADMIN" '{"mode": "enforce"}' | json 'd["mode"]'

echo "== a wire of 60,000 EUR is held for approval"
HELD=$(post /v1/actions "$AGENT" '{"action_type": "wire_transfer", "details": "Pay invoice 42",
  "instruction_hash": "sha256:ab", "idempotency_key": "walkthrough-1",
  "payload": {"amount_minor": 6000000, "currency": "EUR", "beneficiary": "ACME GmbH"}}')
ACTION=$(echo "$HELD" | json 'd["action_id"]')
echo "$ACTION $(echo "$HELD" | json 'd["status"]')"
CODE=$(curl -sS "$URL/v1/actions/$ACTION/approval" -H "Authorization: Bearer $ADMIN" | json 'd["codes"][0]["code"]')
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
