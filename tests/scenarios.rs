//! Scenario tests on the simulated network: each one builds a world, does the
//! steps of one of the seed text's claims, and asserts the exact segments on
//! the wire (flags, seq, ack, len) and both sides' state sequences.

use tcplab::engine::{ConnError, Flags, Handshake, Isn, Profile, State, Switch, TimerKind};
use tcplab::sim::{
    ConnectSpec, DropReason, Event, EventKind, FaultAction, FaultSpec, HostKind, InjectSpec, LinkParams, ListenSpec,
    SegmentMatch, Side, Unaccepted, World, WorldConfig, WorldError,
};
use tcplab::time::Duration;

const MS: u64 = 1_000_000;

/// `n` milliseconds of virtual time.
fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn world_with(profile: Profile, seed: u64) -> World {
    let mut world = World::new(WorldConfig { seed, profile, ..WorldConfig::default() }).unwrap();
    world.add_host("A", "10.0.0.1".parse().unwrap(), HostKind::Tcp).unwrap();
    world.add_host("B", "10.0.0.2".parse().unwrap(), HostKind::Tcp).unwrap();
    world
}

/// The seed text's numbers: client ISN 300 (data from 301), server ISN 500 (data from 501).
fn seed_world() -> World {
    world_with(Profile { isn: Isn::Fixed(300), ..Profile::default() }, 1)
}

fn listen(world: &mut World, isn: Option<u32>) {
    world
        .listen(ListenSpec {
            host: "B".into(),
            port: 80,
            isn,
            profile: None,
            backlog: None,
            nodelay: false,
            keepalive: None,
        })
        .unwrap();
}

fn connect(world: &mut World) -> u64 {
    world
        .connect(ConnectSpec {
            client: "A".into(),
            server: "B".into(),
            port: 80,
            client_port: Some(40000),
            ..ConnectSpec::default()
        })
        .unwrap()
}

/// An established connection A:40000 -> B:80 with ISNs 300 / 500; events so far discarded.
fn established() -> (World, u64) {
    let mut world = seed_world();
    listen(&mut world, Some(500));
    let conn = connect(&mut world);
    world.run_until_idle(1000, ms(10_000));
    assert_eq!(world.status(conn, Side::Client).unwrap().state, State::Established);
    assert_eq!(world.status(conn, Side::Server).unwrap().state, State::Established);
    world.take_events();
    (world, conn)
}

/// A segment as the tests compare it: sender, flags, seq, ack, payload length.
type Seg = (String, String, u32, u32, usize);

fn sent(events: &[Event]) -> Vec<Seg> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::SegmentSent { segment, .. } => Some((
                segment.from.to_string(),
                segment.segment.flags.to_string(),
                segment.segment.seq.0,
                segment.segment.ack.0,
                segment.segment.payload.len(),
            )),
            _ => None,
        })
        .collect()
}

fn seg(from: &str, flags: &str, seq: u32, ack: u32, len: usize) -> Seg {
    (from.to_string(), flags.to_string(), seq, ack, len)
}

/// The states one host's endpoints passed through (excluding listener transitions).
fn states(events: &[Event], host: &str) -> Vec<State> {
    let mut out = Vec::new();
    for e in events {
        if let EventKind::StateChanged { host: h, from, to, listener: None, .. } = &e.kind {
            if &**h == host {
                if out.is_empty() {
                    out.push(*from);
                }
                out.push(*to);
            }
        }
    }
    out
}

fn drops(events: &[Event]) -> Vec<(DropReason, u32, String)> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::SegmentDropped { reason, segment, .. } => {
                Some((*reason, segment.segment.seq.0, segment.segment.flags.to_string()))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn three_way_handshake() {
    let mut world = seed_world();
    listen(&mut world, Some(500));
    let conn = connect(&mut world);
    world.run_until_idle(1000, ms(10_000));
    let events = world.take_events();
    assert_eq!(
        sent(&events),
        [seg("A", "SYN", 300, 0, 0), seg("B", "SYN+ACK", 500, 301, 0), seg("A", "ACK", 301, 501, 0)]
    );
    assert_eq!(states(&events, "A"), [State::Closed, State::SynSent, State::Established]);
    assert_eq!(states(&events, "B"), [State::Listen, State::SynReceived, State::Established]);
    // Numbered from 1 without gaps, time never going back.
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.seq, i as u64 + 1);
    }
    assert!(events.windows(2).all(|w| w[0].t_ns <= w[1].t_ns));
    let client = world.status(conn, Side::Client).unwrap();
    assert_eq!((client.iss, client.irs, client.snd_una, client.snd_nxt, client.rcv_nxt), (300, 500, 301, 301, 501));
    // The SYN carries our MSS; the listener's transition is reported too.
    let syn = events.iter().find_map(|e| match &e.kind {
        EventKind::SegmentSent { segment, .. } => Some(segment.segment.clone()),
        _ => None,
    });
    assert_eq!(syn.unwrap().mss(), Some(1460));
    assert!(matches!(
        &events[0].kind,
        EventKind::StateChanged { from: State::Closed, to: State::Listen, listener: Some(1), .. }
    ));
}

#[test]
fn seed_sequence_numbers() {
    let (mut world, conn) = established();
    // "seq 301 carrying 100 bytes: the next segment's seq is 401".
    world.send(conn, Side::Client, &[b'a'; 100]).unwrap();
    world.run_until_idle(1000, ms(10_000));
    world.send(conn, Side::Client, &[b'b'; 10]).unwrap();
    world.run_until_idle(1000, ms(10_000));
    // "B receives 200 bytes at 501 and acknowledges with 701".
    world.send(conn, Side::Server, &[b'c'; 200]).unwrap();
    world.run_until_idle(1000, ms(10_000));
    let events = world.take_events();
    assert_eq!(
        sent(&events),
        [
            seg("A", "PSH+ACK", 301, 501, 100),
            seg("B", "ACK", 501, 401, 0),
            seg("A", "PSH+ACK", 401, 501, 10),
            seg("B", "ACK", 501, 411, 0),
            seg("B", "PSH+ACK", 501, 411, 200),
            seg("A", "ACK", 411, 701, 0),
        ]
    );
    assert_eq!(world.received(conn, Side::Server).unwrap(), [&[b'a'; 100][..], &[b'b'; 10]].concat());
    assert_eq!(world.received(conn, Side::Client).unwrap(), [b'c'; 200]);
}

#[test]
fn four_way_close() {
    let (mut world, conn) = established();
    world.close(conn, Side::Client).unwrap();
    world.run_until_idle(1000, ms(100));
    assert_eq!(world.status(conn, Side::Client).unwrap().state, State::FinWait2);
    assert_eq!(world.status(conn, Side::Server).unwrap().state, State::CloseWait);
    world.close(conn, Side::Server).unwrap();
    let t_close = world.now().as_nanos();
    world.run_until_idle(1000, Duration::MAX);
    let events = world.take_events();
    assert_eq!(
        sent(&events),
        [
            seg("A", "FIN+ACK", 301, 501, 0),
            seg("B", "ACK", 501, 302, 0), // the FIN consumed one sequence number
            seg("B", "FIN+ACK", 501, 302, 0),
            seg("A", "ACK", 302, 502, 0),
        ]
    );
    assert_eq!(
        states(&events, "A"),
        [State::Established, State::FinWait1, State::FinWait2, State::TimeWait, State::Closed]
    );
    assert_eq!(states(&events, "B"), [State::Established, State::CloseWait, State::LastAck, State::Closed]);
    // TIME_WAIT lasted 2*MSL (default MSL 30 s) from the FIN's arrival (10 ms after it left).
    let closed_at = events
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::StateChanged { host, from: State::TimeWait, .. } if &**host == "A" => Some(e.t_ns),
            _ => None,
        })
        .unwrap();
    assert_eq!(closed_at, t_close + 10 * MS + 60_000 * MS);
    assert!(events.iter().any(|e| matches!(e.kind, EventKind::TimerFired { timer: TimerKind::TimeWait, .. })));
}

#[test]
fn half_close_server_keeps_sending_in_close_wait() {
    let (mut world, conn) = established();
    world.close(conn, Side::Client).unwrap();
    world.run_until_idle(1000, ms(100));
    assert_eq!(world.status(conn, Side::Server).unwrap().state, State::CloseWait);
    world.send(conn, Side::Server, b"still talking").unwrap();
    world.run_until_idle(1000, ms(100));
    let events = world.take_events();
    assert_eq!(
        sent(&events),
        [
            seg("A", "FIN+ACK", 301, 501, 0),
            seg("B", "ACK", 501, 302, 0),
            seg("B", "PSH+ACK", 501, 302, 13),
            seg("A", "ACK", 302, 514, 0),
        ]
    );
    assert_eq!(world.status(conn, Side::Client).unwrap().state, State::FinWait2);
    assert_eq!(world.received(conn, Side::Client).unwrap(), b"still talking");
    // The client can no longer send.
    assert!(world.send(conn, Side::Client, b"x").is_err());
}

/// The same half-close, but the client closed its socket, not only its
/// sending side: no one will read, so the server's data meets a reset
/// (RFC 9293 section 3.10.4, RFC 1122 4.2.2.13) and both ends are gone.
#[test]
fn data_after_the_socket_is_closed_is_answered_with_a_reset() {
    let (mut world, conn) = established();
    world.close_socket(conn, Side::Client).unwrap();
    world.run_until_idle(1000, ms(100));
    assert_eq!(world.status(conn, Side::Client).unwrap().state, State::FinWait2);
    assert_eq!(world.status(conn, Side::Server).unwrap().state, State::CloseWait);
    world.send(conn, Side::Server, b"anyone there?").unwrap();
    world.run_until_idle(1000, ms(100));
    let events = world.take_events();
    assert_eq!(
        sent(&events),
        [
            seg("A", "FIN+ACK", 301, 501, 0),
            seg("B", "ACK", 501, 302, 0),
            seg("B", "PSH+ACK", 501, 302, 13),
            // <SEQ=SEG.ACK><CTL=RST>, as BSD's tcp_dropwithreset() answers.
            seg("A", "RST", 302, 0, 0),
        ]
    );
    assert_eq!(world.status(conn, Side::Client).unwrap().state, State::Closed);
    assert_eq!(world.received(conn, Side::Client).unwrap(), b"", "nothing was delivered to a closed socket");
    let server = world.status(conn, Side::Server).unwrap();
    assert_eq!((server.state, server.error), (State::Closed, Some(ConnError::Reset)));
    // A pure ACK, or data already received, is no reason for a reset.
    let (mut world, conn) = established();
    world.close_socket(conn, Side::Client).unwrap();
    world.close_socket(conn, Side::Client).unwrap();
    world.run_until_idle(1000, ms(100));
    world.close(conn, Side::Server).unwrap();
    world.run_until_idle(1000, ms(100));
    assert_eq!(world.status(conn, Side::Client).unwrap().state, State::TimeWait);
}

#[test]
fn lost_final_ack_is_answered_again_from_time_wait() {
    let (mut world, conn) = established();
    world
        .add_fault(FaultSpec {
            from: Some("A".into()),
            to: Some("B".into()),
            matcher: SegmentMatch { flags: Some(Flags::ACK), ack: Some(502), ..Default::default() },
            skip: 0,
            count: Some(1),
            action: FaultAction::Drop,
            delay_ns: 0,
        })
        .unwrap();
    world.close(conn, Side::Client).unwrap();
    world.run_until_idle(1000, ms(100));
    world.close(conn, Side::Server).unwrap();
    world.run_until_idle(1000, ms(200));
    let first_deadline = world.status(conn, Side::Client).unwrap().timers.time_wait.unwrap();
    // The server's FIN is retransmitted after its RTO and answered from TIME_WAIT.
    world.run_until_idle(10_000, ms(5_000));
    let restarted = world.status(conn, Side::Client).unwrap();
    assert_eq!(restarted.state, State::TimeWait);
    assert!(restarted.timers.time_wait.unwrap() > first_deadline, "2*MSL restarted");
    world.run_until_idle(10_000, Duration::MAX);
    let events = world.take_events();
    let segs = sent(&events);
    assert_eq!(
        segs,
        [
            seg("A", "FIN+ACK", 301, 501, 0),
            seg("B", "ACK", 501, 302, 0),
            seg("B", "FIN+ACK", 501, 302, 0),
            seg("A", "ACK", 302, 502, 0),     // dropped by the fault rule
            seg("B", "FIN+ACK", 501, 302, 0), // retransmitted
            seg("A", "ACK", 302, 502, 0),     // answered from TIME_WAIT
        ]
    );
    assert_eq!(drops(&events), [(DropReason::Fault, 302, "ACK".to_string())]);
    assert_eq!(world.status(conn, Side::Client).unwrap().state, State::Closed);
    assert_eq!(world.status(conn, Side::Server).unwrap().state, State::Closed);
    assert_eq!(states(&events, "B"), [State::Established, State::CloseWait, State::LastAck, State::Closed]);
}

#[test]
fn lost_final_ack_without_time_wait_meets_a_reset() {
    let mut world = world_with(Profile { isn: Isn::Fixed(300), time_wait: Switch::Off, ..Profile::default() }, 1);
    listen(&mut world, Some(500));
    let conn = connect(&mut world);
    world.run_until_idle(1000, ms(100));
    world
        .add_fault(FaultSpec {
            from: Some("A".into()),
            to: Some("B".into()),
            matcher: SegmentMatch { flags: Some(Flags::ACK), ack: Some(502), ..Default::default() },
            skip: 0,
            count: Some(1),
            action: FaultAction::Drop,
            delay_ns: 0,
        })
        .unwrap();
    world.take_events();
    world.close(conn, Side::Client).unwrap();
    world.run_until_idle(1000, ms(100));
    world.close(conn, Side::Server).unwrap();
    world.run_until_idle(10_000, Duration::MAX);
    let events = world.take_events();
    assert_eq!(
        sent(&events),
        [
            seg("A", "FIN+ACK", 301, 501, 0),
            seg("B", "ACK", 501, 302, 0),
            seg("B", "FIN+ACK", 501, 302, 0),
            seg("A", "ACK", 302, 502, 0),     // dropped
            seg("B", "FIN+ACK", 501, 302, 0), // into a closed port
            seg("A", "RST", 302, 0, 0),
        ]
    );
    assert_eq!(states(&events, "A"), [State::Established, State::FinWait1, State::FinWait2, State::Closed]);
    assert!(drops(&events).contains(&(DropReason::NoListener, 501, "FIN+ACK".to_string())));
    assert_eq!(world.status(conn, Side::Server).unwrap().state, State::Closed);
}

#[test]
fn old_duplicate_syn_is_refused_with_three_way_handshake() {
    let mut world = seed_world();
    listen(&mut world, Some(500));
    world.take_events();
    // A stale SYN from an earlier incarnation of A:40000 reaches B; A has no connection.
    world
        .inject(InjectSpec {
            from: "A".into(),
            to: "B".into(),
            src_port: 40000,
            dst_port: 80,
            seq: 90,
            flags: Flags::SYN,
            window: 65535,
            ..InjectSpec::default()
        })
        .unwrap();
    world.run_until_idle(1000, Duration::MAX);
    let events = world.take_events();
    assert_eq!(sent(&events), [seg("A", "SYN", 90, 0, 0), seg("B", "SYN+ACK", 500, 91, 0), seg("A", "RST", 91, 0, 0)]);
    assert_eq!(states(&events, "B"), [State::Listen, State::SynReceived, State::Closed]);
    // The ghost is a connection of its own, never established.
    let conns = world.connections();
    assert_eq!(conns.len(), 1);
    assert!(conns[0].client.is_none());
    assert_eq!(conns[0].server.as_ref().unwrap().state, State::Closed);
}

#[test]
fn old_duplicate_syn_during_a_new_open_rfc9293_figure_9() {
    let mut world = seed_world();
    listen(&mut world, Some(500));
    // The old SYN is in the network when A opens anew with ISN 300: it arrives first.
    world
        .inject(InjectSpec {
            from: "A".into(),
            to: "B".into(),
            src_port: 40000,
            dst_port: 80,
            seq: 90,
            flags: Flags::SYN,
            window: 65535,
            ..InjectSpec::default()
        })
        .unwrap();
    world
        .add_fault(FaultSpec {
            from: Some("A".into()),
            to: Some("B".into()),
            matcher: SegmentMatch { flags: Some(Flags::SYN), seq: Some(300), ..Default::default() },
            skip: 0,
            count: Some(1),
            action: FaultAction::Delay,
            delay_ns: 30 * MS,
        })
        .unwrap();
    let conn = connect(&mut world);
    world.take_events();
    world.run_until_idle(1000, ms(10_000));
    let events = world.take_events();
    assert_eq!(
        sent(&events),
        [
            seg("B", "SYN+ACK", 500, 91, 0), // answers the old SYN
            seg("A", "RST", 91, 0, 0),       // A, in SYN_SENT, sees an unacceptable ACK
            seg("B", "SYN+ACK", 500, 301, 0),
            seg("A", "ACK", 301, 501, 0),
        ]
    );
    assert_eq!(world.status(conn, Side::Client).unwrap().state, State::Established);
    assert_eq!(world.status(conn, Side::Server).unwrap().state, State::Established);
    assert_eq!(world.connections().len(), 2, "the ghost and the real connection");
}

#[test]
fn old_duplicate_syn_opens_a_ghost_with_two_way_handshake() {
    let mut world = world_with(Profile { handshake: Handshake::TwoWay, ..Profile::default() }, 1);
    listen(&mut world, Some(500));
    world.take_events();
    world
        .inject(InjectSpec {
            from: "A".into(),
            to: "B".into(),
            src_port: 40000,
            dst_port: 80,
            seq: 90,
            flags: Flags::SYN,
            window: 65535,
            ..InjectSpec::default()
        })
        .unwrap();
    world.run_until_idle(1000, Duration::MAX);
    let events = world.take_events();
    assert_eq!(sent(&events), [seg("A", "SYN", 90, 0, 0), seg("B", "SYN+ACK", 500, 91, 0)]);
    assert_eq!(states(&events, "B"), [State::Listen, State::Established]);
    let conns = world.connections();
    assert_eq!(conns.len(), 1);
    let ghost = conns[0].id;
    assert_eq!(world.status(ghost, Side::Server).unwrap().state, State::Established);
    assert!(world.status(ghost, Side::Client).is_err(), "nobody asked for it");
}

#[test]
fn simultaneous_open() {
    let mut world = world_with(Profile::default(), 1);
    let a = world
        .connect(ConnectSpec {
            client: "A".into(),
            server: "B".into(),
            port: 5000,
            client_port: Some(6000),
            isn: Some(100),
            ..ConnectSpec::default()
        })
        .unwrap();
    let b = world
        .connect(ConnectSpec {
            client: "B".into(),
            server: "A".into(),
            port: 6000,
            client_port: Some(5000),
            isn: Some(700),
            ..ConnectSpec::default()
        })
        .unwrap();
    assert_eq!(a, b, "both opens belong to one connection");
    world.run_until_idle(1000, ms(10_000));
    let events = world.take_events();
    assert_eq!(
        sent(&events),
        [
            seg("A", "SYN", 100, 0, 0),
            seg("B", "SYN", 700, 0, 0),
            seg("B", "SYN+ACK", 700, 101, 0),
            seg("A", "SYN+ACK", 100, 701, 0),
        ]
    );
    for host in ["A", "B"] {
        assert_eq!(states(&events, host), [State::Closed, State::SynSent, State::SynReceived, State::Established]);
    }
    world.send(a, Side::Client, b"ping").unwrap();
    world.send(a, Side::Server, b"pong").unwrap();
    world.run_until_idle(1000, ms(10_000));
    assert_eq!(world.received(a, Side::Server).unwrap(), b"ping");
    assert_eq!(world.received(a, Side::Client).unwrap(), b"pong");
}

#[test]
fn simultaneous_close_through_closing() {
    let (mut world, conn) = established();
    world.close(conn, Side::Client).unwrap();
    world.close(conn, Side::Server).unwrap();
    world.run_until_idle(1000, ms(10_000));
    let events = world.take_events();
    assert_eq!(
        sent(&events),
        [
            seg("A", "FIN+ACK", 301, 501, 0),
            seg("B", "FIN+ACK", 501, 301, 0),
            seg("B", "ACK", 502, 302, 0),
            seg("A", "ACK", 302, 502, 0),
        ]
    );
    for host in ["A", "B"] {
        assert_eq!(states(&events, host), [State::Established, State::FinWait1, State::Closing, State::TimeWait]);
    }
    world.run_until_idle(1000, Duration::MAX);
    assert_eq!(world.status(conn, Side::Client).unwrap().state, State::Closed);
    assert_eq!(world.status(conn, Side::Server).unwrap().state, State::Closed);
}

#[test]
fn lost_syn_is_retransmitted_after_the_initial_rto() {
    let mut world = seed_world();
    listen(&mut world, Some(500));
    world
        .add_fault(FaultSpec {
            from: Some("A".into()),
            to: None,
            matcher: SegmentMatch { flags: Some(Flags::SYN), ..Default::default() },
            skip: 0,
            count: Some(1),
            action: FaultAction::Drop,
            delay_ns: 0,
        })
        .unwrap();
    let conn = connect(&mut world);
    world.run_until_idle(1000, ms(10_000));
    let events = world.take_events();
    assert_eq!(
        sent(&events),
        [
            seg("A", "SYN", 300, 0, 0),
            seg("A", "SYN", 300, 0, 0),
            seg("B", "SYN+ACK", 500, 301, 0),
            seg("A", "ACK", 301, 501, 0),
        ]
    );
    let syn_times: Vec<u64> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::SegmentSent { segment, .. } if segment.segment.flags == Flags::SYN => Some(e.t_ns),
            _ => None,
        })
        .collect();
    assert_eq!(syn_times, [0, 1_000 * MS], "RFC 6298: initial RTO of 1 s");
    assert!(events.iter().any(|e| matches!(&e.kind, EventKind::SegmentSent { segment, .. } if segment.retransmission)));
    assert_eq!(world.status(conn, Side::Client).unwrap().state, State::Established);
}

#[test]
fn syn_retries_run_out_and_the_connection_times_out() {
    let mut world = world_with(Profile { max_retries: 3, ..Profile::default() }, 1);
    listen(&mut world, None);
    world
        .add_fault(FaultSpec {
            from: Some("A".into()),
            to: None,
            matcher: SegmentMatch::default(),
            skip: 0,
            count: None,
            action: FaultAction::Drop,
            delay_ns: 0,
        })
        .unwrap();
    let conn = connect(&mut world);
    world.run_until_idle(1000, Duration::MAX);
    let events = world.take_events();
    let syn_times: Vec<u64> =
        events.iter().filter_map(|e| matches!(&e.kind, EventKind::SegmentSent { .. }).then_some(e.t_ns / MS)).collect();
    assert_eq!(syn_times, [0, 1000, 3000, 7000], "exponential backoff");
    let status = world.status(conn, Side::Client).unwrap();
    assert_eq!(status.state, State::Closed);
    assert_eq!(status.error, Some(ConnError::TimedOut));
    assert_eq!(events.last().unwrap().t_ns, 15_000 * MS);
}

#[test]
fn rst_to_a_closed_port() {
    let mut world = seed_world();
    let conn = connect(&mut world); // nothing listens on B:80
    world.run_until_idle(1000, Duration::MAX);
    let events = world.take_events();
    assert_eq!(sent(&events), [seg("A", "SYN", 300, 0, 0), seg("B", "RST+ACK", 0, 301, 0)]);
    assert_eq!(drops(&events), [(DropReason::NoListener, 300, "SYN".to_string())]);
    let status = world.status(conn, Side::Client).unwrap();
    assert_eq!(status.state, State::Closed);
    assert_eq!(status.error, Some(ConnError::Refused));
    // An ACK for no connection is answered with <SEQ=SEG.ACK><CTL=RST>.
    world
        .inject(InjectSpec {
            from: "A".into(),
            to: "B".into(),
            src_port: 1234,
            dst_port: 99,
            seq: 5,
            ack: 777,
            flags: Flags::ACK,
            ..InjectSpec::default()
        })
        .unwrap();
    world.run_until_idle(1000, Duration::MAX);
    let events = world.take_events();
    assert_eq!(sent(&events)[1], seg("B", "RST", 777, 0, 0));
}

/// Closing a listener aborts the connections in its queue that nobody
/// accepted (a RST to each client, as BSD's close of a listening socket
/// does), while an accepted one lives on; a new SYN then meets a RST.
#[test]
fn closing_a_listener_resets_what_nobody_accepted_and_keeps_what_was() {
    let mut world = seed_world();
    let listener =
        world.listen(ListenSpec { host: "B".into(), port: 80, isn: Some(500), ..ListenSpec::default() }).unwrap();
    let open = |world: &mut World, port: u16| {
        let spec = ConnectSpec {
            client: "A".into(),
            server: "B".into(),
            port: 80,
            client_port: Some(port),
            ..ConnectSpec::default()
        };
        world.connect(spec).unwrap()
    };
    let kept = open(&mut world, 40000);
    world.run_until_idle(1000, ms(10_000));
    assert_eq!(world.accept(listener).unwrap(), Some(kept));
    let queued = open(&mut world, 40001);
    world.run_until_idle(1000, ms(10_000));
    assert_eq!(world.status(queued, Side::Server).unwrap().state, State::Established);
    world.take_events();

    world.close_listener(listener, Unaccepted::Abort).unwrap();
    world.run_until_idle(1000, ms(10_000));
    let events = world.take_events();
    assert_eq!(sent(&events), [seg("B", "RST", 501, 0, 0)], "one RST, to the queued connection's client");
    assert_eq!(world.status(queued, Side::Client).unwrap().error, Some(ConnError::Reset));
    assert_eq!(world.status(queued, Side::Server).unwrap().state, State::Closed);
    assert_eq!(world.status(kept, Side::Server).unwrap().state, State::Established);
    assert_eq!(world.status(kept, Side::Client).unwrap().state, State::Established);
    let refused = open(&mut world, 40002);
    world.run_until_idle(1000, ms(10_000));
    assert_eq!(world.status(refused, Side::Client).unwrap().error, Some(ConnError::Refused));
    assert!(matches!(world.close_listener(listener, Unaccepted::Abort), Err(WorldError::UnknownListener(_))));
}

#[test]
fn zero_window_is_probed_until_it_opens() {
    let mut world = world_with(Profile { isn: Isn::Fixed(300), window: 1000, ..Profile::default() }, 1);
    listen(&mut world, Some(500));
    let conn = connect(&mut world);
    world.run_until_idle(1000, ms(100));
    world.set_auto_read(conn, Side::Server, false).unwrap();
    world.take_events();
    world.send(conn, Side::Client, &[7u8; 3000]).unwrap();
    world.run_until_idle(1000, ms(10_000));
    let events = world.take_events();
    let segs = sent(&events);
    assert_eq!(segs[0], seg("A", "ACK", 301, 501, 1000));
    assert_eq!(segs[1], seg("B", "ACK", 501, 1301, 0));
    let window = |i: usize| match &events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::SegmentSent { .. }))
        .nth(i)
        .unwrap()
        .kind
    {
        EventKind::SegmentSent { segment, .. } => segment.segment.window,
        _ => unreachable!(),
    };
    assert_eq!(window(1), 0, "the receiver's buffer is full");
    // Probes: one octet beyond the zero window, answered with window 0, with backoff.
    let probes: Vec<(u64, Seg)> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::SegmentSent { segment, .. } if &*segment.from == "A" && segment.segment.payload.len() == 1 => {
                Some((e.t_ns, sent(std::slice::from_ref(e))[0].clone()))
            }
            _ => None,
        })
        .collect();
    assert!(probes.len() >= 3, "probes: {probes:?}");
    assert!(probes.iter().all(|(_, s)| s.2 == 1301));
    let gaps: Vec<u64> = probes.windows(2).map(|w| w[1].0 - w[0].0).collect();
    assert!(gaps.windows(2).all(|g| g[1] >= g[0]), "backoff: {gaps:?}");
    assert!(events.iter().any(|e| matches!(e.kind, EventKind::TimerFired { timer: TimerKind::Persist, .. })));
    assert_eq!(world.status(conn, Side::Client).unwrap().state, State::Established, "probing never gives up");
    // The application reads: a window update lets the rest through.
    world.set_auto_read(conn, Side::Server, true).unwrap();
    world.run_until_idle(10_000, ms(100_000));
    assert_eq!(world.received(conn, Side::Server).unwrap(), [7u8; 3000]);
}

#[test]
fn out_of_order_segments_are_delivered_once_in_order() {
    let (mut world, conn) = established();
    // Hold the first data segment; the next two overtake it.
    world
        .add_fault(FaultSpec {
            from: Some("A".into()),
            to: Some("B".into()),
            matcher: SegmentMatch { seq: Some(301), len: Some(1460), ..Default::default() },
            skip: 0,
            count: Some(1),
            action: FaultAction::Delay,
            delay_ns: 5 * MS,
        })
        .unwrap();
    let data: Vec<u8> = (0..4000u32).map(|i| (i % 251) as u8).collect();
    world.send(conn, Side::Client, &data).unwrap();
    world.run_until_idle(1000, ms(10_000));
    assert_eq!(world.received(conn, Side::Server).unwrap(), data);
    let events = world.take_events();
    let acks: Vec<u32> = sent(&events).iter().filter(|s| s.0 == "B").map(|s| s.3).collect();
    // A duplicate ACK while the hole is open; the hole filled, all that
    // arrived; the short tail (1080 octets) waited for that ACK (Nagle's
    // algorithm: data was unacknowledged), then its own ACK.
    assert_eq!(acks, [301, 3221, 4301], "a duplicate ACK while the hole is open, then all of it");
    let a: Vec<usize> = sent(&events).iter().filter(|s| s.0 == "A").map(|s| s.4).collect();
    assert_eq!(a, [1460, 1460, 1080]);
}

#[test]
fn rfc5961_challenge_ack_versus_rfc793_reset() {
    for (rfc5961, expect_reset) in [(Switch::On, false), (Switch::Off, true)] {
        let mut world = world_with(Profile { isn: Isn::Fixed(300), rfc5961, ..Profile::default() }, 1);
        listen(&mut world, Some(500));
        let conn = connect(&mut world);
        world.run_until_idle(1000, ms(100));
        world.take_events();
        // An in-window SYN on the established four-tuple.
        world
            .inject(InjectSpec {
                from: "A".into(),
                to: "B".into(),
                src_port: 40000,
                dst_port: 80,
                seq: 400,
                flags: Flags::SYN,
                ..InjectSpec::default()
            })
            .unwrap();
        world.run_until_idle(1000, ms(100));
        let events = world.take_events();
        let server = world.status(conn, Side::Server).unwrap();
        if expect_reset {
            // <SEQ=SND.NXT><ACK=RCV.NXT><CTL=RST,ACK> (the profile's `syn_reset_acks`).
            assert_eq!(sent(&events)[1], seg("B", "RST+ACK", 501, 301, 0));
            assert_eq!(server.state, State::Closed);
            assert_eq!(server.error, Some(ConnError::Reset));
        } else {
            assert_eq!(sent(&events)[1], seg("B", "ACK", 501, 301, 0), "challenge ACK");
            assert_eq!(server.state, State::Established);
        }
        // An in-window RST not exactly at RCV.NXT.
        world
            .inject(InjectSpec {
                from: "B".into(),
                to: "A".into(),
                src_port: 80,
                dst_port: 40000,
                seq: 510,
                flags: Flags::RST,
                ..InjectSpec::default()
            })
            .unwrap();
        world.run_until_idle(1000, ms(100));
        let events = world.take_events();
        let client = world.status(conn, Side::Client).unwrap();
        if expect_reset {
            assert_eq!(client.state, State::Closed);
            assert_eq!(client.error, Some(ConnError::Reset));
        } else {
            assert_eq!(sent(&events)[1], seg("A", "ACK", 301, 501, 0), "challenge ACK");
            assert_eq!(client.state, State::Established);
        }
    }
}

#[test]
fn corrupted_segments_fail_the_checksum_and_are_retransmitted() {
    let (mut world, conn) = established();
    world
        .add_fault(FaultSpec {
            from: Some("A".into()),
            to: None,
            matcher: SegmentMatch { len: Some(5), ..Default::default() },
            skip: 0,
            count: Some(1),
            action: FaultAction::Corrupt,
            delay_ns: 0,
        })
        .unwrap();
    world.send(conn, Side::Client, b"hello").unwrap();
    world.run_until_idle(1000, ms(10_000));
    let events = world.take_events();
    assert_eq!(drops(&events), [(DropReason::BadChecksum, 301, "PSH+ACK".to_string())]);
    assert_eq!(world.received(conn, Side::Server).unwrap(), b"hello");
}

#[test]
fn held_segments_wait_for_release() {
    let (mut world, conn) = established();
    let fault = world
        .add_fault(FaultSpec {
            from: Some("A".into()),
            to: None,
            matcher: SegmentMatch { len: Some(3), ..Default::default() },
            skip: 0,
            count: Some(1),
            action: FaultAction::Hold,
            delay_ns: 0,
        })
        .unwrap();
    world.send(conn, Side::Client, b"abc").unwrap();
    world.run_until(world.now() + ms(500));
    assert!(world.received(conn, Side::Server).unwrap().is_empty());
    assert_eq!(world.release_fault(fault).unwrap(), 1);
    world.run_until(world.now() + ms(100));
    assert_eq!(world.received(conn, Side::Server).unwrap(), b"abc");
    let events = world.take_events();
    assert!(events.iter().any(|e| matches!(e.kind, EventKind::SegmentHeld { .. })));
    assert!(events.iter().any(|e| matches!(e.kind, EventKind::SegmentReleased { .. })));
}

/// The log of a lossy 1 MiB-each-way run, what each side sent and what the other received.
struct LossyRun {
    events: Vec<Event>,
    up: Vec<u8>,
    got_up: Vec<u8>,
    down: Vec<u8>,
    got_down: Vec<u8>,
}

fn lossy_transfer(seed: u64) -> LossyRun {
    let mut world = world_with(Profile::default(), seed);
    let lossy = LinkParams {
        latency_ms: 5.0,
        jitter_ms: 1.0,
        loss: 0.05,
        duplicate: 0.05,
        reorder: 0.05,
        ..LinkParams::default()
    };
    world.set_link("A", "B", lossy).unwrap();
    listen(&mut world, None);
    let conn = connect(&mut world);
    let up: Vec<u8> = (0..1u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let down: Vec<u8> = (0..1u32 << 20).map(|i| (i.wrapping_mul(40_503) >> 7) as u8).collect();
    let mut sent_up = 0;
    let mut sent_down = 0;
    for _ in 0..200_000 {
        if sent_up < up.len() {
            sent_up += world.send(conn, Side::Client, &up[sent_up..]).unwrap_or(0);
        }
        if sent_down < down.len() {
            sent_down += world.send(conn, Side::Server, &down[sent_down..]).unwrap_or(0);
        }
        if !world.step() {
            break;
        }
        let done = world.received(conn, Side::Server).unwrap().len() == up.len()
            && world.received(conn, Side::Client).unwrap().len() == down.len();
        if done {
            break;
        }
    }
    let got_up = world.received(conn, Side::Server).unwrap().to_vec();
    let got_down = world.received(conn, Side::Client).unwrap().to_vec();
    LossyRun { events: world.take_events(), up, got_up, down, got_down }
}

#[test]
fn one_mebibyte_each_way_over_a_lossy_link() {
    let LossyRun { events, up, got_up, down, got_down } = lossy_transfer(7);
    assert!(got_up == up, "client->server intact ({} of {} octets)", got_up.len(), up.len());
    assert!(got_down == down, "server->client intact ({} of {} octets)", got_down.len(), down.len());
    let lost = drops(&events).iter().filter(|d| d.0 == DropReason::Loss).count();
    let dups = events.iter().filter(|e| matches!(e.kind, EventKind::SegmentDuplicated { .. })).count();
    let retrans = events
        .iter()
        .filter(|e| matches!(&e.kind, EventKind::SegmentSent { segment, .. } if segment.retransmission))
        .count();
    assert!(lost > 20 && dups > 20 && retrans > 20, "lost {lost}, duplicated {dups}, retransmitted {retrans}");
}

#[test]
fn same_seed_same_commands_same_events_byte_for_byte() {
    let a = lossy_transfer(42).events;
    let b = lossy_transfer(42).events;
    let a = serde_json::to_string(&a).unwrap();
    let b = serde_json::to_string(&b).unwrap();
    assert!(a == b, "the event logs differ");
    let c = lossy_transfer(43).events;
    assert_ne!(a, serde_json::to_string(&c).unwrap(), "a different seed gives a different run");
}

#[test]
fn random_isns_come_from_the_seed() {
    let isn = |seed| {
        let mut world = world_with(Profile::default(), seed);
        listen(&mut world, None);
        let conn = connect(&mut world);
        world.status(conn, Side::Client).unwrap().iss
    };
    assert_eq!(isn(5), isn(5));
    assert_ne!(isn(5), isn(6));
}

mod congestion_properties {
    //! Whatever the link (rate, queue, loss, delay) and the algorithm, a bulk
    //! transfer ends: it is delivered whole, or the sender gives up with
    //! ETIMEDOUT. It never stalls with data unsent and no timer running.
    use super::*;
    use proptest::prelude::*;
    use tcplab::engine::{CcAlgorithm, InitialWindow};

    fn link() -> impl Strategy<Value = LinkParams> {
        let rate = prop_oneof![Just(0u64), 20_000u64..20_000_000];
        (rate, prop_oneof![Just(0u64), 1u64..3_000, 3_000u64..70_000], 0u32..40, 0.0f64..0.3, 0.0f64..40.0).prop_map(
            |(bandwidth_bps, queue, packets, loss, latency)| {
                let rated = bandwidth_bps > 0;
                LinkParams {
                    latency_ms: latency,
                    loss,
                    bandwidth_bps,
                    queue_bytes: if rated { queue } else { 0 },
                    queue_packets: if rated { packets } else { 0 },
                    ..LinkParams::default()
                }
            },
        )
    }

    fn profile() -> impl Strategy<Value = Profile> {
        let cc = prop_oneof![Just(CcAlgorithm::NewReno), Just(CcAlgorithm::Reno), Just(CcAlgorithm::Cubic)];
        let iw = prop_oneof![Just(InitialWindow::Rfc5681), (1u32..20).prop_map(InitialWindow::Segments)];
        (cc, iw, any::<bool>(), prop_oneof![Just(536u16), Just(1460)]).prop_map(|(cc, initial_window, lt, mss)| {
            Profile {
                cc,
                initial_window,
                limited_transmit: if lt { Switch::On } else { Switch::Off },
                mss,
                ..Profile::default()
            }
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]
        #[test]
        fn a_transfer_is_delivered_or_times_out_and_never_stalls(
            link in link(),
            profile in profile(),
            len in 1usize..150_000,
            seed in 0u64..1000,
        ) {
            link.validate().expect("a valid link");
            let mut world = world_with(profile, seed);
            world.set_link("A", "B", link.clone()).unwrap();
            listen(&mut world, None);
            let conn = connect(&mut world);
            world.run_until_idle(100_000, ms(600_000));
            let data: Vec<u8> = (0..len).map(|i| i as u8).collect();
            if world.status(conn, Side::Client).map(|s| s.state) == Ok(State::Established) {
                let mut queued = 0;
                while queued < data.len() {
                    queued += world.send(conn, Side::Client, &data[queued..]).unwrap();
                    world.run_until_idle(2_000_000, ms(3_600_000));
                }
            }
            // Settling can take hours of virtual time: on a link that drops
            // every second segment of a window (a one-octet queue behind a
            // slow transmitter) each window ends in a timeout, and Karn's
            // rule keeps the backed-off 60 s RTO, since the segment being
            // timed is the one that is dropped. Slow, but never stalled.
            let outcome = world.run_until_idle(2_000_000, ms(24 * 3_600_000));
            prop_assert!(outcome.idle, "the world settles: {outcome:?} over {link:?}");
            let client = world.status(conn, Side::Client).unwrap();
            let delivered = world.received(conn, Side::Server).map(|r| r == &data[..]).unwrap_or(false);
            let timed_out = client.error == Some(ConnError::TimedOut);
            prop_assert!(
                delivered || timed_out,
                "neither delivered nor timed out: {} of {len} octets arrived, client {client:?}, link {link:?}",
                world.received(conn, Side::Server).map_or(0, <[u8]>::len)
            );
            if delivered {
                prop_assert_eq!(client.send_buffered, 0);
                prop_assert_eq!(client.flight_size, 0);
            }
        }
    }
}

/// Two host pairs, A1 -> B1 and A2 -> B2, whose links both cross one 2 Mb/s
/// bottleneck with a 16 KiB queue: the two transfers share its rate, so
/// together they take at least their total size over that rate, about
/// twice as long as the same links with a queue each.
#[test]
fn two_host_pairs_crossing_one_bottleneck_share_its_rate_and_queue() {
    const LEN: usize = 200_000;
    let finish = |shared: bool| {
        let mut world = World::new(WorldConfig { seed: 7, ..WorldConfig::default() }).unwrap();
        for (name, ip) in [("A1", "10.0.0.1"), ("A2", "10.0.0.2"), ("B1", "10.0.1.1"), ("B2", "10.0.1.2")] {
            world.add_host(name, ip.parse().unwrap(), HostKind::Tcp).unwrap();
        }
        let link =
            LinkParams { latency_ms: 10.0, bandwidth_bps: 2_000_000, queue_bytes: 16_384, ..LinkParams::default() };
        let mut conns = Vec::new();
        for (a, b) in [("A1", "B1"), ("A2", "B2")] {
            world.set_link_through(a, b, link.clone(), shared.then_some("mid")).unwrap();
            world
                .listen(ListenSpec {
                    host: b.into(),
                    port: 80,
                    isn: None,
                    profile: None,
                    backlog: None,
                    nodelay: false,
                    keepalive: None,
                })
                .unwrap();
            let spec = ConnectSpec { client: a.into(), server: b.into(), port: 80, ..ConnectSpec::default() };
            conns.push(world.connect(spec).unwrap());
        }
        world.run_until_idle(100_000, ms(10_000));
        let (a1, a2) = (world.host_id("A1").unwrap(), world.host_id("A2").unwrap());
        let (b1, b2) = (world.host_id("B1").unwrap(), world.host_id("B2").unwrap());
        assert_eq!(world.link_bottleneck(a1, b1), shared.then_some(("mid", true)));
        assert_eq!(world.link_bottleneck(b2, a2), shared.then_some(("mid", false)));
        let start = world.now();
        let data = vec![7u8; LEN];
        let mut queued = [0usize; 2];
        let mut saw_shared_queue = false;
        while queued.iter().any(|&q| q < LEN) {
            for (i, &conn) in conns.iter().enumerate() {
                queued[i] += world.send(conn, Side::Client, &data[queued[i]..]).unwrap();
            }
            let until = world.now() + ms(50);
            world.run_until(until);
            let (q1, q2) = (world.link_queue(a1, b1), world.link_queue(a2, b2));
            saw_shared_queue |= q1.0 > 0 && q1 == q2;
        }
        world.run_until_idle(2_000_000, ms(600_000));
        for &conn in &conns {
            let server = world.status(conn, Side::Server).unwrap();
            assert_eq!(server.rcv_nxt.wrapping_sub(server.irs).wrapping_sub(1) as usize, LEN, "delivered whole");
        }
        if shared {
            assert!(saw_shared_queue, "both links report the one queue they share");
        }
        (world.now() - start).as_nanos() as f64 / 1e9
    };
    let (together, apart) = (finish(true), finish(false));
    // 2 x 200 000 octets plus headers at 2 Mb/s: at least 1.6 s on one wire.
    assert!(together >= 1.6, "shared: {together} s");
    assert!(apart < 1.2, "apart: {apart} s");
}

#[test]
fn a_bottleneck_needs_a_rate_and_a_plain_name() {
    let mut world = seed_world();
    let field = |r: Result<(), tcplab::sim::WorldError>| match r {
        Err(tcplab::sim::WorldError::Link(e)) => e.field,
        other => panic!("expected a link error, got {other:?}"),
    };
    let unrated = LinkParams::default();
    assert_eq!(field(world.set_link_through("A", "B", unrated, Some("mid"))), "bottleneck");
    let rated = LinkParams { bandwidth_bps: 1_000_000, ..LinkParams::default() };
    assert_eq!(field(world.set_link_through("A", "B", rated.clone(), Some("a b"))), "bottleneck");
    assert_eq!(field(world.set_link_through("A", "B", rated.clone(), Some(""))), "bottleneck");
    assert!(world.set_link_through("A", "B", rated, Some("mid")).is_ok());
}

/// A session's profile changes while it runs (a `sysctl` mid-script): a
/// setting read where it is used reaches the open connection at once; one
/// fixed when an endpoint opens is refused while endpoints are open, naming
/// it, and accepted once none is.
#[test]
fn a_profile_change_reaches_open_connections_or_is_refused_by_name() {
    let (mut world, conn) = established();
    // Delayed ACKs switched on mid-connection: B's next ACK waits 100 ms.
    let on = serde_json::json!({"delayed_ack": "on", "delayed_ack_ms": 100});
    let after = world.patch_profile(on.as_object().unwrap().clone()).unwrap();
    assert_eq!((after.delayed_ack, after.delayed_ack_ms), (Switch::On, 100));
    world.send(conn, Side::Client, b"x").unwrap();
    world.run_until_idle(1000, ms(1_000));
    let events = world.take_events();
    let ack_at = events.iter().find_map(|e| match &e.kind {
        EventKind::SegmentSent { segment, .. } if &*segment.from == "B" => Some(e.t_ns),
        _ => None,
    });
    let data_at = events.iter().find_map(|e| match &e.kind {
        EventKind::SegmentSent { segment, .. } if &*segment.from == "A" => Some(e.t_ns),
        _ => None,
    });
    let (ack_at, data_at) = (ack_at.expect("B acknowledges"), data_at.expect("A sends"));
    assert!(ack_at >= data_at + 100 * MS, "the ACK waited for the timer: {data_at} -> {ack_at}");
    assert!(events.iter().any(|e| matches!(e.kind, EventKind::TimerFired { timer: TimerKind::DelayedAck, .. })));
    // The MSS is fixed when a connection opens: refused, by name, with nothing changed.
    let mss = serde_json::json!({"mss": 536, "delayed_ack_ms": 300});
    match world.patch_profile(mss.as_object().unwrap().clone()) {
        Err(WorldError::ProfileChange(e)) => {
            assert_eq!(e.field, "profile.mss");
            assert!(e.message.contains("cannot change while"), "{}", e.message);
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!((world.profile().mss, world.profile().delayed_ack_ms), (1460, 100));
    // Unknown settings and bad values name themselves too.
    let bad = serde_json::json!({"delayed_ack_ms": 900});
    assert!(matches!(world.patch_profile(bad.as_object().unwrap().clone()),
        Err(WorldError::ProfileChange(e)) if e.field == "profile.delayed_ack_ms"));
    // With nothing open, any setting may change; the next connection has it.
    let mut fresh = seed_world();
    let mss = serde_json::json!({"mss": 536});
    assert_eq!(fresh.patch_profile(mss.as_object().unwrap().clone()).unwrap().mss, 536);
    listen(&mut fresh, Some(500));
    let c = connect(&mut fresh);
    fresh.run_until_idle(1000, ms(1_000));
    assert_eq!(fresh.status(c, Side::Client).unwrap().snd_mss, 536);
}
