#!/usr/bin/env bash
# The three-way handshake over tcplab's REST API with curl alone (plus bash,
# sed and grep to read the JSON): a session with a manual clock, hosts A
# (10.0.0.1) and B (10.0.0.2) joined by a 10 ms link, a listener on B:80
# with ISN 500, and a connection from A:40000 with ISN 300. The clock is
# stepped one event at a time, so each segment's arrival can be seen; then
# the script checks RFC 9293's numbers:
#
#   A -> B  SYN      seq=300 ack=0
#   B -> A  SYN+ACK  seq=500 ack=301
#   A -> B  ACK      seq=301 ack=501
#
# and that both ends are ESTABLISHED. Exit status 0 when all of that holds.
#
#   bash examples/http/three_way_handshake.sh [BASE_URL]   # default http://127.0.0.1:8080
#
# With a token-protected server, set TCPLAB_TOKEN.
set -euo pipefail

BASE="${1:-${TCPLAB_URL:-http://127.0.0.1:8080}}"
API="$BASE/api/v1"
AUTH=()
if [ -n "${TCPLAB_TOKEN:-}" ]; then AUTH=(-H "authorization: Bearer $TCPLAB_TOKEN"); fi

# One request: METHOD PATH [JSON]; prints the body, fails on an HTTP error.
call() {
    local method="$1" path="$2" body="${3:-}"
    local args=(-sS --fail-with-body --max-time 10 -X "$method" "${AUTH[@]}" "$API$path")
    if [ -n "$body" ]; then args+=(-H 'content-type: application/json' -d "$body"); fi
    curl "${args[@]}"
}

# The first value of a JSON number field: field NAME < json.
field() { grep -o "\"$1\":[0-9]*" | head -n 1 | cut -d: -f2; }
# A connection end's state: state client|server < connection json.
state() { sed -E "s/.*\"$1\":\\{[^}]*\"state\":\"([A-Z_0-9]+)\".*/\\1/"; }

fail() { echo "FAIL: $*" >&2; exit 1; }

SID=$(call POST /sessions '{"name":"three-way handshake (curl)","clock":"manual","profile":{"isn":300}}' | field id)
[ -n "$SID" ] || fail "no session id"
S="/sessions/$SID"
echo "session $SID at $API$S"
call POST "$S/hosts" '{"name":"A","ip":"10.0.0.1"}' >/dev/null
call POST "$S/hosts" '{"name":"B","ip":"10.0.0.2"}' >/dev/null
call PUT "$S/links" '{"a":"A","b":"B","latency_ms":10}' >/dev/null
call POST "$S/listeners" '{"host":"B","port":80,"isn":500}' >/dev/null
CID=$(call POST "$S/connections" '{"client":"A","server":"B","port":80,"client_port":40000}' | field id)
[ -n "$CID" ] || fail "no connection id"
echo "connection $CID: A:40000 -> B:80"

# Three steps of the clock: SYN, SYN+ACK and ACK arrive one by one.
for _ in 1 2 3; do
    NOW=$(call POST "$S/clock" '{"action":"step"}' | field now_ns)
    CONN=$(call GET "$S/connections/$CID")
    server=$(echo "$CONN" | grep -q '"server":null' && echo "-" || echo "$CONN" | state server)
    printf 't=%6.3f ms  client %-12s server %s\n' "$(echo "$NOW" | sed -E 's/^(.*)(......)$/\1.\2/; s/^\./0./')" \
        "$(echo "$CONN" | state client)" "$server"
done

# The segments, in the order they were sent.
SEGS=$(call GET "$S/segments")
mapfile -t FROM < <(echo "$SEGS" | grep -o '"from":"[^"]*"' | cut -d'"' -f4)
mapfile -t TO < <(echo "$SEGS" | grep -o '"to":"[^"]*"' | cut -d'"' -f4)
mapfile -t FLAGS < <(echo "$SEGS" | grep -o '"flags":\[[^]]*\]' | sed -E 's/"flags":\[//; s/\]//; s/"//g')
mapfile -t SEQ < <(echo "$SEGS" | grep -o '"seq":[0-9]*' | cut -d: -f2)
mapfile -t ACK < <(echo "$SEGS" | grep -o '"ack":[0-9]*' | cut -d: -f2)
[ "${#SEQ[@]}" -ge 3 ] || fail "expected 3 segments, got ${#SEQ[@]}: $SEGS"

WANT=("A B SYN 300 0" "B A ACK,SYN 500 301" "A B ACK 301 501")
NAMES=("SYN" "SYN+ACK" "ACK")
for i in 0 1 2; do
    got="${FROM[$i]} ${TO[$i]} ${FLAGS[$i]} ${SEQ[$i]} ${ACK[$i]}"
    printf '%s -> %s  %-8s seq=%s ack=%s\n' "${FROM[$i]}" "${TO[$i]}" "${NAMES[$i]}" "${SEQ[$i]}" "${ACK[$i]}"
    [ "$got" = "${WANT[$i]}" ] || fail "segment $((i + 1)): expected '${WANT[$i]}', got '$got'"
done

CONN=$(call GET "$S/connections/$CID")
[ "$(echo "$CONN" | state client)" = ESTABLISHED ] || fail "client is not ESTABLISHED: $CONN"
[ "$(echo "$CONN" | state server)" = ESTABLISHED ] || fail "server is not ESTABLISHED: $CONN"
call DELETE "$S" >/dev/null
echo "ok: SYN seq=300, SYN+ACK seq=500 ack=301, ACK seq=301 ack=501; both ends ESTABLISHED"
