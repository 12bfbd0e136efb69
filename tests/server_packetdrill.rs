//! packetdrill through the API: a script from `tests/packetdrill/` runs inside
//! a session over REST (and gRPC), and its segments and events are then the
//! session's, in `GET .../segments` and `GET .../events`, like any other.

mod common;

use common::server::{TestServer, assert_error, grpc_channel};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tcplab::api::grpc::pb;
use tcplab::api::grpc::pb::lab_service_client::LabServiceClient;

const SEED: &str = include_str!("packetdrill/seed-handshake-numbers.pkt");

/// `(from, flags, seq, ack, len)` of a segment.
fn seg(s: &Value) -> (String, String, u64, u64, u64) {
    let flags: Vec<&str> = s["flags"].as_array().expect("flags").iter().map(|f| f.as_str().unwrap()).collect();
    (
        s["from"].as_str().expect("from").to_string(),
        flags.join(","),
        s["seq"].as_u64().expect("seq"),
        s["ack"].as_u64().expect("ack"),
        s["len"].as_u64().expect("len"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_runs_in_the_session_and_leaves_its_segments_and_events_there() {
    let server = TestServer::start().await;
    let rest = &server.rest;
    let sid = rest.manual_session("pd", json!({})).await;
    // Some virtual time has passed already: the script's 0 is the session's now.
    rest.post_ok(&format!("/api/v1/sessions/{sid}/clock"), json!({"action": "advance", "ms": 5})).await;
    let result = rest
        .post_ok(
            &format!("/api/v1/sessions/{sid}/packetdrill"),
            json!({"script": SEED, "profile": {"name": "rfc9293"}}),
        )
        .await;
    assert_eq!(result["verdict"], "PASS", "{result:#}");
    assert_eq!(result["mismatch"], Value::Null);
    assert_eq!(result["session_id"], sid);
    assert_eq!(result["now_ns"], 5_000_000u64 + 50_000_000);
    assert!(result["ladder"].as_str().is_some_and(|l| l.contains("SYN")), "{result:#}");

    let segments = rest.get_ok(&format!("/api/v1/sessions/{sid}/segments")).await;
    let segs: Vec<_> = segments["segments"].as_array().expect("segments").iter().map(seg).collect();
    let isn = 1_000_000u64;
    let s =
        |from: &str, flags: &str, seq: u64, ack: u64, len: u64| (from.to_string(), flags.to_string(), seq, ack, len);
    assert_eq!(
        segs,
        [
            s("script", "SYN", 300, 0, 0),
            s("tcplab", "ACK,SYN", isn, 301, 0),
            s("script", "ACK", 301, isn + 1, 0),
            s("script", "ACK,PSH", 301, isn + 1, 100),
            s("tcplab", "ACK", isn + 1, 401, 0),
            s("tcplab", "ACK,PSH", isn + 1, 401, 200),
            s("script", "ACK", 401, isn + 201, 0),
        ]
    );
    assert!(segments["segments"].as_array().unwrap().iter().all(|s| s["fate"] == "delivered"));

    let events = rest.all_events(sid).await;
    let states: Vec<(String, String)> = events
        .iter()
        .filter(|e| e["kind"] == "state_changed" && e["host"] == "tcplab")
        .map(|e| (e["from"].as_str().unwrap().to_string(), e["to"].as_str().unwrap().to_string()))
        .collect();
    let st = |a: &str, b: &str| (a.to_string(), b.to_string());
    assert_eq!(states, [st("CLOSED", "LISTEN"), st("LISTEN", "SYN_RECEIVED"), st("SYN_RECEIVED", "ESTABLISHED")]);
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=result["events"].as_u64().unwrap()).collect::<Vec<_>>(), "stored with no gap");
    let sent = events.iter().filter(|e| e["kind"] == "segment_sent").count();
    assert_eq!(sent, 7);
    let hosts = rest.get_ok(&format!("/api/v1/sessions/{sid}/hosts")).await;
    assert_eq!(
        hosts["hosts"],
        json!([{"name": "tcplab", "ip": "192.168.0.1", "kind": "tcp"}, {"name": "script", "ip": "192.0.2.1", "kind": "raw"}])
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mismatch_names_its_line_and_bad_requests_are_refused() {
    let server = TestServer::start().await;
    let rest = &server.rest;
    let sid = rest.manual_session("pd-fail", json!({})).await;
    // Expect the wrong ack in the SYN-ACK.
    let wrong = SEED.replace("> S. 0:0(0) ack 301", "> S. 0:0(0) ack 302");
    let line = wrong.lines().position(|l| l.contains("ack 302")).expect("the line") as u64 + 1;
    let result = rest
        .post_ok(
            &format!("/api/v1/sessions/{sid}/packetdrill"),
            json!({"script": wrong, "profile": {"name": "rfc9293"}}),
        )
        .await;
    assert_eq!(result["verdict"], "FAIL", "{result:#}");
    let m = &result["mismatch"];
    assert_eq!(m["line"], line, "{m}");
    assert!(m["expected"].as_str().is_some_and(|e| e.contains("ack 302")), "{m}");
    assert!(m["got"].as_str().is_some_and(|g| g.contains("ack 301")), "{m}");
    assert_eq!(m["t_ns"], 10_000_000u64);
    assert!(result["ladder"].as_str().is_some_and(|l| l.contains("SYN")), "{result:#}");

    let bad = rest.post(&format!("/api/v1/sessions/{sid}/packetdrill"), json!({"script": "0 frobnicate(\n"})).await;
    assert_error(&bad, StatusCode::BAD_REQUEST, "invalid_argument", Some("script.pkt:1:"));
    let bad = rest
        .post(&format!("/api/v1/sessions/{sid}/packetdrill"), json!({"script": SEED, "profile": {"name": "bsd"}}))
        .await;
    assert_error(&bad, StatusCode::BAD_REQUEST, "invalid_argument", Some("profile"));
    let realtime = rest.post_expect("/api/v1/sessions", json!({"clock": "realtime"}), StatusCode::CREATED).await;
    let got = rest.post(&format!("/api/v1/sessions/{}/packetdrill", realtime["id"]), json!({"script": SEED})).await;
    assert_error(&got, StatusCode::CONFLICT, "failed_precondition", Some("manual"));
    assert_error(
        &rest.post("/api/v1/sessions/999/packetdrill", json!({"script": SEED})).await,
        StatusCode::NOT_FOUND,
        "not_found",
        Some("session 999"),
    );

    // gRPC runs the same script the same way.
    let mut lab = LabServiceClient::new(grpc_channel(&server.grpc).await);
    let sid2 = rest.manual_session("pd-grpc", json!({})).await;
    let req = pb::RunPacketdrillRequest {
        session_id: sid2,
        script: SEED.into(),
        profile: Some(pb::Profile { name: Some("rfc9293".into()), ..Default::default() }),
        defines: vec![],
    };
    let r = lab.run_packetdrill(req).await.expect("run").into_inner();
    assert_eq!((r.verdict(), r.mismatch.is_none()), (pb::Verdict::Pass, true), "{r:?}");
    let segments = rest.get_ok(&format!("/api/v1/sessions/{sid2}/segments")).await;
    assert_eq!(segments["segments"].as_array().map(Vec::len), Some(7));
    server.stop().await;
}
