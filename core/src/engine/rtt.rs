//! Round-trip time estimation and the retransmission timeout (RFC 6298).

/// SRTT, RTTVAR and RTO as RFC 6298 section 2 defines them, in nanoseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RttEstimator {
    /// Smoothed round-trip time; `None` until the first sample.
    pub srtt: Option<u64>,
    /// Round-trip time variation.
    pub rttvar: u64,
    /// The current retransmission timeout, including any backoff.
    pub rto: u64,
    /// The RTO before the slop: what backoff doubles.
    base: u64,
    rto_min: u64,
    rto_max: u64,
}

/// The clock granularity G of RFC 6298: virtual time is exact, so 1 µs stands
/// in for "the smallest tick" and keeps RTTVAR from collapsing to zero.
const GRANULARITY_NS: u64 = 1_000;

impl RttEstimator {
    /// An estimator with no sample yet: RTO is the initial value (RFC 6298 section 2.1).
    pub fn new(rto_initial: u64, rto_min: u64, rto_max: u64) -> Self {
        let rto = rto_initial.clamp(1, rto_max.max(1));
        RttEstimator { srtt: None, rttvar: 0, rto, base: rto, rto_min, rto_max }
    }

    /// Folds in one measurement R (RFC 6298 sections 2.2 and 2.3; alpha 1/8,
    /// beta 1/4, K 4). `slop` is added to the RTO, as FreeBSD's
    /// TCPT_RANGESET() adds `net.inet.tcp.rexmit_slop` (0 in RFC 6298).
    pub fn sample(&mut self, r: u64, slop: u64) {
        match self.srtt {
            None => {
                self.srtt = Some(r);
                self.rttvar = r / 2;
            }
            Some(srtt) => {
                let delta = srtt.abs_diff(r);
                self.rttvar = (3 * self.rttvar + delta) / 4;
                self.srtt = Some((7 * srtt + r) / 8);
            }
        }
        let srtt = self.srtt.unwrap_or(r);
        // RFC 6298 section 2.4: whenever RTO is computed, round it up to the minimum.
        self.base = (srtt + GRANULARITY_NS.max(4 * self.rttvar)).clamp(self.rto_min, self.rto_max);
        self.rto = self.base.saturating_add(slop).min(self.rto_max);
    }

    /// Doubles the RTO after an expiry (RFC 6298 section 5.5), up to the
    /// maximum; `slop` is added to the doubled value, not doubled.
    pub fn back_off(&mut self, slop: u64) {
        self.base = self.base.saturating_mul(2).min(self.rto_max);
        self.rto = self.base.saturating_add(slop).min(self.rto_max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn first_sample_sets_srtt_and_half_variance() {
        let mut rtt = RttEstimator::new(1000 * MS, 200 * MS, 60_000 * MS);
        assert_eq!(rtt.rto, 1000 * MS);
        rtt.sample(100 * MS, 0);
        assert_eq!(rtt.srtt, Some(100 * MS));
        assert_eq!(rtt.rttvar, 50 * MS);
        assert_eq!(rtt.rto, 300 * MS);
    }

    #[test]
    fn later_samples_smooth_with_alpha_and_beta() {
        let mut rtt = RttEstimator::new(1000 * MS, MS, 60_000 * MS);
        rtt.sample(100 * MS, 0);
        rtt.sample(200 * MS, 0);
        // RTTVAR = 3/4*50 + 1/4*|100-200| = 62.5; SRTT = 7/8*100 + 1/8*200 = 112.5
        assert_eq!(rtt.rttvar, 62_500_000);
        assert_eq!(rtt.srtt, Some(112_500_000));
        assert_eq!(rtt.rto, 112_500_000 + 4 * 62_500_000);
    }

    #[test]
    fn the_slop_is_added_to_each_computed_rto_but_not_doubled() {
        // FreeBSD: the first SYN waits 1 s, then 2 s + 200 ms, then 4 s + 200 ms.
        let mut rtt = RttEstimator::new(1000 * MS, 30 * MS, 64_000 * MS);
        let slop = 200 * MS;
        assert_eq!(rtt.rto, 1000 * MS);
        rtt.back_off(slop);
        assert_eq!(rtt.rto, 2200 * MS);
        rtt.back_off(slop);
        assert_eq!(rtt.rto, 4200 * MS);
        rtt.sample(10 * MS, slop);
        assert_eq!(rtt.rto, 30 * MS + 200 * MS, "the floor, then the slop");
    }

    #[test]
    fn minimum_and_backoff_ceiling_apply() {
        let mut rtt = RttEstimator::new(1000 * MS, 1000 * MS, 4000 * MS);
        rtt.sample(10 * MS, 0);
        assert_eq!(rtt.rto, 1000 * MS, "RFC 6298 2.4 rounds up to 1 s");
        rtt.back_off(0);
        rtt.back_off(0);
        rtt.back_off(0);
        assert_eq!(rtt.rto, 4000 * MS);
    }
}
