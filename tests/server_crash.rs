//! Crash safety of the real `tcplab` binary: 20 times over one database,
//! start the server, make it busy (two sessions, four connections each,
//! sending both ways over lossy links, driven by two tasks that send and run
//! the clock until idle in a loop, with an SSE observer on one session), and
//! SIGKILL it at a random moment (seeded: `TCPLAB_CRASH_SEED`). After each
//! kill the file must pass `PRAGMA integrity_check`, every session's stored
//! events must be numbered 1..n without a gap, and where the observer saw
//! them, be exactly the events the session emitted. A second observer follows
//! the other session with `?durable=true`: every event it received must be
//! in the file after the kill (the default stream may be ahead of it). Each start must answer
//! `/healthz` within one second of the spawn (the worst is printed).

mod common;

use std::os::unix::process::ExitStatusExt as _;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::server::{Rest, ServerProcess, SseReader};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};

const ROUNDS: usize = 20;
const SESSIONS: usize = 2;
const CONNECTIONS: usize = 4;

/// A small deterministic generator (xorshift64*), so a failing run can be repeated with its seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

/// What a killed server left in its file, read directly: the integrity
/// check, per session (id, event count, first seq, last seq), and the events
/// (seq, body) of one watched session.
struct Stored {
    integrity: Vec<String>,
    sessions: Vec<(i64, i64, i64, i64)>,
    watched: Vec<(i64, Value)>,
}

impl Stored {
    async fn read(db: &Path, watched: u64) -> Stored {
        let options = SqliteConnectOptions::new().filename(db).create_if_missing(false);
        let pool = SqlitePoolOptions::new().max_connections(1).connect_with(options).await.expect("open the database");
        let integrity: Vec<String> =
            sqlx::query_scalar("PRAGMA integrity_check").fetch_all(&pool).await.expect("integrity_check");
        let sessions: Vec<(i64, i64, i64, i64)> = sqlx::query_as(
            "SELECT s.id, COUNT(e.seq), COALESCE(MIN(e.seq), 0), COALESCE(MAX(e.seq), 0) \
             FROM sessions s LEFT JOIN events e ON e.session_id = s.id GROUP BY s.id ORDER BY s.id",
        )
        .fetch_all(&pool)
        .await
        .expect("sessions");
        let rows: Vec<(i64, String)> = sqlx::query_as("SELECT seq, body FROM events WHERE session_id = ? ORDER BY seq")
            .bind(watched as i64)
            .fetch_all(&pool)
            .await
            .expect("events");
        pool.close().await;
        let watched =
            rows.into_iter().map(|(seq, body)| (seq, serde_json::from_str(&body).expect("stored JSON"))).collect();
        Stored { integrity, sessions, watched }
    }
}

/// Starts the server on `db` and returns it with the time from spawn to the first 200 of `/healthz`.
async fn start(db: &Path) -> (ServerProcess, Duration) {
    let spawned = Instant::now();
    let server = tokio::task::block_in_place(|| ServerProcess::start(db));
    let client = reqwest::Client::builder().timeout(Duration::from_secs(1)).no_proxy().build().expect("client");
    let url = server.rest.url("/healthz");
    loop {
        if let Ok(resp) = client.get(&url).send().await {
            if resp.status() == StatusCode::OK {
                return (server, spawned.elapsed());
            }
        }
        assert!(spawned.elapsed() < Duration::from_secs(5), "no /healthz answer within 5 s");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// A manual session with hosts A and B, a lossy link, a listener on B:80
/// and `CONNECTIONS` established connections; returns (session, connections).
async fn busy_session(rest: &Rest, round: usize, i: usize) -> (u64, Vec<u64>) {
    let sid = rest.manual_session(&format!("crash {round}.{i}"), json!({})).await;
    rest.two_hosts_and_listener(sid).await;
    let link = json!({"a": "A", "b": "B", "latency_ms": 2.0, "loss": 0.05, "duplicate": 0.02, "reorder": 0.02});
    let (status, body) = rest.put(&format!("/api/v1/sessions/{sid}/links"), link).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut conns = Vec::new();
    for _ in 0..CONNECTIONS {
        let open = json!({"client": "A", "server": "B", "port": 80});
        let conn = rest.post_expect(&format!("/api/v1/sessions/{sid}/connections"), open, StatusCode::CREATED).await;
        conns.push(conn["id"].as_u64().expect("connection id"));
    }
    rest.run_until_idle(sid).await;
    (sid, conns)
}

/// Sends on every connection both ways and runs the clock until idle, over
/// and over, until a request fails (the server was killed). Returns the loops done.
async fn drive(rest: Rest, sid: u64, conns: Vec<u64>) -> u64 {
    let data = "x".repeat(8 * 1024);
    let mut loops = 0;
    loop {
        for &cid in &conns {
            for side in ["client", "server"] {
                let url = rest.url(&format!("/api/v1/sessions/{sid}/connections/{cid}/send"));
                if rest.client.post(url).json(&json!({"side": side, "data": data})).send().await.is_err() {
                    return loops;
                }
            }
        }
        let url = rest.url(&format!("/api/v1/sessions/{sid}/clock"));
        match rest.client.post(url).json(&json!({"action": "run_until_idle"})).send().await {
            Ok(resp) if resp.status() == StatusCode::OK => loops += 1,
            _ => return loops,
        }
    }
}

/// Follows a session's SSE stream (`query`: `""` or `"?durable=true"`)
/// until the server is gone (resuming after `lagged`).
async fn observe(rest: Rest, sid: u64, query: &'static str, observed: Arc<Mutex<Vec<Value>>>) {
    let url = rest.url(&format!("/api/v1/sessions/{sid}/events/stream{query}"));
    loop {
        let last = observed.lock().expect("lock").len() as u64;
        let Some(mut reader) = SseReader::try_open(&rest.client, &url, Some(last)).await else { return };
        loop {
            // A killed server may leave the connection open a moment: stop at the first error or end.
            let next = tokio::time::timeout(Duration::from_secs(3), reader.next()).await;
            let Ok(Some(sse)) = next else { return };
            if sse.event.as_deref() == Some("lagged") {
                break;
            }
            if sse.event.as_deref() == Some("end") {
                return; // the session ended (a graceful stop ends them)
            }
            let e: Value = serde_json::from_str(&sse.data).expect("event JSON");
            let mut seen = observed.lock().expect("lock");
            assert_eq!(e["seq"].as_u64(), Some(seen.len() as u64 + 1), "the stream has no gap and no duplicate");
            seen.push(e);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_sigkills_leave_a_sound_database_with_gap_free_histories() {
    let seed = std::env::var("TCPLAB_CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5eed_c0ff_ee15_u64);
    println!("TCPLAB_CRASH_SEED={seed}");
    let mut rng = Rng(seed | 1);
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("crash.db");
    let started = Instant::now();
    let mut worst_start = Duration::ZERO;
    let mut total_events = 0i64;

    for round in 0..ROUNDS {
        let (mut server, took) = start(&db).await;
        worst_start = worst_start.max(took);
        assert!(took < Duration::from_secs(1), "round {round}: /healthz after {took:?}");
        let rest = server.rest.clone();
        // Every session of earlier rounds was marked ended by this start.
        let list = rest.get_ok("/api/v1/sessions?limit=1000").await;
        let sessions = list["sessions"].as_array().expect("sessions");
        assert_eq!(sessions.len(), round * SESSIONS, "round {round}");
        assert!(sessions.iter().all(|s| s["status"] == "ended"), "round {round}: {list}");

        let round_start = Instant::now();
        let mut drivers = Vec::new();
        let observed = Arc::new(Mutex::new(Vec::new()));
        let durable_observed = Arc::new(Mutex::new(Vec::new()));
        let (mut watched, mut durably_watched) = (0, 0);
        let mut sessions = Vec::new();
        for i in 0..SESSIONS {
            sessions.push(busy_session(&rest, round, i).await);
        }
        for (i, (sid, conns)) in sessions.into_iter().enumerate() {
            match i {
                0 => watched = sid,
                1 => durably_watched = sid,
                _ => {}
            }
            drivers.push(tokio::spawn(drive(rest.clone(), sid, conns)));
        }
        let observer = tokio::spawn(observe(rest.clone(), watched, "", observed.clone()));
        let durable_observer =
            tokio::spawn(observe(rest.clone(), durably_watched, "?durable=true", durable_observed.clone()));
        let set_up = round_start.elapsed();
        // The random moment: 50..550 ms into the busy phase.
        tokio::time::sleep(Duration::from_millis(50 + rng.below(500))).await;
        server.signal("KILL");
        let killed_at = round_start.elapsed();
        let status = tokio::task::block_in_place(|| server.wait());
        assert_eq!(status.signal(), Some(9), "round {round}: {status:?}");
        let mut loops = 0;
        for driver in drivers {
            loops +=
                tokio::time::timeout(Duration::from_secs(10), driver).await.expect("driver stops").expect("driver");
        }
        tokio::time::timeout(Duration::from_secs(10), observer).await.expect("observer stops").expect("observer");
        tokio::time::timeout(Duration::from_secs(10), durable_observer)
            .await
            .expect("durable observer stops")
            .expect("durable observer");

        let stored = Stored::read(&db, watched).await;
        assert_eq!(stored.integrity, ["ok"], "round {round}: PRAGMA integrity_check");
        assert_eq!(stored.sessions.len(), (round + 1) * SESSIONS, "round {round}");
        for &(sid, count, first, last) in &stored.sessions {
            // (session_id, seq) is the primary key: n rows numbered 1..=n are exactly 1, 2, ..., n.
            assert!(
                count == 0 || (first == 1 && last == count),
                "round {round}: session {sid}: {count} events, seq {first}..={last}"
            );
        }
        let observed = observed.lock().expect("lock").clone();
        let events = &stored.watched;
        for ((seq, body), seen) in events.iter().zip(&observed) {
            assert_eq!(body, seen, "round {round}: stored event {seq} is the one the session emitted");
        }
        // What the durable stream delivered outlived the kill, every event of it.
        let durable_seen = durable_observed.lock().expect("lock").clone();
        let durably_stored = Stored::read(&db, durably_watched).await.watched;
        assert!(
            durable_seen.len() <= durably_stored.len(),
            "round {round}: the durable stream delivered {} events, the file holds {}",
            durable_seen.len(),
            durably_stored.len()
        );
        for ((seq, body), seen) in durably_stored.iter().zip(&durable_seen) {
            assert_eq!(body, seen, "round {round}: durable event {seq}");
        }
        let this_round: i64 = stored.sessions.iter().rev().take(SESSIONS).map(|s| s.1).sum();
        assert!(this_round > 0, "round {round}: the sessions stored events");
        total_events += this_round;
        println!(
            "round {round}: set-up {set_up:?}, killed at {killed_at:?}, checked at {:?}; /healthz after {took:?}, {loops} send+run loops, {this_round} events stored, \
             {} observed, {} in common; durable stream: {} delivered, {} stored",
            round_start.elapsed(),
            observed.len(),
            events.len().min(observed.len()),
            durable_seen.len(),
            durably_stored.len()
        );
    }
    // A last start after the last kill.
    let (server, took) = start(&db).await;
    worst_start = worst_start.max(took);
    assert!(took < Duration::from_secs(1), "final start: /healthz after {took:?}");
    let list = server.rest.get_ok("/api/v1/sessions?limit=1000").await;
    assert_eq!(list["sessions"].as_array().map(Vec::len), Some(ROUNDS * SESSIONS));
    drop(server);
    println!(
        "{ROUNDS} SIGKILLs: {total_events} events stored in all, worst spawn-to-/healthz {worst_start:?}, total {:?}",
        started.elapsed()
    );
}
