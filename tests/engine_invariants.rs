//! Property test of the engine on the simulated network: random sequences of
//! user calls (open, send, close, abort), fault rules, link impairments and
//! clock steps, with these invariants checked after every single step:
//!
//! - no panic;
//! - every live end has SND.UNA =< SND.NXT in sequence arithmetic
//!   (RFC 9293 3.4: the distance is less than 2^31), and its ISS =< SND.UNA;
//! - what each end has received is a prefix of what the other end's user
//!   queued with SEND: no octet delivered twice, out of order or altered
//!   (even over links that duplicate, reorder and corrupt);
//! - the world's events are numbered 1, 2, 3, ... with no gap, and their
//!   virtual times never go back.
//!
//! Injected segments are left out on purpose: a crafted segment may carry
//! any data, so the prefix property would not hold for it.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use proptest::prelude::*;
use tcplab::engine::Flags;
use tcplab::sim::{
    ConnectSpec, FaultAction, FaultSpec, HostKind, LinkParams, ListenSpec, SegmentMatch, Side, World, WorldConfig,
};
use tcplab::time::Duration;

const MS: u64 = 1_000_000;

/// `n` milliseconds of virtual time.
fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[derive(Clone, Debug)]
enum Op {
    /// Active open A -> B (port 80 has a listener, port 81 none).
    Open {
        to_listener: bool,
        client_port: Option<u16>,
    },
    /// SEND `len` octets from one end of the `conn`-th connection.
    Send {
        conn: usize,
        side: Side,
        len: usize,
    },
    Close {
        conn: usize,
        side: Side,
    },
    Abort {
        conn: usize,
        side: Side,
    },
    Fault {
        from_a: Option<bool>,
        flags: Option<u8>,
        skip: u64,
        count: Option<u64>,
        action: u8,
        delay_ms: u64,
    },
    Release {
        fault: usize,
    },
    RemoveFault {
        fault: usize,
    },
    Link {
        latency_ms: f64,
        jitter_ms: f64,
        loss: f64,
        duplicate: f64,
        reorder: f64,
        corrupt: f64,
    },
    Step,
    Advance {
        ms: u64,
    },
    RunUntilIdle,
}

fn side() -> impl Strategy<Value = Side> {
    prop_oneof![Just(Side::Client), Just(Side::Server)]
}

fn op() -> impl Strategy<Value = Op> {
    let p = || prop_oneof![3 => Just(0.0f64), 1 => 0.0f64..0.3];
    prop_oneof![
        3 => (prop::bool::weighted(0.9), prop::option::of(40000u16..40004))
            .prop_map(|(to_listener, client_port)| Op::Open { to_listener, client_port }),
        6 => (0usize..4, side(), 0usize..4000).prop_map(|(conn, side, len)| Op::Send { conn, side, len }),
        2 => (0usize..4, side()).prop_map(|(conn, side)| Op::Close { conn, side }),
        1 => (0usize..4, side()).prop_map(|(conn, side)| Op::Abort { conn, side }),
        2 => (
            prop::option::of(any::<bool>()),
            prop::option::of(prop::sample::select(vec![0x10u8, 0x18, 0x02, 0x12, 0x11, 0x04])),
            0u64..3,
            prop::option::of(1u64..4),
            0u8..5,
            0u64..500,
        )
            .prop_map(|(from_a, flags, skip, count, action, delay_ms)| Op::Fault {
                from_a,
                flags,
                skip,
                count,
                action,
                delay_ms
            }),
        1 => (0usize..4).prop_map(|fault| Op::Release { fault }),
        1 => (0usize..4).prop_map(|fault| Op::RemoveFault { fault }),
        1 => (1.0f64..50.0, prop_oneof![Just(0.0f64), 0.0f64..20.0], p(), p(), p(), p()).prop_map(
            |(latency_ms, jitter_ms, loss, duplicate, reorder, corrupt)| Op::Link {
                latency_ms,
                jitter_ms,
                loss,
                duplicate,
                reorder,
                corrupt
            }
        ),
        4 => Just(Op::Step),
        3 => (1u64..3000).prop_map(|ms| Op::Advance { ms }),
        2 => Just(Op::RunUntilIdle),
    ]
}

/// The `i`-th octet of the stream one side sends: a hash of its position,
/// so that a duplicated or shifted octet does not look right by accident.
fn octet(side: Side, i: u64) -> u8 {
    let mut x = i.wrapping_add(if side == Side::Client { 0x9e37_79b9_7f4a_7c15 } else { 0x6a09_e667_f3bc_c908 });
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (x ^ (x >> 31)) as u8
}

struct Harness {
    world: World,
    conns: Vec<u64>,
    faults: Vec<u64>,
    /// Octets each end's user queued, by (connection, sending side).
    sent: HashMap<(u64, Side), Vec<u8>>,
    next_seq: u64,
    last_t: u64,
}

impl Harness {
    fn new(seed: u64) -> Harness {
        let mut world = World::new(WorldConfig { seed, ..WorldConfig::default() }).expect("world");
        world.add_host("A", Ipv4Addr::new(10, 0, 0, 1), HostKind::Tcp).expect("A");
        world.add_host("B", Ipv4Addr::new(10, 0, 0, 2), HostKind::Tcp).expect("B");
        world.set_link("A", "B", LinkParams { latency_ms: 10.0, ..LinkParams::default() }).expect("link");
        world
            .listen(ListenSpec {
                host: "B".into(),
                port: 80,
                isn: None,
                profile: None,
                backlog: None,
                nodelay: false,
                keepalive: None,
            })
            .expect("listen");
        let mut h =
            Harness { world, conns: Vec::new(), faults: Vec::new(), sent: HashMap::new(), next_seq: 1, last_t: 0 };
        h.check("set-up");
        h
    }

    fn conn(&self, i: usize) -> Option<u64> {
        (!self.conns.is_empty()).then(|| self.conns[i % self.conns.len()])
    }

    fn apply(&mut self, op: &Op) {
        let w = &mut self.world;
        match *op {
            Op::Open { to_listener, client_port } => {
                let spec = ConnectSpec {
                    client: "A".into(),
                    server: "B".into(),
                    port: if to_listener { 80 } else { 81 },
                    client_port,
                    ..ConnectSpec::default()
                };
                if let Ok(id) = w.connect(spec) {
                    self.conns.push(id);
                }
            }
            Op::Send { conn, side, len } => {
                let Some(id) = self.conn(conn) else { return };
                let stream = self.sent.entry((id, side)).or_default();
                let start = stream.len() as u64;
                let data: Vec<u8> = (0..len as u64).map(|i| octet(side, start + i)).collect();
                if let Ok(n) = self.world.send(id, side, &data) {
                    assert!(n <= data.len());
                    stream.extend_from_slice(&data[..n]);
                }
            }
            Op::Close { conn, side } => {
                if let Some(id) = self.conn(conn) {
                    let _ = self.world.close(id, side);
                }
            }
            Op::Abort { conn, side } => {
                if let Some(id) = self.conn(conn) {
                    let _ = self.world.abort(id, side);
                }
            }
            Op::Fault { from_a, flags, skip, count, action, delay_ms } => {
                let (from, to) = match from_a {
                    Some(true) => (Some("A".to_string()), Some("B".to_string())),
                    Some(false) => (Some("B".to_string()), Some("A".to_string())),
                    None => (None, None),
                };
                let action = [
                    FaultAction::Drop,
                    FaultAction::Delay,
                    FaultAction::Duplicate,
                    FaultAction::Corrupt,
                    FaultAction::Hold,
                ][usize::from(action) % 5];
                let matcher = SegmentMatch { flags: flags.map(Flags), ..SegmentMatch::default() };
                let spec = FaultSpec { from, to, matcher, skip, count, action, delay_ns: delay_ms * MS };
                if let Ok(id) = w.add_fault(spec) {
                    self.faults.push(id);
                }
            }
            Op::Release { fault } => {
                if !self.faults.is_empty() {
                    let _ = w.release_fault(self.faults[fault % self.faults.len()]);
                }
            }
            Op::RemoveFault { fault } => {
                if !self.faults.is_empty() {
                    let id = self.faults.remove(fault % self.faults.len());
                    w.remove_fault(id).expect("remove an installed fault");
                }
            }
            Op::Link { latency_ms, jitter_ms, loss, duplicate, reorder, corrupt } => {
                let params =
                    LinkParams { latency_ms, jitter_ms, loss, duplicate, reorder, corrupt, ..LinkParams::default() };
                w.set_link("A", "B", params).expect("valid link parameters");
            }
            Op::Step => {
                w.step();
            }
            Op::Advance { ms } => {
                w.advance(Duration::from_millis(ms));
            }
            Op::RunUntilIdle => {
                w.run_until_idle(20_000, ms(120_000));
            }
        }
    }

    /// Every invariant of the module comment; `after` names the step.
    fn check(&mut self, after: &str) {
        for e in self.world.take_events() {
            assert_eq!(e.seq, self.next_seq, "after {after}: event numbers have no gap: {e:?}");
            assert!(e.t_ns >= self.last_t, "after {after}: time went back: {e:?}");
            self.next_seq += 1;
            self.last_t = e.t_ns;
        }
        assert_eq!(self.world.next_event_seq(), self.next_seq, "after {after}");
        for &id in &self.conns {
            for side in [Side::Client, Side::Server] {
                if let Ok(tcb) = self.world.status(id, side) {
                    let outstanding = tcb.snd_nxt.wrapping_sub(tcb.snd_una);
                    assert!(
                        outstanding < 1 << 31,
                        "after {after}: conn {id} {side:?} {:?}: SND.UNA {} > SND.NXT {}",
                        tcb.state,
                        tcb.snd_una,
                        tcb.snd_nxt
                    );
                    assert!(
                        tcb.snd_una.wrapping_sub(tcb.iss) < 1 << 31,
                        "after {after}: conn {id} {side:?}: SND.UNA {} before ISS {}",
                        tcb.snd_una,
                        tcb.iss
                    );
                }
                let peer = if side == Side::Client { Side::Server } else { Side::Client };
                if let Ok(received) = self.world.received(id, side) {
                    let sent = self.sent.get(&(id, peer)).map_or(&[][..], Vec::as_slice);
                    assert!(
                        received.len() <= sent.len() && received == &sent[..received.len()],
                        "after {after}: conn {id} {side:?} received {} octets that are not a prefix of the {} sent",
                        received.len(),
                        sent.len()
                    );
                }
            }
        }
    }
}

/// One case: set-up, an open to the listener, the ops, then a clean settle.
/// Returns (octets delivered, events).
fn run_case(seed: u64, ops: &[Op]) -> (u64, u64) {
    let mut h = Harness::new(seed);
    h.apply(&Op::Open { to_listener: true, client_port: None });
    h.check("the first open");
    for (i, op) in ops.iter().enumerate() {
        h.apply(op);
        h.check(&format!("step {i}: {op:?}"));
    }
    // Finally let everything settle (faults removed, link clean) and check again.
    for id in std::mem::take(&mut h.faults) {
        h.world.remove_fault(id).expect("remove");
    }
    h.world.set_link("A", "B", LinkParams::default()).expect("link");
    h.world.run_until_idle(50_000, ms(600_000));
    h.check("the final run");
    let delivered = h
        .conns
        .iter()
        .flat_map(|&id| [(id, Side::Client), (id, Side::Server)])
        .filter_map(|(id, side)| h.world.received(id, side).ok().map(<[u8]>::len))
        .sum::<usize>();
    (delivered as u64, h.next_seq - 1)
}

#[test]
fn invariants_hold_after_every_step() {
    use proptest::test_runner::{Config, TestRunner};
    let cases = std::env::var("TCPLAB_INVARIANT_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(3000);
    let mut runner = TestRunner::new(Config { cases, failure_persistence: None, ..Config::default() });
    let totals = std::cell::Cell::new((0u64, 0u64, 0u32));
    runner
        .run(&(any::<u64>(), proptest::collection::vec(op(), 1..60)), |(seed, ops)| {
            let (delivered, events) = run_case(seed, &ops);
            let (d, e, busy) = totals.get();
            totals.set((d + delivered, e + events, busy + u32::from(delivered > 0)));
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
    let (delivered, events, busy) = totals.get();
    println!("{cases} cases: {events} events, {delivered} octets delivered, {busy} cases delivered data");
    // The cases must exercise data transfer, not only handshakes.
    assert!(busy >= cases / 3 && delivered >= u64::from(cases) * 1000, "{busy} {delivered}");
}

/// The harness itself can fail: a corrupted stream is caught.
#[test]
fn the_prefix_check_catches_a_wrong_octet() {
    let mut h = Harness::new(1);
    h.apply(&Op::Open { to_listener: true, client_port: Some(40000) });
    h.apply(&Op::RunUntilIdle);
    h.apply(&Op::Send { conn: 0, side: Side::Client, len: 100 });
    h.apply(&Op::RunUntilIdle);
    h.check("a clean transfer");
    let id = h.conns[0];
    assert_eq!(h.world.received(id, Side::Server).expect("received").len(), 100);
    h.sent.get_mut(&(id, Side::Client)).expect("sent")[7] ^= 1;
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| h.check("tampered")));
    assert!(caught.is_err(), "a changed octet must fail the prefix check");
}

/// A case proptest found: a fault rule corrupting every segment after the
/// second, on a link that also corrupts and reorders, while a 669-octet
/// send crosses a close. The receiver must never take corrupted octets.
#[test]
fn corrupted_segments_never_reach_the_application() {
    let ops = vec![
        Op::Advance { ms: 20 },
        Op::Fault { from_a: None, flags: None, skip: 0, count: Some(2), action: 2, delay_ms: 0 },
        Op::Link {
            latency_ms: 16.292529224305785,
            jitter_ms: 15.198620980229443,
            loss: 0.0,
            duplicate: 0.0,
            reorder: 0.058958688031933076,
            corrupt: 0.18805227702875782,
        },
        Op::Open { to_listener: true, client_port: None },
        Op::Advance { ms: 47 },
        Op::Open { to_listener: true, client_port: None },
        Op::Open { to_listener: true, client_port: None },
        Op::Open { to_listener: true, client_port: None },
        Op::Advance { ms: 1000 },
        Op::Send { conn: 0, side: Side::Client, len: 1461 },
        Op::Release { fault: 0 },
        Op::Send { conn: 1, side: Side::Client, len: 1 },
        Op::Advance { ms: 2061 },
        Op::Send { conn: 2, side: Side::Client, len: 1 },
        Op::Abort { conn: 2, side: Side::Server },
        Op::Send { conn: 0, side: Side::Client, len: 2921 },
        Op::Fault { from_a: None, flags: None, skip: 2, count: None, action: 3, delay_ms: 0 },
        Op::Close { conn: 0, side: Side::Client },
        Op::Close { conn: 3, side: Side::Client },
        Op::Send { conn: 0, side: Side::Server, len: 669 },
    ];
    run_case(14354532364676585940, &ops);
}
