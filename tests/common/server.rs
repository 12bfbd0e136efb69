//! Helpers for the server integration tests: the real server on ephemeral
//! ports with a temporary database (in process, or the `tcplab` binary as a
//! child process), a small REST client, a Server-Sent Events reader and a
//! gRPC channel.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tcplab::server::{Server, ServerConfig};
use tcplab::service::Limits;

/// The upper bound of any single wait in these tests.
pub const WAIT: Duration = Duration::from_secs(10);

/// A server running in this process on `127.0.0.1:0` with a database in a
/// temporary directory.
pub struct TestServer {
    /// `http://127.0.0.1:PORT` of REST.
    pub http: String,
    /// `http://127.0.0.1:PORT` of gRPC.
    pub grpc: String,
    /// The REST client.
    pub rest: Rest,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    dir: tempfile::TempDir,
}

impl TestServer {
    /// Starts a server with default limits.
    pub async fn start() -> TestServer {
        TestServer::with_limits(Limits::default()).await
    }

    /// Starts a server with `limits`.
    pub async fn with_limits(limits: Limits) -> TestServer {
        TestServer::with_access(limits, tcplab::auth::AccessConfig::default()).await
    }

    /// Starts a server with `limits` behind `access` (tokens, CORS).
    pub async fn with_access(limits: Limits, access: tcplab::auth::AccessConfig) -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let loopback: SocketAddr = "127.0.0.1:0".parse().expect("addr");
        let config = ServerConfig { http: loopback, grpc: loopback, db: dir.path().join("lab.db"), limits };
        let server = Server::bind(config).await.expect("bind the server").with_access(access);
        let http = format!("http://{}", server.http_addr().expect("http addr"));
        let grpc = format!("http://{}", server.grpc_addr().expect("grpc addr"));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            server
                .run(async move {
                    let _ = stopped.await;
                })
                .await
                .expect("server runs and shuts down cleanly");
        });
        TestServer { rest: Rest::new(&http), http, grpc, stop: Some(stop), task: Some(task), dir }
    }

    /// The database file.
    pub fn db(&self) -> PathBuf {
        self.dir.path().join("lab.db")
    }

    /// Graceful shutdown; panics if it takes longer than [`WAIT`] or fails.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(WAIT, task).await.expect("the server stops in time").expect("server task");
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A reply: status and JSON body (`Value::Null` when the body is not JSON).
pub type Reply = (StatusCode, Value);

/// A JSON REST client bound to one server.
#[derive(Clone)]
pub struct Rest {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The HTTP client.
    pub client: reqwest::Client,
}

impl Rest {
    /// A client for `base`.
    pub fn new(base: &str) -> Rest {
        let client = reqwest::Client::builder().timeout(WAIT).no_proxy().build().expect("reqwest client");
        Rest { base: base.to_string(), client }
    }

    /// `base` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Sends a request and reads the JSON reply.
    pub async fn call(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> Reply {
        let mut req = self.client.request(method, self.url(path));
        if let Some(body) = body {
            req = req.json(body);
        }
        reply(req.send().await.expect("request")).await
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> Reply {
        self.call(reqwest::Method::GET, path, None).await
    }

    /// `POST path` with a JSON body.
    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.call(reqwest::Method::POST, path, Some(&body)).await
    }

    /// `PUT path` with a JSON body.
    pub async fn put(&self, path: &str, body: Value) -> Reply {
        self.call(reqwest::Method::PUT, path, Some(&body)).await
    }

    /// `PATCH path` with a JSON body.
    pub async fn patch(&self, path: &str, body: Value) -> Reply {
        self.call(reqwest::Method::PATCH, path, Some(&body)).await
    }

    /// `DELETE path`.
    pub async fn delete(&self, path: &str) -> Reply {
        self.call(reqwest::Method::DELETE, path, None).await
    }

    /// `GET path`, expecting 200.
    pub async fn get_ok(&self, path: &str) -> Value {
        let (status, body) = self.get(path).await;
        assert_eq!(status, StatusCode::OK, "GET {path}: {body}");
        body
    }

    /// `POST path`, expecting `want`.
    pub async fn post_expect(&self, path: &str, body: Value, want: StatusCode) -> Value {
        let (status, reply) = self.post(path, body.clone()).await;
        assert_eq!(status, want, "POST {path} {body}: {reply}");
        reply
    }

    /// `POST path`, expecting 200.
    pub async fn post_ok(&self, path: &str, body: Value) -> Value {
        self.post_expect(path, body, StatusCode::OK).await
    }

    /// Creates a manual-clock session and returns its id.
    pub async fn manual_session(&self, name: &str, profile: Value) -> u64 {
        let body = json!({ "name": name, "seed": 7, "clock": "manual", "profile": profile });
        let session = self.post_expect("/api/v1/sessions", body, StatusCode::CREATED).await;
        assert_eq!(session["status"], "live");
        assert_eq!(session["clock"], "manual");
        session["id"].as_u64().expect("session id")
    }

    /// Hosts A (10.0.0.1) and B (10.0.0.2), a 10 ms link between them and a
    /// listener on B:80 with ISN 500.
    pub async fn two_hosts_and_listener(&self, sid: u64) {
        for (name, ip) in [("A", "10.0.0.1"), ("B", "10.0.0.2")] {
            let host = self
                .post_expect(
                    &format!("/api/v1/sessions/{sid}/hosts"),
                    json!({"name": name, "ip": ip}),
                    StatusCode::CREATED,
                )
                .await;
            assert_eq!(host, json!({"name": name, "ip": ip, "kind": "tcp"}));
        }
        let (status, link) =
            self.put(&format!("/api/v1/sessions/{sid}/links"), json!({"a": "A", "b": "B", "latency_ms": 10.0})).await;
        assert_eq!(status, StatusCode::OK, "{link}");
        assert_eq!(link["latency_ms"], 10.0);
        assert_eq!(link["loss"], 0.0);
        let listener = self
            .post_expect(
                &format!("/api/v1/sessions/{sid}/listeners"),
                json!({"host": "B", "port": 80, "isn": 500}),
                StatusCode::CREATED,
            )
            .await;
        assert_eq!(listener["state"], "LISTEN");
        assert_eq!(listener["port"], 80);
    }

    /// Runs the session's clock until nothing is scheduled.
    pub async fn run_until_idle(&self, sid: u64) -> Value {
        let clock = self.post_ok(&format!("/api/v1/sessions/{sid}/clock"), json!({"action": "run_until_idle"})).await;
        assert_eq!(clock["idle"], true, "{clock}");
        clock
    }

    /// Every stored event of a session, all pages.
    pub async fn all_events(&self, sid: u64) -> Vec<Value> {
        let mut after = 0;
        let mut out = Vec::new();
        loop {
            let page = self.get_ok(&format!("/api/v1/sessions/{sid}/events?after_seq={after}&limit=10000")).await;
            let events = page["events"].as_array().expect("events").clone();
            if events.is_empty() {
                return out;
            }
            after = page["next_after_seq"].as_u64().expect("next_after_seq");
            out.extend(events);
        }
    }
}

/// Reads a reply's body as JSON.
pub async fn reply(resp: reqwest::Response) -> Reply {
    let status = resp.status();
    let text = resp.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Checks an error reply: status, `{"error":{"code","message"}}` and nothing
/// else, and a message that starts with `field` (when given).
pub fn assert_error(got: &Reply, status: StatusCode, code: &str, field: Option<&str>) {
    let (got_status, body) = got;
    assert_eq!(*got_status, status, "{body}");
    let obj = body.as_object().unwrap_or_else(|| panic!("error body is an object: {body}"));
    assert_eq!(obj.len(), 1, "{body}");
    let error = body["error"].as_object().unwrap_or_else(|| panic!("error.code/message: {body}"));
    assert_eq!(error.len(), 2, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    let message = body["error"]["message"].as_str().expect("message");
    if let Some(field) = field {
        assert!(message.contains(field), "message names {field:?}: {message}");
    }
}

/// Asserts that events are numbered `first, first+1, ...` without a gap.
pub fn assert_contiguous(events: &[Value], first: u64) {
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["seq"].as_u64(), Some(first + i as u64), "event {i} of {}: {e}", events.len());
    }
}

// ----- the clean run -----

/// One event as a line: `seq ms kind connection what`.
pub fn describe(e: &Value) -> String {
    let t_ns = e["t_ns"].as_u64().expect("t_ns");
    assert_eq!(t_ns % 1_000_000, 0, "whole milliseconds here: {e}");
    let conn = e["connection"].as_u64().map_or("c-".to_string(), |c| format!("c{c}"));
    let kind = e["kind"].as_str().expect("kind");
    let what = match kind {
        "state_changed" => format!(
            "{} {} {}>{}",
            e["host"].as_str().expect("host"),
            e["side"].as_str().unwrap_or("-"),
            e["from"].as_str().expect("from"),
            e["to"].as_str().expect("to")
        ),
        "timer_fired" => format!(
            "{} {} {}",
            e["host"].as_str().expect("host"),
            e["side"].as_str().unwrap_or("-"),
            e["timer"].as_str().expect("timer")
        ),
        "congestion_changed" => format!(
            "{} {} cwnd={} ssthresh={} {}",
            e["host"].as_str().expect("host"),
            e["side"].as_str().unwrap_or("-"),
            e["cwnd"],
            e["ssthresh"].as_u64().map_or("-".to_string(), |s| s.to_string()),
            e["phase"].as_str().expect("phase")
        ),
        _ => {
            let s = &e["segment"];
            let flags: Vec<&str> = s["flags"].as_array().expect("flags").iter().map(|f| f.as_str().unwrap()).collect();
            let mut text = format!(
                "{}>{} {} {}/{} len{}",
                s["from"].as_str().expect("from"),
                s["to"].as_str().expect("to"),
                flags.join(","),
                s["seq"],
                s["ack"],
                s["len"]
            );
            if s["retransmission"] == true {
                text.push_str(" retx");
            }
            if let Some(reason) = e["reason"].as_str() {
                text.push_str(&format!(" reason={reason}"));
            }
            text
        }
    };
    format!("{} {}ms {kind} {conn} {what}", e["seq"], t_ns / 1_000_000)
}

/// An enum value's name without its prefix, lower-cased as REST spells
/// kinds, timers and reasons (`EVENT_KIND_STATE_CHANGED` -> `state_changed`).
pub fn rest_name(proto_name: &str, prefix: &str) -> String {
    proto_name.strip_prefix(prefix).expect("the enum's prefix").to_lowercase()
}

/// A gRPC flag list as REST joins it (`ACK,SYN`).
pub fn grpc_flags(flags: impl Iterator<Item = tcplab::api::grpc::pb::Flag>) -> String {
    flags.map(|f| f.as_str_name().trim_start_matches("FLAG_").to_string()).collect::<Vec<_>>().join(",")
}

/// [`describe`], read from a gRPC event's typed fields and payload instead
/// of its JSON: the same line when the payload says what the JSON says.
pub fn describe_grpc(e: &tcplab::api::grpc::pb::Event) -> String {
    use tcplab::api::grpc::pb::{self, event::Payload};
    assert_eq!(e.t_ns % 1_000_000, 0, "whole milliseconds here: {e:?}");
    let conn = e.connection.map_or("c-".to_string(), |c| format!("c{c}"));
    let kind = rest_name(e.kind().as_str_name(), "EVENT_KIND_");
    let side = |s: pb::Side| match s {
        pb::Side::Unspecified => "-".to_string(),
        s => rest_name(s.as_str_name(), "SIDE_"),
    };
    let state = |s: pb::State| s.as_str_name().trim_start_matches("STATE_").to_string();
    let what = match e.payload.as_ref().expect("every event has a payload") {
        Payload::StateChange(c) => {
            format!("{} {} {}>{}", c.host, side(c.side()), state(c.from_state()), state(c.to_state()))
        }
        Payload::Timer(t) => {
            format!("{} {} {}", t.host, side(t.side()), rest_name(t.timer().as_str_name(), "TIMER_KIND_"))
        }
        Payload::Error(x) => format!("{} {} {}", x.host, side(x.side()), x.error().as_str_name()),
        Payload::Congestion(c) => format!(
            "{} {} cwnd={} ssthresh={} {}",
            c.host,
            side(c.side()),
            c.cwnd,
            c.ssthresh.map_or("-".to_string(), |s| s.to_string()),
            rest_name(c.cc_phase().as_str_name(), "CC_PHASE_")
        ),
        Payload::Segment(s) => {
            let mut text = format!("{}>{} {} {}/{} len{}", s.src, s.dst, grpc_flags(s.flags()), s.seq, s.ack, s.len);
            if s.retransmission {
                text.push_str(" retx");
            }
            if s.drop_reason() != pb::DropReason::Unspecified {
                text.push_str(&format!(" reason={}", rest_name(s.drop_reason().as_str_name(), "DROP_REASON_")));
            }
            text
        }
    };
    format!("{} {}ms {kind} {conn} {what}", e.seq, e.t_ns / 1_000_000)
}

/// The whole log of the clean run (handshake, 100 octets A->B, 200 B->A,
/// client closes first, MSL 500 ms so TIME_WAIT lasts 1 s). Each end's
/// congestion window appears when the handshake fixes it and whenever an
/// ACK of new data grows it (slow start: by the octets acknowledged).
pub const CLEAN_RUN: [&str; 39] = [
    "1 0ms state_changed c- B - CLOSED>LISTEN",
    "2 0ms state_changed c1 A client CLOSED>SYN_SENT",
    "3 0ms segment_sent c1 A>B SYN 300/0 len0",
    "4 10ms segment_delivered c- A>B SYN 300/0 len0",
    "5 10ms state_changed c1 B server LISTEN>SYN_RECEIVED",
    "6 10ms congestion_changed c1 B server cwnd=4380 ssthresh=- slow_start",
    "7 10ms segment_sent c1 B>A ACK,SYN 500/301 len0",
    "8 20ms segment_delivered c1 B>A ACK,SYN 500/301 len0",
    "9 20ms state_changed c1 A client SYN_SENT>ESTABLISHED",
    "10 20ms congestion_changed c1 A client cwnd=4380 ssthresh=- slow_start",
    "11 20ms segment_sent c1 A>B ACK 301/501 len0",
    "12 30ms segment_delivered c1 A>B ACK 301/501 len0",
    "13 30ms state_changed c1 B server SYN_RECEIVED>ESTABLISHED",
    "14 30ms segment_sent c1 A>B ACK,PSH 301/501 len100",
    "15 40ms segment_delivered c1 A>B ACK,PSH 301/501 len100",
    "16 40ms segment_sent c1 B>A ACK 501/401 len0",
    "17 50ms segment_delivered c1 B>A ACK 501/401 len0",
    "18 50ms congestion_changed c1 A client cwnd=4480 ssthresh=- slow_start",
    "19 50ms segment_sent c1 B>A ACK,PSH 501/401 len200",
    "20 60ms segment_delivered c1 B>A ACK,PSH 501/401 len200",
    "21 60ms segment_sent c1 A>B ACK 401/701 len0",
    "22 70ms segment_delivered c1 A>B ACK 401/701 len0",
    "23 70ms congestion_changed c1 B server cwnd=4580 ssthresh=- slow_start",
    "24 70ms state_changed c1 A client ESTABLISHED>FIN_WAIT_1",
    "25 70ms segment_sent c1 A>B ACK,FIN 401/701 len0",
    "26 80ms segment_delivered c1 A>B ACK,FIN 401/701 len0",
    "27 80ms state_changed c1 B server ESTABLISHED>CLOSE_WAIT",
    "28 80ms segment_sent c1 B>A ACK 701/402 len0",
    "29 90ms segment_delivered c1 B>A ACK 701/402 len0",
    "30 90ms state_changed c1 A client FIN_WAIT_1>FIN_WAIT_2",
    "31 90ms state_changed c1 B server CLOSE_WAIT>LAST_ACK",
    "32 90ms segment_sent c1 B>A ACK,FIN 701/402 len0",
    "33 100ms segment_delivered c1 B>A ACK,FIN 701/402 len0",
    "34 100ms state_changed c1 A client FIN_WAIT_2>TIME_WAIT",
    "35 100ms segment_sent c1 A>B ACK 402/702 len0",
    "36 110ms segment_delivered c1 A>B ACK 402/702 len0",
    "37 110ms state_changed c1 B server LAST_ACK>CLOSED",
    "38 1100ms timer_fired c1 A client time_wait",
    "39 1100ms state_changed c1 A client TIME_WAIT>CLOSED",
];

// ----- Server-Sent Events -----

/// One Server-Sent Event.
#[derive(Clone, Debug, PartialEq)]
pub struct Sse {
    /// `id:`.
    pub id: Option<String>,
    /// `event:`.
    pub event: Option<String>,
    /// `data:` lines joined with `\n`.
    pub data: String,
}

/// Reads Server-Sent Events from a streaming response.
pub struct SseReader {
    body: futures::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buf: Vec<u8>,
}

impl SseReader {
    /// Opens `url` with an optional `Last-Event-ID`; expects 200 and `text/event-stream`.
    pub async fn open(client: &reqwest::Client, url: &str, last_event_id: Option<u64>) -> SseReader {
        let mut req = client.get(url).header("accept", "text/event-stream");
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id.to_string());
        }
        let resp = req.send().await.expect("stream request");
        assert_eq!(resp.status(), StatusCode::OK);
        let ct = resp.headers().get("content-type").map(|v| v.to_str().unwrap_or("").to_string());
        assert_eq!(ct.as_deref(), Some("text/event-stream"));
        SseReader { body: resp.bytes_stream().boxed(), buf: Vec::new() }
    }

    /// Like [`SseReader::open`], but `None` when the request fails (the server is gone).
    pub async fn try_open(client: &reqwest::Client, url: &str, last_event_id: Option<u64>) -> Option<SseReader> {
        let mut req = client.get(url).header("accept", "text/event-stream");
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id.to_string());
        }
        let resp = req.send().await.ok()?;
        if resp.status() == StatusCode::NO_CONTENT {
            return None; // the session ended and nothing is left: stop, as EventSource does
        }
        assert_eq!(resp.status(), StatusCode::OK);
        Some(SseReader { body: resp.bytes_stream().boxed(), buf: Vec::new() })
    }

    /// Asserts that the stream's last message is the `end` of a session
    /// whose last event is `last_seq`, and that the stream then closes.
    pub async fn expect_end(&mut self, last_seq: u64) {
        let end = self.next().await.expect("the end event");
        assert_eq!(end.event.as_deref(), Some("end"), "{end:?}");
        assert_eq!(end.id, Some(last_seq.to_string()), "{end:?}");
        let data: Value = serde_json::from_str(&end.data).expect("end JSON");
        assert_eq!(data, serde_json::json!({"last_seq": last_seq, "reason": "session_ended"}));
        assert_eq!(self.next().await, None, "nothing after the end");
    }

    /// The next event (comments skipped), `None` at the end of the stream;
    /// panics after [`WAIT`].
    pub async fn next(&mut self) -> Option<Sse> {
        tokio::time::timeout(WAIT, self.next_inner()).await.expect("an SSE event in time")
    }

    async fn next_inner(&mut self) -> Option<Sse> {
        loop {
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\n\n") {
                let block: Vec<u8> = self.buf.drain(..end + 2).collect();
                let text = String::from_utf8(block).expect("UTF-8 stream");
                let mut sse = Sse { id: None, event: None, data: String::new() };
                let mut has_data = false;
                for line in text.lines() {
                    let (field, value) = match line.split_once(':') {
                        Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                        None => (line, ""),
                    };
                    match field {
                        "" => {} // a comment (keep-alive)
                        "id" => sse.id = Some(value.to_string()),
                        "event" => sse.event = Some(value.to_string()),
                        "data" => {
                            if has_data {
                                sse.data.push('\n');
                            }
                            sse.data.push_str(value);
                            has_data = true;
                        }
                        _ => {}
                    }
                }
                if has_data || sse.event.is_some() {
                    return Some(sse);
                }
                continue;
            }
            match self.body.next().await {
                Some(Ok(chunk)) => self.buf.extend_from_slice(&chunk),
                Some(Err(_)) | None => return None,
            }
        }
    }

    /// The next event, which must be a session event: checks that `id` is its
    /// `seq` and `event` its `kind`, and returns its JSON.
    pub async fn next_event(&mut self) -> Option<Value> {
        let sse = self.next().await?;
        let value: Value = serde_json::from_str(&sse.data).expect("event JSON");
        assert_eq!(sse.event.as_deref(), value["kind"].as_str(), "{sse:?}");
        assert_eq!(sse.id.as_deref().map(|id| id.parse::<u64>().expect("numeric id")), value["seq"].as_u64());
        Some(value)
    }
}

// ----- the tcplab binary as a child process -----

/// The `tcplab` binary serving on `127.0.0.1:0` ports with a given database.
pub struct ServerProcess {
    child: Child,
    /// REST address.
    pub http: SocketAddr,
    /// gRPC address.
    pub grpc: SocketAddr,
    /// The REST client.
    pub rest: Rest,
    stderr: std::sync::mpsc::Receiver<String>,
}

/// Removes ANSI escape sequences (`ESC [ ... letter`).
pub fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The `http=` and `grpc=` addresses of the start-up log line.
pub fn parse_listening(line: &str) -> Option<(SocketAddr, SocketAddr)> {
    let line = strip_ansi(line);
    if !line.contains("tcplab listening") {
        return None;
    }
    let field = |name: &str| {
        line.split_whitespace().find_map(|w| w.strip_prefix(name)).and_then(|a| a.parse::<SocketAddr>().ok())
    };
    Some((field("http=")?, field("grpc=")?))
}

impl ServerProcess {
    /// Starts `tcplab --http 127.0.0.1:0 --grpc 127.0.0.1:0 --db <db>` and
    /// waits for its "tcplab listening" line on stderr.
    pub fn start(db: &Path) -> ServerProcess {
        ServerProcess::start_with(db, &[])
    }

    /// [`ServerProcess::start`] with more flags (limits, say).
    pub fn start_with(db: &Path, extra: &[&str]) -> ServerProcess {
        let mut command = Command::new(env!("CARGO_BIN_EXE_tcplab"));
        // No TCPLAB_* setting of the caller's (a token, a config file, a limit) may leak in.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("TCPLAB_") {
                command.env_remove(name);
            }
        }
        let mut child = command
            .args(["--http", "127.0.0.1:0", "--grpc", "127.0.0.1:0", "--db"])
            .arg(db)
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn tcplab");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        // Keep draining stderr so the server never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                // Once nobody reads any more, keep draining anyway.
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + WAIT;
        let (http, grpc) = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    assert!(!line.contains('\u{1b}'), "stderr is not a terminal: no ANSI colour codes: {line:?}");
                    if let Some(addrs) = parse_listening(&line) {
                        break addrs;
                    }
                }
                Err(e) => {
                    let _ = child.kill();
                    panic!("no 'tcplab listening' line on stderr: {e}");
                }
            }
        };
        assert!(http.ip().is_loopback() && http.port() != 0, "{http}");
        assert!(grpc.ip().is_loopback() && grpc.port() != 0, "{grpc}");
        let rest = Rest::new(&format!("http://{http}"));
        ServerProcess { child, http, grpc, rest, stderr: rx }
    }

    /// `http://` URL of gRPC.
    pub fn grpc_url(&self) -> String {
        format!("http://{}", self.grpc)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal (`TERM`, `KILL`) with the `kill` command.
    pub fn signal(&self, name: &str) {
        let status =
            Command::new("kill").arg(format!("-{name}")).arg(self.child.id().to_string()).status().expect("run kill");
        assert!(status.success(), "kill -{name} {}", self.child.id());
    }

    /// Waits for the process to exit (at most [`WAIT`]).
    pub fn wait(&mut self) -> ExitStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                panic!("tcplab did not exit within {WAIT:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stderr lines printed so far (after the start-up line).
    pub fn stderr_lines(&self) -> Vec<String> {
        self.stderr.try_iter().collect()
    }

    /// After the process exited: every stderr line not read yet, up to the
    /// end of the pipe (at most [`WAIT`]).
    pub fn remaining_stderr(&self) -> Vec<String> {
        let deadline = Instant::now() + WAIT;
        let mut lines = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(line) => lines.push(line),
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return lines,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => panic!("stderr still open after {WAIT:?}"),
            }
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A connected gRPC channel.
pub async fn grpc_channel(url: &str) -> tonic::transport::Channel {
    let endpoint = tonic::transport::Channel::from_shared(url.to_string()).expect("url").connect_timeout(WAIT);
    endpoint.connect().await.expect("connect to gRPC")
}

/// Every stored event of a session over gRPC `ListEvents`, all pages.
pub async fn grpc_all_events(
    lab: &mut tcplab::api::grpc::pb::lab_service_client::LabServiceClient<tonic::transport::Channel>,
    sid: u64,
) -> Vec<tcplab::api::grpc::pb::Event> {
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let page = lab
            .list_events(tcplab::api::grpc::pb::ListEventsRequest {
                session_id: sid,
                after_seq: Some(after),
                limit: Some(10_000),
                ..Default::default()
            })
            .await
            .expect("list events")
            .into_inner();
        if page.events.is_empty() {
            return out;
        }
        after = page.next_after_seq;
        out.extend(page.events);
    }
}
