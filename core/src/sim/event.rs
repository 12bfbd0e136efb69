//! The world's event log: every state change, segment and timer, numbered
//! from 1 without gaps and stamped with virtual time. One enum, serialised
//! once with serde for JSON, SQLite and the dashboard.

use std::sync::Arc;

use serde::Serialize;

use crate::engine::{Cause, CcPhase, ConnError, Segment, State, TimerKind};

/// A connection's id within its world (from 1).
pub type ConnId = u64;

/// Which end of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// The end that opened actively.
    Client,
    /// The end a listener created (or, in a simultaneous open, the second opener).
    Server,
}

impl Side {
    /// `"client"` or `"server"`.
    pub fn name(self) -> &'static str {
        match self {
            Side::Client => "client",
            Side::Server => "server",
        }
    }
}

/// Why a segment never reached TCP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DropReason {
    /// The link lost it (its `loss` probability).
    Loss,
    /// A fault rule dropped it.
    Fault,
    /// A bit was flipped on the way and the receiver's checksum caught it.
    BadChecksum,
    /// It arrived for no connection and no listener (the host answers with RST).
    NoListener,
    /// No host has the destination address.
    NoRoute,
    /// The bytes are not a TCP segment (bad header length or options).
    Malformed,
    /// A SYN for a listener whose backlog of connections not yet accepted is full.
    Backlog,
    /// The link's transmit queue had no room (drop-tail at `queue_bytes` / `queue_packets`).
    QueueFull,
}

impl DropReason {
    /// Every reason, for listing them.
    pub const ALL: [DropReason; 8] = [
        DropReason::Loss,
        DropReason::Fault,
        DropReason::BadChecksum,
        DropReason::NoListener,
        DropReason::NoRoute,
        DropReason::Malformed,
        DropReason::Backlog,
        DropReason::QueueFull,
    ];

    /// The name events and `GET .../segments` give it (`reason`).
    pub fn name(self) -> &'static str {
        match self {
            DropReason::Loss => "loss",
            DropReason::Fault => "fault",
            DropReason::BadChecksum => "bad_checksum",
            DropReason::NoListener => "no_listener",
            DropReason::NoRoute => "no_route",
            DropReason::Malformed => "malformed",
            DropReason::Backlog => "backlog",
            DropReason::QueueFull => "queue_full",
        }
    }
}

/// A segment as the log shows it: who sent it to whom, and every header field.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct WireSegment {
    /// The segment's id in this world: every copy and fate of it shares the id.
    pub id: u64,
    /// Sending host's name.
    pub from: Arc<str>,
    /// Receiving host's name (or the destination address when no host has it).
    pub to: Arc<str>,
    /// The header and payload.
    #[serde(flatten)]
    pub segment: Segment,
    /// It carries sequence space sent before.
    pub retransmission: bool,
    /// It was crafted by an `inject` command, not sent by a TCP.
    pub injected: bool,
}

/// One entry of the log. It reads back from its JSON (the SQLite column,
/// the HTTP body, gRPC's `json`) into the very value that was written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Event {
    /// Position in the log, from 1, without gaps.
    pub seq: u64,
    /// Virtual time in nanoseconds.
    pub t_ns: u64,
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// What happened.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventKind {
    /// An endpoint (or a listener) changed state.
    StateChanged {
        /// The connection, absent for a listener.
        #[serde(skip_serializing_if = "Option::is_none")]
        connection: Option<ConnId>,
        /// The listener, for a listener's own transitions.
        #[serde(skip_serializing_if = "Option::is_none")]
        listener: Option<u64>,
        /// The host.
        host: Arc<str>,
        /// Which end, absent for a listener.
        #[serde(skip_serializing_if = "Option::is_none")]
        side: Option<Side>,
        /// Old state.
        from: State,
        /// New state.
        to: State,
        /// What triggered it.
        cause: Cause,
        /// The RFC 9293 section that prescribes it (a constant of the engine;
        /// owned only when read back from the log).
        rfc: std::borrow::Cow<'static, str>,
    },
    /// A segment left a host (or was injected).
    SegmentSent {
        /// The connection whose endpoint sent it, if any.
        #[serde(skip_serializing_if = "Option::is_none")]
        connection: Option<ConnId>,
        /// The segment.
        segment: WireSegment,
    },
    /// A segment reached its host's TCP (or a raw host).
    SegmentDelivered {
        /// The connection whose endpoint received it, if any.
        #[serde(skip_serializing_if = "Option::is_none")]
        connection: Option<ConnId>,
        /// The segment.
        segment: WireSegment,
    },
    /// A segment was lost, dropped, corrupted or refused.
    SegmentDropped {
        /// Why.
        reason: DropReason,
        /// The fault rule responsible, for `fault`.
        #[serde(skip_serializing_if = "Option::is_none")]
        fault: Option<u64>,
        /// The segment.
        segment: WireSegment,
    },
    /// The link or a fault rule made a second copy of a segment.
    SegmentDuplicated {
        /// The fault rule responsible, if any.
        #[serde(skip_serializing_if = "Option::is_none")]
        fault: Option<u64>,
        /// The segment.
        segment: WireSegment,
    },
    /// A segment found its link's transmitter busy and waits in the link's
    /// queue until `transmit_ns`, when it starts to leave (and leaves the
    /// queue). These events alone redraw the queue over time.
    SegmentQueued {
        /// Octets waiting in the queue with this segment (IP headers included).
        queued_bytes: u64,
        /// Segments waiting with this one.
        queued_packets: u32,
        /// When its transmission begins (virtual ns).
        transmit_ns: u64,
        /// The segment.
        segment: WireSegment,
    },
    /// A fault rule delayed a segment.
    SegmentDelayed {
        /// The rule.
        fault: u64,
        /// Added delay in nanoseconds.
        delay_ns: u64,
        /// The segment.
        segment: WireSegment,
    },
    /// A fault rule holds a segment until it is released.
    SegmentHeld {
        /// The rule.
        fault: u64,
        /// The segment.
        segment: WireSegment,
    },
    /// A held segment continues on its way.
    SegmentReleased {
        /// The rule.
        fault: u64,
        /// The segment.
        segment: WireSegment,
    },
    /// A timer expired on an endpoint.
    TimerFired {
        /// The connection.
        #[serde(skip_serializing_if = "Option::is_none")]
        connection: Option<ConnId>,
        /// The host.
        host: Arc<str>,
        /// Which end.
        #[serde(skip_serializing_if = "Option::is_none")]
        side: Option<Side>,
        /// Which timer.
        timer: TimerKind,
    },
    /// An endpoint's user now sees an error (reset, refused, timed out).
    ConnectionError {
        /// The connection.
        #[serde(skip_serializing_if = "Option::is_none")]
        connection: Option<ConnId>,
        /// The host.
        host: Arc<str>,
        /// Which end.
        #[serde(skip_serializing_if = "Option::is_none")]
        side: Option<Side>,
        /// The error.
        error: ConnError,
    },
    /// A sender's congestion window, slow start threshold or phase changed
    /// (RFC 5681), or the handshake fixed its initial window: replaying
    /// these redraws cwnd and ssthresh exactly.
    CongestionChanged {
        /// The connection.
        #[serde(skip_serializing_if = "Option::is_none")]
        connection: Option<ConnId>,
        /// The host.
        host: Arc<str>,
        /// Which end.
        #[serde(skip_serializing_if = "Option::is_none")]
        side: Option<Side>,
        /// cwnd, in octets.
        cwnd: u32,
        /// ssthresh in octets; `null` while still "arbitrarily high".
        ssthresh: Option<u32>,
        /// Slow start, congestion avoidance or fast recovery.
        phase: CcPhase,
    },
}

impl EventKind {
    /// Every `kind` tag, for validating filters.
    pub const NAMES: [&'static str; 12] = [
        "state_changed",
        "segment_sent",
        "segment_delivered",
        "segment_dropped",
        "segment_duplicated",
        "segment_delayed",
        "segment_held",
        "segment_released",
        "timer_fired",
        "connection_error",
        "congestion_changed",
        "segment_queued",
    ];

    /// The `kind` tag as JSON spells it.
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::StateChanged { .. } => "state_changed",
            EventKind::SegmentSent { .. } => "segment_sent",
            EventKind::SegmentDelivered { .. } => "segment_delivered",
            EventKind::SegmentDropped { .. } => "segment_dropped",
            EventKind::SegmentDuplicated { .. } => "segment_duplicated",
            EventKind::SegmentDelayed { .. } => "segment_delayed",
            EventKind::SegmentHeld { .. } => "segment_held",
            EventKind::SegmentReleased { .. } => "segment_released",
            EventKind::TimerFired { .. } => "timer_fired",
            EventKind::ConnectionError { .. } => "connection_error",
            EventKind::CongestionChanged { .. } => "congestion_changed",
            EventKind::SegmentQueued { .. } => "segment_queued",
        }
    }

    /// The connection the event concerns, if any.
    pub fn connection(&self) -> Option<ConnId> {
        match self {
            EventKind::StateChanged { connection, .. }
            | EventKind::SegmentSent { connection, .. }
            | EventKind::SegmentDelivered { connection, .. }
            | EventKind::TimerFired { connection, .. }
            | EventKind::ConnectionError { connection, .. }
            | EventKind::CongestionChanged { connection, .. } => *connection,
            _ => None,
        }
    }

    /// The segment the event carries, if any.
    pub fn segment(&self) -> Option<&WireSegment> {
        match self {
            EventKind::SegmentSent { segment, .. }
            | EventKind::SegmentDelivered { segment, .. }
            | EventKind::SegmentDropped { segment, .. }
            | EventKind::SegmentDuplicated { segment, .. }
            | EventKind::SegmentDelayed { segment, .. }
            | EventKind::SegmentQueued { segment, .. }
            | EventKind::SegmentHeld { segment, .. }
            | EventKind::SegmentReleased { segment, .. } => Some(segment),
            _ => None,
        }
    }
}
