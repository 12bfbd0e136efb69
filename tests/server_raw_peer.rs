//! Issue 9's API additions over real HTTP: a raw host that records and never
//! answers, TCP options on `inject` in the shape segments report them (and the
//! peer's MSS honoured), each end's `error`, and a listener's `backlog` with
//! `accept`.

mod common;

use common::server::{TestServer, assert_error, grpc_channel};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tcplab::api::grpc::pb;
use tcplab::api::grpc::pb::lab_service_client::LabServiceClient;

async fn segments(rest: &common::server::Rest, sid: u64) -> Vec<Value> {
    let list = rest.get_ok(&format!("/api/v1/sessions/{sid}/segments")).await;
    list["segments"].as_array().expect("segments").clone()
}

async fn add_raw(rest: &common::server::Rest, sid: u64, name: &str, ip: &str) {
    let host = rest
        .post_expect(
            &format!("/api/v1/sessions/{sid}/hosts"),
            json!({"name": name, "ip": ip, "kind": "raw"}),
            StatusCode::CREATED,
        )
        .await;
    assert_eq!(host, json!({"name": name, "ip": ip, "kind": "raw"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raw_host_records_every_segment_and_never_answers() {
    let server = TestServer::start().await;
    let rest = &server.rest;
    let sid = rest.manual_session("raw", json!({"max_retries": 2})).await;
    rest.two_hosts_and_listener(sid).await;
    add_raw(rest, sid, "C", "10.0.0.3").await;
    let hosts = rest.get_ok(&format!("/api/v1/sessions/{sid}/hosts")).await;
    let kinds: Vec<&str> =
        hosts["hosts"].as_array().expect("hosts").iter().map(|h| h["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["tcp", "tcp", "raw"]);
    let bad = rest
        .post(&format!("/api/v1/sessions/{sid}/hosts"), json!({"name": "D", "ip": "10.0.0.4", "kind": "udp"}))
        .await;
    assert_error(&bad, StatusCode::BAD_REQUEST, "invalid_argument", Some("kind"));

    // A connects to the raw host: every SYN reaches C, none is answered, and
    // the client gives up with ETIMEDOUT.
    let conn = rest
        .post_expect(
            &format!("/api/v1/sessions/{sid}/connections"),
            json!({"client": "A", "server": "C", "port": 80, "client_port": 40000, "isn": 300}),
            StatusCode::CREATED,
        )
        .await;
    let cid = conn["id"].as_u64().expect("id");
    assert_eq!(conn["client"]["error"], Value::Null);
    rest.run_until_idle(sid).await;
    let segs = segments(rest, sid).await;
    assert!(segs.len() >= 2, "the SYN and its retransmissions: {segs:?}");
    for s in &segs {
        assert_eq!((s["from"].as_str(), s["to"].as_str()), (Some("A"), Some("C")), "C never sends: {s}");
        assert_eq!(s["flags"], json!(["SYN"]));
        assert_eq!(s["fate"], "delivered", "C records it: {s}");
    }
    let conn = rest.get_ok(&format!("/api/v1/sessions/{sid}/connections/{cid}")).await;
    assert_eq!(conn["client"]["state"], "CLOSED");
    assert_eq!(conn["client"]["error"], "ETIMEDOUT");
    // A connection needs a TCP host at both ends' client side.
    let from_raw = rest
        .post(&format!("/api/v1/sessions/{sid}/connections"), json!({"client": "C", "server": "B", "port": 80}))
        .await;
    assert!(from_raw.0.is_client_error(), "{from_raw:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connect_reports_econnrefused_and_a_reset_econnreset() {
    let server = TestServer::start().await;
    let rest = &server.rest;
    let sid = rest.manual_session("errors", json!({})).await;
    rest.two_hosts_and_listener(sid).await;
    let refused = rest
        .post_expect(
            &format!("/api/v1/sessions/{sid}/connections"),
            json!({"client": "A", "server": "B", "port": 81}),
            StatusCode::CREATED,
        )
        .await;
    let ok = rest
        .post_expect(
            &format!("/api/v1/sessions/{sid}/connections"),
            json!({"client": "A", "server": "B", "port": 80}),
            StatusCode::CREATED,
        )
        .await;
    rest.run_until_idle(sid).await;
    let refused = rest.get_ok(&format!("/api/v1/sessions/{sid}/connections/{}", refused["id"])).await;
    assert_eq!(
        (refused["client"]["state"].as_str(), refused["client"]["error"].as_str()),
        (Some("CLOSED"), Some("ECONNREFUSED"))
    );
    let oid = ok["id"].as_u64().expect("id");
    let ok = rest.get_ok(&format!("/api/v1/sessions/{sid}/connections/{oid}")).await;
    assert_eq!(ok["client"]["error"], Value::Null);
    assert_eq!(ok["server"]["error"], Value::Null);
    rest.post_ok(&format!("/api/v1/sessions/{sid}/connections/{oid}/abort"), json!({"side": "client"})).await;
    rest.run_until_idle(sid).await;
    let ok = rest.get_ok(&format!("/api/v1/sessions/{sid}/connections/{oid}")).await;
    assert_eq!((ok["server"]["state"].as_str(), ok["server"]["error"].as_str()), (Some("CLOSED"), Some("ECONNRESET")));
    assert_eq!(ok["client"]["error"], Value::Null, "the aborting end saw no error");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_options_come_back_in_the_same_shape_and_the_peers_mss_is_honoured() {
    let server = TestServer::start().await;
    let rest = &server.rest;
    let sid = rest.manual_session("options", json!({})).await;
    rest.two_hosts_and_listener(sid).await;
    add_raw(rest, sid, "C", "10.0.0.3").await;
    let options = json!([
        {"kind": "mss", "value": 536},
        {"kind": "wscale", "value": 6},
        {"kind": "sack_permitted"},
        {"kind": "timestamps", "val": 1, "ecr": 0},
        {"kind": "raw", "type": 30, "data_base64": "AQI="}
    ]);
    rest.post_expect(
        &format!("/api/v1/sessions/{sid}/inject"),
        json!({"from": {"host": "C", "port": 5555}, "to": {"host": "B", "port": 80}, "flags": ["SYN"], "seq": 1000, "options": options}),
        StatusCode::CREATED,
    )
    .await;
    rest.post_ok(&format!("/api/v1/sessions/{sid}/clock"), json!({"action": "advance", "ms": 25})).await;
    let segs = segments(rest, sid).await;
    assert_eq!(segs[0]["options"], options, "reported exactly as injected");
    let events = rest.all_events(sid).await;
    let sent = events.iter().find(|e| e["kind"] == "segment_sent").expect("segment_sent");
    assert_eq!(sent["segment"]["options"], options, "stored events use the same shape");
    let synack = &segs[1];
    assert_eq!(synack["flags"], json!(["ACK", "SYN"]));
    let isn = synack["seq"].as_u64().expect("seq");
    rest.post_expect(
        &format!("/api/v1/sessions/{sid}/inject"),
        json!({"from": {"host": "C", "port": 5555}, "to": {"host": "B", "port": 80}, "flags": ["ACK"], "seq": 1001, "ack": isn + 1}),
        StatusCode::CREATED,
    )
    .await;
    rest.run_until_idle(sid).await;
    let conns = rest.get_ok(&format!("/api/v1/sessions/{sid}/connections")).await;
    let conn = &conns["connections"][0];
    assert_eq!(conn["server"]["state"], "ESTABLISHED");
    assert_eq!(conn["server"]["snd_mss"], 536, "the peer's MSS caps ours");
    let cid = conn["id"].as_u64().expect("id");
    let sent = rest
        .post_ok(
            &format!("/api/v1/sessions/{sid}/connections/{cid}/send"),
            json!({"side": "server", "data": "x".repeat(1200)}),
        )
        .await;
    assert_eq!(sent["accepted"], 1200);
    rest.run_until_idle(sid).await;
    let data: Vec<u64> = segments(rest, sid)
        .await
        .iter()
        .filter(|s| s["from"] == "B" && s["len"].as_u64() > Some(0))
        .map(|s| s["len"].as_u64().unwrap())
        .collect();
    assert!(data.len() >= 3, "{data:?}");
    assert!(data.iter().all(|&len| len <= 536), "no segment above the peer's MSS: {data:?}");
    // The short 128-octet tail waits for an ACK (Nagle's algorithm); the raw
    // peer sends none, so what follows is the first segment retransmitted.
    assert_eq!(&data[..3], [536, 536, 536]);

    let bad = rest
        .post(
            &format!("/api/v1/sessions/{sid}/inject"),
            json!({"from": "C", "to": "B", "src_port": 1, "dst_port": 80, "options": [{"kind": "mss"}]}),
        )
        .await;
    assert_error(&bad, StatusCode::BAD_REQUEST, "invalid_argument", None);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_backlog_drops_syns_until_accept_makes_room() {
    let server = TestServer::start().await;
    let rest = &server.rest;
    let sid = rest.manual_session("backlog", json!({})).await;
    for (name, ip) in [("A", "10.0.0.1"), ("B", "10.0.0.2")] {
        rest.post_expect(
            &format!("/api/v1/sessions/{sid}/hosts"),
            json!({"name": name, "ip": ip}),
            StatusCode::CREATED,
        )
        .await;
    }
    let listener = rest
        .post_expect(
            &format!("/api/v1/sessions/{sid}/listeners"),
            json!({"host": "B", "port": 80, "backlog": 1}),
            StatusCode::CREATED,
        )
        .await;
    assert_eq!((listener["backlog"].as_u64(), listener["pending"].as_u64()), (Some(1), Some(0)));
    let lid = listener["id"].as_u64().expect("id");
    let accept = format!("/api/v1/sessions/{sid}/listeners/{lid}/accept");
    assert_error(&rest.post(&accept, json!({})).await, StatusCode::NOT_FOUND, "not_found", Some("accept"));
    let first = rest
        .post_expect(
            &format!("/api/v1/sessions/{sid}/connections"),
            json!({"client": "A", "server": "B", "port": 80, "client_port": 40001}),
            StatusCode::CREATED,
        )
        .await;
    rest.post_ok(&format!("/api/v1/sessions/{sid}/clock"), json!({"action": "advance", "ms": 30})).await;
    let second = rest
        .post_expect(
            &format!("/api/v1/sessions/{sid}/connections"),
            json!({"client": "A", "server": "B", "port": 80, "client_port": 40002}),
            StatusCode::CREATED,
        )
        .await;
    rest.post_ok(&format!("/api/v1/sessions/{sid}/clock"), json!({"action": "advance", "ms": 30})).await;
    let segs = segments(rest, sid).await;
    let last = segs.last().expect("the second SYN");
    assert_eq!((last["src_port"].as_u64(), last["fate"].as_str()), (Some(40002), Some("dropped")), "{last}");
    assert_eq!(last["reason"], "backlog");
    let listeners = rest.get_ok(&format!("/api/v1/sessions/{sid}/listeners")).await;
    assert_eq!(listeners["listeners"][0]["pending"], 1);

    let got = rest.post_ok(&accept, json!({})).await;
    assert_eq!(got["id"], first["id"]);
    assert_eq!(got["server"]["state"], "ESTABLISHED");
    assert_error(&rest.post(&accept, json!({})).await, StatusCode::NOT_FOUND, "not_found", Some("accept"));
    // Room again: the second client's retransmitted SYN gets in.
    rest.run_until_idle(sid).await;
    let got = rest.post_ok(&accept, json!({})).await;
    assert_eq!(got["id"], second["id"]);
    assert_eq!(got["client"]["state"], "ESTABLISHED");
    assert_error(&rest.post(&accept, json!({})).await, StatusCode::NOT_FOUND, "not_found", Some("accept"));
    assert_error(
        &rest.post(&format!("/api/v1/sessions/{sid}/listeners/9/accept"), json!({})).await,
        StatusCode::NOT_FOUND,
        "not_found",
        Some("listener 9"),
    );

    // gRPC: the same call on a third connection.
    let mut lab = LabServiceClient::new(grpc_channel(&server.grpc).await);
    let third = rest
        .post_expect(
            &format!("/api/v1/sessions/{sid}/connections"),
            json!({"client": "A", "server": "B", "port": 80, "client_port": 40003}),
            StatusCode::CREATED,
        )
        .await;
    rest.run_until_idle(sid).await;
    let conn = lab.accept(pb::ListenerRef { session_id: sid, listener_id: lid }).await.expect("accept").into_inner();
    assert_eq!(Some(conn.id), third["id"].as_u64());
    let none = lab.accept(pb::ListenerRef { session_id: sid, listener_id: lid }).await.expect_err("none left");
    assert_eq!(none.code(), tonic::Code::NotFound);
    let listeners = lab.list_listeners(pb::SessionRef { session_id: sid }).await.expect("list").into_inner();
    assert_eq!((listeners.listeners[0].backlog, listeners.listeners[0].pending), (Some(1), 0));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profiles_are_listed_and_sessions_name_one_and_override_settings() {
    let server = TestServer::start().await;
    let rest = &server.rest;
    let list = rest.get_ok("/api/v1/profiles").await;
    let profiles = list["profiles"].as_array().expect("profiles");
    let names: Vec<&str> = profiles.iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["rfc793", "rfc9293", "freebsd", "linux"]);
    let defaults: Vec<&str> =
        profiles.iter().filter(|p| p["default"] == true).map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(defaults, ["rfc9293"]);
    let freebsd = &profiles[2];
    assert!(freebsd["description"].as_str().is_some_and(|d| d.contains("FreeBSD")), "{freebsd}");
    assert_eq!(
        (freebsd["settings"]["window"].as_u64(), freebsd["settings"]["msl_ms"].as_u64()),
        (Some(65536), Some(30000))
    );

    let session = rest
        .post_expect(
            "/api/v1/sessions",
            json!({"clock": "manual", "profile": {"name": "freebsd", "msl_ms": 1000}}),
            StatusCode::CREATED,
        )
        .await;
    let mut want = freebsd["settings"].clone();
    want["msl_ms"] = json!(1000);
    assert_eq!(session["profile"], want, "freebsd's settings with one override");
    let plain = rest.post_expect("/api/v1/sessions", json!({"profile": {"msl_ms": 1000}}), StatusCode::CREATED).await;
    assert_eq!(plain["profile"]["msl_ms"], 1000);
    assert_ne!(plain["profile"], want, "without a name the base is tcplab's default");
    let unknown = rest.post("/api/v1/sessions", json!({"profile": {"name": "bsd"}})).await;
    assert_error(&unknown, StatusCode::BAD_REQUEST, "invalid_argument", Some("unknown profile \"bsd\""));
    let bad_key = rest.post("/api/v1/sessions", json!({"profile": {"name": "linux", "colour": 1}})).await;
    assert_error(&bad_key, StatusCode::BAD_REQUEST, "invalid_argument", Some("colour"));

    let mut lab = LabServiceClient::new(grpc_channel(&server.grpc).await);
    let listed = lab.list_profiles(pb::ListProfilesRequest {}).await.expect("list").into_inner();
    assert_eq!(listed.profiles.len(), 4);
    let settings = listed.profiles[2].settings.clone().expect("settings");
    let rest_settings: tcplab::engine::Profile =
        serde_json::from_value(freebsd["settings"].clone()).expect("a profile");
    assert_eq!(tcplab::engine::Profile::try_from(settings).expect("every setting"), rest_settings);
    let profile = pb::Profile { name: Some("freebsd".into()), msl_ms: Some(1000), ..Default::default() };
    let created = lab
        .create_session(pb::CreateSessionRequest { profile: Some(profile), ..Default::default() })
        .await
        .expect("create")
        .into_inner();
    let got = rest.get_ok(&format!("/api/v1/sessions/{}", created.id)).await;
    assert_eq!(got["profile"], want, "gRPC resolves the name the same way");
    let bad = pb::Profile { name: Some("bsd".into()), ..Default::default() };
    let err = lab
        .create_session(pb::CreateSessionRequest { profile: Some(bad), ..Default::default() })
        .await
        .expect_err("unknown");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("profile.name"), "{}", err.message());
    server.stop().await;
}
