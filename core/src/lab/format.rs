//! The lab file format: TOML read with serde, every table closed to unknown
//! fields, and every error located by file, line, column and field.
//!
//! A lab is a title, an explanation, a world (seed, profile, hosts, links) and
//! an ordered list of `[[step]]` tables, each with exactly one key naming what
//! it does (`open = { ... }`, `run_until_idle = {}`, `expect_segments = [...]`).
//! A lab that contrasts variants adds `[[variant]]` sections: the lab's own
//! steps are the shared prefix, and each variant runs that prefix and then its
//! own steps in a fresh world with its profile overrides.
//!
//! Congestion labs have three more tools: a `[[link]]` may name a shared
//! `bottleneck`; `expect_sawtooth = { conn, side, cycles }` and
//! `expect_fairness = { conns, last_ms, at_least }` judge a whole run from
//! its events; and a `[[plot]]` table (`conn`, `side`, `every_ms`) prints
//! that sender's cwnd as a text plot under the ladder.
//!
//! ```toml
//! title = "Three-way handshake"
//! explanation = "SYN seq=J; SYN+ACK seq=K ack=J+1; ACK ack=K+1."
//! seed = 1
//! [profile]          # name = "freebsd" would start from a shipped profile
//! isn = 300
//!
//! [[step]]
//! listen = { host = "B", port = 80, isn = 500 }
//! [[step]]
//! open = { name = "c", client = "A", server = "B", port = 80, client_port = 40000 }
//! [[step]]
//! run_until_idle = {}
//! [[step]]
//! expect_segments = [
//!   { from = "A", flags = "SYN", seq = 300, ack = 0, len = 0 },
//!   { from = "B", flags = "SYN+ACK", seq = 500, ack = 301, len = 0 },
//!   { from = "A", flags = "ACK", seq = 301, ack = 501, len = 0 },
//! ]
//! ```

use std::collections::HashSet;
use std::net::Ipv4Addr;

use serde::{Deserialize, Deserializer};
use toml::Spanned;

use crate::engine::{Flags, Profile, State};
use crate::sim::{CloseHow, DropReason, Fate, FaultAction, HostKind, LinkParams, SegmentOutcome, Side};

/// Why a lab could not be loaded: each variant says where, so a teacher
/// editing a lab file can go straight to the mistake.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LabError {
    /// The TOML is malformed, a field is unknown, missing or of the wrong type,
    /// or a value does not make sense (an unknown host, an undefined connection).
    #[error("{file}:{line}:{column}: {}{message}", field_prefix(.field))]
    Parse {
        /// The file (or built-in lab path) being read.
        file: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// The field concerned, when it can be named.
        field: Option<String>,
        /// What is wrong.
        message: String,
    },
    /// The lab asks for more than the caller allows (a server's `max_lab_steps`).
    #[error("{file}:{line}: {message}: over the limit {limit} = {max}")]
    OverLimit {
        /// The file being read.
        file: String,
        /// 1-based line where the limit was passed.
        line: usize,
        /// The limit's name (`max_lab_steps`).
        limit: &'static str,
        /// Its value.
        max: u64,
        /// What passed it.
        message: String,
    },
    /// No built-in lab has that name and no file has that path.
    #[error("no built-in lab named `{name}` and no such file{suggestion} (try `tcplab lab list`)")]
    UnknownLab {
        /// What was asked for.
        name: String,
        /// ` (did you mean "x"?)` when a built-in lab's name is close, else empty.
        suggestion: String,
    },
    /// The file exists but cannot be read.
    #[error("{path}: {message}")]
    Io {
        /// The path.
        path: String,
        /// The operating system's message.
        message: String,
    },
}

fn field_prefix(field: &Option<String>) -> String {
    field.as_ref().map_or(String::new(), |f| format!("field `{f}`: "))
}

/// A 1-based line and column of a byte offset, for error messages and checks.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    LineIndex::new(text).line_col(offset)
}

/// Where each line of a text starts: built once per file, so that locating
/// every step costs a binary search, not a rescan of the text before it
/// (which made parsing quadratic in the number of steps).
struct LineIndex<'t> {
    text: &'t str,
    /// Byte offset of each line's first character.
    starts: Vec<usize>,
}

impl<'t> LineIndex<'t> {
    fn new(text: &'t str) -> LineIndex<'t> {
        let starts = std::iter::once(0).chain(text.match_indices('\n').map(|(i, _)| i + 1)).collect();
        LineIndex { text, starts }
    }

    /// 1-based line and column (in characters) of a byte offset.
    fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = self.starts.partition_point(|&start| start <= offset).max(1);
        let start = self.starts[line - 1];
        let column = self.text.get(start..offset).map_or(offset - start, |s| s.chars().count()) + 1;
        (line, column)
    }

    /// The line a table's content starts on: past its `[[step]]` header,
    /// blank lines and comments, so a step's line is the line of its key.
    fn body_line(&self, start: usize) -> usize {
        let mut line = self.line_col(start).0;
        for l in self.text[start.min(self.text.len())..].lines() {
            let t = l.trim();
            if t.is_empty() || t.starts_with('#') || (t.starts_with('[') && t.ends_with(']')) {
                line += 1;
                continue;
            }
            break;
        }
        line
    }
}

/// The key a span belongs to: the key itself when the span starts at one
/// (`bogus = 1`), else the key before the nearest `=` to its left on the line.
fn field_at(text: &str, offset: usize) -> Option<String> {
    let offset = offset.min(text.len());
    let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[offset..].find('\n').map_or(text.len(), |i| offset + i);
    let rest = &text[offset..line_end];
    let is_key_char = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    let key_here: String = rest.chars().take_while(|&c| is_key_char(c)).collect();
    if !key_here.is_empty() && rest[key_here.len()..].trim_start().starts_with('=') {
        return Some(key_here);
    }
    let before = &text[line_start..offset];
    let eq = before.rfind('=')?;
    let key: String =
        before[..eq].trim_end().chars().rev().take_while(|&c| is_key_char(c) || c == '.').collect::<String>();
    let key: String = key.chars().rev().collect();
    (!key.is_empty()).then_some(key)
}

/// Control bits written as a string: `"SYN+ACK"`, `"ACK"`, `"-"` for none
/// (the way the ladder diagram prints them), or as a list of names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlagSet(pub Flags);

impl FlagSet {
    /// Parses `SYN+ACK`, `syn,ack`, `SYN ACK`, or `-` / `` for no flag.
    ///
    /// # Errors
    /// The first name that is not a TCP flag.
    pub fn parse(text: &str) -> Result<FlagSet, String> {
        let mut flags = Flags::NONE;
        for name in text.split(['+', ',', '|', ' ']).map(str::trim).filter(|n| !n.is_empty() && *n != "-") {
            flags |= Flags::from_name(name).ok_or_else(|| {
                format!("unknown flag `{name}` (expected CWR ECE URG ACK PSH RST SYN FIN, e.g. \"SYN+ACK\")")
            })?;
        }
        Ok(FlagSet(flags))
    }
}

impl<'de> Deserialize<'de> for FlagSet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            List(Vec<String>),
        }
        let raw = Raw::deserialize(d)
            .map_err(|_| serde::de::Error::custom("flags: expected a string like \"SYN+ACK\" or a list of names"))?;
        let text = match raw {
            Raw::Text(t) => t,
            Raw::List(l) => l.join("+"),
        };
        FlagSet::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A state name as RFC 9293 spells it (`SYN_SENT`), or `ABSENT` for an end
/// that does not exist (the client of a ghost connection).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StateName {
    /// One of the eleven states.
    State(State),
    /// The end does not exist.
    Absent,
}

impl std::fmt::Display for StateName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StateName::State(s) => f.write_str(s.name()),
            StateName::Absent => f.write_str("ABSENT"),
        }
    }
}

impl<'de> Deserialize<'de> for StateName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let normal = text.replace('-', "_");
        if normal.eq_ignore_ascii_case("ABSENT") {
            return Ok(StateName::Absent);
        }
        if normal.eq_ignore_ascii_case("SYN_SEND") {
            return Err(serde::de::Error::custom(
                "`SYN_SEND` is the seed text's name; RFC 9293 calls this state `SYN_SENT`",
            ));
        }
        if normal.eq_ignore_ascii_case("SYN_RCVD") {
            return Ok(StateName::State(State::SynReceived));
        }
        State::from_name(&normal).map(StateName::State).ok_or_else(|| {
            let names: Vec<&str> = State::ALL.iter().map(|s| s.name()).collect();
            serde::de::Error::custom(format!("unknown state `{text}` (expected ABSENT or one of {})", names.join(" ")))
        })
    }
}

/// The fate a lab expects of a segment: one of the words of
/// [`crate::sim::Fate`] (`delivered`, `lost`, `corrupted`, `dropped`,
/// `held`, `in_flight`; `dropped` accepts any drop), or a drop reason for a
/// drop in particular (`no_listener`, `fault`, `no_route`, `malformed`,
/// `backlog`, `loss`, `bad_checksum`). `dropped_by_fault`, the older
/// spelling of `fault`, still reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExpectedFate {
    /// This fate (any drop for [`Fate::Dropped`]).
    Is(Fate),
    /// A drop for this reason.
    DroppedFor(DropReason),
}

impl ExpectedFate {
    /// The fates a lab may expect (the remarks `duplicated`, `delayed` and
    /// `released` are no segment's fate).
    const FATES: [Fate; 6] = [Fate::Delivered, Fate::Lost, Fate::Corrupted, Fate::Dropped, Fate::Held, Fate::InFlight];

    /// The word as lab files spell it.
    pub fn name(self) -> &'static str {
        match self {
            ExpectedFate::Is(fate) => fate.name(),
            ExpectedFate::DroppedFor(reason) => reason.name(),
        }
    }

    /// Reads a lab file's word.
    pub fn parse(word: &str) -> Option<ExpectedFate> {
        if word == "dropped_by_fault" {
            return Some(ExpectedFate::DroppedFor(DropReason::Fault));
        }
        Self::FATES
            .into_iter()
            .find(|f| f.name() == word)
            .map(ExpectedFate::Is)
            .or_else(|| DropReason::ALL.into_iter().find(|r| r.name() == word).map(ExpectedFate::DroppedFor))
    }

    /// Whether what became of a segment is what was expected.
    pub fn accepts(self, got: &SegmentOutcome) -> bool {
        match self {
            ExpectedFate::Is(Fate::Dropped) => got.fate.is_drop(),
            ExpectedFate::Is(fate) => got.fate == fate,
            ExpectedFate::DroppedFor(reason) => got.fate.is_drop() && got.reason == Some(reason),
        }
    }
}

impl<'de> Deserialize<'de> for ExpectedFate {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let word = String::deserialize(d)?;
        ExpectedFate::parse(&word).ok_or_else(|| {
            let fates = Self::FATES.map(Fate::name).join(", ");
            let reasons = DropReason::ALL.map(DropReason::name).join(", ");
            serde::de::Error::custom(format!(
                "unknown fate `{word}` (expected one of {fates}, or a drop reason: {reasons})"
            ))
        })
    }
}

impl serde::Serialize for ExpectedFate {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// A host of the lab's world.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HostDef {
    /// Its name (the ladder's column heading).
    pub name: String,
    /// Its IPv4 address.
    pub ip: Ipv4Addr,
    /// `tcp` (the default) or `raw`.
    #[serde(default)]
    pub kind: HostKind,
}

/// A link between two hosts, the same both ways; unset fields keep the
/// default clean 10 ms link.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LinkDef {
    /// One host.
    pub a: String,
    /// The other host.
    pub b: String,
    /// One-way latency, ms.
    pub latency_ms: Option<f64>,
    /// Extra random delay up to this, ms.
    pub jitter_ms: Option<f64>,
    /// Loss probability.
    pub loss: Option<f64>,
    /// Duplication probability.
    pub duplicate: Option<f64>,
    /// Reordering probability.
    pub reorder: Option<f64>,
    /// Bit-flip probability.
    pub corrupt: Option<f64>,
    /// Serialisation rate, bits per second (0: unlimited).
    pub bandwidth_bps: Option<u64>,
    /// Drop-tail transmit queue, octets (0: unlimited; needs a bandwidth).
    pub queue_bytes: Option<u64>,
    /// Drop-tail transmit queue, segments (0: unlimited; needs a bandwidth).
    pub queue_packets: Option<u32>,
    /// A bottleneck this link crosses, shared with every link naming it
    /// (see [`World::set_link_through`](crate::sim::World::set_link_through)).
    pub bottleneck: Option<String>,
}

impl LinkDef {
    /// The world's link parameters for this definition.
    pub fn params(&self) -> LinkParams {
        let d = LinkParams::default();
        LinkParams {
            latency_ms: self.latency_ms.unwrap_or(d.latency_ms),
            jitter_ms: self.jitter_ms.unwrap_or(d.jitter_ms),
            loss: self.loss.unwrap_or(d.loss),
            duplicate: self.duplicate.unwrap_or(d.duplicate),
            reorder: self.reorder.unwrap_or(d.reorder),
            corrupt: self.corrupt.unwrap_or(d.corrupt),
            bandwidth_bps: self.bandwidth_bps.unwrap_or(d.bandwidth_bps),
            queue_bytes: self.queue_bytes.unwrap_or(d.queue_bytes),
            queue_packets: self.queue_packets.unwrap_or(d.queue_packets),
        }
    }
}

/// `listen`: a passive OPEN.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ListenStep {
    /// The host.
    pub host: String,
    /// The port.
    pub port: u16,
    /// ISN of the connections it accepts (the profile's when absent).
    pub isn: Option<u32>,
    /// TCP_NODELAY on the listening socket: its connections start with
    /// Nagle's algorithm off.
    #[serde(default)]
    pub nodelay: bool,
    /// Keepalive for its connections (`{ idle_ms, interval_ms, count }`,
    /// absent keys at their defaults of 2 h, 75 s and 9).
    pub keepalive: Option<crate::engine::Keepalive>,
}

/// `open`: an active OPEN, naming the connection for later steps.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OpenStep {
    /// The name later steps use (`conn = "c"`).
    pub name: String,
    /// The host that opens.
    pub client: String,
    /// The host it opens towards.
    pub server: String,
    /// Server port.
    pub port: u16,
    /// Client port (ephemeral when absent).
    pub client_port: Option<u16>,
    /// Client ISN (the profile's when absent).
    pub isn: Option<u32>,
    /// TCP_NODELAY: Nagle's algorithm off for the client's end.
    #[serde(default)]
    pub nodelay: bool,
    /// Keepalive for the client's end (`{ idle_ms, interval_ms, count }`).
    pub keepalive: Option<crate::engine::Keepalive>,
    /// The OPEN must fail with an error containing this text (a check).
    pub expect_error: Option<String>,
}

/// One end of a connection: `conn` is a name from `open`, or `#N` for the
/// world's connection N (e.g. a ghost a listener created from an old SYN).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EndRef {
    /// The connection.
    pub conn: String,
    /// Which end.
    pub side: Side,
}

/// `close`: CLOSE one end.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CloseStep {
    /// The connection.
    pub conn: String,
    /// Which end.
    pub side: Side,
    /// `shutdown_write` (the default, RFC 9293's CLOSE: the end still reads)
    /// or `close` (the socket: data arriving before the peer's FIN meets a reset).
    #[serde(default)]
    pub how: CloseHow,
    /// The CLOSE must fail with an error containing this text (a check).
    pub expect_error: Option<String>,
}

/// `send`: queue data on one end.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SendStep {
    /// The connection.
    pub conn: String,
    /// Which end sends.
    pub side: Side,
    /// The text to send.
    pub data: Option<String>,
    /// Or this many octets of `fill`.
    pub len: Option<usize>,
    /// The octet repeated for `len` (default `x`).
    pub fill: Option<char>,
    /// The SEND must fail with an error containing this text (a check).
    pub expect_error: Option<String>,
}

impl SendStep {
    /// The octets this step sends.
    pub fn bytes(&self) -> Vec<u8> {
        match (&self.data, self.len) {
            (Some(d), _) => d.as_bytes().to_vec(),
            (None, Some(n)) => {
                let mut buf = [0u8; 4];
                let fill = self.fill.unwrap_or('x').encode_utf8(&mut buf).as_bytes().to_vec();
                fill.iter().copied().cycle().take(n).collect()
            }
            (None, None) => Vec::new(),
        }
    }
}

/// `auto_read`: whether an end's application reads as soon as data arrives.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AutoReadStep {
    /// The connection.
    pub conn: String,
    /// Which end.
    pub side: Side,
    /// On (read everything now and from now on) or off (let the buffer fill).
    pub on: bool,
}

/// `fault`: a fault rule, optionally named so `release` can free what it holds.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FaultStep {
    /// A name for `release`.
    pub name: Option<String>,
    /// Sending host (any when absent).
    pub from: Option<String>,
    /// Receiving host (any when absent).
    pub to: Option<String>,
    /// Exact flag set to match.
    pub flags: Option<FlagSet>,
    /// SEG.SEQ to match.
    pub seq: Option<u32>,
    /// SEG.ACK to match.
    pub ack: Option<u32>,
    /// Payload length to match.
    pub len: Option<u32>,
    /// Source port to match.
    pub src_port: Option<u16>,
    /// Destination port to match.
    pub dst_port: Option<u16>,
    /// Let this many matching segments pass first.
    #[serde(default)]
    pub skip: u64,
    /// Act on this many (all later matches when absent).
    pub count: Option<u64>,
    /// `drop`, `delay`, `duplicate`, `corrupt` or `hold`.
    pub action: FaultAction,
    /// For `delay`: how long, ms.
    pub delay_ms: Option<f64>,
}

/// `inject`: a crafted segment, as if `from` had sent it.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct InjectStep {
    /// Apparent sender.
    pub from: String,
    /// Destination host.
    pub to: String,
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// SEG.SEQ.
    pub seq: u32,
    /// SEG.ACK.
    #[serde(default)]
    pub ack: u32,
    /// Control bits.
    pub flags: FlagSet,
    /// SEG.WND (default 65535).
    pub window: Option<u16>,
    /// Payload text.
    pub data: Option<String>,
    /// Delay before it enters the link, ms.
    pub delay_ms: Option<f64>,
}

/// `run_until_idle`: run until nothing is scheduled (or a cap).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RunStep {
    /// Stop after this much virtual time, ms (default: no limit).
    pub max_ms: Option<u64>,
    /// Stop after this many scheduled items (default 100000).
    pub max_steps: Option<u64>,
}

/// `expect_state`: the state of one end, or of a host's listener.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ExpectState {
    /// The connection (with `side`).
    pub conn: Option<String>,
    /// Which end.
    pub side: Option<Side>,
    /// Or a host's listener (with `port`).
    pub host: Option<String>,
    /// The listener's port.
    pub port: Option<u16>,
    /// The expected state.
    pub state: StateName,
}

/// `expect_states`: every state one end passed through since the lab began.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ExpectStates {
    /// The connection.
    pub conn: String,
    /// Which end.
    pub side: Side,
    /// The states in order, starting with the one it left first.
    pub states: Vec<StateName>,
}

/// `expect_tcb`: TCB fields of one end (RFC 9293 section 3.3.1 names).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ExpectTcb {
    /// The connection.
    pub conn: String,
    /// Which end.
    pub side: Option<Side>,
    /// ISS.
    pub iss: Option<u32>,
    /// IRS.
    pub irs: Option<u32>,
    /// SND.UNA.
    pub snd_una: Option<u32>,
    /// SND.NXT.
    pub snd_nxt: Option<u32>,
    /// SND.WND.
    pub snd_wnd: Option<u32>,
    /// RCV.NXT.
    pub rcv_nxt: Option<u32>,
    /// RCV.WND.
    pub rcv_wnd: Option<u32>,
    /// The MSS used for sending.
    pub snd_mss: Option<u16>,
    /// Octets queued and not yet acknowledged.
    pub send_buffered: Option<usize>,
    /// Octets received and not yet read.
    pub recv_buffered: Option<usize>,
    /// Consecutive retransmissions without progress.
    pub retries: Option<u32>,
    /// The error a user call would report (`ECONNREFUSED`...), or `none`.
    pub error: Option<String>,
    /// Milliseconds left on the TIME_WAIT timer (`-1`: not running).
    pub time_wait_left_ms: Option<i64>,
    /// The congestion window, octets (RFC 5681).
    pub cwnd: Option<u32>,
    /// The slow start threshold, octets (`-1`: still "arbitrarily high").
    pub ssthresh: Option<i64>,
    /// Octets sent and not acknowledged.
    pub flight_size: Option<u32>,
    /// `slow_start`, `congestion_avoidance` or `fast_recovery`.
    pub cc_phase: Option<crate::engine::CcPhase>,
    /// Duplicate ACKs in a row.
    pub dup_acks: Option<u32>,
}

/// One segment on the wire as an expectation: every field given must match.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SegmentExpect {
    /// Sending host.
    pub from: Option<String>,
    /// Receiving host.
    pub to: Option<String>,
    /// The exact flag set.
    pub flags: Option<FlagSet>,
    /// SEG.SEQ.
    pub seq: Option<u32>,
    /// SEG.ACK.
    pub ack: Option<u32>,
    /// Payload length.
    pub len: Option<u32>,
    /// SEG.WND.
    #[serde(alias = "window")]
    pub win: Option<u16>,
    /// Whether it is a retransmission.
    pub retransmission: Option<bool>,
    /// When it was sent, in ms of virtual time.
    pub at_ms: Option<f64>,
    /// What became of it by the time of the expectation.
    pub fate: Option<ExpectedFate>,
}

/// `expect_fate`: what became of segment `#N` (numbered as the ladder shows).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ExpectFate {
    /// The segment's number.
    pub segment: u64,
    /// The expected fate.
    pub fate: ExpectedFate,
}

/// `expect_received`: what one end's application has read so far.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ExpectReceived {
    /// The connection.
    pub conn: String,
    /// Which end.
    pub side: Side,
    /// The exact text.
    pub data: Option<String>,
    /// The count of octets.
    pub len: Option<usize>,
}

/// `expect_connections`: how many connection ends a host has (in a state).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ExpectConnections {
    /// The host (every host when absent).
    pub host: Option<String>,
    /// Count only ends in this state.
    pub state: Option<StateName>,
    /// The expected count.
    pub count: usize,
}

/// `[[plot]]`: a text plot of one sender's congestion window, one row per
/// `every_ms` (a round trip, say), printed under the ladder by `tcplab lab
/// run`: slow start's doubling and the sawtooth read at a glance.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PlotDef {
    /// The connection.
    pub conn: String,
    /// Which end sends.
    pub side: Side,
    /// Virtual ms per row (at most 60 rows: longer runs take a multiple).
    pub every_ms: f64,
}

/// `expect_fairness`: Jain's fairness index of several connections'
/// throughputs (client to server) over the last `last_ms` of virtual time,
/// `(sum x)^2 / (n * sum x^2)`: 1 when they are equal, 1/n when one flow
/// has it all (Jain, Chiu and Hawe, DEC-TR-301, 1984).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ExpectFairness {
    /// The connections (at least two).
    pub conns: Vec<String>,
    /// The window, in ms, ending now.
    pub last_ms: u64,
    /// The least index that passes, in (0, 1].
    pub at_least: f64,
}

/// `expect_sawtooth`: the AIMD sawtooth of one sender's congestion window,
/// read from its `congestion_changed` events: at least `cycles` times a
/// loss halved the window (fast recovery, ssthresh at most half the cwnd
/// before it, RFC 5681 section 3.2) and congestion avoidance then grew it
/// linearly, by at most one SMSS per step (section 3.1), for at least two
/// steps, with no retransmission timeout collapsing it in between.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ExpectSawtooth {
    /// The connection.
    pub conn: String,
    /// Which end sends.
    pub side: Side,
    /// The least count of halve-then-grow cycles.
    pub cycles: usize,
}

/// One step of a lab: a table with exactly one key naming what it does.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// Passive OPEN.
    Listen(ListenStep),
    /// Active OPEN.
    Open(OpenStep),
    /// SEND.
    Send(SendStep),
    /// CLOSE.
    Close(CloseStep),
    /// ABORT.
    Abort(EndRef),
    /// Turn an end's automatic reading on or off.
    AutoRead(AutoReadStep),
    /// Add a fault rule.
    Fault(FaultStep),
    /// Release what a named fault rule holds.
    Release(String),
    /// Inject a crafted segment.
    Inject(InjectStep),
    /// Move the clock forward this many ms, running what falls due.
    Advance(u64),
    /// Run until nothing is scheduled.
    RunUntilIdle(RunStep),
    /// Process this many scheduled items.
    Step(u64),
    /// A remark printed in the ladder diagram at this point.
    Note(String),
    /// A state (of an end or a listener).
    ExpectState(ExpectState),
    /// The states an end passed through.
    ExpectStates(ExpectStates),
    /// TCB fields.
    ExpectTcb(ExpectTcb),
    /// Exactly these segments were sent since the previous segment expectation.
    ExpectSegments(Vec<SegmentExpect>),
    /// The next segments since the previous segment expectation begin with these.
    ExpectNextSegments(Vec<SegmentExpect>),
    /// A numbered segment's fate.
    ExpectFate(ExpectFate),
    /// Received data.
    ExpectReceived(ExpectReceived),
    /// A count of connection ends.
    ExpectConnections(ExpectConnections),
    /// Jain's fairness index of several flows.
    ExpectFairness(ExpectFairness),
    /// The AIMD sawtooth of one sender's window.
    ExpectSawtooth(ExpectSawtooth),
}

impl Step {
    /// The step's key, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Step::Listen(_) => "listen",
            Step::Open(_) => "open",
            Step::Send(_) => "send",
            Step::Close(_) => "close",
            Step::Abort(_) => "abort",
            Step::AutoRead(_) => "auto_read",
            Step::Fault(_) => "fault",
            Step::Release(_) => "release",
            Step::Inject(_) => "inject",
            Step::Advance(_) => "advance",
            Step::RunUntilIdle(_) => "run_until_idle",
            Step::Step(_) => "step",
            Step::Note(_) => "note",
            Step::ExpectState(_) => "expect_state",
            Step::ExpectStates(_) => "expect_states",
            Step::ExpectTcb(_) => "expect_tcb",
            Step::ExpectSegments(_) => "expect_segments",
            Step::ExpectNextSegments(_) => "expect_next_segments",
            Step::ExpectFate(_) => "expect_fate",
            Step::ExpectReceived(_) => "expect_received",
            Step::ExpectConnections(_) => "expect_connections",
            Step::ExpectFairness(_) => "expect_fairness",
            Step::ExpectSawtooth(_) => "expect_sawtooth",
        }
    }

    /// Whether this step checks something (rather than acting on the world).
    pub fn is_expectation(&self) -> bool {
        self.kind().starts_with("expect")
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VariantFile {
    name: String,
    #[serde(default)]
    description: String,
    profile: Option<Spanned<toml::Table>>,
    #[serde(default, rename = "step")]
    steps: Vec<Spanned<Step>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LabFile {
    title: String,
    explanation: String,
    #[serde(default)]
    seed: u64,
    profile: Option<Spanned<toml::Table>>,
    #[serde(default, rename = "host")]
    hosts: Vec<HostDef>,
    #[serde(default, rename = "link")]
    links: Vec<LinkDef>,
    #[serde(default, rename = "plot")]
    plots: Vec<PlotDef>,
    #[serde(default, rename = "step")]
    steps: Vec<Spanned<Step>>,
    #[serde(default, rename = "variant")]
    variants: Vec<Spanned<VariantFile>>,
}

/// A step with where it was written.
#[derive(Clone, Debug, PartialEq)]
pub struct LabStep {
    /// 1-based line of the step in its file.
    pub line: usize,
    /// What it does.
    pub step: Step,
}

/// One run of a lab: the shared steps followed by one variant's own, on a
/// world with that variant's profile. A lab without variants has one, `default`.
#[derive(Clone, Debug, PartialEq)]
pub struct LabVariant {
    /// Its name (`default` for a lab without variants).
    pub name: String,
    /// What it changes and what it shows.
    pub description: String,
    /// The world's profile for this run.
    pub profile: Profile,
    /// Every step of the run, in order.
    pub steps: Vec<LabStep>,
}

/// A loaded, checked lab: ready to run, and cheap to clone into an actor.
#[derive(Clone, Debug, PartialEq)]
pub struct Lab {
    /// Its name (the built-in name or the file's stem).
    pub name: String,
    /// Where it was read from (for messages).
    pub file: String,
    /// One-line title.
    pub title: String,
    /// What it shows and which claim of the seed text it tests.
    pub explanation: String,
    /// The world's RNG seed.
    pub seed: u64,
    /// Hosts (A at 10.0.0.1 and B at 10.0.0.2 when the file names none).
    pub hosts: Vec<HostDef>,
    /// Links (the default clean 10 ms link elsewhere).
    pub links: Vec<LinkDef>,
    /// Text plots of congestion windows to print under the ladder.
    pub plots: Vec<PlotDef>,
    /// The runs: one per variant.
    pub variants: Vec<LabVariant>,
}

impl Lab {
    /// Parses and checks a lab. `file` is only used in messages and for the
    /// lab's name (its stem).
    ///
    /// # Errors
    /// [`LabError::Parse`] naming the file, line, column and field.
    pub fn parse(file: &str, text: &str) -> Result<Lab, LabError> {
        Lab::parse_bounded(file, text, usize::MAX)
    }

    /// [`Lab::parse`] refusing a lab of more than `max_steps` steps, all
    /// variants together (each variant counts the shared steps again, as it
    /// runs them): what a server accepts from anyone. Linear in the text.
    ///
    /// # Errors
    /// As [`Lab::parse`]; [`LabError::OverLimit`] at the step that passes `max_steps`.
    pub fn parse_bounded(file: &str, text: &str, max_steps: usize) -> Result<Lab, LabError> {
        let lines = LineIndex::new(text);
        let at = |offset: usize, field: Option<String>, message: String| {
            let (line, column) = lines.line_col(offset);
            LabError::Parse { file: file.to_string(), line, column, field, message }
        };
        let over = |offset: usize, total: usize| LabError::OverLimit {
            file: file.to_string(),
            line: lines.line_col(offset).0,
            limit: "max_lab_steps",
            max: max_steps as u64,
            message: format!("{total} steps (all variants, shared steps counted once per variant)"),
        };
        let raw: LabFile = toml::from_str(text).map_err(|e| {
            let offset = e.span().map_or(0, |s| s.start);
            let field = if e.message().starts_with("missing field") {
                quoted_field(e.message())
            } else {
                e.span().and_then(|s| field_at(text, s.start)).or_else(|| quoted_field(e.message()))
            };
            at(offset, field, e.message().trim().to_string())
        })?;
        let name = std::path::Path::new(file)
            .file_stem()
            .and_then(|s| s.to_str())
            .map_or_else(|| file.to_string(), str::to_string);
        let hosts = if raw.hosts.is_empty() {
            vec![
                HostDef { name: "A".into(), ip: Ipv4Addr::new(10, 0, 0, 1), kind: HostKind::Tcp },
                HostDef { name: "B".into(), ip: Ipv4Addr::new(10, 0, 0, 2), kind: HostKind::Tcp },
            ]
        } else {
            raw.hosts
        };
        // A bad key of a `profile` table is reported at its line when it can be found.
        let locate = |patch: &Spanned<toml::Table>, (field, message): (Option<String>, String)| {
            let start = patch.span().start;
            let key = field.as_deref().and_then(|f| f.strip_prefix("profile.")).unwrap_or("");
            let offset = (!key.is_empty())
                .then(|| text[start..].find(&format!("\n{key}")).map(|i| start + i + 1))
                .flatten()
                .unwrap_or(start);
            at(offset, field, message)
        };
        let lab_profile = match &raw.profile {
            None => Profile::default(),
            Some(patch) => merge_profile(&Profile::default(), patch.get_ref()).map_err(|e| locate(patch, e))?,
        };
        if raw.steps.len() > max_steps {
            let offset = raw.steps.get(max_steps).map_or(0, |s| s.span().start);
            return Err(over(offset, raw.steps.len()));
        }
        let shared: Vec<LabStep> = raw
            .steps
            .into_iter()
            .map(|s| LabStep { line: lines.body_line(s.span().start), step: s.into_inner() })
            .collect();
        let mut total = if raw.variants.is_empty() { shared.len() } else { 0 };
        let mut variants = Vec::new();
        if raw.variants.is_empty() {
            variants.push(LabVariant {
                name: "default".into(),
                description: String::new(),
                profile: lab_profile.clone(),
                steps: shared.clone(),
            });
        }
        let mut names = HashSet::new();
        for variant in raw.variants {
            let v_start = variant.span().start;
            let variant = variant.into_inner();
            total = total.saturating_add(shared.len()).saturating_add(variant.steps.len());
            if total > max_steps {
                return Err(over(v_start, total));
            }
            if !names.insert(variant.name.clone()) {
                return Err(at(v_start, Some("name".into()), format!("variant `{}` is defined twice", variant.name)));
            }
            let profile = match &variant.profile {
                None => lab_profile.clone(),
                Some(patch) => merge_profile(&lab_profile, patch.get_ref()).map_err(|e| locate(patch, e))?,
            };
            let mut steps = shared.clone();
            steps.extend(
                variant
                    .steps
                    .into_iter()
                    .map(|s| LabStep { line: lines.body_line(s.span().start), step: s.into_inner() }),
            );
            variants.push(LabVariant { name: variant.name, description: variant.description, profile, steps });
        }
        let lab = Lab {
            name,
            file: file.to_string(),
            title: raw.title,
            explanation: raw.explanation,
            seed: raw.seed,
            hosts,
            links: raw.links,
            plots: raw.plots,
            variants,
        };
        lab.check(text)?;
        Ok(lab)
    }

    /// Names used by steps must exist: hosts, connections opened earlier,
    /// fault rules added earlier; a step must say what it needs.
    fn check(&self, text: &str) -> Result<(), LabError> {
        let hosts: HashSet<&str> = self.hosts.iter().map(|h| h.name.as_str()).collect();
        let mut seen = HashSet::new();
        for h in &self.hosts {
            if !seen.insert(h.name.as_str()) {
                return Err(self.error_at_text(
                    text,
                    1,
                    Some("host.name"),
                    format!("host `{}` is defined twice", h.name),
                ));
            }
        }
        for link in &self.links {
            for name in [&link.a, &link.b] {
                if !hosts.contains(name.as_str()) {
                    return Err(self.error_at_text(text, 1, Some("link"), format!("unknown host `{name}`")));
                }
            }
            link.params()
                .validate()
                .map_err(|e| self.error_at_text(text, 1, Some(&format!("link.{}", e.field)), e.message.clone()))?;
            if let Some(name) = &link.bottleneck {
                crate::sim::link::validate_bottleneck(name, &link.params())
                    .map_err(|e| self.error_at_text(text, 1, Some("link.bottleneck"), e.message))?;
            }
        }
        for plot in &self.plots {
            let opened = self.variants.iter().flat_map(|v| &v.steps).any(|s| match &s.step {
                Step::Open(o) => o.name == plot.conn,
                _ => false,
            });
            if !opened && parse_conn_number(&plot.conn).is_none() {
                let message = format!("unknown connection `{}` (name it in an `open`, or write `#N`)", plot.conn);
                return Err(self.error_at_text(text, 1, Some("plot.conn"), message));
            }
            if !(plot.every_ms.is_finite() && plot.every_ms >= 0.001 && plot.every_ms <= 86_400_000.0) {
                let message = format!("must be between 0.001 and 86400000 ms, got {}", plot.every_ms);
                return Err(self.error_at_text(text, 1, Some("plot.every_ms"), message));
            }
        }
        for variant in &self.variants {
            let mut conns: HashSet<&str> = HashSet::new();
            let mut faults: HashSet<&str> = HashSet::new();
            for s in &variant.steps {
                let err = |field: &str, message: String| LabError::Parse {
                    file: self.file.clone(),
                    line: s.line,
                    column: 1,
                    field: Some(format!("{}.{field}", s.step.kind())),
                    message: if self.variants.len() > 1 {
                        format!("{message} (variant `{}`)", variant.name)
                    } else {
                        message
                    },
                };
                let host = |field: &str, name: &str| {
                    if hosts.contains(name) { Ok(()) } else { Err(err(field, format!("unknown host `{name}`"))) }
                };
                let conn = |conns: &HashSet<&str>, name: &str| {
                    if conns.contains(name) || parse_conn_number(name).is_some() {
                        Ok(())
                    } else {
                        Err(err(
                            "conn",
                            format!("unknown connection `{name}` (name it in an earlier `open`, or write `#N`)"),
                        ))
                    }
                };
                match &s.step {
                    Step::Listen(l) => host("host", &l.host)?,
                    Step::Open(o) => {
                        host("client", &o.client)?;
                        host("server", &o.server)?;
                        if o.name.starts_with('#') || o.name.is_empty() {
                            return Err(err("name", "a connection name must not be empty or start with `#`".into()));
                        }
                        if o.expect_error.is_none() {
                            conns.insert(&o.name);
                        }
                    }
                    Step::Send(x) => {
                        conn(&conns, &x.conn)?;
                        if x.data.is_some() == x.len.is_some() {
                            return Err(err("data", "give exactly one of `data` and `len`".into()));
                        }
                    }
                    Step::Close(e) => conn(&conns, &e.conn)?,
                    Step::Abort(e) => conn(&conns, &e.conn)?,
                    Step::AutoRead(a) => conn(&conns, &a.conn)?,
                    Step::Fault(f) => {
                        for (field, h) in [("from", &f.from), ("to", &f.to)] {
                            if let Some(h) = h {
                                host(field, h)?;
                            }
                        }
                        if let Some(name) = &f.name {
                            faults.insert(name);
                        }
                        if f.action == FaultAction::Delay && f.delay_ms.is_none() {
                            return Err(err("delay_ms", "a `delay` fault needs `delay_ms`".into()));
                        }
                    }
                    Step::Release(name) => {
                        if !faults.contains(name.as_str()) {
                            return Err(err("release", format!("unknown fault rule `{name}`")));
                        }
                    }
                    Step::Inject(i) => {
                        host("from", &i.from)?;
                        host("to", &i.to)?;
                    }
                    Step::ExpectState(e) => match (&e.conn, e.side, &e.host, e.port) {
                        (Some(c), Some(_), None, None) => conn(&conns, c)?,
                        (None, None, Some(h), Some(_)) => host("host", h)?,
                        _ => {
                            return Err(err(
                                "conn",
                                "give `conn` and `side` for a connection, or `host` and `port` for a listener".into(),
                            ));
                        }
                    },
                    Step::ExpectStates(e) => conn(&conns, &e.conn)?,
                    Step::ExpectTcb(e) => {
                        conn(&conns, &e.conn)?;
                        if e.side.is_none() {
                            return Err(err("side", "missing field `side`".into()));
                        }
                    }
                    Step::ExpectReceived(e) => {
                        conn(&conns, &e.conn)?;
                        if e.data.is_none() && e.len.is_none() {
                            return Err(err("data", "give `data`, `len` or both".into()));
                        }
                    }
                    Step::ExpectConnections(e) => {
                        if let Some(h) = &e.host {
                            host("host", h)?;
                        }
                    }
                    Step::ExpectFairness(f) => {
                        if f.conns.len() < 2 {
                            return Err(err("conns", "name at least two connections".into()));
                        }
                        for c in &f.conns {
                            conn(&conns, c)?;
                        }
                        if f.last_ms == 0 || f.last_ms > 86_400_000 {
                            return Err(err("last_ms", "must be 1 to 86400000 ms (a day)".to_string()));
                        }
                        if !(f.at_least > 0.0 && f.at_least <= 1.0) {
                            return Err(err("at_least", format!("must be in (0, 1], got {}", f.at_least)));
                        }
                    }
                    Step::ExpectSawtooth(e) => {
                        conn(&conns, &e.conn)?;
                        if e.cycles == 0 {
                            return Err(err("cycles", "must be at least 1".into()));
                        }
                    }
                    Step::ExpectSegments(list) | Step::ExpectNextSegments(list) => {
                        for seg in list {
                            for (field, h) in [("from", &seg.from), ("to", &seg.to)] {
                                if let Some(h) = h {
                                    host(field, h)?;
                                }
                            }
                        }
                    }
                    Step::Advance(_) | Step::RunUntilIdle(_) | Step::Step(_) | Step::Note(_) | Step::ExpectFate(_) => {}
                }
            }
        }
        Ok(())
    }

    fn error_at_text(&self, _text: &str, line: usize, field: Option<&str>, message: String) -> LabError {
        LabError::Parse { file: self.file.clone(), line, column: 1, field: field.map(str::to_string), message }
    }

    /// The variant by name.
    pub fn variant(&self, name: &str) -> Option<&LabVariant> {
        self.variants.iter().find(|v| v.name == name)
    }
}

/// `#N` as a world connection id.
pub fn parse_conn_number(name: &str) -> Option<u64> {
    name.strip_prefix('#').and_then(|n| n.parse().ok())
}

/// The field a serde message names in backquotes (`missing field `port``).
fn quoted_field(message: &str) -> Option<String> {
    let start = message.find('`')? + 1;
    let len = message[start..].find('`')?;
    Some(message[start..start + len].to_string())
}

/// A `[profile]` table applied to `base` (the lab's profile for a variant,
/// the default for the lab): `name = "freebsd"` starts again from that
/// shipped profile, and every other key replaces its setting, as
/// [`crate::profiles::with_overrides`] does for every other door.
fn merge_profile(base: &Profile, patch: &toml::Table) -> Result<Profile, (Option<String>, String)> {
    let settings = match serde_json::to_value(patch) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => return Err((Some("profile".into()), "expected a table of settings".into())),
    };
    let profile = crate::profiles::with_overrides(base, settings).map_err(|e| (Some(e.field), e.message))?;
    profile.validate().map_err(|e| (Some(format!("profile.{}", e.field)), e.message))?;
    Ok(profile)
}
