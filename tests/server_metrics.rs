//! `GET /metrics` on the real server: after a handshake (its first SYN
//! dropped by a fault rule) driven over REST, and a few gRPC calls, the
//! exposition shows the live session, both connection ends ESTABLISHED,
//! segments by fate, events published and persisted, the open stream, and
//! latency histograms for REST routes and gRPC methods.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::server::{Rest, TestServer, grpc_channel};
use reqwest::StatusCode;
use serde_json::json;
use tcplab::api::grpc::pb;
use tcplab::api::grpc::pb::lab_service_client::LabServiceClient;

/// Every sample line, `name{labels}` to value.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (name, value) = l.rsplit_once(' ').unwrap_or_else(|| panic!("sample line {l:?}"));
            (name.to_string(), value.parse().unwrap_or_else(|_| panic!("value in {l:?}")))
        })
        .collect()
}

async fn scrape(rest: &Rest) -> (String, BTreeMap<String, f64>) {
    let response = rest.client.get(rest.url("/metrics")).send().await.expect("GET /metrics");
    assert_eq!(response.status(), StatusCode::OK);
    let ct = response.headers()["content-type"].to_str().expect("content-type").to_string();
    assert!(ct.starts_with("application/openmetrics-text"), "{ct}");
    let text = response.text().await.expect("body");
    assert!(text.ends_with("# EOF\n"), "an OpenMetrics exposition ends with # EOF");
    let parsed = samples(&text);
    (text, parsed)
}

fn value(samples: &BTreeMap<String, f64>, name: &str) -> f64 {
    *samples.get(name).unwrap_or_else(|| panic!("no sample {name}; have {:#?}", samples.keys().collect::<Vec<_>>()))
}

/// A histogram's buckets for one label set (given without `le`), in order
/// of their bounds: cumulative, ending at `+Inf` = `_count`.
fn check_histogram(samples: &BTreeMap<String, f64>, name: &str, labels: &str, count: f64) {
    let mut buckets: Vec<(f64, f64)> = samples
        .iter()
        .filter_map(|(k, v)| {
            let rest = k.strip_prefix(&format!("{name}_bucket{{le=\""))?;
            let (le, tail) = rest.split_once("\",")?;
            if tail != format!("{labels}}}") {
                return None;
            }
            let bound = if le == "+Inf" { f64::INFINITY } else { le.parse().ok()? };
            Some((bound, *v))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    assert!(buckets.len() >= 10, "{name}{{{labels}}}: buckets {buckets:?}");
    assert!(buckets.windows(2).all(|w| w[0].1 <= w[1].1), "cumulative: {buckets:?}");
    assert_eq!(buckets.last().map(|b| (b.0, b.1)), Some((f64::INFINITY, count)), "{name}{{{labels}}}");
    assert_eq!(value(samples, &format!("{name}_count{{{labels}}}")), count);
    assert!(value(samples, &format!("{name}_sum{{{labels}}}")) > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_show_sessions_connections_segments_events_streams_and_latencies() {
    let server = TestServer::start().await;
    let rest = &server.rest;

    // A fresh server: nothing yet, and every state is there at 0.
    let (_, before) = scrape(rest).await;
    assert_eq!(value(&before, "tcplab_sessions_live"), 0.0);
    assert_eq!(value(&before, "tcplab_connections{state=\"ESTABLISHED\"}"), 0.0);
    assert_eq!(value(&before, "tcplab_segments_total{fate=\"sent\"}"), 0.0);

    let sid = rest.manual_session("metrics", json!({"isn": 300})).await;
    rest.two_hosts_and_listener(sid).await;
    rest.post_expect(
        &format!("/api/v1/sessions/{sid}/faults"),
        json!({"from": "A", "to": "B", "match": {"flags": ["SYN"]}, "count": 1, "action": "drop"}),
        StatusCode::CREATED,
    )
    .await;
    rest.post_expect(
        &format!("/api/v1/sessions/{sid}/connections"),
        json!({"client": "A", "server": "B", "port": 80, "client_port": 40000}),
        StatusCode::CREATED,
    )
    .await;
    rest.run_until_idle(sid).await;

    // gRPC: one call that works, one that fails, and an open stream.
    let mut lab = LabServiceClient::new(grpc_channel(&server.grpc).await);
    lab.get_session(pb::SessionRef { session_id: sid }).await.expect("GetSession");
    let missing = lab.get_session(pb::SessionRef { session_id: 999 }).await.expect_err("unknown session");
    assert_eq!(missing.code(), tonic::Code::NotFound);
    let mut watch = lab
        .watch_events(pb::WatchEventsRequest { session_id: sid, ..Default::default() })
        .await
        .expect("WatchEvents")
        .into_inner();
    assert!(watch.message().await.expect("an event").is_some(), "the stream delivers");

    // Reading the events flushes them to SQLite, so persisted = published.
    let events = rest.get_ok(&format!("/api/v1/sessions/{sid}/events?limit=10000")).await;
    let n_events = events["events"].as_array().expect("events").len() as f64;
    let sent = events["events"].as_array().expect("events").iter().filter(|e| e["kind"] == "segment_sent").count();
    assert_eq!(sent, 4, "SYN (dropped), SYN, SYN+ACK, ACK");

    let (text, m) = scrape(rest).await;
    assert_eq!(value(&m, "tcplab_sessions_live"), 1.0);
    assert_eq!(value(&m, "tcplab_connections{state=\"ESTABLISHED\"}"), 2.0, "client and server end");
    assert_eq!(value(&m, "tcplab_connections{state=\"SYN_SENT\"}"), 0.0);
    assert_eq!(value(&m, "tcplab_segments_total{fate=\"sent\"}"), 4.0);
    assert_eq!(value(&m, "tcplab_segments_total{fate=\"delivered\"}"), 3.0);
    assert_eq!(value(&m, "tcplab_segments_total{fate=\"dropped\"}"), 1.0, "the fault rule's drop");
    assert_eq!(value(&m, "tcplab_segments_total{fate=\"lost\"}"), 0.0);
    assert_eq!(value(&m, "tcplab_events_published_total"), n_events);
    assert_eq!(value(&m, "tcplab_events_persisted_total"), n_events);
    assert_eq!(value(&m, "tcplab_stream_subscribers"), 1.0, "the WatchEvents stream");

    let http = "tcplab_http_request_duration_seconds";
    check_histogram(&m, http, "method=\"POST\",route=\"/api/v1/sessions/{sid}/hosts\",status=\"201\"", 2.0);
    check_histogram(&m, http, "method=\"POST\",route=\"/api/v1/sessions/{sid}/clock\",status=\"200\"", 1.0);
    check_histogram(&m, http, "method=\"GET\",route=\"/metrics\",status=\"200\"", 1.0);
    let grpc = "tcplab_grpc_request_duration_seconds";
    check_histogram(&m, grpc, "method=\"/tcplab.v1.LabService/GetSession\",code=\"OK\"", 1.0);
    check_histogram(&m, grpc, "method=\"/tcplab.v1.LabService/GetSession\",code=\"NOT_FOUND\"", 1.0);
    check_histogram(&m, grpc, "method=\"/tcplab.v1.LabService/WatchEvents\",code=\"OK\"", 1.0);
    assert!(text.contains("# TYPE tcplab_http_request_duration_seconds histogram"), "{text}");

    // A 404 on a made-up path is labelled by the fallback, not by the path.
    // (Letters, not digits: a latency sum such as 0.0012345 must not match.)
    let (status, _) = rest.get("/no/such/thing/qzxwv").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (text, _) = scrape(rest).await;
    assert!(!text.contains("qzxwv"), "raw paths never become labels");

    // The stream closes, the session ends: the gauges follow.
    drop(watch);
    let (status, _) = rest.delete(&format!("/api/v1/sessions/{sid}")).await;
    assert_eq!(status, StatusCode::OK);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, m) = scrape(rest).await;
        let done = value(&m, "tcplab_stream_subscribers") == 0.0 && value(&m, "tcplab_sessions_live") == 0.0;
        if done {
            assert_eq!(value(&m, "tcplab_connections{state=\"ESTABLISHED\"}"), 0.0);
            assert_eq!(value(&m, "tcplab_segments_total{fate=\"sent\"}"), 4.0, "counters keep their totals");
            break;
        }
        assert!(Instant::now() < deadline, "gauges did not drop to 0: {m:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.stop().await;
}
