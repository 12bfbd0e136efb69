//! Store benchmark: events persisted per second through the [`StoreWriter`].
//!
//! The workload is what the server does under load: four live sessions whose
//! actors each hand the writer batches of events (serialised JSON of ~330
//! bytes, already built: the actors share it with live subscribers; 5 kinds,
//! 16 connections), the sessions' batches interleaved, into a fresh SQLite
//! file in a temporary directory (WAL, `synchronous=NORMAL`, the real schema
//! and indexes). The timed part
//! of one iteration is sending all [`EVENTS`] events and the `flush()` that
//! resolves once they are committed. Opening the database and building the
//! records are not timed; nor is shutting the writer down.
//!
//! Variants: `writer/batch256` (the actors' usual batches) and
//! `writer/batch1` (one message per event: the channel's worst case).
//! Criterion's `elements/s` is events persisted per second; the target is
//! 200,000. A summary (mean over the measured samples, not the warm-up) is
//! printed at the end.
//!
//! Run with `cargo bench --bench store`.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use tcplab::store::{EventRecord, Store, StoreWriter};

/// Events per timed iteration.
const EVENTS: i64 = 200_000;
/// Sessions sending concurrently (interleaved batches).
const SESSIONS: i64 = 4;
/// How many of the last `iter_custom` calls are criterion's measured samples.
const SAMPLES: usize = 10;

const KINDS: [&str; 5] = ["segment_sent", "segment_delivered", "segment_dropped", "state_changed", "timer_fired"];

/// (events, time) of every timed call, per benchmark.
static RUNS: Mutex<BTreeMap<String, Vec<(u64, Duration)>>> = Mutex::new(BTreeMap::new());

/// A realistic event body: a segment event as the service serialises it.
fn body(seq: i64, kind: &str, connection: i64) -> String {
    format!(
        r#"{{"seq":{seq},"t_ns":{t},"kind":"{kind}","connection":{connection},"side":"client","segment":{{"src":"10.0.0.1:{port}","dst":"10.0.0.2:80","seq":{sn},"ack":{an},"flags":"PSH|ACK","window":65535,"len":1448,"options":{{"mss":null,"wscale":null,"sack_permitted":false,"timestamps":[{t},{seq}]}}}},"link":"client-server"}}"#,
        t = seq * 10_000,
        port = 49_152 + connection,
        sn = seq.wrapping_mul(1448) & 0xffff_ffff,
        an = seq.wrapping_mul(7) & 0xffff_ffff,
    )
}

/// Every session's events, as the batches its actor would send, interleaved
/// across sessions.
fn workload(session_ids: &[i64], batch: usize) -> Vec<Vec<EventRecord>> {
    let per_session = EVENTS / SESSIONS;
    let per: Vec<Vec<Vec<EventRecord>>> = session_ids
        .iter()
        .map(|&session_id| {
            let records: Vec<EventRecord> = (1..=per_session)
                .map(|seq| {
                    let kind = KINDS[(seq % KINDS.len() as i64) as usize];
                    let connection = seq % 16;
                    EventRecord {
                        session_id,
                        seq,
                        t_ns: seq * 10_000,
                        kind,
                        connection: Some(connection),
                        body: Arc::from(body(seq, kind, connection)),
                    }
                })
                .collect();
            records.chunks(batch).map(<[EventRecord]>::to_vec).collect()
        })
        .collect();
    let mut iters: Vec<_> = per.into_iter().map(Vec::into_iter).collect();
    let mut interleaved = Vec::new();
    loop {
        let before = interleaved.len();
        interleaved.extend(iters.iter_mut().filter_map(Iterator::next));
        if interleaved.len() == before {
            break;
        }
    }
    interleaved
}

/// One timed iteration on a fresh database; returns the timed part.
async fn one_run(batch: usize) -> Duration {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("bench.db")).await.expect("open store");
    let mut ids = Vec::new();
    for s in 0..SESSIONS {
        ids.push(store.create_session(&format!("bench-{s}"), "{}", "2026-11-25T00:00:00Z").await.expect("session"));
    }
    let batches = workload(&ids, batch);
    let writer = store.spawn_writer();

    let start = Instant::now();
    send(&writer, batches, batch);
    writer.flush().await.expect("flush");
    let elapsed = start.elapsed();

    let stats = writer.shutdown().await.expect("shutdown");
    assert_eq!(stats.events_persisted, EVENTS as u64, "every event persisted");
    store.close().await;
    elapsed
}

fn send(writer: &StoreWriter, batches: Vec<Vec<EventRecord>>, batch: usize) {
    for records in batches {
        if batch == 1 {
            for rec in records {
                writer.event(black_box(rec));
            }
        } else {
            writer.events(black_box(records));
        }
    }
}

fn bench_writer(c: &mut Criterion, rt: &tokio::runtime::Runtime) {
    let mut group = c.benchmark_group("writer");
    group.throughput(Throughput::Elements(EVENTS as u64));
    group.sample_size(SAMPLES);
    group.warm_up_time(Duration::from_secs(2));
    group.measurement_time(Duration::from_secs(20));
    for batch in [256, 1] {
        let name = format!("batch{batch}");
        group.bench_function(BenchmarkId::from_parameter(&name), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    total += rt.block_on(one_run(batch));
                }
                if let Ok(mut runs) = RUNS.lock() {
                    runs.entry(name.clone()).or_default().push((iters * EVENTS as u64, total));
                }
                total
            });
        });
    }
    group.finish();
}

fn summary() {
    let Ok(runs) = RUNS.lock() else { return };
    for (name, calls) in runs.iter() {
        let measured = &calls[calls.len().saturating_sub(SAMPLES)..];
        let events: u64 = measured.iter().map(|(n, _)| n).sum();
        let time: Duration = measured.iter().map(|(_, t)| *t).sum();
        if time > Duration::ZERO {
            println!(
                "store writer/{name}: {:.0} events/s persisted ({events} events in {:.2} s, ~{} B bodies)",
                events as f64 / time.as_secs_f64(),
                time.as_secs_f64(),
                body(100_000, "segment_sent", 7).len()
            );
        }
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let mut criterion = Criterion::default().configure_from_args();
    bench_writer(&mut criterion, &rt);
    criterion.final_summary();
    summary();
}
