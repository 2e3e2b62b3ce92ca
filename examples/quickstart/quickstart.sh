#!/usr/bin/env bash
# From install to a verified receipt: docs/quickstart.md, step by step. Run from the
# repository root after `make install` (or `pip install 'warrantor[server]'`).
set -euo pipefail
export PATH="$PWD/.venv/bin:$PATH"
PORT=${PORT:-8080}
DIR=${DIR:-./quickstart-data}
export WARRANTOR_URL=http://127.0.0.1:$PORT
Q=examples/quickstart

# 1. Keys, database and a first tenant with an admin key and an agent key (shown once).
warrantor init --data-dir "$DIR" --agent refund-bot --json > "$DIR.keys.json"
chmod 600 "$DIR.keys.json"
ADMIN=$(jq -r .admin_key.key "$DIR.keys.json")
export WARRANTOR_AGENT_KEY=$(jq -r .agent_key.key "$DIR.keys.json")

# 2. Start the server (in the background here; stopped when the script ends).
warrantor serve --data-dir "$DIR" --port "$PORT" --log-level warning &
SERVER=$!
trap 'kill $SERVER 2>/dev/null' EXIT
until curl -sf "$WARRANTOR_URL/readyz" > /dev/null; do sleep 0.2; done

# 3. A policy: refunds up to 1,000.00 are allowed, bigger ones denied. Upload, then enforce.
BUNDLE=$(jq -n --rawfile cedar $Q/policy.cedar --rawfile schema $Q/policy.cedarschema '{cedar: $cedar, schema: $schema}')
HASH=$(curl -sf "$WARRANTOR_URL/v1/policies" -H "Authorization: Bearer $ADMIN" \
  -H 'content-type: application/json' -d "$BUNDLE" | jq -r .bundle_hash)
curl -sf -X POST "$WARRANTOR_URL/v1/policies/$HASH/activate" -H "Authorization: Bearer $ADMIN" \
  -H 'content-type: application/json' -d '{}' > /dev/null

# 4. The agent asks, acts and reports (the Python SDK); prints the receipt ids.
python $Q/agent.py | tee "$DIR.agent.txt"
RECEIPT=$(sed -n 's/^receipt: //p' "$DIR.agent.txt")

# 5. Verify the receipt offline: its proof bundle and the server's trust bundle are all it needs.
curl -sf "$WARRANTOR_URL/v1/receipts/$RECEIPT/bundle" -H "Authorization: Bearer $ADMIN" > "$DIR.receipt.json"
curl -sf "$WARRANTOR_URL/v1/trust" > "$DIR.trust.json"
warrantor verify "$DIR.receipt.json" --trust "$DIR.trust.json"
