//! Sequence-number arithmetic modulo 2^32 (RFC 9293 section 3.4).
//!
//! TCP's sequence space wraps: after 4,294,967,295 comes 0. Comparing two
//! sequence numbers therefore means asking which one is "ahead" on the circle,
//! which is only meaningful when they are less than 2^31 apart. Every
//! comparison in the engine goes through [`SeqNumber`] so that no code path
//! accidentally compares raw `u32`s and breaks at the wrap.

use std::cmp::Ordering;
use std::fmt;
use std::ops::{Add, AddAssign, Sub};

/// A TCP sequence number: a `u32` whose ordering is circular.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct SeqNumber(pub u32);

impl SeqNumber {
    /// The signed distance from `other` to `self` (positive when `self` is ahead).
    pub fn distance_from(self, other: SeqNumber) -> i32 {
        self.0.wrapping_sub(other.0) as i32
    }

    /// `true` when `self` lies in the half-open interval `[start, start + len)`.
    pub fn in_window(self, start: SeqNumber, len: u32) -> bool {
        self.0.wrapping_sub(start.0) < len
    }

    /// The larger of two sequence numbers in circular order.
    pub fn max(self, other: SeqNumber) -> SeqNumber {
        if self >= other { self } else { other }
    }

    /// The smaller of two sequence numbers in circular order.
    pub fn min(self, other: SeqNumber) -> SeqNumber {
        if self <= other { self } else { other }
    }
}

impl PartialOrd for SeqNumber {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for SeqNumber {
    /// Circular order: `a < b` when `b` is ahead of `a` by less than 2^31.
    /// Not a total order on all of `u32` (it is not transitive across more
    /// than half the space), which is exactly RFC 9293's definition; the engine
    /// only compares numbers that lie within one window of each other.
    fn cmp(&self, other: &Self) -> Ordering {
        self.distance_from(*other).cmp(&0)
    }
}

impl Add<u32> for SeqNumber {
    type Output = SeqNumber;
    fn add(self, rhs: u32) -> SeqNumber {
        SeqNumber(self.0.wrapping_add(rhs))
    }
}

impl AddAssign<u32> for SeqNumber {
    fn add_assign(&mut self, rhs: u32) {
        self.0 = self.0.wrapping_add(rhs);
    }
}

impl Sub<u32> for SeqNumber {
    type Output = SeqNumber;
    fn sub(self, rhs: u32) -> SeqNumber {
        SeqNumber(self.0.wrapping_sub(rhs))
    }
}

impl Sub<SeqNumber> for SeqNumber {
    type Output = u32;
    /// The number of octets from `rhs` forward to `self`; callers use it only
    /// when `self >= rhs`.
    fn sub(self, rhs: SeqNumber) -> u32 {
        self.0.wrapping_sub(rhs.0)
    }
}

impl fmt::Debug for SeqNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Display for SeqNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordering_crosses_the_wrap() {
        let before = SeqNumber(u32::MAX - 10);
        let after = before + 20;
        assert_eq!(after.0, 9);
        assert!(before < after);
        assert!(after > before);
        assert_eq!(after - before, 20);
        assert_eq!(after.distance_from(before), 20);
        assert_eq!(before.distance_from(after), -20);
    }

    #[test]
    fn window_membership_crosses_the_wrap() {
        let start = SeqNumber(u32::MAX - 4);
        assert!(start.in_window(start, 10));
        assert!(SeqNumber(0).in_window(start, 10));
        assert!(SeqNumber(4).in_window(start, 10));
        assert!(!SeqNumber(5).in_window(start, 10));
        assert!(!(start - 1).in_window(start, 10));
        assert!(!start.in_window(start, 0));
    }

    #[test]
    fn subtraction_and_min_max_cross_the_wrap() {
        let a = SeqNumber(u32::MAX);
        let b = a + 1;
        assert_eq!(b.0, 0);
        assert_eq!(b - 1, a);
        assert_eq!(a.max(b), b);
        assert_eq!(a.min(b), a);
        let mut c = a;
        c += 3;
        assert_eq!(c.0, 2);
    }

    #[test]
    fn half_space_boundary() {
        let a = SeqNumber(0);
        let b = SeqNumber(0x7fff_ffff);
        assert!(a < b);
        let c = SeqNumber(0x8000_0001);
        assert!(c < a, "more than 2^31 ahead reads as behind");
    }
}
