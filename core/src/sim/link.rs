//! Links between hosts and their impairments, one set per direction.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::time::{Duration, Instant};

/// What one direction of a link does to the segments it carries.
///
/// Probabilities are per segment and drawn from the world's seeded RNG, so a
/// lossy run is reproducible.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LinkParams {
    /// One-way propagation delay, in milliseconds.
    pub latency_ms: f64,
    /// Up to this much extra delay, uniformly drawn per segment (which can reorder).
    pub jitter_ms: f64,
    /// Probability that a segment is lost.
    pub loss: f64,
    /// Probability that a segment arrives twice.
    pub duplicate: f64,
    /// Probability that a segment is held back by one extra latency plus 1 ms,
    /// so that segments sent after it overtake it.
    pub reorder: f64,
    /// Probability that one bit of a segment is flipped (the receiver's checksum catches it).
    pub corrupt: f64,
    /// Serialisation rate in bits per second; 0 means unlimited.
    pub bandwidth_bps: u64,
    /// Drop-tail capacity of the transmit queue in octets (IP header
    /// included, as the wire counts them); 0 means unlimited. Segments wait
    /// here while the transmitter is busy; one that would overflow it is
    /// dropped with reason `queue_full`. Needs `bandwidth_bps`: an unlimited
    /// link never queues.
    pub queue_bytes: u64,
    /// Capacity of the same queue in segments; 0 means unlimited.
    pub queue_packets: u32,
}

/// The largest queue a link may have, in octets (1 GiB) or segments.
pub const MAX_QUEUE_BYTES: u64 = 1 << 30;
/// The largest queue a link may have, in segments.
pub const MAX_QUEUE_PACKETS: u32 = 1_000_000;

impl Default for LinkParams {
    /// A clean 10 ms link: hosts without an explicit link use it.
    fn default() -> Self {
        LinkParams {
            latency_ms: 10.0,
            jitter_ms: 0.0,
            loss: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
            corrupt: 0.0,
            bandwidth_bps: 0,
            queue_bytes: 0,
            queue_packets: 0,
        }
    }
}

/// A link setting that cannot work, naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct LinkError {
    /// The field.
    pub field: &'static str,
    /// What is wrong.
    pub message: String,
}

impl LinkParams {
    /// Checks ranges: probabilities in [0, 1], delays finite, non-negative and at most a day.
    ///
    /// # Errors
    /// A [`LinkError`] naming the first bad field.
    pub fn validate(&self) -> Result<(), LinkError> {
        for (field, p) in
            [("loss", self.loss), ("duplicate", self.duplicate), ("reorder", self.reorder), ("corrupt", self.corrupt)]
        {
            if !(0.0..=1.0).contains(&p) {
                return Err(LinkError { field, message: format!("must be a probability between 0 and 1, got {p}") });
            }
        }
        for (field, ms) in [("latency_ms", self.latency_ms), ("jitter_ms", self.jitter_ms)] {
            if !ms.is_finite() || !(0.0..=86_400_000.0).contains(&ms) {
                return Err(LinkError { field, message: format!("must be between 0 and 86400000 ms, got {ms}") });
            }
        }
        if self.queue_bytes > MAX_QUEUE_BYTES {
            let message =
                format!("must be between 0 (unlimited) and {MAX_QUEUE_BYTES} octets, got {}", self.queue_bytes);
            return Err(LinkError { field: "queue_bytes", message });
        }
        if self.queue_packets > MAX_QUEUE_PACKETS {
            let message =
                format!("must be between 0 (unlimited) and {MAX_QUEUE_PACKETS} segments, got {}", self.queue_packets);
            return Err(LinkError { field: "queue_packets", message });
        }
        if self.bandwidth_bps == 0 {
            for (field, set) in [("queue_bytes", self.queue_bytes > 0), ("queue_packets", self.queue_packets > 0)] {
                if set {
                    let message = "needs bandwidth_bps > 0: a link without a rate never queues".to_string();
                    return Err(LinkError { field, message });
                }
            }
        }
        Ok(())
    }

    /// The one-way propagation delay, to the nanosecond.
    pub(crate) fn latency(&self) -> Duration {
        Duration::from_nanos((self.latency_ms * 1e6) as u64)
    }

    /// The most extra delay jitter may add, to the nanosecond.
    pub(crate) fn jitter(&self) -> Duration {
        Duration::from_nanos((self.jitter_ms * 1e6) as u64)
    }

    /// Time to put `bytes` on the wire at `bandwidth_bps`.
    pub(crate) fn serialisation(&self, bytes: usize) -> Duration {
        if self.bandwidth_bps == 0 {
            return Duration::ZERO;
        }
        // IPv4 header (20 octets) counted too: it occupies the wire.
        Duration::from_nanos(((bytes as u128 + 20) * 8 * 1_000_000_000 / u128::from(self.bandwidth_bps)) as u64)
    }
}

/// One direction of a link: its settings and, when it crosses a named
/// bottleneck, which of the bottleneck's two transmitters it shares.
#[derive(Clone, Debug, Default)]
pub(crate) struct LinkDir {
    pub params: LinkParams,
    /// Its own transmitter, used unless it crosses a bottleneck.
    pub tx: Transmitter,
    /// The bottleneck it crosses (its slot in the wire's table) and whether
    /// it crosses it forward (from the `a` side of the link that named it
    /// to the `b` side) or back.
    pub bottleneck: Option<(u32, bool)>,
}

impl LinkDir {
    /// Hands a segment of `wire_len` octets to its own transmitter at `at`.
    #[cfg(test)]
    pub fn admit(&mut self, at: Instant, wire_len: usize) -> Admission {
        self.tx.admit(at, wire_len, &self.params)
    }

    /// Its own queue at `now`.
    #[cfg(test)]
    pub fn occupancy(&self, now: Instant) -> (u64, u32) {
        self.tx.occupancy(now)
    }
}

/// A transmitter and its drop-tail queue: one per link direction, or one
/// per direction of a bottleneck that several links cross.
#[derive(Clone, Debug, Default)]
pub(crate) struct Transmitter {
    /// When the transmitter is free again (bandwidth).
    pub busy_until: Instant,
    /// Segments waiting for the transmitter, oldest first: when each starts
    /// to be transmitted (and leaves the queue, as in ns-3's DropTailQueue)
    /// and its length on the wire.
    waiting: VecDeque<(Instant, u32)>,
    /// Octets in `waiting`.
    waiting_bytes: u64,
}

/// What the transmitter does with a segment handed to it at some instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Admission {
    /// The transmitter was idle: it is on the wire at once, leaving at this instant.
    Sent(Instant),
    /// It waits in the queue until `transmit`, then leaves at `leaves`;
    /// `bytes` and `packets` are the queue with it.
    Queued { transmit: Instant, leaves: Instant, bytes: u64, packets: u32 },
    /// The queue had no room: drop-tail.
    Full,
}

impl Transmitter {
    /// Hands a segment of `wire_len` octets to the transmitter at `at`, at
    /// the rate and with the queue capacity of `params`.
    pub fn admit(&mut self, at: Instant, wire_len: usize, params: &LinkParams) -> Admission {
        self.drain(at);
        let begin = at.max(self.busy_until);
        let leaves = begin + params.serialisation(wire_len);
        let len = wire_len as u64 + 20;
        if begin <= at {
            self.busy_until = leaves;
            return Admission::Sent(leaves);
        }
        let (limit_bytes, limit_packets) = (params.queue_bytes, params.queue_packets);
        if (limit_bytes > 0 && self.waiting_bytes + len > limit_bytes)
            || (limit_packets > 0 && self.waiting.len() >= limit_packets as usize)
        {
            return Admission::Full;
        }
        self.busy_until = leaves;
        self.waiting.push_back((begin, len as u32));
        self.waiting_bytes += len;
        Admission::Queued { transmit: begin, leaves, bytes: self.waiting_bytes, packets: self.waiting.len() as u32 }
    }

    /// The queue at `now`: octets and segments waiting for the transmitter.
    pub fn occupancy(&self, now: Instant) -> (u64, u32) {
        let gone = self.waiting.iter().take_while(|(start, _)| *start <= now);
        let (bytes, packets) = gone.fold((0, 0), |(b, p), (_, len)| (b + u64::from(*len), p + 1));
        (self.waiting_bytes - bytes, self.waiting.len() as u32 - packets)
    }

    /// Forgets the segments whose transmission has begun by `now`.
    fn drain(&mut self, now: Instant) {
        while let Some(&(start, len)) = self.waiting.front() {
            if start > now {
                break;
            }
            self.waiting.pop_front();
            self.waiting_bytes -= u64::from(len);
        }
    }
}

/// A bottleneck several links cross: the middle link of a dumbbell, between
/// the router every `a` side reaches and the router every `b` side reaches.
/// Each direction has one transmitter and one drop-tail queue that every
/// segment crossing it in that direction shares, whichever hosts it is
/// between; its rate and capacity are the same for every link that names it.
#[derive(Clone, Debug, Default)]
pub(crate) struct Bottleneck {
    /// Its name, as links give it.
    pub name: String,
    /// Rate and capacity (`bandwidth_bps`, `queue_bytes`, `queue_packets`).
    pub params: LinkParams,
    /// From the `a` sides to the `b` sides.
    pub forward: Transmitter,
    /// Back.
    pub reverse: Transmitter,
    /// Link directions that cross it; it is forgotten at zero.
    pub members: u32,
}

/// The most bottlenecks one world may have.
pub const MAX_BOTTLENECKS: usize = 256;

/// Checks that a link may cross the bottleneck `name`: 1 to 64 letters,
/// digits, `-`, `_` or `.`, and a link with a rate (a bottleneck is one).
///
/// # Errors
/// A [`LinkError`] on field `bottleneck`.
pub fn validate_bottleneck(name: &str, params: &LinkParams) -> Result<(), LinkError> {
    let plain = (1..=64).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !plain {
        let message = format!("must be 1 to 64 letters, digits, '-', '_' or '.', got {name:?}");
        return Err(LinkError { field: "bottleneck", message });
    }
    if params.bandwidth_bps == 0 {
        let message = "needs bandwidth_bps > 0: a bottleneck is a link with a rate".to_string();
        return Err(LinkError { field: "bottleneck", message });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(bandwidth_bps: u64, queue_bytes: u64, queue_packets: u32) -> LinkDir {
        LinkDir {
            params: LinkParams { bandwidth_bps, queue_bytes, queue_packets, ..LinkParams::default() },
            ..LinkDir::default()
        }
    }

    #[test]
    fn a_busy_transmitter_queues_and_a_full_queue_drops_the_tail() {
        // 980 + 20 octets at 8 Mb/s: 1 ms each; room for two waiting.
        let mut link = dir(8_000_000, 2000, 0);
        let t0 = Instant::from_nanos(0);
        let ms = |n: u64| Instant::from_nanos(n * 1_000_000);
        assert_eq!(link.admit(t0, 980), Admission::Sent(ms(1)));
        assert_eq!(link.admit(t0, 980), Admission::Queued { transmit: ms(1), leaves: ms(2), bytes: 1000, packets: 1 });
        assert_eq!(link.admit(t0, 980), Admission::Queued { transmit: ms(2), leaves: ms(3), bytes: 2000, packets: 2 });
        assert_eq!(link.admit(t0, 980), Admission::Full);
        assert_eq!(link.occupancy(t0), (2000, 2));
        // At 1 ms the first waiting segment is on the wire: room for one more.
        assert_eq!(link.occupancy(ms(1)), (1000, 1));
        assert!(matches!(link.admit(ms(1), 980), Admission::Queued { bytes: 2000, packets: 2, .. }));
        assert_eq!(link.occupancy(ms(10)), (0, 0));
    }

    #[test]
    fn a_packet_limit_counts_segments_and_zero_is_unlimited() {
        let t0 = Instant::from_nanos(0);
        let mut link = dir(8_000_000, 0, 1);
        assert!(matches!(link.admit(t0, 40), Admission::Sent(_)));
        assert!(matches!(link.admit(t0, 40), Admission::Queued { packets: 1, .. }));
        assert_eq!(link.admit(t0, 40), Admission::Full);
        let mut unlimited = dir(8_000_000, 0, 0);
        for _ in 0..1000 {
            assert_ne!(unlimited.admit(t0, 1460), Admission::Full);
        }
    }

    #[test]
    fn queue_settings_are_validated_with_their_field() {
        let bad = |p: LinkParams| p.validate().expect_err("invalid").field;
        assert_eq!(bad(LinkParams { queue_bytes: 16_384, ..LinkParams::default() }), "queue_bytes");
        assert_eq!(bad(LinkParams { queue_packets: 10, ..LinkParams::default() }), "queue_packets");
        let rated = LinkParams { bandwidth_bps: 2_000_000, ..LinkParams::default() };
        assert_eq!(bad(LinkParams { queue_bytes: MAX_QUEUE_BYTES + 1, ..rated.clone() }), "queue_bytes");
        assert_eq!(bad(LinkParams { queue_packets: MAX_QUEUE_PACKETS + 1, ..rated.clone() }), "queue_packets");
        assert!(LinkParams { queue_bytes: 16_384, queue_packets: 100, ..rated }.validate().is_ok());
    }
}
