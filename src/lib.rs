//! tcplab: a TCP connection lab.
//!
//! # Layout
//! - [`engine`]: RFC 9293 TCP as a sans-IO state machine (no clock, no I/O).
//! - [`sim`]: one session's simulated world: hosts, links, impairments, fault
//!   rules, injection, a virtual clock and the numbered event log.
//! - [`service`]: the one service layer REST and gRPC both call; a session is
//!   an actor task that owns its world.
//! - [`api`]: the thin REST (axum) and gRPC (tonic) shells over the service.
//! - [`store`]: SQLite persistence through one batching writer task.
//! - [`metrics`]: Prometheus metrics (`GET /metrics`): counters, gauges, latency histograms.
//! - [`memory`]: freed memory handed back to the system after a burst.
//! - [`pcap`]: a session's segments as a pcap file (sans-IO), for Wireshark.
//! - [`auth`]: who may use a server (full and read-only tokens), decided once for REST and gRPC.
//! - [`config`]: the server's TOML configuration file and its precedence (flags > env > file > defaults).
//! - [`server`]: binds both listeners and shuts them down gracefully.
#![warn(missing_docs)]

pub mod api;
pub mod auth;
pub mod config;
pub mod engine;
#[doc(hidden)]
pub mod fuzz_targets;
pub mod lab;
pub mod memory;
pub mod metrics;
pub mod packetdrill;
pub mod pcap;
pub mod server;
pub mod service;
pub mod sim;
pub mod store;
