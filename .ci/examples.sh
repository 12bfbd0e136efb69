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

BIN=target/debug/tcplab
if [ ! -x "$BIN" ]; then
    echo "-- building $BIN"
    timeout 1800 cargo build --locked --bin tcplab
fi

# Two free ports, picked by binding port 0.
read -r HTTP_PORT GRPC_PORT < <(timeout 30 "$PY" -c '
import socket
socks = [socket.socket() for _ in range(2)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
')
if [ -z "${GRPC_PORT:-}" ]; then
    echo "could not pick free ports" >&2
    exit 1
fi

TMP="$(mktemp -d)"
SERVER_PID=""
cleanup() {
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill "$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 50); do
            kill -0 "$SERVER_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$SERVER_PID" 2>/dev/null || true
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT

echo "-- starting $BIN (REST 127.0.0.1:$HTTP_PORT, gRPC 127.0.0.1:$GRPC_PORT)"
# No TCPLAB_* setting of the caller's (a token, a config file) may leak in.
env $(env | sed -n 's/^\(TCPLAB_[A-Z_]*\)=.*/-u \1/p') \
    "$BIN" serve --http "127.0.0.1:$HTTP_PORT" --grpc "127.0.0.1:$GRPC_PORT" --db "$TMP/tcplab.db" \
    >"$TMP/server.log" 2>&1 &
SERVER_PID=$!

# Wait (at most 30 s) for both ports to accept connections.
if ! timeout 30 "$PY" -c '
import socket, sys, time
for port in map(int, sys.argv[1:]):
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.1)
' "$HTTP_PORT" "$GRPC_PORT"; then
    echo "the server did not open its ports; its log:" >&2
    cat "$TMP/server.log" >&2
    exit 1
fi

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
