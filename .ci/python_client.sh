#!/usr/bin/env bash
# Runs the Python gRPC client (examples/python/client.py) against a live
# tcplab server: a venv in target/py-venv with the pinned requirements, stubs
# generated from the proto, the server on free ports with a temporary
# database. Fails if the client fails. Every step is bounded in time.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=target/py-venv
PY="$VENV/bin/python"
REQ=examples/python/requirements.txt

if [ ! -x "$PY" ]; then
    echo "-- creating $VENV"
    timeout 120 python3 -m venv "$VENV"
fi
# Install when a pinned requirement is missing (or the venv is incomplete).
if ! timeout 60 "$PY" - "$REQ" <<'PYEOF'
import sys
from importlib.metadata import version, PackageNotFoundError
for line in open(sys.argv[1]):
    line = line.split("#")[0].strip()
    if not line:
        continue
    name, _, want = line.partition("==")
    try:
        if version(name) != want:
            sys.exit(1)
    except PackageNotFoundError:
        sys.exit(1)
PYEOF
then
    echo "-- installing $REQ"
    timeout 600 "$PY" -m pip install --quiet --disable-pip-version-check -r "$REQ"
fi

echo "-- generating stubs"
PYTHON="$PY" timeout 120 bash examples/python/gen.sh

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
"$BIN" serve --http "127.0.0.1:$HTTP_PORT" --grpc "127.0.0.1:$GRPC_PORT" --db "$TMP/tcplab.db" \
    >"$TMP/server.log" 2>&1 &
SERVER_PID=$!

# Wait (at most 30 s) for the gRPC port to accept connections.
if ! timeout 30 "$PY" -c '
import socket, sys, time
port = int(sys.argv[1])
while True:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        break
    except OSError:
        time.sleep(0.1)
' "$GRPC_PORT"; then
    echo "the server did not open 127.0.0.1:$GRPC_PORT; its log:" >&2
    cat "$TMP/server.log" >&2
    exit 1
fi

echo "-- running examples/python/client.py"
status=0
timeout 120 "$PY" examples/python/client.py --target "127.0.0.1:$GRPC_PORT" --timeout 60 || status=$?
if [ "$status" -ne 0 ]; then
    echo "python client failed (exit $status); server log:" >&2
    tail -n 50 "$TMP/server.log" >&2
    exit 1
fi
echo "python_client: 1 passed, 0 failed"
