#!/usr/bin/env python3
"""A generic gRPC client of tcplab that has no proto file and no stubs.

Everything it knows about the API it learns from the server's reflection
service (grpc.reflection.v1alpha, which grpcio-reflection speaks; the server
offers v1 too), as grpcurl or Postman would:

1. lists the services the server offers (tcplab.v1.LabService, health,
   reflection);
2. fetches tcplab.v1.LabService's file descriptors, builds a descriptor pool
   from them and lists the service's methods with their message types;
3. calls the service with messages built from those descriptors alone: it
   creates a session, adds hosts A and B and a listener on B:80 (ISN 500),
   opens a connection from A (ISN 300), runs the clock until idle and reads
   the connection back. Enum fields are given by name (the descriptors say
   which numbers they stand for) and read back as names the same way.

It exits 0 when the service and its methods are listed and the connection
is ESTABLISHED at both ends with the handshake's numbers (client iss=300
irs=500, server iss=500 irs=300), 1 when something differs, 2 when the
server cannot be reached.

    pip install -r examples/reflection/requirements.txt
    python examples/reflection/generic_client.py --target 127.0.0.1:50051
"""

from __future__ import annotations

import argparse
import os
import sys

import grpc
from google.protobuf import descriptor_pool, message_factory
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

SERVICE = "tcplab.v1.LabService"


def list_services(channel: grpc.Channel) -> list[str]:
    """The services the server names through reflection (ListServices)."""
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    replies = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10)
    for reply in replies:
        return sorted(s.name for s in reply.list_services_response.service)
    return []


class Generic:
    """Calls any unary method of a service known only by reflection."""

    def __init__(self, channel: grpc.Channel, service: str, metadata: list[tuple[str, str]]) -> None:
        self.channel = channel
        self.metadata = metadata
        self.pool = descriptor_pool.DescriptorPool(ProtoReflectionDescriptorDatabase(channel))
        self.service = self.pool.FindServiceByName(service)

    def methods(self) -> list[str]:
        return [f"{m.name}({m.input_type.full_name}) -> {m.output_type.full_name}" for m in self.service.methods]

    def enum_name(self, message, field: str) -> str:
        """The name of an enum field's value, from the message's own descriptor."""
        enum = message.DESCRIPTOR.fields_by_name[field].enum_type
        return enum.values_by_number[getattr(message, field)].name

    def call(self, method: str, **fields):
        m = self.service.FindMethodByName(method)
        request_class = message_factory.GetMessageClass(m.input_type)
        reply_class = message_factory.GetMessageClass(m.output_type)
        rpc = self.channel.unary_unary(
            f"/{self.service.full_name}/{m.name}",
            request_serializer=lambda msg: msg.SerializeToString(),
            response_deserializer=reply_class.FromString,
        )
        return rpc(request_class(**fields), timeout=10, metadata=self.metadata)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="127.0.0.1:50051")
    args = parser.parse_args()
    token = os.environ.get("TCPLAB_TOKEN")
    metadata = [("authorization", f"Bearer {token}")] if token else []
    problems: list[str] = []
    with grpc.insecure_channel(args.target) as channel:
        try:
            grpc.channel_ready_future(channel).result(timeout=15)
        except grpc.FutureTimeoutError:
            print(f"cannot reach {args.target}", file=sys.stderr)
            return 2
        services = list_services(channel)
        print("services:", ", ".join(services))
        for want in (SERVICE, "grpc.health.v1.Health"):
            if want not in services:
                problems.append(f"{want} is not listed")

        lab = Generic(channel, SERVICE, metadata)
        methods = lab.methods()
        print(f"{SERVICE}: {len(methods)} methods, e.g.")
        for line in methods[:5]:
            print("  ", line)
        names = {m.name for m in lab.service.methods}
        for want in ("CreateSession", "OpenConnection", "Clock", "WatchEvents", "GetPcap"):
            if want not in names:
                problems.append(f"method {want} is not described")

        try:
            # protobuf takes an enum field's value by its name as well as its number.
            session = lab.call("CreateSession", name="reflection", clock="CLOCK_MODE_MANUAL")
            sid = session.id
            print(f"CreateSession -> session {sid} ({type(session).DESCRIPTOR.full_name})")
            for name, ip in (("A", "10.0.0.1"), ("B", "10.0.0.2")):
                lab.call("AddHost", session_id=sid, name=name, ip=ip)
            lab.call("AddListener", session_id=sid, host="B", port=80, isn=500)
            conn = lab.call("OpenConnection", session_id=sid, client="A", server="B", port=80, isn=300)
            clock = lab.call("Clock", session_id=sid, action="CLOCK_ACTION_RUN_UNTIL_IDLE")
            conn = lab.call("GetConnection", session_id=sid, connection_id=conn.id)
        except grpc.RpcError as e:
            print(f"FAIL: {e.code().name}: {e.details()}", file=sys.stderr)
            return 1
        print(f"Clock(CLOCK_ACTION_RUN_UNTIL_IDLE) -> now_ns={clock.now_ns}")
        for side, iss, irs in (("client", 300, 500), ("server", 500, 300)):
            end = getattr(conn, side)
            state = lab.enum_name(end, "state")
            print(f"{side}: {state} iss={end.iss} irs={end.irs} snd_nxt={end.snd_nxt} rcv_nxt={end.rcv_nxt}")
            if (state, end.iss, end.irs) != ("STATE_ESTABLISHED", iss, irs):
                problems.append(f"{side}: expected STATE_ESTABLISHED iss={iss} irs={irs}, got {state} {end.iss} {end.irs}")
        lab.call("EndSession", session_id=sid)

    for p in problems:
        print(f"FAIL: {p}", file=sys.stderr)
    if problems:
        return 1
    print("ok: listed and called tcplab.v1.LabService through reflection alone")
    return 0


if __name__ == "__main__":
    sys.exit(main())
