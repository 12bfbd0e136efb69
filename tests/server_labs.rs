//! Labs on the real server: listed over REST and gRPC, run as real sessions
//! whose segments and events are stored and served like any other session's.

mod common;

use common::server::{SseReader, TestServer, assert_contiguous, assert_error, describe, grpc_channel};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tcplab::api::grpc::pb;
use tcplab::api::grpc::pb::lab_service_client::LabServiceClient;

/// `(flags, seq, ack, len)` of each segment `GET .../segments` lists.
fn wire(segments: &Value) -> Vec<(String, u64, u64, u64)> {
    segments["segments"]
        .as_array()
        .expect("segments")
        .iter()
        .map(|s| {
            let seg = s; // the segment's fields are flattened into the entry
            let flags: Vec<&str> = seg["flags"].as_array().expect("flags").iter().filter_map(Value::as_str).collect();
            let n = |k: &str| seg[k].as_u64().unwrap_or_else(|| panic!("{k} in {seg}"));
            (flags.join(","), n("seq"), n("ack"), n("len"))
        })
        .collect()
}

fn seg(flags: &str, seq: u64, ack: u64) -> (String, u64, u64, u64) {
    (flags.to_string(), seq, ack, 0)
}

#[tokio::test]
async fn labs_are_listed_over_rest_and_grpc() {
    let server = TestServer::start().await;
    let list = server.rest.get_ok("/api/v1/labs").await;
    let names: Vec<&str> = list["labs"].as_array().expect("labs").iter().filter_map(|l| l["name"].as_str()).collect();
    let builtin: Vec<&str> = tcplab::lab::builtin().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, builtin);
    assert_eq!(names.len(), 23);
    let two = server.rest.get_ok("/api/v1/labs/why-not-two-way").await;
    let variants: Vec<&str> =
        two["variants"].as_array().expect("variants").iter().filter_map(|v| v["name"].as_str()).collect();
    assert_eq!(variants, ["three_way", "two_way"]);
    assert!(two["toml"].as_str().expect("toml source").starts_with("title = "));

    let mut grpc = LabServiceClient::new(grpc_channel(&server.grpc).await);
    let labs = grpc.list_labs(pb::ListLabsRequest {}).await.expect("ListLabs").into_inner().labs;
    let grpc_names: Vec<&str> = labs.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(grpc_names, builtin);
    let lab = grpc.get_lab(pb::LabRef { name: "four-way-close".into() }).await.expect("GetLab").into_inner();
    assert_eq!(lab.title, list["labs"][3]["title"].as_str().expect("title"));
    let missing = grpc.get_lab(pb::LabRef { name: "no-such-lab".into() }).await.unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);
    assert_eq!(missing.message(), "lab no-such-lab not found");
    server.stop().await;
}

#[tokio::test]
async fn the_three_way_handshake_runs_as_a_stored_session() {
    let server = TestServer::start().await;
    let rest = &server.rest;
    let run = rest.post_expect("/api/v1/labs/three-way-handshake/runs", json!({}), StatusCode::CREATED).await;
    assert_eq!(run["lab"], "three-way-handshake");
    assert_eq!(run["variant"], "default");
    assert_eq!(run["passed"], true, "{run}");
    let checks = run["checks"].as_array().expect("checks");
    assert!(checks.len() >= 10, "{run}");
    assert!(checks.iter().all(|c| c["passed"] == true && c["expected"].is_string() && c["t_ms"].is_number()));
    let ladder = run["ladder"].as_str().expect("ladder");
    assert!(ladder.contains("SYN") && ladder.contains("ESTABLISHED"), "{ladder}");
    let sid = run["session_id"].as_u64().expect("session_id");

    // The segments, from the stored event log: the seed's handshake numbers.
    let segments = rest.get_ok(&format!("/api/v1/sessions/{sid}/segments")).await;
    assert_eq!(wire(&segments), [seg("SYN", 300, 0), seg("ACK,SYN", 500, 301), seg("ACK", 301, 501)]);
    assert!(segments["segments"].as_array().expect("segments").iter().all(|s| s["fate"] == "delivered"));

    // The events: numbered from 1 without a gap, the same as the run counted.
    let events = rest.all_events(sid).await;
    assert_contiguous(&events, 1);
    assert_eq!(events.len() as u64, run["variants"][0]["events"].as_u64().expect("events"));
    let lines: Vec<String> = events.iter().map(describe).collect();
    for want in [
        "state_changed c- B - CLOSED>LISTEN",
        "segment_sent c1 A>B SYN 300/0 len0",
        "state_changed c1 B server LISTEN>SYN_RECEIVED",
        "segment_sent c1 B>A ACK,SYN 500/301 len0",
        "state_changed c1 A client SYN_SENT>ESTABLISHED",
        "segment_sent c1 A>B ACK 301/501 len0",
        "state_changed c1 B server SYN_RECEIVED>ESTABLISHED",
    ] {
        assert!(lines.iter().any(|l| l.ends_with(want)), "{want} not in {lines:#?}");
    }

    // A session like any other: listed, live, and its event stream replays it.
    let list = rest.get_ok("/api/v1/sessions").await;
    let session = list["sessions"].as_array().expect("sessions").iter().find(|s| s["id"] == sid).cloned();
    let session = session.unwrap_or_else(|| panic!("session {sid} not listed: {list}"));
    assert_eq!(session["name"], "lab three-way-handshake");
    assert_eq!(session["status"], "live");
    assert_eq!(session["states"]["ESTABLISHED"], 2, "{session}");
    let url = rest.url(&format!("/api/v1/sessions/{sid}/events/stream"));
    let mut stream = SseReader::open(&rest.client, &url, None).await;
    let mut seen = Vec::new();
    while seen.len() < events.len() {
        let sse = stream.next().await.expect("an event");
        if sse.event.as_deref() == Some("lagged") {
            panic!("lagged: {sse:?}");
        }
        seen.push(sse.id.expect("id").parse::<u64>().expect("numeric id"));
    }
    assert_eq!(seen, (1..=events.len() as u64).collect::<Vec<_>>());
    drop(stream);

    // It goes on like any session: its client can send after the lab.
    let sent = rest
        .post_ok(&format!("/api/v1/sessions/{sid}/connections/1/send"), json!({"side": "client", "data": "hi"}))
        .await;
    assert_eq!(sent["accepted"], 2);
    rest.run_until_idle(sid).await;
    let received = rest.get_ok(&format!("/api/v1/sessions/{sid}/connections/1/received?side=server")).await;
    assert_eq!(received["data"], "hi");
    server.stop().await;
}

#[tokio::test]
async fn why_not_two_way_runs_both_variants() {
    let server = TestServer::start().await;
    let rest = &server.rest;
    let run = rest.post_expect("/api/v1/labs/why-not-two-way/runs", json!({}), StatusCode::CREATED).await;
    assert_eq!(run["passed"], true, "{run}");
    let variants = run["variants"].as_array().expect("variants");
    assert_eq!(variants.len(), 2);
    assert_eq!(run["session_id"], variants[0]["session_id"]);

    // three_way: the stale SYN's SYN+ACK is refused by RST, no connection.
    let three = &variants[0];
    assert_eq!(three["variant"], "three_way");
    assert_eq!(three["passed"], true);
    let sid = three["session_id"].as_u64().expect("session_id");
    let segments = rest.get_ok(&format!("/api/v1/sessions/{sid}/segments")).await;
    assert_eq!(wire(&segments), [seg("SYN", 90, 0), seg("ACK,SYN", 500, 91), seg("RST", 91, 0)]);
    let session = rest.get_ok(&format!("/api/v1/sessions/{sid}")).await;
    assert_eq!(session["name"], "lab why-not-two-way (three_way)");
    assert!(session["states"].get("ESTABLISHED").is_none(), "{session}");

    // two_way: B holds an ESTABLISHED connection nobody asked for.
    let two = &variants[1];
    assert_eq!(two["variant"], "two_way");
    assert_eq!(two["passed"], true);
    let sid2 = two["session_id"].as_u64().expect("session_id");
    assert_ne!(sid, sid2);
    let segments = rest.get_ok(&format!("/api/v1/sessions/{sid2}/segments")).await;
    assert_eq!(wire(&segments), [seg("SYN", 90, 0), seg("ACK,SYN", 500, 91)]);
    let session = rest.get_ok(&format!("/api/v1/sessions/{sid2}")).await;
    assert_eq!(session["profile"]["handshake"], "two_way");
    assert_eq!(session["states"]["ESTABLISHED"], 1, "{session}");
    let conn = rest.get_ok(&format!("/api/v1/sessions/{sid2}/connections/1")).await;
    assert_eq!(conn["server"]["state"], "ESTABLISHED", "{conn}");
    assert!(conn["client"].is_null(), "{conn}");

    // One variant by name, over gRPC this time.
    let mut grpc = LabServiceClient::new(grpc_channel(&server.grpc).await);
    let req =
        pb::RunLabRequest { name: "why-not-two-way".into(), variant: Some("two_way".into()), ..Default::default() };
    let one = grpc.run_lab(req).await.expect("RunLab").into_inner();
    assert!(one.passed);
    assert_eq!(one.variants.len(), 1);
    assert_eq!(one.variant, "two_way");
    let session = rest.get_ok(&format!("/api/v1/sessions/{}", one.session_id)).await;
    assert_eq!(session["states"]["ESTABLISHED"], 1, "{session}");
    server.stop().await;
}

#[tokio::test]
async fn bad_lab_requests_are_refused_with_the_error_body() {
    let server = TestServer::start().await;
    let rest = &server.rest;
    let got = rest.post("/api/v1/labs/no-such-lab/runs", json!({})).await;
    assert_error(&got, StatusCode::NOT_FOUND, "not_found", Some("no-such-lab"));
    assert_eq!(got.1["error"]["message"], "lab no-such-lab not found");
    assert_error(&rest.get("/api/v1/labs/no-such-lab").await, StatusCode::NOT_FOUND, "not_found", Some("no-such-lab"));
    let got = rest.post("/api/v1/labs/why-not-two-way/runs", json!({"variant": "one_way"})).await;
    assert_error(&got, StatusCode::BAD_REQUEST, "invalid_argument", Some("variant: "));
    let toml = "title = \"t\"\nexplanation = \"e\"\n\n[[step]]\nopen = { name = \"c\", client = \"A\", port = 80 }\n";
    let got = rest.post("/api/v1/labs/runs", json!({ "toml": toml })).await;
    assert_error(&got, StatusCode::BAD_REQUEST, "invalid_argument", Some("toml: line 5"));
    assert!(got.1["error"]["message"].as_str().expect("message").contains("server"), "{}", got.1);
    // Nothing was created by the refused runs.
    assert_eq!(rest.get_ok("/api/v1/sessions").await["total"], 0);

    // A lab given as text runs like a built-in one.
    let text = tcplab::lab::builtin().into_iter().find(|(n, _)| *n == "sequence-numbers").expect("lab").1;
    let run = rest.post_expect("/api/v1/labs/runs", json!({ "toml": text }), StatusCode::CREATED).await;
    assert_eq!(run["passed"], true, "{run}");
    assert_eq!(run["lab"], "custom");
    server.stop().await;
}
