//! Links between hosts and their impairments, one set per direction.

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
}

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

/// One direction of a link and its queue.
#[derive(Clone, Debug, Default)]
pub(crate) struct LinkDir {
    pub params: LinkParams,
    /// When the transmitter is free again (bandwidth).
    pub busy_until: Instant,
}
