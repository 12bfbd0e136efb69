//! Hostile requests against the real server: each is refused or stopped at
//! its limit, the answer names the limit and how to raise it, `/healthz`
//! answers within a second while it runs, and the server is alive after.
//! Bounded: small limits where a run would otherwise take long, loopback only.

mod common;

use std::io::{Read as _, Write as _};
use std::time::{Duration, Instant};

use common::server::{Rest, ServerProcess, TestServer, assert_error, grpc_channel};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tcplab::api::grpc::pb;
use tcplab::api::grpc::pb::lab_service_client::LabServiceClient;
use tcplab::service::Limits;

/// A lab whose world is never idle: B's application stops reading, its
/// window closes, and A's persist timer (RTO clamped to 1 ms) probes every
/// millisecond, forever (the probes are answered). `{ADVANCE}` is the last
/// step's virtual time, in ms.
const ENDLESS: &str = r#"
title = "A world that is never idle"
explanation = "A persist timer every millisecond behind a zero window."
seed = 1

[profile]
isn = 300
window = 1000
rto_initial_ms = 1
rto_min_ms = 1
rto_max_ms = 1

[[link]]
a = "A"
b = "B"
latency_ms = 0.1

[[step]]
listen = { host = "B", port = 80, isn = 500 }
[[step]]
open = { name = "c", client = "A", server = "B", port = 80, client_port = 40000 }
[[step]]
run_until_idle = {}
[[step]]
auto_read = { conn = "c", side = "server", on = false }
[[step]]
send = { conn = "c", side = "client", len = 3000, fill = "z" }
[[step]]
advance = {ADVANCE}
"#;

fn endless(advance_ms: u64) -> String {
    ENDLESS.replace("{ADVANCE}", &advance_ms.to_string())
}

/// The longest `/healthz` took while `work` ran (polled every 50 ms), and `work`'s result.
async fn healthz_while<T>(rest: &Rest, work: impl std::future::Future<Output = T>) -> (Duration, T) {
    let worst = std::sync::Mutex::new(Duration::ZERO);
    let probe = async {
        loop {
            let started = Instant::now();
            let (status, body) = rest.get("/healthz").await;
            assert_eq!(status, StatusCode::OK, "{body}");
            let took = started.elapsed();
            {
                let mut w = worst.lock().expect("lock");
                *w = (*w).max(took);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let out = tokio::select! {
        out = work => out,
        () = probe => unreachable!("the probe never ends"),
    };
    // One more probe after the work: the server is still alive.
    let started = Instant::now();
    assert_eq!(rest.get("/healthz").await.0, StatusCode::OK);
    let worst = worst.lock().expect("lock").max(started.elapsed());
    (worst, out)
}

/// A live session whose world runs the endless lab, settled after its first 20 ms.
async fn endless_session(rest: &Rest) -> u64 {
    let run = rest.post_expect("/api/v1/labs/runs", json!({"toml": endless(20)}), StatusCode::CREATED).await;
    assert_eq!(run["passed"], true, "{run:#}");
    run["session_id"].as_u64().expect("session id")
}

fn message(body: &Value) -> &str {
    body["error"]["message"].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_packetdrill_expression_nested_2000_deep_is_refused_at_max_nesting_depth() {
    let server = TestServer::start().await;
    let rest = &server.rest;
    let sid = rest.manual_session("deep", json!({})).await;
    for open in ["[", "{a="] {
        let close = if open == "[" { "]" } else { "}" };
        let arg = format!("{}1{}", open.repeat(2000), close.repeat(2000));
        let script = format!(
            "0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n+0 setsockopt(3, SOL_SOCKET, SO_LINGER, {arg}, 8) = 0\n"
        );
        let got = rest.post(&format!("/api/v1/sessions/{sid}/packetdrill"), json!({"script": script})).await;
        assert_error(&got, StatusCode::UNPROCESSABLE_ENTITY, "resource_exhausted", Some("max_nesting_depth"));
        assert!(message(&got.1).contains("line 2"), "{}", got.1);
        assert!(message(&got.1).contains("--max-nesting-depth"), "how to raise it: {}", got.1);
    }
    // Within the limit it parses and runs.
    let script = "0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n+0 setsockopt(3, SOL_SOCKET, SO_LINGER, {l_onoff=1, l_linger=0}, 8) = 0\n";
    let ok = rest.post_ok(&format!("/api/v1/sessions/{sid}/packetdrill"), json!({"script": script})).await;
    assert_eq!(ok["verdict"], "PASS", "{ok:#}");
    assert_eq!(rest.get("/healthz").await.0, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn script_lengths_that_would_allocate_terabytes_are_refused_before_anything_is_allocated() {
    let server = TestServer::start().await;
    let rest = &server.rest;
    let sid = rest.manual_session("alloc", json!({})).await;
    let path = format!("/api/v1/sessions/{sid}/packetdrill");
    let write = "0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n+0 write(3, ..., 100000000000000) = 100000000000000\n";
    let got = rest.post(&path, json!({"script": write})).await;
    assert_error(&got, StatusCode::UNPROCESSABLE_ENTITY, "resource_exhausted", Some("max_write_bytes"));
    assert!(message(&got.1).contains("line 2"), "{}", got.1);
    // No IPv4 packet carries 4 GiB: refused where it is written.
    let packet = "0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n+0 < P. 1:1(4294967295) ack 1 win 65535\n";
    let got = rest.post(&path, json!({"script": packet})).await;
    assert_error(&got, StatusCode::BAD_REQUEST, "invalid_argument", Some("65495"));
    assert!(message(&got.1).starts_with("script: "), "{}", got.1);
    // A script over max_script_lines, and a REST send over max_write_bytes.
    let lines = "+0 `true`\n".repeat(100_001);
    let got = rest.post(&path, json!({"script": lines})).await;
    assert_error(&got, StatusCode::UNPROCESSABLE_ENTITY, "resource_exhausted", Some("max_script_lines"));
    assert_eq!(rest.get("/healthz").await.0, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_advance_in_a_world_that_is_never_idle_stops_at_run_max_events() {
    let limits = Limits { run_max_events: 200_000, ..Limits::default() };
    let server = TestServer::with_limits(limits).await;
    let rest = &server.rest;
    let sid = endless_session(rest).await;
    let clock = format!("/api/v1/sessions/{sid}/clock");
    let (worst, reply) = healthz_while(rest, rest.post(&clock, json!({"action": "advance", "ms": 86_400_000.0}))).await;
    let (status, body) = reply;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["stopped_by"], "limit", "{body}");
    assert_eq!(body["limit"]["name"], "run_max_events", "{body}");
    assert_eq!(body["limit"]["max"], 200_000, "{body}");
    assert!(body["limit"]["hint"].as_str().is_some_and(|h| h.contains("--run-max-events")), "{body}");
    assert_eq!(body["steps"], 200_000, "{body}");
    assert!(body["now_ns"].as_u64().is_some_and(|t| t < 86_400_000_000_000), "stopped part-way: {body}");
    println!("an endless advance to run_max_events = 200000: worst /healthz {worst:?}");
    assert!(worst < Duration::from_secs(1), "/healthz took {worst:?} during the run");
    // A year of virtual time is over run_max_ms: refused before it starts.
    let got = rest.post(&clock, json!({"action": "advance", "ms": 365.0 * 86_400_000.0})).await;
    assert_error(&got, StatusCode::UNPROCESSABLE_ENTITY, "resource_exhausted", Some("run_max_ms"));
    // run_until_idle names the limit the same way; its own cap is not a limit.
    let own = rest.post_ok(&clock, json!({"action": "run_until_idle", "max_events": 1000})).await;
    assert_eq!((own["stopped_by"].as_str(), &own["limit"]), (Some("events"), &Value::Null), "{own}");
    let capped = rest.post_ok(&clock, json!({"action": "run_until_idle"})).await;
    assert_eq!(capped["stopped_by"], "limit", "{capped}");
    assert_eq!(capped["limit"]["name"], "run_max_events", "{capped}");
    // The session is sound: its events are numbered without a gap.
    let info = rest.get_ok(&format!("/api/v1/sessions/{sid}")).await;
    assert!(info["events"].as_u64().is_some_and(|n| n > 400_000), "{info}");

    // gRPC says the same.
    let mut lab = LabServiceClient::new(grpc_channel(&server.grpc).await);
    let reply = lab
        .clock(pb::ClockRequest {
            session_id: sid,
            action: pb::ClockAction::Advance.into(),
            ms: Some(86_400_000.0),
            ..Default::default()
        })
        .await
        .expect("clock")
        .into_inner();
    assert_eq!(reply.stopped_by(), pb::StopReason::Limit);
    assert_eq!(reply.limit.expect("limit").name, "run_max_events");
    let status = lab
        .clock(pb::ClockRequest {
            session_id: sid,
            action: pb::ClockAction::Advance.into(),
            ms: Some(3e10),
            ..Default::default()
        })
        .await
        .expect_err("over run_max_ms");
    assert_eq!(status.code(), tonic::Code::ResourceExhausted);
    assert!(status.message().contains("run_max_ms"), "{}", status.message());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lab_step_advancing_a_day_of_an_endless_world_stops_at_the_limit_with_what_ran() {
    let limits = Limits { run_max_events: 20_000, ..Limits::default() };
    let server = TestServer::with_limits(limits).await;
    let rest = &server.rest;
    let work = rest.post("/api/v1/labs/runs", json!({"toml": endless(86_400_000)}));
    let (worst, (status, run)) = healthz_while(rest, work).await;
    assert_eq!(status, StatusCode::CREATED, "{run}");
    assert_eq!(run["passed"], false, "{run}");
    assert_eq!(run["stopped_by"], "limit", "{run}");
    assert_eq!(run["limit"]["name"], "run_max_events", "{run}");
    let error = run["error"].as_str().expect("error");
    assert!(error.contains("(advance)") && error.contains("run_max_events"), "{error}");
    assert!(worst < Duration::from_secs(1), "/healthz took {worst:?} during the run");
    // What ran is the session's; the ladder draws its beginning.
    let sid = run["session_id"].as_u64().expect("sid");
    let info = rest.get_ok(&format!("/api/v1/sessions/{sid}")).await;
    assert!(info["events"].as_u64().is_some_and(|n| n > 20_000), "{info}");
    assert!(run["ladder"].as_str().is_some_and(|l| l.contains("more events not drawn")), "a bounded ladder");

    // The variants of one run share its budget: the second finds none left.
    let two = format!("{}\n[[variant]]\nname = \"one\"\n[[variant]]\nname = \"two\"\n", endless(86_400_000));
    let run = rest.post_expect("/api/v1/labs/runs", json!({"toml": two}), StatusCode::CREATED).await;
    let variants = run["variants"].as_array().expect("variants");
    assert_eq!(variants.len(), 2, "{run}");
    for v in variants {
        assert_eq!(v["stopped_by"], "limit", "{v}");
        assert_eq!(v["limit"]["max"], 20_000, "the configured limit: {v}");
    }
    let events = |v: &Value| v["events"].as_u64().unwrap_or(0);
    assert!(events(&variants[1]) < events(&variants[0]) / 10, "the second ran (almost) nothing: {run}");

    // The events a run keeps to check and draw are bounded too.
    let limits = Limits { max_report_events: 5_000, ..Limits::default() };
    let server = TestServer::with_limits(limits).await;
    let run =
        server.rest.post_expect("/api/v1/labs/runs", json!({"toml": endless(86_400_000)}), StatusCode::CREATED).await;
    assert_eq!(run["stopped_by"], "limit", "{run}");
    assert_eq!(run["limit"]["name"], "max_report_events", "{run}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lab_files_over_their_limits_are_refused_naming_the_limit() {
    let limits = Limits { max_script_bytes: 8 << 20, ..Limits::default() };
    let server = TestServer::with_limits(limits).await;
    let rest = &server.rest;
    let head = "title = \"many\"\nexplanation = \"x\"\n";
    let steps = "[[step]]\nnote = \"x\"\n".repeat(100_001);
    let started = Instant::now();
    let got = rest.post("/api/v1/labs/runs", json!({"toml": format!("{head}{steps}")})).await;
    assert_error(&got, StatusCode::UNPROCESSABLE_ENTITY, "resource_exhausted", Some("max_lab_steps"));
    assert!(message(&got.1).contains("line 200003"), "the step that passed it: {}", got.1);
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    // Shared steps count once per variant.
    let shared = "[[step]]\nnote = \"x\"\n".repeat(60_000);
    let variants = "[[variant]]\nname = \"a\"\n[[variant]]\nname = \"b\"\n";
    let got = rest.post("/api/v1/labs/runs", json!({"toml": format!("{head}{shared}{variants}")})).await;
    assert_error(&got, StatusCode::UNPROCESSABLE_ENTITY, "resource_exhausted", Some("max_lab_steps"));
    // Steps asking for more than a call's budget are refused before the run.
    for (step, limit) in [
        ("advance = 1000000000", "run_max_ms"),
        ("run_until_idle = { max_steps = 100000000000 }", "run_max_events"),
        ("step = 100000000000", "run_max_events"),
    ] {
        let got = rest.post("/api/v1/labs/runs", json!({"toml": format!("{head}[[step]]\n{step}\n")})).await;
        assert_error(&got, StatusCode::UNPROCESSABLE_ENTITY, "resource_exhausted", Some(limit));
        assert!(message(&got.1).contains("line 4"), "{}", got.1);
    }
    // TOML nested beyond what the parser allows is a 400, not a crash.
    let deep = format!("{head}x = {}1{}\n", "[".repeat(5000), "]".repeat(5000));
    let got = rest.post("/api/v1/labs/runs", json!({"toml": deep})).await;
    assert_eq!(got.0, StatusCode::BAD_REQUEST, "{}", got.1);
    assert_eq!(rest.get("/healthz").await.0, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arrays_where_objects_belong_are_refused_naming_the_field() {
    let server = TestServer::start().await;
    let rest = &server.rest;
    let sid = rest.manual_session("shapes", json!({})).await;
    rest.two_hosts_and_listener(sid).await;
    let got = rest.post(&format!("/api/v1/sessions/{sid}/faults"), json!({"action": "drop", "match": []})).await;
    assert_error(&got, StatusCode::BAD_REQUEST, "invalid_argument", Some("match"));
    assert!(message(&got.1).starts_with("match: "), "{}", got.1);
    let faults = rest.get_ok(&format!("/api/v1/sessions/{sid}/faults")).await;
    assert_eq!(faults["faults"], json!([]), "no rule was installed");
    let inject = json!({"from": ["A", 40000], "to": "B", "dst_port": 80, "seq": 1, "flags": ["SYN"]});
    let got = rest.post(&format!("/api/v1/sessions/{sid}/inject"), inject).await;
    assert_error(&got, StatusCode::BAD_REQUEST, "invalid_argument", Some("from"));
    assert!(message(&got.1).starts_with("from: "), "{}", got.1);
    // The labs endpoint names the field like the others.
    let got = rest.post("/api/v1/labs/three-way-handshake/runs", json!({"variant": 7})).await;
    assert_error(&got, StatusCode::BAD_REQUEST, "invalid_argument", Some("variant"));
    assert!(message(&got.1).starts_with("variant: "), "{}", got.1);
    let got = rest.post("/api/v1/labs/three-way-handshake/runs", json!({"bogus": true})).await;
    assert_error(&got, StatusCode::BAD_REQUEST, "invalid_argument", Some("bogus"));
}

/// Sends raw bytes to the REST port and reads the whole answer (the server closes).
fn raw_exchange(addr: &str, request: &[u8]) -> (u16, String, Value) {
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    // The server may answer and close before it has read everything.
    let _ = stream.write_all(request);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("a whole answer: {text:?}"));
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("status");
    (status, head.to_string(), serde_json::from_str(body).unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_made_below_the_router_carry_the_json_error_body() {
    let server = TestServer::start().await;
    let addr = server.http.trim_start_matches("http://").to_string();
    let long_uri = format!("GET /{} HTTP/1.1\r\nhost: x\r\n\r\n", "a".repeat(70_000));
    let many_headers = format!("GET /healthz HTTP/1.1\r\nhost: x\r\n{}\r\n", "x-h: 1\r\n".repeat(200));
    let cases: [(&[u8], u16, &str); 3] = [
        (b"\x16\x03\x01 garbage garbage\r\n\r\n", 400, "invalid_argument"),
        (long_uri.as_bytes(), 414, "uri_too_long"),
        (many_headers.as_bytes(), 431, "header_fields_too_large"),
    ];
    for (request, status, code) in cases {
        let addr = addr.clone();
        let request = request.to_vec();
        let (got, head, body) = tokio::task::spawn_blocking(move || raw_exchange(&addr, &request)).await.expect("io");
        assert_eq!(got, status, "{head}\n{body}");
        assert!(head.to_ascii_lowercase().contains("content-type: application/json"), "{head}");
        assert_eq!(body["error"]["code"], code, "{body}");
        assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    }
    // 405 and 413 come from the router and have it too.
    let got = server.rest.delete("/healthz").await;
    assert_error(&got, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", None);
    assert_eq!(server.rest.get("/healthz").await.0, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_protobuf_is_invalid_argument() {
    use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

    /// Sends its bytes as they are; reads whatever comes back.
    #[derive(Default)]
    struct Raw;
    struct RawEncoder;
    struct RawDecoder;
    impl Encoder for RawEncoder {
        type Item = Vec<u8>;
        type Error = tonic::Status;
        fn encode(&mut self, item: Vec<u8>, buf: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
            bytes::BufMut::put_slice(buf, &item);
            Ok(())
        }
    }
    impl Decoder for RawDecoder {
        type Item = Vec<u8>;
        type Error = tonic::Status;
        fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, tonic::Status> {
            let n = bytes::Buf::remaining(buf);
            Ok(Some(bytes::Buf::copy_to_bytes(buf, n).to_vec()))
        }
    }
    impl Codec for Raw {
        type Encode = Vec<u8>;
        type Decode = Vec<u8>;
        type Encoder = RawEncoder;
        type Decoder = RawDecoder;
        fn encoder(&mut self) -> RawEncoder {
            RawEncoder
        }
        fn decoder(&mut self) -> RawDecoder {
            RawDecoder
        }
    }

    let server = TestServer::start().await;
    let mut grpc = tonic::client::Grpc::new(grpc_channel(&server.grpc).await);
    // Field 1 with wire type 7 (there is none), then a length running past the end.
    for bytes in [vec![0x0f, 0x01], vec![0x0a, 0xff, 0xff, 0x03]] {
        grpc.ready().await.expect("ready");
        let path = tonic::codegen::http::uri::PathAndQuery::from_static("/tcplab.v1.LabService/GetSession");
        let status = grpc.unary(tonic::Request::new(bytes), path, Raw).await.expect_err("refused");
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    }
}

#[test]
fn two_concurrent_endless_advances_do_not_delay_healthz_and_the_server_lives_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    // 150000 events each: enough that both runs end by the limit, few enough
    // that the store writer (both sessions' 300000 rows) keeps within the
    // client's WAIT on a busy 2-core machine.
    let server = ServerProcess::start_with(&dir.path().join("lab.db"), &["--run-max-events", "150000"]);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let rest = &server.rest;
        let a = endless_session(rest).await;
        let b = endless_session(rest).await;
        let advance = |sid: u64| {
            let rest = rest.clone();
            async move {
                rest.post(&format!("/api/v1/sessions/{sid}/clock"), json!({"action": "advance", "ms": 86_400_000.0}))
                    .await
            }
        };
        let (worst, (ra, rb)) = healthz_while(rest, async { tokio::join!(advance(a), advance(b)) }).await;
        for (status, body) in [ra, rb] {
            assert_eq!(status, StatusCode::OK, "{body}");
            assert_eq!(body["stopped_by"], "limit", "{body}");
        }
        println!("two endless advances at once: worst /healthz {worst:?}");
        assert!(worst < Duration::from_secs(1), "/healthz took {worst:?} during two endless advances");
        // Another session's requests were not held up either.
        let other = rest.manual_session("other", json!({})).await;
        rest.get_ok(&format!("/api/v1/sessions/{other}")).await;
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segment_lists_and_captures_hold_at_most_max_report_events() {
    let limits = Limits { max_report_events: 200, ..Limits::default() };
    let server = TestServer::with_limits(limits).await;
    let rest = &server.rest;
    let sid = endless_session(rest).await;
    rest.post_ok(&format!("/api/v1/sessions/{sid}/clock"), json!({"action": "advance", "ms": 500.0})).await;
    let list = rest.get_ok(&format!("/api/v1/sessions/{sid}/segments")).await;
    assert_eq!(list["truncated"], true);
    assert_eq!(list["segments"].as_array().map(Vec::len), Some(200));
    let resp = rest.client.get(rest.url(&format!("/api/v1/sessions/{sid}/pcap"))).send().await.expect("pcap");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["x-tcplab-truncated"], "true");
    let bytes = resp.bytes().await.expect("body");
    // The pcap global header, then 200 records (a 16-octet header and an Ethernet/IPv4/TCP frame each).
    let records = 24 + 200 * (16 + 54);
    assert!(bytes.len() >= records && bytes.len() < records + 200 * 1100, "{} octets", bytes.len());
    // A small session is whole.
    let small = rest.manual_session("small", json!({})).await;
    rest.two_hosts_and_listener(small).await;
    let list = rest.get_ok(&format!("/api/v1/sessions/{small}/segments")).await;
    assert_eq!(list["truncated"], false, "{list}");
}
