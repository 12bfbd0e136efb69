//! tcplab: a TCP connection lab.
//!
//! # Layout
//! The sans-IO core is a crate of its own, [`tcplab_core`] (`core/`), whose
//! manifest has no tokio, axum, tonic, sqlx or hyper; its modules are
//! re-exported here under their usual names:
//! - [`engine`]: RFC 9293 TCP as a sans-IO state machine (no clock, no I/O).
//! - [`sim`]: one session's simulated world: hosts, links, impairments, fault
//!   rules, injection, a virtual clock and the numbered event log.
//! - [`lab`]: lab files, their runner and the ASCII ladder.
//! - [`packetdrill`]: the packetdrill parser, runner and behaviour profiles.
//! - [`pcap`]: a session's segments as a pcap file, for Wireshark.
//!
//! This crate is the server around it:
//! - [`service`]: the one service layer REST and gRPC both call; a session is
//!   an actor task that owns its world.
//! - [`api`]: the thin REST (axum) and gRPC (tonic) shells over the service.
//! - [`store`]: SQLite persistence through one batching writer task.
//! - [`metrics`]: Prometheus metrics (`GET /metrics`): counters, gauges, latency histograms.
//! - [`memory`]: freed memory handed back to the system after a burst.
//! - [`auth`]: who may use a server (full and read-only tokens), decided once for REST and gRPC.
//! - [`config`]: the server's TOML configuration file and its precedence (flags > env > file > defaults).
//! - [`scripts`]: lab and packetdrill files from disk, timed on the wall clock (the core runners take text).
//! - [`server`]: binds both listeners and shuts them down gracefully.
#![warn(missing_docs)]

pub mod api;
pub use tcplab_core::{engine, lab, ladder, packetdrill, pcap, profiles, sim, suggest, time};
pub mod auth;
pub mod config;
#[doc(hidden)]
pub mod fuzz_targets;
pub mod memory;
pub mod metrics;
pub mod scripts;
pub mod server;
pub mod service;
pub mod store;
