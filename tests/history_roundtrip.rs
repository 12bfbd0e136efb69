//! History is typed on the way out as on the way in: every kind of event a
//! session logs, read back from SQLite over REST and over gRPC, deserializes
//! into the `tcplab::sim::Event` it was written from, and serializes again
//! to the very same JSON.

mod common;

use std::collections::BTreeSet;

use common::server::{TestServer, grpc_channel};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tcplab::api::grpc::pb::lab_service_client::LabServiceClient;
use tcplab::sim::{Event, EventKind};

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
        assert_eq!((message.seq, message.t_ns, message.kind.as_str()), (typed.seq, typed.t_ns, typed.kind.name()));
    }
    server.stop().await;
}
