//! Lab variants and tunables: plain data read at the few decision points they
//! change, never a fork of the state machine.
//!
//! A session has one profile; a listener or a connection may override single
//! settings. Every field has a default so that a JSON profile may name only
//! what it changes.

use serde::{Deserialize, Serialize};

use super::cc::{CcAlgorithm, InitialWindow};

/// How a connection is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Handshake {
    /// RFC 9293's three-way handshake.
    #[default]
    ThreeWay,
    /// A listener goes straight to ESTABLISHED on a SYN, and an initiator that
    /// receives a SYN+ACK it never asked for has no third message with which to
    /// refuse it: the protocol the seed text warns about.
    TwoWay,
}

/// An on/off switch, spelled `"on"` / `"off"` in JSON.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Switch {
    /// Enabled.
    On,
    /// Disabled.
    Off,
}

impl Switch {
    /// `true` for [`Switch::On`].
    pub fn is_on(self) -> bool {
        self == Switch::On
    }
}

/// How initial sequence numbers are chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Isn {
    /// Drawn from the world's seeded RNG (reproducible for a given seed).
    #[default]
    Random,
    /// Always this number, so that a lab can reproduce the seed text's figures.
    Fixed(u32),
}

impl Serialize for Isn {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Isn::Random => s.serialize_str("random"),
            Isn::Fixed(n) => s.serialize_u32(*n),
        }
    }
}

impl<'de> Deserialize<'de> for Isn {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u32),
            Text(String),
        }
        match Raw::deserialize(d)
            .map_err(|_| serde::de::Error::custom("isn: expected \"random\" or an integer 0..=4294967295"))?
        {
            Raw::Number(n) => Ok(Isn::Fixed(n)),
            Raw::Text(t) if t == "random" => Ok(Isn::Random),
            Raw::Text(t) => t
                .parse()
                .map(Isn::Fixed)
                .map_err(|_| serde::de::Error::custom(format!("isn: expected \"random\" or an integer, got {t:?}"))),
        }
    }
}

/// The window scale shift an endpoint offers (RFC 7323 section 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum WindowScale {
    /// No Window Scale option: windows stay within 65535 octets.
    #[default]
    Off,
    /// The smallest shift that lets the receive buffer be advertised whole.
    Auto,
    /// This shift, 0 to 14.
    Shift(u8),
}

/// The largest shift RFC 7323 section 2.3 allows.
pub const MAX_WINDOW_SHIFT: u8 = 14;

impl WindowScale {
    /// The shift to offer for a receive buffer of `buffer` octets, if any.
    pub fn shift_for(self, buffer: u32) -> Option<u8> {
        match self {
            WindowScale::Off => None,
            WindowScale::Shift(s) => Some(s.min(MAX_WINDOW_SHIFT)),
            WindowScale::Auto => {
                let mut s = 0;
                while s < MAX_WINDOW_SHIFT && (65_535u64 << s) < u64::from(buffer) {
                    s += 1;
                }
                Some(s)
            }
        }
    }
}

impl Serialize for WindowScale {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            WindowScale::Off => s.serialize_str("off"),
            WindowScale::Auto => s.serialize_str("auto"),
            WindowScale::Shift(n) => s.serialize_u8(*n),
        }
    }
}

impl<'de> Deserialize<'de> for WindowScale {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        let bad = || serde::de::Error::custom("window_scale: expected \"off\", \"auto\" or a shift 0..=14");
        match Raw::deserialize(d).map_err(|_| bad())? {
            Raw::Number(n) if n <= u64::from(MAX_WINDOW_SHIFT) => Ok(WindowScale::Shift(n as u8)),
            Raw::Text(t) if t == "off" => Ok(WindowScale::Off),
            Raw::Text(t) if t == "auto" => Ok(WindowScale::Auto),
            _ => Err(bad()),
        }
    }
}

/// The settings of one TCP endpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Profile {
    /// Three-way (RFC 9293) or two-way (the broken variant) handshake.
    pub handshake: Handshake,
    /// Whether the active closer waits 2*MSL in TIME_WAIT or goes straight to CLOSED.
    pub time_wait: Switch,
    /// Maximum segment lifetime, in milliseconds (TIME_WAIT lasts twice this).
    pub msl_ms: u64,
    /// Initial sequence number choice.
    pub isn: Isn,
    /// The MSS we announce and the largest segment we send.
    pub mss: u16,
    /// Receive buffer in octets: RCV.WND is what is free of it (at most 65535
    /// is advertised unless window scaling is negotiated; up to 1 GiB).
    pub window: u32,
    /// Send buffer in octets: how much a SEND may queue.
    pub send_buffer: u32,
    /// The RTO before any RTT sample (RFC 6298 section 2.1), in milliseconds.
    pub rto_initial_ms: u64,
    /// The RTO floor (RFC 6298 section 2.4 says 1 s; Linux uses 200 ms).
    pub rto_min_ms: u64,
    /// The RTO ceiling after backoff (RFC 6298 section 2.5: at least 60 s).
    pub rto_max_ms: u64,
    /// Added to every RTO computed after the initial one, and not doubled by
    /// backoff (FreeBSD's `net.inet.tcp.rexmit_slop`, 200 ms, which
    /// TCPT_RANGESET() adds for the peer's delayed ACK); 0 in RFC 6298.
    pub rto_slop_ms: u64,
    /// Retransmissions of one segment before the connection times out (R2 of RFC 9293 section 3.8.3).
    pub max_retries: u32,
    /// A connection not established this long after its SYN fails with
    /// ETIMEDOUT whatever its retransmissions (BSD's `net.inet.tcp.keepinit`,
    /// 75 s, the keepalive timer in the SYN states); 0: only `max_retries` limits it.
    pub keepinit_ms: u64,
    /// SYN retransmissions from the third on carry no Window Scale,
    /// Timestamps or SACK-permitted, for middleboxes that drop unknown
    /// options (FreeBSD's `net.inet.tcp.rexmit_drop_options`, off by default).
    pub syn_rexmit_drop_options: Switch,
    /// RFC 5961 mitigations in synchronized states: challenge ACKs for SYNs and
    /// for in-window RSTs not exactly at RCV.NXT (`off`: RFC 793 resets).
    pub rfc5961: Switch,
    /// RFC 5961 section 3 alone (RST in the window but not at RCV.NXT: challenge
    /// ACK); unset follows `rfc5961`. FreeBSD's `net.inet.tcp.insecure_rst`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rfc5961_rst: Option<Switch>,
    /// RFC 5961 section 4 alone (SYN in a synchronized state: challenge ACK);
    /// unset follows `rfc5961`. FreeBSD's `net.inet.tcp.insecure_syn`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rfc5961_syn: Option<Switch>,
    /// Drop a SYN that also carries FIN at a listening port (FreeBSD's
    /// `net.inet.tcp.drop_synfin`); off: RFC 9293 accepts it like any SYN.
    pub drop_synfin: Switch,
    /// With RFC 793 SYN handling (`rfc5961_syn` off), the reset answering an
    /// in-window SYN also acknowledges RCV.NXT (`<SEQ=SND.NXT><ACK=RCV.NXT><CTL=RST,ACK>`,
    /// as BSD sends it and the FreeBSD suite's `STANDARD` branch expects);
    /// off: `<SEQ=SND.NXT><CTL=RST>`.
    pub syn_reset_acks: Switch,
    /// Every ACK sent while our FIN is unacknowledged (except challenge ACKs)
    /// repeats the FIN, as BSD's `tcp_output` does in FIN_WAIT_1, CLOSING and
    /// LAST_ACK; off: a plain ACK from SND.NXT (RFC 9293).
    pub ack_repeats_fin: Switch,
    /// RCV.WND for the acceptability test is the free receive buffer rounded
    /// up to a multiple of the MSS, even beyond the 65535 an unscaled window
    /// field advertises (BSD's `tcp_mss` and `rcv_wnd = max(sbspace, rcv_adv -
    /// rcv_nxt)`), once the connection has a TCB of its own (not in a passive
    /// SYN-RECEIVED, BSD's syncache); off: RCV.WND is what was advertised (RFC 9293).
    pub rcv_window_from_buffer: Switch,
    /// Challenge ACKs one connection may send per second (RFC 5961 section 7); 0: no limit.
    pub challenge_ack_limit: u32,
    /// A SYN+ACK at a listening port is dropped unanswered, as FreeBSD's
    /// `tcp_input` does ("SYN|ACK invalid, segment rejected"); off: RFC 9293
    /// section 3.10.7.2 answers any ACK-bearing segment in LISTEN with a reset.
    pub listen_drops_syn_ack: Switch,
    /// TIME-WAIT as BSD's `tcp_twcheck` handles it: a segment with neither
    /// ACK, SYN nor RST is dropped before any other check, and every segment
    /// that gets past the checks but an exact duplicate ACK (no text, SEQ =
    /// RCV.NXT, ACK = SND.NXT) is acknowledged; off: RFC 9293, where the
    /// only thing TIME-WAIT answers is the peer's FIN again.
    pub time_wait_acks_all: Switch,
    /// A segment that lies wholly below RCV.NXT (an old duplicate) still has
    /// its ACK processed, as BSD's tcp_input() trims it ("todrop") and goes
    /// on; off: RFC 9293 acknowledges and drops it, ACK field unread.
    pub old_segment_acks: Switch,
    /// The congestion control algorithm (RFC 9293 section 3.8.2's MUST-19):
    /// `newreno` (RFC 5681 with RFC 6582), `reno` (RFC 5681 alone) or `cubic` (RFC 9438).
    pub cc: CcAlgorithm,
    /// The initial congestion window: `"rfc5681"` (section 3.1's rule by SMSS)
    /// or a number of segments (RFC 6928's 10).
    pub initial_window: InitialWindow,
    /// RFC 3042 limited transmit: the first and second duplicate ACK each let
    /// one new segment out, so that a small window still gets its third.
    pub limited_transmit: Switch,
    /// RFC 2018 selective acknowledgement: SACK-permitted offered in the SYN
    /// exchange, and once both ends offered it, SACK blocks (with RFC 2883's
    /// D-SACK) on every ACK while data is held out of order. FreeBSD's
    /// `net.inet.tcp.sack.enable`.
    pub sack: Switch,
    /// Delayed ACKs (RFC 9293 section 3.8.6.3, RFC 1122 4.2.3.2, RFC 5681
    /// section 4.2): an in-order segment is acknowledged by a timer or by the
    /// next segment, whichever comes first; out-of-order segments, segments
    /// that fill a hole and FINs are acknowledged at once. FreeBSD's
    /// `net.inet.tcp.delayed_ack`; off: every segment is acknowledged at once.
    pub delayed_ack: Switch,
    /// The delayed-ACK timer, in milliseconds (RFC 9293 MUST-40: under 0.5 s).
    /// FreeBSD's `net.inet.tcp.delacktime` (TCPTV_DELACK, 40 ms).
    pub delayed_ack_ms: u64,
    /// RFC 7323 section 2: the Window Scale shift offered in the SYN (`"off"`,
    /// `"auto"` for the receive buffer, or 0..=14); used once both ends offered one.
    pub window_scale: WindowScale,
    /// RFC 7323 sections 3-5: Timestamps offered in the SYN; once both ends
    /// offered them every segment carries TSval and TSecr, RTTM feeds the RTO
    /// estimator and PAWS drops old duplicates.
    pub timestamps: Switch,
}

impl Default for Profile {
    fn default() -> Self {
        Profile {
            handshake: Handshake::ThreeWay,
            time_wait: Switch::On,
            msl_ms: 30_000,
            isn: Isn::Random,
            mss: 1460,
            window: 65_535,
            send_buffer: 4 * 1024 * 1024,
            rto_initial_ms: 1_000,
            rto_min_ms: 1_000,
            rto_max_ms: 60_000,
            rto_slop_ms: 0,
            max_retries: 8,
            keepinit_ms: 0,
            syn_rexmit_drop_options: Switch::Off,
            rfc5961: Switch::On,
            rfc5961_rst: None,
            rfc5961_syn: None,
            drop_synfin: Switch::Off,
            syn_reset_acks: Switch::On,
            ack_repeats_fin: Switch::Off,
            rcv_window_from_buffer: Switch::Off,
            challenge_ack_limit: 10,
            listen_drops_syn_ack: Switch::Off,
            time_wait_acks_all: Switch::Off,
            old_segment_acks: Switch::Off,
            cc: CcAlgorithm::NewReno,
            initial_window: InitialWindow::Rfc5681,
            limited_transmit: Switch::On,
            sack: Switch::Off,
            delayed_ack: Switch::Off,
            delayed_ack_ms: 200,
            window_scale: WindowScale::Off,
            timestamps: Switch::Off,
        }
    }
}

/// A profile value that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("profile.{field}: {message}")]
pub struct ProfileError {
    /// The offending field.
    pub field: &'static str,
    /// What is wrong with it.
    pub message: String,
}

impl Profile {
    /// Checks that every setting is usable, naming the first field that is not.
    ///
    /// # Errors
    /// A [`ProfileError`] naming the field.
    pub fn validate(&self) -> Result<(), ProfileError> {
        let bad = |field, message: &str| Err(ProfileError { field, message: message.to_string() });
        if self.mss < 64 {
            return bad("mss", "must be at least 64 octets");
        }
        if self.window == 0 || self.window > 1 << 30 {
            return bad("window", "must be between 1 and 1073741824 octets");
        }
        if self.send_buffer == 0 || self.send_buffer > 1 << 30 {
            return bad("send_buffer", "must be between 1 and 1073741824 octets");
        }
        if self.msl_ms > 86_400_000 {
            return bad("msl_ms", "must be at most one day");
        }
        if self.rto_initial_ms == 0 || self.rto_initial_ms > 3_600_000 {
            return bad("rto_initial_ms", "must be between 1 ms and one hour");
        }
        if self.rto_min_ms == 0 || self.rto_min_ms > self.rto_max_ms {
            return bad("rto_min_ms", "must be at least 1 ms and at most rto_max_ms");
        }
        if self.rto_max_ms > 3_600_000 {
            return bad("rto_max_ms", "must be at most one hour");
        }
        if self.keepinit_ms > 864_000_000 {
            return bad("keepinit_ms", "must be at most 10 days");
        }
        if self.rto_slop_ms > 60_000 {
            return bad("rto_slop_ms", "must be at most 60000 ms");
        }
        if self.max_retries > 64 {
            return bad("max_retries", "must be at most 64");
        }
        if self.delayed_ack_ms == 0 || self.delayed_ack_ms > 500 {
            return bad("delayed_ack_ms", "must be between 1 and 500 ms (RFC 9293 MUST-40)");
        }
        if let InitialWindow::Segments(n) = self.initial_window {
            if n == 0 || n > super::cc::MAX_INITIAL_WINDOW {
                return bad("initial_window", "must be \"rfc5681\" or between 1 and 1000 segments");
            }
        }
        Ok(())
    }

    /// Whether an in-window RST not exactly at RCV.NXT gets a challenge ACK (RFC 5961 section 3.2).
    pub fn rst_challenge(&self) -> bool {
        self.rfc5961_rst.unwrap_or(self.rfc5961).is_on()
    }

    /// Whether a SYN in a synchronized state gets a challenge ACK (RFC 5961 section 4.2).
    pub fn syn_challenge(&self) -> bool {
        self.rfc5961_syn.unwrap_or(self.rfc5961).is_on()
    }

    /// The delayed-ACK timeout in nanoseconds, or `None` when every segment is acknowledged at once.
    pub fn delayed_ack_ns(&self) -> Option<u64> {
        self.delayed_ack.is_on().then(|| self.delayed_ack_ms * 1_000_000)
    }

    /// 2*MSL in nanoseconds.
    pub fn time_wait_ns(&self) -> u64 {
        self.msl_ms.saturating_mul(2_000_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_json_fills_defaults() {
        let p: Profile = serde_json::from_str(r#"{"handshake":"two_way","isn":300,"time_wait":"off"}"#).unwrap();
        assert_eq!(p.handshake, Handshake::TwoWay);
        assert_eq!(p.isn, Isn::Fixed(300));
        assert_eq!(p.time_wait, Switch::Off);
        assert_eq!(p.mss, 1460);
        let p: Profile = serde_json::from_str(r#"{"isn":"random"}"#).unwrap();
        assert_eq!(p.isn, Isn::Random);
    }

    #[test]
    fn bad_values_name_their_field() {
        assert!(serde_json::from_str::<Profile>(r#"{"isn":"soon"}"#).is_err());
        assert!(serde_json::from_str::<Profile>(r#"{"bogus":1}"#).is_err());
        let p = Profile { mss: 1, ..Profile::default() };
        assert_eq!(p.validate().unwrap_err().field, "mss");
        assert!(Profile::default().validate().is_ok());
    }
}
