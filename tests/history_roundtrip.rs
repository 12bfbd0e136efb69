//! History is typed on the way out as on the way in: every kind of event a
//! session logs, read back from SQLite over REST and over gRPC, deserializes
//! into the `tcplab::sim::Event` it was written from, and serializes again
//! to the very same JSON; over gRPC, each event's kind and typed payload say
//! what that event says, field by field.

mod common;

use std::collections::BTreeSet;

use common::server::{TestServer, grpc_channel, rest_name};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tcplab::api::grpc::pb;
use tcplab::api::grpc::pb::event::Payload;
use tcplab::api::grpc::pb::lab_service_client::LabServiceClient;
use tcplab::engine::{Cause, Flags};
use tcplab::sim::{Event, EventKind, Side, WireSegment};

/// A session that logs every kind of event: a SYN dropped by a fault rule
/// (and its retransmission timer), a delayed SYN+ACK, a duplicated, a
/// corrupted and a held-then-released segment, a connection refused by a
/// closed port (a reset and an error), and a close through TIME_WAIT.
async fn every_kind_of_event(server: &TestServer) -> u64 {
    let rest = &server.rest;
    let sid = rest.manual_session("every kind", json!({"msl_ms": 500})).await;
    rest.two_hosts_and_listener(sid).await;
    let faults = format!("/api/v1/sessions/{sid}/faults");
    let fault = |from: &str, to: &str, flags: Value, action: &str| json!({"from": from, "to": to, "match": {"flags": flags}, "count": 1, "action": action, "delay_ms": 5});
    rest.post_expect(&faults, fault("A", "B", json!(["SYN"]), "drop"), StatusCode::CREATED).await;
    rest.post_expect(&faults, fault("B", "A", json!(["SYN", "ACK"]), "delay"), StatusCode::CREATED).await;
    let open = json!({"client": "A", "server": "B", "port": 80, "client_port": 40000, "isn": 300});
    rest.post_expect(&format!("/api/v1/sessions/{sid}/connections"), open, StatusCode::CREATED).await;
    rest.run_until_idle(sid).await;
    let send = format!("/api/v1/sessions/{sid}/connections/1/send");
    for action in ["duplicate", "corrupt"] {
        rest.post_expect(&faults, fault("A", "B", json!(["PSH", "ACK"]), action), StatusCode::CREATED).await;
        rest.post_ok(&send, json!({"side": "client", "data": action})).await;
        rest.run_until_idle(sid).await;
    }
    let held = rest.post_expect(&faults, fault("A", "B", json!(["PSH", "ACK"]), "hold"), StatusCode::CREATED).await;
    rest.post_ok(&send, json!({"side": "client", "data": "held"})).await;
    rest.post_ok(&format!("/api/v1/sessions/{sid}/clock"), json!({"action": "advance", "ms": 50})).await;
    rest.post_ok(&format!("{faults}/{}/release", held["id"]), json!({})).await;
    rest.run_until_idle(sid).await;
    // A slow link with room for one waiting segment: a burst of three queues
    // one and loses the third to the full queue.
    let slow = json!({"a": "A", "b": "B", "bandwidth_bps": 80_000, "queue_packets": 1});
    let (status, body) = rest.put(&format!("/api/v1/sessions/{sid}/links"), slow).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    rest.post_ok(&send, json!({"side": "client", "data": "q".repeat(3 * 1460)})).await;
    rest.run_until_idle(sid).await;
    let refused = json!({"client": "A", "server": "B", "port": 81, "client_port": 40001});
    rest.post_expect(&format!("/api/v1/sessions/{sid}/connections"), refused, StatusCode::CREATED).await;
    rest.run_until_idle(sid).await;
    for side in ["client", "server"] {
        rest.post_ok(&format!("/api/v1/sessions/{sid}/connections/1/close"), json!({"side": side})).await;
        rest.run_until_idle(sid).await;
    }
    sid
}

/// Reads `json` into an event and writes it again: the same JSON, or a panic
/// naming what changed.
fn round_trip(json: &Value) -> Event {
    let event: Event = serde_json::from_value(json.clone()).unwrap_or_else(|e| panic!("{e}: {json}"));
    assert_eq!(&serde_json::to_value(&event).expect("serializes"), json, "read back and written again");
    event
}

/// A value's REST spelling (`"client"`, `"SYN_SENT"`, `"retransmit"`), to
/// compare with a proto enum's name without its prefix.
fn spelled<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_value(value).expect("serializes").as_str().expect("a name").to_lowercase()
}

/// A proto enum name without its prefix, as [`spelled`] writes it.
fn named(proto_name: &str, prefix: &str) -> String {
    rest_name(proto_name, prefix)
}

fn side_of(side: Option<Side>) -> String {
    side.map_or("unspecified".to_string(), |s| spelled(&s))
}

fn flags_of(flags: Flags) -> Vec<String> {
    flags.names().map(str::to_lowercase).collect()
}

fn pb_flags(flags: impl Iterator<Item = pb::Flag>) -> Vec<String> {
    flags.map(|f| named(f.as_str_name(), "FLAG_")).collect()
}

/// The segment payload says what the written segment says.
fn check_segment(got: &pb::SegmentEvent, w: &WireSegment, seq: u64) {
    let s = &w.segment;
    assert_eq!(
        (got.id, got.src.as_str(), got.dst.as_str(), got.src_port, got.dst_port),
        (w.id, &*w.from, &*w.to, u32::from(s.src_port), u32::from(s.dst_port)),
        "event {seq}"
    );
    assert_eq!(
        (got.seq, got.ack, got.window, got.len as usize, got.retransmission, got.injected),
        (s.seq.0, s.ack.0, u32::from(s.window), s.payload.len(), w.retransmission, w.injected),
        "event {seq}"
    );
    assert_eq!(pb_flags(got.flags()), flags_of(s.flags), "event {seq}");
}

/// A gRPC event's kind and payload against the event written, field by field.
fn check_payload(message: &pb::Event, event: &Event) {
    let seq = event.seq;
    assert_eq!(named(message.kind().as_str_name(), "EVENT_KIND_"), event.kind.name(), "event {seq}");
    assert_eq!(message.connection, event.kind.connection(), "event {seq}");
    let payload = message.payload.as_ref().unwrap_or_else(|| panic!("event {seq} has a payload"));
    let no_extras = |s: &pb::SegmentEvent| (s.drop_reason(), s.fault_id, s.delay_ns);
    match (&event.kind, payload) {
        (EventKind::StateChanged { listener, host, side, from, to, cause, rfc, .. }, Payload::StateChange(c)) => {
            assert_eq!((c.host.as_str(), c.rfc.as_str(), c.listener), (&**host, &**rfc, *listener), "event {seq}");
            assert_eq!(named(c.side().as_str_name(), "SIDE_"), side_of(*side), "event {seq}");
            assert_eq!(c.from_state().as_str_name(), format!("STATE_{}", from.name()), "event {seq}");
            assert_eq!(c.to_state().as_str_name(), format!("STATE_{}", to.name()), "event {seq}");
            let got = c.cause.as_ref().and_then(|c| c.cause.as_ref()).expect("a cause");
            match (cause, got) {
                (Cause::User { call }, pb::cause::Cause::UserCall(n)) => {
                    let n = pb::UserCall::try_from(*n).expect("a call");
                    assert_eq!(named(n.as_str_name(), "USER_CALL_"), spelled(call), "event {seq}");
                }
                (Cause::Segment { flags, seq: s, ack, len }, pb::cause::Cause::Segment(g)) => {
                    assert_eq!((g.seq, g.ack, g.len), (*s, *ack, *len), "event {seq}");
                    assert_eq!(pb_flags(g.flags()), flags_of(*flags), "event {seq}");
                }
                (Cause::Timer { timer }, pb::cause::Cause::Timer(n)) => {
                    let n = pb::TimerKind::try_from(*n).expect("a timer");
                    assert_eq!(named(n.as_str_name(), "TIMER_KIND_"), spelled(timer), "event {seq}");
                }
                (want, got) => panic!("event {seq}: cause {want:?} became {got:?}"),
            }
        }
        (EventKind::SegmentSent { segment, .. } | EventKind::SegmentDelivered { segment, .. }, Payload::Segment(s))
        | (EventKind::SegmentDuplicated { fault: None, segment }, Payload::Segment(s)) => {
            check_segment(s, segment, seq);
            assert_eq!(no_extras(s), (pb::DropReason::Unspecified, None, None), "event {seq}");
        }
        (EventKind::SegmentDuplicated { fault: Some(f), segment }, Payload::Segment(s))
        | (EventKind::SegmentHeld { fault: f, segment }, Payload::Segment(s))
        | (EventKind::SegmentReleased { fault: f, segment }, Payload::Segment(s)) => {
            check_segment(s, segment, seq);
            assert_eq!(no_extras(s), (pb::DropReason::Unspecified, Some(*f), None), "event {seq}");
        }
        (EventKind::SegmentDropped { reason, fault, segment }, Payload::Segment(s)) => {
            check_segment(s, segment, seq);
            assert_eq!(named(s.drop_reason().as_str_name(), "DROP_REASON_"), spelled(reason), "event {seq}");
            assert_eq!((s.fault_id, s.delay_ns), (*fault, None), "event {seq}");
        }
        (EventKind::SegmentDelayed { fault, delay_ns, segment }, Payload::Segment(s)) => {
            check_segment(s, segment, seq);
            assert_eq!(no_extras(s), (pb::DropReason::Unspecified, Some(*fault), Some(*delay_ns)), "event {seq}");
        }
        (EventKind::TimerFired { host, side, timer, .. }, Payload::Timer(t)) => {
            assert_eq!(t.host, **host, "event {seq}");
            assert_eq!(named(t.side().as_str_name(), "SIDE_"), side_of(*side), "event {seq}");
            assert_eq!(named(t.timer().as_str_name(), "TIMER_KIND_"), spelled(timer), "event {seq}");
        }
        (EventKind::SegmentQueued { queued_bytes, queued_packets, transmit_ns, segment }, Payload::Segment(s)) => {
            check_segment(s, segment, seq);
            assert_eq!(no_extras(s), (pb::DropReason::Unspecified, None, None), "event {seq}");
            let queue = (s.queued_bytes, s.queued_packets, s.transmit_ns);
            assert_eq!(queue, (Some(*queued_bytes), Some(*queued_packets), Some(*transmit_ns)), "event {seq}");
        }
        (EventKind::CongestionChanged { host, side, cwnd, ssthresh, phase, .. }, Payload::Congestion(c)) => {
            assert_eq!((c.host.as_str(), c.cwnd, c.ssthresh), (&**host, *cwnd, *ssthresh), "event {seq}");
            assert_eq!(named(c.side().as_str_name(), "SIDE_"), side_of(*side), "event {seq}");
            assert_eq!(named(c.cc_phase().as_str_name(), "CC_PHASE_"), spelled(phase), "event {seq}");
        }
        (EventKind::ConnectionError { host, side, error, .. }, Payload::Error(x)) => {
            assert_eq!(x.host, **host, "event {seq}");
            assert_eq!(named(x.side().as_str_name(), "SIDE_"), side_of(*side), "event {seq}");
            assert_eq!(x.error().as_str_name(), format!("CONN_ERROR_{}", error.errno()), "event {seq}");
        }
        (want, got) => panic!("event {seq}: {want:?} became the payload {got:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_kind_reads_back_from_sqlite_over_rest_and_grpc_as_the_event_written() {
    let server = TestServer::start().await;
    let sid = every_kind_of_event(&server).await;

    let stored = server.rest.all_events(sid).await;
    let events: Vec<Event> = stored.iter().map(round_trip).collect();
    let kinds: BTreeSet<&str> = events.iter().map(|e| e.kind.name()).collect();
    assert_eq!(kinds, EventKind::NAMES.into_iter().collect(), "the session logged every kind");
    assert!(
        events
            .iter()
            .any(|e| matches!(&e.kind, EventKind::SegmentSent { segment, .. } if !segment.segment.payload.is_empty())),
        "payloads read back too"
    );

    let mut grpc = LabServiceClient::new(grpc_channel(&server.grpc).await);
    let over_grpc = common::server::grpc_all_events(&mut grpc, sid).await;
    assert_eq!(over_grpc.len(), events.len());
    for (message, event) in over_grpc.iter().zip(&events) {
        let json: Value = serde_json::from_str(&message.json).expect("the event's JSON");
        let typed = round_trip(&json);
        assert_eq!(&typed, event, "gRPC and REST read back the same event");
        assert_eq!((message.seq, message.t_ns), (typed.seq, typed.t_ns));
        check_payload(message, event);
    }

    // A replay over WatchEvents (the session ended, so all of it is from
    // SQLite) carries the same messages, then the caught-up marker.
    let (status, body) = server.rest.delete(&format!("/api/v1/sessions/{sid}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let req = pb::WatchEventsRequest { session_id: sid, caught_up: true, ..Default::default() };
    let mut stream = grpc.watch_events(req).await.expect("watch").into_inner();
    let mut replayed = Vec::new();
    loop {
        let item = stream.message().await.expect("ok").expect("the marker before the end").item.expect("an item");
        match item {
            pb::watch_events_response::Item::Event(e) => replayed.push(e),
            pb::watch_events_response::Item::CaughtUp(c) => {
                assert_eq!(c.last_seq, events.len() as u64);
                break;
            }
        }
    }
    assert_eq!(replayed, over_grpc, "WatchEvents and ListEvents send the same messages");
    assert!(stream.message().await.expect("ok").is_none(), "then the stream ends");
    server.stop().await;
}
