//! Interoperability with a TCP nobody here wrote: tcplab's engine on host A
//! talks to smoltcp on host S across the simulated network. S is a raw host:
//! the world hands the encoded segments that reach it to smoltcp's device,
//! and puts what smoltcp transmits back on the wire from S, so both sides
//! see only bytes and every link impairment applies.

mod common;

use common::smol::SmolHost;
use smoltcp::iface::SocketHandle;
use smoltcp::socket::tcp::State as SmolState;
use tcplab::engine::{Isn, Profile, State};
use tcplab::sim::{ConnectSpec, DropReason, EventKind, HostKind, LinkParams, ListenSpec, Side, World, WorldConfig};
use tcplab::time::Instant;

const MS: u64 = 1_000_000;
const A_IP: [u8; 4] = [10, 0, 0, 1];
const S_IP: [u8; 4] = [10, 0, 0, 2];

struct Pair {
    world: World,
    smol: SmolHost,
}

impl Pair {
    fn new(link: LinkParams, seed: u64) -> Pair {
        let profile = Profile { isn: Isn::Fixed(1000), ..Profile::default() };
        let mut world = World::new(WorldConfig { seed, profile, ..WorldConfig::default() }).unwrap();
        world.add_host("A", A_IP.into(), HostKind::Tcp).unwrap();
        world.add_host("S", S_IP.into(), HostKind::Raw).unwrap();
        world.set_link("A", "S", link).unwrap();
        Pair { world, smol: SmolHost::new(S_IP.into(), 24) }
    }

    /// Moves both sides forward in virtual time until `done` holds or
    /// `limit_ns` of virtual time has passed; returns whether `done` held.
    fn run(&mut self, limit_ns: u64, mut done: impl FnMut(&mut Pair) -> bool) -> bool {
        let deadline = self.world.now().as_nanos() + limit_ns;
        loop {
            for packet in self.world.take_raw_inbox("S").unwrap() {
                self.smol.receive_tcp(packet.src_ip, &packet.bytes);
            }
            for (dst, bytes) in self.smol.poll(self.world.now().as_nanos()) {
                self.world.raw_send("S", dst, bytes.into()).unwrap();
            }
            if done(self) {
                return true;
            }
            let now = self.world.now().as_nanos();
            let next =
                [self.world.next_event_at().map(Instant::as_nanos), self.smol.poll_at(now)].into_iter().flatten().min();
            match next {
                Some(t) if t <= deadline => self.world.run_until(Instant::from_nanos(t.max(now))),
                _ => return done(self),
            }
            if self.world.now().as_nanos() == now && self.smol.poll_at(now) == Some(now) {
                // smoltcp wants another poll at the same instant: loop again.
                continue;
            }
        }
    }
}

fn lossless() -> LinkParams {
    LinkParams { latency_ms: 5.0, ..LinkParams::default() }
}

fn client_states(world: &World) -> Vec<State> {
    let mut out = Vec::new();
    for e in world.events() {
        if let EventKind::StateChanged { host, to, listener: None, .. } = &e.kind {
            if &**host == "A" {
                out.push(*to);
            }
        }
    }
    out
}

#[test]
fn tcplab_opens_to_smoltcp_and_closes_first() {
    let mut p = Pair::new(lossless(), 1);
    let server = p.smol.add_tcp_socket(65_535, 65_535);
    p.smol.listen(server, 80);
    let conn = p
        .world
        .connect(ConnectSpec {
            client: "A".into(),
            server: "S".into(),
            port: 80,
            client_port: Some(40_000),
            ..ConnectSpec::default()
        })
        .unwrap();
    assert!(p.run(5_000 * MS, |p| p.smol.tcp(server).state() == SmolState::Established
        && p.world.status(conn, Side::Client).unwrap().state == State::Established));
    // The handshake's numbers agree on both sides.
    let a = p.world.status(conn, Side::Client).unwrap();
    assert_eq!(a.iss, 1000);
    assert_eq!(a.snd_nxt, 1001);

    // Clean close, tcplab first: FIN_WAIT_1, FIN_WAIT_2, TIME_WAIT, CLOSED;
    // smoltcp CLOSE_WAIT, LAST_ACK, CLOSED.
    p.world.close(conn, Side::Client).unwrap();
    assert!(p.run(5_000 * MS, |p| p.smol.tcp(server).state() == SmolState::CloseWait));
    p.smol.tcp(server).close();
    assert!(p.run(5_000 * MS, |p| p.world.status(conn, Side::Client).unwrap().state == State::TimeWait));
    assert!(p.run(5_000 * MS, |p| p.smol.tcp(server).state() == SmolState::Closed));
    assert!(p.run(120_000 * MS, |p| p.world.status(conn, Side::Client).unwrap().state == State::Closed));
    assert_eq!(
        client_states(&p.world),
        [State::SynSent, State::Established, State::FinWait1, State::FinWait2, State::TimeWait, State::Closed]
    );
}

#[test]
fn smoltcp_opens_to_tcplab_and_closes_first() {
    let mut p = Pair::new(lossless(), 2);
    p.world.listen(ListenSpec { host: "A".into(), port: 80, isn: Some(5000), profile: None, backlog: None }).unwrap();
    let client = p.smol.add_tcp_socket(65_535, 65_535);
    p.smol.connect(client, (A_IP.into(), 80), 45_000);
    assert!(p.run(5_000 * MS, |p| {
        p.smol.tcp(client).state() == SmolState::Established
            && p.world
                .connections()
                .first()
                .is_some_and(|c| c.server.as_ref().is_some_and(|e| e.state == State::Established))
    }));
    let conn = p.world.connections()[0].id;
    let b = p.world.status(conn, Side::Server).unwrap();
    assert_eq!(b.iss, 5000);

    // smoltcp closes first; tcplab passes CLOSE_WAIT and LAST_ACK.
    p.smol.tcp(client).close();
    assert!(p.run(5_000 * MS, |p| p.world.status(conn, Side::Server).unwrap().state == State::CloseWait));
    p.world.close(conn, Side::Server).unwrap();
    assert!(p.run(5_000 * MS, |p| p.world.status(conn, Side::Server).unwrap().state == State::Closed));
    assert!(p.run(5_000 * MS, |p| p.smol.tcp(client).state() == SmolState::TimeWait));
    assert!(p.run(60_000 * MS, |p| p.smol.tcp(client).state() == SmolState::Closed));
    assert_eq!(
        client_states(&p.world),
        [State::SynReceived, State::Established, State::CloseWait, State::LastAck, State::Closed]
    );
}

// ----- bulk transfer over a lossy link -----

const MIB: usize = 1 << 20;

/// 5 ms each way, and 3% of the segments lost in each direction (drawn from the world's seeded RNG).
fn lossy() -> LinkParams {
    LinkParams { latency_ms: 5.0, loss: 0.03, ..LinkParams::default() }
}

fn pattern(len: usize, mul: u32, shift: u32) -> Vec<u8> {
    (0..len as u32).map(|i| (i.wrapping_mul(mul) >> shift) as u8).collect()
}

/// smoltcp's application: writes `out` as its send buffer makes room, and
/// reads everything that arrives into `got`.
struct SmolApp {
    out: Vec<u8>,
    sent: usize,
    got: Vec<u8>,
}

impl SmolApp {
    fn pump(&mut self, smol: &mut SmolHost, h: SocketHandle) {
        let sock = smol.tcp(h);
        if sock.can_send() && self.sent < self.out.len() {
            self.sent += sock.send_slice(&self.out[self.sent..]).unwrap();
        }
        while sock.can_recv() {
            let data = sock.recv(|buf| (buf.len(), buf.to_vec())).unwrap();
            if data.is_empty() {
                break;
            }
            self.got.extend_from_slice(&data);
        }
    }
}

/// Both sides send 1 MiB and read everything over the lossy link, then
/// tcplab closes first and both end where RFC 9293 says: tcplab through
/// FIN_WAIT_1, FIN_WAIT_2, TIME_WAIT to CLOSED, smoltcp through CLOSE_WAIT and
/// LAST_ACK to CLOSED. `tcplab_opens`: which side does the active OPEN.
fn bulk_both_ways(tcplab_opens: bool, seed: u64) {
    let mut p = Pair::new(lossy(), seed);
    let to_smol = pattern(MIB, 2_654_435_761, 13);
    let to_tcplab = pattern(MIB, 40_503, 7);
    let mut app = SmolApp { out: to_tcplab.clone(), sent: 0, got: Vec::new() };
    let smol = p.smol.add_tcp_socket(65_535, 65_535);
    let (conn, side) = if tcplab_opens {
        p.smol.listen(smol, 80);
        let spec = ConnectSpec {
            client: "A".into(),
            server: "S".into(),
            port: 80,
            client_port: Some(40_000),
            ..ConnectSpec::default()
        };
        (p.world.connect(spec).unwrap(), Side::Client)
    } else {
        p.world
            .listen(ListenSpec { host: "A".into(), port: 80, isn: Some(5000), profile: None, backlog: None })
            .unwrap();
        p.smol.connect(smol, (A_IP.into(), 80), 45_000);
        assert!(p.run(30_000 * MS, |p| !p.world.connections().is_empty()));
        (p.world.connections()[0].id, Side::Server)
    };

    // The transfer: bounded in virtual time (it takes a few seconds; before
    // the fixes some seeds needed minutes of backed-off timeouts).
    let start = p.world.now();
    let mut sent = 0;
    let finished = p.run(60_000 * MS, |p| {
        if sent < to_smol.len() {
            sent += p.world.send(conn, side, &to_smol[sent..]).unwrap_or(0);
        }
        app.pump(&mut p.smol, smol);
        app.got.len() == to_tcplab.len() && p.world.received(conn, side).unwrap().len() == to_smol.len()
    });
    assert!(
        finished,
        "transfer incomplete after {} ms: smoltcp got {} of {MIB}, tcplab got {} of {MIB}; tcplab: {:?}",
        (p.world.now() - start).as_nanos() / MS,
        app.got.len(),
        p.world.received(conn, side).unwrap().len(),
        p.world.status(conn, side).unwrap(),
    );
    assert!(app.got == to_smol, "tcplab -> smoltcp arrived intact");
    assert!(p.world.received(conn, side).unwrap() == to_tcplab, "smoltcp -> tcplab arrived intact");
    let lost = p
        .world
        .events()
        .iter()
        .filter(|e| matches!(&e.kind, EventKind::SegmentDropped { reason: DropReason::Loss, .. }))
        .count();
    assert!(lost > 20, "the link lost segments ({lost})");

    // The close, over the same lossy link.
    p.world.close(conn, side).unwrap();
    assert!(p.run(60_000 * MS, |p| p.smol.tcp(smol).state() == SmolState::CloseWait));
    p.smol.tcp(smol).close();
    assert!(p.run(60_000 * MS, |p| {
        p.smol.tcp(smol).state() == SmolState::Closed && p.world.status(conn, side).unwrap().state == State::TimeWait
    }));
    assert!(p.run(120_000 * MS, |p| p.world.status(conn, side).unwrap().state == State::Closed));
    assert_eq!(p.world.status(conn, side).unwrap().error, None);
    let states: Vec<State> = p
        .world
        .events()
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::StateChanged { host, to, listener: None, .. } if &**host == "A" => Some(*to),
            _ => None,
        })
        .collect();
    let opening = if tcplab_opens { State::SynSent } else { State::SynReceived };
    assert_eq!(states, [opening, State::Established, State::FinWait1, State::FinWait2, State::TimeWait, State::Closed]);
}

#[test]
fn bulk_both_ways_over_a_lossy_link_tcplab_client() {
    for seed in [1, 2, 3] {
        bulk_both_ways(true, seed);
    }
}

#[test]
fn bulk_both_ways_over_a_lossy_link_tcplab_server() {
    for seed in [1, 2, 3] {
        bulk_both_ways(false, seed);
    }
}
