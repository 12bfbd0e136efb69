#!/usr/bin/env python3
"""A tcplab gRPC client: one connection's life, watched as it happens.

It creates a session (manual clock, fixed ISNs: client 300, server 500),
hosts A and B joined by a 5 ms link, starts a WatchEvents stream of the
session's state changes in a thread (waiting for its CaughtUp marker: from
there on the stream is live), adds a listener on B:80, opens a connection
from A, sends data both ways, closes both sides and runs the virtual clock
until nothing is scheduled (which includes TIME_WAIT's 2*MSL). Each state
change is printed as the stream delivers it, read from the event's typed
`state_change` payload (enums, no JSON):

    t=10.000ms conn 1 A(client) SYN_SENT -> ESTABLISHED

It exits 0 if both ends went through exactly the states of RFC 9293's
three-way handshake and four-way close (the client closing first), 1 if
not, and 2 if the server could not be reached or an RPC failed.

    bash examples/python/gen.sh                  # stubs (also made here on first run)
    python examples/python/client.py --target 127.0.0.1:50051
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
GENERATED = os.path.join(HERE, "generated")

# The transitions each end must go through, in order.
EXPECTED = {
    "client": [
        ("CLOSED", "SYN_SENT"),
        ("SYN_SENT", "ESTABLISHED"),
        ("ESTABLISHED", "FIN_WAIT_1"),
        ("FIN_WAIT_1", "FIN_WAIT_2"),
        ("FIN_WAIT_2", "TIME_WAIT"),
        ("TIME_WAIT", "CLOSED"),  # after 2*MSL of virtual time
    ],
    "server": [
        ("LISTEN", "SYN_RECEIVED"),
        ("SYN_RECEIVED", "ESTABLISHED"),
        ("ESTABLISHED", "CLOSE_WAIT"),
        ("CLOSE_WAIT", "LAST_ACK"),
        ("LAST_ACK", "CLOSED"),
    ],
}


def load_stubs():
    """Imports the generated stubs, generating them first if they are missing."""
    stub = os.path.join(GENERATED, "tcplab", "v1", "lab_pb2_grpc.py")
    if not os.path.exists(stub):
        from grpc_tools import protoc  # from grpcio-tools

        os.makedirs(GENERATED, exist_ok=True)
        proto_dir = os.path.join(REPO, "proto")
        rc = protoc.main(
            [
                "grpc_tools.protoc",
                f"-I{proto_dir}",
                f"--python_out={GENERATED}",
                f"--grpc_python_out={GENERATED}",
                os.path.join(proto_dir, "tcplab", "v1", "lab.proto"),
            ]
        )
        if rc != 0:
            sys.exit(f"protoc failed with exit code {rc}")
    sys.path.insert(0, GENERATED)
    from tcplab.v1 import lab_pb2, lab_pb2_grpc

    return lab_pb2, lab_pb2_grpc


def describe(pb, event) -> tuple[str, dict]:
    """One state change as a line of text, and its fields as a dict.

    The event's `state_change` payload carries host, side, both states, the
    RFC section and the cause as typed fields and enums, so no JSON parsing
    is needed (`event.json` still has the event exactly as REST returns it).
    """
    assert event.WhichOneof("payload") == "state_change", event
    change = event.state_change
    state = lambda s: pb.State.Name(s).removeprefix("STATE_")  # STATE_SYN_SENT -> SYN_SENT
    side = None if change.side == pb.SIDE_UNSPECIFIED else pb.Side.Name(change.side).removeprefix("SIDE_").lower()
    fields = {
        "connection": event.connection if event.HasField("connection") else None,
        "host": change.host,
        "side": side,
        "from": state(change.from_state),
        "to": state(change.to_state),
        "rfc": change.rfc,
    }
    t_ms = event.t_ns / 1e6
    if fields["connection"] is not None:
        who = f"conn {fields['connection']} {change.host}({side or 'peer'})"
    else:
        who = f"listener {change.listener} {change.host}"
    return f"t={t_ms:.3f}ms {who} {fields['from']} -> {fields['to']}", fields


class Watcher(threading.Thread):
    """Reads a WatchEvents stream, printing and keeping each state change."""

    def __init__(self, stub, pb, session_id: int, deadline_s: float):
        super().__init__(daemon=True)
        self.pb = pb
        self.call = stub.WatchEvents(
            pb.WatchEventsRequest(
                session_id=session_id,
                after_seq=0,
                kinds=[pb.EVENT_KIND_STATE_CHANGED],
                caught_up=True,  # one CaughtUp message once the replay is over
            ),
            timeout=deadline_s,
        )
        self.events: list[dict] = []
        self.seqs: list[int] = []
        self.error: Exception | None = None
        self.live = threading.Event()

    def run(self):
        try:
            for message in self.call:
                if message.WhichOneof("item") == "caught_up":
                    self.live.set()
                    continue
                event = message.event
                line, body = describe(self.pb, event)
                print(line, flush=True)
                self.seqs.append(event.seq)
                self.events.append(body)
        except Exception as e:  # grpc.RpcError, or an unexpected payload
            self.error = e


def check(watcher: Watcher, connection_id: int) -> list[str]:
    """What is wrong with what the stream delivered (nothing: an empty list)."""
    problems = []
    if watcher.seqs != sorted(set(watcher.seqs)):
        problems.append(f"event seqs not strictly increasing: {watcher.seqs}")
    for side, expected in EXPECTED.items():
        seen = [
            (e["from"], e["to"])
            for e in watcher.events
            if e.get("connection") == connection_id and e.get("side") == side
        ]
        if seen != expected:
            fmt = lambda ts: ", ".join(f"{a}->{b}" for a, b in ts) or "(none)"
            problems.append(f"{side}: expected {fmt(expected)}; saw {fmt(seen)}")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", default="127.0.0.1:50051", help="the gRPC server, host:port")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds for the whole run")
    args = parser.parse_args()

    pb, rpc = load_stubs()
    import grpc

    started = time.monotonic()
    left = lambda: max(1.0, args.timeout - (time.monotonic() - started))

    channel = grpc.insecure_channel(args.target)
    try:
        grpc.channel_ready_future(channel).result(timeout=min(10.0, args.timeout))
    except grpc.FutureTimeoutError:
        print(f"error: no gRPC server at {args.target}", file=sys.stderr)
        return 2
    stub = rpc.LabServiceStub(channel)
    t = 10.0  # seconds for each unary call
    watcher = None

    try:
        session = stub.CreateSession(
            pb.CreateSessionRequest(
                name="python-client",
                seed=1,
                clock=pb.CLOCK_MODE_MANUAL,
                profile=pb.Profile(fixed_isn=300, msl_ms=30000),
            ),
            timeout=t,
        )
        sid = session.id
        clock_name = pb.ClockMode.Name(session.clock).removeprefix("CLOCK_MODE_").lower()
        print(f"session {sid}: clock {clock_name}, client ISN 300, server ISN 500", flush=True)
        stub.AddHost(pb.AddHostRequest(session_id=sid, name="A", ip="10.0.0.1"), timeout=t)
        stub.AddHost(pb.AddHostRequest(session_id=sid, name="B", ip="10.0.0.2"), timeout=t)
        stub.SetLink(pb.SetLinkRequest(session_id=sid, a="A", b="B", latency_ms=5.0), timeout=t)

        # Watch from the start; once it has caught up, everything else arrives live.
        watcher = Watcher(stub, pb, sid, left())
        watcher.start()
        if not watcher.live.wait(timeout=min(10.0, left())):
            why = f": {watcher.error}" if watcher.error else ""
            print(f"error: the stream did not say it caught up{why}", file=sys.stderr)
            watcher.call.cancel()
            return 1
        stub.AddListener(pb.AddListenerRequest(session_id=sid, host="B", port=80, isn=500), timeout=t)

        conn = stub.OpenConnection(
            pb.OpenConnectionRequest(session_id=sid, client="A", server="B", port=80, client_port=40000, isn=300),
            timeout=t,
        )
        cid = conn.id
        run = lambda: stub.Clock(pb.ClockRequest(session_id=sid, action=pb.CLOCK_ACTION_RUN_UNTIL_IDLE), timeout=t)
        client, server = pb.SIDE_CLIENT, pb.SIDE_SERVER

        run()  # the three-way handshake
        conn = stub.GetConnection(pb.ConnectionRef(session_id=sid, connection_id=cid), timeout=t)
        if (conn.client.state, conn.server.state) != (pb.STATE_ESTABLISHED, pb.STATE_ESTABLISHED):
            states = f"{pb.State.Name(conn.client.state)} / {pb.State.Name(conn.server.state)}"
            print(f"error: after the handshake: {states}", file=sys.stderr)
            watcher.call.cancel()
            return 1

        hello, reply = b"hello from python", b"hello back"
        stub.Send(pb.SendRequest(session_id=sid, connection_id=cid, side=client, data=hello), timeout=t)
        stub.Send(pb.SendRequest(session_id=sid, connection_id=cid, side=server, data=reply), timeout=t)
        run()
        got_s = stub.GetReceived(pb.SideRequest(session_id=sid, connection_id=cid, side=server), timeout=t)
        got_c = stub.GetReceived(pb.SideRequest(session_id=sid, connection_id=cid, side=client), timeout=t)

        stub.Close(pb.CloseRequest(session_id=sid, connection_id=cid, side=client), timeout=t)
        run()  # FIN, ACK: the client in FIN_WAIT_2, the server in CLOSE_WAIT
        stub.Close(pb.CloseRequest(session_id=sid, connection_id=cid, side=server), timeout=t)
        clock = run()  # FIN, ACK, then TIME_WAIT's 2*MSL

        # Ending the session ends the stream.
        stub.EndSession(pb.SessionRef(session_id=sid), timeout=t)
    except grpc.RpcError as e:
        print(f"error: RPC failed: {e.code().name}: {e.details()}", file=sys.stderr)
        if watcher is not None:
            watcher.call.cancel()
        return 2

    watcher.join(timeout=min(10.0, left()))
    if watcher.is_alive():
        print("error: the stream did not end with the session", file=sys.stderr)
        watcher.call.cancel()
        return 1

    print(f"stream ended with the session; clock idle at t={clock.now_ns / 1e6:.3f}ms", flush=True)
    problems = check(watcher, cid)
    if not any(e["connection"] is None and e["to"] == "LISTEN" for e in watcher.events):
        problems.append("the listener's CLOSED -> LISTEN did not arrive live")
    if watcher.error is not None:
        problems.append(f"stream failed: {watcher.error}")
    if got_s.data != hello:
        problems.append(f"server received {got_s.data!r}, expected {hello!r}")
    if got_c.data != reply:
        problems.append(f"client received {got_c.data!r}, expected {reply!r}")
    if problems:
        for p in problems:
            print(f"FAIL: {p}", file=sys.stderr)
        return 1
    print(
        f"ok: {len(watcher.events)} state changes; server received {got_s.data.decode()!r}, "
        f"client received {got_c.data.decode()!r}",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
