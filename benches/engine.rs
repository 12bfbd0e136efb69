//! Engine benchmarks, on one core.
//!
//! 1. `bulk`: simulated segments processed per second. Two hosts on a 1 ms
//!    link, 16 MiB one way through the [`World`] (encode, checksum, decode,
//!    scheduler, engine, event log). Criterion's `elements/s` is segments
//!    delivered (data and ACKs, both directions) per second. The event log is
//!    drained every few thousand steps, so that memory stays flat, but the
//!    events are still produced and dropped inside the timed part. The same
//!    16 MiB between two smoltcp interfaces (`SmolBulk`) is the baseline of
//!    the same run, and 4 MiB through a 2 Mb/s bottleneck with a 16 KiB
//!    drop-tail queue measures the world with congestion control at work
//!    (queue drops, fast recovery; its virtual time and link use printed).
//! 2. `lifecycles`: complete connection lifecycles per second with N idle
//!    established connections open in the same world (N in 1, 1k, 10k, 100k),
//!    one lifecycle after another (not concurrently): handshake, 1 KiB
//!    client->server, 1 KiB server->client, client CLOSE, server CLOSE, run
//!    until both ends are CLOSED, the client's TIME_WAIT (default 2*MSL =
//!    60 s of virtual time) included. The same workload on smoltcp sockets
//!    over an in-memory device (`smoltcp_baseline.rs`) in the same group.
//! 3. Bytes of memory per idle established connection, from a counting
//!    global allocator: the engine alone (two bare [`Stack`]s) and the
//!    world's bookkeeping on top. Criterion has no memory metric, so these are
//!    printed.
//!
//! A summary table (engine vs smoltcp per N, segments/s, bytes per idle
//! connection) is printed at the end. Its rates are the mean over the timed
//! samples criterion took (total work / total time of the last ten
//! `iter_custom` calls, i.e. the measurement samples, not the warm-up).
//!
//! Run with `cargo bench --bench engine`; a filter works as usual
//! (`cargo bench --bench engine -- lifecycles/engine`).

#[path = "smoltcp_baseline.rs"]
mod smoltcp_baseline;

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::hint::black_box;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, AtomicIsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::SeedableRng;
use tcplab::engine::{Output, Profile, Segment, SocketId, Stack, Tcb};
use tcplab::sim::{
    ConnId, ConnectSpec, Connection, DropReason, End, EventKind, HostKind, LinkParams, ListenSpec, Side, World,
    WorldConfig,
};
use tcplab::time;

// ----- a counting allocator -----

/// `System`, counting live bytes while [`COUNTING`] is on. Counting only
/// inside a window is exact for the change in live bytes over that window
/// (what is freed in it is subtracted, whenever it was allocated), and off
/// the window the cost is one relaxed load, so the timed benchmarks are not
/// slowed down by an atomic read-modify-write on every allocation.
struct CountingAlloc;

static COUNTING: AtomicBool = AtomicBool::new(false);
static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() && COUNTING.load(Ordering::Relaxed) {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() && COUNTING.load(Ordering::Relaxed) {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        if COUNTING.load(Ordering::Relaxed) {
            LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() && COUNTING.load(Ordering::Relaxed) {
            LIVE.fetch_add(new_size as isize - layout.size() as isize, Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// Live bytes allocated while `f` ran (its result is kept alive meanwhile).
fn live_bytes_of<T>(f: impl FnOnce() -> T) -> (T, isize) {
    LIVE.store(0, Ordering::Relaxed);
    COUNTING.store(true, Ordering::SeqCst);
    let value = f();
    COUNTING.store(false, Ordering::SeqCst);
    (value, LIVE.load(Ordering::Relaxed))
}

// ----- results for the summary table -----

/// Per benchmark id: every `iter_custom` call as (work units, time).
static RESULTS: Mutex<BTreeMap<String, Vec<(u64, Duration)>>> = Mutex::new(BTreeMap::new());

const SAMPLES: usize = 10;

fn record(id: &str, units: u64, elapsed: Duration) {
    RESULTS.lock().unwrap().entry(id.to_string()).or_default().push((units, elapsed));
}

/// Units per second over the last [`SAMPLES`] calls (criterion's measurement samples).
fn rate(id: &str) -> Option<f64> {
    let results = RESULTS.lock().unwrap();
    let calls = results.get(id)?;
    let last = &calls[calls.len().saturating_sub(SAMPLES)..];
    let units: u64 = last.iter().map(|c| c.0).sum();
    let secs: f64 = last.iter().map(|c| c.1.as_secs_f64()).sum();
    (secs > 0.0).then(|| units as f64 / secs)
}

// ----- common set-up -----

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;

fn bench_config() -> WorldConfig {
    WorldConfig { seed: 7, profile: Profile::default(), keep_received: false, keep_closed: false, auto_read: true }
}

fn link_1ms() -> LinkParams {
    LinkParams { latency_ms: 1.0, ..LinkParams::default() }
}

fn run_idle(world: &mut World) {
    let outcome = world.run_until_idle(u64::MAX, time::Duration::MAX);
    debug_assert!(outcome.idle);
}

// ----- 1. bulk transfer: segments per second -----

const BULK_BYTES: usize = 16 * MIB;
/// Top the sender's buffer up (by `BULK_CHUNK`) when less than this is queued.
const BULK_LOW_WATER: usize = MIB;
const BULK_CHUNK: usize = MIB;

struct Bulk {
    world: World,
    conn: ConnId,
    /// Octets one transfer moves.
    bytes: usize,
    /// Segments a full queue dropped, over every transfer so far.
    drops: u64,
    /// Events logged, and of them the two kinds congestion control added
    /// (`congestion_changed`, `segment_queued`), over every transfer so far.
    events: u64,
    cc_events: u64,
    /// The application's buffer, handed to SEND without a copy (as the
    /// server hands over a request's body).
    chunk: bytes::Bytes,
}

impl Bulk {
    fn new() -> Bulk {
        Bulk::over(link_1ms(), BULK_BYTES)
    }

    /// A connection from a to b over `link`, each transfer `bytes` long.
    fn over(link: LinkParams, bytes: usize) -> Bulk {
        let mut world = World::new(bench_config()).unwrap();
        world.add_host("a", Ipv4Addr::new(10, 0, 0, 1), HostKind::Tcp).unwrap();
        world.add_host("b", Ipv4Addr::new(10, 0, 0, 2), HostKind::Tcp).unwrap();
        world.set_link("a", "b", link).unwrap();
        world.listen(ListenSpec { host: "b".into(), port: 80, ..ListenSpec::default() }).unwrap();
        let conn = world
            .connect(ConnectSpec { client: "a".into(), server: "b".into(), port: 80, ..ConnectSpec::default() })
            .unwrap();
        run_idle(&mut world);
        world.take_events();
        let chunk = (0..BULK_CHUNK).map(|i| i as u8).collect::<Vec<u8>>().into();
        Bulk { world, conn, bytes, drops: 0, events: 0, cc_events: 0, chunk }
    }

    /// Sends `bytes` from a to b over the open connection and runs until
    /// everything is acknowledged. Returns (segments delivered, payload
    /// octets delivered); [`Bulk::drops`] counts the segments the queue refused.
    fn transfer(&mut self) -> (u64, u64) {
        let world = &mut self.world;
        let mut remaining = self.bytes;
        let mut segments = 0u64;
        let mut octets = 0u64;
        let mut steps = 0u64;
        let mut idle = false;
        let (drops, all, cc) = (&mut self.drops, &mut self.events, &mut self.cc_events);
        let mut count = |events: Vec<tcplab::sim::Event>| {
            *all += events.len() as u64;
            for event in &events {
                match &event.kind {
                    EventKind::SegmentDelivered { segment, .. } => {
                        segments += 1;
                        octets += segment.segment.payload.len() as u64;
                    }
                    EventKind::SegmentDropped { reason: DropReason::QueueFull, .. } => *drops += 1,
                    EventKind::CongestionChanged { .. } | EventKind::SegmentQueued { .. } => *cc += 1,
                    _ => {}
                }
            }
        };
        loop {
            if remaining > 0 && (idle || steps % 64 == 0) {
                let queued = world.status(self.conn, Side::Client).unwrap().send_buffered;
                if queued < BULK_LOW_WATER {
                    let n = world
                        .send_bytes(self.conn, Side::Client, self.chunk.slice(..remaining.min(BULK_CHUNK)))
                        .unwrap();
                    remaining -= n;
                }
            }
            idle = !world.step();
            if idle && remaining == 0 {
                break;
            }
            steps += 1;
            if steps % 4096 == 0 {
                count(world.take_events());
            }
        }
        count(world.take_events());
        (segments, octets)
    }
}

/// The same transfer between two bare [`Stack`]s, segments handed over as
/// values: no encoding, checksums, scheduler or event log. What the engine
/// alone costs; the difference to [`Bulk`] is the world's.
struct StackBulk {
    client: Stack,
    server: Stack,
    socket: SocketId,
    rng: ChaCha8Rng,
    now: time::Instant,
    out: Vec<Output>,
    next: Vec<Output>,
    chunk: bytes::Bytes,
}

const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const SERVER_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

impl StackBulk {
    fn new() -> StackBulk {
        let profile = Arc::new(Profile::default());
        let client = Stack::new(CLIENT_IP, profile.clone());
        let mut server = Stack::new(SERVER_IP, profile.clone());
        server.listen(80, profile.clone(), None, 0).unwrap();
        let mut bulk = StackBulk {
            client,
            server,
            socket: SocketId(0),
            rng: ChaCha8Rng::seed_from_u64(7),
            now: time::Instant::from_nanos(1_000),
            out: Vec::new(),
            next: Vec::new(),
            chunk: (0..BULK_CHUNK).map(|i| i as u8).collect::<Vec<u8>>().into(),
        };
        bulk.socket = bulk.client.connect(None, SERVER_IP, 80, profile, None, &mut bulk.rng, 0, &mut bulk.out).unwrap();
        bulk.client.dispatch(bulk.now, &mut bulk.out);
        bulk.pump();
        assert_eq!(bulk.client.status(bulk.socket).unwrap().state, tcplab::engine::State::Established);
        bulk
    }

    /// Delivers what is in `out` until nothing more is sent, each segment
    /// processed and followed by a dispatch of its receiver (as the world
    /// settles each arrival), the receiver reading what became readable.
    /// Returns (segments processed, payload octets read).
    fn pump(&mut self) -> (u64, u64) {
        let (mut segments, mut octets) = (0, 0);
        while !self.out.is_empty() {
            self.now += time::Duration::from_nanos(1_000);
            for output in std::mem::take(&mut self.out) {
                let Output::Transmit { dst_ip, segment, .. } = output else {
                    continue;
                };
                let (stack, src_ip) =
                    if dst_ip == SERVER_IP { (&mut self.server, CLIENT_IP) } else { (&mut self.client, SERVER_IP) };
                let mark = self.next.len();
                stack.process(self.now, src_ip, &segment, &mut self.rng, &mut self.next);
                segments += 1;
                let readable = self.next[mark..].iter().find_map(|o| match o {
                    Output::Readable { socket } => Some(*socket),
                    _ => None,
                });
                if let Some(socket) = readable {
                    octets += stack.recv(socket, usize::MAX).unwrap().len() as u64;
                }
                stack.dispatch(self.now, &mut self.next);
            }
            // What an owner does between rounds: ask for the next deadline.
            for stack in [&mut self.client, &mut self.server] {
                if stack.poll_at().is_some_and(|at| at <= self.now) {
                    stack.on_timer(self.now, &mut self.next);
                }
            }
            std::mem::swap(&mut self.out, &mut self.next);
        }
        (segments, octets)
    }

    /// Sends [`BULK_BYTES`], a [`BULK_CHUNK`] at a time, each delivered and
    /// acknowledged before the next is queued. Returns (segments processed,
    /// payload octets read).
    fn transfer(&mut self) -> (u64, u64) {
        let mut remaining = BULK_BYTES;
        let (mut segments, mut octets) = (0, 0);
        while remaining > 0 {
            let n = self.client.send_bytes(self.socket, self.chunk.slice(..remaining.min(BULK_CHUNK))).unwrap();
            remaining -= n;
            self.client.dispatch(self.now, &mut self.out);
            let (s, o) = self.pump();
            segments += s;
            octets += o;
        }
        (segments, octets)
    }
}

fn bench_bulk(c: &mut Criterion) {
    // A dry run fixes the number of segments one transfer takes (the world is deterministic).
    let mut dry = Bulk::new();
    let (segments, octets) = dry.transfer();
    assert_eq!(octets, BULK_BYTES as u64, "every octet is delivered exactly once");
    println!(
        "bulk: {} events over the 1 ms link, {} of them congestion_changed or segment_queued",
        dry.events, dry.cc_events
    );
    let (stack_segments, stack_octets) = StackBulk::new().transfer();
    assert_eq!(stack_octets, BULK_BYTES as u64, "every octet is delivered exactly once");
    println!(
        "bulk: {} MiB one way = {segments} segments through the world (1 ms link), \
         {stack_segments} between bare stacks (data + ACKs, both directions)",
        BULK_BYTES / MIB
    );
    BULK_SEGMENTS.store(segments as isize, Ordering::Relaxed);
    STACK_BULK_SEGMENTS.store(stack_segments as isize, Ordering::Relaxed);

    let smol_packets = smoltcp_baseline::SmolBulk::new().transfer(BULK_BYTES);
    SMOL_BULK_PACKETS.store(smol_packets as isize, Ordering::Relaxed);
    // Through a congested bottleneck: the world's time per segment with the
    // queue full, drops and recoveries (the dry run also measures the link's use).
    let mut dry = Bulk::over(bottleneck_link(), BOTTLENECK_BYTES);
    let started = dry.world.now();
    let (bn_segments, bn_octets) = dry.transfer();
    assert_eq!(bn_octets, BOTTLENECK_BYTES as u64, "every octet is delivered exactly once");
    let secs = (dry.world.now() - started).as_millis_f64() / 1e3;
    println!(
        "bulk: {} MiB through a 2 Mb/s, 16 KiB drop-tail bottleneck (NewReno) = {bn_segments} segments, \
         {} queue drops, {secs:.2} s of virtual time, {:.1} % of the link's rate as payload; \
         {} events, {} of them congestion_changed or segment_queued ({:.1} %)",
        BOTTLENECK_BYTES / MIB,
        dry.drops,
        100.0 * (BOTTLENECK_BYTES * 8) as f64 / (2e6 * secs),
        dry.events,
        dry.cc_events,
        100.0 * dry.cc_events as f64 / dry.events.max(1) as f64
    );
    assert!(dry.drops > 0, "the queue overflows");
    BOTTLENECK_SEGMENTS.store(bn_segments as isize, Ordering::Relaxed);

    let mut group = c.benchmark_group("bulk");
    group.sample_size(SAMPLES).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Elements(segments));
    let mut bulk: Option<Bulk> = None;
    group.bench_function("world_16MiB", |b| {
        let bulk = bulk.get_or_insert_with(Bulk::new);
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                let (n, _) = bulk.transfer();
                debug_assert_eq!(n, segments);
                black_box(n);
            }
            let elapsed = start.elapsed();
            record("bulk/world", iters * segments, elapsed);
            elapsed
        });
    });
    group.throughput(Throughput::Elements(stack_segments));
    let mut bulk: Option<StackBulk> = None;
    group.bench_function("stacks_16MiB", |b| {
        let bulk = bulk.get_or_insert_with(StackBulk::new);
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                let (n, _) = bulk.transfer();
                debug_assert_eq!(n, stack_segments);
                black_box(n);
            }
            let elapsed = start.elapsed();
            record("bulk/stacks", iters * stack_segments, elapsed);
            elapsed
        });
    });
    group.throughput(Throughput::Elements(smol_packets));
    let mut bulk: Option<smoltcp_baseline::SmolBulk> = None;
    group.bench_function("smoltcp_16MiB", |b| {
        let bulk = bulk.get_or_insert_with(smoltcp_baseline::SmolBulk::new);
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                black_box(bulk.transfer(BULK_BYTES));
            }
            let elapsed = start.elapsed();
            record("bulk/smoltcp", iters * smol_packets, elapsed);
            elapsed
        });
    });
    group.throughput(Throughput::Elements(bn_segments));
    let mut bulk: Option<Bulk> = None;
    group.bench_function("world_bottleneck_4MiB", |b| {
        let bulk = bulk.get_or_insert_with(|| Bulk::over(bottleneck_link(), BOTTLENECK_BYTES));
        b.iter_custom(|iters| {
            let start = Instant::now();
            let mut n = 0;
            for _ in 0..iters {
                n += bulk.transfer().0;
            }
            let elapsed = start.elapsed();
            record("bulk/bottleneck", n, elapsed);
            elapsed
        });
    });
    group.finish();
}

/// Octets of the bulk transfer through the bottleneck.
const BOTTLENECK_BYTES: usize = 4 * MIB;

/// The `bottleneck-sawtooth` lab's link: 2 Mb/s, a 16 KiB drop-tail queue, 10 ms.
fn bottleneck_link() -> LinkParams {
    LinkParams { latency_ms: 10.0, bandwidth_bps: 2_000_000, queue_bytes: 16 * KIB as u64, ..LinkParams::default() }
}

static BULK_SEGMENTS: AtomicIsize = AtomicIsize::new(0);
static SMOL_BULK_PACKETS: AtomicIsize = AtomicIsize::new(0);
static BOTTLENECK_SEGMENTS: AtomicIsize = AtomicIsize::new(0);
static STACK_BULK_SEGMENTS: AtomicIsize = AtomicIsize::new(0);

// ----- 2. lifecycles with N idle connections open -----

/// Idle connections per client host (ephemeral ports run 49152..=65535).
const IDLE_PER_CLIENT: usize = 12_500;
const IDLE_PORT: u16 = 80;
const LIFECYCLE_PORT: u16 = 8080;
const LIFECYCLE_CLIENT: &str = "c0";

struct Lifecycles {
    world: World,
    request: Vec<u8>,
    response: Vec<u8>,
}

impl Lifecycles {
    /// A world with `open` idle established connections, spread over client
    /// hosts c0, c1, ... (12,500 each) towards srv:80; lifecycles run from
    /// c0 to srv:8080, so both of their stacks hold idle endpoints too.
    fn new(open: usize) -> Lifecycles {
        let mut world = World::new(bench_config()).unwrap();
        world.add_host("srv", Ipv4Addr::new(10, 0, 0, 1), HostKind::Tcp).unwrap();
        let clients = open.div_ceil(IDLE_PER_CLIENT).max(1);
        for i in 0..clients {
            let name = format!("c{i}");
            world.add_host(&name, Ipv4Addr::new(10, 1, (i / 250) as u8, (i % 250 + 1) as u8), HostKind::Tcp).unwrap();
            world.set_link(&name, "srv", link_1ms()).unwrap();
        }
        for port in [IDLE_PORT, LIFECYCLE_PORT] {
            world.listen(ListenSpec { host: "srv".into(), port, ..ListenSpec::default() }).unwrap();
        }
        let clients: Vec<String> = (0..clients).map(|i| format!("c{i}")).collect();
        for batch_start in (0..open).step_by(1000) {
            for i in batch_start..open.min(batch_start + 1000) {
                let spec = ConnectSpec {
                    client: clients[i / IDLE_PER_CLIENT].clone(),
                    server: "srv".into(),
                    port: IDLE_PORT,
                    ..ConnectSpec::default()
                };
                world.connect(spec).unwrap();
            }
            run_idle(&mut world);
            world.take_events();
        }
        assert_eq!(world.connection_count(), open);
        let mut lifecycles = Lifecycles { world, request: vec![b'q'; KIB], response: vec![b'r'; KIB] };
        lifecycles.check();
        lifecycles
    }

    /// One complete lifecycle; returns the connection id.
    fn run_one(&mut self) -> ConnId {
        let world = &mut self.world;
        let conn = world
            .connect(ConnectSpec {
                client: LIFECYCLE_CLIENT.into(),
                server: "srv".into(),
                port: LIFECYCLE_PORT,
                ..ConnectSpec::default()
            })
            .unwrap();
        run_idle(world); // SYN, SYN+ACK, ACK
        world.send(conn, Side::Client, &self.request).unwrap();
        run_idle(world); // request and its ACK
        world.send(conn, Side::Server, &self.response).unwrap();
        run_idle(world); // response and its ACK
        world.close(conn, Side::Client).unwrap();
        run_idle(world); // FIN, ACK: FIN_WAIT_2 / CLOSE_WAIT
        world.close(conn, Side::Server).unwrap();
        run_idle(world); // FIN, ACK, LAST_ACK -> CLOSED, then 2*MSL of TIME_WAIT -> CLOSED
        conn
    }

    /// Runs one lifecycle and checks from its events that it is the intended one.
    fn check(&mut self) {
        let before = self.world.now();
        let conn = self.run_one();
        let events = self.world.take_events();
        let mine = || events.iter().filter(|e| e.kind.connection() == Some(conn));
        let delivered = mine().filter(|e| matches!(e.kind, EventKind::SegmentDelivered { .. })).count();
        let data: Vec<usize> = mine()
            .filter_map(|e| match &e.kind {
                EventKind::SegmentDelivered { segment, .. } if !segment.segment.payload.is_empty() => {
                    Some(segment.segment.payload.len())
                }
                _ => None,
            })
            .collect();
        let time_wait = mine().any(|e| {
            matches!(
                e.kind,
                EventKind::TimerFired { side: Some(Side::Client), timer: tcplab::engine::TimerKind::TimeWait, .. }
            )
        });
        let closed = mine()
            .filter(|e| matches!(e.kind, EventKind::StateChanged { to: tcplab::engine::State::Closed, .. }))
            .count();
        assert_eq!(data, [KIB, KIB], "one 1 KiB request and one 1 KiB response");
        assert!(time_wait, "the client went through TIME_WAIT");
        assert_eq!(closed, 2, "both ends reached CLOSED");
        assert!(self.world.connection(conn).is_none(), "the world forgot the connection");
        assert!((self.world.now() - before).as_nanos() >= Profile::default().time_wait_ns());
        LIFECYCLE_SEGMENTS.store(delivered as isize, Ordering::Relaxed);
    }
}

/// Segments one engine lifecycle puts through the world (for the table).
static LIFECYCLE_SEGMENTS: AtomicIsize = AtomicIsize::new(0);
/// Packets per smoltcp lifecycle, as its baseline counts them.
static SMOL_PACKETS_PER_LIFECYCLE: Mutex<Option<f64>> = Mutex::new(None);

const ENGINE_OPEN: [usize; 4] = [1, 1_000, 10_000, 100_000];
const SMOL_OPEN: [usize; 3] = [1, 1_000, 10_000];

fn bench_lifecycles(c: &mut Criterion) {
    let mut group = c.benchmark_group("lifecycles");
    group.sample_size(SAMPLES).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    group.throughput(Throughput::Elements(1));
    for open in ENGINE_OPEN {
        // Set up lazily (only when the filter selects this one) and outside the timed part.
        let mut state: Option<Lifecycles> = None;
        group.bench_with_input(BenchmarkId::new("engine", open), &open, |b, &open| {
            let state = state.get_or_insert_with(|| {
                let start = Instant::now();
                let s = Lifecycles::new(open);
                println!("  (engine set-up of {open} idle connections: {:.2} s)", start.elapsed().as_secs_f64());
                s
            });
            b.iter_custom(|iters| {
                let start = Instant::now();
                for i in 0..iters {
                    black_box(state.run_one());
                    // The events are produced, and dropped now and then: part of the cost.
                    if i % 64 == 63 {
                        drop(black_box(state.world.take_events()));
                    }
                }
                drop(black_box(state.world.take_events()));
                let elapsed = start.elapsed();
                record(&format!("engine/{open}"), iters, elapsed);
                elapsed
            });
            assert_eq!(state.world.connection_count(), open, "only the idle connections remain");
        });
    }
    for open in SMOL_OPEN {
        let mut state: Option<smoltcp_baseline::SmolLifecycles> = None;
        group.bench_with_input(BenchmarkId::new("smoltcp", open), &open, |b, &open| {
            let state = state.get_or_insert_with(|| {
                let start = Instant::now();
                let s = smoltcp_baseline::SmolLifecycles::new(open);
                assert_eq!(s.open(), open);
                println!("  (smoltcp set-up of {open} idle connections: {:.2} s)", start.elapsed().as_secs_f64());
                s
            });
            b.iter_custom(|iters| {
                let start = Instant::now();
                let stats = state.run(iters);
                let elapsed = start.elapsed();
                assert_eq!(stats.lifecycles, iters);
                if stats.lifecycles > 0 {
                    *SMOL_PACKETS_PER_LIFECYCLE.lock().unwrap() = Some(stats.packets as f64 / stats.lifecycles as f64);
                }
                record(&format!("smoltcp/{open}"), iters, elapsed);
                elapsed
            });
        });
    }
    group.finish();
}

// ----- 3. memory per idle connection -----

const MEM_CONNS: usize = 10_000;
const MEM_BATCH: usize = 100;

struct Memory {
    /// The engine alone, per endpoint (TCB slot, four-tuple table entry, timers).
    engine_per_endpoint: f64,
    /// The engine, both endpoints of a connection.
    engine_per_connection: f64,
    /// A whole world, per connection.
    world_per_connection: f64,
}

/// Two bare stacks: `MEM_CONNS` connections opened in batches and driven
/// through the handshake by hand (segments passed as values, as a real owner
/// of the engine would after decoding them).
fn engine_memory() -> f64 {
    let profile = Arc::new(Profile::default());
    let client_ip = Ipv4Addr::new(10, 0, 0, 1);
    let server_ip = Ipv4Addr::new(10, 0, 0, 2);
    let mut client = Stack::new(client_ip, profile.clone());
    let mut server = Stack::new(server_ip, profile.clone());
    server.listen(80, profile.clone(), None, 0).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    // Scratch lists with room for a batch, allocated before counting starts.
    let mut out: Vec<Output> = Vec::with_capacity(16 * MEM_BATCH);
    let mut next: Vec<Output> = Vec::with_capacity(16 * MEM_BATCH);
    let mut transit: Vec<(Ipv4Addr, Segment)> = Vec::with_capacity(16 * MEM_BATCH);
    let now = time::Instant::from_nanos(1_000);
    let ((), bytes) = live_bytes_of(|| {
        for _ in 0..MEM_CONNS / MEM_BATCH {
            for _ in 0..MEM_BATCH {
                client.connect(None, server_ip, 80, profile.clone(), None, &mut rng, 0, &mut out).unwrap();
            }
            client.dispatch(now, &mut out);
            while !out.is_empty() {
                transit.extend(out.drain(..).filter_map(|o| match o {
                    Output::Transmit { dst_ip, segment, .. } => Some((dst_ip, segment)),
                    _ => None,
                }));
                for (dst_ip, segment) in transit.drain(..) {
                    if dst_ip == server_ip {
                        server.process(now, client_ip, &segment, &mut rng, &mut next);
                    } else {
                        client.process(now, server_ip, &segment, &mut rng, &mut next);
                    }
                }
                server.dispatch(now, &mut next);
                client.dispatch(now, &mut next);
                std::mem::swap(&mut out, &mut next);
            }
            // What an owner does after each round: find the next deadline
            // (this also drops the heap entries of the SYN timers the handshake stopped).
            client.poll_at();
            server.poll_at();
        }
    });
    assert_eq!(client.socket_count(), MEM_CONNS);
    assert_eq!(server.socket_count(), MEM_CONNS);
    assert!(client.poll_at().is_none() && server.poll_at().is_none(), "idle: no timer runs");
    drop((client, server));
    bytes as f64 / (2 * MEM_CONNS) as f64
}

/// A world with `MEM_CONNS` idle connections between two hosts.
fn world_memory() -> f64 {
    let mut world = World::new(bench_config()).unwrap();
    world.add_host("a", Ipv4Addr::new(10, 0, 0, 1), HostKind::Tcp).unwrap();
    world.add_host("b", Ipv4Addr::new(10, 0, 0, 2), HostKind::Tcp).unwrap();
    world.set_link("a", "b", link_1ms()).unwrap();
    world.listen(ListenSpec { host: "b".into(), port: 80, ..ListenSpec::default() }).unwrap();
    world.take_events();
    let ((), bytes) = live_bytes_of(|| {
        for _ in 0..MEM_CONNS / MEM_BATCH {
            for _ in 0..MEM_BATCH {
                world
                    .connect(ConnectSpec { client: "a".into(), server: "b".into(), port: 80, ..ConnectSpec::default() })
                    .unwrap();
            }
            run_idle(&mut world);
            world.take_events();
        }
    });
    assert_eq!(world.connection_count(), MEM_CONNS);
    drop(world);
    bytes as f64 / MEM_CONNS as f64
}

fn memory_report() -> Memory {
    let engine_per_endpoint = engine_memory();
    let world_per_connection = world_memory();
    let memory = Memory { engine_per_endpoint, engine_per_connection: 2.0 * engine_per_endpoint, world_per_connection };
    println!("memory, {MEM_CONNS} idle established connections (live heap bytes after - before, / {MEM_CONNS}):");
    println!(
        "  engine endpoint (Stack: TCB slot + four-tuple table entry + timer entries), per endpoint: {:.0} B",
        memory.engine_per_endpoint
    );
    println!(
        "  engine, both endpoints of a connection:                                      {:.0} B",
        memory.engine_per_connection
    );
    println!(
        "  world bookkeeping per connection (Connection/End records, tables), excl. engine: {:.0} B",
        memory.world_per_connection - memory.engine_per_connection
    );
    println!(
        "  world total per connection (both endpoints + bookkeeping):                   {:.0} B",
        memory.world_per_connection
    );
    println!(
        "  size_of: Tcb {} B, smoltcp::socket::tcp::Socket {} B, sim::Connection {} B, sim::End {} B",
        size_of::<Tcb>(),
        size_of::<smoltcp::socket::tcp::Socket<'static>>(),
        size_of::<Connection>(),
        size_of::<End>()
    );
    memory
}

// ----- summary -----

fn summary(memory: &Memory) {
    let fmt = |r: Option<f64>| r.map_or_else(|| "-".to_string(), |r| format!("{r:.0}"));
    println!();
    println!("=== summary (one core; rates are the mean over criterion's measurement samples) ===");
    println!("lifecycles/s, one after another, N idle established connections open:");
    println!("  {:>8}  {:>12}  {:>12}  {:>8}", "N", "engine", "smoltcp", "ratio");
    for open in ENGINE_OPEN {
        let engine = rate(&format!("engine/{open}"));
        let smol = rate(&format!("smoltcp/{open}"));
        let ratio = engine.zip(smol).map_or_else(|| "-".to_string(), |(e, s)| format!("{:.2}x", e / s));
        println!("  {open:>8}  {:>12}  {:>12}  {ratio:>8}", fmt(engine), fmt(smol));
    }
    let per = LIFECYCLE_SEGMENTS.load(Ordering::Relaxed);
    let smol_per = SMOL_PACKETS_PER_LIFECYCLE.lock().unwrap().map_or_else(|| "-".to_string(), |p| format!("{p:.1}"));
    println!("  segments per lifecycle: engine {per}, smoltcp {smol_per}");
    println!(
        "segments/s, bulk 16 MiB one way: through the world (1 ms link) {} ({} segments); \
         bare stacks, no encoding/events {} ({} segments)",
        fmt(rate("bulk/world")),
        BULK_SEGMENTS.load(Ordering::Relaxed),
        fmt(rate("bulk/stacks")),
        STACK_BULK_SEGMENTS.load(Ordering::Relaxed)
    );
    let world = rate("bulk/world");
    let smol = rate("bulk/smoltcp");
    let smol_packets = SMOL_BULK_PACKETS.load(Ordering::Relaxed) as f64;
    let world_segments = BULK_SEGMENTS.load(Ordering::Relaxed) as f64;
    // smoltcp acknowledges less often, so it moves the same octets in fewer
    // packets: the octets per second are the fairer second comparison.
    let mib_s = |rate: f64, packets: f64| rate / packets * (BULK_BYTES / MIB) as f64;
    println!(
        "segments/s, bulk 16 MiB between two smoltcp interfaces (zero-latency device) {} ({smol_packets} packets); \
         the world / smoltcp {} in segments/s, {} in MiB/s ({} against {} MiB/s)",
        fmt(smol),
        world.zip(smol).map_or_else(|| "-".to_string(), |(w, s)| format!("{:.2}x", w / s)),
        world.zip(smol).map_or_else(
            || "-".to_string(),
            |(w, s)| format!("{:.2}x", mib_s(w, world_segments) / mib_s(s, smol_packets))
        ),
        world.map_or_else(|| "-".to_string(), |w| format!("{:.0}", mib_s(w, world_segments))),
        smol.map_or_else(|| "-".to_string(), |s| format!("{:.0}", mib_s(s, smol_packets))),
    );
    println!(
        "segments/s, bulk 4 MiB through a congested 2 Mb/s bottleneck (queue drops, NewReno): {} ({} segments); \
         the 1 ms link's rate / this {}",
        fmt(rate("bulk/bottleneck")),
        BOTTLENECK_SEGMENTS.load(Ordering::Relaxed),
        world.zip(rate("bulk/bottleneck")).map_or_else(|| "-".to_string(), |(w, b)| format!("{:.2}x", w / b))
    );
    println!(
        "bytes per idle connection: engine {:.0} per endpoint ({:.0} per connection); world total {:.0} per connection",
        memory.engine_per_endpoint, memory.engine_per_connection, memory.world_per_connection
    );
}

fn main() {
    let memory = memory_report();
    let mut criterion = Criterion::default().configure_from_args();
    bench_bulk(&mut criterion);
    bench_lifecycles(&mut criterion);
    criterion.final_summary();
    summary(&memory);
}
