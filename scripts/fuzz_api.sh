#!/usr/bin/env bash
# Property-based testing of the whole HTTP API from its OpenAPI document (schemathesis), with
# its conformance checks: every status, content type, response body and header must be the
# documented one, no 5xx, 405 with Allow, 401 where the document says a route needs a key,
# invalid input refused. A real server on a free loopback port with the demo data, called
# with every role's key; stopped by PID whatever happens.
#   make fuzz            (installs the `fuzz` extra first)
#   MAX_EXAMPLES=100 ROLES="admin agent" scripts/fuzz_api.sh
# Which checks run and the few exceptions, each with its reason: scripts/schemathesis.toml
# and docs/api.md ("Checked by schemathesis").
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
ST=${ST:-.venv/bin/schemathesis}
DATA=$(mktemp -d)
PORT=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
OP=wrt_fuzzoperatorfuzzoperatorfuzzop
WARRANTOR_OPERATOR_KEY=$OP "$PY" -m warrantor.cli.main serve --host 127.0.0.1 --port "$PORT" \
  --data-dir "$DATA" --demo --log-level warning > "$DATA/server.log" 2>&1 &
PID=$!
trap 'kill "$PID" 2>/dev/null; wait "$PID" 2>/dev/null || true; rm -rf "$DATA"' EXIT
for _ in $(seq 150); do
  if [ -s "$DATA/demo.json" ] && curl -fs "http://127.0.0.1:$PORT/readyz" >/dev/null; then break; fi
  if ! kill -0 "$PID" 2>/dev/null; then echo "the server did not start:"; cat "$DATA/server.log"; exit 1; fi
  sleep 0.2
done
status=0
# One worker: schemathesis's workers are threads, and Python 3.11 before 3.11.8 tracks the AST
# validator's recursion depth in global state (CPython gh-106905), so two threads in ast.parse
# at once (Hypothesis parses lambdas to describe strategies) stop the run with "SystemError:
# AST constructor recursion depth mismatch" before any request is sent.
for role in ${ROLES:-operator admin agent app auditor}; do
  if [ "$role" = operator ]; then KEY=$OP; else
    KEY=$("$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))['${role}_key'])" "$DATA/demo.json"); fi
  echo "== $role"
  "$ST" --config-file scripts/schemathesis.toml run "http://127.0.0.1:$PORT/openapi.json" \
    --checks all -H "Authorization: Bearer $KEY" --max-examples "${MAX_EXAMPLES:-25}" --workers 1 \
    --seed "${SEED:-20261202}" --no-color || status=1
done
if grep -q Traceback "$DATA/server.log"; then echo "server logged a traceback:"; grep -A30 Traceback "$DATA/server.log" | head -60; status=1; fi
exit $status
