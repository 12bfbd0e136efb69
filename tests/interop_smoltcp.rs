//! Interoperability with a TCP nobody here wrote: tcplab's engine on host A
//! talks to smoltcp on host S across the simulated network. S is a raw host:
//! the world hands the encoded segments that reach it to smoltcp's device,
//! and puts what smoltcp transmits back on the wire from S, so both sides
//! see only bytes and every link impairment applies.

mod common;

use common::smol::SmolHost;
use smoltcp::socket::tcp::State as SmolState;
use tcplab::engine::{Isn, Profile, State};
use tcplab::sim::{ConnectSpec, EventKind, HostKind, LinkParams, ListenSpec, Side, World, WorldConfig};

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
        let deadline = self.world.now() + limit_ns;
        loop {
            for packet in self.world.take_raw_inbox("S").unwrap() {
                self.smol.receive_tcp(packet.src_ip, &packet.bytes);
            }
            for (dst, bytes) in self.smol.poll(self.world.now()) {
                self.world.raw_send("S", dst, bytes.into()).unwrap();
            }
            if done(self) {
                return true;
            }
            let now = self.world.now();
            let next = [self.world.next_event_at(), self.smol.poll_at(now)].into_iter().flatten().min();
            match next {
                Some(t) if t <= deadline => self.world.run_until(t.max(now)),
                _ => return done(self),
            }
            if self.world.now() == now && self.smol.poll_at(now) == Some(now) {
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
    p.world.listen(ListenSpec { host: "A".into(), port: 80, isn: Some(5000), profile: None }).unwrap();
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
