//! What the engine reports: values, not callbacks. The simulated world turns
//! them into numbered, timestamped events and into packets on its links.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use super::cc::CcPhase;
use super::segment::{Flags, Segment};
use super::state::State;

/// Index of a connection endpoint within one [`super::Stack`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SocketId(pub u32);

/// Index of a listening port within one [`super::Stack`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ListenerId(pub u32);

/// The engine's timers (RFC 9293 section 3.8 and RFC 6298).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimerKind {
    /// Retransmission of unacknowledged SYN, data or FIN.
    Retransmit,
    /// The 2*MSL wait in TIME_WAIT.
    TimeWait,
    /// Zero-window probing (the persist timer).
    Persist,
    /// The delayed ACK (RFC 9293 section 3.8.6.3): an in-order segment's
    /// acknowledgement waits for this or for the next segment.
    DelayedAck,
    /// Keepalive (RFC 9293 section 3.8.4): a probe after the idle time, or
    /// the end of a connection whose probes went unanswered.
    Keepalive,
}

/// The user calls of RFC 9293 section 3.9.1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum UserCall {
    /// OPEN, active or passive.
    Open,
    /// SEND.
    Send,
    /// RECEIVE.
    Receive,
    /// CLOSE.
    Close,
    /// ABORT.
    Abort,
}

/// What made a state change happen.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Cause {
    /// A user call on this endpoint.
    User {
        /// The call.
        call: UserCall,
    },
    /// The arrival of a segment, summarised.
    Segment {
        /// Its control bits.
        flags: Flags,
        /// SEG.SEQ.
        seq: u32,
        /// SEG.ACK.
        ack: u32,
        /// Octets of data.
        len: u32,
    },
    /// A timer's expiry.
    Timer {
        /// Which timer.
        timer: TimerKind,
    },
}

impl Cause {
    /// The cause for a segment that arrived.
    pub fn segment(seg: &Segment) -> Cause {
        Cause::Segment { flags: seg.flags, seq: seg.seq.0, ack: seg.ack.0, len: seg.payload.len() as u32 }
    }
}

/// What a user call on a failed connection reports: the errno a socket would give.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ConnError {
    /// The peer reset an established connection.
    #[serde(rename = "ECONNRESET")]
    Reset,
    /// The peer refused the connection (RST in answer to our SYN).
    #[serde(rename = "ECONNREFUSED")]
    Refused,
    /// Retransmissions reached the retry limit.
    #[serde(rename = "ETIMEDOUT")]
    TimedOut,
}

impl ConnError {
    /// The errno name.
    pub fn errno(self) -> &'static str {
        match self {
            ConnError::Reset => "ECONNRESET",
            ConnError::Refused => "ECONNREFUSED",
            ConnError::TimedOut => "ETIMEDOUT",
        }
    }
}

/// One thing the engine did, in the order it did it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// A segment to put on the wire.
    Transmit {
        /// The endpoint that sent it (`None` for a reset sent on behalf of no connection).
        socket: Option<SocketId>,
        /// The destination address (the source is the stack's own).
        dst_ip: Ipv4Addr,
        /// The segment.
        segment: Segment,
        /// `true` when it carries sequence space sent before.
        retransmission: bool,
    },
    /// An endpoint changed state.
    StateChanged {
        /// The endpoint.
        socket: SocketId,
        /// Old state.
        from: State,
        /// New state.
        to: State,
        /// What triggered it.
        cause: Cause,
        /// The RFC 9293 section that prescribes the transition.
        rfc: &'static str,
    },
    /// A timer expired on an endpoint.
    TimerFired {
        /// The endpoint.
        socket: SocketId,
        /// Which timer.
        timer: TimerKind,
    },
    /// The endpoint's user now sees an error.
    Error {
        /// The endpoint.
        socket: SocketId,
        /// The error.
        error: ConnError,
    },
    /// A listener created an endpoint for an arriving SYN. Comes before any
    /// other output about that endpoint.
    Accepted {
        /// The listener.
        listener: ListenerId,
        /// The new endpoint.
        socket: SocketId,
    },
    /// New in-order data can be read from the endpoint.
    Readable {
        /// The endpoint.
        socket: SocketId,
    },
    /// The endpoint's congestion window, slow start threshold or phase
    /// changed (and once when the handshake fixes the initial window), so
    /// that the log alone can redraw them.
    CongestionChanged {
        /// The endpoint.
        socket: SocketId,
        /// cwnd, in octets.
        cwnd: u32,
        /// ssthresh in octets; `None` while still "arbitrarily high".
        ssthresh: Option<u32>,
        /// The phase.
        phase: CcPhase,
    },
}
