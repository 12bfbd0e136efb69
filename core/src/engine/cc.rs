//! Congestion control: how much of the peer's window a sender may use.
//!
//! RFC 9293 section 3.8.2 makes RFC 5681 a MUST (MUST-19). The mechanics every
//! algorithm shares live in the TCB (counting duplicate ACKs, the recovery
//! point of RFC 6582, what is resent when); what differs between algorithms
//! is decided here, at the five points where they differ, as smoltcp's
//! `congestion` module and quinn-proto's `congestion` do:
//!
//! - [`Congestion::on_ack`]: new data acknowledged outside recovery (growth);
//! - [`Congestion::on_fast_retransmit`]: the third duplicate ACK (loss);
//! - [`Congestion::on_partial_ack`] and [`Congestion::on_recovery_exit`];
//! - [`Congestion::on_rto`]: the retransmission timer fired.
//!
//! All quantities are octets, as RFC 5681 writes them; CUBIC (RFC 9438)
//! reasons in segments and converts at its edges.

use serde::{Deserialize, Serialize};

/// Which algorithm grows and shrinks the congestion window (the profile's `cc`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum CcAlgorithm {
    /// RFC 5681 alone: any new ACK ends fast recovery, so a second loss in
    /// the same window waits for three more duplicate ACKs or the timer.
    #[serde(rename = "reno")]
    Reno,
    /// RFC 6582: partial ACKs resend the next hole and stay in recovery until
    /// everything sent before the loss is acknowledged.
    #[default]
    #[serde(rename = "newreno")]
    NewReno,
    /// RFC 9438 (Linux's default): after a loss the window grows along a cubic
    /// curve in real time around the window where the loss happened, with
    /// NewReno's loss recovery.
    #[serde(rename = "cubic")]
    Cubic,
}

impl CcAlgorithm {
    /// Whether a partial ACK keeps the sender in fast recovery (RFC 6582
    /// section 3.2 step 5) and the recovery point guards against fast
    /// retransmits triggered by the echoes of a timeout's retransmissions
    /// (section 4). Reno has neither.
    pub fn uses_recovery_point(self) -> bool {
        self != CcAlgorithm::Reno
    }
}

/// The initial window (the profile's `initial_window`): RFC 5681 section
/// 3.1's rule by SMSS, or a number of segments (RFC 6928's IW10).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum InitialWindow {
    /// `min(4 * SMSS, max(2 * SMSS, 4380))`: 4, 3 or 2 segments by SMSS.
    #[default]
    Rfc5681,
    /// This many segments (1 to [`MAX_INITIAL_WINDOW`]).
    Segments(u32),
}

/// The largest initial window a profile may ask for, in segments: far above
/// any shipped stack's (Linux and FreeBSD use 10), small enough that
/// `segments * SMSS` always fits the 32 bits cwnd has.
pub const MAX_INITIAL_WINDOW: u32 = 1000;

impl InitialWindow {
    /// IW in octets for a sender whose SMSS is `smss` (RFC 5681 section 3.1, equation 1).
    pub fn octets(self, smss: u32) -> u32 {
        match self {
            InitialWindow::Rfc5681 => (4 * smss).min((2 * smss).max(4380)),
            InitialWindow::Segments(n) => n.clamp(1, MAX_INITIAL_WINDOW).saturating_mul(smss),
        }
    }
}

impl Serialize for InitialWindow {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            InitialWindow::Rfc5681 => s.serialize_str("rfc5681"),
            InitialWindow::Segments(n) => s.serialize_u32(*n),
        }
    }
}

impl<'de> Deserialize<'de> for InitialWindow {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        let expected =
            || format!("initial_window: expected \"rfc5681\" or a number of segments 1..={MAX_INITIAL_WINDOW}");
        match Raw::deserialize(d).map_err(|_| serde::de::Error::custom(expected()))? {
            Raw::Number(n) if (1..=u64::from(MAX_INITIAL_WINDOW)).contains(&n) => Ok(InitialWindow::Segments(n as u32)),
            Raw::Text(t) if t == "rfc5681" => Ok(InitialWindow::Rfc5681),
            Raw::Number(n) => Err(serde::de::Error::custom(format!("{}, got {n}", expected()))),
            Raw::Text(t) => Err(serde::de::Error::custom(format!("{}, got {t:?}", expected()))),
        }
    }
}

/// Where a sender is in RFC 5681's cycle (`cc_phase` in the API).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum CcPhase {
    /// cwnd < ssthresh: cwnd grows by what each ACK acknowledges (section 3.1).
    #[default]
    SlowStart,
    /// cwnd >= ssthresh: about one SMSS per round trip (section 3.1).
    CongestionAvoidance,
    /// Between a fast retransmit and the ACK that ends recovery (section 3.2, RFC 6582).
    FastRecovery,
}

/// ssthresh before the first loss: "arbitrarily high" (RFC 5681 section 3.1).
pub const SSTHRESH_INFINITE: u32 = u32::MAX;

/// RFC 3465's L: slow start grows by at most 2 * SMSS per ACK, however much
/// it acknowledges (RFC 5681 section 3.1 allows this byte counting).
const ABC_LIMIT_SEGMENTS: u32 = 2;

/// The congestion state of one sender: cwnd and ssthresh (RFC 5681 section
/// 3.1's names), plus what the algorithm needs between ACKs.
#[derive(Clone, Debug, PartialEq)]
pub struct Congestion {
    /// The congestion window, in octets.
    pub cwnd: u32,
    /// The slow start threshold, in octets; [`SSTHRESH_INFINITE`] until a loss.
    pub ssthresh: u32,
    /// What only a sender that has sent data needs; allocated with its first
    /// data segment, so an idle connection pays one pointer for it.
    active: Option<Box<Active>>,
}

/// The congestion state of a sender that has sent data.
#[derive(Clone, Debug, Default, PartialEq)]
struct Active {
    /// Octets acknowledged since cwnd last grew in congestion avoidance
    /// (RFC 5681 section 3.1's byte counting: one SMSS per cwnd acknowledged).
    bytes_acked: u32,
    /// When data last left, for RFC 5681 section 4.1's restart after idle.
    last_data_sent: u64,
    /// CUBIC's curve, from its first congestion event or epoch.
    cubic: Option<Cubic>,
}

impl Congestion {
    /// A sender before its first segment: cwnd is `initial` octets.
    pub fn new(initial: u32) -> Self {
        Congestion { cwnd: initial, ssthresh: SSTHRESH_INFINITE, active: None }
    }

    fn active(&mut self) -> &mut Active {
        self.active.get_or_insert_with(Box::default)
    }

    fn reset_count(&mut self) {
        if let Some(active) = self.active.as_mut() {
            active.bytes_acked = 0;
        }
    }

    fn cubic(&mut self) -> Option<&mut Cubic> {
        self.active.as_mut().and_then(|a| a.cubic.as_mut())
    }

    /// A data segment left at `now`.
    pub fn on_data_sent(&mut self, now: u64) {
        self.active().last_data_sent = now;
    }

    /// When data last left, if it ever did.
    pub fn last_data_sent(&self) -> Option<u64> {
        self.active.as_ref().map(|a| a.last_data_sent)
    }

    /// Starts over with `cwnd` octets (the handshake told us the SMSS).
    pub fn restart(&mut self, cwnd: u32) {
        self.cwnd = cwnd;
        self.reset_count();
    }

    /// The phase outside recovery (the TCB knows whether it is recovering).
    pub fn phase(&self, in_recovery: bool) -> CcPhase {
        if in_recovery {
            CcPhase::FastRecovery
        } else if self.cwnd < self.ssthresh {
            CcPhase::SlowStart
        } else {
            CcPhase::CongestionAvoidance
        }
    }

    /// `acked` new octets were acknowledged outside fast recovery (RFC 5681
    /// section 3.1). `srtt_ns` is the smoothed RTT, if measured.
    pub fn on_ack(&mut self, algo: CcAlgorithm, acked: u32, smss: u32, now: u64, srtt_ns: Option<u64>) {
        if acked == 0 {
            return;
        }
        if self.cwnd < self.ssthresh {
            // Slow start, RFC 3465 with L = 2 SMSS.
            self.cwnd = self.cwnd.saturating_add(acked.min(ABC_LIMIT_SEGMENTS * smss));
            return;
        }
        match algo {
            CcAlgorithm::Reno | CcAlgorithm::NewReno => {
                let cwnd = self.cwnd;
                let active = self.active();
                active.bytes_acked = active.bytes_acked.saturating_add(acked);
                if active.bytes_acked >= cwnd {
                    active.bytes_acked -= cwnd;
                    self.cwnd = cwnd.saturating_add(smss);
                }
            }
            CcAlgorithm::Cubic => {
                let cwnd = self.cwnd;
                let cubic = self.active().cubic.get_or_insert_with(Cubic::default);
                self.cwnd = cubic.on_ack(cwnd, acked, smss, now, srtt_ns);
            }
        }
    }

    /// The third duplicate ACK (RFC 5681 section 3.2 steps 2 and 3): ssthresh
    /// falls to what the algorithm keeps of `flight_size`, and cwnd is
    /// ssthresh plus the three segments the duplicates say have left the network.
    pub fn on_fast_retransmit(&mut self, algo: CcAlgorithm, flight_size: u32, smss: u32) {
        self.ssthresh = self.reduced_ssthresh(algo, flight_size, smss);
        self.cwnd = self.ssthresh.saturating_add(3 * smss);
        self.reset_count();
    }

    /// Another duplicate ACK in fast recovery: one more segment has left the
    /// network, so the window inflates by one SMSS (RFC 5681 section 3.2 step 4,
    /// RFC 6582 section 3.2 step 3).
    pub fn on_recovery_dup_ack(&mut self, smss: u32) {
        self.cwnd = self.cwnd.saturating_add(smss);
    }

    /// A partial ACK of `acked` octets in fast recovery (RFC 6582 section 3.2
    /// step 5): deflate by what it acknowledged, add back one SMSS if it
    /// acknowledged at least that much.
    pub fn on_partial_ack(&mut self, acked: u32, smss: u32) {
        let back = if acked >= smss { smss } else { 0 };
        self.cwnd = self.cwnd.saturating_sub(acked).saturating_add(back).max(smss);
    }

    /// The ACK that ends fast recovery, `flight_size` octets still in
    /// flight after it. Reno (RFC 5681 section 3.2 step 6) sets cwnd to
    /// ssthresh; NewReno and CUBIC take RFC 6582 section 3.2 step 6's first
    /// option, `min(ssthresh, max(FlightSize, SMSS) + SMSS)`, so that a burst
    /// never follows the end of recovery (FreeBSD's `newreno_post_recovery`).
    pub fn on_recovery_exit(&mut self, algo: CcAlgorithm, flight_size: u32, smss: u32, now: u64) {
        self.cwnd = match algo {
            CcAlgorithm::Reno => self.ssthresh,
            CcAlgorithm::NewReno | CcAlgorithm::Cubic => self.ssthresh.min(flight_size.max(smss).saturating_add(smss)),
        };
        self.reset_count();
        let cwnd = self.cwnd;
        if let Some(cubic) = self.cubic() {
            cubic.start_epoch(cwnd, smss, now);
        }
    }

    /// The retransmission timer fired (RFC 5681 section 3.1, equations 4
    /// and 5). `first` is false when the segment had already been resent by
    /// the timer, and then ssthresh is held; cwnd is the loss window, one SMSS.
    /// Before the connection is synchronized nothing but cwnd changes: a
    /// lost SYN or SYN+ACK means an initial window of one SMSS (RFC 5681
    /// section 3.1, RFC 6928 section 2).
    pub fn on_rto(&mut self, algo: CcAlgorithm, flight_size: u32, smss: u32, first: bool, synchronized: bool) {
        if first && synchronized {
            self.ssthresh = self.reduced_ssthresh(algo, flight_size, smss);
        }
        self.cwnd = smss;
        self.reset_count();
        if let Some(cubic) = self.cubic() {
            cubic.epoch_start = None;
        }
    }

    /// RFC 5681 section 4.1: after an idle period longer than the RTO, cwnd
    /// is at most the restart window `min(IW, cwnd)`.
    pub fn after_idle(&mut self, initial: u32) {
        self.cwnd = self.cwnd.min(initial);
        if let Some(cubic) = self.cubic() {
            cubic.epoch_start = None;
        }
    }

    /// RFC 5681 equation 4, `max(FlightSize / 2, 2 * SMSS)`, or RFC 9438
    /// section 4.6's `FlightSize * beta_cubic` with the same floor; CUBIC also
    /// remembers the window where the loss happened (W_max, section 4.7's fast
    /// convergence).
    fn reduced_ssthresh(&mut self, algo: CcAlgorithm, flight_size: u32, smss: u32) -> u32 {
        let floor = 2 * smss;
        match algo {
            CcAlgorithm::Reno | CcAlgorithm::NewReno => (flight_size / 2).max(floor),
            CcAlgorithm::Cubic => {
                let cwnd = self.cwnd;
                let cubic = self.active().cubic.get_or_insert_with(Cubic::default);
                cubic.on_congestion(cwnd, smss);
                ((f64::from(flight_size) * CUBIC_BETA) as u32).max(floor)
            }
        }
    }
}

/// RFC 9438 section 5.1: C = 0.4 (segments per second cubed).
const CUBIC_C: f64 = 0.4;
/// RFC 9438 section 4.6: beta_cubic = 0.7.
const CUBIC_BETA: f64 = 0.7;

/// CUBIC's curve (RFC 9438 section 4), in segments and seconds.
#[derive(Clone, Debug, Default, PartialEq)]
struct Cubic {
    /// W_max: the window just before the last reduction.
    w_max: f64,
    /// The previous W_max, for fast convergence (section 4.7).
    w_last_max: f64,
    /// K: the time the curve takes to grow back to W_max.
    k: f64,
    /// When the current congestion-avoidance epoch began (virtual ns).
    epoch_start: Option<u64>,
    /// W_est: the window standard Reno would have now (section 4.3).
    w_est: f64,
    /// cwnd when the last congestion event set ssthresh (cwnd_prior).
    cwnd_prior: f64,
}

impl Cubic {
    /// A congestion event at `cwnd` octets (sections 4.6 and 4.7).
    fn on_congestion(&mut self, cwnd: u32, smss: u32) {
        let w = f64::from(cwnd) / f64::from(smss.max(1));
        self.w_max = if w < self.w_last_max { w * (1.0 + CUBIC_BETA) / 2.0 } else { w };
        self.w_last_max = w;
        self.cwnd_prior = w;
        self.epoch_start = None;
    }

    /// A new epoch at `cwnd` octets: K from W_max (section 4.2, equation 2).
    fn start_epoch(&mut self, cwnd: u32, smss: u32, now: u64) {
        let w = f64::from(cwnd) / f64::from(smss.max(1));
        self.epoch_start = Some(now);
        if self.w_max <= w {
            // No loss to return to (or past it): the curve starts at its plateau.
            self.w_max = w;
            self.k = 0.0;
        } else {
            self.k = ((self.w_max - w) / CUBIC_C).cbrt();
        }
        self.w_est = w;
        if self.cwnd_prior == 0.0 {
            self.cwnd_prior = w;
        }
    }

    /// cwnd after `acked` octets were acknowledged in congestion avoidance
    /// (sections 4.2 to 4.5).
    fn on_ack(&mut self, cwnd: u32, acked: u32, smss: u32, now: u64, srtt_ns: Option<u64>) -> u32 {
        let smss_f = f64::from(smss.max(1));
        if self.epoch_start.is_none() {
            self.start_epoch(cwnd, smss, now);
        }
        let start = self.epoch_start.unwrap_or(now);
        let w = f64::from(cwnd) / smss_f;
        let t = now.saturating_sub(start) as f64 / 1e9;
        let rtt = srtt_ns.unwrap_or(0) as f64 / 1e9;
        let w_cubic = |t: f64| CUBIC_C * (t - self.k).powi(3) + self.w_max;
        // Section 4.3: the Reno-friendly estimate, alpha_cubic = 3(1-beta)/(1+beta)
        // until it reaches cwnd_prior, then 1.
        let alpha = if self.w_est >= self.cwnd_prior { 1.0 } else { 3.0 * (1.0 - CUBIC_BETA) / (1.0 + CUBIC_BETA) };
        self.w_est += alpha * (f64::from(acked) / smss_f) / w.max(1.0);
        let next = if w_cubic(t) < self.w_est {
            // Section 4.3: the Reno-friendly region.
            self.w_est.max(w)
        } else {
            // Sections 4.4 and 4.5: grow towards W_cubic(t + RTT), at most 1.5 cwnd.
            let target = w_cubic(t + rtt).clamp(w, 1.5 * w);
            w + (target - w) / w.max(1.0) * (f64::from(acked) / smss_f)
        };
        let octets = (next * smss_f).min(f64::from(u32::MAX / 2));
        (octets as u32).max(cwnd)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMSS: u32 = 1000;

    #[test]
    fn slow_start_grows_by_what_is_acknowledged_up_to_two_segments_per_ack() {
        let mut cc = Congestion::new(InitialWindow::Segments(2).octets(SMSS));
        cc.on_ack(CcAlgorithm::NewReno, SMSS, SMSS, 0, None);
        assert_eq!(cc.cwnd, 3 * SMSS);
        // A stretch ACK of five segments counts as two (RFC 3465's L).
        cc.on_ack(CcAlgorithm::NewReno, 5 * SMSS, SMSS, 0, None);
        assert_eq!(cc.cwnd, 5 * SMSS);
        assert_eq!(cc.phase(false), CcPhase::SlowStart);
    }

    #[test]
    fn congestion_avoidance_adds_one_segment_per_window_acknowledged() {
        let mut cc = Congestion::new(10 * SMSS);
        cc.ssthresh = 10 * SMSS;
        assert_eq!(cc.phase(false), CcPhase::CongestionAvoidance);
        for _ in 0..9 {
            cc.on_ack(CcAlgorithm::Reno, SMSS, SMSS, 0, None);
        }
        assert_eq!(cc.cwnd, 10 * SMSS, "nine of ten segments acknowledged: no growth yet");
        cc.on_ack(CcAlgorithm::Reno, SMSS, SMSS, 0, None);
        assert_eq!(cc.cwnd, 11 * SMSS);
    }

    #[test]
    fn loss_halves_the_flight_and_recovery_inflates_then_deflates() {
        let mut cc = Congestion::new(20 * SMSS);
        cc.on_fast_retransmit(CcAlgorithm::NewReno, 20 * SMSS, SMSS);
        assert_eq!((cc.ssthresh, cc.cwnd), (10 * SMSS, 13 * SMSS));
        cc.on_recovery_dup_ack(SMSS);
        assert_eq!(cc.cwnd, 14 * SMSS);
        cc.on_partial_ack(3 * SMSS, SMSS);
        assert_eq!(cc.cwnd, 12 * SMSS);
        cc.on_recovery_exit(CcAlgorithm::NewReno, 4 * SMSS, SMSS, 0);
        assert_eq!(cc.cwnd, 5 * SMSS, "min(ssthresh, FlightSize + SMSS)");
        let mut reno = Congestion::new(20 * SMSS);
        reno.on_fast_retransmit(CcAlgorithm::Reno, 20 * SMSS, SMSS);
        reno.on_recovery_exit(CcAlgorithm::Reno, 4 * SMSS, SMSS, 0);
        assert_eq!(reno.cwnd, 10 * SMSS, "Reno deflates to ssthresh");
        // The floor: never below two segments.
        cc.on_fast_retransmit(CcAlgorithm::NewReno, SMSS, SMSS);
        assert_eq!(cc.ssthresh, 2 * SMSS);
    }

    #[test]
    fn a_timeout_collapses_cwnd_and_holds_ssthresh_on_a_second_timeout() {
        let mut cc = Congestion::new(16 * SMSS);
        cc.on_rto(CcAlgorithm::NewReno, 16 * SMSS, SMSS, true, true);
        assert_eq!((cc.cwnd, cc.ssthresh), (SMSS, 8 * SMSS));
        cc.on_rto(CcAlgorithm::NewReno, 16 * SMSS, SMSS, false, true);
        assert_eq!((cc.cwnd, cc.ssthresh), (SMSS, 8 * SMSS));
        let mut syn_lost = Congestion::new(4 * SMSS);
        syn_lost.on_rto(CcAlgorithm::NewReno, 1, SMSS, true, false);
        assert_eq!((syn_lost.cwnd, syn_lost.ssthresh), (SMSS, SSTHRESH_INFINITE));
    }

    #[test]
    fn the_initial_window_follows_rfc5681_by_smss_or_counts_segments() {
        assert_eq!(InitialWindow::Rfc5681.octets(1460), 4380, "3 segments of 1460");
        assert_eq!(InitialWindow::Rfc5681.octets(536), 2144, "4 segments of 536");
        assert_eq!(InitialWindow::Rfc5681.octets(4000), 8000, "2 segments above 2190");
        assert_eq!(InitialWindow::Segments(10).octets(1460), 14_600);
        let parsed: InitialWindow = serde_json::from_str("10").unwrap();
        assert_eq!(parsed, InitialWindow::Segments(10));
        assert_eq!(serde_json::from_str::<InitialWindow>("\"rfc5681\"").unwrap(), InitialWindow::Rfc5681);
        for bad in ["0", "1001", "\"iw10\"", "-1", "2.5"] {
            let err = serde_json::from_str::<InitialWindow>(bad).expect_err(bad).to_string();
            assert!(err.contains("initial_window"), "{bad}: {err}");
        }
    }

    #[test]
    fn cubic_reduces_by_beta_and_regrows_concave_then_convex_around_w_max() {
        let mut cc = Congestion::new(100 * SMSS);
        cc.on_fast_retransmit(CcAlgorithm::Cubic, 100 * SMSS, SMSS);
        assert_eq!(cc.ssthresh, 70 * SMSS);
        cc.on_recovery_exit(CcAlgorithm::Cubic, 70 * SMSS, SMSS, 0);
        assert_eq!(cc.cwnd, 70 * SMSS);
        // K = cbrt(30 / 0.4) = 4.2 s: one ACK per 10 ms at a 100 ms RTT.
        let rtt = 100_000_000;
        let mut samples = Vec::new();
        for i in 1..=1000u64 {
            let acked = cc.cwnd / 10;
            cc.on_ack(CcAlgorithm::Cubic, acked, SMSS, i * 10_000_000, Some(rtt));
            if i % 100 == 0 {
                samples.push(cc.cwnd / SMSS);
            }
        }
        let at = |s: usize| samples[s - 1];
        assert!(at(1) > 70 && at(1) < 90, "concave: fast at first ({samples:?})");
        assert!((95..=101).contains(&at(4)), "plateau near W_max = 100 around K ({samples:?})");
        assert!(at(10) > 120, "convex: probing beyond W_max ({samples:?})");
        assert!(samples.windows(2).all(|w| w[0] <= w[1]), "never shrinks on an ACK ({samples:?})");
    }

    #[test]
    fn algorithm_names_are_the_profile_spellings() {
        for (algo, name) in
            [(CcAlgorithm::Reno, "reno"), (CcAlgorithm::NewReno, "newreno"), (CcAlgorithm::Cubic, "cubic")]
        {
            assert_eq!(serde_json::to_string(&algo).unwrap(), format!("\"{name}\""));
        }
        assert!(serde_json::from_str::<CcAlgorithm>("\"bbr\"").is_err());
    }
}
