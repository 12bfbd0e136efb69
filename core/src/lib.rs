//! tcplab's core: a real RFC 9293 TCP on a simulated network in virtual
//! time, and what is built on it without any I/O: lab files and their
//! runner, a packetdrill runner, ASCII ladder diagrams and pcap encoding.
//!
//! Nothing here reads a clock, touches a socket or spawns a task: time is
//! passed in, randomness comes from a seeded RNG, and what happens comes out
//! as events (values). This crate's manifest has no tokio, axum, tonic, sqlx
//! or hyper, so that rule is a compile error, not a convention. The `tcplab`
//! crate is the server around it (sessions as actors, SQLite, REST, gRPC),
//! as quinn is around quinn-proto.
//!
//! # Layout
//! - [`engine`]: the TCP: segments (codec, checksum, options), sequence
//!   arithmetic, the TCB and its state machine, timers as deadlines, profiles.
//! - [`sim`]: one world: hosts, links with impairments, fault rules,
//!   injection, the scheduler and the numbered event log.
//! - [`profiles`]: the shipped behaviour profiles by name.
//! - [`ladder`]: a run's events drawn as an ASCII ladder diagram.
//! - [`lab`]: the lab file format and its step-wise runner.
//! - [`packetdrill`]: the packetdrill parser and runner, and which kernel a
//!   script is written for.
//! - [`pcap`]: a world's segments as a pcap file for Wireshark.
//! - [`suggest`]: "did you mean" for mistyped names.
//! - [`time`]: virtual time as types ([`time::Instant`], [`time::Duration`]).
//!
//! # A world in a few lines
//! Two hosts, a listener, a connection, the clock run until nothing is
//! scheduled, and the handshake as a ladder diagram:
//!
//! ```
//! use std::net::Ipv4Addr;
//! use tcplab_core::sim::{ConnectSpec, HostKind, ListenSpec, World, WorldConfig};
//!
//! let mut world = World::new(WorldConfig::default()).expect("a world");
//! world.add_host("A", Ipv4Addr::new(10, 0, 0, 1), HostKind::Tcp).expect("host A");
//! world.add_host("B", Ipv4Addr::new(10, 0, 0, 2), HostKind::Tcp).expect("host B");
//! world
//!     .listen(ListenSpec { host: "B".into(), port: 80, isn: Some(500), profile: None, backlog: None, nodelay: false, keepalive: None })
//!     .expect("listen");
//! let conn = world
//!     .connect(ConnectSpec {
//!         client: "A".into(),
//!         server: "B".into(),
//!         port: 80,
//!         client_port: Some(40000),
//!         isn: Some(300),
//!         ..ConnectSpec::default()
//!     })
//!     .expect("connect");
//! let outcome = world.run_until_idle(1_000, tcplab_core::time::Duration::MAX);
//! assert!(outcome.idle);
//! let ladder = tcplab_core::ladder::ladder(world.events(), "A", "B", &Default::default(), &[]);
//! assert!(ladder.contains("SYN seq=300"), "{ladder}");
//! assert!(ladder.contains("SYN+ACK seq=500 ack=301"), "{ladder}");
//! println!("{ladder}");
//! # let _ = conn;
//! ```

pub mod engine;
pub mod lab;
pub mod ladder;
pub mod packetdrill;
pub mod pcap;
pub mod profiles;
pub mod sim;
pub mod suggest;
pub mod time;
