#!/usr/bin/env bash
# Property-based fuzzing of the whole HTTP API from its OpenAPI document (schemathesis):
# a real server on a free loopback port, every role's key, the check "no 5xx ever".
#   make fuzz            (installs the `fuzz` extra first)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
DATA=$(mktemp -d)
PORT=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
OP=wrt_fuzzoperatorfuzzoperatorfuzzop
WARRANTOR_OPERATOR_KEY=$OP "$PY" -m warrantor.cli.main serve --host 127.0.0.1 --port "$PORT" \
  --data-dir "$DATA" --demo --log-level warning > "$DATA/server.log" 2>&1 &
PID=$!
trap 'kill "$PID" 2>/dev/null; wait "$PID" 2>/dev/null || true; rm -rf "$DATA"' EXIT
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$PORT/readyz" >/dev/null && break; sleep 0.2; done
status=0
for role in operator admin agent app auditor; do
  if [ "$role" = operator ]; then KEY=$OP; else
    KEY=$("$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))['${role}_key'])" "$DATA/demo.json"); fi
  echo "== $role"
  .venv/bin/schemathesis run "http://127.0.0.1:$PORT/openapi.json" --checks not_a_server_error \
    -H "Authorization: Bearer $KEY" --max-examples "${MAX_EXAMPLES:-40}" --workers 2 || status=1
done
if grep -q Traceback "$DATA/server.log"; then echo "server logged a traceback:"; grep -A30 Traceback "$DATA/server.log" | head -60; status=1; fi
exit $status
