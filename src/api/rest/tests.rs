//! The REST API driven through the router with `oneshot`, over a real
//! service and a temporary SQLite store.

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use axum::response::IntoResponse;
use base64::Engine as _;
use futures::StreamExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use super::{ApiDoc, ApiError, router};
use crate::service::{self, LabService, Limits};
use crate::store::Store;

struct Lab {
    router: Router,
    _dir: tempfile::TempDir,
}

async fn lab_with(limits: Limits) -> Lab {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("lab.db")).await.expect("open store");
    let service = LabService::new(store, limits).await.expect("service");
    Lab { router: router(service), _dir: dir }
}

async fn lab() -> Lab {
    lab_with(Limits::default()).await
}

impl Lab {
    async fn send(&self, req: Request<Body>) -> (StatusCode, HeaderMap, Value) {
        let resp = self.router.clone().oneshot(req).await.expect("infallible");
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.expect("body");
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&bytes)))
        };
        (status, headers, value)
    }

    async fn call(&self, method: Method, uri: &str, body: Option<Value>) -> (StatusCode, Value) {
        let builder = Request::builder().method(method).uri(uri);
        let req = match body {
            Some(body) => builder.header(header::CONTENT_TYPE, "application/json").body(Body::from(body.to_string())),
            None => builder.body(Body::empty()),
        }
        .expect("request");
        let (status, _, value) = self.send(req).await;
        (status, value)
    }

    async fn raw(&self, method: Method, uri: &str, content_type: Option<&str>, body: &str) -> (StatusCode, Value) {
        let mut builder = Request::builder().method(method).uri(uri);
        if let Some(ct) = content_type {
            builder = builder.header(header::CONTENT_TYPE, ct);
        }
        let (status, _, value) = self.send(builder.body(Body::from(body.to_string())).expect("request")).await;
        (status, value)
    }

    async fn ok(&self, method: Method, uri: &str, body: Option<Value>, want: StatusCode) -> Value {
        let (status, value) = self.call(method.clone(), uri, body).await;
        assert_eq!(status, want, "{method} {uri}: {value}");
        value
    }

    /// A session with hosts A 10.0.0.1 and B 10.0.0.2, a listener on B:80
    /// (ISN 500) and a connection from A:40000 (ISN 300); returns (sid, cid).
    async fn handshake_setup(&self) -> (u64, u64) {
        let session = self.ok(Method::POST, "/api/v1/sessions", Some(json!({"name": "t"})), StatusCode::CREATED).await;
        let sid = session["id"].as_u64().expect("id");
        let base = format!("/api/v1/sessions/{sid}");
        for (name, ip) in [("A", "10.0.0.1"), ("B", "10.0.0.2")] {
            let host = self
                .ok(Method::POST, &format!("{base}/hosts"), Some(json!({"name": name, "ip": ip})), StatusCode::CREATED)
                .await;
            assert_eq!(host["ip"], ip);
        }
        self.ok(
            Method::POST,
            &format!("{base}/listeners"),
            Some(json!({"host": "B", "port": 80, "isn": 500})),
            StatusCode::CREATED,
        )
        .await;
        let conn = self
            .ok(
                Method::POST,
                &format!("{base}/connections"),
                Some(json!({"client": "A", "server": "B", "port": 80, "client_port": 40000, "isn": 300})),
                StatusCode::CREATED,
            )
            .await;
        (sid, conn["id"].as_u64().expect("connection id"))
    }

    async fn run_until_idle(&self, sid: u64) -> Value {
        let clock = self
            .ok(
                Method::POST,
                &format!("/api/v1/sessions/{sid}/clock"),
                Some(json!({"action": "run_until_idle"})),
                StatusCode::OK,
            )
            .await;
        assert_eq!(clock["idle"], true, "{clock}");
        clock
    }
}

/// Asserts the error body's shape, code, and that `needle` is in its message.
fn assert_error(status: StatusCode, body: &Value, want_status: StatusCode, code: &str, needle: &str) {
    assert_eq!(status, want_status, "{body}");
    let obj = body.as_object().expect("an object");
    assert_eq!(obj.len(), 1, "only `error`: {body}");
    let error = body["error"].as_object().expect("error object");
    assert_eq!(error.len(), 2, "only code and message: {body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    let message = body["error"]["message"].as_str().expect("message");
    assert!(message.contains(needle), "message {message:?} should mention {needle:?}");
}

#[tokio::test]
async fn healthz_is_ok() {
    let lab = lab().await;
    let (status, body) = lab.call(Method::GET, "/healthz", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"status": "ok"}));
}

#[tokio::test]
async fn full_handshake_data_and_close_through_the_routes() {
    let lab = lab().await;
    let (sid, cid) = lab.handshake_setup().await;
    let base = format!("/api/v1/sessions/{sid}");
    let clock = lab.run_until_idle(sid).await;
    assert!(clock["now_ns"].as_u64().expect("now_ns") > 0);

    let conn = lab.ok(Method::GET, &format!("{base}/connections/{cid}"), None, StatusCode::OK).await;
    assert_eq!(conn["id"], cid);
    assert_eq!(conn["client"]["state"], "ESTABLISHED", "{conn}");
    assert_eq!(conn["server"]["state"], "ESTABLISHED", "{conn}");
    assert_eq!(conn["client"]["iss"], 300);
    assert_eq!(conn["client"]["irs"], 500);
    assert_eq!(conn["server"]["iss"], 500);
    assert_eq!(conn["server"]["irs"], 300);
    assert_eq!(conn["client"]["host"], "A");
    assert_eq!(conn["server"]["host"], "B");

    let list = lab.ok(Method::GET, &format!("{base}/connections"), None, StatusCode::OK).await;
    assert_eq!(list["connections"].as_array().map(Vec::len), Some(1), "{list}");
    let hosts = lab.ok(Method::GET, &format!("{base}/hosts"), None, StatusCode::OK).await;
    assert_eq!(hosts["hosts"].as_array().map(Vec::len), Some(2), "{hosts}");
    let listeners = lab.ok(Method::GET, &format!("{base}/listeners"), None, StatusCode::OK).await;
    assert_eq!(listeners["listeners"][0]["port"], 80, "{listeners}");
    assert_eq!(listeners["listeners"][0]["state"], "LISTEN", "{listeners}");

    let sent = lab
        .ok(
            Method::POST,
            &format!("{base}/connections/{cid}/send"),
            Some(json!({"side": "client", "data": "hello"})),
            StatusCode::OK,
        )
        .await;
    assert_eq!(sent, json!({"side": "client", "accepted": 5}));
    lab.run_until_idle(sid).await;
    let received =
        lab.ok(Method::GET, &format!("{base}/connections/{cid}/received?side=server"), None, StatusCode::OK).await;
    assert_eq!(received["data"], "hello");
    assert_eq!(received["bytes"], 5);
    assert_eq!(received["side"], "server");

    let closed = lab
        .ok(Method::POST, &format!("{base}/connections/{cid}/close"), Some(json!({"side": "client"})), StatusCode::OK)
        .await;
    assert_eq!(closed["client"]["state"], "FIN_WAIT_1", "{closed}");
    lab.run_until_idle(sid).await;
    lab.ok(Method::POST, &format!("{base}/connections/{cid}/close"), Some(json!({"side": "server"})), StatusCode::OK)
        .await;
    lab.run_until_idle(sid).await;

    let page = lab.ok(Method::GET, &format!("{base}/events?kind=state_changed"), None, StatusCode::OK).await;
    let events = page["events"].as_array().expect("events");
    assert!(!events.is_empty());
    assert!(events.iter().all(|e| e["kind"] == "state_changed"), "{page}");
    let reached = |state: &str| events.iter().any(|e| e["to"] == state);
    for state in ["SYN_SENT", "SYN_RECEIVED", "ESTABLISHED", "FIN_WAIT_1", "CLOSE_WAIT", "LAST_ACK", "TIME_WAIT"] {
        assert!(reached(state), "no state_changed to {state}: {page}");
    }
    assert_eq!(page["next_after_seq"], events.last().expect("last")["seq"]);

    let all = lab.ok(Method::GET, &format!("{base}/events?limit=3"), None, StatusCode::OK).await;
    assert_eq!(all["events"].as_array().map(Vec::len), Some(3));
    let segments = lab.ok(Method::GET, &format!("{base}/segments"), None, StatusCode::OK).await;
    let segments = segments["segments"].as_array().expect("segments");
    assert!(segments.len() >= 7, "SYN, SYN+ACK, ACK, data, ACK, FIN/ACK x2...");
    assert!(segments.iter().all(|s| s["fate"] == "delivered"));

    let session = lab.ok(Method::GET, &base, None, StatusCode::OK).await;
    assert_eq!(session["status"], "live");
    let sessions = lab.ok(Method::GET, "/api/v1/sessions?offset=0&limit=10", None, StatusCode::OK).await;
    assert_eq!(sessions["total"], 1);
    let ended = lab.ok(Method::DELETE, &base, None, StatusCode::OK).await;
    assert_eq!(ended["status"], "ended", "{ended}");
    assert_eq!(ended["id"], sid);
}

#[tokio::test]
async fn links_faults_and_injection() {
    let lab = lab().await;
    let (sid, cid) = lab.handshake_setup().await;
    let base = format!("/api/v1/sessions/{sid}");
    let link = lab
        .ok(Method::PUT, &format!("{base}/links"), Some(json!({"a": "A", "b": "B", "latency_ms": 5.0})), StatusCode::OK)
        .await;
    assert_eq!(link["latency_ms"], 5.0);
    let links = lab.ok(Method::GET, &format!("{base}/links"), None, StatusCode::OK).await;
    assert!(!links["links"].as_array().expect("links").is_empty());

    let fault = lab
        .ok(
            Method::POST,
            &format!("{base}/faults"),
            Some(json!({"from": "B", "to": "A", "match": {"flags": ["SYN", "ACK"]}, "count": 1, "action": "hold"})),
            StatusCode::CREATED,
        )
        .await;
    let fid = fault["id"].as_u64().expect("fault id");
    lab.run_until_idle(sid).await;
    let faults = lab.ok(Method::GET, &format!("{base}/faults"), None, StatusCode::OK).await;
    assert_eq!(faults["faults"][0]["held"], 1, "{faults}");
    let released = lab.ok(Method::POST, &format!("{base}/faults/{fid}/release"), None, StatusCode::OK).await;
    assert_eq!(released, json!({"released": 1}));
    let (status, body) = lab.call(Method::DELETE, &format!("{base}/faults/{fid}"), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(body, Value::Null);
    let (status, body) = lab.call(Method::DELETE, &format!("{base}/faults/{fid}"), None).await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found", "fault");

    let injected = lab
        .ok(
            Method::POST,
            &format!("{base}/inject"),
            Some(json!({"from": {"host": "A", "port": 40001}, "to": "B", "dst_port": 81, "flags": ["SYN"], "seq": 7})),
            StatusCode::CREATED,
        )
        .await;
    assert!(injected["segment_id"].as_u64().is_some(), "{injected}");
    lab.run_until_idle(sid).await;

    let aborted = lab
        .ok(Method::POST, &format!("{base}/connections/{cid}/abort"), Some(json!({"side": "client"})), StatusCode::OK)
        .await;
    assert!(aborted["id"].as_u64().is_some());
}

#[tokio::test]
async fn a_one_mib_send_fits_the_default_body_limit() {
    let lab = lab().await;
    let (sid, cid) = lab.handshake_setup().await;
    lab.run_until_idle(sid).await;
    let data = vec![b'x'; 1 << 20];
    let body = json!({"side": "client", "data_base64": base64::engine::general_purpose::STANDARD.encode(&data)});
    let sent = lab
        .ok(Method::POST, &format!("/api/v1/sessions/{sid}/connections/{cid}/send"), Some(body), StatusCode::OK)
        .await;
    assert_eq!(sent["accepted"], 1 << 20);
    let body = json!({"side": "server", "data": String::from_utf8(data).expect("ascii")});
    let sent = lab
        .ok(Method::POST, &format!("/api/v1/sessions/{sid}/connections/{cid}/send"), Some(body), StatusCode::OK)
        .await;
    assert_eq!(sent["accepted"], 1 << 20);
}

#[tokio::test]
async fn an_oversized_body_is_413_with_the_error_body() {
    let lab = lab_with(Limits { max_body_bytes: 1024, ..Limits::default() }).await;
    let name = "n".repeat(2000);
    let (status, body) = lab.call(Method::POST, "/api/v1/sessions", Some(json!({"name": name}))).await;
    assert_error(status, &body, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "max_body_bytes");
    // Under the limit, fine.
    lab.ok(Method::POST, "/api/v1/sessions", Some(json!({"name": "small"})), StatusCode::CREATED).await;
}

/// A body that declares a length over the limit is read to its end (and
/// dropped) before the 413, so that a client still uploading it is not reset
/// before it can read the answer.
#[tokio::test]
async fn a_body_declared_too_long_is_read_to_its_end_then_refused() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let lab = lab_with(Limits { max_body_bytes: 1024, ..Limits::default() }).await;
    // 64 KiB in 64 chunks, counting the chunks the server reads.
    let oversized = |expect_continue: bool| {
        let read = std::sync::Arc::new(AtomicUsize::new(0));
        let counted = read.clone();
        let chunks = (0..64).map(move |_| {
            counted.fetch_add(1, Ordering::Relaxed);
            Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b' '; 1024]))
        });
        let mut req = Request::builder()
            .method(Method::POST)
            .uri("/api/v1/sessions")
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::CONTENT_LENGTH, 64 * 1024);
        if expect_continue {
            req = req.header(header::EXPECT, "100-continue");
        }
        (req.body(Body::from_stream(futures::stream::iter(chunks))).expect("request"), read)
    };
    let (req, read) = oversized(false);
    let (status, _, body) = lab.send(req).await;
    assert_error(status, &body, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "max_body_bytes");
    assert_eq!(read.load(Ordering::Relaxed), 64, "every chunk was read before the answer");
    // A client waiting for `100 Continue` has sent nothing: refused at once, nothing read.
    let (req, read) = oversized(true);
    let (status, _, body) = lab.send(req).await;
    assert_error(status, &body, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "max_body_bytes");
    assert_eq!(read.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn bad_json_bodies_are_400_naming_the_field() {
    let lab = lab().await;
    let (sid, cid) = lab.handshake_setup().await;
    let hosts = format!("/api/v1/sessions/{sid}/hosts");
    let json_ct = Some("application/json");

    // Malformed JSON: no field to name, but the line and column.
    let (status, body) = lab.raw(Method::POST, &hosts, json_ct, r#"{"name": "C", "#).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_argument", "line 1 column");
    let (status, body) = lab.raw(Method::POST, &hosts, json_ct, "").await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_argument", "request body");
    let (status, body) = lab.raw(Method::POST, &hosts, json_ct, "[1, 2]").await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_argument", "request body");
    // Wrong type.
    let (status, body) = lab.raw(Method::POST, &hosts, json_ct, r#"{"name": 5, "ip": "10.0.0.3"}"#).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_argument", "name");
    // Unknown field.
    let (status, body) =
        lab.raw(Method::POST, &hosts, json_ct, r#"{"name": "C", "ip": "10.0.0.3", "colour": 1}"#).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_argument", "colour");
    // Missing field.
    let (status, body) = lab.raw(Method::POST, &hosts, json_ct, r#"{"name": "C"}"#).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_argument", "ip");
    // Nested wrong type, out-of-range number, bad enum value.
    let (status, body) = lab
        .raw(
            Method::POST,
            &format!("/api/v1/sessions/{sid}/faults"),
            json_ct,
            r#"{"action": "drop", "match": {"len": "x"}}"#,
        )
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_argument", "match.len");
    let (status, body) = lab
        .raw(Method::POST, &format!("/api/v1/sessions/{sid}/listeners"), json_ct, r#"{"host": "B", "port": -1}"#)
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_argument", "port");
    let (status, body) = lab
        .raw(Method::POST, &format!("/api/v1/sessions/{sid}/connections/{cid}/close"), json_ct, r#"{"side": "middle"}"#)
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_argument", "side");
    let (status, body) = lab.raw(Method::POST, "/api/v1/sessions", json_ct, r#"{"seed": 1.5}"#).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_argument", "seed");
    // Well-formed but refused by the service: its field name.
    let (status, body) = lab.call(Method::POST, &hosts, Some(json!({"name": "C", "ip": "10.0.0.300"}))).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_argument", "ip");
    let (status, body) = lab
        .call(Method::POST, &format!("/api/v1/sessions/{sid}/listeners"), Some(json!({"host": "B", "port": 70000})))
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_argument", "port");
    let (status, body) =
        lab.call(Method::POST, &format!("/api/v1/sessions/{sid}/clock"), Some(json!({"action": "fly"}))).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_argument", "action");
    let (status, body) = lab
        .call(
            Method::POST,
            &format!("/api/v1/sessions/{sid}/connections/{cid}/send"),
            Some(json!({"side": "client", "data_base64": "!!"})),
        )
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_argument", "data_base64");
}

#[tokio::test]
async fn a_missing_or_wrong_content_type_is_415() {
    let lab = lab().await;
    let (status, body) = lab.raw(Method::POST, "/api/v1/sessions", None, r#"{"name": "x"}"#).await;
    assert_error(status, &body, StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", "Content-Type");
    let (status, body) = lab.raw(Method::POST, "/api/v1/sessions", Some("text/plain"), r#"{"name": "x"}"#).await;
    assert_error(status, &body, StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", "Content-Type");
    // A JSON media type with parameters is fine.
    let (status, _) =
        lab.raw(Method::POST, "/api/v1/sessions", Some("application/json; charset=utf-8"), r#"{"name": "x"}"#).await;
    assert_eq!(status, StatusCode::CREATED);
}

#[tokio::test]
async fn bad_path_ids_are_400_naming_the_parameter() {
    let lab = lab().await;
    let (sid, _) = lab.handshake_setup().await;
    let cases = [
        (Method::GET, "/api/v1/sessions/abc".to_string(), "sid"),
        (Method::DELETE, "/api/v1/sessions/-1".to_string(), "sid"),
        (Method::GET, "/api/v1/sessions/99999999999999999999999/hosts".to_string(), "sid"),
        (Method::GET, "/api/v1/sessions/1.5/events".to_string(), "sid"),
        (Method::GET, format!("/api/v1/sessions/{sid}/connections/x"), "cid"),
        (Method::GET, format!("/api/v1/sessions/{sid}/connections/x/received?side=client"), "cid"),
        (Method::DELETE, format!("/api/v1/sessions/{sid}/faults/f1"), "fid"),
        (Method::POST, format!("/api/v1/sessions/{sid}/faults/%20/release"), "fid"),
        (Method::GET, "/api/v1/sessions/%FF/events/stream".to_string(), "sid"),
    ];
    for (method, uri, field) in cases {
        let (status, body) = lab.call(method, &uri, None).await;
        assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_argument", field);
    }
    // A body route: the path is checked before the body.
    let (status, body) =
        lab.call(Method::POST, "/api/v1/sessions/zz/hosts", Some(json!({"name": "C", "ip": "10.0.0.3"}))).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_argument", "sid");
}

#[tokio::test]
async fn bad_query_params_are_400_naming_the_parameter() {
    let lab = lab().await;
    let (sid, cid) = lab.handshake_setup().await;
    let base = format!("/api/v1/sessions/{sid}");
    let cases = [
        ("/api/v1/sessions?limit=abc".to_string(), "limit"),
        ("/api/v1/sessions?offset=-3".to_string(), "offset"),
        ("/api/v1/sessions?limit=0".to_string(), "limit"),
        ("/api/v1/sessions?page=2".to_string(), "page"),
        (format!("{base}/events?after_seq=x"), "after_seq"),
        (format!("{base}/events?connection=-1"), "connection"),
        (format!("{base}/events?limit=100000"), "limit"),
        (format!("{base}/events?kind=nonsense"), "kind"),
        (format!("{base}/events?colour=red"), "colour"),
        (format!("{base}/events/stream?after_seq=x"), "after_seq"),
        (format!("{base}/events/stream?kind=nonsense"), "kind"),
        (format!("{base}/events/stream?limit=3"), "limit"),
        (format!("{base}/connections/{cid}/received"), "side"),
        (format!("{base}/connections/{cid}/received?side=middle"), "side"),
    ];
    for (uri, field) in cases {
        let (status, body) = lab.call(Method::GET, &uri, None).await;
        assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_argument", field);
    }
}

#[tokio::test]
async fn service_errors_get_their_statuses() {
    let lab = lab_with(Limits { max_sessions: 1, ..Limits::default() }).await;
    let (status, body) = lab.call(Method::GET, "/api/v1/sessions/42", None).await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found", "session 42");
    let (status, body) = lab.call(Method::GET, "/api/v1/sessions/42/events/stream", None).await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found", "session 42");
    let (sid, _) = lab.handshake_setup().await;
    let (status, body) = lab.call(Method::POST, "/api/v1/sessions", Some(json!({}))).await;
    assert_error(status, &body, StatusCode::TOO_MANY_REQUESTS, "resource_exhausted", "max_sessions");
    let (status, body) = lab
        .call(Method::POST, &format!("/api/v1/sessions/{sid}/hosts"), Some(json!({"name": "A", "ip": "10.0.0.9"})))
        .await;
    assert_error(status, &body, StatusCode::CONFLICT, "already_exists", "A");
    let (status, body) = lab.call(Method::GET, &format!("/api/v1/sessions/{sid}/connections/77"), None).await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found", "connection 77");
    lab.ok(Method::DELETE, &format!("/api/v1/sessions/{sid}"), None, StatusCode::OK).await;
    let (status, body) = lab.call(Method::DELETE, &format!("/api/v1/sessions/{sid}"), None).await;
    assert_error(status, &body, StatusCode::CONFLICT, "failed_precondition", "ended");
    let (status, body) = lab.call(Method::GET, &format!("/api/v1/sessions/{sid}/hosts"), None).await;
    assert_error(status, &body, StatusCode::CONFLICT, "failed_precondition", "ended");
    // History of an ended session stays readable.
    lab.ok(Method::GET, &format!("/api/v1/sessions/{sid}/events"), None, StatusCode::OK).await;
}

#[test]
fn the_one_error_table() {
    let cases = [
        (service::Error::invalid("profile.mss", "too small"), StatusCode::BAD_REQUEST, "invalid_argument"),
        (service::Error::not_found("session", 3), StatusCode::NOT_FOUND, "not_found"),
        (service::Error::AlreadyExists("host `A` already exists".into()), StatusCode::CONFLICT, "already_exists"),
        (service::Error::FailedPrecondition("state".into()), StatusCode::CONFLICT, "failed_precondition"),
        (
            service::Error::LimitExceeded { limit: "max_hosts", max: 1 },
            StatusCode::TOO_MANY_REQUESTS,
            "resource_exhausted",
        ),
        (service::Error::Unauthenticated("token".into()), StatusCode::UNAUTHORIZED, "unauthenticated"),
        (service::Error::Unavailable, StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        (service::Error::Internal("secret detail".into()), StatusCode::INTERNAL_SERVER_ERROR, "internal"),
    ];
    for (error, status, code) in cases {
        let api = ApiError::from(error.clone());
        assert_eq!(api.status(), status, "{error:?}");
        assert_eq!(api.code(), code);
        assert_eq!(api.into_response().status(), status);
    }
    let internal = ApiError::from(service::Error::Internal("secret detail".into()));
    assert_eq!(internal.message(), "internal error");
    assert_eq!(ApiError::from(service::Error::invalid("profile.mss", "too small")).message(), "profile.mss: too small");
}

#[tokio::test]
async fn an_internal_error_body_hides_the_details() {
    let resp = ApiError::from(service::Error::Internal("secret detail".into())).into_response();
    assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.expect("body");
    let body: Value = serde_json::from_slice(&bytes).expect("json");
    assert_eq!(body, json!({"error": {"code": "internal", "message": "internal error"}}));
}

#[tokio::test]
async fn unknown_routes_are_404_and_wrong_methods_405_with_the_error_body() {
    let lab = lab().await;
    for uri in ["/nope", "/api/v1", "/api/v1/sessions/1/nothing", "/api/v2/sessions"] {
        let (status, body) = lab.call(Method::GET, uri, None).await;
        assert_error(status, &body, StatusCode::NOT_FOUND, "not_found", uri);
    }
    let req = Request::builder().method(Method::PATCH).uri("/api/v1/sessions").body(Body::empty()).expect("request");
    let (status, headers, body) = lab.send(req).await;
    assert_error(status, &body, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "PATCH");
    let allow = headers.get(header::ALLOW).and_then(|v| v.to_str().ok()).unwrap_or_default();
    assert!(allow.contains("GET") && allow.contains("POST"), "Allow: {allow}");
    for (method, uri) in [
        (Method::DELETE, "/healthz"),
        (Method::GET, "/api/v1/sessions/1/clock"),
        (Method::POST, "/api/v1/sessions/1/links"),
        (Method::PUT, "/api/v1/sessions/1/faults/1"),
    ] {
        let (status, body) = lab.call(method.clone(), uri, None).await;
        assert_error(status, &body, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", method.as_str());
    }
}

/// Every route of the contract, as the OpenAPI document spells it.
const ROUTES: &[(&str, &str)] = &[
    ("get", "/healthz"),
    ("get", "/api/v1/openapi.json"),
    ("get", "/api/v1/profiles"),
    ("post", "/api/v1/sessions"),
    ("get", "/api/v1/sessions"),
    ("get", "/api/v1/sessions/{sid}"),
    ("delete", "/api/v1/sessions/{sid}"),
    ("patch", "/api/v1/sessions/{sid}/profile"),
    ("post", "/api/v1/sessions/{sid}/hosts"),
    ("get", "/api/v1/sessions/{sid}/hosts"),
    ("put", "/api/v1/sessions/{sid}/links"),
    ("get", "/api/v1/sessions/{sid}/links"),
    ("post", "/api/v1/sessions/{sid}/listeners"),
    ("get", "/api/v1/sessions/{sid}/listeners"),
    ("delete", "/api/v1/sessions/{sid}/listeners/{lid}"),
    ("post", "/api/v1/sessions/{sid}/listeners/{lid}/accept"),
    ("post", "/api/v1/sessions/{sid}/connections"),
    ("get", "/api/v1/sessions/{sid}/connections"),
    ("get", "/api/v1/sessions/{sid}/connections/{cid}"),
    ("post", "/api/v1/sessions/{sid}/connections/{cid}/send"),
    ("get", "/api/v1/sessions/{sid}/connections/{cid}/received"),
    ("post", "/api/v1/sessions/{sid}/connections/{cid}/close"),
    ("post", "/api/v1/sessions/{sid}/connections/{cid}/abort"),
    ("post", "/api/v1/sessions/{sid}/faults"),
    ("get", "/api/v1/sessions/{sid}/faults"),
    ("delete", "/api/v1/sessions/{sid}/faults/{fid}"),
    ("post", "/api/v1/sessions/{sid}/faults/{fid}/release"),
    ("post", "/api/v1/sessions/{sid}/inject"),
    ("post", "/api/v1/sessions/{sid}/packetdrill"),
    ("post", "/api/v1/sessions/{sid}/clock"),
    ("get", "/api/v1/sessions/{sid}/events"),
    ("get", "/api/v1/sessions/{sid}/events/stream"),
    ("get", "/api/v1/sessions/{sid}/segments"),
    ("get", "/api/v1/labs"),
    ("get", "/api/v1/labs/{name}"),
    ("post", "/api/v1/labs/{name}/runs"),
    ("post", "/api/v1/labs/runs"),
    ("get", "/api/v1/sessions/{sid}/pcap"),
    ("get", "/metrics"),
];

#[tokio::test]
async fn the_openapi_document_lists_every_route_and_every_route_is_served() {
    use utoipa::OpenApi as _;
    let lab = lab().await;
    let (status, doc) = lab.call(Method::GET, "/api/v1/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(doc, serde_json::to_value(ApiDoc::openapi()).expect("doc"));
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.1")), "{}", doc["openapi"]);
    let paths = doc["paths"].as_object().expect("paths");
    let mut documented = 0;
    for (path, item) in paths {
        documented += item.as_object().expect("path item").keys().filter(|k| *k != "parameters").count();
        let _ = path;
    }
    assert_eq!(documented, ROUTES.len(), "documented operations: {:?}", paths.keys().collect::<Vec<_>>());
    for (method, path) in ROUTES {
        let op = &doc["paths"][path][method];
        assert!(op.is_object(), "{method} {path} is not in the document");
        assert!(op["responses"].as_object().is_some_and(|r| !r.is_empty()), "{method} {path} has no responses");
        for name in ["sid", "cid", "fid", "lid", "name"] {
            if path.contains(&format!("{{{name}}}")) {
                let params = op["parameters"].as_array().expect("parameters");
                assert!(
                    params.iter().any(|p| p["name"] == name && p["in"] == "path"),
                    "{method} {path}: no path parameter {name}"
                );
            }
        }
        // The router serves it: neither the 404 fallback nor a 405.
        let uri = path
            .replace("{sid}", "999")
            .replace("{cid}", "1")
            .replace("{fid}", "1")
            .replace("{lid}", "1")
            .replace("{name}", "three-way-handshake");
        let req = Request::builder()
            .method(method.to_uppercase().as_str())
            .uri(&uri)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from("{}"))
            .expect("request");
        let resp = lab.router.clone().oneshot(req).await.expect("infallible");
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.expect("body");
        let text = String::from_utf8_lossy(&bytes);
        assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {uri}");
        assert!(!text.contains("no route for"), "{method} {uri} hit the fallback");
    }
    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    assert!(!refs.is_empty());
    for r in refs {
        let name = r.strip_prefix("#/components/schemas/").unwrap_or_else(|| panic!("unexpected $ref {r}"));
        assert!(doc["components"]["schemas"][name].is_object(), "dangling $ref {r}");
    }
    for schema in ["ErrorBody", "SessionInfo", "ConnectionInfo", "EventPage", "CreateSession", "SendData"] {
        assert!(doc["components"]["schemas"][schema].is_object(), "schema {schema} missing");
    }
    let query = &doc["paths"]["/api/v1/sessions/{sid}/events"]["get"]["parameters"];
    for name in ["after_seq", "limit", "kind", "connection"] {
        assert!(
            query.as_array().is_some_and(|ps| ps.iter().any(|p| p["name"] == name && p["in"] == "query")),
            "events: query parameter {name}"
        );
    }
}

fn collect_refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("$ref", Value::String(r)) => out.push(r.clone()),
                    _ => collect_refs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

/// Reads SSE text from a body until `want` `id:` lines arrived (or the body
/// ended); returns the ids and the whole text.
async fn read_sse(body: Body, want: usize) -> (Vec<u64>, String, bool) {
    let mut stream = body.into_data_stream();
    let mut text = String::new();
    let mut ended = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let ids = sse_ids(&text);
        if ids.len() >= want {
            return (ids, text, ended);
        }
        match tokio::time::timeout_at(deadline, stream.next()).await {
            Ok(Some(Ok(chunk))) => text.push_str(&String::from_utf8_lossy(&chunk)),
            Ok(Some(Err(e))) => panic!("body error: {e}"),
            Ok(None) => {
                ended = true;
                return (sse_ids(&text), text, ended);
            }
            Err(_) => panic!("timed out with {} ids: {text}", ids.len()),
        }
    }
}

fn sse_ids(text: &str) -> Vec<u64> {
    // Only complete events (terminated by a blank line).
    let complete = match text.rfind("\n\n") {
        Some(end) => &text[..end],
        None => "",
    };
    complete.lines().filter_map(|l| l.strip_prefix("id:")).map(|id| id.trim().parse().expect("numeric id")).collect()
}

fn stream_request(uri: &str, last_event_id: Option<&str>) -> Request<Body> {
    let mut builder = Request::builder().uri(uri).header(header::ACCEPT, "text/event-stream");
    if let Some(id) = last_event_id {
        builder = builder.header("Last-Event-ID", id);
    }
    builder.body(Body::empty()).expect("request")
}

#[tokio::test]
async fn sse_yields_events_with_increasing_ids_and_resumes() {
    let lab = lab().await;
    let (sid, _) = lab.handshake_setup().await;
    lab.run_until_idle(sid).await;
    let uri = format!("/api/v1/sessions/{sid}/events/stream");

    let resp = lab.router.clone().oneshot(stream_request(&uri, None)).await.expect("infallible");
    assert_eq!(resp.status(), StatusCode::OK);
    let ct = resp.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    assert!(ct.starts_with("text/event-stream"), "{ct}");
    let (ids, text, _) = read_sse(resp.into_body(), 5).await;
    assert!(ids.len() >= 5, "{text}");
    assert_eq!(ids[0], 1, "from the first event: {text}");
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "increasing: {ids:?}");
    assert!(text.contains("event: state_changed") || text.contains("event:state_changed"), "{text}");
    let first_data = text.lines().find_map(|l| l.strip_prefix("data:")).expect("data line").trim();
    let first: Value = serde_json::from_str(first_data).expect("data is the event JSON");
    assert_eq!(first["seq"], 1);

    // Last-Event-ID wins over after_seq.
    let resp = lab.router.clone().oneshot(stream_request(&format!("{uri}?after_seq=1"), Some("3"))).await.expect("ok");
    let (ids, text, _) = read_sse(resp.into_body(), 2).await;
    assert_eq!(ids[0], 4, "{text}");
    let resp = lab.router.clone().oneshot(stream_request(&format!("{uri}?after_seq=2"), None)).await.expect("ok");
    let (ids, text, _) = read_sse(resp.into_body(), 1).await;
    assert_eq!(ids[0], 3, "{text}");

    // Filters.
    let resp =
        lab.router.clone().oneshot(stream_request(&format!("{uri}?kind=state_changed"), None)).await.expect("ok");
    let (ids, text, _) = read_sse(resp.into_body(), 3).await;
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
    assert!(text.lines().filter(|l| l.starts_with("event:")).all(|l| l.contains("state_changed")), "{text}");

    // Bad Last-Event-ID.
    let (status, _, body) = lab.send(stream_request(&uri, Some("later"))).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_argument", "Last-Event-ID");
}

#[tokio::test]
async fn sse_delivers_live_events_and_ends_with_the_session() {
    let lab = lab().await;
    let (sid, cid) = lab.handshake_setup().await;
    lab.run_until_idle(sid).await;
    let page = lab.ok(Method::GET, &format!("/api/v1/sessions/{sid}/events"), None, StatusCode::OK).await;
    let last = page["next_after_seq"].as_u64().expect("seq");
    let uri = format!("/api/v1/sessions/{sid}/events/stream?after_seq={last}");
    let resp = lab.router.clone().oneshot(stream_request(&uri, None)).await.expect("infallible");
    assert_eq!(resp.status(), StatusCode::OK);
    let reader = tokio::spawn(read_sse(resp.into_body(), usize::MAX));
    // New events happen after the stream opened.
    lab.ok(
        Method::POST,
        &format!("/api/v1/sessions/{sid}/connections/{cid}/send"),
        Some(json!({"side": "client", "data": "live"})),
        StatusCode::OK,
    )
    .await;
    lab.run_until_idle(sid).await;
    lab.ok(Method::DELETE, &format!("/api/v1/sessions/{sid}"), None, StatusCode::OK).await;
    let (ids, text, ended) = tokio::time::timeout(Duration::from_secs(10), reader).await.expect("ends").expect("task");
    assert!(ended, "the stream ends when the session ends: {text}");
    // Its last message is `end`, with the id of the session's last event.
    let (end, ids) = ids.split_last().expect("ids");
    let end_data = format!("data: {{\"last_seq\":{end},\"reason\":\"session_ended\"}}");
    assert!(text.contains("event: end") && text.contains(&end_data), "{text}");
    assert!(!ids.is_empty(), "live events arrived: {text}");
    assert_eq!(ids.last(), Some(end), "{text}");
    assert_eq!(ids[0], last + 1, "{text}");
    assert!(ids.windows(2).all(|w| w[1] == w[0] + 1), "no gap, no duplicate: {ids:?}");

    // An ended session's stream replays its history and ends the same way.
    let resp =
        lab.router.clone().oneshot(stream_request(&uri.replace(&format!("={last}"), "=0"), None)).await.expect("ok");
    let (ids, text, ended) = read_sse(resp.into_body(), usize::MAX).await;
    assert!(ended && text.contains("event: end"), "{text}");
    let (end, ids) = ids.split_last().expect("ids");
    assert_eq!(ids.first(), Some(&1));
    assert_eq!(ids.len() as u64, *end);
    // Reconnecting after the end is told to stop.
    let resp = lab.router.clone().oneshot(stream_request(&uri, Some(&end.to_string()))).await.expect("ok");
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn sse_tells_a_lagging_subscriber_where_it_stopped_and_ends() {
    let lab = lab_with(Limits { broadcast_capacity: 16, ..Limits::default() }).await;
    let (sid, cid) = lab.handshake_setup().await;
    lab.run_until_idle(sid).await;
    let page = lab.ok(Method::GET, &format!("/api/v1/sessions/{sid}/events"), None, StatusCode::OK).await;
    let last = page["next_after_seq"].as_u64().expect("seq");
    let uri = format!("/api/v1/sessions/{sid}/events/stream?after_seq={last}");
    let resp = lab.router.clone().oneshot(stream_request(&uri, None)).await.expect("infallible");
    assert_eq!(resp.status(), StatusCode::OK);
    // Thousands of events at once, while nobody reads the stream.
    let body = json!({"side": "client", "data": "z".repeat(256 * 1024)});
    lab.ok(Method::POST, &format!("/api/v1/sessions/{sid}/connections/{cid}/send"), Some(body), StatusCode::OK).await;
    lab.run_until_idle(sid).await;
    let (ids, text, ended) = read_sse(resp.into_body(), usize::MAX).await;
    assert!(ended, "the stream ends after `lagged`: {text}");
    let tail = text.trim_end().rsplit("\n\n").next().expect("last event");
    assert!(tail.lines().any(|l| l.trim() == "event: lagged" || l.trim() == "event:lagged"), "{tail}");
    let data = tail.lines().find_map(|l| l.strip_prefix("data:")).expect("data").trim();
    let data: Value = serde_json::from_str(data).expect("json");
    let last_seq = data["last_seq"].as_u64().expect("last_seq");
    assert!(last_seq >= last, "{data}");
    assert_eq!(ids.last().copied(), Some(last_seq), "the lagged event carries id: last_seq");
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
}

#[tokio::test]
async fn over_a_real_socket() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("lab.db")).await.expect("open store");
    let limits = Limits { max_body_bytes: 4096, ..Limits::default() };
    let service = LabService::new(store, limits).await.expect("service");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(async move { axum::serve(listener, router(service)).await });
    let client = reqwest::Client::new();
    let base = format!("http://{addr}");

    let health: Value = client.get(format!("{base}/healthz")).send().await.expect("get").json().await.expect("json");
    assert_eq!(health, json!({"status": "ok"}));

    let resp = client
        .post(format!("{base}/api/v1/sessions"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(json!({"name": "x".repeat(10_000)}).to_string())
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status().as_u16(), 413);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["error"]["code"], "payload_too_large");

    let session: Value = client
        .post(format!("{base}/api/v1/sessions"))
        .json(&json!({}))
        .send()
        .await
        .expect("post")
        .json()
        .await
        .expect("json");
    let sid = session["id"].as_u64().expect("id");
    for (name, ip) in [("A", "10.0.0.1"), ("B", "10.0.0.2")] {
        let resp = client
            .post(format!("{base}/api/v1/sessions/{sid}/hosts"))
            .json(&json!({"name": name, "ip": ip}))
            .send()
            .await
            .expect("post");
        assert_eq!(resp.status().as_u16(), 201);
    }
    client
        .post(format!("{base}/api/v1/sessions/{sid}/listeners"))
        .json(&json!({"host": "B", "port": 80}))
        .send()
        .await
        .expect("post");
    client
        .post(format!("{base}/api/v1/sessions/{sid}/connections"))
        .json(&json!({"client": "A", "server": "B", "port": 80}))
        .send()
        .await
        .expect("post");
    client
        .post(format!("{base}/api/v1/sessions/{sid}/clock"))
        .json(&json!({"action": "run_until_idle"}))
        .send()
        .await
        .expect("post");

    let resp = client
        .get(format!("{base}/api/v1/sessions/{sid}/events/stream"))
        .header("Last-Event-ID", "1")
        .send()
        .await
        .expect("get");
    assert_eq!(resp.status().as_u16(), 200);
    let mut chunks = resp.bytes_stream();
    let mut text = String::new();
    while sse_ids(&text).len() < 3 {
        let chunk = tokio::time::timeout(Duration::from_secs(10), chunks.next()).await.expect("in time");
        text.push_str(&String::from_utf8_lossy(&chunk.expect("chunk").expect("bytes")));
    }
    let ids = sse_ids(&text);
    assert_eq!(ids[..3], [2, 3, 4], "{text}");
    server.abort();
}
