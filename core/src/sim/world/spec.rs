//! What a caller hands a world and what a run hands back: the world's
//! configuration, the specs of the user's commands (OPEN, LISTEN, an
//! injected segment) and how a bounded run ended.
//!
//! Why a file of its own: these are plain data, the vocabulary of the
//! world's API, read by the service, the lab runner and the packetdrill
//! runner alike; none of them needs to see how the world works to use it.

use bytes::Bytes;
use serde::Serialize;

use crate::engine::{Flags, Profile, TcpOption};
use crate::time::Duration;

/// How a world is made.
#[derive(Clone, Debug)]
pub struct WorldConfig {
    /// The RNG seed: the same seed and commands give the same events.
    pub seed: u64,
    /// The profile hosts and connections use unless told otherwise.
    pub profile: Profile,
    /// Keep every octet received (for the API's `received`); off for benchmarks.
    pub keep_received: bool,
    /// Keep connections whose ends are all CLOSED; off for benchmarks.
    pub keep_closed: bool,
    /// Applications read what arrives at once (each end can change it with
    /// [`super::World::set_auto_read`]); off: data waits in the receive
    /// buffer, and narrows the window, until [`super::World::read`] takes it,
    /// as for the packetdrill runner, whose scripts read with recv().
    pub auto_read: bool,
}

impl Default for WorldConfig {
    fn default() -> Self {
        WorldConfig { seed: 0, profile: Profile::default(), keep_received: true, keep_closed: true, auto_read: true }
    }
}

/// An active OPEN as the user asks for it.
#[derive(Clone, Debug, Default)]
pub struct ConnectSpec {
    /// Client host name.
    pub client: String,
    /// Server host name.
    pub server: String,
    /// Server port.
    pub port: u16,
    /// Client port (ephemeral when absent).
    pub client_port: Option<u16>,
    /// Client ISN (from the profile when absent).
    pub isn: Option<u32>,
    /// Per-connection profile (the world's when absent).
    pub profile: Option<Profile>,
    /// TCP_NODELAY: Nagle's algorithm off for the client's end.
    pub nodelay: bool,
    /// Keepalive for the client's end (off when absent).
    pub keepalive: Option<crate::engine::Keepalive>,
}

/// A passive OPEN as the user asks for it.
#[derive(Clone, Debug, Default)]
pub struct ListenSpec {
    /// Host name.
    pub host: String,
    /// Port.
    pub port: u16,
    /// ISN of accepted connections (from the profile when absent).
    pub isn: Option<u32>,
    /// Profile of accepted connections (the world's when absent).
    pub profile: Option<Profile>,
    /// At most this many connections made and not yet accepted: a further SYN
    /// is dropped unanswered, as BSD and Linux do (unlimited when absent).
    pub backlog: Option<u32>,
    /// TCP_NODELAY on the listening socket: its connections start with
    /// Nagle's algorithm off, as BSD's accepted sockets inherit it.
    pub nodelay: bool,
    /// Keepalive for the connections it accepts (off when absent).
    pub keepalive: Option<crate::engine::Keepalive>,
}

/// A crafted segment: any header values, sent as if by `from`.
#[derive(Clone, Debug, Default)]
pub struct InjectSpec {
    /// The host it appears to come from.
    pub from: String,
    /// The destination host.
    pub to: String,
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// SEG.SEQ.
    pub seq: u32,
    /// SEG.ACK.
    pub ack: u32,
    /// Control bits.
    pub flags: Flags,
    /// SEG.WND.
    pub window: u16,
    /// Urgent pointer.
    pub urgent: u16,
    /// Options.
    pub options: Vec<TcpOption>,
    /// Data.
    pub payload: Bytes,
    /// Extra delay before it enters the link.
    pub delay: Duration,
}

/// Scheduled items one call may process unless its caller says otherwise:
/// the default of the server's `run_max_events`, and of the CLI's lab and
/// packetdrill runs. About a third of a second of work; a busy world emits
/// two or three events per item.
pub const DEFAULT_RUN_MAX_ITEMS: u64 = 1_000_000;

/// How a `run_until_idle` ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct RunOutcome {
    /// Nothing is scheduled any more.
    pub idle: bool,
    /// Scheduled items processed.
    pub steps: u64,
    /// The cap that stopped the run, if one did.
    pub stopped_by: Option<RunCap>,
}

/// The cap that stopped a bounded run before the world was idle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunCap {
    /// As many items as allowed were processed.
    Steps,
    /// The next item is due after the time allowed.
    Time,
}

/// What closing a listener does with the connections it made that nobody
/// accepted yet: see [`World::close_listener`](super::World::close_listener).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unaccepted {
    /// Abort each (a RST to its peer), as a BSD listening socket's close does.
    Abort,
    /// Leave them be: the caller keeps its own accept queue and decides.
    LiveOn,
}

/// What a user's CLOSE closes: the two calls a socket has for it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CloseHow {
    /// shutdown(SHUT_WR), RFC 9293's CLOSE: "I have no more data to send";
    /// the end still reads what the peer sends (a half-close).
    #[default]
    ShutdownWrite,
    /// close() of the socket: the FIN follows as for a shutdown, and no one
    /// reads any more, so data that arrives before the peer's FIN is answered
    /// with a reset (RFC 9293 section 3.10.4, RFC 1122 4.2.2.13).
    Close,
}
