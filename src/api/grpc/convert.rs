//! Conversions between the protobuf messages of [`pb`] and the service model
//! types ([`crate::service::model`]).
//!
//! Request messages become model requests with `TryFrom` (a string that must
//! name a variant, a number wider than the model's, or JSON text can be bad:
//! the error is INVALID_ARGUMENT naming the field as the `.proto` spells it);
//! model replies become messages with `From`. Nothing here validates what the
//! service validates: ranges, limits and names of hosts are its job.
//!
//! The pb → model conversions destructure the message, so a field added to
//! the `.proto` does not compile until it is converted.

use base64::Engine as _;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::pb;
use crate::engine::{Flags, Profile, TcpOption};
use crate::service::model::*;
use crate::service::{Error, LiveEvent};
use crate::sim::{Event, EventKind, Side};

/// Parses a value the REST JSON spells as a string (`"two_way"`, `"off"`,
/// `"realtime"`, `"client"`) with the target type's own serde, so the accepted
/// spellings and the error wording are the ones REST has.
fn parse_name<T: DeserializeOwned>(field: &str, value: &str) -> Result<T, Error> {
    serde_json::from_value(serde_json::Value::String(value.to_owned()))
        .map_err(|e| Error::invalid(field, e.to_string()))
}

/// The string a value serialises to in REST's JSON (`"manual"`), so gRPC
/// spells enums the same way without a second list of names.
fn name_of<T: Serialize>(value: &T) -> String {
    serde_json::to_value(value).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

/// JSON text of a model value, for the `*_json` fields. Model types always
/// serialise; the fallback only keeps the field valid JSON.
fn json_text<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "{}".to_owned())
}

/// A proto `string side` as the model's [`Side`]; a bad value is
/// INVALID_ARGUMENT on `side`.
pub fn parse_side(side: &str) -> Result<Side, Error> {
    parse_name("side", side)
}

/// A `repeated string` of flag names as [`Flags`] (the names REST takes).
fn parse_flags(field: &str, names: Vec<String>) -> Result<Flags, Error> {
    serde_json::from_value(serde_json::Value::from(names)).map_err(|e| Error::invalid(field, e.to_string()))
}

/// A `uint32` port of a message as the model's `u16`.
fn port16(field: &str, value: Option<u32>) -> Result<Option<u16>, Error> {
    value
        .map(|v| u16::try_from(v).map_err(|_| Error::invalid(field, format!("must be at most 65535, got {v}"))))
        .transpose()
}

/// The service's comma-separated kind filter from a `repeated string kinds`
/// (`None`, meaning every kind, when empty).
pub fn kinds_filter(kinds: &[String]) -> Option<String> {
    (!kinds.is_empty()).then(|| kinds.join(","))
}

/// Renames the field of an INVALID_ARGUMENT error where the service's name
/// for it (REST's) differs from the `.proto`'s (`kind` vs `kinds`), so the
/// message names the field this client actually sent.
pub fn renamed(error: Error, from: &str, to: &str) -> Error {
    match error {
        Error::InvalidArgument { field, message } if field == from => {
            Error::InvalidArgument { field: to.into(), message }
        }
        other => other,
    }
}

// ----- requests: pb → model -----

impl TryFrom<pb::Profile> for Profile {
    type Error = Error;

    /// The fields set are the overrides of [`crate::profiles::with_overrides`],
    /// as REST's `profile` object is: unset fields keep the base's values.
    fn try_from(p: pb::Profile) -> Result<Profile, Error> {
        use serde_json::{Value, json};
        // Every field by name (the destructuring is exhaustive: a new proto
        // field that is not passed on does not compile).
        let pb::Profile {
            handshake,
            time_wait,
            msl_ms,
            isn,
            mss,
            window,
            rto_initial_ms,
            max_retries,
            rfc5961,
            send_buffer,
            rto_min_ms,
            rto_max_ms,
            name,
            rfc5961_rst,
            rfc5961_syn,
            drop_synfin,
            syn_reset_acks,
            ack_repeats_fin,
            rcv_window_from_buffer,
            challenge_ack_limit,
            listen_drops_syn_ack,
            time_wait_acks_all,
        } = p;
        // `isn` is "random" or a number in a string field.
        let isn = isn
            .map(|v| match v.parse::<u64>() {
                Ok(n) if n <= u64::from(u32::MAX) => Ok(json!(n)),
                _ if v == "random" => Ok(json!(v)),
                _ => Err(Error::invalid(
                    "profile.isn",
                    format!("expected \"random\" or an integer 0..=4294967295, got {v:?}"),
                )),
            })
            .transpose()?;
        let fields: [(&str, Option<Value>); 22] = [
            ("name", name.map(Value::from)),
            ("handshake", handshake.map(Value::from)),
            ("time_wait", time_wait.map(Value::from)),
            ("msl_ms", msl_ms.map(Value::from)),
            ("isn", isn),
            ("mss", port16("profile.mss", mss)?.map(Value::from)),
            ("window", window.map(Value::from)),
            ("send_buffer", send_buffer.map(Value::from)),
            ("rto_initial_ms", rto_initial_ms.map(Value::from)),
            ("rto_min_ms", rto_min_ms.map(Value::from)),
            ("rto_max_ms", rto_max_ms.map(Value::from)),
            ("max_retries", max_retries.map(Value::from)),
            ("rfc5961", rfc5961.map(Value::from)),
            ("rfc5961_rst", rfc5961_rst.map(Value::from)),
            ("rfc5961_syn", rfc5961_syn.map(Value::from)),
            ("drop_synfin", drop_synfin.map(Value::from)),
            ("syn_reset_acks", syn_reset_acks.map(Value::from)),
            ("ack_repeats_fin", ack_repeats_fin.map(Value::from)),
            ("rcv_window_from_buffer", rcv_window_from_buffer.map(Value::from)),
            ("challenge_ack_limit", challenge_ack_limit.map(Value::from)),
            ("listen_drops_syn_ack", listen_drops_syn_ack.map(Value::from)),
            ("time_wait_acks_all", time_wait_acks_all.map(Value::from)),
        ];
        let settings = fields.into_iter().filter_map(|(k, v)| Some((k.to_string(), v?))).collect();
        crate::profiles::with_overrides(&Profile::default(), settings).map_err(|e| Error::invalid(e.field, e.message))
    }
}

impl TryFrom<pb::CreateSessionRequest> for CreateSession {
    type Error = Error;

    fn try_from(r: pb::CreateSessionRequest) -> Result<CreateSession, Error> {
        let pb::CreateSessionRequest { name, seed, clock, speed, profile } = r;
        Ok(CreateSession {
            name,
            seed,
            clock: clock.map(|c| parse_name("clock", &c)).transpose()?,
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
        Ok(AddHost { name, ip, kind: kind.map(|k| parse_name("kind", &k)).transpose()? })
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
        } = r;
        SetLink { a, b, latency_ms, jitter_ms, loss, duplicate, reorder, corrupt, bandwidth_bps }
    }
}

impl From<pb::AddListenerRequest> for AddListener {
    fn from(r: pb::AddListenerRequest) -> AddListener {
        let pb::AddListenerRequest { session_id: _, host, port, isn, backlog } = r;
        AddListener { host, port, isn, backlog }
    }
}

impl From<pb::OpenConnectionRequest> for OpenConnection {
    fn from(r: pb::OpenConnectionRequest) -> OpenConnection {
        let pb::OpenConnectionRequest { session_id: _, client, server, port, client_port, isn } = r;
        OpenConnection { client, server, port, client_port, isn }
    }
}

impl TryFrom<pb::SendRequest> for SendData {
    type Error = Error;

    /// `bytes data` travels as base64, the model's binary form, so that the
    /// service's one `send` handles both APIs.
    fn try_from(r: pb::SendRequest) -> Result<SendData, Error> {
        let pb::SendRequest { session_id: _, connection_id: _, side, data } = r;
        Ok(SendData {
            side: parse_side(&side)?,
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
            flags: (match_flags || !flags.is_empty()).then(|| parse_flags("match.flags", flags)).transpose()?,
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
        let pb::AddFaultRequest { session_id: _, from, to, r#match, skip, count, action, delay_ms } = r;
        Ok(AddFault {
            from,
            to,
            matcher: r#match.map(FaultMatch::try_from).transpose()?,
            skip,
            count,
            action: parse_name("action", &action)?,
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
            from,
            src_port,
            to,
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
            from: InjectEndpoint::Host(from),
            to: InjectEndpoint::Host(to),
            src_port: Some(src_port),
            dst_port: Some(dst_port),
            flags: parse_flags("flags", flags)?,
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
        Ok(ClockRequest { action: parse_name("action", &action)?, ms, speed, max_events, max_ms })
    }
}

impl From<pb::ListEventsRequest> for EventQuery {
    fn from(r: pb::ListEventsRequest) -> EventQuery {
        let pb::ListEventsRequest { session_id: _, after_seq, limit, kinds, connection } = r;
        EventQuery { after_seq, limit, kind: kinds_filter(&kinds), connection }
    }
}

// ----- replies: model → pb -----

impl From<SessionInfo> for pb::Session {
    fn from(s: SessionInfo) -> pb::Session {
        pb::Session {
            id: s.id,
            name: s.name,
            seed: s.seed,
            clock: name_of(&s.clock),
            speed: s.speed,
            paused: s.paused,
            status: s.status,
            now_ns: s.now_ns,
            created_at: s.created_at,
            ended_at: s.ended_at,
            profile_json: json_text(&s.profile),
            hosts: s.hosts as u64,
            connections: s.connections as u64,
            states: s.states.into_iter().map(|(state, n)| (state, n as u64)).collect(),
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
        pb::Host { name: h.name, ip: h.ip, kind: name_of(&h.kind) }
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
                settings_json: serde_json::to_string(&p.settings).unwrap_or_default(),
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
            state: l.state.name().to_owned(),
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
            side: e.side.name().to_owned(),
            state: t.state.name().to_owned(),
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
            }),
            error: t.error.map(|err| err.errno().to_owned()),
            local_port: u32::from(t.local_port),
            remote_ip: t.remote_ip.to_string(),
            remote_port: u32::from(t.remote_port),
            received_bytes: e.received_bytes,
            rto_ns: t.rto_ns,
            retries: t.retries,
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
        pb::SendResponse { side: r.side.name().to_owned(), accepted: r.accepted }
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
        Ok(pb::ReceivedResponse { side: r.side.name().to_owned(), bytes: r.bytes, data })
    }
}

impl From<FaultMatch> for pb::FaultMatch {
    fn from(m: FaultMatch) -> pb::FaultMatch {
        let match_flags = m.flags.is_some();
        pb::FaultMatch {
            flags: m.flags.unwrap_or_default().names().map(str::to_owned).collect(),
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
            from: f.from,
            to: f.to,
            r#match: Some(f.matcher.into()),
            skip: f.skip,
            count: f.count,
            action: name_of(&f.action),
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
            clock: name_of(&c.clock),
            paused: c.paused,
            speed: c.speed,
            steps: c.steps,
            idle: c.idle,
            stopped_by: c.stopped_by.map(|s| s.name().to_owned()),
            limit: c.limit.map(Into::into),
        }
    }
}

impl From<crate::service::LimitHit> for pb::LimitHit {
    fn from(l: crate::service::LimitHit) -> pb::LimitHit {
        pb::LimitHit { name: l.name, max: l.max, hint: l.hint }
    }
}

impl From<&LiveEvent> for pb::Event {
    /// A streamed event: its typed fields and its JSON as stored (`durable`
    /// false: the stream sets it, see [`super::stream_item`]).
    fn from(e: &LiveEvent) -> pb::Event {
        event_message(&e.event, e.body.to_string())
    }
}

/// An event as gRPC carries it: header fields and the typed state change
/// read from the event's fields, `json` as REST returns it.
fn event_message(event: &Event, json: String) -> pb::Event {
    pb::Event {
        durable: false,
        seq: event.seq,
        t_ns: event.t_ns,
        kind: event.kind.name().to_owned(),
        connection: event.kind.connection(),
        json,
        state_changed: match &event.kind {
            EventKind::StateChanged { host, side, from, to, rfc, .. } => Some(pb::StateChange {
                host: host.to_string(),
                side: side.map(|s| s.name().to_owned()),
                from_state: from.name().to_owned(),
                to_state: to.name().to_owned(),
                rfc: rfc.to_string(),
            }),
            _ => None,
        },
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
    /// Typed header fields read from the segment's JSON; `json` is the whole
    /// item as REST lists it (segment fields, `sent_ns`, `fate`, ...).
    fn from(info: SegmentInfo) -> pb::Segment {
        let json = json_text(&info);
        let w = &info.segment;
        let s = &w.segment;
        pb::Segment {
            id: w.id,
            from: w.from.to_string(),
            to: w.to.to_string(),
            src_port: u32::from(s.src_port),
            dst_port: u32::from(s.dst_port),
            seq: s.seq.0,
            ack: s.ack.0,
            flags: serde_json::to_value(s.flags)
                .ok()
                .and_then(|v| v.as_array().map(|a| a.iter().filter_map(|f| f.as_str().map(str::to_owned)).collect()))
                .unwrap_or_default(),
            window: u32::from(s.window),
            len: s.payload.len() as u32,
            fate: info.fate.name().to_owned(),
            fates: info.fates.iter().map(|f| f.name().to_owned()).collect(),
            reason: info.reason.map(|r| r.name().to_owned()),
            sent_ns: info.sent_ns,
            json,
        }
    }
}

impl From<SegmentList> for pb::ListSegmentsResponse {
    fn from(l: SegmentList) -> pb::ListSegmentsResponse {
        pb::ListSegmentsResponse { segments: l.segments.into_iter().map(Into::into).collect(), truncated: l.truncated }
    }
}
