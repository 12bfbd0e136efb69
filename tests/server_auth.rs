//! Access control and CORS of the real server (in process, ephemeral ports):
//! with `--token` and `--read-token` set, nothing but `/healthz` and gRPC
//! health/reflection answers without a token; the read-only token reads and
//! watches but changes nothing; the full token does everything; CORS headers
//! appear only for configured origins.

mod common;

use common::server::{Rest, TestServer, WAIT, assert_error, grpc_channel};
use futures::StreamExt as _;
use reqwest::StatusCode;
use serde_json::json;
use tcplab::api::grpc::pb;
use tcplab::api::grpc::pb::lab_service_client::LabServiceClient;
use tcplab::auth::AccessConfig;
use tcplab::service::Limits;
use tonic::Code;
use tonic::transport::Channel;

const FULL: &str = "full-3f9c1a";
const READ: &str = "read-77b2e0";

async fn guarded() -> TestServer {
    let access = AccessConfig::new(Some(FULL.into()), Some(READ.into()), vec![]).expect("valid access");
    TestServer::with_access(Limits::default(), access).await
}

/// A REST client that sends `Authorization: Bearer <token>` on every request.
fn rest_with(base: &str, token: &str) -> Rest {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("authorization", format!("Bearer {token}").parse().expect("header"));
    let client =
        reqwest::Client::builder().timeout(WAIT).no_proxy().default_headers(headers).build().expect("reqwest client");
    Rest { base: base.to_string(), client }
}

/// A gRPC request with `authorization: Bearer <token>` metadata when a token is given.
fn req<T>(message: T, token: Option<&str>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(token) = token {
        request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().expect("metadata"));
    }
    request
}

async fn lab(server: &TestServer) -> LabServiceClient<Channel> {
    LabServiceClient::new(grpc_channel(&server.grpc).await)
}

/// A manual session with hosts A, B and a listener (event 1: B CLOSED>LISTEN), made with the full token.
async fn session_with_a_listener(server: &TestServer) -> u64 {
    let full = rest_with(&server.http, FULL);
    let sid = full.manual_session("guarded", json!({})).await;
    full.two_hosts_and_listener(sid).await;
    sid
}

#[tokio::test]
async fn without_a_valid_token_everything_but_health_is_refused() {
    let server = guarded().await;
    let anonymous = &server.rest;
    let wrong = rest_with(&server.http, "not-the-token");
    for path in ["/api/v1/sessions", "/api/v1/openapi.json", "/api/v1/sessions/1/events", "/", "/index.html"] {
        let reply = anonymous.get(path).await;
        assert_error(&reply, StatusCode::UNAUTHORIZED, "unauthenticated", Some("missing token"));
        assert_error(&wrong.get(path).await, StatusCode::UNAUTHORIZED, "unauthenticated", Some("invalid token"));
    }
    let post = anonymous.post("/api/v1/sessions", json!({"name": "x"})).await;
    assert_error(&post, StatusCode::UNAUTHORIZED, "unauthenticated", None);
    let resp = anonymous.client.get(anonymous.url("/api/v1/sessions")).send().await.expect("request");
    assert_eq!(resp.headers().get("www-authenticate").and_then(|v| v.to_str().ok()), Some("Bearer"));
    let stream = anonymous.client.get(anonymous.url("/api/v1/sessions/1/events/stream")).send().await.expect("stream");
    assert_eq!(stream.status(), StatusCode::UNAUTHORIZED);
    // Probes stay open.
    assert_eq!(anonymous.get("/healthz").await.0, StatusCode::OK);

    let mut lab = lab(&server).await;
    for token in [None, Some("not-the-token")] {
        let err = lab.list_sessions(req(pb::ListSessionsRequest::default(), token)).await.expect_err("refused");
        assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
        let err = lab
            .create_session(req(pb::CreateSessionRequest { name: Some("x".into()), ..Default::default() }, token))
            .await
            .expect_err("refused");
        assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    }
    let err = lab.list_sessions(req(pb::ListSessionsRequest::default(), None)).await.expect_err("refused");
    assert!(err.message().starts_with("missing token"), "{err:?}");
    // gRPC health and reflection stay open.
    let mut health = tonic_health::pb::health_client::HealthClient::new(grpc_channel(&server.grpc).await);
    let status = health
        .check(tonic_health::pb::HealthCheckRequest { service: tcplab::api::grpc::SERVICE_NAME.into() })
        .await
        .expect("health answers without a token")
        .into_inner();
    assert_eq!(status.status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32);
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::{ServerReflectionRequest, server_reflection_response::MessageResponse};
    let mut reflection = ServerReflectionClient::new(grpc_channel(&server.grpc).await);
    let ask = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers =
        reflection.server_reflection_info(futures::stream::iter([ask])).await.expect("reflection").into_inner();
    let answer = answers.next().await.expect("one answer").expect("reflection answers without a token");
    let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else { panic!("{answer:?}") };
    assert!(list.service.iter().any(|s| s.name == tcplab::api::grpc::SERVICE_NAME), "{list:?}");
    server.stop().await;
}

#[tokio::test]
async fn the_read_only_token_reads_and_watches_but_changes_nothing() {
    let server = guarded().await;
    let sid = session_with_a_listener(&server).await;
    let read = rest_with(&server.http, READ);

    // Reads: REST GETs, history, the dashboard.
    let sessions = read.get_ok("/api/v1/sessions").await;
    assert!(sessions.to_string().contains("guarded"), "{sessions}");
    read.get_ok(&format!("/api/v1/sessions/{sid}")).await;
    let events = read.all_events(sid).await;
    assert_eq!(events[0]["kind"], "state_changed");
    assert_eq!(read.get("/api/v1/openapi.json").await.0, StatusCode::OK);

    // SSE with the token in the query (EventSource cannot set headers); other parameters still work.
    let url = format!("{}/api/v1/sessions/{sid}/events/stream?after_seq=0&token={READ}", server.http);
    let mut sse = common::server::SseReader::open(&server.rest.client, &url, None).await;
    let first = sse.next_event().await.expect("first event");
    assert_eq!(first["seq"], 1);
    // ... and with the header.
    let url = format!("{}/api/v1/sessions/{sid}/events/stream", server.http);
    let mut sse = common::server::SseReader::open(&read.client, &url, None).await;
    assert_eq!(sse.next_event().await.expect("first event")["seq"], 1);

    // Changes are refused with 403, naming the token as read-only, and nothing changed.
    let denied = read.post("/api/v1/sessions", json!({"name": "nope"})).await;
    assert_error(&denied, StatusCode::FORBIDDEN, "permission_denied", Some("read-only"));
    let denied = read.post(&format!("/api/v1/sessions/{sid}/clock"), json!({"action": "run_until_idle"})).await;
    assert_error(&denied, StatusCode::FORBIDDEN, "permission_denied", Some("read-only"));
    let denied = read.put(&format!("/api/v1/sessions/{sid}/links"), json!({"a": "A", "b": "B"})).await;
    assert_error(&denied, StatusCode::FORBIDDEN, "permission_denied", Some("read-only"));
    let denied = read.delete(&format!("/api/v1/sessions/{sid}")).await;
    assert_error(&denied, StatusCode::FORBIDDEN, "permission_denied", Some("read-only"));
    assert_eq!(read.get_ok(&format!("/api/v1/sessions/{sid}")).await["status"], "live");
    assert_eq!(read.get_ok("/api/v1/sessions").await, sessions);

    // gRPC: reads and WatchEvents pass, changes are PERMISSION_DENIED.
    let mut lab = lab(&server).await;
    let session = lab.get_session(req(pb::SessionRef { session_id: sid }, Some(READ))).await.expect("get");
    assert_eq!(session.into_inner().id, sid);
    lab.list_events(req(pb::ListEventsRequest { session_id: sid, ..Default::default() }, Some(READ)))
        .await
        .expect("list events");
    let mut watch = lab
        .watch_events(req(pb::WatchEventsRequest { session_id: sid, ..Default::default() }, Some(READ)))
        .await
        .expect("watch")
        .into_inner();
    let event = tokio::time::timeout(WAIT, watch.next()).await.expect("in time").expect("an event").expect("ok");
    assert!(matches!(event.item, Some(pb::watch_events_response::Item::Event(ref e)) if e.seq == 1), "{event:?}");
    let err = lab
        .create_session(req(pb::CreateSessionRequest { name: Some("nope".into()), ..Default::default() }, Some(READ)))
        .await
        .expect_err("refused");
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    assert!(err.message().contains("read-only"), "{err:?}");
    let err = lab.end_session(req(pb::SessionRef { session_id: sid }, Some(READ))).await.expect_err("refused");
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    drop(watch);
    server.stop().await;
}

#[tokio::test]
async fn the_full_token_does_everything() {
    let server = guarded().await;
    let sid = session_with_a_listener(&server).await;
    let full = rest_with(&server.http, FULL);
    full.post_expect(
        &format!("/api/v1/sessions/{sid}/connections"),
        json!({"client": "A", "server": "B", "port": 80}),
        StatusCode::CREATED,
    )
    .await;
    full.run_until_idle(sid).await;
    let conn = full.get_ok(&format!("/api/v1/sessions/{sid}/connections/1")).await;
    assert_eq!(conn["client"]["state"], "ESTABLISHED");
    let (status, _) = full.delete(&format!("/api/v1/sessions/{sid}")).await;
    assert_eq!(status, StatusCode::OK);

    let mut lab = lab(&server).await;
    let created = lab
        .create_session(req(pb::CreateSessionRequest { name: Some("grpc".into()), ..Default::default() }, Some(FULL)))
        .await
        .expect("create with the full token")
        .into_inner();
    lab.end_session(req(pb::SessionRef { session_id: created.id }, Some(FULL))).await.expect("end");

    // The dashboard: `?token=` once, then the cookie carries it for the page's files and API calls.
    let browser = reqwest::Client::builder().timeout(WAIT).no_proxy().build().expect("client");
    let page = browser.get(format!("{}/?token={FULL}", server.http)).send().await.expect("page");
    assert_eq!(page.status(), StatusCode::OK);
    let cookie = page.headers().get("set-cookie").and_then(|v| v.to_str().ok()).expect("set-cookie").to_string();
    assert!(cookie.starts_with(&format!("tcplab_token={FULL};")) && cookie.contains("HttpOnly"), "{cookie}");
    let pair = cookie.split(';').next().expect("pair").to_string();
    for path in ["/style.css", "/js/app.js", "/api/v1/sessions"] {
        let resp = browser.get(format!("{}{path}", server.http)).header("cookie", &pair).send().await.expect("get");
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
    }
    let resp = browser.get(format!("{}/style.css", server.http)).send().await.expect("get");
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "no cookie, no token");
    server.stop().await;
}

#[tokio::test]
async fn cors_is_off_unless_origins_are_configured() {
    const ORIGIN: &str = "http://class.example:3000";
    let get_with_origin = |rest: &Rest, origin: &str| {
        let rest = rest.clone();
        let origin = origin.to_string();
        async move {
            let resp =
                rest.client.get(rest.url("/api/v1/sessions")).header("origin", origin).send().await.expect("get");
            (
                resp.status(),
                resp.headers().get("access-control-allow-origin").map(|v| v.to_str().unwrap_or("").to_string()),
            )
        }
    };
    let open = TestServer::start().await;
    assert_eq!(get_with_origin(&open.rest, ORIGIN).await, (StatusCode::OK, None));
    open.stop().await;

    let access = AccessConfig::new(Some(FULL.into()), None, vec![ORIGIN.into()]).expect("valid");
    let server = TestServer::with_access(Limits::default(), access).await;
    let full = rest_with(&server.http, FULL);
    assert_eq!(get_with_origin(&full, ORIGIN).await, (StatusCode::OK, Some(ORIGIN.to_string())));
    assert_eq!(get_with_origin(&full, "http://elsewhere.example").await, (StatusCode::OK, None));
    // A preflight carries no credentials and is answered, not refused.
    let preflight = server
        .rest
        .client
        .request(reqwest::Method::OPTIONS, server.rest.url("/api/v1/sessions"))
        .header("origin", ORIGIN)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "authorization,content-type")
        .send()
        .await
        .expect("preflight");
    assert_eq!(preflight.status(), StatusCode::OK);
    let allowed = |name: &str| preflight.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_lowercase();
    assert_eq!(allowed("access-control-allow-origin"), ORIGIN);
    assert!(allowed("access-control-allow-methods").contains("post"), "{:?}", preflight.headers());
    assert!(allowed("access-control-allow-headers").contains("authorization"), "{:?}", preflight.headers());
    server.stop().await;
}
