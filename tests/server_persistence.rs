//! Persistence across restarts of the real `tcplab` binary: a graceful stop
//! (SIGTERM) flushes everything and exits 0, the next start lists the earlier
//! sessions as ended with their whole history over REST and gRPC; a SIGKILL
//! in the middle of a busy session leaves a database that passes
//! `PRAGMA integrity_check` and holds a gap-free prefix of the emitted events.

mod common;

use std::os::unix::process::ExitStatusExt as _;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::server::{CLEAN_RUN, Rest, ServerProcess, SseReader, WAIT, assert_contiguous, describe, grpc_channel};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use tcplab::api::grpc::pb;
use tcplab::api::grpc::pb::lab_service_client::LabServiceClient;
use tcplab::api::grpc::pb::watch_events_response::Item;

/// The stored state of a database, read directly: integrity check, sessions
/// (id, status, ended) and each session's events (seq, body as JSON).
struct Stored {
    integrity: Vec<String>,
    sessions: Vec<(i64, String, bool)>,
    events: Vec<(i64, i64, Value)>,
}

async fn read_db(db: &Path) -> Stored {
    let options = SqliteConnectOptions::new().filename(db).create_if_missing(false);
    let pool = SqlitePoolOptions::new().max_connections(1).connect_with(options).await.expect("open the database");
    let integrity: Vec<String> =
        sqlx::query_scalar("PRAGMA integrity_check").fetch_all(&pool).await.expect("integrity_check");
    let sessions: Vec<(i64, String, Option<String>)> =
        sqlx::query_as("SELECT id, status, ended_at FROM sessions ORDER BY id")
            .fetch_all(&pool)
            .await
            .expect("sessions");
    let rows: Vec<(i64, i64, String)> =
        sqlx::query_as("SELECT session_id, seq, body FROM events ORDER BY session_id, seq")
            .fetch_all(&pool)
            .await
            .expect("events");
    pool.close().await;
    Stored {
        integrity,
        sessions: sessions.into_iter().map(|(id, status, ended)| (id, status, ended.is_some())).collect(),
        events: rows
            .into_iter()
            .map(|(sid, seq, body)| (sid, seq, serde_json::from_str(&body).expect("stored JSON")))
            .collect(),
    }
}

impl Stored {
    fn of(&self, sid: i64) -> Vec<(i64, Value)> {
        self.events.iter().filter(|e| e.0 == sid).map(|e| (e.1, e.2.clone())).collect()
    }
}

/// SIGTERM, then exit code 0 and the "shut down cleanly" log line.
fn stop_gracefully(server: &mut ServerProcess) {
    server.signal("TERM");
    let status = tokio::task::block_in_place(|| server.wait());
    assert_eq!(status.code(), Some(0), "exit status after SIGTERM: {status:?}");
    let log = server.remaining_stderr();
    assert!(log.iter().any(|l| l.contains("shut down cleanly")), "{log:#?}");
    assert!(!log.iter().any(|l| l.contains("ERROR")), "{log:#?}");
}

async fn post(rest: &Rest, path: &str, body: Value, want: StatusCode) -> Value {
    rest.post_expect(path, body, want).await
}

/// The clean run through REST (39 events); returns the connection id.
async fn clean_run(rest: &Rest, sid: u64) -> u64 {
    rest.two_hosts_and_listener(sid).await;
    let conn = post(
        rest,
        &format!("/api/v1/sessions/{sid}/connections"),
        json!({"client": "A", "server": "B", "port": 80, "client_port": 40000, "isn": 300}),
        StatusCode::CREATED,
    )
    .await;
    let cid = conn["id"].as_u64().expect("id");
    let base = format!("/api/v1/sessions/{sid}/connections/{cid}");
    rest.run_until_idle(sid).await;
    rest.post_ok(&format!("{base}/send"), json!({"side": "client", "data": "a".repeat(100)})).await;
    rest.run_until_idle(sid).await;
    rest.post_ok(&format!("{base}/send"), json!({"side": "server", "data": "b".repeat(200)})).await;
    rest.run_until_idle(sid).await;
    rest.post_ok(&format!("{base}/close"), json!({"side": "client"})).await;
    rest.run_until_idle(sid).await;
    rest.post_ok(&format!("{base}/close"), json!({"side": "server"})).await;
    rest.run_until_idle(sid).await;
    let conn = rest.get_ok(&base).await;
    assert_eq!((conn["client"]["state"].as_str(), conn["server"]["state"].as_str()), (Some("CLOSED"), Some("CLOSED")));
    cid
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_and_their_history_survive_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("t.db");
    let mut first = ServerProcess::start(&db);
    let rest = first.rest.clone();

    // Session 1: the clean run, complete.
    let s1 = rest.manual_session("before restart", json!({"msl_ms": 500})).await;
    clean_run(&rest, s1).await;
    let events1 = rest.all_events(s1).await;
    assert_eq!(events1.iter().map(describe).collect::<Vec<_>>(), CLEAN_RUN);
    let segments1 = rest.get_ok(&format!("/api/v1/sessions/{s1}/segments")).await;

    // Session 2: still live at SIGTERM, with events nobody has asked to be
    // flushed yet, and an SSE stream and a gRPC watch open on it.
    let s2 = rest.manual_session("live at shutdown", json!({"msl_ms": 500})).await;
    rest.two_hosts_and_listener(s2).await;
    let mut sse = SseReader::open(&rest.client, &rest.url(&format!("/api/v1/sessions/{s2}/events/stream")), None).await;
    assert_eq!(sse.next_event().await.map(|e| describe(&e)).as_deref(), Some(CLEAN_RUN[0]));
    let mut lab = LabServiceClient::new(grpc_channel(&first.grpc_url()).await);
    let mut watch = lab
        .watch_events(pb::WatchEventsRequest { session_id: s2, ..Default::default() })
        .await
        .expect("watch")
        .into_inner();
    let w = tokio::time::timeout(WAIT, watch.message()).await.expect("in time").expect("ok").expect("event 1");
    assert!(matches!(w.item, Some(Item::Event(e)) if e.seq == 1));
    post(
        &rest,
        &format!("/api/v1/sessions/{s2}/connections"),
        json!({"client": "A", "server": "B", "port": 80, "isn": 300}),
        StatusCode::CREATED,
    )
    .await;
    rest.post_ok(&format!("/api/v1/sessions/{s2}/clock"), json!({"action": "step"})).await;
    let live = rest.get_ok(&format!("/api/v1/sessions/{s2}")).await;
    assert_eq!((live["status"].as_str(), live["events"].as_u64()), (Some("live"), Some(7)));

    stop_gracefully(&mut first);
    // The streams ended with the server.
    let mut streamed = 1;
    while let Some(e) = sse.next().await {
        assert_ne!(e.event.as_deref(), Some("lagged"));
        if e.event.as_deref() == Some("end") {
            // A session a graceful stop ends says so, with its last event.
            assert_eq!(e.id.as_deref(), Some("7"), "{e:?}");
            continue;
        }
        streamed += 1;
    }
    assert_eq!(streamed, 7, "the SSE stream got every event, then ended");
    while let Ok(Some(w)) = tokio::time::timeout(WAIT, watch.message()).await.expect("the watch ends") {
        assert!(matches!(w.item, Some(Item::Event(e)) if e.seq <= 7));
    }
    drop((watch, lab));

    // Everything is in the file.
    let stored = read_db(&db).await;
    assert_eq!(stored.integrity, ["ok"]);
    assert_eq!(stored.sessions, [(1, "ended".to_string(), true), (2, "ended".to_string(), true)]);
    let stored1 = stored.of(1);
    assert_eq!(stored1.iter().map(|e| e.0).collect::<Vec<_>>(), (1..=39).collect::<Vec<i64>>());
    assert_eq!(stored1.into_iter().map(|e| e.1).collect::<Vec<_>>(), events1);
    let stored2 = stored.of(2);
    assert_eq!(stored2.iter().map(|e| e.0).collect::<Vec<_>>(), [1, 2, 3, 4, 5, 6, 7], "the shutdown flushed them");
    assert_eq!(stored2.iter().map(|e| describe(&e.1)).collect::<Vec<_>>(), CLEAN_RUN[..7]);

    // Restart on the same file.
    let mut second = ServerProcess::start(&db);
    let rest = second.rest.clone();
    let list = rest.get_ok("/api/v1/sessions").await;
    assert_eq!(list["total"], 2);
    let sessions = list["sessions"].as_array().expect("sessions");
    let summary: Vec<(u64, &str, &str, u64)> = sessions
        .iter()
        .map(|s| {
            assert!(s["ended_at"].is_string(), "{s}");
            (
                s["id"].as_u64().unwrap(),
                s["name"].as_str().unwrap(),
                s["status"].as_str().unwrap(),
                s["events"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(summary, [(1, "before restart", "ended", 39), (2, "live at shutdown", "ended", 7)]);
    assert_eq!(sessions[0]["now_ns"], 1_100_000_000u64, "the last event's virtual time");
    assert_eq!(sessions[0]["profile"]["msl_ms"], 500);
    assert_eq!(rest.all_events(s1).await, events1);
    assert_eq!(rest.get_ok(&format!("/api/v1/sessions/{s1}/segments")).await, segments1);
    let page = rest.get_ok(&format!("/api/v1/sessions/{s1}/events?kind=state_changed&connection=1&after_seq=24")).await;
    let seqs: Vec<u64> = page["events"].as_array().unwrap().iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, [27, 30, 31, 34, 37, 39]);
    // An ended session's events still stream (history, then the end).
    let mut old =
        SseReader::open(&rest.client, &rest.url(&format!("/api/v1/sessions/{s1}/events/stream")), Some(37)).await;
    assert_eq!(old.next_event().await.map(|e| describe(&e)).as_deref(), Some(CLEAN_RUN[37]));
    assert_eq!(old.next_event().await.map(|e| describe(&e)).as_deref(), Some(CLEAN_RUN[38]));
    old.expect_end(39).await;
    // It refuses commands; new sessions get new ids.
    let got = rest.post(&format!("/api/v1/sessions/{s1}/clock"), json!({"action": "step"})).await;
    common::server::assert_error(&got, StatusCode::CONFLICT, "failed_precondition", Some("has ended"));
    assert_eq!(rest.manual_session("after restart", json!({})).await, 3);

    // The same history over gRPC.
    let mut lab = LabServiceClient::new(grpc_channel(&second.grpc_url()).await);
    let info = lab.get_session(pb::SessionRef { session_id: s1 }).await.expect("get").into_inner();
    assert_eq!((info.status(), info.events, info.name.as_str()), (pb::SessionStatus::Ended, 39, "before restart"));
    let page = lab
        .list_events(pb::ListEventsRequest { session_id: s1, ..Default::default() })
        .await
        .expect("events")
        .into_inner();
    let got: Vec<Value> = page.events.iter().map(|e| serde_json::from_str(&e.json).expect("JSON")).collect();
    assert_eq!(got, events1);
    let segs = lab.list_segments(pb::SessionRef { session_id: s1 }).await.expect("segments").into_inner().segments;
    assert_eq!(segs.len(), 11);
    assert!(segs.iter().all(|s| s.fate() == pb::Fate::Delivered));
    assert_eq!(segs.iter().map(|s| s.id).collect::<Vec<_>>(), (1..=11).collect::<Vec<u64>>());
    let mut replay = lab
        .watch_events(pb::WatchEventsRequest { session_id: s2, after_seq: 4, ..Default::default() })
        .await
        .expect("watch")
        .into_inner();
    let mut replayed = Vec::new();
    while let Some(w) = tokio::time::timeout(WAIT, replay.message()).await.expect("in time").expect("ok") {
        let Some(Item::Event(e)) = w.item else { panic!("only events: {w:?}") };
        replayed.push(e.seq);
    }
    assert_eq!(replayed, [5, 6, 7]);
    drop((replay, lab));
    stop_gracefully(&mut second);
}

/// Events observed over SSE, by seq from 1.
type Observed = Arc<Mutex<Vec<Value>>>;

/// Follows a session's SSE stream until the server goes away, resuming with
/// `Last-Event-ID` if the stream ends early (e.g. `lagged`).
async fn observe(rest: Rest, sid: u64, observed: Observed) {
    let url = rest.url(&format!("/api/v1/sessions/{sid}/events/stream"));
    loop {
        let last = observed.lock().unwrap().len() as u64;
        let Some(mut reader) = SseReader::try_open(&rest.client, &url, Some(last)).await else {
            return; // the server is gone
        };
        while let Some(sse) = reader.next().await {
            if sse.event.as_deref() == Some("lagged") {
                break;
            }
            if sse.event.as_deref() == Some("end") {
                return; // the session ended
            }
            let e: Value = serde_json::from_str(&sse.data).expect("event JSON");
            let mut seen = observed.lock().unwrap();
            assert_eq!(e["seq"].as_u64(), Some(seen.len() as u64 + 1), "the stream has no gap and no duplicate");
            seen.push(e);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_in_a_busy_session_leaves_a_sound_gap_free_prefix() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("t.db");
    let mut server = ServerProcess::start(&db);
    let rest = server.rest.clone();

    // A lossy 3 MiB transfer.
    let sid = rest.manual_session("busy", json!({})).await;
    rest.two_hosts_and_listener(sid).await;
    let (status, link) =
        rest.put(&format!("/api/v1/sessions/{sid}/links"), json!({"a": "A", "b": "B", "loss": 0.03})).await;
    assert_eq!(status, StatusCode::OK, "{link}");
    let conn = post(
        &rest,
        &format!("/api/v1/sessions/{sid}/connections"),
        json!({"client": "A", "server": "B", "port": 80, "isn": 300}),
        StatusCode::CREATED,
    )
    .await;
    let cid = conn["id"].as_u64().unwrap();
    rest.run_until_idle(sid).await;
    let data: Vec<u8> = (0..3 * 1_048_576u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let b64 = base64::engine::general_purpose::STANDARD.encode(&data);
    let sent = rest
        .post_ok(
            &format!("/api/v1/sessions/{sid}/connections/{cid}/send"),
            json!({"side": "client", "data_base64": b64}),
        )
        .await;
    assert_eq!(sent["accepted"], 3 * 1_048_576);
    // Reading events flushes them: these are committed for sure.
    let committed = rest.all_events(sid).await.len();
    assert!(committed >= 12, "{committed}");

    let observed: Observed = Arc::new(Mutex::new(Vec::new()));
    let watcher = tokio::spawn(observe(rest.clone(), sid, observed.clone()));
    let driver = {
        let rest = rest.clone();
        tokio::spawn(async move {
            let mut steps = 0u64;
            loop {
                let resp = rest
                    .client
                    .post(rest.url(&format!("/api/v1/sessions/{sid}/clock")))
                    .json(&json!({"action": "advance", "ms": 50}))
                    .send()
                    .await;
                match resp {
                    Ok(r) if r.status() == StatusCode::OK => steps += 1,
                    _ => return steps, // killed
                }
            }
        })
    };

    // Kill it while events pour out.
    let deadline = Instant::now() + WAIT;
    while observed.lock().unwrap().len() < 3_000 {
        assert!(Instant::now() < deadline, "the session got busy");
        assert!(!driver.is_finished(), "the driver keeps going");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let live = rest.get_ok(&format!("/api/v1/sessions/{sid}/connections/{cid}")).await;
    assert!(live["server"]["received_bytes"].as_u64().unwrap() < 3 * 1_048_576, "still busy: {live}");
    server.signal("KILL");
    let status = tokio::task::block_in_place(|| server.wait());
    assert_eq!(status.signal(), Some(9), "{status:?}");
    let steps = tokio::time::timeout(WAIT, driver).await.expect("driver stops").expect("driver");
    assert!(steps > 0);
    tokio::time::timeout(WAIT, watcher).await.expect("watcher stops").expect("watcher");
    let observed = observed.lock().unwrap().clone();
    assert!(observed.len() >= 3_000);
    assert_contiguous(&observed, 1);

    // The file as the kill left it.
    let check = |stored: &Stored, label: &str| -> usize {
        assert_eq!(stored.integrity, ["ok"], "{label}");
        let events = stored.of(1);
        let n = events.len();
        assert!(n >= committed, "{label}: {n} stored, {committed} flushed before the kill");
        for (i, (seq, body)) in events.iter().enumerate() {
            assert_eq!(*seq, i as i64 + 1, "{label}: gap-free from 1");
            if let Some(seen) = observed.get(i) {
                assert_eq!(body, seen, "{label}: stored event {seq} is the one emitted");
            }
        }
        n
    };
    let after_kill = read_db(&db).await;
    let n = check(&after_kill, "after SIGKILL");
    eprintln!("{committed} flushed before, {} observed, {n} stored after SIGKILL, {steps} clock steps", observed.len());
    assert_eq!(after_kill.sessions, [(1, "live".to_string(), false)], "nobody ended it");

    // Restart: the session is marked ended, its stored prefix is served.
    let mut restarted = ServerProcess::start(&db);
    let rest = restarted.rest.clone();
    let info = rest.get_ok(&format!("/api/v1/sessions/{sid}")).await;
    assert_eq!((info["status"].as_str(), info["events"].as_u64()), (Some("ended"), Some(n as u64)));
    let served = rest.all_events(sid).await;
    assert_eq!(served.len(), n);
    assert_eq!(served, after_kill.of(1).into_iter().map(|e| e.1).collect::<Vec<_>>());
    let segments = rest.get_ok(&format!("/api/v1/sessions/{sid}/segments")).await;
    let segments = segments["segments"].as_array().expect("segments");
    let sent = served.iter().filter(|e| e["kind"] == "segment_sent").count();
    assert_eq!(segments.len(), sent, "one entry per segment sent");
    stop_gracefully(&mut restarted);
    let after_restart = read_db(&db).await;
    assert_eq!(check(&after_restart, "after restart"), n);
    assert_eq!(after_restart.sessions, [(1, "ended".to_string(), true)]);
}
