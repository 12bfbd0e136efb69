//! Conversions between the protobuf messages of [`pb`] and the service model
//! types ([`crate::service::model`]).
//!
//! Request messages become model requests with `TryFrom` (an enum number
//! the `.proto` does not define, an UNSPECIFIED value where one is required,
//! a number wider than the model's, or JSON text can be bad: the error is
//! INVALID_ARGUMENT naming the field as the `.proto` spells it); model
//! replies become messages with `From`. Nothing here validates what the
//! service validates: ranges, limits and names of hosts are its job.
//!
//! Every enum has one function each way it is needed (`side_from_pb`,
//! `side_to_pb`, ...), each an exhaustive `match`: a variant added on either
//! side does not compile until it is mapped. No enum goes through its name.
//! The pb → model conversions destructure the message, so a field added to
//! the `.proto` does not compile until it is converted.

use base64::Engine as _;
use serde::Serialize;

use super::pb;
use crate::engine::{
    Cause, CcAlgorithm, CcPhase, ConnError, Flags, Handshake, InitialWindow, Isn, Keepalive, Profile, State, Switch,
    TcpOption, TimerKind, UserCall, WindowScale,
};
use crate::service::model::*;
use crate::service::packetdrill::ScriptVerdict;
use crate::service::{Error, LiveEvent};
use crate::sim::{CloseHow, DropReason, Event, EventKind, Fate, FaultAction, HostKind, Side, WireSegment};

/// The serde form of a typed value (a profile's handshake, switch or ISN), to
/// pass it on in REST's spelling. Model values always serialise; `null`
/// otherwise, which the profile then refuses naming the field.
fn serde_value<T: Serialize>(value: &T) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or_default()
}

/// JSON text of a model value, for the `json` fields. Model types always
/// serialise; the fallback only keeps the field valid JSON.
fn json_text<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "{}".to_owned())
}

/// A `uint32` port (or MSS) of a message as the model's `u16`.
fn port16(field: &str, value: Option<u32>) -> Result<Option<u16>, Error> {
    value
        .map(|v| u16::try_from(v).map_err(|_| Error::invalid(field, format!("must be at most 65535, got {v}"))))
        .transpose()
}

// ----- enums: the wire's i32 -----

/// The enum value an `i32` field holds; a number the `.proto` does not
/// define (a newer or a broken client) is INVALID_ARGUMENT on `field`.
fn decode<E: TryFrom<i32>>(field: &str, value: i32) -> Result<E, Error> {
    E::try_from(value).map_err(|_| Error::invalid(field, format!("unknown enum value {value}")))
}

/// A required enum field: UNSPECIFIED (`None` from its `*_from_pb`) is
/// INVALID_ARGUMENT saying what it takes.
fn required<T>(field: &str, value: Option<T>, takes: &str) -> Result<T, Error> {
    value.ok_or_else(|| Error::invalid(field, format!("required: one of {takes}")))
}

/// A `repeated` enum field's numbers as enum values.
fn decode_all<E: TryFrom<i32>>(field: &str, values: &[i32]) -> Result<Vec<E>, Error> {
    values.iter().map(|v| decode(field, *v)).collect()
}

// ----- enums, one function each way -----

/// `None` for SIDE_UNSPECIFIED.
pub fn side_from_pb(side: pb::Side) -> Option<Side> {
    match side {
        pb::Side::Unspecified => None,
        pb::Side::Client => Some(Side::Client),
        pb::Side::Server => Some(Side::Server),
    }
}

/// A side as the message's `i32`.
fn side_to_pb(side: Side) -> i32 {
    match side {
        Side::Client => pb::Side::Client,
        Side::Server => pb::Side::Server,
    }
    .into()
}

/// An optional side (a listener's transition has none) as the message's `i32`.
fn maybe_side_to_pb(side: Option<Side>) -> i32 {
    side.map_or(pb::Side::Unspecified.into(), side_to_pb)
}

/// A required `Side side` field.
pub fn parse_side(side: i32) -> Result<Side, Error> {
    required("side", side_from_pb(decode("side", side)?), "SIDE_CLIENT, SIDE_SERVER")
}

/// An optional `CloseHow how` field: unset is a shutdown of the sending side.
pub fn parse_close_how(how: i32) -> Result<CloseHow, Error> {
    Ok(match decode("how", how)? {
        pb::CloseHow::Unspecified | pb::CloseHow::ShutdownWrite => CloseHow::ShutdownWrite,
        pb::CloseHow::Close => CloseHow::Close,
    })
}

/// A state as the message's `i32`.
fn state_to_pb(state: State) -> i32 {
    match state {
        State::Closed => pb::State::Closed,
        State::Listen => pb::State::Listen,
        State::SynSent => pb::State::SynSent,
        State::SynReceived => pb::State::SynReceived,
        State::Established => pb::State::Established,
        State::FinWait1 => pb::State::FinWait1,
        State::FinWait2 => pb::State::FinWait2,
        State::CloseWait => pb::State::CloseWait,
        State::Closing => pb::State::Closing,
        State::LastAck => pb::State::LastAck,
        State::TimeWait => pb::State::TimeWait,
    }
    .into()
}

/// The bit of one flag; `None` for FLAG_UNSPECIFIED.
fn flag_from_pb(flag: pb::Flag) -> Option<Flags> {
    match flag {
        pb::Flag::Unspecified => None,
        pb::Flag::Fin => Some(Flags::FIN),
        pb::Flag::Syn => Some(Flags::SYN),
        pb::Flag::Rst => Some(Flags::RST),
        pb::Flag::Psh => Some(Flags::PSH),
        pb::Flag::Ack => Some(Flags::ACK),
        pb::Flag::Urg => Some(Flags::URG),
        pb::Flag::Ece => Some(Flags::ECE),
        pb::Flag::Cwr => Some(Flags::CWR),
    }
}

/// The flags in header order, as REST lists them (`Flags::NAMES`).
const HEADER_ORDER: [pb::Flag; 8] = [
    pb::Flag::Cwr,
    pb::Flag::Ece,
    pb::Flag::Urg,
    pb::Flag::Ack,
    pb::Flag::Psh,
    pb::Flag::Rst,
    pb::Flag::Syn,
    pb::Flag::Fin,
];

/// A set of flags as `repeated Flag`, in header order.
fn flags_to_pb(flags: Flags) -> Vec<i32> {
    HEADER_ORDER
        .into_iter()
        .filter(|f| flag_from_pb(*f).is_some_and(|bit| flags.contains(bit)))
        .map(i32::from)
        .collect()
}

/// A `repeated Flag` as a set (any order; FLAG_UNSPECIFIED is refused).
fn flags_from_pb(field: &str, flags: &[i32]) -> Result<Flags, Error> {
    decode_all::<pb::Flag>(field, flags)?.into_iter().try_fold(Flags::NONE, |set, f| {
        Ok(set | required(field, flag_from_pb(f), "FLAG_FIN, FLAG_SYN, FLAG_RST, FLAG_PSH, FLAG_ACK, ...")?)
    })
}

/// `None` for FAULT_ACTION_UNSPECIFIED.
fn fault_action_from_pb(action: pb::FaultAction) -> Option<FaultAction> {
    match action {
        pb::FaultAction::Unspecified => None,
        pb::FaultAction::Drop => Some(FaultAction::Drop),
        pb::FaultAction::Delay => Some(FaultAction::Delay),
        pb::FaultAction::Duplicate => Some(FaultAction::Duplicate),
        pb::FaultAction::Corrupt => Some(FaultAction::Corrupt),
        pb::FaultAction::Hold => Some(FaultAction::Hold),
    }
}

/// A fault action as the message's `i32`.
fn fault_action_to_pb(action: FaultAction) -> i32 {
    match action {
        FaultAction::Drop => pb::FaultAction::Drop,
        FaultAction::Delay => pb::FaultAction::Delay,
        FaultAction::Duplicate => pb::FaultAction::Duplicate,
        FaultAction::Corrupt => pb::FaultAction::Corrupt,
        FaultAction::Hold => pb::FaultAction::Hold,
    }
    .into()
}

/// `None` for CLOCK_ACTION_UNSPECIFIED.
fn clock_action_from_pb(action: pb::ClockAction) -> Option<ClockAction> {
    match action {
        pb::ClockAction::Unspecified => None,
        pb::ClockAction::Step => Some(ClockAction::Step),
        pb::ClockAction::Advance => Some(ClockAction::Advance),
        pb::ClockAction::RunUntilIdle => Some(ClockAction::RunUntilIdle),
        pb::ClockAction::Pause => Some(ClockAction::Pause),
        pb::ClockAction::Resume => Some(ClockAction::Resume),
        pb::ClockAction::SetSpeed => Some(ClockAction::SetSpeed),
    }
}

/// `None` (the default, manual) for CLOCK_MODE_UNSPECIFIED.
fn clock_mode_from_pb(mode: pb::ClockMode) -> Option<ClockMode> {
    match mode {
        pb::ClockMode::Unspecified => None,
        pb::ClockMode::Manual => Some(ClockMode::Manual),
        pb::ClockMode::Realtime => Some(ClockMode::Realtime),
    }
}

/// A clock mode as the message's `i32`.
fn clock_mode_to_pb(mode: ClockMode) -> i32 {
    match mode {
        ClockMode::Manual => pb::ClockMode::Manual,
        ClockMode::Realtime => pb::ClockMode::Realtime,
    }
    .into()
}

/// `None` (the default, tcp) for HOST_KIND_UNSPECIFIED.
fn host_kind_from_pb(kind: pb::HostKind) -> Option<HostKind> {
    match kind {
        pb::HostKind::Unspecified => None,
        pb::HostKind::Tcp => Some(HostKind::Tcp),
        pb::HostKind::Raw => Some(HostKind::Raw),
    }
}

/// A host kind as the message's `i32`.
fn host_kind_to_pb(kind: HostKind) -> i32 {
    match kind {
        HostKind::Tcp => pb::HostKind::Tcp,
        HostKind::Raw => pb::HostKind::Raw,
    }
    .into()
}

/// Why a call stopped early (UNSPECIFIED: it did not) as the message's `i32`.
pub(super) fn stop_reason_to_pb(reason: Option<StopReason>) -> i32 {
    match reason {
        None => pb::StopReason::Unspecified,
        Some(StopReason::Events) => pb::StopReason::Events,
        Some(StopReason::Time) => pb::StopReason::Time,
        Some(StopReason::Limit) => pb::StopReason::Limit,
    }
    .into()
}

/// A session's status as the message's `i32`. The service has it as the
/// store's column text (`live`, `ended`), the one enum read from a string.
fn session_status_to_pb(status: &str) -> i32 {
    match status {
        "live" => pb::SessionStatus::Live,
        "ended" => pb::SessionStatus::Ended,
        _ => pb::SessionStatus::Unspecified,
    }
    .into()
}

/// A fate as the message's `i32`.
fn fate_to_pb(fate: Fate) -> i32 {
    match fate {
        Fate::InFlight => pb::Fate::InFlight,
        Fate::Delivered => pb::Fate::Delivered,
        Fate::Lost => pb::Fate::Lost,
        Fate::Corrupted => pb::Fate::Corrupted,
        Fate::Dropped => pb::Fate::Dropped,
        Fate::Held => pb::Fate::Held,
        Fate::Duplicated => pb::Fate::Duplicated,
        Fate::Delayed => pb::Fate::Delayed,
        Fate::Released => pb::Fate::Released,
    }
    .into()
}

/// A drop reason (UNSPECIFIED: not dropped) as the message's `i32`.
fn drop_reason_to_pb(reason: Option<DropReason>) -> i32 {
    match reason {
        None => pb::DropReason::Unspecified,
        Some(DropReason::Loss) => pb::DropReason::Loss,
        Some(DropReason::Fault) => pb::DropReason::Fault,
        Some(DropReason::BadChecksum) => pb::DropReason::BadChecksum,
        Some(DropReason::NoListener) => pb::DropReason::NoListener,
        Some(DropReason::NoRoute) => pb::DropReason::NoRoute,
        Some(DropReason::Malformed) => pb::DropReason::Malformed,
        Some(DropReason::Backlog) => pb::DropReason::Backlog,
        Some(DropReason::QueueFull) => pb::DropReason::QueueFull,
    }
    .into()
}

/// A timer as the message's `i32`.
fn timer_kind_to_pb(timer: TimerKind) -> i32 {
    match timer {
        TimerKind::Retransmit => pb::TimerKind::Retransmit,
        TimerKind::TimeWait => pb::TimerKind::TimeWait,
        TimerKind::Persist => pb::TimerKind::Persist,
        TimerKind::DelayedAck => pb::TimerKind::DelayedAck,
        TimerKind::Keepalive => pb::TimerKind::Keepalive,
    }
    .into()
}

/// A connection error (UNSPECIFIED: none) as the message's `i32`.
fn conn_error_to_pb(error: Option<ConnError>) -> i32 {
    match error {
        None => pb::ConnError::Unspecified,
        Some(ConnError::Reset) => pb::ConnError::Econnreset,
        Some(ConnError::Refused) => pb::ConnError::Econnrefused,
        Some(ConnError::TimedOut) => pb::ConnError::Etimedout,
    }
    .into()
}

/// A user call as the message's `i32`.
fn user_call_to_pb(call: UserCall) -> i32 {
    match call {
        UserCall::Open => pb::UserCall::Open,
        UserCall::Send => pb::UserCall::Send,
        UserCall::Receive => pb::UserCall::Receive,
        UserCall::Close => pb::UserCall::Close,
        UserCall::Abort => pb::UserCall::Abort,
    }
    .into()
}

/// The service's name for a kind in a filter; `None` for EVENT_KIND_UNSPECIFIED.
fn event_kind_from_pb(kind: pb::EventKind) -> Option<&'static str> {
    match kind {
        pb::EventKind::Unspecified => None,
        pb::EventKind::StateChanged => Some("state_changed"),
        pb::EventKind::SegmentSent => Some("segment_sent"),
        pb::EventKind::SegmentDelivered => Some("segment_delivered"),
        pb::EventKind::SegmentDropped => Some("segment_dropped"),
        pb::EventKind::SegmentDuplicated => Some("segment_duplicated"),
        pb::EventKind::SegmentDelayed => Some("segment_delayed"),
        pb::EventKind::SegmentHeld => Some("segment_held"),
        pb::EventKind::SegmentReleased => Some("segment_released"),
        pb::EventKind::TimerFired => Some("timer_fired"),
        pb::EventKind::ConnectionError => Some("connection_error"),
        pb::EventKind::CongestionChanged => Some("congestion_changed"),
        pb::EventKind::SegmentQueued => Some("segment_queued"),
    }
}

/// An event's kind as the message's `i32`.
fn event_kind_to_pb(kind: &EventKind) -> i32 {
    match kind {
        EventKind::StateChanged { .. } => pb::EventKind::StateChanged,
        EventKind::SegmentSent { .. } => pb::EventKind::SegmentSent,
        EventKind::SegmentDelivered { .. } => pb::EventKind::SegmentDelivered,
        EventKind::SegmentDropped { .. } => pb::EventKind::SegmentDropped,
        EventKind::SegmentDuplicated { .. } => pb::EventKind::SegmentDuplicated,
        EventKind::SegmentDelayed { .. } => pb::EventKind::SegmentDelayed,
        EventKind::SegmentHeld { .. } => pb::EventKind::SegmentHeld,
        EventKind::SegmentReleased { .. } => pb::EventKind::SegmentReleased,
        EventKind::TimerFired { .. } => pb::EventKind::TimerFired,
        EventKind::ConnectionError { .. } => pb::EventKind::ConnectionError,
        EventKind::CongestionChanged { .. } => pb::EventKind::CongestionChanged,
        EventKind::SegmentQueued { .. } => pb::EventKind::SegmentQueued,
    }
    .into()
}

/// `None` (keep the base's) for HANDSHAKE_UNSPECIFIED.
fn handshake_from_pb(handshake: pb::Handshake) -> Option<Handshake> {
    match handshake {
        pb::Handshake::Unspecified => None,
        pb::Handshake::ThreeWay => Some(Handshake::ThreeWay),
        pb::Handshake::TwoWay => Some(Handshake::TwoWay),
    }
}

/// A handshake mode as the message's `i32`.
fn handshake_to_pb(handshake: Handshake) -> i32 {
    match handshake {
        Handshake::ThreeWay => pb::Handshake::ThreeWay,
        Handshake::TwoWay => pb::Handshake::TwoWay,
    }
    .into()
}

/// `None` (keep the base's) for CC_ALGORITHM_UNSPECIFIED.
fn cc_from_pb(cc: pb::CcAlgorithm) -> Option<CcAlgorithm> {
    match cc {
        pb::CcAlgorithm::Unspecified => None,
        pb::CcAlgorithm::Newreno => Some(CcAlgorithm::NewReno),
        pb::CcAlgorithm::Reno => Some(CcAlgorithm::Reno),
        pb::CcAlgorithm::Cubic => Some(CcAlgorithm::Cubic),
    }
}

/// An algorithm as the message's `i32`.
fn cc_to_pb(cc: CcAlgorithm) -> i32 {
    match cc {
        CcAlgorithm::NewReno => pb::CcAlgorithm::Newreno,
        CcAlgorithm::Reno => pb::CcAlgorithm::Reno,
        CcAlgorithm::Cubic => pb::CcAlgorithm::Cubic,
    }
    .into()
}

/// A phase as the message's `i32`.
fn cc_phase_to_pb(phase: CcPhase) -> i32 {
    match phase {
        CcPhase::SlowStart => pb::CcPhase::SlowStart,
        CcPhase::CongestionAvoidance => pb::CcPhase::CongestionAvoidance,
        CcPhase::FastRecovery => pb::CcPhase::FastRecovery,
    }
    .into()
}

/// The profile's initial window as the `initial_window` oneof.
fn initial_window_to_pb(iw: InitialWindow) -> pb::profile::InitialWindow {
    match iw {
        InitialWindow::Rfc5681 => pb::profile::InitialWindow::Rfc5681InitialWindow(true),
        InitialWindow::Segments(n) => pb::profile::InitialWindow::InitialWindowSegments(n),
    }
}

/// The `initial_window` oneof in REST's spelling (`rfc5681_initial_window: false` is refused).
fn initial_window_from_pb(iw: pb::profile::InitialWindow) -> Result<serde_json::Value, Error> {
    match iw {
        pb::profile::InitialWindow::Rfc5681InitialWindow(true) => Ok(serde_json::Value::from("rfc5681")),
        pb::profile::InitialWindow::Rfc5681InitialWindow(false) => Err(Error::invalid(
            "profile.rfc5681_initial_window",
            "only true is meaningful; set initial_window_segments for a number of segments",
        )),
        pb::profile::InitialWindow::InitialWindowSegments(n) => Ok(serde_json::Value::from(n)),
    }
}

fn window_scale_to_pb(ws: WindowScale) -> pb::profile::WindowScale {
    match ws {
        WindowScale::Off => pb::profile::WindowScale::WindowScaleOff(true),
        WindowScale::Auto => pb::profile::WindowScale::WindowScaleAuto(true),
        WindowScale::Shift(n) => pb::profile::WindowScale::WindowScaleShift(u32::from(n)),
    }
}

/// The `window_scale` oneof in REST's spelling (`false` for off or auto is refused).
fn window_scale_from_pb(ws: pb::profile::WindowScale) -> Result<serde_json::Value, Error> {
    use pb::profile::WindowScale as W;
    match ws {
        W::WindowScaleOff(true) => Ok(serde_json::Value::from("off")),
        W::WindowScaleAuto(true) => Ok(serde_json::Value::from("auto")),
        W::WindowScaleOff(false) => Err(Error::invalid("profile.window_scale_off", "only true is meaningful")),
        W::WindowScaleAuto(false) => Err(Error::invalid("profile.window_scale_auto", "only true is meaningful")),
        W::WindowScaleShift(n) => Ok(serde_json::Value::from(n)),
    }
}

/// REST's `"on"` / `"off"` as a proto `bool` (true = on).
fn switch_to_pb(switch: Switch) -> bool {
    match switch {
        Switch::On => true,
        Switch::Off => false,
    }
}

/// A proto `bool` as REST's switch.
fn switch_from_pb(on: bool) -> Switch {
    if on { Switch::On } else { Switch::Off }
}

/// The profile's ISN choice as the `isn` oneof.
fn isn_to_pb(isn: Isn) -> pb::profile::Isn {
    match isn {
        Isn::Random => pb::profile::Isn::RandomIsn(true),
        Isn::Fixed(n) => pb::profile::Isn::FixedIsn(n),
    }
}

/// The `isn` oneof as the profile's ISN choice (`random_isn: false` means nothing: refused).
fn isn_from_pb(isn: pb::profile::Isn) -> Result<Isn, Error> {
    match isn {
        pb::profile::Isn::RandomIsn(true) => Ok(Isn::Random),
        pb::profile::Isn::RandomIsn(false) => {
            Err(Error::invalid("profile.random_isn", "only true is meaningful; set fixed_isn for a fixed ISN"))
        }
        pb::profile::Isn::FixedIsn(n) => Ok(Isn::Fixed(n)),
    }
}

/// A packetdrill verdict as the message's `i32`.
fn verdict_to_pb(verdict: ScriptVerdict) -> i32 {
    match verdict {
        ScriptVerdict::Pass => pb::Verdict::Pass,
        ScriptVerdict::Fail => pb::Verdict::Fail,
        ScriptVerdict::Skip => pb::Verdict::Skip,
    }
    .into()
}

/// The service's comma-separated kind filter from a `repeated EventKind
/// kinds` (`None`, meaning every kind, when empty); UNSPECIFIED is
/// INVALID_ARGUMENT on `kinds`.
pub fn kinds_filter(kinds: &[i32]) -> Result<Option<String>, Error> {
    let names = decode_all::<pb::EventKind>("kinds", kinds)?
        .into_iter()
        .map(|k| required("kinds", event_kind_from_pb(k), "EVENT_KIND_STATE_CHANGED, EVENT_KIND_SEGMENT_SENT, ..."))
        .collect::<Result<Vec<_>, Error>>()?;
    Ok((!names.is_empty()).then(|| names.join(",")))
}

/// Renames the field of an INVALID_ARGUMENT error where the service's name
/// for it (REST's) differs from the `.proto`'s (`options` vs
/// `options_json`), so the message names the field this client actually sent.
pub fn renamed(error: Error, rest: &str, proto: &str) -> Error {
    match error {
        Error::InvalidArgument { field, message } if field == rest => {
            Error::InvalidArgument { field: proto.into(), message }
        }
        other => other,
    }
}

// ----- requests: pb → model -----

impl TryFrom<pb::Profile> for Profile {
    type Error = Error;

    /// The fields set are the overrides of [`crate::profiles::with_overrides`],
    /// as REST's `profile` object is: unset fields keep the base's values.
    /// Each typed value is given in REST's spelling (its serde form), so both
    /// APIs merge and validate through the one function.
    fn try_from(p: pb::Profile) -> Result<Profile, Error> {
        let settings = profile_settings(p)?;
        crate::profiles::with_overrides(&Profile::default(), settings).map_err(|e| Error::invalid(e.field, e.message))
    }
}

/// The fields a `Profile` message sets, as REST's `profile` object names
/// them (`name` included when set): what [`crate::profiles::with_overrides`]
/// and PATCH .../profile take.
///
/// # Errors
/// A value out of its type's range (an MSS over 65535, an unknown enum).
pub fn profile_settings(p: pb::Profile) -> Result<serde_json::Map<String, serde_json::Value>, Error> {
    {
        use serde_json::Value;
        // Every field by name (the destructuring is exhaustive: a new proto
        // field that is not passed on does not compile).
        let pb::Profile {
            name,
            handshake,
            time_wait,
            msl_ms,
            isn,
            mss,
            window,
            send_buffer,
            rto_initial_ms,
            rto_min_ms,
            rto_max_ms,
            max_retries,
            rfc5961,
            rfc5961_rst,
            rfc5961_syn,
            drop_synfin,
            syn_reset_acks,
            ack_repeats_fin,
            rcv_window_from_buffer,
            challenge_ack_limit,
            listen_drops_syn_ack,
            time_wait_acks_all,
            cc,
            initial_window,
            limited_transmit,
            sack,
            delayed_ack,
            delayed_ack_ms,
            window_scale,
            timestamps,
            rto_slop_ms,
            keepinit_ms,
            syn_rexmit_drop_options,
            old_segment_acks,
        } = p;
        let switch = |on: Option<bool>| on.map(|on| serde_value(&switch_from_pb(on)));
        let handshake = handshake_from_pb(decode("profile.handshake", handshake)?);
        let isn = isn.map(isn_from_pb).transpose()?;
        let cc = cc_from_pb(decode("profile.cc", cc)?);
        let initial_window = initial_window.map(initial_window_from_pb).transpose()?;
        let window_scale = window_scale.map(window_scale_from_pb).transpose()?;
        let fields: [(&str, Option<Value>); 34] = [
            ("name", name.map(Value::from)),
            ("handshake", handshake.map(|h| serde_value(&h))),
            ("time_wait", switch(time_wait)),
            ("msl_ms", msl_ms.map(Value::from)),
            ("isn", isn.map(|i| serde_value(&i))),
            ("mss", port16("profile.mss", mss)?.map(Value::from)),
            ("window", window.map(Value::from)),
            ("send_buffer", send_buffer.map(Value::from)),
            ("rto_initial_ms", rto_initial_ms.map(Value::from)),
            ("rto_min_ms", rto_min_ms.map(Value::from)),
            ("rto_max_ms", rto_max_ms.map(Value::from)),
            ("max_retries", max_retries.map(Value::from)),
            ("rfc5961", switch(rfc5961)),
            ("rfc5961_rst", switch(rfc5961_rst)),
            ("rfc5961_syn", switch(rfc5961_syn)),
            ("drop_synfin", switch(drop_synfin)),
            ("syn_reset_acks", switch(syn_reset_acks)),
            ("ack_repeats_fin", switch(ack_repeats_fin)),
            ("rcv_window_from_buffer", switch(rcv_window_from_buffer)),
            ("challenge_ack_limit", challenge_ack_limit.map(Value::from)),
            ("listen_drops_syn_ack", switch(listen_drops_syn_ack)),
            ("time_wait_acks_all", switch(time_wait_acks_all)),
            ("cc", cc.map(|c| serde_value(&c))),
            ("initial_window", initial_window),
            ("limited_transmit", switch(limited_transmit)),
            ("sack", switch(sack)),
            ("delayed_ack", switch(delayed_ack)),
            ("delayed_ack_ms", delayed_ack_ms.map(Value::from)),
            ("window_scale", window_scale),
            ("timestamps", switch(timestamps)),
            ("rto_slop_ms", rto_slop_ms.map(Value::from)),
            ("keepinit_ms", keepinit_ms.map(Value::from)),
            ("syn_rexmit_drop_options", switch(syn_rexmit_drop_options)),
            ("old_segment_acks", switch(old_segment_acks)),
        ];
        Ok(fields.into_iter().filter_map(|(k, v)| Some((k.to_string(), v?))).collect())
    }
}

impl TryFrom<pb::CreateSessionRequest> for CreateSession {
    type Error = Error;

    fn try_from(r: pb::CreateSessionRequest) -> Result<CreateSession, Error> {
        let pb::CreateSessionRequest { name, seed, clock, speed, profile } = r;
        Ok(CreateSession {
            name,
            seed,
            clock: clock_mode_from_pb(decode("clock", clock)?),
            speed,
            profile: profile.map(Profile::try_from).transpose()?,
        })
    }
}

impl From<pb::ListSessionsRequest> for Page {
    fn from(r: pb::ListSessionsRequest) -> Page {
        let pb::ListSessionsRequest { offset, limit } = r;
        Page { offset, limit }
    }
}

impl TryFrom<pb::AddHostRequest> for AddHost {
    type Error = Error;

    fn try_from(r: pb::AddHostRequest) -> Result<AddHost, Error> {
        let pb::AddHostRequest { session_id: _, name, ip, kind } = r;
        Ok(AddHost { name, ip, kind: host_kind_from_pb(decode("kind", kind)?) })
    }
}

impl From<pb::SetLinkRequest> for SetLink {
    fn from(r: pb::SetLinkRequest) -> SetLink {
        let pb::SetLinkRequest {
            session_id: _,
            a,
            b,
            latency_ms,
            jitter_ms,
            loss,
            duplicate,
            reorder,
            corrupt,
            bandwidth_bps,
            queue_bytes,
            queue_packets,
            bottleneck,
        } = r;
        SetLink {
            a,
            b,
            latency_ms,
            jitter_ms,
            loss,
            duplicate,
            reorder,
            corrupt,
            bandwidth_bps,
            queue_bytes,
            queue_packets,
            bottleneck,
        }
    }
}

/// A `Keepalive` message: unset fields at their defaults (2 h, 75 s, 9).
fn keepalive_from_pb(k: pb::Keepalive) -> Keepalive {
    let pb::Keepalive { idle_ms, interval_ms, count } = k;
    let d = Keepalive::default();
    Keepalive {
        idle_ms: idle_ms.unwrap_or(d.idle_ms),
        interval_ms: interval_ms.unwrap_or(d.interval_ms),
        count: count.unwrap_or(d.count),
    }
}

impl From<pb::AddListenerRequest> for AddListener {
    fn from(r: pb::AddListenerRequest) -> AddListener {
        let pb::AddListenerRequest { session_id: _, host, port, isn, backlog, nodelay, keepalive } = r;
        AddListener { host, port, isn, backlog, nodelay, keepalive: keepalive.map(keepalive_from_pb) }
    }
}

impl From<pb::OpenConnectionRequest> for OpenConnection {
    fn from(r: pb::OpenConnectionRequest) -> OpenConnection {
        let pb::OpenConnectionRequest { session_id: _, client, server, port, client_port, isn, nodelay, keepalive } = r;
        OpenConnection { client, server, port, client_port, isn, nodelay, keepalive: keepalive.map(keepalive_from_pb) }
    }
}

impl TryFrom<pb::SendRequest> for SendData {
    type Error = Error;

    /// `bytes data` travels as base64, the model's binary form, so that the
    /// service's one `send` handles both APIs.
    fn try_from(r: pb::SendRequest) -> Result<SendData, Error> {
        let pb::SendRequest { session_id: _, connection_id: _, side, data } = r;
        Ok(SendData {
            side: parse_side(side)?,
            data: None,
            data_base64: Some(base64::engine::general_purpose::STANDARD.encode(data)),
        })
    }
}

impl TryFrom<pb::FaultMatch> for FaultMatch {
    type Error = Error;

    /// `flags` is matched when `match_flags` is set (then `[]` means "no
    /// flags") or when it is non-empty; `seq_from`/`seq_to` go together.
    fn try_from(m: pb::FaultMatch) -> Result<FaultMatch, Error> {
        let pb::FaultMatch { flags, len, seq, ack, src_port, dst_port, seq_from, seq_to, match_flags } = m;
        let seq_range = match (seq_from, seq_to) {
            (Some(from), Some(to)) => Some([from, to]),
            (None, None) => None,
            (Some(_), None) => return Err(Error::invalid("match.seq_to", "needed with match.seq_from")),
            (None, Some(_)) => return Err(Error::invalid("match.seq_from", "needed with match.seq_to")),
        };
        Ok(FaultMatch {
            flags: (match_flags || !flags.is_empty()).then(|| flags_from_pb("match.flags", &flags)).transpose()?,
            len,
            seq,
            seq_range,
            ack,
            src_port: port16("match.src_port", src_port)?,
            dst_port: port16("match.dst_port", dst_port)?,
        })
    }
}

impl TryFrom<pb::AddFaultRequest> for AddFault {
    type Error = Error;

    fn try_from(r: pb::AddFaultRequest) -> Result<AddFault, Error> {
        let pb::AddFaultRequest { session_id: _, src, dst, r#match, skip, count, action, delay_ms } = r;
        let action = required(
            "action",
            fault_action_from_pb(decode("action", action)?),
            "FAULT_ACTION_DROP, FAULT_ACTION_DELAY, FAULT_ACTION_DUPLICATE, FAULT_ACTION_CORRUPT, FAULT_ACTION_HOLD",
        )?;
        Ok(AddFault {
            from: src,
            to: dst,
            matcher: r#match.map(FaultMatch::try_from).transpose()?,
            skip,
            count,
            action,
            delay_ms,
        })
    }
}

impl TryFrom<pb::InjectRequest> for Inject {
    type Error = Error;

    /// Host names with separate ports; `bytes payload` as base64; non-empty
    /// `options_json` as REST's `options` array.
    fn try_from(r: pb::InjectRequest) -> Result<Inject, Error> {
        let pb::InjectRequest {
            session_id: _,
            src,
            src_port,
            dst,
            dst_port,
            flags,
            seq,
            ack,
            window,
            payload,
            delay_ms,
            urgent,
            options_json,
        } = r;
        let options = if options_json.trim().is_empty() {
            Vec::new()
        } else {
            serde_json::from_str::<Vec<TcpOption>>(&options_json)
                .map_err(|e| Error::invalid("options_json", e.to_string()))?
        };
        Ok(Inject {
            from: InjectEndpoint::Host(src),
            to: InjectEndpoint::Host(dst),
            src_port: Some(src_port),
            dst_port: Some(dst_port),
            flags: flags_from_pb("flags", &flags)?,
            seq,
            ack,
            window,
            urgent,
            payload: None,
            payload_base64: (!payload.is_empty()).then(|| base64::engine::general_purpose::STANDARD.encode(&payload)),
            options,
            delay_ms,
        })
    }
}

impl TryFrom<pb::ClockRequest> for ClockRequest {
    type Error = Error;

    fn try_from(r: pb::ClockRequest) -> Result<ClockRequest, Error> {
        let pb::ClockRequest { session_id: _, action, ms, speed, max_events, max_ms } = r;
        let action = required(
            "action",
            clock_action_from_pb(decode("action", action)?),
            "CLOCK_ACTION_STEP, CLOCK_ACTION_ADVANCE, CLOCK_ACTION_RUN_UNTIL_IDLE, CLOCK_ACTION_PAUSE, \
             CLOCK_ACTION_RESUME, CLOCK_ACTION_SET_SPEED",
        )?;
        Ok(ClockRequest { action, ms, speed, max_events, max_ms })
    }
}

impl TryFrom<pb::ListEventsRequest> for EventQuery {
    type Error = Error;

    fn try_from(r: pb::ListEventsRequest) -> Result<EventQuery, Error> {
        let pb::ListEventsRequest { session_id: _, after_seq, limit, kinds, connection } = r;
        Ok(EventQuery { after_seq, limit, kind: kinds_filter(&kinds)?, connection })
    }
}

// ----- replies: model → pb -----

impl From<Profile> for pb::Profile {
    /// Every setting (`name` unset: a resolved profile has no base).
    fn from(p: Profile) -> pb::Profile {
        let Profile {
            handshake,
            time_wait,
            msl_ms,
            isn,
            mss,
            window,
            send_buffer,
            rto_initial_ms,
            rto_min_ms,
            rto_max_ms,
            max_retries,
            rfc5961,
            rfc5961_rst,
            rfc5961_syn,
            drop_synfin,
            syn_reset_acks,
            ack_repeats_fin,
            rcv_window_from_buffer,
            challenge_ack_limit,
            listen_drops_syn_ack,
            time_wait_acks_all,
            cc,
            initial_window,
            limited_transmit,
            sack,
            delayed_ack,
            delayed_ack_ms,
            window_scale,
            timestamps,
            rto_slop_ms,
            keepinit_ms,
            syn_rexmit_drop_options,
            old_segment_acks,
        } = p;
        pb::Profile {
            name: None,
            handshake: handshake_to_pb(handshake),
            time_wait: Some(switch_to_pb(time_wait)),
            msl_ms: Some(msl_ms),
            isn: Some(isn_to_pb(isn)),
            mss: Some(u32::from(mss)),
            window: Some(window),
            send_buffer: Some(send_buffer),
            rto_initial_ms: Some(rto_initial_ms),
            rto_min_ms: Some(rto_min_ms),
            rto_max_ms: Some(rto_max_ms),
            max_retries: Some(max_retries),
            rfc5961: Some(switch_to_pb(rfc5961)),
            rfc5961_rst: rfc5961_rst.map(switch_to_pb),
            rfc5961_syn: rfc5961_syn.map(switch_to_pb),
            drop_synfin: Some(switch_to_pb(drop_synfin)),
            syn_reset_acks: Some(switch_to_pb(syn_reset_acks)),
            ack_repeats_fin: Some(switch_to_pb(ack_repeats_fin)),
            rcv_window_from_buffer: Some(switch_to_pb(rcv_window_from_buffer)),
            challenge_ack_limit: Some(challenge_ack_limit),
            listen_drops_syn_ack: Some(switch_to_pb(listen_drops_syn_ack)),
            time_wait_acks_all: Some(switch_to_pb(time_wait_acks_all)),
            cc: cc_to_pb(cc),
            initial_window: Some(initial_window_to_pb(initial_window)),
            limited_transmit: Some(switch_to_pb(limited_transmit)),
            sack: Some(switch_to_pb(sack)),
            delayed_ack: Some(switch_to_pb(delayed_ack)),
            delayed_ack_ms: Some(delayed_ack_ms),
            window_scale: Some(window_scale_to_pb(window_scale)),
            timestamps: Some(switch_to_pb(timestamps)),
            rto_slop_ms: Some(rto_slop_ms),
            keepinit_ms: Some(keepinit_ms),
            syn_rexmit_drop_options: Some(switch_to_pb(syn_rexmit_drop_options)),
            old_segment_acks: Some(switch_to_pb(old_segment_acks)),
        }
    }
}

impl From<SessionInfo> for pb::Session {
    fn from(s: SessionInfo) -> pb::Session {
        // In RFC 9293's order, each state looked up by its own name (the
        // service counts by name).
        let states = State::ALL
            .into_iter()
            .filter_map(|state| {
                let count = *s.states.get(state.name())?;
                Some(pb::StateCount { state: state_to_pb(state), count: count as u64 })
            })
            .collect();
        pb::Session {
            id: s.id,
            name: s.name,
            seed: s.seed,
            clock: clock_mode_to_pb(s.clock),
            speed: s.speed,
            paused: s.paused,
            status: session_status_to_pb(&s.status),
            now_ns: s.now_ns,
            created_at: s.created_at,
            ended_at: s.ended_at,
            profile: Some(s.profile.into()),
            hosts: s.hosts as u64,
            connections: s.connections as u64,
            states,
            events: s.events,
        }
    }
}

impl From<SessionList> for pb::ListSessionsResponse {
    fn from(l: SessionList) -> pb::ListSessionsResponse {
        pb::ListSessionsResponse {
            sessions: l.sessions.into_iter().map(Into::into).collect(),
            total: l.total,
            offset: l.offset,
            limit: l.limit,
        }
    }
}

impl From<HostInfo> for pb::Host {
    fn from(h: HostInfo) -> pb::Host {
        pb::Host { name: h.name, ip: h.ip, kind: host_kind_to_pb(h.kind) }
    }
}

impl From<LinkInfo> for pb::Link {
    fn from(l: LinkInfo) -> pb::Link {
        pb::Link {
            a: l.a,
            b: l.b,
            latency_ms: l.latency_ms,
            jitter_ms: l.jitter_ms,
            loss: l.loss,
            duplicate: l.duplicate,
            reorder: l.reorder,
            corrupt: l.corrupt,
            bandwidth_bps: l.bandwidth_bps,
            queue_bytes: l.queue_bytes,
            queue_packets: l.queue_packets,
            queued_bytes: l.queued_bytes,
            queued_packets: l.queued_packets,
            bottleneck: l.bottleneck,
            bottleneck_forward: l.bottleneck_forward,
        }
    }
}

impl From<ProfileList> for pb::ListProfilesResponse {
    fn from(list: ProfileList) -> pb::ListProfilesResponse {
        let profiles = list
            .profiles
            .into_iter()
            .map(|p| pb::ProfileInfo {
                name: p.name,
                description: p.description,
                default: p.default,
                settings: Some(p.settings.into()),
            })
            .collect();
        pb::ListProfilesResponse { profiles }
    }
}

impl From<ListenerInfo> for pb::Listener {
    fn from(l: ListenerInfo) -> pb::Listener {
        pb::Listener {
            id: l.id,
            host: l.host,
            port: u32::from(l.port),
            state: state_to_pb(l.state),
            backlog: l.backlog,
            pending: l.pending,
        }
    }
}

impl From<EndInfo> for pb::End {
    fn from(e: EndInfo) -> pb::End {
        let t = e.tcb;
        pb::End {
            host: e.host,
            side: side_to_pb(e.side),
            state: state_to_pb(t.state),
            iss: t.iss,
            irs: t.irs,
            snd_una: t.snd_una,
            snd_nxt: t.snd_nxt,
            snd_wnd: t.snd_wnd,
            rcv_nxt: t.rcv_nxt,
            rcv_wnd: t.rcv_wnd,
            send_buffered: t.send_buffered as u64,
            recv_buffered: t.recv_buffered as u64,
            timers: Some(pb::Timers {
                retransmit: t.timers.retransmit,
                time_wait: t.timers.time_wait,
                persist: t.timers.persist,
                delayed_ack: t.timers.delayed_ack,
                keepalive: t.timers.keepalive,
            }),
            error: conn_error_to_pb(t.error),
            local_port: u32::from(t.local_port),
            remote_ip: t.remote_ip.to_string(),
            remote_port: u32::from(t.remote_port),
            received_bytes: e.received_bytes,
            rto_ns: t.rto_ns,
            retries: t.retries,
            cwnd: t.cwnd,
            ssthresh: t.ssthresh,
            flight_size: t.flight_size,
            cc_phase: cc_phase_to_pb(t.cc_phase),
            dup_acks: t.dup_acks,
            recovery_point: t.recovery_point,
            recv_buffer_size: t.recv_buffer_size,
            send_buffer_size: t.send_buffer_size,
            sack_permitted: t.sack_permitted,
            nodelay: t.nodelay,
            snd_wscale: t.snd_wscale.map(u32::from),
            rcv_wscale: t.rcv_wscale.map(u32::from),
            timestamps: t.timestamps,
            ts_recent: t.ts_recent,
            sack_blocks: t.sack_blocks.iter().map(|r| pb::SeqRange { start: r.start, end: r.end }).collect(),
        }
    }
}

impl From<ConnectionInfo> for pb::Connection {
    fn from(c: ConnectionInfo) -> pb::Connection {
        pb::Connection { id: c.id, client: c.client.map(Into::into), server: c.server.map(Into::into) }
    }
}

impl From<SendResult> for pb::SendResponse {
    fn from(r: SendResult) -> pb::SendResponse {
        pb::SendResponse { side: side_to_pb(r.side), accepted: r.accepted }
    }
}

impl TryFrom<Received> for pb::ReceivedResponse {
    type Error = Error;

    /// The exact octets, from the model's base64 (which the service itself
    /// wrote, so a decoding failure is ours: INTERNAL).
    fn try_from(r: Received) -> Result<pb::ReceivedResponse, Error> {
        let data = base64::engine::general_purpose::STANDARD
            .decode(r.data_base64.as_bytes())
            .map_err(|e| Error::Internal(format!("received data_base64: {e}")))?;
        Ok(pb::ReceivedResponse { side: side_to_pb(r.side), bytes: r.bytes, data })
    }
}

impl From<FaultMatch> for pb::FaultMatch {
    fn from(m: FaultMatch) -> pb::FaultMatch {
        let match_flags = m.flags.is_some();
        pb::FaultMatch {
            flags: flags_to_pb(m.flags.unwrap_or_default()),
            len: m.len,
            seq: m.seq,
            ack: m.ack,
            src_port: m.src_port.map(u32::from),
            dst_port: m.dst_port.map(u32::from),
            seq_from: m.seq_range.map(|[from, _]| from),
            seq_to: m.seq_range.map(|[_, to]| to),
            match_flags,
        }
    }
}

impl From<FaultInfo> for pb::Fault {
    fn from(f: FaultInfo) -> pb::Fault {
        pb::Fault {
            id: f.id,
            src: f.from,
            dst: f.to,
            r#match: Some(f.matcher.into()),
            skip: f.skip,
            count: f.count,
            action: fault_action_to_pb(f.action),
            delay_ms: f.delay_ms,
            matched: f.matched,
            acted: f.acted,
            held: f.held,
        }
    }
}

impl From<ClockState> for pb::ClockResponse {
    fn from(c: ClockState) -> pb::ClockResponse {
        pb::ClockResponse {
            now_ns: c.now_ns,
            clock: clock_mode_to_pb(c.clock),
            paused: c.paused,
            speed: c.speed,
            steps: c.steps,
            idle: c.idle,
            stopped_by: stop_reason_to_pb(c.stopped_by),
            limit: c.limit.map(Into::into),
        }
    }
}

impl From<crate::service::LimitHit> for pb::LimitHit {
    fn from(l: crate::service::LimitHit) -> pb::LimitHit {
        pb::LimitHit { name: l.name, max: l.max, hint: l.hint }
    }
}

impl From<crate::service::packetdrill::PacketdrillResult> for pb::RunPacketdrillResponse {
    fn from(r: crate::service::packetdrill::PacketdrillResult) -> pb::RunPacketdrillResponse {
        pb::RunPacketdrillResponse {
            session_id: r.session_id,
            verdict: verdict_to_pb(r.verdict),
            mismatch: r.mismatch.map(|m| pb::PacketdrillMismatch {
                line: m.line,
                expected: m.expected,
                got: m.got,
                reason: m.reason,
                t_ns: m.t_ns,
            }),
            skipped: r.skipped,
            ladder: r.ladder,
            now_ns: r.now_ns,
            events: r.events,
        }
    }
}

impl From<&LiveEvent> for pb::Event {
    /// A streamed event: its typed fields and its JSON as stored (`durable`
    /// false: the stream sets it, see [`super::stream_item`]).
    fn from(e: &LiveEvent) -> pb::Event {
        event_message(&e.event, e.body.to_string())
    }
}

/// The segment payload of an event: the segment's fields and what its kind
/// adds (why it was dropped, the fault rule, the delay).
fn segment_event(
    w: &WireSegment,
    drop_reason: Option<DropReason>,
    fault_id: Option<u64>,
    delay_ns: Option<u64>,
    queue: Option<(u64, u32, u64)>,
) -> pb::SegmentEvent {
    let s = &w.segment;
    pb::SegmentEvent {
        id: w.id,
        src: w.from.to_string(),
        dst: w.to.to_string(),
        src_port: u32::from(s.src_port),
        dst_port: u32::from(s.dst_port),
        seq: s.seq.0,
        ack: s.ack.0,
        flags: flags_to_pb(s.flags),
        window: u32::from(s.window),
        len: s.payload.len() as u32,
        retransmission: w.retransmission,
        injected: w.injected,
        drop_reason: drop_reason_to_pb(drop_reason),
        fault_id,
        delay_ns,
        queued_bytes: queue.map(|q| q.0),
        queued_packets: queue.map(|q| q.1),
        transmit_ns: queue.map(|q| q.2),
    }
}

/// What made a state change happen, as the `Cause` oneof.
fn cause_to_pb(cause: &Cause) -> pb::Cause {
    use pb::cause::Cause as C;
    let cause = match cause {
        Cause::User { call } => C::UserCall(user_call_to_pb(*call)),
        Cause::Segment { flags, seq, ack, len } => {
            C::Segment(pb::SegmentSummary { flags: flags_to_pb(*flags), seq: *seq, ack: *ack, len: *len })
        }
        Cause::Timer { timer } => C::Timer(timer_kind_to_pb(*timer)),
    };
    pb::Cause { cause: Some(cause) }
}

/// An event's typed payload, read from its fields (never from its JSON).
fn payload(kind: &EventKind) -> pb::event::Payload {
    use pb::event::Payload as P;
    match kind {
        EventKind::StateChanged { connection: _, listener, host, side, from, to, cause, rfc } => {
            P::StateChange(pb::StateChange {
                host: host.to_string(),
                side: maybe_side_to_pb(*side),
                from_state: state_to_pb(*from),
                to_state: state_to_pb(*to),
                rfc: rfc.to_string(),
                cause: Some(cause_to_pb(cause)),
                listener: *listener,
            })
        }
        EventKind::SegmentSent { connection: _, segment } | EventKind::SegmentDelivered { connection: _, segment } => {
            P::Segment(segment_event(segment, None, None, None, None))
        }
        EventKind::SegmentDropped { reason, fault, segment } => {
            P::Segment(segment_event(segment, Some(*reason), *fault, None, None))
        }
        EventKind::SegmentDuplicated { fault, segment } => P::Segment(segment_event(segment, None, *fault, None, None)),
        EventKind::SegmentDelayed { fault, delay_ns, segment } => {
            P::Segment(segment_event(segment, None, Some(*fault), Some(*delay_ns), None))
        }
        EventKind::SegmentQueued { queued_bytes, queued_packets, transmit_ns, segment } => {
            P::Segment(segment_event(segment, None, None, None, Some((*queued_bytes, *queued_packets, *transmit_ns))))
        }
        EventKind::SegmentHeld { fault, segment } | EventKind::SegmentReleased { fault, segment } => {
            P::Segment(segment_event(segment, None, Some(*fault), None, None))
        }
        EventKind::TimerFired { connection: _, host, side, timer } => P::Timer(pb::TimerFired {
            host: host.to_string(),
            side: maybe_side_to_pb(*side),
            timer: timer_kind_to_pb(*timer),
        }),
        EventKind::ConnectionError { connection: _, host, side, error } => P::Error(pb::ConnectionError {
            host: host.to_string(),
            side: maybe_side_to_pb(*side),
            error: conn_error_to_pb(Some(*error)),
        }),
        EventKind::CongestionChanged { connection: _, host, side, cwnd, ssthresh, phase } => {
            P::Congestion(pb::CongestionChange {
                host: host.to_string(),
                side: maybe_side_to_pb(*side),
                cwnd: *cwnd,
                ssthresh: *ssthresh,
                cc_phase: cc_phase_to_pb(*phase),
            })
        }
    }
}

/// An event as gRPC carries it: header fields, the typed payload read from
/// the event's fields, `json` as REST returns it.
fn event_message(event: &Event, json: String) -> pb::Event {
    pb::Event {
        durable: false,
        seq: event.seq,
        t_ns: event.t_ns,
        kind: event_kind_to_pb(&event.kind),
        connection: event.kind.connection(),
        json,
        payload: Some(payload(&event.kind)),
    }
}

impl From<EventPage> for pb::ListEventsResponse {
    fn from(p: EventPage) -> pb::ListEventsResponse {
        pb::ListEventsResponse {
            // Pages are read from SQLite.
            events: p.events.iter().map(|e| pb::Event { durable: true, ..event_message(e, json_text(e)) }).collect(),
            next_after_seq: p.next_after_seq,
        }
    }
}

impl From<SegmentInfo> for pb::Segment {
    /// Typed fields read from the segment's; `json` is the whole item as
    /// REST lists it (segment fields, `sent_ns`, `fate`, ...).
    fn from(info: SegmentInfo) -> pb::Segment {
        let json = json_text(&info);
        let w = &info.segment;
        let s = &w.segment;
        pb::Segment {
            id: w.id,
            src: w.from.to_string(),
            dst: w.to.to_string(),
            src_port: u32::from(s.src_port),
            dst_port: u32::from(s.dst_port),
            seq: s.seq.0,
            ack: s.ack.0,
            flags: flags_to_pb(s.flags),
            window: u32::from(s.window),
            len: s.payload.len() as u32,
            fate: fate_to_pb(info.fate),
            fates: info.fates.iter().map(|f| fate_to_pb(*f)).collect(),
            reason: drop_reason_to_pb(info.reason),
            sent_ns: info.sent_ns,
            json,
            retransmission: w.retransmission,
            injected: w.injected,
        }
    }
}

impl From<SegmentList> for pb::ListSegmentsResponse {
    fn from(l: SegmentList) -> pb::ListSegmentsResponse {
        pb::ListSegmentsResponse { segments: l.segments.into_iter().map(Into::into).collect(), truncated: l.truncated }
    }
}
