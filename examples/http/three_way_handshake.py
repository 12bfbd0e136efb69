#!/usr/bin/env python3
"""The three-way handshake over tcplab's REST API with `requests`.

A session with a manual clock, hosts A (10.0.0.1) and B (10.0.0.2) joined by
a 10 ms link, a listener on B:80 with ISN 500 and a connection from A:40000
with ISN 300. The clock is stepped one event at a time and both ends' states
are printed after each step; then the script checks RFC 9293's numbers

    A -> B  SYN      seq=300 ack=0
    B -> A  SYN+ACK  seq=500 ack=301
    A -> B  ACK      seq=301 ack=501

against `GET .../segments`, the state changes against `GET .../events`, and
that both ends are ESTABLISHED. Exit status 0 when all of that holds, 1 when
something differs, 2 when the server cannot be reached.

    pip install requests
    python examples/http/three_way_handshake.py [--url http://127.0.0.1:8080]

With a token-protected server, set TCPLAB_TOKEN.
"""

from __future__ import annotations

import argparse
import os
import sys

import requests

EXPECTED_SEGMENTS = [
    ("A", "B", ["SYN"], 300, 0),
    ("B", "A", ["ACK", "SYN"], 500, 301),
    ("A", "B", ["ACK"], 301, 501),
]
EXPECTED_STATES = {
    "client": [("CLOSED", "SYN_SENT"), ("SYN_SENT", "ESTABLISHED")],
    "server": [("LISTEN", "SYN_RECEIVED"), ("SYN_RECEIVED", "ESTABLISHED")],
}


class Api:
    """A JSON client for one server: each call raises on an HTTP error."""

    def __init__(self, base: str, token: str | None) -> None:
        self.base = base.rstrip("/") + "/api/v1"
        self.http = requests.Session()
        if token:
            self.http.headers["authorization"] = f"Bearer {token}"

    def call(self, method: str, path: str, body: dict | None = None) -> dict:
        reply = self.http.request(method, self.base + path, json=body, timeout=10)
        if reply.status_code >= 400:
            raise RuntimeError(f"{method} {path}: HTTP {reply.status_code}: {reply.text}")
        return reply.json() if reply.content else {}


def state(end: dict | None) -> str:
    return end["state"] if end else "-"


def run(api: Api) -> list[str]:
    """Drives the handshake; returns what differs from RFC 9293 (empty: nothing)."""
    sid = api.call("POST", "/sessions", {"name": "three-way handshake (requests)", "clock": "manual",
                                         "profile": {"isn": 300}})["id"]
    s = f"/sessions/{sid}"
    print(f"session {sid} at {api.base}{s}")
    api.call("POST", f"{s}/hosts", {"name": "A", "ip": "10.0.0.1"})
    api.call("POST", f"{s}/hosts", {"name": "B", "ip": "10.0.0.2"})
    api.call("PUT", f"{s}/links", {"a": "A", "b": "B", "latency_ms": 10})
    api.call("POST", f"{s}/listeners", {"host": "B", "port": 80, "isn": 500})
    conn = api.call("POST", f"{s}/connections", {"client": "A", "server": "B", "port": 80, "client_port": 40000})
    cid = conn["id"]
    print(f"connection {cid}: A:40000 -> B:80, client {state(conn['client'])}")

    for _ in range(3):
        now = api.call("POST", f"{s}/clock", {"action": "step"})["now_ns"]
        conn = api.call("GET", f"{s}/connections/{cid}")
        print(f"t={now / 1e6:6.3f} ms  client {state(conn['client']):<12} server {state(conn['server'])}")

    problems = []
    segments = api.call("GET", f"{s}/segments")["segments"]
    names = ["SYN", "SYN+ACK", "ACK"]
    for i, want in enumerate(EXPECTED_SEGMENTS):
        if i >= len(segments):
            problems.append(f"segment {i + 1} ({names[i]}) was never sent")
            continue
        seg = segments[i]
        got = (seg["from"], seg["to"], seg["flags"], seg["seq"], seg["ack"])
        print(f"{seg['from']} -> {seg['to']}  {names[i]:<8} seq={seg['seq']} ack={seg['ack']}  ({seg['fate']})")
        if got != want:
            problems.append(f"segment {i + 1}: expected {want}, got {got}")

    events = api.call("GET", f"{s}/events?kind=state_changed&connection={cid}")["events"]
    for side, want in EXPECTED_STATES.items():
        got = [(e["from"], e["to"]) for e in events if e.get("side") == side]
        if got != want:
            problems.append(f"{side} states: expected {want}, got {got}")

    conn = api.call("GET", f"{s}/connections/{cid}")
    for side in ("client", "server"):
        if state(conn[side]) != "ESTABLISHED":
            problems.append(f"{side} is {state(conn[side])}, not ESTABLISHED")
    client, server = conn["client"], conn["server"]
    if (client["iss"], client["irs"], server["iss"], server["irs"]) != (300, 500, 500, 300):
        problems.append(f"ISS/IRS: client {client['iss']}/{client['irs']}, server {server['iss']}/{server['irs']}")
    api.call("DELETE", s)
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("TCPLAB_URL", "http://127.0.0.1:8080"),
                        help="the server's REST base URL")
    args = parser.parse_args()
    api = Api(args.url, os.environ.get("TCPLAB_TOKEN"))
    try:
        problems = run(api)
    except requests.ConnectionError as e:
        print(f"cannot reach {args.url}: {e}", file=sys.stderr)
        return 2
    except RuntimeError as e:
        print(f"FAIL: {e}", file=sys.stderr)
        return 1
    for p in problems:
        print(f"FAIL: {p}", file=sys.stderr)
    if problems:
        return 1
    print("ok: SYN seq=300, SYN+ACK seq=500 ack=301, ACK seq=301 ack=501; both ends ESTABLISHED")
    return 0


if __name__ == "__main__":
    sys.exit(main())
