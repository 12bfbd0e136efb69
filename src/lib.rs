//! tcplab: a TCP connection lab.
//!
//! # Layout
//! - [`engine`]: RFC 9293 TCP as a sans-IO state machine (no clock, no I/O).
//! - [`sim`]: one session's simulated world: hosts, links, impairments, fault
//!   rules, injection, a virtual clock and the numbered event log.
#![warn(missing_docs)]

pub mod engine;
pub mod sim;
