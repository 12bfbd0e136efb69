#!/usr/bin/env bash
# Runs the client examples against a live tcplab server: the HTTP scripts
# (examples/http: curl alone, and Python requests), the generic gRPC client
# that knows the API only through reflection (examples/reflection), and the
# Node.js gRPC client (examples/node). The server runs on free ports with a
# temporary database; Python packages go to target/py-venv, npm packages to
# examples/node/node_modules. Fails if any example fails. Every step is
# bounded in time.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=target/py-venv
PY="$VENV/bin/python"

if [ ! -x "$PY" ]; then
    echo "-- creating $VENV"
    timeout 120 python3 -m venv "$VENV"
fi
if ! timeout 60 "$PY" -c 'import requests' 2>/dev/null; then
    echo "-- installing examples/http/requirements.txt"
    timeout 600 "$PY" -m pip install --quiet --disable-pip-version-check -r examples/http/requirements.txt
fi
if ! timeout 60 "$PY" -c 'import grpc_reflection, google.protobuf' 2>/dev/null; then
    echo "-- installing examples/reflection/requirements.txt"
    timeout 600 "$PY" -m pip install --quiet --disable-pip-version-check -r examples/reflection/requirements.txt
fi

source .ci/live_server.sh
start_live_server "$PY"

passed=0
failed=0
run() {
    local name="$1"
    shift
    echo "-- $name"
    if timeout 120 "$@"; then
        passed=$((passed + 1))
    else
        echo "FAILED: $name (exit $?)" >&2
        failed=$((failed + 1))
    fi
}

run "examples/http/three_way_handshake.sh (curl)" \
    env -u TCPLAB_TOKEN bash examples/http/three_way_handshake.sh "http://127.0.0.1:$HTTP_PORT"
run "examples/http/three_way_handshake.py (requests)" \
    env -u TCPLAB_TOKEN "$PY" examples/http/three_way_handshake.py --url "http://127.0.0.1:$HTTP_PORT"

run "examples/reflection/generic_client.py (gRPC reflection, no proto)" \
    env -u TCPLAB_TOKEN "$PY" examples/reflection/generic_client.py --target "127.0.0.1:$GRPC_PORT"

if [ -f examples/node/package.json ]; then
    if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
        SUDO=()
        if [ "$(id -u)" -ne 0 ]; then SUDO=(sudo -n); fi
        echo "-- installing node and npm (apt)"
        timeout 600 "${SUDO[@]}" apt-get update -q || true
        timeout 900 "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends nodejs npm
    fi
    if [ ! -d examples/node/node_modules/@grpc/grpc-js ] || [ ! -d examples/node/node_modules/@grpc/proto-loader ]; then
        echo "-- npm ci (examples/node)"
        (cd examples/node && timeout 600 npm ci --no-audit --no-fund)
    fi
    run "examples/node/client.mjs (@grpc/grpc-js)" \
        env -u TCPLAB_TOKEN node examples/node/client.mjs --target "127.0.0.1:$GRPC_PORT"
fi

if [ "$failed" -ne 0 ]; then
    echo "server log (last 50 lines):" >&2
    tail -n 50 "$TMP/server.log" >&2
fi
echo "examples: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
