//! Requests and replies of the service layer, in the JSON shapes of the REST
//! contract. REST deserialises straight into the request types; gRPC converts
//! its messages into them; both then call the same [`super::LabService`]
//! method, which validates once.

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::engine::{Flags, Profile, State, TcbStatus};
use crate::sim::{CloseHow, FaultAction, HostKind, Side};

/// How a session's virtual clock moves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum ClockMode {
    /// Nothing moves until told (step, advance, run until idle).
    #[default]
    Manual,
    /// Virtual time follows wall time times `speed`.
    Realtime,
}

/// `POST /api/v1/sessions`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSession {
    /// A label for people.
    #[serde(default)]
    pub name: Option<String>,
    /// RNG seed (random ISNs, loss, jitter): the same seed and commands give the same events.
    #[serde(default)]
    #[schema(format = "uint64", minimum = 0, maximum = 18446744073709551615.0)]
    pub seed: Option<u64>,
    /// Clock mode (default `manual`).
    #[serde(default)]
    pub clock: Option<ClockMode>,
    /// Realtime speed factor (virtual seconds per wall second, default 1).
    #[serde(default)]
    pub speed: Option<f64>,
    /// Lab variants and tunables. An object of settings (absent ones take
    /// tcplab's defaults); with a `name` (one of `GET /api/v1/profiles`, e.g.
    /// `{"name": "freebsd", "msl_ms": 1000}`) the named profile's settings are
    /// the base and the other keys override single settings.
    #[serde(default, deserialize_with = "named_or_plain_profile")]
    #[schema(value_type = Option<Object>, example = json!({"name": "freebsd", "msl_ms": 1000}))]
    pub profile: Option<Profile>,
}

/// Resolves a profile given as settings, or as `{"name": ..., ...overrides}`
/// ([`crate::profiles::with_overrides`] over tcplab's defaults).
///
/// # Errors
/// An unknown name, a setting that is not a profile field, a bad value.
pub fn resolve_profile(value: serde_json::Value) -> Result<Profile, String> {
    let serde_json::Value::Object(fields) = value else {
        return Err("expected an object of settings, optionally with a \"name\"".into());
    };
    crate::profiles::with_overrides(&Profile::default(), fields).map_err(|e| e.to_string())
}

pub(crate) fn named_or_plain_profile<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Profile>, D::Error> {
    let value = Option::<serde_json::Value>::deserialize(d)?;
    value.map(|v| resolve_profile(v).map_err(serde::de::Error::custom)).transpose()
}

/// What a session was created with, as its `spec` column stores it: read
/// back (for an ended session, or to rebuild a lab session's hosts) into
/// the same type, not by string key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SessionSpec {
    /// RNG seed.
    pub seed: u64,
    /// Clock mode.
    pub clock: ClockMode,
    /// Realtime speed factor.
    pub speed: f64,
    /// The world's profile.
    pub profile: Profile,
    /// The built-in lab a lab run's session runs, if it is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lab: Option<String>,
    /// That lab's variant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// A shipped behaviour profile (`profiles/*.toml`).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ProfileInfo {
    /// The name sessions give as `profile.name`.
    pub name: String,
    /// What it models.
    pub description: String,
    /// The packetdrill runner's default.
    pub default: bool,
    /// Every setting.
    #[schema(value_type = Object)]
    pub settings: Profile,
}

/// `GET /api/v1/profiles`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ProfileList {
    /// By name, in the shipped order.
    pub profiles: Vec<ProfileInfo>,
}

/// A session as the API shows it.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct SessionInfo {
    /// Session id.
    pub id: u64,
    /// Label.
    pub name: String,
    /// RNG seed.
    pub seed: u64,
    /// Clock mode.
    pub clock: ClockMode,
    /// Realtime speed factor.
    pub speed: f64,
    /// Realtime clock paused.
    pub paused: bool,
    /// `live` or `ended`.
    pub status: String,
    /// Virtual time now (the last known for an ended session), in nanoseconds.
    pub now_ns: u64,
    /// Wall-clock creation time (RFC 3339).
    pub created_at: String,
    /// Wall-clock end time, once ended.
    pub ended_at: Option<String>,
    /// The profile.
    #[schema(value_type = Object)]
    pub profile: Profile,
    /// Number of hosts (live sessions).
    pub hosts: usize,
    /// Number of connections (live sessions).
    pub connections: usize,
    /// Connection ends per state (live sessions).
    pub states: std::collections::BTreeMap<String, usize>,
    /// Events emitted so far (live) or stored (ended).
    pub events: u64,
}

/// A page of sessions.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct SessionList {
    /// The sessions on this page, by id.
    pub sessions: Vec<SessionInfo>,
    /// All sessions.
    pub total: u64,
    /// Offset of this page.
    pub offset: u64,
    /// Page size.
    pub limit: u64,
}

/// `POST .../hosts`.
#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddHost {
    /// Unique name in the session (`A`, `B`, ...).
    pub name: String,
    /// IPv4 address.
    pub ip: String,
    /// `tcp` (default) or `raw`.
    #[serde(default)]
    #[schema(value_type = Option<String>, example = "tcp")]
    pub kind: Option<HostKind>,
}

/// A host.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct HostInfo {
    /// Name.
    pub name: String,
    /// IPv4 address.
    pub ip: String,
    /// `tcp` or `raw`.
    #[schema(value_type = String, example = "tcp")]
    pub kind: HostKind,
}

/// `PUT .../links`: both directions between `a` and `b`.
#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetLink {
    /// One host.
    pub a: String,
    /// The other host.
    pub b: String,
    /// One-way latency in ms (default 10).
    #[serde(default)]
    pub latency_ms: Option<f64>,
    /// Extra random delay up to this many ms.
    #[serde(default)]
    pub jitter_ms: Option<f64>,
    /// Loss probability.
    #[serde(default)]
    pub loss: Option<f64>,
    /// Duplication probability.
    #[serde(default)]
    pub duplicate: Option<f64>,
    /// Reordering probability.
    #[serde(default)]
    pub reorder: Option<f64>,
    /// Bit-corruption probability.
    #[serde(default)]
    pub corrupt: Option<f64>,
    /// Bandwidth in bits/s (0: unlimited).
    #[serde(default)]
    pub bandwidth_bps: Option<u64>,
    /// Drop-tail transmit queue in octets, IP headers included (0: unlimited;
    /// at most 1073741824; needs `bandwidth_bps`). A segment that finds it
    /// full is dropped with reason `queue_full`.
    #[serde(default)]
    pub queue_bytes: Option<u64>,
    /// Drop-tail transmit queue in segments (0: unlimited; at most 1000000; needs `bandwidth_bps`).
    #[serde(default)]
    pub queue_packets: Option<u32>,
    /// A bottleneck this link crosses (1 to 64 letters, digits, `-`, `_`,
    /// `.`; needs `bandwidth_bps`; at most 256 per session). Every link
    /// naming it shares one transmitter and drop-tail queue per direction,
    /// `a` -> `b` forward and `b` -> `a` back: a dumbbell's middle link. Its
    /// rate and capacity are this link's `bandwidth_bps`, `queue_bytes` and
    /// `queue_packets` from now on, for every link crossing it; latency and
    /// the impairments stay each link's own. Absent: the link has its own queue.
    #[serde(default)]
    pub bottleneck: Option<String>,
}

/// A link direction's settings.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct LinkInfo {
    /// Sending host.
    pub a: String,
    /// Receiving host.
    pub b: String,
    /// Latency in ms.
    pub latency_ms: f64,
    /// Jitter in ms.
    pub jitter_ms: f64,
    /// Loss probability.
    pub loss: f64,
    /// Duplication probability.
    pub duplicate: f64,
    /// Reordering probability.
    pub reorder: f64,
    /// Corruption probability.
    pub corrupt: f64,
    /// Bandwidth (0: unlimited).
    pub bandwidth_bps: u64,
    /// Transmit queue capacity in octets (0: unlimited).
    pub queue_bytes: u64,
    /// Transmit queue capacity in segments (0: unlimited).
    pub queue_packets: u32,
    /// Octets waiting in the queue now (IP headers included).
    pub queued_bytes: u64,
    /// Segments waiting in the queue now (the bottleneck's, shared, when it crosses one).
    pub queued_packets: u32,
    /// The bottleneck it crosses, if any.
    pub bottleneck: Option<String>,
    /// Whether it crosses the bottleneck from the `a` side of the link that
    /// named it to the `b` side (`false`: back, or no bottleneck).
    pub bottleneck_forward: bool,
}

/// `POST .../listeners`.
#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddListener {
    /// Host name.
    pub host: String,
    /// Port.
    pub port: u32,
    /// ISN of the connections it accepts.
    #[serde(default)]
    pub isn: Option<u32>,
    /// At most this many connections made and not yet accepted; a further
    /// SYN is dropped unanswered (unlimited when absent).
    #[serde(default)]
    pub backlog: Option<u32>,
    /// TCP_NODELAY on the listening socket: the connections it accepts
    /// start with Nagle's algorithm off (default `false`).
    #[serde(default)]
    pub nodelay: Option<bool>,
    /// Keepalive for the connections it accepts: `{"idle_ms", "interval_ms",
    /// "count"}`, absent keys at 7200000, 75000 and 9 (off when absent).
    #[serde(default)]
    #[schema(value_type = Option<Object>, example = json!({"idle_ms": 10000, "interval_ms": 1000, "count": 3}))]
    pub keepalive: Option<crate::engine::Keepalive>,
}

/// A listener.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ListenerInfo {
    /// Listener id.
    pub id: u64,
    /// Host name.
    pub host: String,
    /// Port.
    pub port: u16,
    /// `LISTEN`, or `CLOSED` once closed.
    #[schema(value_type = String)]
    pub state: State,
    /// The backlog (absent: unlimited).
    pub backlog: Option<u32>,
    /// Connections it made that are not accepted yet and not CLOSED.
    pub pending: u64,
}

/// `POST .../connections`: an active open.
#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenConnection {
    /// Client host.
    pub client: String,
    /// Server host.
    pub server: String,
    /// Server port.
    pub port: u32,
    /// Client port (ephemeral when absent).
    #[serde(default)]
    pub client_port: Option<u32>,
    /// Client ISN.
    #[serde(default)]
    pub isn: Option<u32>,
    /// TCP_NODELAY: Nagle's algorithm off for the client's end (default `false`).
    #[serde(default)]
    pub nodelay: Option<bool>,
    /// Keepalive for the client's end: `{"idle_ms", "interval_ms", "count"}`,
    /// absent keys at 7200000, 75000 and 9 (off when absent).
    #[serde(default)]
    #[schema(value_type = Option<Object>, example = json!({"idle_ms": 10000, "interval_ms": 1000, "count": 3}))]
    pub keepalive: Option<crate::engine::Keepalive>,
}

/// One end of a connection: its TCB and what it received.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct EndInfo {
    /// Host name.
    pub host: String,
    /// `client` or `server`.
    #[schema(value_type = String)]
    pub side: Side,
    /// The TCB (RFC 9293 names: iss, irs, snd_una, snd_nxt, snd_wnd, rcv_nxt, rcv_wnd, ...).
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub tcb: TcbStatus,
    /// Octets received so far, in order.
    pub received_bytes: u64,
}

/// A connection with both ends.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ConnectionInfo {
    /// Connection id.
    pub id: u64,
    /// The active opener (absent for a connection made by a stray SYN).
    pub client: Option<EndInfo>,
    /// The listener's end (absent until the SYN arrives).
    pub server: Option<EndInfo>,
}

/// Which end a call is for.
#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SideRequest {
    /// `client` or `server`.
    #[schema(value_type = String)]
    pub side: Side,
}

/// `POST .../close`.
#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CloseRequest {
    /// `client` or `server`.
    #[schema(value_type = String)]
    pub side: Side,
    /// `shutdown_write` (the default: shutdown(SHUT_WR), RFC 9293's CLOSE;
    /// the end still reads) or `close` (close() of the socket: data that
    /// arrives before the peer's FIN is answered with a reset).
    #[serde(default)]
    #[schema(value_type = String, example = "shutdown_write")]
    pub how: CloseHow,
}

/// `POST .../send`.
#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendData {
    /// `client` or `server`.
    #[schema(value_type = String)]
    pub side: Side,
    /// UTF-8 data.
    #[serde(default)]
    pub data: Option<String>,
    /// Binary data in base64 (instead of `data`).
    #[serde(default)]
    pub data_base64: Option<String>,
}

impl SendData {
    /// The octets to send, from `data` or `data_base64` (exactly one): the
    /// request's own buffer for `data` (no copy of a large send).
    ///
    /// # Errors
    /// Neither or both given, or `data_base64` is not base64.
    pub fn into_bytes(self) -> Result<bytes::Bytes, super::Error> {
        match (self.data, self.data_base64) {
            (Some(text), None) => Ok(bytes::Bytes::from(text.into_bytes())),
            (None, Some(b64)) => base64::engine::general_purpose::STANDARD
                .decode(b64.as_bytes())
                .map(bytes::Bytes::from)
                .map_err(|e| super::Error::invalid("data_base64", e.to_string())),
            _ => Err(super::Error::invalid("data", "give exactly one of data and data_base64")),
        }
    }
}

/// What a SEND queued.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct SendResult {
    /// The end that sends.
    #[schema(value_type = String)]
    pub side: Side,
    /// Octets queued (all of them unless the send buffer filled).
    pub accepted: u64,
}

/// Everything one end has received, in order.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Received {
    /// The end.
    #[schema(value_type = String)]
    pub side: Side,
    /// Octet count.
    pub bytes: u64,
    /// The data as UTF-8 (invalid sequences replaced).
    pub data: String,
    /// The data exactly, in base64.
    pub data_base64: String,
}

/// `POST .../faults`.
#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddFault {
    /// Sending host (any when absent).
    #[serde(default)]
    pub from: Option<String>,
    /// Receiving host (any when absent).
    #[serde(default)]
    pub to: Option<String>,
    /// Which segments.
    #[serde(default, rename = "match")]
    pub matcher: Option<FaultMatch>,
    /// Let this many matching segments pass first.
    #[serde(default)]
    pub skip: Option<u64>,
    /// Act on this many (every later match when absent).
    #[serde(default)]
    pub count: Option<u64>,
    /// `drop`, `delay`, `duplicate`, `corrupt` or `hold`.
    #[schema(value_type = String, example = "drop")]
    pub action: FaultAction,
    /// For `delay`: milliseconds.
    #[serde(default)]
    pub delay_ms: Option<f64>,
}

/// A fault rule's segment match (every field optional).
#[derive(Clone, Debug, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FaultMatch {
    /// The exact set of flags, e.g. `["ACK"]` (names as RFC 9293 writes
    /// them, case-insensitive).
    #[serde(default)]
    #[schema(value_type = Option<Vec<String>>)]
    pub flags: Option<Flags>,
    /// Payload length.
    #[serde(default)]
    pub len: Option<u32>,
    /// SEG.SEQ.
    #[serde(default)]
    pub seq: Option<u32>,
    /// SEG.SEQ range `[from, to]`.
    #[serde(default)]
    pub seq_range: Option<[u32; 2]>,
    /// SEG.ACK.
    #[serde(default)]
    pub ack: Option<u32>,
    /// Source port.
    #[serde(default)]
    pub src_port: Option<u16>,
    /// Destination port.
    #[serde(default)]
    pub dst_port: Option<u16>,
}

/// An installed fault rule.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct FaultInfo {
    /// Rule id.
    pub id: u64,
    /// Sending host filter.
    pub from: Option<String>,
    /// Receiving host filter.
    pub to: Option<String>,
    /// The match.
    #[serde(rename = "match")]
    pub matcher: FaultMatch,
    /// Matches let through first.
    pub skip: u64,
    /// Matches acted on (absent: all).
    pub count: Option<u64>,
    /// The action.
    #[schema(value_type = String, example = "drop")]
    pub action: FaultAction,
    /// Delay in ms for `delay`.
    pub delay_ms: f64,
    /// Segments matched so far.
    pub matched: u64,
    /// Segments acted on so far.
    pub acted: u64,
    /// Segments held now.
    pub held: u64,
}

/// An endpoint of an injected segment: a host name (with the port given
/// separately) or `{"host","port"}`.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum InjectEndpoint {
    /// Host name.
    Host(String),
    /// Host and port.
    HostPort {
        /// Host name.
        host: String,
        /// Port.
        port: u32,
    },
}

impl<'de> Deserialize<'de> for InjectEndpoint {
    /// A string or an object `{"host","port"}`, nothing else (an untagged
    /// derive would also take `["A", 80]`).
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct HostPort {
            host: String,
            port: u32,
        }
        struct Endpoint;
        impl<'de> serde::de::Visitor<'de> for Endpoint {
            type Value = InjectEndpoint;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a host name or an object {\"host\", \"port\"}")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<InjectEndpoint, E> {
                Ok(InjectEndpoint::Host(v.to_string()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<InjectEndpoint, A::Error> {
                let HostPort { host, port } = HostPort::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(InjectEndpoint::HostPort { host, port })
            }
        }
        d.deserialize_any(Endpoint)
    }
}

/// `POST .../inject`: a crafted segment.
#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Inject {
    /// The host it appears to come from.
    pub from: InjectEndpoint,
    /// The destination host.
    pub to: InjectEndpoint,
    /// Source port (when `from` is a plain host name).
    #[serde(default)]
    pub src_port: Option<u32>,
    /// Destination port (when `to` is a plain host name).
    #[serde(default)]
    pub dst_port: Option<u32>,
    /// Flags, e.g. `["SYN"]` (case-insensitive).
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    pub flags: Flags,
    /// SEG.SEQ.
    #[serde(default)]
    pub seq: u32,
    /// SEG.ACK.
    #[serde(default)]
    pub ack: u32,
    /// SEG.WND (default 65535).
    #[serde(default)]
    pub window: Option<u32>,
    /// Urgent pointer.
    #[serde(default)]
    pub urgent: Option<u32>,
    /// UTF-8 payload.
    #[serde(default)]
    pub payload: Option<String>,
    /// Binary payload in base64.
    #[serde(default)]
    pub payload_base64: Option<String>,
    /// TCP options, in the shape segments report them.
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    pub options: Vec<crate::engine::TcpOption>,
    /// Delay before it enters the link, in ms.
    #[serde(default)]
    pub delay_ms: Option<f64>,
}

/// What `inject` did.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct InjectResult {
    /// The segment's id in the session's log.
    pub segment_id: u64,
}

/// `POST .../clock`.
#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClockRequest {
    /// `step`, `advance`, `run_until_idle`, `pause`, `resume` or `set_speed`.
    #[schema(value_type = String, example = "run_until_idle")]
    pub action: ClockAction,
    /// For `advance`: milliseconds.
    #[serde(default)]
    pub ms: Option<f64>,
    /// For `resume` / `set_speed`: the realtime speed factor.
    #[serde(default)]
    pub speed: Option<f64>,
    /// For `run_until_idle`: cap on processed items (server default when absent).
    #[serde(default)]
    pub max_events: Option<u64>,
    /// For `run_until_idle`: cap on virtual time, in ms (server default when absent).
    #[serde(default)]
    pub max_ms: Option<f64>,
}

/// What a clock call does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClockAction {
    /// Process the one item due soonest (a segment's arrival or a timer).
    Step,
    /// Run every item due in the next `ms` of virtual time, then set the clock there.
    Advance,
    /// Run until nothing is scheduled (within `max_events` and `max_ms`).
    RunUntilIdle,
    /// Stop a realtime clock.
    Pause,
    /// Start a paused realtime clock again (at `speed` when given).
    Resume,
    /// Change a realtime clock's speed.
    SetSpeed,
}

impl ClockAction {
    /// Every action, in the order the documentation lists them.
    pub const ALL: [ClockAction; 6] = [
        ClockAction::Step,
        ClockAction::Advance,
        ClockAction::RunUntilIdle,
        ClockAction::Pause,
        ClockAction::Resume,
        ClockAction::SetSpeed,
    ];

    /// The REST name.
    pub fn name(self) -> &'static str {
        match self {
            ClockAction::Step => "step",
            ClockAction::Advance => "advance",
            ClockAction::RunUntilIdle => "run_until_idle",
            ClockAction::Pause => "pause",
            ClockAction::Resume => "resume",
            ClockAction::SetSpeed => "set_speed",
        }
    }
}

/// Why a clock call stopped before it had done what it was asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// The request's own `max_events`.
    Events,
    /// The request's own `max_ms`.
    Time,
    /// A server limit (named in the reply's `limit`, with how to raise it).
    Limit,
}

impl StopReason {
    /// The REST name.
    pub fn name(self) -> &'static str {
        match self {
            StopReason::Events => "events",
            StopReason::Time => "time",
            StopReason::Limit => "limit",
        }
    }
}

/// The clock after a clock call.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ClockState {
    /// Virtual time now, in nanoseconds.
    pub now_ns: u64,
    /// Clock mode.
    pub clock: ClockMode,
    /// Realtime paused.
    pub paused: bool,
    /// Realtime speed.
    pub speed: f64,
    /// Items processed by this call.
    pub steps: u64,
    /// Nothing is scheduled any more.
    pub idle: bool,
    /// What stopped the call before it was done, if anything: `events` or
    /// `time` (the request's own `max_events` / `max_ms`), or `limit` (a
    /// server limit, named in `limit`).
    #[schema(value_type = Option<String>, example = "limit")]
    pub stopped_by: Option<StopReason>,
    /// With `"stopped_by": "limit"`: the limit and how to raise it.
    pub limit: Option<crate::service::LimitHit>,
}

/// `GET .../events` query.
#[derive(Clone, Debug, Default, Deserialize, Serialize, ToSchema, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct EventQuery {
    /// Only events with a greater `seq`.
    #[serde(default)]
    pub after_seq: Option<u64>,
    /// At most this many (default 1000, at most 10000).
    #[serde(default)]
    pub limit: Option<u64>,
    /// Only these kinds (comma-separated), e.g. `state_changed,segment_sent`.
    #[serde(default)]
    pub kind: Option<String>,
    /// Only this connection's events.
    #[serde(default)]
    pub connection: Option<u64>,
}

/// A page of events.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct EventPage {
    /// Events, by `seq`.
    #[schema(value_type = Vec<Object>)]
    pub events: Vec<crate::sim::Event>,
    /// Pass as `after_seq` for the next page (the last `seq` returned, or the one asked for).
    pub next_after_seq: u64,
}

/// A segment with what became of it.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct SegmentInfo {
    /// The segment as sent (from, to, ports, seq, ack, flags, window, len, options, ...).
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub segment: crate::sim::WireSegment,
    /// When it was sent, in virtual ns.
    pub sent_ns: u64,
    /// What became of it ([`crate::sim::SegmentOutcome`]'s rule): `delivered`
    /// if any copy reached TCP, else its last drop (`lost`, `corrupted`,
    /// `dropped`), `held` while a fault rule holds it, else `in_flight`.
    #[schema(value_type = String, example = "delivered")]
    pub fate: crate::sim::Fate,
    /// Every fate its events gave it, in order, remarks included
    /// (`duplicated`, `delayed`, `released`).
    #[schema(value_type = Vec<String>)]
    pub fates: Vec<crate::sim::Fate>,
    /// Why it was dropped (`loss`, `fault`, `bad_checksum`, `no_listener`,
    /// `no_route`, `malformed`, `backlog`), when its fate is a drop.
    #[schema(value_type = Option<String>)]
    pub reason: Option<crate::sim::DropReason>,
}

/// Every segment of a session (at most `max_report_events` of them).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct SegmentList {
    /// In order of sending.
    pub segments: Vec<SegmentInfo>,
    /// The session sent more segments than `max_report_events`: these are
    /// the first ones, with their fates as far as the events read (the rest
    /// are in `GET .../events?kind=segment_sent,...`).
    #[serde(default)]
    pub truncated: bool,
}

/// A session's capture (at most `max_report_events` packets).
#[derive(Clone, Debug)]
pub struct Capture {
    /// The pcap file.
    pub pcap: Vec<u8>,
    /// Packets in it.
    pub packets: u64,
    /// The session sent more segments than the capture holds.
    pub truncated: bool,
}

/// Pagination of lists.
#[derive(Clone, Debug, Default, Deserialize, Serialize, ToSchema, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct Page {
    /// First item (default 0).
    #[serde(default)]
    pub offset: Option<u64>,
    /// Page size (default 100, at most 1000).
    #[serde(default)]
    pub limit: Option<u64>,
}
