#!/usr/bin/env bash
# Memory after a burst, measured on the real server (bounded, loopback only):
# start `tcplab` (release build), read its idle RSS, make one session hold
# many events in memory (a world that is never idle, advanced until
# run_max_events with max_pending_events raised so that the events wait in
# memory for SQLite), then read RSS at the peak, when the writer has caught
# up, and 2 and 10 seconds later. Prints one line per reading; run it as
#   bash benches/memory_after_burst.sh
# Numbers are RSS in MiB from /proc/PID/status; compare within one run.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked --bin tcplab >&2
BIN=target/release/tcplab
TMP=$(mktemp -d)
trap 'kill "$PID" 2>/dev/null || true; rm -rf "$TMP"' EXIT
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
GRPC=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
EVENTS="${TCPLAB_BURST_ITEMS:-1000000}"
"$BIN" --http "127.0.0.1:$PORT" --grpc "127.0.0.1:$GRPC" --db "$TMP/lab.db" \
    --max-pending-events 4000000 --run-max-events "$EVENTS" >"$TMP/log" 2>&1 &
PID=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done
rss() { awk '/VmRSS/ {printf "%.1f", $2/1024}' "/proc/$PID/status"; }
API="http://127.0.0.1:$PORT/api/v1"
python3 - "$TMP/body.json" <<'PY'
import json, sys
lab = '''
title = "never idle"
explanation = "A persist timer every millisecond behind a zero window."
[profile]
window = 1000
rto_initial_ms = 1
rto_min_ms = 1
rto_max_ms = 1
[[link]]
a = "A"
b = "B"
latency_ms = 0.1
[[step]]
listen = { host = "B", port = 80 }
[[step]]
open = { name = "c", client = "A", server = "B", port = 80 }
[[step]]
run_until_idle = {}
[[step]]
auto_read = { conn = "c", side = "server", on = false }
[[step]]
send = { conn = "c", side = "client", len = 3000 }
[[step]]
advance = 20
'''
json.dump({"toml": lab}, open(sys.argv[1], "w"))
PY
echo "idle: $(rss) MiB"
SID=$(curl -s "$API/labs/runs" -H 'content-type: application/json' -d @"$TMP/body.json" | python3 -c 'import json,sys; print(json.load(sys.stdin)["session_id"])')
peak=0
( while sleep 0.2; do rss; echo; done ) >"$TMP/samples" & SAMPLER=$!
START=$(date +%s.%N)
curl -s "$API/sessions/$SID/clock" -H 'content-type: application/json' -d '{"action":"advance","ms":86400000}' >"$TMP/clock"
END=$(date +%s.%N)
kill "$SAMPLER"
peak=$(sort -n "$TMP/samples" | tail -1)
EVENTS_NOW=$(curl -s "$API/sessions/$SID" | python3 -c 'import json,sys; print(json.load(sys.stdin)["events"])')
echo "burst: $EVENTS_NOW events in $(python3 -c "print(round($END-$START,2))") s, peak $peak MiB"
curl -s "$API/sessions/$SID/events?limit=1" >/dev/null   # waits for the writer to commit everything
echo "writer caught up: $(rss) MiB"
sleep 2
echo "2 s later: $(rss) MiB"
sleep 8
echo "10 s later: $(rss) MiB"
