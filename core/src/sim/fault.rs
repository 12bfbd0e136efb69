//! Fault rules: match segments on their way and drop, delay, duplicate,
//! corrupt or hold them. Rules are applied in the order they were added; every
//! rule counts the segments it matches, and the first one whose turn it is
//! acts (like turmoil's rules, with counting so a lab can hit "the n-th ACK").

use serde::{Deserialize, Serialize};

use crate::engine::{Flags, Segment};

/// Which segments a rule applies to. Every field is optional; an empty match
/// matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SegmentMatch {
    /// The exact set of flags (`["ACK"]` matches a pure ACK, not a FIN+ACK).
    pub flags: Option<Flags>,
    /// Payload length in octets.
    pub len: Option<u32>,
    /// SEG.SEQ exactly.
    pub seq: Option<u32>,
    /// SEG.SEQ within `[from, to]` (inclusive, circular).
    pub seq_range: Option<(u32, u32)>,
    /// SEG.ACK exactly.
    pub ack: Option<u32>,
    /// Source port.
    pub src_port: Option<u16>,
    /// Destination port.
    pub dst_port: Option<u16>,
}

impl SegmentMatch {
    /// `true` when `seg` has every property named.
    pub fn matches(&self, seg: &Segment) -> bool {
        self.flags.is_none_or(|f| f == seg.flags)
            && self.len.is_none_or(|l| l as usize == seg.payload.len())
            && self.seq.is_none_or(|s| s == seg.seq.0)
            && self.seq_range.is_none_or(|(lo, hi)| seg.seq.0.wrapping_sub(lo) <= hi.wrapping_sub(lo))
            && self.ack.is_none_or(|a| a == seg.ack.0)
            && self.src_port.is_none_or(|p| p == seg.src_port)
            && self.dst_port.is_none_or(|p| p == seg.dst_port)
    }
}

/// What a rule does to the segments it acts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultAction {
    /// The segment vanishes.
    Drop,
    /// The segment arrives `delay_ns` later than the link would deliver it.
    Delay,
    /// The segment arrives twice.
    Duplicate,
    /// One bit of the segment is flipped.
    Corrupt,
    /// The segment waits in the rule until the rule is released.
    Hold,
}

/// A fault rule as the user describes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultSpec {
    /// Sending host's name (any when absent).
    pub from: Option<String>,
    /// Receiving host's name (any when absent).
    pub to: Option<String>,
    /// The segments concerned.
    #[serde(rename = "match", default)]
    pub matcher: SegmentMatch,
    /// Let this many matching segments pass first.
    #[serde(default)]
    pub skip: u64,
    /// Act on this many after that (every later match when absent).
    pub count: Option<u64>,
    /// What to do.
    pub action: FaultAction,
    /// For `delay`: how long, in nanoseconds.
    #[serde(default)]
    pub delay_ns: u64,
}

/// A fault rule installed in a world, with its counters.
#[derive(Clone, Debug)]
pub struct FaultRule {
    /// Its id (from 1).
    pub id: u64,
    /// What it is.
    pub spec: FaultSpec,
    pub(crate) from: Option<u32>,
    pub(crate) to: Option<u32>,
    /// Segments it matched so far.
    pub matched: u64,
    /// Segments it acted on so far.
    pub acted: u64,
    /// Segments it holds.
    pub(crate) held: Vec<super::world::InFlight>,
}

impl FaultRule {
    /// Counts a segment travelling `from` -> `to`; returns `true` when the rule acts on it.
    pub(crate) fn consider(&mut self, from: u32, to: Option<u32>, seg: &Segment) -> bool {
        if self.from.is_some_and(|f| f != from)
            || self.to.is_some_and(|t| Some(t) != to)
            || !self.spec.matcher.matches(seg)
        {
            return false;
        }
        self.matched += 1;
        let turn =
            self.matched > self.spec.skip && self.spec.count.is_none_or(|count| self.matched <= self.spec.skip + count);
        if turn {
            self.acted += 1;
        }
        turn
    }

    /// Segments currently held.
    pub fn held_count(&self) -> usize {
        self.held.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::SeqNumber;

    fn seg(flags: Flags, seq: u32, len: usize) -> Segment {
        Segment { flags, seq: SeqNumber(seq), payload: vec![0; len].into(), ..Segment::default() }
    }

    #[test]
    fn flags_match_the_exact_set() {
        let m = SegmentMatch { flags: Some(Flags::ACK), ..Default::default() };
        assert!(m.matches(&seg(Flags::ACK, 1, 0)));
        assert!(!m.matches(&seg(Flags::ACK | Flags::FIN, 1, 0)));
    }

    #[test]
    fn seq_range_crosses_the_wrap() {
        let m = SegmentMatch { seq_range: Some((u32::MAX - 1, 2)), ..Default::default() };
        assert!(m.matches(&seg(Flags::ACK, u32::MAX, 0)));
        assert!(m.matches(&seg(Flags::ACK, 1, 0)));
        assert!(!m.matches(&seg(Flags::ACK, 3, 0)));
    }

    #[test]
    fn skip_and_count_pick_the_nth_matches() {
        let spec = FaultSpec {
            from: None,
            to: None,
            matcher: SegmentMatch::default(),
            skip: 1,
            count: Some(2),
            action: FaultAction::Drop,
            delay_ns: 0,
        };
        let mut rule = FaultRule { id: 1, spec, from: None, to: None, matched: 0, acted: 0, held: Vec::new() };
        let s = seg(Flags::ACK, 1, 0);
        let verdicts: Vec<bool> = (0..5).map(|_| rule.consider(0, Some(1), &s)).collect();
        assert_eq!(verdicts, [false, true, true, false, false]);
        assert_eq!(rule.acted, 2);
    }
}
