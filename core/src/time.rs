//! Virtual time as types: an [`Instant`] on a world's clock and a
//! [`Duration`] between two of them, both whole nanoseconds in a `u64`.
//!
//! Why newtypes and not bare `u64`: a deadline, a delay and a count of octets
//! were all `u64` before, and nothing stopped one being passed for another
//! (smoltcp's `time.rs` made the same choice for the same reason). The
//! arithmetic that makes sense is the arithmetic they have: an instant plus a
//! duration is an instant, two instants' difference is a duration, two
//! instants do not add.
//!
//! Both serialise as the bare number of nanoseconds (`#[serde(transparent)]`),
//! so that a field such as `t_ns` reads and writes exactly as it did when it
//! was a `u64`.
//!
//! Overflow: `+` and `-` behave as they do on `u64` (a panic in debug builds),
//! which is what the code they replace did; where an operand comes from a
//! user, use the `checked_*` or `saturating_*` forms.
//!
//! [`Display`](std::fmt::Display) writes seconds with all nine decimals
//! (`1.234567890s`), so no nanosecond is ever rounded away in a message.

use std::fmt;
use std::ops::{Add, AddAssign, Mul, Sub, SubAssign};

use serde::{Deserialize, Serialize};

const NANOS_PER_MICRO: u64 = 1_000;
const NANOS_PER_MILLI: u64 = 1_000_000;
const NANOS_PER_SEC: u64 = 1_000_000_000;

/// A point on a world's virtual clock: nanoseconds since the world started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Instant {
    nanos: u64,
}

/// A span of virtual time, in nanoseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Duration {
    nanos: u64,
}

impl Instant {
    /// The moment a world starts.
    pub const ZERO: Instant = Instant { nanos: 0 };
    /// The last representable instant: "never", or "no limit" for a run.
    pub const MAX: Instant = Instant { nanos: u64::MAX };

    /// The instant `nanos` nanoseconds after the start.
    pub const fn from_nanos(nanos: u64) -> Instant {
        Instant { nanos }
    }

    /// The instant `micros` microseconds after the start (saturating at [`Instant::MAX`]).
    pub const fn from_micros(micros: u64) -> Instant {
        Instant { nanos: micros.saturating_mul(NANOS_PER_MICRO) }
    }

    /// The instant `millis` milliseconds after the start (saturating at [`Instant::MAX`]).
    pub const fn from_millis(millis: u64) -> Instant {
        Instant { nanos: millis.saturating_mul(NANOS_PER_MILLI) }
    }

    /// The instant `secs` seconds after the start (saturating at [`Instant::MAX`]).
    pub const fn from_secs(secs: u64) -> Instant {
        Instant { nanos: secs.saturating_mul(NANOS_PER_SEC) }
    }

    /// Nanoseconds since the start: what events and the store record.
    pub const fn as_nanos(self) -> u64 {
        self.nanos
    }

    /// Whole microseconds since the start.
    pub const fn as_micros(self) -> u64 {
        self.nanos / NANOS_PER_MICRO
    }

    /// Milliseconds since the start, with the fraction (for messages).
    pub fn as_millis_f64(self) -> f64 {
        self.nanos as f64 / 1e6
    }

    /// Time since the start, as a duration.
    pub const fn since_start(self) -> Duration {
        Duration { nanos: self.nanos }
    }

    /// `self + d`, or `None` past [`Instant::MAX`].
    pub const fn checked_add(self, d: Duration) -> Option<Instant> {
        match self.nanos.checked_add(d.nanos) {
            Some(nanos) => Some(Instant { nanos }),
            None => None,
        }
    }

    /// `self - d`, or `None` before [`Instant::ZERO`].
    pub const fn checked_sub(self, d: Duration) -> Option<Instant> {
        match self.nanos.checked_sub(d.nanos) {
            Some(nanos) => Some(Instant { nanos }),
            None => None,
        }
    }

    /// `self + d`, stopping at [`Instant::MAX`] (a limit "from now" that may be unbounded).
    pub const fn saturating_add(self, d: Duration) -> Instant {
        Instant { nanos: self.nanos.saturating_add(d.nanos) }
    }

    /// `self - d`, stopping at [`Instant::ZERO`].
    pub const fn saturating_sub(self, d: Duration) -> Instant {
        Instant { nanos: self.nanos.saturating_sub(d.nanos) }
    }

    /// The time from `earlier` to `self`, or `None` when `earlier` is later.
    pub const fn checked_duration_since(self, earlier: Instant) -> Option<Duration> {
        match self.nanos.checked_sub(earlier.nanos) {
            Some(nanos) => Some(Duration { nanos }),
            None => None,
        }
    }

    /// The time from `earlier` to `self`, zero when `earlier` is later.
    pub const fn saturating_duration_since(self, earlier: Instant) -> Duration {
        Duration { nanos: self.nanos.saturating_sub(earlier.nanos) }
    }
}

impl Duration {
    /// No time at all.
    pub const ZERO: Duration = Duration { nanos: 0 };
    /// The longest representable span: "no limit".
    pub const MAX: Duration = Duration { nanos: u64::MAX };

    /// `nanos` nanoseconds.
    pub const fn from_nanos(nanos: u64) -> Duration {
        Duration { nanos }
    }

    /// `micros` microseconds (saturating at [`Duration::MAX`]).
    pub const fn from_micros(micros: u64) -> Duration {
        Duration { nanos: micros.saturating_mul(NANOS_PER_MICRO) }
    }

    /// `millis` milliseconds (saturating at [`Duration::MAX`]).
    pub const fn from_millis(millis: u64) -> Duration {
        Duration { nanos: millis.saturating_mul(NANOS_PER_MILLI) }
    }

    /// `secs` seconds (saturating at [`Duration::MAX`]).
    pub const fn from_secs(secs: u64) -> Duration {
        Duration { nanos: secs.saturating_mul(NANOS_PER_SEC) }
    }

    /// The span in nanoseconds: what events and settings record.
    pub const fn as_nanos(self) -> u64 {
        self.nanos
    }

    /// Whole microseconds.
    pub const fn as_micros(self) -> u64 {
        self.nanos / NANOS_PER_MICRO
    }

    /// Milliseconds, with the fraction (for messages).
    pub fn as_millis_f64(self) -> f64 {
        self.nanos as f64 / 1e6
    }

    /// `true` for a zero span.
    pub const fn is_zero(self) -> bool {
        self.nanos == 0
    }

    /// `self + other`, or `None` past [`Duration::MAX`].
    pub const fn checked_add(self, other: Duration) -> Option<Duration> {
        match self.nanos.checked_add(other.nanos) {
            Some(nanos) => Some(Duration { nanos }),
            None => None,
        }
    }

    /// `self - other`, or `None` below zero.
    pub const fn checked_sub(self, other: Duration) -> Option<Duration> {
        match self.nanos.checked_sub(other.nanos) {
            Some(nanos) => Some(Duration { nanos }),
            None => None,
        }
    }

    /// `self + other`, stopping at [`Duration::MAX`].
    pub const fn saturating_add(self, other: Duration) -> Duration {
        Duration { nanos: self.nanos.saturating_add(other.nanos) }
    }

    /// `self - other`, stopping at zero.
    pub const fn saturating_sub(self, other: Duration) -> Duration {
        Duration { nanos: self.nanos.saturating_sub(other.nanos) }
    }

    /// `self * n`, stopping at [`Duration::MAX`].
    pub const fn saturating_mul(self, n: u64) -> Duration {
        Duration { nanos: self.nanos.saturating_mul(n) }
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, d: Duration) -> Instant {
        Instant { nanos: self.nanos + d.nanos }
    }
}

impl AddAssign<Duration> for Instant {
    fn add_assign(&mut self, d: Duration) {
        self.nanos += d.nanos;
    }
}

impl Sub<Duration> for Instant {
    type Output = Instant;
    fn sub(self, d: Duration) -> Instant {
        Instant { nanos: self.nanos - d.nanos }
    }
}

impl SubAssign<Duration> for Instant {
    fn sub_assign(&mut self, d: Duration) {
        self.nanos -= d.nanos;
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;
    fn sub(self, earlier: Instant) -> Duration {
        Duration { nanos: self.nanos - earlier.nanos }
    }
}

impl Add for Duration {
    type Output = Duration;
    fn add(self, other: Duration) -> Duration {
        Duration { nanos: self.nanos + other.nanos }
    }
}

impl AddAssign for Duration {
    fn add_assign(&mut self, other: Duration) {
        self.nanos += other.nanos;
    }
}

impl Sub for Duration {
    type Output = Duration;
    fn sub(self, other: Duration) -> Duration {
        Duration { nanos: self.nanos - other.nanos }
    }
}

impl SubAssign for Duration {
    fn sub_assign(&mut self, other: Duration) {
        self.nanos -= other.nanos;
    }
}

impl Mul<u64> for Duration {
    type Output = Duration;
    fn mul(self, n: u64) -> Duration {
        Duration { nanos: self.nanos * n }
    }
}

/// Seconds with nine decimals: `1.234567890s`.
fn fmt_seconds(nanos: u64, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    write!(f, "{}.{:09}s", nanos / NANOS_PER_SEC, nanos % NANOS_PER_SEC)
}

impl fmt::Display for Instant {
    /// Seconds since the start, to the nanosecond: `1.234567890s`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_seconds(self.nanos, f)
    }
}

impl fmt::Display for Duration {
    /// Seconds, to the nanosecond: `0.200000000s`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_seconds(self.nanos, f)
    }
}

#[cfg(test)]
mod tests {
    use super::{Duration, Instant};

    #[test]
    fn constructors_agree_on_units() {
        assert_eq!(Instant::from_secs(2), Instant::from_nanos(2_000_000_000));
        assert_eq!(Instant::from_millis(3).as_nanos(), 3_000_000);
        assert_eq!(Instant::from_micros(5).as_micros(), 5);
        assert_eq!(Duration::from_secs(1), Duration::from_millis(1_000));
        assert_eq!(Duration::from_millis(1), Duration::from_micros(1_000));
        assert_eq!(Duration::from_micros(1), Duration::from_nanos(1_000));
        assert_eq!(Duration::from_millis(1_500).as_millis_f64(), 1_500.0);
        assert_eq!(Instant::from_nanos(2_500_000).as_millis_f64(), 2.5);
        assert_eq!(Instant::default(), Instant::ZERO);
        assert_eq!(Duration::default(), Duration::ZERO);
    }

    #[test]
    fn instants_and_durations_have_the_arithmetic_that_makes_sense() {
        let t = Instant::from_millis(10);
        let d = Duration::from_millis(5);
        assert_eq!(t + d, Instant::from_millis(15));
        assert_eq!(t - d, Instant::from_millis(5));
        assert_eq!((t + d) - t, d);
        assert_eq!(d + d, Duration::from_millis(10));
        assert_eq!(d - Duration::from_millis(2), Duration::from_millis(3));
        assert_eq!(d * 3, Duration::from_millis(15));
        let mut u = t;
        u += d;
        u -= Duration::from_millis(1);
        assert_eq!(u, Instant::from_millis(14));
        let mut e = d;
        e += d;
        e -= Duration::from_millis(1);
        assert_eq!(e, Duration::from_millis(9));
        assert!(Instant::ZERO < t && t < Instant::MAX);
        assert!(Duration::ZERO.is_zero() && !d.is_zero());
        assert_eq!(t.since_start(), Duration::from_millis(10));
    }

    #[test]
    fn the_checked_and_saturating_forms_stop_at_the_ends() {
        let near_end = Instant::from_nanos(u64::MAX - 1);
        assert_eq!(near_end.checked_add(Duration::from_nanos(2)), None);
        assert_eq!(near_end.saturating_add(Duration::MAX), Instant::MAX);
        assert_eq!(Instant::ZERO.checked_sub(Duration::from_nanos(1)), None);
        assert_eq!(Instant::from_nanos(3).saturating_sub(Duration::from_nanos(5)), Instant::ZERO);
        assert_eq!(Instant::from_nanos(3).checked_duration_since(Instant::from_nanos(5)), None);
        assert_eq!(Instant::from_nanos(3).saturating_duration_since(Instant::from_nanos(5)), Duration::ZERO);
        assert_eq!(
            Instant::from_nanos(5).checked_duration_since(Instant::from_nanos(3)),
            Some(Duration::from_nanos(2))
        );
        assert_eq!(Duration::MAX.checked_add(Duration::from_nanos(1)), None);
        assert_eq!(Duration::MAX.saturating_add(Duration::from_nanos(1)), Duration::MAX);
        assert_eq!(Duration::ZERO.checked_sub(Duration::from_nanos(1)), None);
        assert_eq!(Duration::from_nanos(1).saturating_sub(Duration::from_nanos(2)), Duration::ZERO);
        assert_eq!(Duration::from_secs(u64::MAX / 2).saturating_mul(4), Duration::MAX);
        assert_eq!(Duration::from_secs(u64::MAX), Duration::MAX, "constructors saturate too");
        assert_eq!(Instant::from_millis(u64::MAX), Instant::MAX);
    }

    #[test]
    fn both_serialise_as_a_bare_number_of_nanoseconds() {
        // The form `t_ns` and friends had as `u64`: byte for byte.
        assert_eq!(serde_json::to_string(&Instant::from_nanos(1_234_567)).ok().as_deref(), Some("1234567"));
        assert_eq!(serde_json::to_string(&Duration::from_millis(200)).ok().as_deref(), Some("200000000"));
        assert_eq!(serde_json::to_string(&Instant::MAX).ok(), serde_json::to_string(&u64::MAX).ok());
        assert_eq!(serde_json::from_str::<Instant>("42").ok(), Some(Instant::from_nanos(42)));
        assert_eq!(serde_json::from_str::<Duration>("7").ok(), Some(Duration::from_nanos(7)));
        assert!(serde_json::from_str::<Duration>("-1").is_err());
    }

    #[test]
    fn display_is_seconds_to_the_nanosecond() {
        assert_eq!(Instant::from_nanos(1_234_567_890).to_string(), "1.234567890s");
        assert_eq!(Instant::ZERO.to_string(), "0.000000000s");
        assert_eq!(Duration::from_millis(200).to_string(), "0.200000000s");
        assert_eq!(Duration::from_secs(60).to_string(), "60.000000000s");
    }
}
