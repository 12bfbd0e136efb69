//! A bounded load run (a benchmark to report, not a test): the `tcplab`
//! binary with 200 realtime sessions of 50 connections each, exchanging data
//! over lossy links, while 20 clients stream events (SSE) and 20 clients poll
//! REST, for 60 s. Reports request and error counts, events streamed, lagged
//! notices and gaps, and the server's RSS over time (peak and at the end).
//!
//! `cargo bench --bench load`; sizes from `TCPLAB_LOAD_SECS`,
//! `TCPLAB_LOAD_SESSIONS`, `TCPLAB_LOAD_CONNS`, `TCPLAB_LOAD_STREAMERS`,
//! `TCPLAB_LOAD_POLLERS`, `TCPLAB_LOAD_SENDS` (sends per session per second).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use serde_json::{Value, json};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Peak (VmHWM) and current (VmRSS) resident set of a process, in KiB.
fn rss(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

#[derive(Default)]
struct Counters {
    ok: AtomicU64,
    errors: AtomicU64,
    polls: AtomicU64,
    poll_errors: AtomicU64,
    events: AtomicU64,
    lagged: AtomicU64,
    gaps: AtomicU64,
}

async fn call(client: &reqwest::Client, method: reqwest::Method, url: String, body: Option<Value>) -> Option<Value> {
    let mut req = client.request(method, url);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await.ok()?;
    if !resp.status().is_success() {
        return None;
    }
    resp.json().await.ok()
}

fn main() -> anyhow::Result<()> {
    let secs = env("TCPLAB_LOAD_SECS", 60);
    let sessions = env("TCPLAB_LOAD_SESSIONS", 200);
    let conns = env("TCPLAB_LOAD_CONNS", 50);
    let streamers = env("TCPLAB_LOAD_STREAMERS", 20);
    let pollers = env("TCPLAB_LOAD_POLLERS", 20);
    let sends = env("TCPLAB_LOAD_SENDS", 5);
    let dir = tempfile::tempdir()?;
    let mut child = Command::new(env!("CARGO_BIN_EXE_tcplab"))
        .args(["--http", "127.0.0.1:0", "--grpc", "127.0.0.1:0", "--db"])
        .arg(dir.path().join("load.db"))
        .env("RUST_LOG", "warn,tcplab=info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let pid = child.id();
    let stderr = child.stderr.take().ok_or_else(|| anyhow::anyhow!("no stderr"))?;
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let http = loop {
        let line = rx.recv_timeout(Duration::from_secs(10))?;
        if let Some(addr) = line.split_whitespace().find_map(|w| w.strip_prefix("http=")) {
            break addr.trim_end_matches(|c: char| !c.is_ascii_digit()).to_string();
        }
    };
    let base = format!("http://{http}/api/v1");
    println!(
        "load: {sessions} realtime sessions x {conns} connections, {streamers} SSE + {pollers} polling clients, {secs} s"
    );

    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let counters = Arc::new(Counters::default());
    let report = runtime.block_on(async {
        let client = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(30)).build()?;
        // Set-up, 16 sessions at a time.
        let started = Instant::now();
        let mut sids = Vec::new();
        for chunk in (0..sessions).collect::<Vec<_>>().chunks(16) {
            let mut set = tokio::task::JoinSet::new();
            for &i in chunk {
                let (client, base) = (client.clone(), base.clone());
                set.spawn(async move {
                    let post = |path: String, body: Value| {
                        call(&client, reqwest::Method::POST, format!("{base}{path}"), Some(body))
                    };
                    let s = post("/sessions".into(), json!({"name": format!("load {i}"), "clock": "realtime"})).await?;
                    let sid = s["id"].as_u64()?;
                    post(format!("/sessions/{sid}/hosts"), json!({"name": "A", "ip": "10.0.0.1"})).await?;
                    post(format!("/sessions/{sid}/hosts"), json!({"name": "B", "ip": "10.0.0.2"})).await?;
                    let link = json!({"a": "A", "b": "B", "latency_ms": 5.0, "loss": 0.02});
                    call(&client, reqwest::Method::PUT, format!("{base}/sessions/{sid}/links"), Some(link)).await?;
                    post(format!("/sessions/{sid}/listeners"), json!({"host": "B", "port": 80})).await?;
                    for _ in 0..conns {
                        post(format!("/sessions/{sid}/connections"), json!({"client": "A", "server": "B", "port": 80}))
                            .await?;
                    }
                    Some(sid)
                });
            }
            while let Some(done) = set.join_next().await {
                sids.push(done?.ok_or_else(|| anyhow::anyhow!("set-up of a session failed"))?);
            }
        }
        let (hwm, rss_now) = rss(pid);
        println!(
            "set-up: {} sessions in {:?}; server RSS {} MiB (peak {} MiB)",
            sids.len(),
            started.elapsed(),
            rss_now / 1024,
            hwm / 1024
        );

        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = tokio::task::JoinSet::new();
        // Senders: each session, `sends` sends a second, both ways, round robin over its connections.
        for &sid in &sids {
            let (client, base, stop, c) = (client.clone(), base.clone(), stop.clone(), counters.clone());
            tasks.spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(1000 / sends.max(1)));
                let mut n = 0u64;
                let data = "d".repeat(512);
                while !stop.load(Relaxed) {
                    tick.tick().await;
                    let cid = n % conns + 1;
                    let side = if n % 2 == 0 { "client" } else { "server" };
                    n += 1;
                    let url = format!("{base}/sessions/{sid}/connections/{cid}/send");
                    let body = json!({"side": side, "data": data});
                    match call(&client, reqwest::Method::POST, url, Some(body)).await {
                        Some(_) => c.ok.fetch_add(1, Relaxed),
                        None => c.errors.fetch_add(1, Relaxed),
                    };
                }
            });
        }
        // Streamers: SSE on the first sessions, checking seq continuity.
        for &sid in sids.iter().take(streamers as usize) {
            let (client, base, stop, c) = (client.clone(), base.clone(), stop.clone(), counters.clone());
            tasks.spawn(async move {
                let Ok(resp) = client
                    .get(format!("{base}/sessions/{sid}/events/stream"))
                    .timeout(Duration::from_secs(secs + 60))
                    .send()
                    .await
                else {
                    c.errors.fetch_add(1, Relaxed);
                    return;
                };
                let mut body = resp.bytes_stream();
                let mut buf = Vec::new();
                let mut last = 0u64;
                while !stop.load(Relaxed) {
                    let Ok(Some(Ok(chunk))) = tokio::time::timeout(Duration::from_secs(2), body.next()).await else {
                        continue;
                    };
                    buf.extend_from_slice(&chunk);
                    while let Some(end) = buf.windows(2).position(|w| w == b"\n\n") {
                        let frame: Vec<u8> = buf.drain(..end + 2).collect();
                        let text = String::from_utf8_lossy(&frame);
                        if text.contains("event: lagged") {
                            c.lagged.fetch_add(1, Relaxed);
                        }
                        if let Some(id) =
                            text.lines().find_map(|l| l.strip_prefix("id: ")).and_then(|v| v.trim().parse::<u64>().ok())
                        {
                            if last != 0 && id != last + 1 && !text.contains("event: lagged") {
                                c.gaps.fetch_add(1, Relaxed);
                            }
                            last = id;
                            c.events.fetch_add(1, Relaxed);
                        }
                    }
                }
            });
        }
        // Pollers: GET a connection of a session, over and over.
        for p in 0..pollers {
            let (client, base, stop, c, sids) =
                (client.clone(), base.clone(), stop.clone(), counters.clone(), sids.clone());
            tasks.spawn(async move {
                let mut n = p;
                while !stop.load(Relaxed) {
                    let sid = sids[(n as usize) % sids.len()];
                    let cid = n % conns + 1;
                    n += pollers;
                    let url = format!("{base}/sessions/{sid}/connections/{cid}");
                    match call(&client, reqwest::Method::GET, url, None).await {
                        Some(_) => c.polls.fetch_add(1, Relaxed),
                        None => c.poll_errors.fetch_add(1, Relaxed),
                    };
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            });
        }
        let run_start = Instant::now();
        let mut samples = Vec::new();
        while run_start.elapsed() < Duration::from_secs(secs) {
            tokio::time::sleep(Duration::from_secs(5)).await;
            let (_, now) = rss(pid);
            samples.push(now / 1024);
            println!(
                "t={:>3}s rss={} MiB sends ok={} err={} polls={} poll_err={} events={} lagged={} gaps={}",
                run_start.elapsed().as_secs(),
                now / 1024,
                counters.ok.load(Relaxed),
                counters.errors.load(Relaxed),
                counters.polls.load(Relaxed),
                counters.poll_errors.load(Relaxed),
                counters.events.load(Relaxed),
                counters.lagged.load(Relaxed),
                counters.gaps.load(Relaxed)
            );
        }
        stop.store(true, Relaxed);
        let _ =
            tokio::time::timeout(Duration::from_secs(10), async { while tasks.join_next().await.is_some() {} }).await;
        tasks.abort_all();
        let (hwm, _) = rss(pid);
        anyhow::Ok((samples, hwm / 1024, run_start.elapsed()))
    })?;
    let (samples, peak, took) = report;
    let c = &counters;
    println!(
        "load result: {:?}: sends {} ok / {} errors, polls {} ok / {} errors, {} events streamed, {} lagged, {} gaps; \
         server RSS peak {} MiB, samples {:?} MiB",
        took,
        c.ok.load(Relaxed),
        c.errors.load(Relaxed),
        c.polls.load(Relaxed),
        c.poll_errors.load(Relaxed),
        c.events.load(Relaxed),
        c.lagged.load(Relaxed),
        c.gaps.load(Relaxed),
        peak,
        samples
    );
    let _ = Command::new("kill").arg("-TERM").arg(pid.to_string()).status();
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait()?.is_none() {
        if Instant::now() > deadline {
            child.kill()?;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}
