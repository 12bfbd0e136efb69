#!/usr/bin/env bash
# API fuzzing of the REST API with schemathesis (PyPI) against the OpenAPI
# document of a live server (/api/v1/openapi.json): every operation gets
# generated requests (valid and invalid) and every response must be no 5xx,
# a documented status, the documented content type and headers, and match
# its schema; a request that breaks the schema must be refused.
#
# Not checked: `positive_data_acceptance` (a schema-valid request may still
# be refused: the schema cannot say that host "x" must exist in session 7).
#
# Bounded: a pinned schemathesis in target/st-venv, a few examples per
# operation with a fixed seed, and `timeout` around every step.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"

VENV=target/st-venv
PY="$VENV/bin/python"
ST_VERSION=4.32.5
MAX_EXAMPLES="${TCPLAB_ST_EXAMPLES:-25}"
SEED="${TCPLAB_ST_SEED:-1}"

if [ ! -x "$PY" ]; then
    echo "-- creating $VENV"
    timeout 120 python3 -m venv "$VENV"
fi
if [ "$("$PY" -c 'from importlib.metadata import version; print(version("schemathesis"))' 2>/dev/null)" != "$ST_VERSION" ]; then
    echo "-- installing schemathesis==$ST_VERSION"
    timeout 600 "$PY" -m pip install --quiet --disable-pip-version-check "schemathesis==$ST_VERSION"
fi

source .ci/live_server.sh
start_live_server "$PY"

echo "-- schemathesis: $MAX_EXAMPLES examples per operation, seed $SEED"
status=0
# Run in the temporary directory: schemathesis keeps a cache (.schemathesis/) where it runs.
(cd "$TMP" && timeout 300 "$ROOT/$VENV/bin/schemathesis" run "http://127.0.0.1:$HTTP_PORT/api/v1/openapi.json" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance,negative_data_rejection \
    --max-examples "$MAX_EXAMPLES" --seed "$SEED" --workers 2 --request-timeout 10 --generation-database none \
    --no-color) || status=$?
if grep -q "panicked" "$TMP/server.log"; then
    echo "the server panicked:" >&2
    grep -A5 "panicked" "$TMP/server.log" >&2
    status=1
fi
if [ "$status" -ne 0 ]; then
    echo "schemathesis failed (exit $status); the server log's last lines:" >&2
    tail -n 30 "$TMP/server.log" >&2
fi
exit "$status"
