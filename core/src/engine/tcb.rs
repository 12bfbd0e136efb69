//! The transmission control block of one connection endpoint and its state
//! machine: RFC 9293 section 3.10 (event processing), with RFC 6298 timers and
//! the RFC 5961 mitigations as a profile switch.
//!
//! The contract is smoltcp's and quinn-proto's: a TCB never reads a clock and
//! never does I/O. The owner calls
//! - [`Tcb::process`] when a segment for this endpoint arrives,
//! - the user calls ([`Tcb::send`], [`Tcb::recv`], [`Tcb::close`], [`Tcb::abort`]),
//! - [`Tcb::on_timer`] once `now` has reached [`Tcb::poll_at`],
//! - and after any of those, [`Tcb::dispatch`], which emits what is due to be sent.
//!
//! Everything the TCB does is pushed onto an [`Output`] list in order.

use std::net::Ipv4Addr;
use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;

use super::cc::{CcPhase, Congestion, SSTHRESH_INFINITE};
use super::output::{Cause, ConnError, Output, SocketId, TimerKind, UserCall};
use super::profile::{Handshake, MAX_WINDOW_SHIFT, Profile};
use super::reass::{MAX_RANGES, Reassembly};
use super::recvbuf::RecvBuffer;
use super::rtt::RttEstimator;
use super::sack::SackReport;
use super::segment::{Flags, Segment, TcpOption};
use super::sendbuf::SendBuffer;
use super::seq::SeqNumber;
use super::state::State;

/// The MSS assumed for a peer that announces none (RFC 9293 section 3.7.1).
pub const DEFAULT_PEER_MSS: u16 = 536;

/// The largest window the 16-bit field can advertise without window scaling.
const MAX_UNSCALED_WINDOW: u32 = 65_535;

/// SACK blocks that fit in one segment's 40 octets of options beside two
/// NOPs (RFC 2018 section 3).
const MAX_SACK_BLOCKS_SENT: usize = 4;

/// Lays options out as BSD's tcp_addoptions() does: NOPs before each
/// option to align it (Window Scale at an odd offset, SACK-permitted at an
/// even one, Timestamps and SACK two octets past a word), then an EOL and
/// zero octets (which packetdrill shows as more EOLs) to a 32-bit boundary.
fn bsd_layout(options: Vec<TcpOption>) -> Vec<TcpOption> {
    let mut out = Vec::with_capacity(options.len() + 4);
    let mut len = 0usize;
    for option in options {
        let aligned = |len: usize| match option {
            TcpOption::WindowScale { .. } => len % 2 == 1,
            TcpOption::SackPermitted => len != 0 && len % 2 == 0,
            TcpOption::Timestamps { .. } | TcpOption::Sack { .. } => len % 4 == 2,
            _ => true,
        };
        while !aligned(len) {
            out.push(TcpOption::Nop);
            len += 1;
        }
        len += option.wire_len();
        out.push(option);
    }
    if len % 4 != 0 {
        out.extend(std::iter::repeat_n(TcpOption::Eol, 4 - len % 4));
    }
    out
}

/// Why a user call was refused (RFC 9293 section 3.10's "error:" responses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UserError {
    /// The endpoint is CLOSED or was never opened.
    #[error("connection does not exist")]
    NotConnected,
    /// CLOSE was already called on this endpoint; it can no longer send.
    #[error("connection closing")]
    Closing,
    /// The connection failed; the call sees the same error a socket would.
    #[error("connection failed: {}", .0.errno())]
    Failed(ConnError),
    /// The send buffer has no room left.
    #[error("insufficient resources: the send buffer is full")]
    BufferFull,
}

/// Deadlines of the running timers, in virtual nanoseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Timers {
    /// Retransmission of the oldest unacknowledged segment.
    pub retransmit: Option<u64>,
    /// End of TIME_WAIT.
    pub time_wait: Option<u64>,
    /// Next zero-window probe.
    pub persist: Option<u64>,
    /// The delayed ACK of an in-order segment (RFC 9293 section 3.8.6.3).
    #[serde(default)]
    pub delayed_ack: Option<u64>,
    /// The next keepalive probe, or the end of the connection after the last one.
    #[serde(default)]
    pub keepalive: Option<u64>,
}

/// Keepalive for one connection (RFC 9293 section 3.8.4, RFC 1122
/// 4.2.3.6): after `idle_ms` without a segment from the peer, a probe (an
/// ACK for SND.UNA - 1, which any live peer answers), then one every
/// `interval_ms`; `count` unanswered probes and the connection fails with
/// ETIMEDOUT, `idle_ms + count * interval_ms` after the peer fell silent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Keepalive {
    /// Idle time before the first probe (RFC 1122 4.2.3.6: no less than two hours by default).
    pub idle_ms: u64,
    /// Time between probes (BSD's `net.inet.tcp.keepintvl`, 75 s).
    pub interval_ms: u64,
    /// Unanswered probes that end the connection.
    pub count: u32,
}

impl Default for Keepalive {
    /// Two hours, 75 seconds and 9 probes: RFC 1122's idle time, BSD's interval, Linux's count.
    fn default() -> Self {
        Keepalive { idle_ms: 7_200_000, interval_ms: 75_000, count: 9 }
    }
}

impl Keepalive {
    /// Checks the bounds: idle and interval 1 ms to 10 days, count 1 to 1000.
    ///
    /// # Errors
    /// The field and what is wrong with it.
    pub fn validate(&self) -> Result<(), (&'static str, &'static str)> {
        const TEN_DAYS_MS: u64 = 10 * 86_400_000;
        if self.idle_ms == 0 || self.idle_ms > TEN_DAYS_MS {
            return Err(("idle_ms", "must be between 1 ms and 10 days"));
        }
        if self.interval_ms == 0 || self.interval_ms > TEN_DAYS_MS {
            return Err(("interval_ms", "must be between 1 ms and 10 days"));
        }
        if self.count == 0 || self.count > 1000 {
            return Err(("count", "must be between 1 and 1000"));
        }
        Ok(())
    }
}

/// A running keepalive: the settings, when it next fires, and the probes
/// sent since the peer last spoke.
#[derive(Clone, Copy, Debug)]
struct KeepaliveState {
    settings: Keepalive,
    deadline: u64,
    probes: u32,
}

/// What only some connections need: RFC 7323's timestamp state and keepalive.
#[derive(Clone, Copy, Debug, Default)]
struct Extras {
    /// TS.Recent (RFC 7323 section 4.3): the TSval we echo, and PAWS's reference.
    ts_recent: u32,
    /// Last.ACK.sent: RCV.NXT as our last ACK carried it (RFC 7323 section 4.3).
    last_ack_sent: SeqNumber,
    /// Keepalive, when the connection asked for it.
    keepalive: Option<KeepaliveState>,
    /// When a connection still in a SYN state gives up (the profile's `keepinit_ms`).
    init_deadline: Option<u64>,
}

/// A deadline that never comes: the timer is not running.
const NEVER: u64 = u64::MAX;

/// The running timers as the TCB keeps them: a deadline each, [`NEVER`] when
/// stopped (half the size of three `Option<u64>`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Deadlines {
    retransmit: u64,
    time_wait: u64,
    persist: u64,
    delayed_ack: u64,
}

impl Default for Deadlines {
    fn default() -> Self {
        Deadlines { retransmit: NEVER, time_wait: NEVER, persist: NEVER, delayed_ack: NEVER }
    }
}

impl Deadlines {
    fn public(self) -> Timers {
        let running = |t: u64| (t != NEVER).then_some(t);
        Timers {
            retransmit: running(self.retransmit),
            time_wait: running(self.time_wait),
            persist: running(self.persist),
            delayed_ack: running(self.delayed_ack),
            keepalive: None,
        }
    }

    fn earliest(self) -> Option<u64> {
        let t = self.retransmit.min(self.time_wait).min(self.persist).min(self.delayed_ack);
        (t != NEVER).then_some(t)
    }
}

/// A snapshot of an endpoint for STATUS (RFC 9293 section 3.10.6) and the API.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct TcbStatus {
    /// Current state.
    pub state: State,
    /// Local port.
    pub local_port: u16,
    /// Remote address.
    pub remote_ip: Ipv4Addr,
    /// Remote port.
    pub remote_port: u16,
    /// Initial send sequence number.
    pub iss: u32,
    /// Initial receive sequence number (0 until a SYN arrived).
    pub irs: u32,
    /// Oldest unacknowledged sequence number.
    pub snd_una: u32,
    /// Next sequence number to be sent.
    pub snd_nxt: u32,
    /// The peer's advertised window.
    pub snd_wnd: u32,
    /// Next sequence number expected.
    pub rcv_nxt: u32,
    /// Our receive window.
    pub rcv_wnd: u32,
    /// The MSS used for sending (the peer's, capped by ours).
    pub snd_mss: u16,
    /// Octets queued for sending, sent or not, and not yet acknowledged.
    pub send_buffered: usize,
    /// Octets received in order and not yet read by the user.
    pub recv_buffered: usize,
    /// Octets received out of order and held for reassembly.
    pub out_of_order: usize,
    /// Running timers.
    pub timers: Timers,
    /// Current retransmission timeout, in nanoseconds.
    pub rto_ns: u64,
    /// Smoothed RTT, in nanoseconds, once measured.
    pub srtt_ns: Option<u64>,
    /// Consecutive retransmissions without progress.
    pub retries: u32,
    /// What a user call would report, if the connection failed.
    pub error: Option<ConnError>,
    /// The congestion window (RFC 5681 section 3.1), in octets.
    #[serde(default)]
    pub cwnd: u32,
    /// The slow start threshold, in octets; `null` while it is still
    /// "arbitrarily high" (no loss yet).
    #[serde(default)]
    pub ssthresh: Option<u32>,
    /// Octets sent and not yet acknowledged (RFC 5681's FlightSize).
    #[serde(default)]
    pub flight_size: u32,
    /// Slow start, congestion avoidance or fast recovery.
    #[serde(default)]
    pub cc_phase: CcPhase,
    /// Duplicate ACKs (RFC 5681 section 2) since SND.UNA last moved.
    #[serde(default)]
    pub dup_acks: u32,
    /// RFC 6582's `recover` while in fast recovery: the ACK that ends it.
    #[serde(default)]
    pub recovery_point: Option<u32>,
    /// The receive buffer's size, as SO_RCVBUF reports it: the profile's
    /// `window`, rounded up to a multiple of the MSS where the profile
    /// follows BSD (`rcv_window_from_buffer`; tcp_input.c's tcp_mss_update()).
    #[serde(default)]
    pub recv_buffer_size: u32,
    /// The send buffer's size, as SO_SNDBUF reports it: the profile's `send_buffer`.
    #[serde(default)]
    pub send_buffer_size: u32,
    /// Both ends offered SACK-permitted in the SYN exchange (RFC 2018 section 2).
    #[serde(default)]
    pub sack_permitted: bool,
    /// Nagle's algorithm is off (TCP_NODELAY).
    #[serde(default)]
    pub nodelay: bool,
    /// The peer's window scale shift, once both ends offered Window Scale (RFC 7323 section 2).
    #[serde(default)]
    pub snd_wscale: Option<u8>,
    /// Our window scale shift, once both ends offered Window Scale.
    #[serde(default)]
    pub rcv_wscale: Option<u8>,
    /// Both ends offered Timestamps (RFC 7323 section 3).
    #[serde(default)]
    pub timestamps: bool,
    /// TS.Recent, the TSval echoed and checked by PAWS, while timestamps are on.
    #[serde(default)]
    pub ts_recent: Option<u32>,
    /// The SACK blocks this end reports to its peer, the first one the most
    /// recent (RFC 2018 section 4), a D-SACK block first until it was sent
    /// once (RFC 2883).
    #[serde(default)]
    pub sack_blocks: Vec<SeqRange>,
}

/// A range of sequence space, `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct SeqRange {
    /// The first octet.
    pub start: u32,
    /// One past the last octet.
    pub end: u32,
}

/// What an endpoint holds beyond its in-order data, allocated only while
/// there is some, so that an idle connection pays one pointer for it:
/// segments ahead of RCV.NXT and the SACK blocks it reports about them.
#[derive(Debug, Clone, Default)]
struct Held {
    queue: Reassembly,
    sacks: SackReport,
}

impl Held {
    fn is_empty(&self) -> bool {
        self.queue.is_empty() && self.sacks.is_empty()
    }
}

/// One endpoint's TCB. Field names follow RFC 9293 section 3.3.1.
#[derive(Debug, Clone)]
pub struct Tcb {
    id: SocketId,
    state: State,
    local_port: u16,
    remote_ip: Ipv4Addr,
    remote_port: u16,
    profile: Arc<Profile>,
    /// Created by a listener (a passive OPEN), which changes RST and SYN
    /// handling in SYN_RECEIVED.
    passive: bool,

    iss: SeqNumber,
    snd_una: SeqNumber,
    /// The highest sequence number sent so far plus one (never moves back).
    snd_nxt: SeqNumber,
    /// Where the send path continues: below `snd_nxt` while retransmitting
    /// after a timeout (go-back-N), equal to it otherwise.
    snd_ptr: SeqNumber,
    snd_wnd: u32,
    snd_wl1: SeqNumber,
    snd_wl2: SeqNumber,
    /// Largest window the peer ever advertised (RFC 5961 section 5's MAX.SND.WND).
    max_snd_wnd: u32,
    snd_mss: u16,

    irs: SeqNumber,
    rcv_nxt: SeqNumber,
    /// The window we last advertised, to decide when a window update is worth sending.
    last_adv_wnd: u32,

    /// Data from SND.UNA (or ISS+1 while the SYN is unacknowledged) onwards.
    tx: SendBuffer,
    /// In-order data not yet read by the user.
    rx: RecvBuffer,
    /// Out-of-order segments and the SACK blocks reported about them;
    /// absent while there is neither (almost always).
    held: Option<Box<Held>>,
    /// Both ends offered SACK-permitted (RFC 2018 section 2).
    sack_permitted: bool,
    /// Nagle's algorithm is off for this connection (TCP_NODELAY): a short
    /// segment that empties the send queue leaves at once.
    nodelay: bool,
    /// Both ends offered Window Scale (RFC 7323 section 2.2): the shifts
    /// apply to every segment after the SYNs.
    wscale_ok: bool,
    /// The peer's shift: its window is SEG.WND << snd_wscale.
    snd_wscale: u8,
    /// Our shift: the window field we send is RCV.WND >> rcv_wscale.
    rcv_wscale: u8,
    /// Both ends offered Timestamps (RFC 7323 section 3.2).
    ts_ok: bool,
    /// Timestamp and keepalive state, allocated when either is in use, so
    /// that a connection with neither pays one pointer.
    extras: Option<Box<Extras>>,
    /// Where the peer's FIN sits, once seen (it is processed when RCV.NXT reaches it).
    peer_fin: Option<SeqNumber>,
    /// The user called CLOSE: a FIN follows the queued data.
    fin_queued: bool,
    /// The user closed the socket itself, not only its sending side: no
    /// one will read what arrives, so new data is answered with a reset
    /// (RFC 9293 section 3.10.4, RFC 1122 4.2.2.13; BSD's SS_NOFDREF).
    app_closed: bool,
    /// The sequence number our FIN occupies, once sent.
    fin_seq: Option<SeqNumber>,
    /// An ACK is owed to the peer.
    ack_pending: bool,
    /// The persist timer fired: send one octet beyond a zero window.
    probe_due: bool,
    /// Fast retransmit (RFC 5681 section 3.2) or a partial ACK in recovery
    /// (RFC 6582 section 3.2): resend the segment at SND.UNA now.
    rexmit_due: bool,
    /// In loss recovery after a fast retransmit, until SND.UNA reaches `recover`.
    in_recovery: bool,
    /// Duplicate ACKs (RFC 5681 section 2's definition) since SND.UNA last
    /// moved: segments with data in between do not restart the count (section 3.2).
    dup_acks: u8,
    /// RFC 6582's `recover`: SND.NXT when recovery began or the RTO last fired.
    recover: SeqNumber,
    /// cwnd and ssthresh (RFC 5681), and what the profile's algorithm keeps between ACKs.
    cc: Congestion,

    timers: Deadlines,
    rtt: RttEstimator,
    /// The segment being timed: the sequence number that acknowledges it, and when it left.
    rtt_probe: Option<(SeqNumber, u64)>,
    retries: u32,
    persist_backoff: u8,
    error: Option<ConnError>,
    /// The ACK owed is a challenge ACK and nothing else (it never repeats a FIN).
    challenge_only: bool,
    /// Start of the current one-second challenge-ACK window, and ACKs sent in it (RFC 5961 section 7).
    challenge_window: (u64, u32),
}

/// The parts of a segment that survive trimming it to the receive window.
struct Text {
    seq: SeqNumber,
    data: Bytes,
    fin: bool,
}

impl Tcb {
    fn blank(
        id: SocketId,
        local_port: u16,
        remote_ip: Ipv4Addr,
        remote_port: u16,
        profile: Arc<Profile>,
        iss: u32,
    ) -> Tcb {
        let iss = SeqNumber(iss);
        let ms = 1_000_000;
        let rtt = RttEstimator::new(profile.rto_initial_ms * ms, profile.rto_min_ms * ms, profile.rto_max_ms * ms);
        Tcb {
            id,
            state: State::Closed,
            local_port,
            remote_ip,
            remote_port,
            passive: false,
            iss,
            snd_una: iss,
            snd_nxt: iss,
            snd_ptr: iss,
            snd_wnd: 0,
            snd_wl1: SeqNumber(0),
            snd_wl2: iss,
            max_snd_wnd: 0,
            snd_mss: DEFAULT_PEER_MSS.min(profile.mss),
            irs: SeqNumber(0),
            rcv_nxt: SeqNumber(0),
            last_adv_wnd: 0,
            tx: SendBuffer::default(),
            rx: RecvBuffer::default(),
            held: None,
            sack_permitted: false,
            nodelay: false,
            wscale_ok: false,
            snd_wscale: 0,
            rcv_wscale: 0,
            ts_ok: false,
            extras: None,
            peer_fin: None,
            fin_queued: false,
            app_closed: false,
            fin_seq: None,
            ack_pending: false,
            probe_due: false,
            rexmit_due: false,
            in_recovery: false,
            dup_acks: 0,
            recover: iss,
            cc: Congestion::new(profile.initial_window.octets(u32::from(DEFAULT_PEER_MSS.min(profile.mss)))),
            timers: Deadlines::default(),
            rtt,
            rtt_probe: None,
            retries: 0,
            persist_backoff: 0,
            error: None,
            challenge_only: false,
            challenge_window: (0, 0),
            profile,
        }
    }

    /// Active OPEN (RFC 9293 section 3.10.1): CLOSED to SYN_SENT; the SYN
    /// leaves at the next [`Tcb::dispatch`].
    pub fn open_active(
        id: SocketId,
        local_port: u16,
        remote_ip: Ipv4Addr,
        remote_port: u16,
        profile: Arc<Profile>,
        iss: u32,
        out: &mut Vec<Output>,
    ) -> Tcb {
        let mut tcb = Tcb::blank(id, local_port, remote_ip, remote_port, profile, iss);
        tcb.set_state(State::SynSent, Cause::User { call: UserCall::Open }, "3.10.1", out);
        tcb
    }

    /// A listener's answer to a SYN (RFC 9293 section 3.10.7.2): a new endpoint
    /// in SYN_RECEIVED that sends SYN+ACK, or with the two-way variant one that
    /// sends SYN+ACK and is ESTABLISHED at once.
    #[allow(clippy::too_many_arguments)]
    pub fn open_passive(
        id: SocketId,
        local_port: u16,
        remote_ip: Ipv4Addr,
        syn: &Segment,
        profile: Arc<Profile>,
        iss: u32,
        now: u64,
        out: &mut Vec<Output>,
    ) -> Tcb {
        let mut tcb = Tcb::blank(id, local_port, remote_ip, syn.src_port, profile, iss);
        tcb.passive = true;
        tcb.state = State::Listen;
        tcb.irs = syn.seq;
        tcb.rcv_nxt = syn.seq + 1;
        tcb.snd_wnd = u32::from(syn.window);
        tcb.max_snd_wnd = tcb.snd_wnd;
        tcb.snd_wl1 = syn.seq;
        tcb.snd_mss = syn.mss().unwrap_or(DEFAULT_PEER_MSS).min(tcb.profile.mss);
        tcb.sack_permitted = tcb.profile.sack.is_on() && syn.sack_permitted();
        tcb.negotiate_rfc7323(syn);
        tcb.arm_keepinit(now);
        tcb.cc.restart(tcb.initial_window());
        if !syn.payload.is_empty() {
            // Text on a SYN is queued until the connection is established (3.10.7.2).
            tcb.hold_out_of_order(syn.seq + 1, syn.payload.clone());
        }
        if syn.flags.contains(Flags::FIN) {
            tcb.peer_fin = Some(syn.seq + 1 + syn.payload.len() as u32);
        }
        let cause = Cause::segment(syn);
        match tcb.profile.handshake {
            Handshake::ThreeWay => {
                tcb.set_state(State::SynReceived, cause, "3.10.7.2", out);
            }
            Handshake::TwoWay => {
                // The variant: no third message, so the SYN+ACK is never
                // acknowledged and never retransmitted; the listener trusts the
                // SYN and is ESTABLISHED at once.
                let synack = tcb.syn_segment(now);
                tcb.snd_una = tcb.iss + 1;
                tcb.snd_nxt = tcb.snd_una;
                tcb.snd_ptr = tcb.snd_una;
                tcb.set_state(State::Established, cause, "3.10.7.2 (two_way variant)", out);
                tcb.emit(synack, false, now, out);
                tcb.deliver_queued(now, out);
            }
        }
        tcb.report_congestion(None, out);
        tcb
    }

    /// The endpoint's id within its stack.
    pub fn id(&self) -> SocketId {
        self.id
    }

    /// Current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// Local port.
    pub fn local_port(&self) -> u16 {
        self.local_port
    }

    /// Remote address and port.
    pub fn remote(&self) -> (Ipv4Addr, u16) {
        (self.remote_ip, self.remote_port)
    }

    /// The initial send sequence number.
    pub fn iss(&self) -> SeqNumber {
        self.iss
    }

    /// The initial receive sequence number.
    pub fn irs(&self) -> SeqNumber {
        self.irs
    }

    /// SND.UNA.
    pub fn snd_una(&self) -> SeqNumber {
        self.snd_una
    }

    /// SND.NXT.
    pub fn snd_nxt(&self) -> SeqNumber {
        self.snd_nxt
    }

    /// RCV.NXT.
    pub fn rcv_nxt(&self) -> SeqNumber {
        self.rcv_nxt
    }

    /// The error a user call would see, if the connection failed.
    pub fn error(&self) -> Option<ConnError> {
        self.error
    }

    /// The profile this endpoint runs with.
    pub fn profile(&self) -> &Arc<Profile> {
        &self.profile
    }

    /// SO_KEEPALIVE with its TCP_KEEPIDLE, TCP_KEEPINTVL and TCP_KEEPCNT
    /// (`None`: off, the default); the idle time counts from `now`.
    pub fn set_keepalive(&mut self, keepalive: Option<Keepalive>, now: u64) {
        let state = keepalive.map(|settings| KeepaliveState {
            settings,
            deadline: now.saturating_add(settings.idle_ms * 1_000_000),
            probes: 0,
        });
        if state.is_some() || self.extras.is_some() {
            self.extras_mut().keepalive = state;
        }
    }

    fn extras_mut(&mut self) -> &mut Extras {
        self.extras.get_or_insert_with(Box::default)
    }

    /// TS.Recent (0 until timestamps are on).
    fn ts_recent(&self) -> u32 {
        self.extras.as_ref().map_or(0, |e| e.ts_recent)
    }

    fn keepalive(&self) -> Option<&KeepaliveState> {
        self.extras.as_ref().and_then(|e| e.keepalive.as_ref())
    }

    /// Starts the connection-establishment limit (BSD's TT_KEEP in the SYN
    /// states, armed by tcp_connect() and the syncache), if the profile sets one.
    fn arm_keepinit(&mut self, now: u64) {
        if self.profile.keepinit_ms > 0 {
            self.extras_mut().init_deadline = Some(now.saturating_add(self.profile.keepinit_ms * 1_000_000));
        }
    }

    /// The connection-establishment deadline, while it applies.
    fn keepinit(&self) -> Option<u64> {
        let opening = matches!(self.state, State::SynSent | State::SynReceived);
        self.extras.as_ref().and_then(|e| e.init_deadline).filter(|_| opening)
    }

    /// States in which keepalive probes (BSD's tcp_timer_keep(): up to CLOSING).
    fn keeps_alive(&self) -> bool {
        matches!(self.state, State::Established | State::CloseWait | State::FinWait1 | State::Closing)
    }

    /// TCP_NODELAY: with `true` a short segment that empties the send queue
    /// leaves even while data is unacknowledged (Nagle's algorithm off).
    pub fn set_nodelay(&mut self, on: bool) {
        self.nodelay = on;
    }

    /// A changed profile for a running endpoint: the settings it reads where
    /// it uses them apply from now on; those it fixed when it opened (its
    /// MSS, buffers, RTO bounds, SACK, congestion control) stay as they were.
    pub fn set_profile(&mut self, profile: Arc<Profile>) {
        self.profile = profile;
    }

    /// RCV.WND: the free part of the receive buffer (capped at what 16 bits
    /// carry); with the profile's `rcv_window_from_buffer`, of the buffer
    /// rounded up to whole segments, as BSD's `sbspace()` gives it once the
    /// connection has a socket buffer.
    pub fn rcv_wnd(&self) -> u32 {
        let buffer = if self.bsd_buffer() { self.recv_buffer_size() } else { self.profile.window };
        buffer.saturating_sub(self.rx.len() as u32).min(MAX_UNSCALED_WINDOW << self.rcv_wscale)
    }

    /// The peer's window from a segment: scaled by its shift, except in a
    /// SYN (RFC 7323 section 2.2: "The window field in a segment where the
    /// SYN bit is set ... MUST NOT be scaled").
    fn peer_window(&self, seg: &Segment) -> u32 {
        let shift = if seg.flags.contains(Flags::SYN) { 0 } else { self.snd_wscale };
        u32::from(seg.window) << shift
    }

    /// The shift we offer in a SYN, if the profile offers one.
    fn offered_wscale(&self) -> Option<u8> {
        self.profile.window_scale.shift_for(self.profile.window)
    }

    /// Window Scale and Timestamps from the peer's SYN (RFC 7323 sections
    /// 2.2 and 3.2): each is on when both ends offered it.
    fn negotiate_rfc7323(&mut self, syn: &Segment) {
        match (syn.window_scale(), self.offered_wscale()) {
            (Some(peer), Some(ours)) => {
                self.wscale_ok = true;
                self.snd_wscale = peer.min(MAX_WINDOW_SHIFT);
                self.rcv_wscale = ours;
            }
            _ => {
                self.wscale_ok = false;
                self.snd_wscale = 0;
                self.rcv_wscale = 0;
            }
        }
        match syn.timestamps().filter(|_| self.profile.timestamps.is_on()) {
            Some((tsval, _)) => {
                self.ts_ok = true;
                self.extras_mut().ts_recent = tsval;
            }
            None => self.ts_ok = false,
        }
    }

    /// TSval now: the virtual clock in milliseconds, offset by the ISS so
    /// that connections do not share a clock (RFC 7323 section 5.4).
    fn ts_now(&self, now: u64) -> u32 {
        ((now / 1_000_000) as u32).wrapping_add(self.iss.0)
    }

    /// The most payload one segment carries: SMSS less the Timestamps option
    /// every segment then carries (RFC 7323 section 3.2, BSD's tcp_maxseg()).
    fn max_payload(&self) -> usize {
        usize::from(self.snd_mss).saturating_sub(if self.ts_ok { 12 } else { 0 }).max(1)
    }

    /// The receive buffer is BSD's socket buffer (rounded up to whole
    /// segments): the profile says so, and the connection has one (BSD
    /// keeps none in a passive SYN-RECEIVED, the syncache, or in TIME-WAIT,
    /// the compressed tcptw).
    fn bsd_buffer(&self) -> bool {
        let bufferless = (self.passive && self.state == State::SynReceived) || self.state == State::TimeWait;
        self.profile.rcv_window_from_buffer.is_on() && !bufferless
    }

    /// RCV.WND for the acceptability test: what was advertised, or with the
    /// profile's `rcv_window_from_buffer` the free buffer rounded up to a
    /// multiple of the MSS (BSD), whichever is larger.
    fn acceptance_wnd(&self) -> u32 {
        let advertised = self.rcv_wnd();
        if !self.bsd_buffer() {
            return advertised;
        }
        self.recv_buffer_size().saturating_sub(self.rx.len() as u32).max(advertised)
    }

    /// STATUS (RFC 9293 section 3.10.6).
    pub fn status(&self) -> TcbStatus {
        TcbStatus {
            state: self.state,
            local_port: self.local_port,
            remote_ip: self.remote_ip,
            remote_port: self.remote_port,
            iss: self.iss.0,
            irs: self.irs.0,
            snd_una: self.snd_una.0,
            snd_nxt: self.snd_nxt.0,
            snd_wnd: self.snd_wnd,
            rcv_nxt: self.rcv_nxt.0,
            rcv_wnd: self.rcv_wnd(),
            snd_mss: self.snd_mss,
            send_buffered: self.tx.len(),
            recv_buffered: self.rx.len(),
            out_of_order: self.held.as_ref().map_or(0, |held| held.queue.len()),
            timers: Timers {
                keepalive: self.keepalive().filter(|_| self.keeps_alive()).map(|k| k.deadline).or(self.keepinit()),
                ..self.timers.public()
            },
            rto_ns: self.rtt.rto,
            srtt_ns: self.rtt.srtt,
            retries: self.retries,
            error: self.error,
            cwnd: self.cc.cwnd,
            ssthresh: (self.cc.ssthresh != SSTHRESH_INFINITE).then_some(self.cc.ssthresh),
            flight_size: self.flight_size(),
            cc_phase: self.cc.phase(self.in_recovery),
            dup_acks: u32::from(self.dup_acks),
            recovery_point: self.in_recovery.then_some(self.recover.0),
            recv_buffer_size: self.recv_buffer_size(),
            send_buffer_size: self.profile.send_buffer,
            sack_permitted: self.sack_permitted,
            nodelay: self.nodelay,
            snd_wscale: self.wscale_ok.then_some(self.snd_wscale),
            rcv_wscale: self.wscale_ok.then_some(self.rcv_wscale),
            timestamps: self.ts_ok,
            ts_recent: self.ts_ok.then(|| self.ts_recent()),
            sack_blocks: self.held.as_ref().map_or_else(Vec::new, |held| {
                held.sacks.blocks().iter().map(|b| SeqRange { start: b.start.0, end: b.end.0 }).collect()
            }),
        }
    }

    /// The receive buffer: the profile's window, rounded up to whole
    /// segments where the profile follows BSD.
    fn recv_buffer_size(&self) -> u32 {
        if !self.profile.rcv_window_from_buffer.is_on() {
            return self.profile.window;
        }
        let mss = u32::from(self.snd_mss.max(1));
        self.profile.window.div_ceil(mss).saturating_mul(mss)
    }

    /// The profile's RTO slop, in nanoseconds.
    fn rto_slop(&self) -> u64 {
        self.profile.rto_slop_ms * 1_000_000
    }

    /// The SMSS of RFC 5681: the largest segment we send.
    fn smss(&self) -> u32 {
        u32::from(self.snd_mss.max(1))
    }

    /// FlightSize (RFC 5681 section 2): sequence space sent and not acknowledged.
    fn flight_size(&self) -> u32 {
        self.snd_nxt - self.snd_una
    }

    /// IW in octets for the current SMSS.
    fn initial_window(&self) -> u32 {
        self.profile.initial_window.octets(self.smss())
    }

    /// What a [`Output::CongestionChanged`] reports.
    fn congestion_view(&self) -> (u32, u32, CcPhase) {
        (self.cc.cwnd, self.cc.ssthresh, self.cc.phase(self.in_recovery))
    }

    /// Reports cwnd, ssthresh and the phase when they differ from `before`
    /// (always when `before` is `None`), so that the log can replay them.
    fn report_congestion(&self, before: Option<(u32, u32, CcPhase)>, out: &mut Vec<Output>) {
        let now = self.congestion_view();
        if before == Some(now) || self.state == State::Closed || self.state == State::SynSent {
            return;
        }
        let (cwnd, ssthresh, phase) = now;
        out.push(Output::CongestionChanged {
            socket: self.id,
            cwnd,
            ssthresh: (ssthresh != SSTHRESH_INFINITE).then_some(ssthresh),
            phase,
        });
    }

    /// The earliest running timer's deadline: when to call [`Tcb::on_timer`].
    pub fn poll_at(&self) -> Option<u64> {
        let keepalive = self.keepalive().filter(|_| self.keeps_alive()).map(|k| k.deadline).or(self.keepinit());
        match (self.timers.earliest(), keepalive) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// `true` when the stack should call [`Tcb::dispatch`] (cheap to ask).
    pub fn wants_dispatch(&self) -> bool {
        self.ack_pending
            || self.probe_due
            || self.rexmit_due
            || self.snd_ptr != self.snd_nxt
            || !self.tx.is_empty()
            || self.fin_queued
    }

    // ----- user calls (RFC 9293 section 3.10) -----

    /// SEND: queues data; returns how many octets fit in the send buffer.
    ///
    /// # Errors
    /// [`UserError`] when the connection cannot send in its state.
    pub fn send(&mut self, data: &[u8]) -> Result<usize, UserError> {
        let n = self.send_room(data.len())?;
        self.tx.push(&data[..n]);
        Ok(n)
    }

    /// SEND of a buffer the send queue keeps as it is, its segments slices
    /// of it (a reference count, not a copy of the application's octets);
    /// returns how many octets fit, as [`Tcb::send`].
    ///
    /// # Errors
    /// As [`Tcb::send`].
    pub fn send_bytes(&mut self, data: Bytes) -> Result<usize, UserError> {
        let n = self.send_room(data.len())?;
        if n == data.len() {
            self.tx.push_bytes(data);
        } else {
            // A part: copied, so that a few queued octets never keep a
            // large buffer alive.
            self.tx.push(&data[..n]);
        }
        Ok(n)
    }

    /// How many of `len` octets SEND may queue now.
    fn send_room(&self, len: usize) -> Result<usize, UserError> {
        if let Some(error) = self.error {
            return Err(UserError::Failed(error));
        }
        match self.state {
            State::Closed | State::Listen => return Err(UserError::NotConnected),
            State::SynSent | State::SynReceived | State::Established | State::CloseWait => {}
            _ => return Err(UserError::Closing),
        }
        if self.fin_queued {
            return Err(UserError::Closing);
        }
        let room = (self.profile.send_buffer as usize).saturating_sub(self.tx.len());
        if room == 0 && len > 0 {
            return Err(UserError::BufferFull);
        }
        Ok(room.min(len))
    }

    /// RECEIVE: takes up to `max` in-order octets. An empty result once the
    /// peer's FIN has been processed means end of stream.
    pub fn recv(&mut self, max: usize) -> Vec<u8> {
        self.rx.read(max)
    }

    /// RECEIVE for an application that only counts what it reads: drops up to
    /// `max` in-order octets without copying them out; returns how many.
    pub fn recv_discard(&mut self, max: usize) -> usize {
        self.rx.discard(max)
    }

    /// Octets ready to be read.
    pub fn recv_available(&self) -> usize {
        self.rx.len()
    }

    /// CLOSE (RFC 9293 section 3.10.4): "I have no more data to send".
    ///
    /// # Errors
    /// [`UserError`] when the endpoint is closed or already closing.
    pub fn close(&mut self, out: &mut Vec<Output>) -> Result<(), UserError> {
        let cause = Cause::User { call: UserCall::Close };
        match self.state {
            State::Closed | State::Listen => Err(UserError::NotConnected),
            State::SynSent => {
                self.enter_closed(cause, "3.10.4", out);
                Ok(())
            }
            State::SynReceived => {
                // Queued until ESTABLISHED is reached (3.10.4).
                if self.fin_queued {
                    return Err(UserError::Closing);
                }
                self.fin_queued = true;
                Ok(())
            }
            State::Established => {
                self.fin_queued = true;
                self.set_state(State::FinWait1, cause, "3.10.4", out);
                Ok(())
            }
            State::CloseWait => {
                self.fin_queued = true;
                self.set_state(State::LastAck, cause, "3.10.4", out);
                Ok(())
            }
            _ => Err(UserError::Closing),
        }
    }

    /// The user's close() of the socket, where [`Tcb::close`] is
    /// shutdown(SHUT_WR): the FIN follows the queued data as for CLOSE, and
    /// besides no one reads any more, so data that arrives from now on is
    /// answered with a reset. Closing a socket whose sending side is already
    /// shut down is no error.
    ///
    /// # Errors
    /// [`UserError::NotConnected`] when the endpoint is closed.
    pub fn close_socket(&mut self, out: &mut Vec<Output>) -> Result<(), UserError> {
        match self.close(out) {
            Ok(()) | Err(UserError::Closing) => {
                self.app_closed = true;
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// ABORT (RFC 9293 section 3.10.5): a reset for synchronized peers, then CLOSED.
    pub fn abort(&mut self, now: u64, out: &mut Vec<Output>) {
        let cause = Cause::User { call: UserCall::Abort };
        match self.state {
            State::Closed => {}
            State::SynReceived | State::Established | State::FinWait1 | State::FinWait2 | State::CloseWait => {
                let rst = self.segment(self.snd_nxt, Flags::RST, Bytes::new());
                self.emit(rst, false, now, out);
                self.enter_closed(cause, "3.10.5", out);
            }
            _ => self.enter_closed(cause, "3.10.5", out),
        }
    }

    // ----- segment arrival (RFC 9293 section 3.10.7) -----

    /// Processes a segment addressed to this endpoint.
    pub fn process(&mut self, now: u64, seg: &Segment, out: &mut Vec<Output>) {
        let before = self.congestion_view();
        if let Some(k) = self.extras.as_mut().and_then(|e| e.keepalive.as_mut()) {
            // The peer spoke: idle again (BSD's t_rcvtime).
            k.deadline = now.saturating_add(k.settings.idle_ms * 1_000_000);
            k.probes = 0;
        }
        match self.state {
            State::Closed | State::Listen => return,
            // The handshake fixes SMSS and so IW: report it, changed or not.
            State::SynSent => {
                self.process_syn_sent(now, seg, out);
                self.report_congestion(None, out);
                return;
            }
            _ => self.process_other(now, seg, out),
        }
        self.report_congestion(Some(before), out);
    }

    /// 3.10.7.3: SYN-SENT.
    fn process_syn_sent(&mut self, now: u64, seg: &Segment, out: &mut Vec<Output>) {
        let flags = seg.flags;
        // First, check the ACK bit.
        if flags.contains(Flags::ACK) && (seg.ack <= self.iss || seg.ack > self.snd_nxt) {
            if !flags.contains(Flags::RST) {
                let rst = self.segment(seg.ack, Flags::RST, Bytes::new());
                self.emit(rst, false, now, out);
            }
            return;
        }
        let ack_ok = flags.contains(Flags::ACK);
        // Second, check the RST bit.
        if flags.contains(Flags::RST) {
            if ack_ok {
                self.fail(ConnError::Refused, Cause::segment(seg), "3.10.7.3", out);
            }
            return;
        }
        // Fourth, check the SYN bit.
        if !flags.contains(Flags::SYN) {
            return;
        }
        self.irs = seg.seq;
        self.rcv_nxt = seg.seq + 1;
        self.snd_mss = seg.mss().unwrap_or(DEFAULT_PEER_MSS).min(self.profile.mss);
        self.sack_permitted = self.profile.sack.is_on() && seg.sack_permitted();
        self.negotiate_rfc7323(seg);
        // A lost SYN leaves an initial window of one SMSS (RFC 5681 section 3.1).
        let syn_lost = self.retries > 0;
        self.cc.restart(if syn_lost { self.smss() } else { self.initial_window() });
        if ack_ok {
            self.ack_advance(seg.ack, self.echoed(seg), now);
        }
        self.snd_wnd = u32::from(seg.window);
        self.max_snd_wnd = self.max_snd_wnd.max(self.snd_wnd);
        self.snd_wl1 = seg.seq;
        self.snd_wl2 = seg.ack;
        if self.snd_una > self.iss {
            self.set_state(State::Established, Cause::segment(seg), "3.10.7.3", out);
            // A two-way initiator has no third message to send; anything it
            // sends later carries the acknowledgment.
            self.ack_pending = self.profile.handshake == Handshake::ThreeWay;
            let text = Text { seq: seg.seq + 1, data: seg.payload.clone(), fin: flags.contains(Flags::FIN) };
            self.receive_text(text, &Cause::segment(seg), now, out);
        } else {
            // Simultaneous open: send SYN+ACK (the SYN again, now with ACK).
            self.snd_ptr = self.iss;
            self.set_state(State::SynReceived, Cause::segment(seg), "3.10.7.3", out);
            if !seg.payload.is_empty() {
                self.hold_out_of_order(seg.seq + 1, seg.payload.clone());
            }
        }
    }

    /// 3.10.7.4: every state from SYN-RECEIVED on.
    fn process_other(&mut self, now: u64, seg: &Segment, out: &mut Vec<Output>) {
        let flags = seg.flags;
        let cause = Cause::segment(seg);

        // A retransmitted SYN while we wait for the ACK of our SYN+ACK: our
        // answer was probably lost, so send it again.
        if self.state == State::SynReceived
            && flags.contains(Flags::SYN)
            && !flags.contains(Flags::ACK)
            && !flags.contains(Flags::RST)
            && seg.seq == self.irs
        {
            self.snd_ptr = self.iss;
            return;
        }

        // Simultaneous open: the peer's SYN+ACK repeats the SYN we already
        // took. Trim the SYN (as BSD does) so that its ACK is processed; this
        // gives RFC 9293 figure 8's exchange, with no extra ACKs.
        let trimmed;
        let seg = if self.state == State::SynReceived
            && !self.passive
            && flags.contains(Flags::SYN)
            && flags.contains(Flags::ACK)
            && seg.seq == self.irs
        {
            trimmed = Segment { seq: seg.seq + 1, flags: Flags(seg.flags.0 & !Flags::SYN.0), ..seg.clone() };
            &trimmed
        } else {
            seg
        };
        let flags = seg.flags;
        let seg_len = seg.seg_len();
        let bsd_time_wait = self.state == State::TimeWait && self.profile.time_wait_acks_all.is_on();
        if bsd_time_wait && !flags.contains(Flags::ACK) && !flags.contains(Flags::SYN) && !flags.contains(Flags::RST) {
            // BSD's tcp_twcheck: "Drop the segment if it does not contain an ACK."
            return;
        }

        // RFC 5961 section 4.2 (RFC 9293 section 3.10.7.4, fourth step): with
        // the mitigation, a SYN in a synchronized state gets a challenge ACK
        // "irrespective of the sequence number", so before the window test.
        // (SYN-RECEIVED keeps its own rules below: a retransmitted SYN, and a
        // passive OPEN's return to LISTEN.)
        if flags.contains(Flags::SYN)
            && !flags.contains(Flags::RST)
            && self.state != State::SynReceived
            && self.profile.syn_challenge()
        {
            self.challenge_ack(now);
            return;
        }

        // PAWS (RFC 7323 section 5.3, R1): a segment whose TSval is older
        // than TS.Recent is an old duplicate; with text it is acknowledged,
        // without it is dropped silently (BSD's tcp_input(), after its RST
        // and SYN checks, which keep their own rules here).
        if let Some((tsval, _)) = seg.timestamps().filter(|_| self.ts_ok) {
            let recent = self.ts_recent();
            let old = (tsval.wrapping_sub(recent) as i32) < 0;
            if old && recent != 0 && !flags.contains(Flags::RST) && !flags.contains(Flags::SYN) {
                if seg_len > 0 {
                    self.ack_pending = true;
                }
                return;
            }
        }

        // First, check the sequence number. A segment of no length exactly at
        // the right edge of the window passes too: a peer that filled our
        // window sends its ACKs from there, and RFC 9293's test (with its
        // "special allowance ... to accept valid ACKs") would otherwise ignore
        // every ACK it sends until we open the window, which only our own
        // retransmission can do when a hole holds RCV.NXT back. BSD and Linux
        // accept SEG.SEQ = RCV.NXT + RCV.WND for the same reason.
        let rcv_wnd = self.acceptance_wnd();
        let acceptable = match (seg_len, rcv_wnd) {
            (0, 0) => seg.seq == self.rcv_nxt,
            // The allowance is for ACKs: a RST or SYN at the right edge is outside
            // the window (RFC 5961 sections 3.2 and 4.2 drop such a RST silently).
            (0, _) => {
                seg.seq.in_window(self.rcv_nxt, rcv_wnd)
                    || (seg.seq == self.rcv_nxt + rcv_wnd && !flags.contains(Flags::RST) && !flags.contains(Flags::SYN))
            }
            (_, 0) => false,
            (_, _) => {
                seg.seq.in_window(self.rcv_nxt, rcv_wnd) || (seg.seq + (seg_len - 1)).in_window(self.rcv_nxt, rcv_wnd)
            }
        };
        if !acceptable {
            if flags.contains(Flags::RST) {
                return;
            }
            if !flags.contains(Flags::SYN) {
                self.record_duplicate(seg);
            }
            if self.state == State::TimeWait && flags.contains(Flags::FIN) && seg.seq + seg_len == self.rcv_nxt {
                // The peer's FIN again: our last ACK was lost. Answer it and
                // restart the 2*MSL wait (3.10.7.4, eighth step, TIME-WAIT).
                self.restart_time_wait(now, out);
            }
            // Text that starts at the right edge of the window (a probe of a
            // zero window, or a peer that sent as far as we let it): the text
            // is dropped, but its ACK is valid and honoured (3.10.7.4,
            // "special allowance should be made to accept valid ACKs").
            if seg.seq == self.rcv_nxt + rcv_wnd && flags.contains(Flags::ACK) && !flags.contains(Flags::SYN) {
                self.ack_pending = true;
                if self.process_ack(seg, now, out) {
                    self.after_ack(cause, now, out);
                }
                return;
            }
            let old_duplicate = seg.seq < self.rcv_nxt && seg.seq + seg_len <= self.rcv_nxt;
            if self.profile.old_segment_acks.is_on()
                && old_duplicate
                && flags.contains(Flags::ACK)
                && !flags.contains(Flags::SYN)
                && self.state != State::TimeWait
            {
                // BSD: the old text is trimmed, the ACK is news (it may
                // acknowledge our FIN, as a retransmitted FIN+ACK does).
                self.ack_pending = true;
                if self.process_ack(seg, now, out) {
                    self.after_ack(cause, now, out);
                }
                return;
            }
            if flags.contains(Flags::SYN) && self.state != State::SynReceived {
                // A SYN outside the window (RFC 793 rules): the ACK it is owed
                // is a challenge ACK in all but name (RFC 5961 section 4.2),
                // limited like one.
                self.challenge_ack(now);
                return;
            }
            self.ack_pending = true;
            return;
        }

        // Second, check the RST bit.
        if flags.contains(Flags::RST) {
            if self.profile.rst_challenge() && seg.seq != self.rcv_nxt {
                // RFC 5961 section 3.2: in the window but not exact: challenge ACK.
                self.challenge_ack(now);
                return;
            }
            match self.state {
                State::SynReceived if self.passive => {
                    // The listener's child goes away; the listener stays in LISTEN.
                    self.enter_closed(cause, "3.10.7.4 (RST in SYN-RECEIVED, passive OPEN: back to LISTEN)", out)
                }
                State::SynReceived => self.fail(ConnError::Refused, cause, "3.10.7.4", out),
                State::Established | State::FinWait1 | State::FinWait2 | State::CloseWait => {
                    self.fail(ConnError::Reset, cause, "3.10.7.4", out)
                }
                // The connection ends before our FIN was acknowledged: a user
                // still holding the socket (after a half-close) sees the reset.
                State::Closing | State::LastAck => self.fail(ConnError::Reset, cause, "3.10.7.4", out),
                _ => self.enter_closed(cause, "3.10.7.4", out),
            }
            return;
        }

        // Fourth, check the SYN bit (the segment is in the window).
        if flags.contains(Flags::SYN) {
            if self.state == State::SynReceived && self.passive {
                self.enter_closed(cause, "3.10.7.4 (SYN in SYN-RECEIVED, passive OPEN: back to LISTEN)", out);
                return;
            }
            if self.profile.syn_challenge() {
                // RFC 5961 section 4.2: challenge ACK, drop.
                self.challenge_ack(now);
                return;
            }
            // RFC 793: an in-window SYN is an error: reset and close (the
            // profile says whether the reset also carries an ACK, as BSD's does).
            let flags = if self.profile.syn_reset_acks.is_on() { Flags::RST | Flags::ACK } else { Flags::RST };
            let rst = self.segment(self.snd_nxt, flags, Bytes::new());
            self.emit(rst, false, now, out);
            self.fail(ConnError::Reset, cause, "3.10.7.4 (RFC 793 behaviour)", out);
            return;
        }

        // RFC 7323 section 4.3: TS.Recent follows the TSval of a segment that
        // covers Last.ACK.sent (BSD: SEG.SEQ <= Last.ACK.sent <= SEG.SEQ + SEG.LEN).
        if let Some((tsval, _)) = seg.timestamps().filter(|_| self.ts_ok) {
            let last_ack_sent = self.extras.as_ref().map_or(SeqNumber(0), |e| e.last_ack_sent);
            if seg.seq <= last_ack_sent && last_ack_sent <= seg.seq + seg_len {
                self.extras_mut().ts_recent = tsval;
            }
        }

        // Data after the user closed the socket, before the peer's FIN: no
        // one will read it, so the peer learns at once (RFC 9293 section
        // 3.10.4 and RFC 1122 4.2.2.13; BSD's tcp_input.c "If new data are
        // received on a connection after the user processes are gone, then
        // RST the other end", with the reset tcp_dropwithreset() makes).
        if self.app_closed && matches!(self.state, State::FinWait1 | State::FinWait2) && self.new_text_len(seg) > 0 {
            let rst = if flags.contains(Flags::ACK) {
                self.segment(seg.ack, Flags::RST, Bytes::new())
            } else {
                Segment { ack: seg.seq + seg_len, ..self.segment(SeqNumber(0), Flags::RST | Flags::ACK, Bytes::new()) }
            };
            self.emit(rst, false, now, out);
            self.enter_closed(cause, "3.10.4 (data after the socket was closed: RFC 1122 4.2.2.13)", out);
            return;
        }

        // Fifth, check the ACK field.
        if !flags.contains(Flags::ACK) {
            return;
        }
        if bsd_time_wait && (flags != Flags::ACK || seg_len != 0 || seg.seq != self.rcv_nxt || seg.ack != self.snd_nxt)
        {
            // BSD's tcp_twcheck: "Acknowledge the segment if it has data or is
            // not a duplicate ACK."
            self.ack_pending = true;
        }
        if self.state == State::SynReceived {
            if self.snd_una < seg.ack && seg.ack <= self.snd_nxt {
                self.snd_wnd = self.peer_window(seg);
                self.max_snd_wnd = self.max_snd_wnd.max(self.snd_wnd);
                self.snd_wl1 = seg.seq;
                self.snd_wl2 = seg.ack;
                self.set_state(State::Established, cause.clone(), "3.10.7.4", out);
                self.deliver_queued(now, out);
                if self.fin_queued {
                    // A CLOSE issued in SYN-RECEIVED takes effect now (3.10.4).
                    self.set_state(State::FinWait1, Cause::User { call: UserCall::Close }, "3.10.4", out);
                }
            } else {
                let rst = self.segment(seg.ack, Flags::RST, Bytes::new());
                self.emit(rst, false, now, out);
                return;
            }
        }
        if !self.process_ack(seg, now, out) {
            return;
        }
        if !self.after_ack(cause.clone(), now, out) {
            return;
        }

        // Sixth (URG) is not implemented: urgent data is delivered in line.
        // Seventh and eighth: text and FIN.
        self.record_duplicate(seg);
        if let Some(text) = self.trim_to_window(seg) {
            self.receive_text(text, &cause, now, out);
        }
    }

    /// The state changes an acceptable ACK brings about once our FIN is
    /// acknowledged (3.10.7.4, fifth step). Returns `false` when the rest of
    /// the segment is not to be processed.
    fn after_ack(&mut self, cause: Cause, now: u64, out: &mut Vec<Output>) -> bool {
        match self.state {
            State::FinWait1 if self.fin_acked() => {
                self.set_state(State::FinWait2, cause, "3.10.7.4", out);
                true
            }
            State::Closing => {
                if self.fin_acked() {
                    self.enter_time_wait(cause, now, out);
                }
                false
            }
            State::LastAck => {
                if self.fin_acked() {
                    self.enter_closed(cause, "3.10.7.4", out);
                }
                false
            }
            _ => true,
        }
    }

    /// The ACK checks of the fifth step for synchronized states. Returns
    /// `false` when the segment must be dropped.
    fn process_ack(&mut self, seg: &Segment, now: u64, out: &mut Vec<Output>) -> bool {
        let _ = out;
        if seg.ack > self.snd_nxt {
            // Acknowledges something not yet sent: send an ACK, drop.
            self.ack_pending = true;
            return false;
        }
        if self.profile.rfc5961.is_on() && seg.ack < self.snd_una - self.max_snd_wnd.max(1) {
            // RFC 5961 section 5.2: too old to be plausible: challenge ACK, drop.
            self.challenge_ack(now);
            return false;
        }
        // RFC 5681 section 2: a duplicate ACK carries no data, no SYN or FIN,
        // acknowledges SND.UNA while data is outstanding and repeats the window.
        let duplicate = seg.ack == self.snd_una
            && seg.payload.is_empty()
            && !seg.flags.contains(Flags::SYN)
            && !seg.flags.contains(Flags::FIN)
            && self.snd_una != self.snd_nxt
            && self.snd_wnd > 0
            && self.peer_window(seg) == self.snd_wnd;
        let algo = self.profile.cc;
        let smss = self.smss();
        if self.snd_una < seg.ack {
            let partial = self.in_recovery && seg.ack < self.recover && algo.uses_recovery_point();
            // Octets of data acknowledged: our SYN and FIN are not data.
            let syn = u32::from(self.snd_una == self.iss);
            let fin = u32::from(self.fin_seq.is_some_and(|fin| self.snd_una <= fin && seg.ack > fin));
            let acked = (seg.ack - self.snd_una).saturating_sub(syn + fin);
            // FreeBSD's CCF_CWND_LIMITED (tcp_input.c): cwnd grows only while
            // it, not the peer's window, is what limits the sender.
            let grows = self.snd_una != self.iss && self.cc.cwnd <= self.snd_wnd;
            self.ack_advance(seg.ack, self.echoed(seg), now);
            self.dup_acks = 0;
            if partial {
                // RFC 6582 section 3.2 step 5: the next hole is lost too; resend it now.
                self.cc.on_partial_ack(acked, smss);
                self.rexmit_due = true;
            } else if self.in_recovery {
                self.in_recovery = false;
                self.cc.on_recovery_exit(algo, self.flight_size(), smss, now);
            } else if grows {
                self.cc.on_ack(algo, acked, smss, now, self.rtt.srtt);
            }
        } else if duplicate {
            self.dup_acks = self.dup_acks.saturating_add(1);
            if self.in_recovery {
                self.cc.on_recovery_dup_ack(smss);
            } else if self.dup_acks == 3 && (!algo.uses_recovery_point() || seg.ack >= self.recover) {
                // RFC 5681 section 3.2 steps 2 and 3, with RFC 6582's check that the
                // duplicates are not echoes of what a timeout already resent.
                self.in_recovery = true;
                self.recover = self.snd_nxt;
                // RFC 5681 section 3.2 step 2: what limited transmit sent is not
                // part of the FlightSize that ssthresh halves.
                let limited = if self.profile.limited_transmit.is_on() {
                    self.flight_size().saturating_sub(self.cc.cwnd).min(2 * smss)
                } else {
                    0
                };
                self.cc.on_fast_retransmit(algo, self.flight_size() - limited, smss);
                self.rexmit_due = true;
            }
        }
        // Neither an old ACK nor a segment that carries data (or a new
        // window) while acknowledging SND.UNA is a duplicate, and neither
        // restarts the count: RFC 5681 section 3.2 counts three duplicates
        // "without any intervening ACKs which move SND.UNA", and FreeBSD's
        // tcp_input.c leaves t_dupacks alone for both ("Old acks should not
        // affect dupack counting"). With data flowing both ways most of the
        // peer's segments carry data between its duplicates.
        // Window update (3.10.7.4): only from a segment at least as new as the last one used.
        if self.snd_wl1 < seg.seq || (self.snd_wl1 == seg.seq && self.snd_wl2 <= seg.ack) {
            let was_zero = self.snd_wnd == 0;
            self.snd_wnd = self.peer_window(seg);
            self.max_snd_wnd = self.max_snd_wnd.max(self.snd_wnd);
            self.snd_wl1 = seg.seq;
            self.snd_wl2 = seg.ack;
            if was_zero && self.snd_wnd > 0 {
                self.timers.persist = NEVER;
                self.persist_backoff = 0;
            }
        }
        true
    }

    /// The TSecr of a segment worth an RTT sample (RFC 7323 section 4.1:
    /// timestamps negotiated, and not zero, which some stacks send in a SYN+ACK).
    fn echoed(&self, seg: &Segment) -> Option<u32> {
        seg.timestamps().filter(|_| self.ts_ok).map(|(_, ecr)| ecr).filter(|ecr| *ecr != 0)
    }

    /// SND.UNA moves forward to `ack`: drop acknowledged data, take an RTT
    /// sample (from the echoed timestamp, RFC 7323 section 4's RTTM, else
    /// from the timed segment, with Karn's rule: only one never
    /// retransmitted), and manage the retransmission timer (RFC 6298 section 5).
    fn ack_advance(&mut self, ack: SeqNumber, tsecr: Option<u32>, now: u64) {
        let mut acked = ack - self.snd_una;
        if self.snd_una == self.iss && acked > 0 {
            acked -= 1; // our SYN
        }
        self.tx.consume(acked as usize);
        self.snd_una = ack;
        if self.snd_ptr < self.snd_una {
            self.snd_ptr = self.snd_una;
        }
        if let Some(ecr) = tsecr {
            let ms = self.ts_now(now).wrapping_sub(ecr);
            if ms < 1 << 31 {
                self.rtt.sample(u64::from(ms) * 1_000_000, self.rto_slop());
            }
            self.rtt_probe = None;
        } else if let Some((end, sent_at)) = self.rtt_probe {
            if ack >= end {
                self.rtt.sample(now.saturating_sub(sent_at), self.rto_slop());
                self.rtt_probe = None;
            }
        }
        self.retries = 0;
        self.timers.retransmit = if self.snd_una == self.snd_nxt { NEVER } else { now + self.rtt.rto };
    }

    fn fin_acked(&self) -> bool {
        self.fin_seq.is_some_and(|fin| self.snd_una > fin)
    }

    /// Cuts a segment down to what lies in [RCV.NXT, RCV.NXT + RCV.WND).
    /// Octets of the segment's text beyond RCV.NXT (what was not received before).
    fn new_text_len(&self, seg: &Segment) -> usize {
        let old = if seg.seq < self.rcv_nxt { (self.rcv_nxt - seg.seq) as usize } else { 0 };
        seg.payload.len().saturating_sub(old)
    }

    fn trim_to_window(&self, seg: &Segment) -> Option<Text> {
        let mut seq = seg.seq;
        let mut data = seg.payload.clone();
        let mut fin = seg.flags.contains(Flags::FIN);
        if seq < self.rcv_nxt {
            let skip = (self.rcv_nxt - seq) as usize;
            if skip > data.len() {
                // Everything, FIN included, is old: it was processed before.
                fin = false;
                data = Bytes::new();
            } else {
                data = data.slice(skip..);
            }
            seq = self.rcv_nxt;
        }
        let room = (self.rcv_nxt + self.rcv_wnd()) - seq;
        if data.len() as u32 > room {
            data = data.slice(..room as usize);
            fin = false;
        }
        if data.is_empty() && !fin {
            return None;
        }
        Some(Text { seq, data, fin })
    }

    /// Octets of the segment's text that lie below RCV.NXT (received
    /// before) are reported as a D-SACK block, and acknowledged at once so
    /// that the report goes out before the next segment clears it (RFC 2883
    /// section 4; FreeBSD's tcp_input.c "DSACK - add SACK block for dropped range").
    fn record_duplicate(&mut self, seg: &Segment) {
        if !self.sack_permitted || seg.payload.is_empty() || seg.seq >= self.rcv_nxt {
            return;
        }
        if !matches!(self.state, State::Established | State::FinWait1 | State::FinWait2) {
            return;
        }
        let old = (self.rcv_nxt - seg.seq).min(seg.payload.len() as u32);
        let rcv_nxt = self.rcv_nxt;
        self.held_mut().sacks.update(rcv_nxt, seg.seq, seg.seq + old);
        self.ack_pending = true;
    }

    /// The seventh and eighth steps: accept text in order (holding what comes
    /// early), then the FIN once everything before it has arrived.
    ///
    /// When to acknowledge follows RFC 5681 section 4.2 and FreeBSD's
    /// tcp_input.c: a segment in order with nothing held may wait for the
    /// delayed-ACK timer if it is not running yet (so at least every second
    /// segment is acknowledged at once); a segment out of order, one that
    /// fills a hole, and a FIN are acknowledged at once.
    fn receive_text(&mut self, text: Text, cause: &Cause, now: u64, out: &mut Vec<Output>) {
        let accepts_text = matches!(self.state, State::Established | State::FinWait1 | State::FinWait2);
        let Text { seq, data, fin } = text;
        let text_end = seq + data.len() as u32;
        if !data.is_empty() && accepts_text {
            let before = self.rcv_nxt;
            let len = data.len() as u32;
            let nothing_held = self.held.as_ref().is_none_or(|held| held.queue.is_empty());
            // The range of held data the segment now belongs to (FreeBSD's
            // tcp_reass() *tlenp), which decides the SACK report.
            let joined = if seq == self.rcv_nxt && nothing_held {
                self.delay_or_ack(len, now);
                self.rx.push(data);
                self.rcv_nxt = text_end;
                len
            } else {
                self.ack_pending = true;
                let limit = (self.recv_buffer_size() / self.smss() + 1).min(MAX_RANGES as u32) as usize;
                let rcv_nxt = self.rcv_nxt;
                let joined = self.held_mut().queue.insert(seq, data, rcv_nxt, limit).map_or(0, |(_, n)| n);
                self.drain_out_of_order();
                joined
            };
            if self.rcv_nxt != before {
                out.push(Output::Readable { socket: self.id });
            }
            if self.sack_permitted && self.held.is_some() {
                self.report_sack(seq, len, before, joined);
            }
            self.release_held();
        } else if !data.is_empty() {
            self.ack_pending = true;
        }
        if fin {
            let fin = text_end;
            self.peer_fin = Some(fin);
            if fin != self.rcv_nxt {
                // A FIN beyond a hole is an out-of-order segment: acknowledge
                // at once (RFC 5681 section 4.2), so the peer learns of the hole.
                self.ack_pending = true;
            }
        }
        if self.peer_fin == Some(self.rcv_nxt) && self.state != State::SynReceived {
            self.peer_fin = None;
            self.process_fin(cause.clone(), now, out);
        }
    }

    /// An in-order segment's ACK: at once, or when the delayed-ACK timer
    /// fires if it is not running yet, the segment is at most one MSS and
    /// our last window was not zero (FreeBSD's DELAY_ACK()).
    fn delay_or_ack(&mut self, len: u32, now: u64) {
        match self.profile.delayed_ack_ns() {
            Some(delay) if self.timers.delayed_ack == NEVER && len <= self.smss() && self.last_adv_wnd > 0 => {
                self.timers.delayed_ack = now + delay;
            }
            _ => self.ack_pending = true,
        }
    }

    /// Updates the SACK blocks after text arrived (FreeBSD's tcp_input.c,
    /// after tcp_reass()): `seq` and `len` are the text beyond RCV.NXT,
    /// `before` RCV.NXT when it came and `joined` the length of the held
    /// range it now belongs to (0: dropped).
    fn report_sack(&mut self, seq: SeqNumber, len: u32, before: SeqNumber, joined: u32) {
        let rcv_nxt = self.rcv_nxt;
        let sacks = &mut self.held_mut().sacks;
        if joined > 0 && rcv_nxt > before {
            match sacks.blocks().first().copied() {
                // The part below RCV.NXT was recorded when it was trimmed: keep it first.
                Some(first) if first.end == seq => sacks.update(rcv_nxt, first.start, first.end),
                _ => sacks.update_dsack(rcv_nxt, seq, seq + len),
            }
        } else if joined >= len {
            sacks.update_dsack(rcv_nxt, seq, seq + len);
        } else if joined > 0 {
            sacks.update_dsack(rcv_nxt, seq, seq + joined);
        }
    }

    fn held_mut(&mut self) -> &mut Held {
        self.held.get_or_insert_with(Box::default)
    }

    /// Frees what [`Held`] took once it holds nothing.
    fn release_held(&mut self) {
        if self.held.as_ref().is_some_and(|held| held.is_empty()) {
            self.held = None;
        }
    }

    fn hold_out_of_order(&mut self, seq: SeqNumber, data: Bytes) {
        let rcv_nxt = self.rcv_nxt;
        let _ = self.held_mut().queue.insert(seq, data, rcv_nxt, MAX_RANGES);
    }

    /// Moves the held range that now continues the in-order stream into `rx`.
    fn drain_out_of_order(&mut self) {
        let rcv_nxt = self.rcv_nxt;
        let Some(chunks) = self.held.as_mut().and_then(|held| held.queue.take_at(rcv_nxt)) else {
            return;
        };
        for chunk in chunks {
            self.rcv_nxt += chunk.len() as u32;
            self.rx.push(chunk);
        }
        self.release_held();
    }

    /// Delivers text queued before ESTABLISHED (data that came on a SYN),
    /// acknowledged as in-order data is: with delayed ACKs it may wait, so
    /// that the application's reply or FIN carries the ACK (BSD presents it
    /// with tcp_reass() and sets no ACK flag).
    fn deliver_queued(&mut self, now: u64, out: &mut Vec<Output>) {
        let before = self.rcv_nxt;
        self.drain_out_of_order();
        if self.rcv_nxt != before {
            self.delay_or_ack(self.rcv_nxt - before, now);
            out.push(Output::Readable { socket: self.id });
        }
    }

    /// The eighth step: the peer's FIN, in order.
    fn process_fin(&mut self, cause: Cause, now: u64, out: &mut Vec<Output>) {
        self.rcv_nxt += 1;
        self.ack_pending = true;
        out.push(Output::Readable { socket: self.id }); // end of stream is readable too
        match self.state {
            State::SynReceived | State::Established => {
                self.set_state(State::CloseWait, cause, "3.10.7.4", out);
            }
            State::FinWait1 => {
                if self.fin_acked() {
                    self.enter_time_wait(cause, now, out);
                } else {
                    self.set_state(State::Closing, cause, "3.10.7.4", out);
                }
            }
            State::FinWait2 => self.enter_time_wait(cause, now, out),
            State::TimeWait => self.restart_time_wait(now, out),
            _ => {}
        }
    }

    fn enter_time_wait(&mut self, cause: Cause, now: u64, out: &mut Vec<Output>) {
        self.timers.retransmit = NEVER;
        self.timers.persist = NEVER;
        self.timers.delayed_ack = NEVER;
        if self.profile.time_wait.is_on() {
            self.set_state(State::TimeWait, cause, "3.10.7.4", out);
            self.timers.time_wait = now + self.profile.time_wait_ns();
        } else {
            // The variant: skip the 2*MSL wait. The final ACK still goes out
            // now, but nobody stays to repeat it.
            if self.ack_pending {
                let ack = self.segment(self.snd_nxt, Flags::ACK, Bytes::new());
                self.emit(ack, false, now, out);
            }
            self.enter_closed(cause, "3.10.7.4 (time_wait=off variant)", out);
        }
    }

    fn restart_time_wait(&mut self, now: u64, out: &mut Vec<Output>) {
        let _ = out;
        self.ack_pending = true;
        if self.state == State::TimeWait {
            self.timers.time_wait = now + self.profile.time_wait_ns();
        }
    }

    // ----- timers -----

    /// Fires every timer whose deadline is at or before `now`.
    pub fn on_timer(&mut self, now: u64, out: &mut Vec<Output>) {
        let before = self.congestion_view();
        self.fire_timers(now, out);
        self.report_congestion(Some(before), out);
    }

    fn fire_timers(&mut self, now: u64, out: &mut Vec<Output>) {
        if self.timers.time_wait <= now {
            self.timers.time_wait = NEVER;
            out.push(Output::TimerFired { socket: self.id, timer: TimerKind::TimeWait });
            self.enter_closed(Cause::Timer { timer: TimerKind::TimeWait }, "3.10.8", out);
            return;
        }
        if self.keepinit().is_some_and(|at| at <= now) {
            out.push(Output::TimerFired { socket: self.id, timer: TimerKind::Keepalive });
            let cause = Cause::Timer { timer: TimerKind::Keepalive };
            self.fail(ConnError::TimedOut, cause, "3.8.3 (connection-establishment limit, BSD's keepinit)", out);
            return;
        }
        if self.keepalive().is_some_and(|k| k.deadline <= now) && self.keeps_alive() {
            out.push(Output::TimerFired { socket: self.id, timer: TimerKind::Keepalive });
            if self.on_keepalive(now, out) {
                return;
            }
        }
        if self.timers.delayed_ack <= now {
            self.timers.delayed_ack = NEVER;
            out.push(Output::TimerFired { socket: self.id, timer: TimerKind::DelayedAck });
            self.ack_pending = true;
        }
        if self.timers.retransmit <= now {
            self.timers.retransmit = NEVER;
            out.push(Output::TimerFired { socket: self.id, timer: TimerKind::Retransmit });
            self.on_retransmit_timeout(now, out);
        }
        if self.timers.persist <= now {
            self.timers.persist = NEVER;
            out.push(Output::TimerFired { socket: self.id, timer: TimerKind::Persist });
            if self.snd_wnd == 0 && self.state != State::Closed {
                self.probe_due = true;
                self.persist_backoff = (self.persist_backoff + 1).min(16);
            }
        }
    }

    /// A keepalive deadline: after `count` unanswered probes the peer is
    /// gone (ETIMEDOUT, `true`); else a probe, `<SEQ=SND.UNA-1><ACK=RCV.NXT>`
    /// with no text, which a live peer must answer with an ACK (RFC 9293
    /// section 3.8.4; BSD's tcp_timer_keep() sends it with tcp_respond()).
    fn on_keepalive(&mut self, now: u64, out: &mut Vec<Output>) -> bool {
        let Some(k) = self.extras.as_mut().and_then(|e| e.keepalive.as_mut()) else {
            return false;
        };
        if k.probes >= k.settings.count {
            self.fail(ConnError::TimedOut, Cause::Timer { timer: TimerKind::Keepalive }, "3.8.4", out);
            return true;
        }
        k.probes += 1;
        k.deadline = now.saturating_add(k.settings.interval_ms * 1_000_000);
        let probe = self.segment(self.snd_una - 1, Flags::ACK, Bytes::new());
        self.emit(probe, false, now, out);
        false
    }

    /// RFC 6298 section 5.4-5.6 and RFC 9293 section 3.8.3.
    fn on_retransmit_timeout(&mut self, now: u64, out: &mut Vec<Output>) {
        if self.snd_una == self.snd_nxt {
            return;
        }
        // Probing a zero window is not a failure to deliver (3.8.6.1): do not count it.
        if !(self.snd_wnd == 0 && self.state.is_synchronized()) {
            self.retries += 1;
        }
        if self.retries > self.profile.max_retries {
            self.fail(ConnError::TimedOut, Cause::Timer { timer: TimerKind::Retransmit }, "3.8.3", out);
            return;
        }
        self.rtt.back_off(self.rto_slop());
        self.rtt_probe = None;
        if !(self.snd_wnd == 0 && self.state.is_synchronized()) {
            let first = self.retries == 1;
            let synchronized = self.state.is_synchronized();
            self.cc.on_rto(self.profile.cc, self.flight_size(), self.smss(), first, synchronized);
        }
        // Resend from SND.UNA, as far as the collapsed window allows.
        self.snd_ptr = self.snd_una;
        // RFC 6582 section 4: leave recovery and remember how far we had sent.
        self.in_recovery = false;
        self.rexmit_due = false;
        self.dup_acks = 0;
        self.recover = self.snd_nxt;
        if self.snd_wnd == 0 && self.state.is_synchronized() {
            // The octet in flight is a window probe: send it again, beyond the window.
            self.probe_due = true;
        }
        self.timers.retransmit = now + self.rtt.rto;
    }

    // ----- sending -----

    /// Emits every segment that is due: SYN, data within the peer's window,
    /// FIN, a zero-window probe, or a pure ACK.
    pub fn dispatch(&mut self, now: u64, out: &mut Vec<Output>) {
        if self.state == State::Closed || self.state == State::Listen {
            return;
        }
        if matches!(self.state, State::SynSent | State::SynReceived) {
            if self.snd_ptr == self.iss {
                let syn = self.syn_segment(now);
                let retransmission = self.snd_nxt > self.iss;
                if !retransmission && self.state == State::SynSent {
                    self.arm_keepinit(now);
                }
                self.snd_ptr = self.iss + 1;
                self.snd_nxt = self.snd_nxt.max(self.snd_ptr);
                self.emit(syn, retransmission, now, out);
            } else if self.ack_pending && self.state == State::SynReceived {
                // An ACK owed in SYN-RECEIVED (e.g. an unacceptable segment).
                let ack = self.segment(self.snd_nxt, Flags::ACK, Bytes::new());
                self.emit(ack, false, now, out);
            }
            self.ack_pending = false;
            return;
        }
        if self.state == State::TimeWait {
            if self.ack_pending {
                let ack = self.segment(self.snd_nxt, Flags::ACK, Bytes::new());
                self.emit(ack, false, now, out);
            }
            return;
        }
        let may_send = !matches!(self.state, State::FinWait2);
        if may_send
            && self.snd_una == self.snd_nxt
            && !self.tx.is_empty()
            && self.cc.last_data_sent().is_some_and(|sent| now.saturating_sub(sent) > self.rtt.rto)
        {
            let before = self.congestion_view();
            self.cc.after_idle(self.initial_window());
            self.cc.on_data_sent(now);
            self.report_congestion(Some(before), out);
        }
        if self.rexmit_due {
            self.rexmit_due = false;
            self.retransmit_first(now, out);
        }
        if may_send {
            loop {
                let data_start = self.snd_una;
                let fin_at = data_start + self.tx.len() as u32;
                if self.snd_ptr > fin_at {
                    break; // everything, FIN included, is in flight
                }
                let offset = (self.snd_ptr - data_start) as usize;
                let available = self.tx.len() - offset;
                let window_end = self.snd_una + self.snd_wnd.min(self.congestion_allowance());
                let mut usable = if window_end > self.snd_ptr { (window_end - self.snd_ptr) as usize } else { 0 };
                if usable == 0 && self.probe_due && available > 0 {
                    usable = 1; // one octet beyond a zero window (3.8.6.1)
                }
                let len = available.min(usable).min(self.max_payload());
                let fin = self.fin_queued && offset + len == self.tx.len();
                if len == 0 && !fin {
                    break;
                }
                if self.holds_short_segment(available.min(usable), available, fin) {
                    break;
                }
                let payload = self.tx_slice(offset, len);
                let mut flags = Flags::ACK;
                if fin {
                    flags |= Flags::FIN;
                }
                if len > 0 && offset + len == self.tx.len() {
                    flags |= Flags::PSH;
                }
                let seq = self.snd_ptr;
                let seg = self.segment(seq, flags, payload);
                let seg_len = seg.seg_len();
                let retransmission = seq < self.snd_nxt;
                self.snd_ptr += seg_len;
                if self.snd_ptr > self.snd_nxt {
                    self.snd_nxt = self.snd_ptr;
                }
                if fin {
                    self.fin_seq = Some(fin_at);
                }
                if self.probe_due {
                    self.probe_due = false;
                }
                self.emit(seg, retransmission, now, out);
                if fin {
                    break;
                }
            }
        }
        if self.ack_pending || self.window_update_due() {
            match self.fin_seq.filter(|_| !self.fin_acked() && !self.challenge_only) {
                Some(fin) if self.profile.ack_repeats_fin.is_on() && self.snd_ptr > fin => {
                    // BSD: the ACK goes out as the FIN again.
                    let seg = self.segment(fin, Flags::FIN | Flags::ACK, Bytes::new());
                    self.emit(seg, true, now, out);
                }
                _ => {
                    let ack = self.segment(self.snd_nxt, Flags::ACK, Bytes::new());
                    self.emit(ack, false, now, out);
                }
            }
        }
        self.probe_due = false;
        // Arm the persist timer when data waits behind a zero window and nothing is in flight.
        if self.snd_wnd == 0 && !self.tx.is_empty() && self.snd_una == self.snd_nxt && self.timers.persist == NEVER {
            let interval =
                self.rtt.rto.saturating_mul(1 << self.persist_backoff).min(self.profile.rto_max_ms * 1_000_000);
            self.timers.persist = now + interval;
        }
    }

    /// Nagle's algorithm (RFC 9293 section 3.7.4, RFC 896) and the sender's
    /// silly window avoidance (section 3.8.6.2.1), as FreeBSD's tcp_output()
    /// decides: while data is unacknowledged, a new segment shorter than the
    /// MSS waits for the ACK, unless it carries the FIN, is at least half the
    /// largest window the peer offered, or (with TCP_NODELAY) empties the
    /// send queue. With nothing in flight it always leaves, so nothing waits
    /// for an ACK that will not come.
    fn holds_short_segment(&self, len: usize, available: usize, fin: bool) -> bool {
        let short = len > 0 && len < usize::from(self.snd_mss);
        let in_flight = self.snd_una != self.snd_nxt;
        let new_data = self.snd_ptr == self.snd_nxt;
        let half_window = self.max_snd_wnd > 0 && len as u32 >= self.max_snd_wnd / 2;
        let tail_without_nagle = self.nodelay && len == available;
        short && in_flight && new_data && !fin && !self.probe_due && !half_window && !tail_without_nagle
    }

    /// How far past SND.UNA congestion control lets the sender go: cwnd, plus
    /// with RFC 3042 limited transmit one SMSS for each of the first two
    /// duplicate ACKs.
    fn congestion_allowance(&self) -> u32 {
        let mut allowance = self.cc.cwnd;
        // RFC 3042 sends only data never sent before.
        let new_data = self.snd_ptr == self.snd_nxt;
        if self.profile.limited_transmit.is_on() && new_data && !self.in_recovery && (1..=2).contains(&self.dup_acks) {
            allowance = allowance.saturating_add(u32::from(self.dup_acks) * self.smss());
        }
        allowance
    }

    /// Resends the segment at SND.UNA (fast retransmit), leaving the send
    /// path where it is unless it would only resend the same octets.
    fn retransmit_first(&mut self, now: u64, out: &mut Vec<Output>) {
        if self.snd_una == self.snd_nxt || !self.state.is_synchronized() {
            return;
        }
        let len = self.tx.len().min(self.max_payload()).min(self.snd_wnd as usize);
        let fin = self.fin_seq == Some(self.snd_una + len as u32);
        if len == 0 && !fin {
            return;
        }
        let mut flags = Flags::ACK;
        if fin {
            flags |= Flags::FIN;
        }
        if len > 0 && len == self.tx.len() {
            flags |= Flags::PSH;
        }
        let payload = self.tx_slice(0, len);
        let seg = self.segment(self.snd_una, flags, payload);
        let end = self.snd_una + seg.seg_len();
        if self.snd_ptr < end {
            self.snd_ptr = end;
        }
        self.emit(seg, true, now, out);
    }

    /// Receiver-side silly window avoidance (RFC 9293 section 3.8.6.2.2):
    /// announce a larger window only once it grew by min(buffer/2, MSS).
    fn window_update_due(&self) -> bool {
        if !matches!(self.state, State::Established | State::FinWait1 | State::FinWait2) {
            return false;
        }
        let now_wnd = self.rcv_wnd();
        let threshold = (self.profile.window / 2).min(u32::from(self.profile.mss)).max(1);
        now_wnd > self.last_adv_wnd && now_wnd - self.last_adv_wnd >= threshold
    }

    fn tx_slice(&mut self, offset: usize, len: usize) -> Bytes {
        self.tx.slice(offset, len)
    }

    /// Our SYN or SYN+ACK with its options in BSD's order: MSS, Window
    /// Scale, SACK-permitted, Timestamps. A SYN offers what the profile
    /// offers; a SYN+ACK only what the peer's SYN offered too (RFC 7323
    /// sections 2.2 and 3.2, RFC 2018 section 2).
    fn syn_segment(&self, now: u64) -> Segment {
        let initiating = self.state == State::SynSent;
        let flags = if initiating { Flags::SYN } else { Flags::SYN | Flags::ACK };
        let mut seg = self.segment(self.iss, flags, Bytes::new());
        let mut options = vec![TcpOption::Mss { value: self.profile.mss }];
        // FreeBSD's rexmit_drop_options: from the third retransmission on, MSS alone.
        if initiating && self.profile.syn_rexmit_drop_options.is_on() && self.retries >= 3 {
            seg.options = options;
            return seg;
        }
        let wscale = if initiating { self.offered_wscale() } else { self.wscale_ok.then_some(self.rcv_wscale) };
        if let Some(value) = wscale {
            options.push(TcpOption::WindowScale { value });
        }
        if self.profile.sack.is_on() && (initiating || self.sack_permitted) {
            options.push(TcpOption::SackPermitted);
        }
        if (initiating && self.profile.timestamps.is_on()) || (!initiating && self.ts_ok) {
            let ecr = if initiating { 0 } else { self.ts_recent() };
            options.push(TcpOption::Timestamps { val: self.ts_now(now), ecr });
        }
        seg.options = bsd_layout(options);
        seg
    }

    /// A segment from this endpoint with ACK = RCV.NXT when the ACK bit is set
    /// and the current receive window.
    fn segment(&self, seq: SeqNumber, flags: Flags, payload: Bytes) -> Segment {
        let ack = if flags.contains(Flags::ACK) { self.rcv_nxt } else { SeqNumber(0) };
        // A reset advertises no window: the connection is gone. A SYN's
        // window is never scaled; the others are, rounded up so that the
        // window does not shrink (BSD's tcp_output()).
        let window = if flags.contains(Flags::RST) {
            0
        } else if flags.contains(Flags::SYN) {
            self.rcv_wnd().min(MAX_UNSCALED_WINDOW)
        } else {
            let unit = 1u32 << self.rcv_wscale;
            self.rcv_wnd().div_ceil(unit).min(MAX_UNSCALED_WINDOW)
        };
        let mut options = Vec::new();
        if flags.contains(Flags::ACK) && !flags.contains(Flags::SYN) && !flags.contains(Flags::RST) {
            if let Some(held) = self.held.as_ref().filter(|held| self.sack_permitted && !held.sacks.is_empty()) {
                // RFC 2018 section 3: as many blocks as fit in 40 octets
                // beside the timestamps that [`Tcb::emit`] adds.
                let room = if self.ts_ok { MAX_SACK_BLOCKS_SENT - 1 } else { MAX_SACK_BLOCKS_SENT };
                let blocks = held.sacks.blocks().iter().take(room);
                options.push(TcpOption::Sack { blocks: blocks.map(|b| (b.start.0, b.end.0)).collect() });
            }
            options = bsd_layout(options);
        }
        Segment {
            src_port: self.local_port,
            dst_port: self.remote_port,
            seq,
            ack,
            flags,
            window: window as u16,
            options,
            payload,
            ..Segment::default()
        }
    }

    fn emit(&mut self, mut segment: Segment, retransmission: bool, now: u64, out: &mut Vec<Output>) {
        let seg_len = segment.seg_len();
        let (syn, rst) = (segment.flags.contains(Flags::SYN), segment.flags.contains(Flags::RST));
        if self.ts_ok && !syn && !rst {
            // RFC 7323 section 3.2: once negotiated, every segment carries
            // TSval and (with ACK) TS.Recent as TSecr, before any SACK blocks.
            let ecr = if segment.flags.contains(Flags::ACK) { self.ts_recent() } else { 0 };
            let mut options = vec![TcpOption::Timestamps { val: self.ts_now(now), ecr }];
            options.extend(segment.options.drain(..).filter(|o| matches!(o, TcpOption::Sack { .. })));
            segment.options = bsd_layout(options);
        }
        if segment.flags.contains(Flags::ACK) {
            self.ack_pending = false;
            self.challenge_only = false;
            if self.ts_ok {
                self.extras_mut().last_ack_sent = segment.ack;
            }
            self.last_adv_wnd =
                if syn { u32::from(segment.window) } else { u32::from(segment.window) << self.rcv_wscale };
            // The ACK a delayed ACK waited for is this one.
            self.timers.delayed_ack = NEVER;
            if let Some(held) = self.held.as_mut() {
                // A D-SACK block is reported once (FreeBSD's tcp_output(): "Clean up any DSACK's sent").
                held.sacks.clean_dsack(self.rcv_nxt);
                self.release_held();
            }
        }
        if seg_len > 0 && !segment.flags.contains(Flags::RST) {
            if self.timers.retransmit == NEVER && self.snd_una != self.snd_nxt {
                self.timers.retransmit = now + self.rtt.rto;
            }
            if !segment.payload.is_empty() {
                self.cc.on_data_sent(now);
            }
            if retransmission {
                self.rtt_probe = None; // Karn's algorithm
            } else if self.rtt_probe.is_none() {
                self.rtt_probe = Some((segment.seq + seg_len, now));
            }
        }
        out.push(Output::Transmit { socket: Some(self.id), dst_ip: self.remote_ip, segment, retransmission });
    }

    // ----- state bookkeeping -----

    fn set_state(&mut self, to: State, cause: Cause, rfc: &'static str, out: &mut Vec<Output>) {
        if self.state == to {
            return;
        }
        let from = self.state;
        self.state = to;
        out.push(Output::StateChanged { socket: self.id, from, to, cause, rfc });
    }

    /// Sends a challenge ACK unless this second's quota (the profile's
    /// `challenge_ack_limit`, RFC 5961 section 7) is used up.
    fn challenge_ack(&mut self, now: u64) {
        let limit = self.profile.challenge_ack_limit;
        if limit > 0 {
            let (start, sent) = &mut self.challenge_window;
            if now.saturating_sub(*start) >= 1_000_000_000 {
                *start = now;
                *sent = 0;
            }
            if *sent >= limit {
                return;
            }
            *sent += 1;
        }
        self.challenge_only = !self.ack_pending;
        self.ack_pending = true;
    }

    fn fail(&mut self, error: ConnError, cause: Cause, rfc: &'static str, out: &mut Vec<Output>) {
        self.error = Some(error);
        out.push(Output::Error { socket: self.id, error });
        self.enter_closed(cause, rfc, out);
    }

    /// CLOSED: the TCB is deleted (its owner releases it); buffers and timers go.
    fn enter_closed(&mut self, cause: Cause, rfc: &'static str, out: &mut Vec<Output>) {
        self.timers = Deadlines::default();
        self.ack_pending = false;
        self.probe_due = false;
        self.fin_queued = false;
        self.tx = SendBuffer::default();
        self.held = None;
        self.extras = None;
        self.set_state(State::Closed, cause, rfc, out);
    }
}

#[cfg(test)]
mod size {
    /// An idle endpoint pays 16 octets for congestion control (cwnd,
    /// ssthresh and one pointer), 8 for the delayed-ACK deadline, 8 for the
    /// pointer to timestamp and keepalive state, 8 for the negotiated
    /// options' flags and shifts (one word of one-octet fields more) and 8
    /// for the RTO before its slop (FreeBSD doubles that, not the slop): a
    /// TCB is 392 octets, 344 before congestion control. What a sender needs
    /// beyond that comes with its first data segment; out-of-order data and
    /// SACK blocks share one pointer, null on an idle connection.
    #[test]
    fn an_idle_endpoint_pays_for_congestion_control_the_delayed_ack_and_two_pointers() {
        assert_eq!(std::mem::size_of::<super::Congestion>(), 16);
        assert_eq!(std::mem::size_of::<Option<Box<super::Held>>>(), 8);
        assert_eq!(std::mem::size_of::<Option<Box<super::Extras>>>(), 8);
        assert!(std::mem::size_of::<super::Tcb>() <= 392, "{}", std::mem::size_of::<super::Tcb>());
    }
}
