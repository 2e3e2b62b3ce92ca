#!/usr/bin/env bash
# Prepare a running `make run` server for the MCP gateway (docs/mcp.md, "Try it"):
# upload and enforce examples/mcp/policy, create a gateway key for payments-agent, and
# print the export line for it. Needs curl and jq; reads the admin key from .warrantor/demo.json.
set -euo pipefail
URL=${WARRANTOR_URL:-http://127.0.0.1:8080}
ADMIN=$(jq -r .admin_key "${WARRANTOR_DATA_DIR:-.warrantor}/demo.json")
DIR=$(dirname "$0")/policy
BUNDLE=$(jq -n --rawfile cedar "$DIR/mcp.cedar" --rawfile schema "$DIR/mcp.cedarschema" \
  --rawfile config "$DIR/warrantor.yaml" '{cedar: $cedar, schema: $schema, config: $config}')
HASH=$(curl -sf "$URL/v1/policies" -H "Authorization: Bearer $ADMIN" -H 'content-type: application/json' \
  -d "$BUNDLE" | jq -r .bundle_hash)
curl -sf -X POST "$URL/v1/policies/$HASH/activate" -H "Authorization: Bearer $ADMIN" \
  -H 'content-type: application/json' -d '{}' > /dev/null
KEY=$(curl -sf "$URL/v1/api-keys" -H "Authorization: Bearer $ADMIN" -H 'content-type: application/json' \
  -d '{"role": "gateway", "agent_id": "payments-agent", "label": "mcp gateway"}' | jq -r .key)
echo "policy $HASH enforced; gateway key created (shown once):" >&2
echo "export WARRANTOR_GATEWAY_KEY=$KEY"
