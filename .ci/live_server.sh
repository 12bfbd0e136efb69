# Sourced by the .ci scripts that test clients against a live tcplab server:
# `start_live_server PYTHON` builds target/debug/tcplab if it is missing,
# picks two free loopback ports, starts the server on them with a database in
# a fresh temporary directory (no TCPLAB_* setting of the caller's leaks in),
# waits until both ports accept connections, and stops the server and removes
# the directory when the calling script exits. It sets BIN, HTTP_PORT,
# GRPC_PORT, TMP (the server's log is "$TMP/server.log") and SERVER_PID.

BIN=target/debug/tcplab
TMP=""
SERVER_PID=""

stop_live_server() {
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill "$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 50); do
            kill -0 "$SERVER_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$SERVER_PID" 2>/dev/null || true
    fi
    if [ -n "$TMP" ]; then rm -rf "$TMP"; fi
}

start_live_server() {
    local py="$1"
    if [ ! -x "$BIN" ]; then
        echo "-- building $BIN"
        timeout 1800 cargo build --locked --bin tcplab
    fi
    # Two free ports, picked by binding port 0.
    read -r HTTP_PORT GRPC_PORT < <(timeout 30 "$py" -c '
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
    trap stop_live_server EXIT
    echo "-- starting $BIN (REST 127.0.0.1:$HTTP_PORT, gRPC 127.0.0.1:$GRPC_PORT)"
    # shellcheck disable=SC2046
    env $(env | sed -n 's/^\(TCPLAB_[A-Z_]*\)=.*/-u \1/p') \
        "$BIN" serve --http "127.0.0.1:$HTTP_PORT" --grpc "127.0.0.1:$GRPC_PORT" --db "$TMP/tcplab.db" \
        >"$TMP/server.log" 2>&1 &
    SERVER_PID=$!
    # Wait (at most 30 s) for both ports to accept connections.
    if ! timeout 30 "$py" -c '
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
}
