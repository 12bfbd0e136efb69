//! Server benchmarks over the real APIs on loopback: a bounded program that
//! prints numbers (no timed assertions), run with `cargo bench --bench server`.
//!
//! What it measures, as the server issue lists it:
//! 1. REST requests/s and latency percentiles of `GET .../connections/{cid}`
//!    with many keep-alive clients;
//! 2. connection lifecycles/s driven through REST (open, run, close both
//!    sides, run until idle: five requests per lifecycle);
//! 3. events/s delivered live to one gRPC `WatchEvents` subscriber and to
//!    100 subscribers (aggregate), while one REST call runs a bulk transfer;
//! 4. events/s persisted to SQLite during that run (from the writer's counters).
//!
//! The server runs in this process on its own runtime (two worker threads),
//! the load generator on another; on a 2-core machine they share the cores,
//! so the figures are a lower bound for a server with the machine to itself.
//! `TCPLAB_BENCH_SECS` (default 5) bounds each timed phase; `TCPLAB_BENCH_REST=0` skips the REST phases;
//! `TCPLAB_BENCH_SUBSCRIBERS` (default `1,100`) lists the stream phases' subscriber counts and
//! `TCPLAB_BENCH_RUNS` (default 5) how many times each runs (the median is reported: one run is
//! a single draw of how the two cores were shared); `TCPLAB_BENCH_LAG` sets the lag threshold.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tcplab::api::grpc::pb::WatchEventsRequest;
use tcplab::api::grpc::pb::lab_service_client::LabServiceClient;
use tcplab::api::grpc::pb::watch_events_response::Item;
use tcplab::server::{Server, ServerConfig};
use tcplab::service::Limits;
use tokio_stream::StreamExt as _;

fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench`; filters are not supported here.
    let secs: u64 = std::env::var("TCPLAB_BENCH_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(5);
    let dir = tempfile::tempdir()?;
    let server_rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let config = ServerConfig {
        http: "127.0.0.1:0".parse()?,
        grpc: "127.0.0.1:0".parse()?,
        db: dir.path().join("bench.db"),
        limits: Limits {
            broadcast_capacity: std::env::var("TCPLAB_BENCH_LAG")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(Limits::default().broadcast_capacity),
            ..Limits::default()
        },
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = server_rt.block_on(Server::bind(config))?;
    let http = server.http_addr()?;
    let grpc = server.grpc_addr()?;
    let service = server.service().clone();
    let running = server_rt.spawn(server.run(async move {
        let _ = stop_rx.await;
    }));

    let client_rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    client_rt.block_on(async move {
        let api = Api::new(http);
        println!("tcplab server bench: REST http://{http}, gRPC {grpc}, {secs} s per timed phase");
        // TCPLAB_BENCH_REST=0 skips the REST phases (to profile the streams alone).
        if std::env::var("TCPLAB_BENCH_REST").map_or(true, |v| v != "0") {
            rest_get_connection(&api, secs).await?;
            rest_lifecycles(&api, secs).await?;
        }
        // The same seeded transfer in fresh sessions: alone (how fast the
        // session makes events), then watched live by 1 and by 100 streams.
        // Each timed stream phase starts with the writer caught up with what
        // came before (the REST phases leave thousands of sessions' events).
        wait_persisted(&service, service.counters().2).await;
        let (alone_events, alone) = transfer(&api, grpc, 0).await?;
        println!(
            "Session alone: a 2 MiB transfer with mss 100 over a 1% lossy link makes {alone_events} events in {:.3} s ({:.0} events/s, no subscriber)",
            alone.elapsed.as_secs_f64(),
            alone_events as f64 / alone.elapsed.as_secs_f64()
        );
        let subscriber_counts: Vec<usize> = std::env::var("TCPLAB_BENCH_SUBSCRIBERS")
            .ok()
            .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect())
            .unwrap_or_else(|| vec![1, 100]);
        let runs: usize = std::env::var("TCPLAB_BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(5).max(1);
        for subscribers in subscriber_counts {
            let mut rates = Vec::new();
            for _ in 0..runs {
                wait_persisted(&service, service.counters().2).await;
                let (events, run) = transfer(&api, grpc, subscribers).await?;
                let per_subscriber = events as f64 / run.elapsed.as_secs_f64();
                println!(
                    "WatchEvents live, {subscribers:>3} subscriber(s): {events} events each in {:.3} s: {per_subscriber:.0} events/s per subscriber, {:.0} events/s delivered in all, {} lag-and-resume(s)",
                    run.elapsed.as_secs_f64(),
                    run.delivered as f64 / run.elapsed.as_secs_f64(),
                    run.resumes
                );
                rates.push(per_subscriber);
            }
            rates.sort_by(f64::total_cmp);
            println!(
                "WatchEvents live, {subscribers:>3} subscriber(s), median of {runs}: {:.0} events/s per subscriber, {:.0} events/s delivered in all",
                rates[rates.len() / 2],
                rates[rates.len() / 2] * subscribers as f64
            );
        }
        // Replay: the stored log of an idle session (ring and SQLite), as fast
        // as the stream goes, once the writer has caught up with the runs above.
        wait_persisted(&service, service.counters().2).await;
        let (events, replay) = replay(&api, grpc, alone.sid).await?;
        println!(
            "WatchEvents replay of {events} stored events to 1 subscriber: {:.3} s, {:.0} events/s",
            replay.as_secs_f64(),
            events as f64 / replay.as_secs_f64()
        );
        // Persistence: everything published so far is committed; then time
        // how long the writer takes to commit one more transfer's events.
        wait_persisted(&service, service.counters().2).await;
        let before = service.counters().3;
        let t = Instant::now();
        let (events, _) = transfer(&api, grpc, 0).await?;
        let (persisted, at) = wait_persisted(&service, before + events).await;
        println!(
            "SQLite: {} of {events} events persisted {:.3} s after the transfer began: {:.0} events/s end to end",
            persisted - before,
            (at - t).as_secs_f64(),
            (persisted - before) as f64 / (at - t).as_secs_f64()
        );
        anyhow::Ok(())
    })?;
    let _ = stop_tx.send(());
    server_rt.block_on(running)??;
    Ok(())
}

/// A small REST client that fails on any non-2xx answer, so that an error
/// never counts as a fast request.
#[derive(Clone)]
struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    fn new(addr: SocketAddr) -> Api {
        let http = reqwest::Client::builder().pool_max_idle_per_host(256).build().expect("reqwest client");
        Api { base: format!("http://{addr}/api/v1"), http }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let mut req = self.http.request(method.clone(), format!("{}{path}", self.base));
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await?;
        let status = resp.status();
        let text = resp.text().await?;
        anyhow::ensure!(status.is_success(), "{method} {path}: {status} {text}");
        Ok(if text.is_empty() { Value::Null } else { serde_json::from_str(&text)? })
    }

    async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    /// A manual-clock session with hosts A and B, a 1 ms link and a listener on B:80.
    async fn session(&self, name: &str) -> anyhow::Result<u64> {
        let s = self.post("/sessions", json!({"name": name, "seed": 7, "clock": "manual"})).await?;
        let sid = s["id"].as_u64().ok_or_else(|| anyhow::anyhow!("no session id"))?;
        self.post(&format!("/sessions/{sid}/hosts"), json!({"name": "A", "ip": "10.0.0.1"})).await?;
        self.post(&format!("/sessions/{sid}/hosts"), json!({"name": "B", "ip": "10.0.0.2"})).await?;
        self.call(
            reqwest::Method::PUT,
            &format!("/sessions/{sid}/links"),
            Some(json!({"a": "A", "b": "B", "latency_ms": 1})),
        )
        .await?;
        self.post(&format!("/sessions/{sid}/listeners"), json!({"host": "B", "port": 80})).await?;
        Ok(sid)
    }

    async fn run_until_idle(&self, sid: u64) -> anyhow::Result<Value> {
        self.post(&format!("/sessions/{sid}/clock"), json!({"action": "run_until_idle"})).await
    }
}

/// Many keep-alive clients each GET one connection in a loop.
async fn rest_get_connection(api: &Api, secs: u64) -> anyhow::Result<()> {
    let sid = api.session("bench-get").await?;
    let conn =
        api.post(&format!("/sessions/{sid}/connections"), json!({"client": "A", "server": "B", "port": 80})).await?;
    let cid = conn["id"].as_u64().ok_or_else(|| anyhow::anyhow!("no connection id"))?;
    api.run_until_idle(sid).await?;
    for clients in [16usize, 64] {
        let deadline = Instant::now() + Duration::from_secs(secs);
        let start = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..clients {
            let api = api.clone();
            let path = format!("{}/sessions/{sid}/connections/{cid}", api.base);
            tasks.push(tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(64 * 1024);
                while Instant::now() < deadline {
                    let t = Instant::now();
                    let resp = api.http.get(&path).send().await?;
                    anyhow::ensure!(resp.status().is_success(), "GET connection: {}", resp.status());
                    let body = resp.bytes().await?;
                    anyhow::ensure!(!body.is_empty(), "empty body");
                    latencies.push(t.elapsed());
                }
                anyhow::Ok(latencies)
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await??);
        }
        let elapsed = start.elapsed();
        all.sort_unstable();
        let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
        println!(
            "REST GET /connections/{{cid}}, {clients:>2} clients: {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} requests)",
            all.len() as f64 / elapsed.as_secs_f64(),
            pct(0.50).as_secs_f64() * 1e3,
            pct(0.99).as_secs_f64() * 1e3,
            all[all.len() - 1].as_secs_f64() * 1e3,
            all.len()
        );
    }
    Ok(())
}

/// Each worker owns a session and repeats: open, run, close both sides, run
/// until idle (through TIME_WAIT: 2*MSL of virtual time, no wall time).
async fn rest_lifecycles(api: &Api, secs: u64) -> anyhow::Result<()> {
    let workers = 8;
    let deadline = Instant::now() + Duration::from_secs(secs);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..workers {
        let api = api.clone();
        tasks.push(tokio::spawn(async move {
            let sid = api.session(&format!("bench-lifecycle-{w}")).await?;
            let mut done = 0u64;
            while Instant::now() < deadline {
                let conn = api
                    .post(&format!("/sessions/{sid}/connections"), json!({"client": "A", "server": "B", "port": 80}))
                    .await?;
                let cid = conn["id"].as_u64().ok_or_else(|| anyhow::anyhow!("no connection id"))?;
                api.run_until_idle(sid).await?;
                api.post(&format!("/sessions/{sid}/connections/{cid}/close"), json!({"side": "client"})).await?;
                api.post(&format!("/sessions/{sid}/connections/{cid}/close"), json!({"side": "server"})).await?;
                api.run_until_idle(sid).await?;
                done += 1;
            }
            // The first connection ended CLOSED (or, closed, was forgotten).
            let first = api.http.get(format!("{}/sessions/{sid}/connections/1", api.base)).send().await?;
            if first.status() != reqwest::StatusCode::NOT_FOUND {
                let first: Value = first.error_for_status()?.json().await?;
                anyhow::ensure!(first["client"]["state"] == "CLOSED", "lifecycle did not end CLOSED: {first}");
            }
            anyhow::Ok(done)
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await??;
    }
    let elapsed = start.elapsed();
    println!(
        "REST connection lifecycles ({workers} sessions in parallel, 5 requests each): {:.0} lifecycles/s ({total} in {:.2} s)",
        total as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64()
    );
    Ok(())
}

/// What one watched transfer measured.
struct Run {
    sid: u64,
    /// From the REST call that runs the clock to the last event reaching
    /// every subscriber (or to the REST answer, with no subscriber).
    elapsed: Duration,
    /// Events delivered to all subscribers together.
    delivered: u64,
    /// Times a subscriber was told it lagged and resumed.
    resumes: u64,
}

/// A session (mss 100, 1% loss) with an established connection, 2 MiB queued
/// on the client and `subscribers` `WatchEvents` streams open; then one REST
/// call runs the clock until idle. Returns the events the run made and what
/// was measured.
async fn transfer(api: &Api, grpc: SocketAddr, subscribers: usize) -> anyhow::Result<(u64, Run)> {
    let s = api
        .post("/sessions", json!({"name": format!("bench-watch-{subscribers}"), "seed": 7, "clock": "manual", "profile": {"mss": 100}}))
        .await?;
    let sid = s["id"].as_u64().ok_or_else(|| anyhow::anyhow!("no session id"))?;
    api.post(&format!("/sessions/{sid}/hosts"), json!({"name": "A", "ip": "10.0.0.1"})).await?;
    api.post(&format!("/sessions/{sid}/hosts"), json!({"name": "B", "ip": "10.0.0.2"})).await?;
    api.call(
        reqwest::Method::PUT,
        &format!("/sessions/{sid}/links"),
        Some(json!({"a": "A", "b": "B", "latency_ms": 1, "loss": 0.01})),
    )
    .await?;
    api.post(&format!("/sessions/{sid}/listeners"), json!({"host": "B", "port": 80})).await?;
    let conn =
        api.post(&format!("/sessions/{sid}/connections"), json!({"client": "A", "server": "B", "port": 80})).await?;
    let cid = conn["id"].as_u64().ok_or_else(|| anyhow::anyhow!("no connection id"))?;
    api.run_until_idle(sid).await?;
    let chunk = "x".repeat(1 << 20);
    for _ in 0..2 {
        api.post(&format!("/sessions/{sid}/connections/{cid}/send"), json!({"side": "client", "data": chunk})).await?;
    }
    let after = event_count(api, sid).await?;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{grpc}"))?.connect().await?;
    let (target_tx, target) = tokio::sync::watch::channel(None);
    let readers: Vec<_> =
        (0..subscribers).map(|_| tokio::spawn(watch(channel.clone(), sid, after, target.clone()))).collect();
    // Let every stream reach the server before the run starts.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let start = Instant::now();
    api.run_until_idle(sid).await?;
    let end = event_count(api, sid).await?;
    let _ = target_tx.send(Some(end));
    let mut last = Instant::now();
    let mut counts = Vec::new();
    let mut resumes = 0;
    for r in readers {
        let (seen, at, resumed) = r.await??;
        counts.push(seen);
        last = last.max(at);
        resumes += resumed;
    }
    let events = end - after;
    anyhow::ensure!(counts.iter().all(|&c| c == events), "a subscriber missed events: {counts:?} of {events}");
    Ok((events, Run { sid, elapsed: last - start, delivered: counts.iter().sum(), resumes }))
}

/// Watches a session from `after` until it has read the event whose seq the
/// `target` channel names (set once the run is over and its event count is
/// known), checking every seq follows the previous one. A stream that makes
/// no progress for [`NO_PROGRESS`] is an error, not the end. A subscriber
/// that lags is told so (ABORTED) and resumes from its last seq, as a real
/// client does. Returns how many events it read, when the last came, and how
/// many times it resumed.
async fn watch(
    channel: tonic::transport::Channel,
    sid: u64,
    after: u64,
    mut target: tokio::sync::watch::Receiver<Option<u64>>,
) -> anyhow::Result<(u64, Instant, u64)> {
    let mut client = LabServiceClient::new(channel);
    let mut seen = 0u64;
    let mut last_seq = after;
    let mut last_at = Instant::now();
    let mut resumes = 0;
    let done = |last_seq: u64, target: &tokio::sync::watch::Receiver<Option<u64>>| {
        target.borrow().is_some_and(|t| last_seq >= t)
    };
    'resume: loop {
        let mut stream = client
            .watch_events(WatchEventsRequest { session_id: sid, after_seq: last_seq, ..Default::default() })
            .await?
            .into_inner();
        loop {
            if done(last_seq, &target) {
                return Ok((seen, last_at, resumes));
            }
            let item = tokio::select! {
                item = tokio::time::timeout(NO_PROGRESS, stream.next()) => item,
                changed = target.changed() => {
                    changed?;
                    continue;
                }
            };
            let Ok(item) = item else {
                anyhow::bail!("no event for {NO_PROGRESS:?} after seq {last_seq} (target {:?})", *target.borrow());
            };
            match item {
                Some(Ok(message)) => {
                    let Some(Item::Event(event)) = message.item else {
                        anyhow::bail!("not an event after seq {last_seq} (no caught_up was asked for)");
                    };
                    anyhow::ensure!(event.seq == last_seq + 1, "gap or duplicate: {} after {}", event.seq, last_seq);
                    last_seq = event.seq;
                    seen += 1;
                    last_at = Instant::now();
                }
                Some(Err(status)) if status.code() == tonic::Code::Aborted => {
                    resumes += 1;
                    continue 'resume;
                }
                Some(Err(status)) => return Err(status.into()),
                None => anyhow::bail!("stream ended at seq {last_seq} (target {:?})", *target.borrow()),
            }
        }
    }
}

/// How long a subscriber may go without an event before the bench fails.
const NO_PROGRESS: Duration = Duration::from_secs(30);

/// Streams a session's whole log from seq 1 to one subscriber.
async fn replay(api: &Api, grpc: SocketAddr, sid: u64) -> anyhow::Result<(u64, Duration)> {
    let events = event_count(api, sid).await?;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{grpc}"))?.connect().await?;
    let (_target_tx, target) = tokio::sync::watch::channel(Some(events));
    let start = Instant::now();
    let (seen, at, _) = watch(channel, sid, 0, target).await?;
    anyhow::ensure!(seen == events, "replay delivered {seen} of {events}");
    Ok((events, at - start))
}

async fn event_count(api: &Api, sid: u64) -> anyhow::Result<u64> {
    api.call(reqwest::Method::GET, &format!("/sessions/{sid}"), None).await?["events"]
        .as_u64()
        .ok_or_else(|| anyhow::anyhow!("no event count"))
}

/// Waits (bounded) until the writer has persisted `target` events in all, and
/// returns how many it had and when.
async fn wait_persisted(service: &tcplab::service::LabService, target: u64) -> (u64, Instant) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let persisted = service.counters().3;
        if persisted >= target || Instant::now() > deadline {
            return (persisted, Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
