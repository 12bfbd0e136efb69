#!/usr/bin/env node
// A tcplab gRPC client in Node.js (@grpc/grpc-js, with the service loaded at
// run time from proto/tcplab/v1/lab.proto by @grpc/proto-loader: no code
// generation step).
//
// It runs the built-in lab `syn-retransmission` on the server (RunLab: the
// lab's first SYN is dropped by a fault rule, A retransmits it after the
// 1 s RTO, the handshake completes), then replays the lab session's events
// with WatchEvents and prints each state change and segment as the stream
// delivers it, read from the events' typed payloads (enums arrive as their
// names, e.g. "STATE_SYN_SENT", "FLAG_SYN"), and fetches the session's
// capture with GetPcap. It checks
// what it saw: the lab passed; A sent SYN seq=300 twice, the second marked
// as a retransmission 1 s later; SYN+ACK seq=500 ack=301; ACK seq=301
// ack=501; the client went CLOSED -> SYN_SENT -> ESTABLISHED; the capture is
// a pcap file with one packet per segment sent.
//
// Exit status: 0 when everything holds, 1 when something differs, 2 when
// the server cannot be reached or a call fails.
//
//   cd examples/node && npm ci
//   node examples/node/client.mjs --target 127.0.0.1:50051
//
// With a token-protected server, set TCPLAB_TOKEN.

import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

import grpc from "@grpc/grpc-js";
import protoLoader from "@grpc/proto-loader";

const here = path.dirname(fileURLToPath(import.meta.url));
const protoRoot = path.join(here, "..", "..", "proto");

const { values: args } = parseArgs({
  options: {
    target: { type: "string", default: process.env.TCPLAB_GRPC_TARGET ?? "127.0.0.1:50051" },
    lab: { type: "string", default: "syn-retransmission" },
    timeout: { type: "string", default: "30" },
  },
});

const definition = protoLoader.loadSync("tcplab/v1/lab.proto", {
  includeDirs: [protoRoot],
  keepCase: true, // field names as the proto spells them (session_id)
  longs: Number, // uint64 ids and nanoseconds fit a double here
  enums: String, // enum values by name: "SIDE_CLIENT", "EVENT_KIND_SEGMENT_SENT"
  defaults: true,
  oneofs: true, // a oneof's name says which field is set: event.payload === "segment"
});
const { LabService } = grpc.loadPackageDefinition(definition).tcplab.v1;
const client = new LabService(args.target, grpc.credentials.createInsecure());

const metadata = new grpc.Metadata();
if (process.env.TCPLAB_TOKEN) metadata.set("authorization", `Bearer ${process.env.TCPLAB_TOKEN}`);
const deadline = () => new Date(Date.now() + Number(args.timeout) * 1000);

/** One unary call as a promise. */
function call(method, request) {
  return new Promise((resolve, reject) => {
    client[method](request, metadata, { deadline: deadline() }, (err, reply) => (err ? reject(err) : resolve(reply)));
  });
}

/** Every event of a session, replayed by WatchEvents until the stream ends. */
function watch(sessionId, onEvent) {
  return new Promise((resolve, reject) => {
    const stream = client.WatchEvents({ session_id: sessionId, after_seq: 0 }, metadata, { deadline: deadline() });
    // Each message is an event (item === "event"), or with caught_up a marker.
    stream.on("data", (message) => message.item === "event" && onEvent(message.event));
    stream.on("error", reject);
    stream.on("end", resolve);
  });
}

const ms = (ns) => (Number(ns) / 1e6).toFixed(3);
/** An enum value's name without its prefix ("STATE_SYN_SENT" -> "SYN_SENT"). */
const bare = (value, prefix) => (value.startsWith(prefix) ? value.slice(prefix.length) : value);

async function main() {
  const problems = [];
  const check = (ok, what) => {
    if (!ok) problems.push(what);
  };

  await new Promise((resolve, reject) =>
    client.waitForReady(deadline(), (err) => (err ? reject(err) : resolve())),
  );
  const run = await call("RunLab", { name: args.lab, end: true });
  console.log(`lab ${run.lab}: ${run.title}`);
  console.log(`session ${run.session_id}, ${run.passed ? "passed" : "FAILED"} (${run.checks.length} checks)`);
  check(run.passed, `the lab did not pass: ${run.error ?? run.checks.filter((c) => !c.passed).map((c) => c.message)}`);

  const sent = [];
  const clientStates = [];
  await watch(run.session_id, (event) => {
    if (event.payload === "state_change") {
      const sc = event.state_change;
      const side = sc.side === "SIDE_UNSPECIFIED" ? "-" : bare(sc.side, "SIDE_").toLowerCase();
      const [from, to] = [bare(sc.from_state, "STATE_"), bare(sc.to_state, "STATE_")];
      const who = sc.side === "SIDE_UNSPECIFIED" ? `listener ${sc.listener} ${sc.host}` : `${sc.host}(${side})`;
      console.log(`t=${ms(event.t_ns)}ms ${who} ${from} -> ${to}   [RFC 9293 ${sc.rfc}]`);
      if (sc.side === "SIDE_CLIENT") clientStates.push(`${from}->${to}`);
    } else if (event.kind === "EVENT_KIND_SEGMENT_SENT" || event.kind === "EVENT_KIND_SEGMENT_DROPPED") {
      const s = { ...event.segment, flags: event.segment.flags.map((f) => bare(f, "FLAG_")) };
      const dropped = event.kind === "EVENT_KIND_SEGMENT_DROPPED";
      const reason = bare(s.drop_reason, "DROP_REASON_").toLowerCase();
      const note = dropped ? `  DROPPED (${reason})` : s.retransmission ? "  (retransmission)" : "";
      console.log(`t=${ms(event.t_ns)}ms ${s.src} -> ${s.dst} ${s.flags.join(",")} seq=${s.seq} ack=${s.ack}${note}`);
      if (!dropped) sent.push({ t_ns: Number(event.t_ns), ...s });
    }
  });

  const syns = sent.filter((s) => s.flags.join() === "SYN");
  check(syns.length === 2, `expected 2 SYNs, saw ${syns.length}`);
  check(syns.every((s) => s.seq === 300 && s.ack === 0), "both SYNs carry seq=300");
  check(syns.length === 2 && !syns[0].retransmission && syns[1].retransmission, "the second SYN is a retransmission");
  check(syns.length === 2 && syns[1].t_ns - syns[0].t_ns === 1e9, "the SYN is retransmitted after the 1 s RTO");
  const synAck = sent.find((s) => s.flags.join() === "ACK,SYN");
  check(synAck && synAck.seq === 500 && synAck.ack === 301, "SYN+ACK seq=500 ack=301");
  const ack = sent.find((s) => s.flags.join() === "ACK" && s.len === 0);
  check(ack && ack.seq === 301 && ack.ack === 501, "ACK seq=301 ack=501");
  check(
    clientStates.join(" ") === "CLOSED->SYN_SENT SYN_SENT->ESTABLISHED",
    `client states: ${clientStates.join(" ")}`,
  );

  const { pcap } = await call("GetPcap", { session_id: run.session_id });
  // Nanosecond pcap, little-endian; then one 16-byte record header per packet.
  let packets = 0;
  for (let at = 24; at + 16 <= pcap.length; at += 16 + pcap.readUInt32LE(at + 8)) packets += 1;
  console.log(`GetPcap: ${pcap.length} bytes, ${packets} packets`);
  check(pcap.length > 24 && pcap.readUInt32LE(0) === 0xa1b23c4d, "GetPcap returns a nanosecond pcap file");
  check(packets === sent.length, `the capture has ${packets} packets for ${sent.length} segments sent`);

  for (const p of problems) console.error(`FAIL: ${p}`);
  if (problems.length) return 1;
  console.log("ok: SYN lost and retransmitted after 1 s, SYN+ACK seq=500 ack=301, ACK seq=301 ack=501");
  return 0;
}

main()
  .then((code) => {
    // Not client.close() (nor grpc.closeClient, which calls it): the service
    // has an RPC named Close, which grpc-js also exposes as `close`.
    grpc.Client.prototype.close.call(client);
    process.exit(code);
  })
  .catch((err) => {
    console.error(`error: ${err.message ?? err}`);
    grpc.Client.prototype.close.call(client);
    process.exit(2);
  });
