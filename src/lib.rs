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
//! - [`server`]: binds both listeners and shuts them down gracefully.
#![warn(missing_docs)]

pub mod api;
pub mod engine;
pub mod lab;
pub mod server;
pub mod service;
pub mod sim;
pub mod store;
