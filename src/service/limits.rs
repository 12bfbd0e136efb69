//! The server's limits: every size, count and amount of work a request
//! controls has one, with a default, a config key, a flag and a variable of
//! the same name (`run_max_events`, `--run-max-events`,
//! `TCPLAB_RUN_MAX_EVENTS`). A refusal names the limit and how to raise it
//! ([`raise_hint`]), so that a class sharing one server can be given room
//! (or kept in check) without a rebuild.
//!
//! Two kinds of limit:
//! - **capacity** (sessions, hosts, connections, faults, subscribers): the
//!   server or a session is full; answered 429 / RESOURCE_EXHAUSTED
//!   ([`super::Error::LimitExceeded`]);
//! - **budget** (sizes, nesting, steps, items and virtual time per call): one
//!   request asks for too much; answered 422 / RESOURCE_EXHAUSTED
//!   ([`super::Error::BudgetExceeded`]), or, where a partial result is the
//!   natural answer (a clock run, a lab run), that result with
//!   `"stopped_by": "limit"` and the limit named.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Configurable limits, each enforced with an error naming it. The file's
/// `[limits]` keys, the flags and the variables use these field names.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Live sessions at once.
    pub max_sessions: usize,
    /// Hosts per session.
    pub max_hosts: usize,
    /// Connections per session (ever opened, including ghosts).
    pub max_connections: usize,
    /// Fault rules per session.
    pub max_faults: usize,
    /// Send buffer per connection end, in octets (caps `profile.send_buffer`).
    pub max_buffered_bytes: u32,
    /// Recent events kept in memory per session for late subscribers (more
    /// are kept while a live subscriber or the SQLite writer still needs them).
    pub max_events_in_memory: usize,
    /// Open event streams per session.
    pub max_subscribers: usize,
    /// Events a live subscriber may fall behind the newest before it is told
    /// it lagged. Up to this many events stay in memory for a subscriber that
    /// is behind (about 0.5 KiB each), so that it reads them there rather
    /// than from SQLite; nothing is held for subscribers that keep up.
    pub broadcast_capacity: usize,
    /// Scheduled items (arrivals, timer expiries) one call may process: a
    /// clock call (`advance`, `run_until_idle`), one lab step, one
    /// packetdrill script. The world is stopped there, whatever it is doing.
    pub run_max_events: u64,
    /// Virtual time one call may cover, in ms: a clock call, one lab step's
    /// `advance` or `run_until_idle`, the span of a packetdrill script.
    pub run_max_ms: u64,
    /// Events published by all sessions and not yet committed to SQLite: a
    /// session running ahead of the writer waits at this many (between
    /// chunks of its run, answering reads meanwhile), so memory stays
    /// bounded however fast a world produces events.
    pub max_pending_events: usize,
    /// Largest request body, in octets.
    pub max_body_bytes: usize,
    /// Largest packetdrill script or lab file, in octets (within `max_body_bytes`).
    pub max_script_bytes: usize,
    /// Lines of a packetdrill script.
    pub max_script_lines: usize,
    /// Nesting of brackets and braces in a packetdrill expression
    /// (`[[[...]]]`, `{a={b=...}}`): the parser recurses once per level.
    pub max_nesting_depth: usize,
    /// Octets one write asks for: REST/gRPC `send`, a lab's `send` step, a
    /// packetdrill `write`/`send`/`read` length (the memory a call may make
    /// the server allocate).
    pub max_write_bytes: usize,
    /// Steps of a lab file, all variants together (each variant's steps
    /// include the shared ones).
    pub max_lab_steps: usize,
    /// Events one lab run (each variant) or one packetdrill script keeps in
    /// memory to check its expectations and draw its ladder; the session
    /// stores every event all the same. A run that passes it stops there.
    /// Also the segments of `GET .../segments` and the packets of a capture:
    /// the first ones, marked truncated.
    pub max_report_events: usize,
    /// A realtime session idle (no API call on it, no subscriber) this long,
    /// in seconds, is ended and stored as ended; 0 never ends one.
    pub idle_timeout_s: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_sessions: 1_000,
            max_hosts: 256,
            max_connections: 100_000,
            max_faults: 256,
            max_buffered_bytes: 16 * 1024 * 1024,
            max_events_in_memory: 1_024,
            max_subscribers: 256,
            broadcast_capacity: 65_536,
            run_max_events: crate::sim::DEFAULT_RUN_MAX_ITEMS,
            run_max_ms: 24 * 3_600_000,
            max_pending_events: 262_144,
            max_body_bytes: 8 * 1024 * 1024,
            max_script_bytes: 1024 * 1024,
            max_script_lines: 100_000,
            max_nesting_depth: 32,
            max_write_bytes: 16 * 1024 * 1024,
            max_lab_steps: 100_000,
            max_report_events: 100_000,
            idle_timeout_s: 3_600,
        }
    }
}

/// How to raise the limit `name`: its flag, its variable and its config key.
pub fn raise_hint(name: &str) -> String {
    let flag = match name {
        "idle_timeout_s" => "session-idle-timeout".to_string(),
        other => other.replace('_', "-"),
    };
    let variable = match name {
        "idle_timeout_s" => "SESSION_IDLE_TIMEOUT".to_string(),
        other => other.to_ascii_uppercase(),
    };
    format!("raise it with --{flag}, TCPLAB_{variable} or [limits] {name}")
}

/// A limit that stopped a call part-way, as a partial result names it
/// (`"stopped_by": "limit"` beside it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LimitHit {
    /// The limit's name, as the configuration spells it (`run_max_events`).
    pub name: String,
    /// Its value.
    pub max: u64,
    /// How to raise it.
    pub hint: String,
}

impl LimitHit {
    /// The limit `name` at `max`.
    pub fn new(name: &str, max: u64) -> LimitHit {
        LimitHit { name: name.to_string(), max, hint: raise_hint(name) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_limit_names_its_flag_variable_and_key() {
        assert_eq!(
            raise_hint("run_max_events"),
            "raise it with --run-max-events, TCPLAB_RUN_MAX_EVENTS or [limits] run_max_events"
        );
        assert_eq!(
            raise_hint("idle_timeout_s"),
            "raise it with --session-idle-timeout, TCPLAB_SESSION_IDLE_TIMEOUT or [limits] idle_timeout_s"
        );
    }
}
