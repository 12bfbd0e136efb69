//! One handler per route: extract, call one [`LabService`] method, reply.
//! Each carries its `#[utoipa::path]`, which [`super::ApiDoc`] collects.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiPath, ApiQuery, ConnectionPath, FaultPath, ListenerPath, SessionPath};
use crate::service::LabService;
use crate::service::model::*;
use crate::sim::Side;

/// Handler result: a reply or the error body.
pub type ApiResult<T> = Result<T, ApiError>;

/// `GET .../hosts`.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct HostList {
    /// The hosts, in the order they were added.
    pub hosts: Vec<HostInfo>,
}

/// `GET .../links`.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct LinkList {
    /// Every link direction set explicitly (others use the default link).
    pub links: Vec<LinkInfo>,
}

/// `GET .../listeners`.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ListenerList {
    /// The listeners.
    pub listeners: Vec<ListenerInfo>,
}

/// `GET .../connections`.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ConnectionList {
    /// Every connection of the session.
    pub connections: Vec<ConnectionInfo>,
}

/// `GET .../faults`.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct FaultList {
    /// The installed rules with their counters.
    pub faults: Vec<FaultInfo>,
}

/// `POST .../faults/{fid}/release`.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Released {
    /// Segments sent on their way.
    pub released: u64,
}

/// `GET /healthz`.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok`.
    pub status: String,
}

/// `GET .../received` query.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SideQuery {
    /// `client` or `server`.
    pub side: String,
}

// ----- meta -----

/// Liveness.
#[utoipa::path(get, path = "/healthz", tag = "meta", responses((status = 200, description = "OK", body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok".into() })
}

/// The shipped behaviour profiles with every setting: the names a session's
/// `profile.name` may take.
#[utoipa::path(
    get, path = "/api/v1/profiles", tag = "sessions",
    responses(
        (status = 200, description = "OK", body = ProfileList),
        (status = "5XX", description = "Server error", body = ErrorBody),
    )
)]
pub async fn list_profiles(State(svc): State<LabService>) -> ApiResult<Json<ProfileList>> {
    Ok(Json(svc.list_profiles()?))
}

/// Runs a packetdrill script inside the session: its segments and events
/// are the session's like any other; the reply is the verdict.
#[utoipa::path(
    post, path = "/api/v1/sessions/{sid}/packetdrill", tag = "labs",
    params(("sid" = u64, Path, description = "Session id")),
    request_body = crate::service::packetdrill::RunPacketdrill,
    responses(
        (status = 200, description = "The verdict (PASS, FAIL or SKIP)", body = crate::service::packetdrill::PacketdrillResult),
        (status = "4XX", description = "Unknown, ended or realtime session; a script that does not parse", body = ErrorBody),
        (status = "5XX", description = "Server error", body = ErrorBody),
    )
)]
pub async fn run_packetdrill(
    State(svc): State<LabService>,
    ApiPath(p): ApiPath<SessionPath>,
    ApiJson(req): ApiJson<crate::service::packetdrill::RunPacketdrill>,
) -> ApiResult<Json<crate::service::packetdrill::PacketdrillResult>> {
    Ok(Json(svc.run_packetdrill(p.sid, req).await?))
}

// ----- sessions -----

/// Creates a session: a new world with its own virtual clock and seed.
#[utoipa::path(
    post, path = "/api/v1/sessions", tag = "sessions",
    request_body = CreateSession,
    responses(
        (status = 201, description = "Created", body = SessionInfo),
        (status = "4XX", description = "Bad input or a limit", body = ErrorBody),
        (status = "5XX", description = "Server error", body = ErrorBody),
    )
)]
pub async fn create_session(
    State(svc): State<LabService>,
    ApiJson(req): ApiJson<CreateSession>,
) -> ApiResult<impl IntoResponse> {
    Ok((StatusCode::CREATED, Json(svc.create_session(req).await?)))
}

/// A page of sessions, live and ended.
#[utoipa::path(
    get, path = "/api/v1/sessions", tag = "sessions",
    params(
        ("offset" = Option<u64>, Query, description = "First item (default 0)"),
        ("limit" = Option<u64>, Query, description = "Page size (default 100, at most 1000)"),
    ),
    responses(
        (status = 200, description = "OK", body = SessionList),
        (status = "4XX", description = "Bad paging values", body = ErrorBody),
        (status = "5XX", description = "Server error", body = ErrorBody),
    )
)]
pub async fn list_sessions(
    State(svc): State<LabService>,
    ApiQuery(page): ApiQuery<Page>,
) -> ApiResult<Json<SessionList>> {
    Ok(Json(svc.list_sessions(page).await?))
}

/// One session, live or ended.
#[utoipa::path(
    get, path = "/api/v1/sessions/{sid}", tag = "sessions",
    params(("sid" = u64, Path, description = "Session id")),
    responses(
        (status = 200, description = "OK", body = SessionInfo),
        (status = "4XX", description = "Bad or unknown id", body = ErrorBody),
        (status = "5XX", description = "Server error", body = ErrorBody),
    )
)]
pub async fn get_session(
    State(svc): State<LabService>,
    ApiPath(p): ApiPath<SessionPath>,
) -> ApiResult<Json<SessionInfo>> {
    Ok(Json(svc.get_session(p.sid).await?))
}

/// Ends a session; its history stays.
#[utoipa::path(
    delete, path = "/api/v1/sessions/{sid}", tag = "sessions",
    params(("sid" = u64, Path, description = "Session id")),
    responses(
        (status = 200, description = "The ended session", body = SessionInfo),
        (status = "4XX", description = "Unknown or already ended", body = ErrorBody),
        (status = "5XX", description = "Server error", body = ErrorBody),
    )
)]
pub async fn end_session(
    State(svc): State<LabService>,
    ApiPath(p): ApiPath<SessionPath>,
) -> ApiResult<Json<SessionInfo>> {
    Ok(Json(svc.end_session(p.sid).await?))
}

/// Changes settings of a running session's profile (a `sysctl` mid-script).
/// The body names the settings to change, as a session's `profile` does
/// (`{"delayed_ack_ms": 100}`; no `name`). Settings a connection reads where
/// it uses them apply at once to every listener and connection; those fixed
/// when an endpoint opens (`handshake`, `isn`, `mss`, `window`,
/// `send_buffer`, the RTO bounds, `rcv_window_from_buffer`, `cc`,
/// `initial_window`, `sack`) may change only while none is open, else 400
/// naming them.
#[utoipa::path(
    patch, path = "/api/v1/sessions/{sid}/profile", tag = "sessions",
    params(("sid" = u64, Path, description = "Session id")),
    request_body(content = Object, description = "The settings to change", example = json!({"delayed_ack_ms": 100})),
    responses(
        (status = 200, description = "The session's profile after the change", body = Object),
        (status = "4XX", description = "Unknown or fixed setting, bad value, unknown or ended session", body = ErrorBody),
        (status = "5XX", description = "Server error", body = ErrorBody),
    )
)]
pub async fn patch_profile(
    State(svc): State<LabService>,
    ApiPath(p): ApiPath<SessionPath>,
    ApiJson(settings): ApiJson<serde_json::Map<String, serde_json::Value>>,
) -> ApiResult<Json<crate::engine::Profile>> {
    Ok(Json(svc.patch_profile(p.sid, settings).await?))
}

// ----- topology -----

/// Adds a host.
#[utoipa::path(
    post, path = "/api/v1/sessions/{sid}/hosts", tag = "topology",
    params(("sid" = u64, Path, description = "Session id")),
    request_body = AddHost,
    responses(
        (status = 201, description = "Created", body = HostInfo),
        (status = "4XX", description = "Bad input, unknown or ended session, duplicate, limit", body = ErrorBody),
        (status = "5XX", description = "Server error", body = ErrorBody),
    )
)]
pub async fn add_host(
    State(svc): State<LabService>,
    ApiPath(p): ApiPath<SessionPath>,
    ApiJson(req): ApiJson<AddHost>,
) -> ApiResult<impl IntoResponse> {
    Ok((StatusCode::CREATED, Json(svc.add_host(p.sid, req).await?)))
}

/// The hosts of a live session.
#[utoipa::path(
    get, path = "/api/v1/sessions/{sid}/hosts", tag = "topology",
    params(("sid" = u64, Path, description = "Session id")),
    responses(
        (status = 200, description = "OK", body = HostList),
        (status = "4XX", description = "Unknown or ended session", body = ErrorBody),
        (status = "5XX", description = "Server error", body = ErrorBody),
    )
)]
pub async fn list_hosts(State(svc): State<LabService>, ApiPath(p): ApiPath<SessionPath>) -> ApiResult<Json<HostList>> {
    Ok(Json(HostList { hosts: svc.list_hosts(p.sid).await? }))
}

/// Sets the link between two hosts, both directions.
#[utoipa::path(
    put, path = "/api/v1/sessions/{sid}/links", tag = "topology",
    params(("sid" = u64, Path, description = "Session id")),
    request_body = SetLink,
    responses(
        (status = 200, description = "OK", body = LinkInfo),
        (status = "4XX", description = "Bad settings, unknown hosts", body = ErrorBody),
        (status = "5XX", description = "Server error", body = ErrorBody),
    )
)]
pub async fn set_link(
    State(svc): State<LabService>,
    ApiPath(p): ApiPath<SessionPath>,
    ApiJson(req): ApiJson<SetLink>,
) -> ApiResult<Json<LinkInfo>> {
    Ok(Json(svc.set_link(p.sid, req).await?))
}

/// Every link direction set explicitly.
#[utoipa::path(
    get, path = "/api/v1/sessions/{sid}/links", tag = "topology",
    params(("sid" = u64, Path, description = "Session id")),
    responses(
        (status = 200, description = "OK", body = LinkList),
        (status = "4XX", description = "Unknown or ended session", body = ErrorBody),
        (status = "5XX", description = "Server error", body = ErrorBody),
    )
)]
pub async fn list_links(State(svc): State<LabService>, ApiPath(p): ApiPath<SessionPath>) -> ApiResult<Json<LinkList>> {
    Ok(Json(LinkList { links: svc.list_links(p.sid).await? }))
}

// ----- connections -----

/// Opens a listener (passive OPEN).
#[utoipa::path(
    post, path = "/api/v1/sessions/{sid}/listeners", tag = "connections",
    params(("sid" = u64, Path, description = "Session id")),
    request_body = AddListener,
    responses(
        (status = 201, description = "Created", body = ListenerInfo),
        (status = "4XX", description = "Bad port, unknown host, port in use", body = ErrorBody),
        (status = "5XX", description = "Server error", body = ErrorBody),
    )
)]
pub async fn add_listener(
    State(svc): State<LabService>,
    ApiPath(p): ApiPath<SessionPath>,
    ApiJson(req): ApiJson<AddListener>,
) -> ApiResult<impl IntoResponse> {
    Ok((StatusCode::CREATED, Json(svc.add_listener(p.sid, req).await?)))
}

/// The listeners of a live session.
#[utoipa::path(
    get, path = "/api/v1/sessions/{sid}/listeners", tag = "connections",
    params(("sid" = u64, Path, description = "Session id")),
    responses(
        (status = 200, description = "OK", body = ListenerList),
        (status = "4XX", description = "Unknown or ended session", body = ErrorBody),
        (status = "5XX", description = "Server error", body = ErrorBody),
    )
)]
pub async fn list_listeners(
    State(svc): State<LabService>,
    ApiPath(p): ApiPath<SessionPath>,
) -> ApiResult<Json<ListenerList>> {
    Ok(Json(ListenerList { listeners: svc.list_listeners(p.sid).await? }))
}

/// The user's accept() on a listener: the next connection it made that is
/// established and not accepted yet (accepting frees a backlog place).
#[utoipa::path(
    post, path = "/api/v1/sessions/{sid}/listeners/{lid}/accept", tag = "connections",
    params(("sid" = u64, Path, description = "Session id"), ("lid" = u64, Path, description = "Listener id")),
    responses(
        (status = 200, description = "The connection now accepted", body = ConnectionInfo),
        (status = 404, description = "Unknown session or listener, or no established connection to accept", body = ErrorBody),
        (status = "4XX", description = "Ended session", body = ErrorBody),
        (status = "5XX", description = "Server error", body = ErrorBody),
    )
)]
pub async fn accept(
    State(svc): State<LabService>,
    ApiPath(p): ApiPath<ListenerPath>,
) -> ApiResult<Json<ConnectionInfo>> {
    Ok(Json(svc.accept(p.sid, p.lid).await?))
}

/// The user's close() of a listening socket: the port stops listening;
/// connections it made that nobody accepted are reset, accepted ones live on.
#[utoipa::path(
    delete, path = "/api/v1/sessions/{sid}/listeners/{lid}", tag = "connections",
    params(("sid" = u64, Path, description = "Session id"), ("lid" = u64, Path, description = "Listener id")),
    responses(
        (status = 204, description = "Closed"),
        (status = 404, description = "Unknown session, or a listener unknown or already closed", body = ErrorBody),
        (status = "4XX", description = "Ended session", body = ErrorBody),
        (status = "5XX", description = "Server error", body = ErrorBody),
    )
)]
pub async fn close_listener(State(svc): State<LabService>, ApiPath(p): ApiPath<ListenerPath>) -> ApiResult<StatusCode> {
    svc.close_listener(p.sid, p.lid).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Active OPEN: the SYN leaves now.
#[utoipa::path(
    post, path = "/api/v1/sessions/{sid}/connections", tag = "connections",
    params(("sid" = u64, Path, description = "Session id")),
    request_body = OpenConnection,
    responses(
        (status = 201, description = "Created", body = ConnectionInfo),
        (status = "4XX", description = "Bad ports, unknown hosts, four-tuple in use, limit", body = ErrorBody),
        (status = "5XX", description = "Server error", body = ErrorBody),
    )
)]
pub async fn open_connection(
    State(svc): State<LabService>,
    ApiPath(p): ApiPath<SessionPath>,
    ApiJson(req): ApiJson<OpenConnection>,
) -> ApiResult<impl IntoResponse> {
    Ok((StatusCode::CREATED, Json(svc.open_connection(p.sid, req).await?)))
}

/// Every connection of a live session.
#[utoipa::path(
    get, path = "/api/v1/sessions/{sid}/connections", tag = "connections",
    params(("sid" = u64, Path, description = "Session id")),
    responses(
        (status = 200, description = "OK", body = ConnectionList),
        (status = "4XX", description = "Unknown or ended session", body = ErrorBody),
        (status = "5XX", description = "Server error", body = ErrorBody),
    )
)]
pub async fn list_connections(
    State(svc): State<LabService>,
    ApiPath(p): ApiPath<SessionPath>,
) -> ApiResult<Json<ConnectionList>> {
    Ok(Json(ConnectionList { connections: svc.list_connections(p.sid).await? }))
}

/// One connection with both ends' TCBs.
#[utoipa::path(
    get, path = "/api/v1/sessions/{sid}/connections/{cid}", tag = "connections",
    params(
        ("sid" = u64, Path, description = "Session id"),
        ("cid" = u64, Path, description = "Connection id"),
    ),
    responses(
        (status = 200, description = "OK", body = ConnectionInfo),
        (status = "4XX", description = "Unknown ids", body = ErrorBody),
        (status = "5XX", description = "Server error", body = ErrorBody),
    )
)]
pub async fn get_connection(
    State(svc): State<LabService>,
    ApiPath(p): ApiPath<ConnectionPath>,
) -> ApiResult<Json<ConnectionInfo>> {
    Ok(Json(svc.get_connection(p.sid, p.cid).await?))
}

/// SEND from one end.
#[utoipa::path(
    post, path = "/api/v1/sessions/{sid}/connections/{cid}/send", tag = "connections",
    params(
        ("sid" = u64, Path, description = "Session id"),
        ("cid" = u64, Path, description = "Connection id"),
    ),
    request_body = SendData,
    responses(
        (status = 200, description = "OK", body = SendResult),
        (status = "4XX", description = "Bad data, unknown ids, a state that cannot send, body too large", body = ErrorBody),
        (status = "5XX", description = "Server error", body = ErrorBody),
    )
)]
pub async fn send(
    State(svc): State<LabService>,
    ApiPath(p): ApiPath<ConnectionPath>,
    ApiJson(req): ApiJson<SendData>,
) -> ApiResult<Json<SendResult>> {
    Ok(Json(svc.send(p.sid, p.cid, req).await?))
}

/// Everything one end has received, in order.
#[utoipa::path(
    get, path = "/api/v1/sessions/{sid}/connections/{cid}/received", tag = "connections",
    params(
        ("sid" = u64, Path, description = "Session id"),
        ("cid" = u64, Path, description = "Connection id"),
        ("side" = String, Query, description = "`client` or `server`"),
    ),
    responses(
        (status = 200, description = "OK", body = Received),
        (status = "4XX", description = "Bad side, unknown ids", body = ErrorBody),
        (status = "5XX", description = "Server error", body = ErrorBody),
    )
)]
pub async fn received(
    State(svc): State<LabService>,
    ApiPath(p): ApiPath<ConnectionPath>,
    ApiQuery(q): ApiQuery<SideQuery>,
) -> ApiResult<Json<Received>> {
    use serde::de::IntoDeserializer as _;
    let side = Side::deserialize(q.side.as_str().into_deserializer())
        .map_err(|e: serde::de::value::Error| ApiError::invalid("side", e.to_string()))?;
    Ok(Json(svc.received(p.sid, p.cid, side).await?))
}

/// CLOSE one end: `how` is `shutdown_write` (the default: shutdown(SHUT_WR),
/// the end still reads) or `close` (close() of the socket: data arriving
/// before the peer's FIN is answered with a reset).
#[utoipa::path(
    post, path = "/api/v1/sessions/{sid}/connections/{cid}/close", tag = "connections",
    params(
        ("sid" = u64, Path, description = "Session id"),
        ("cid" = u64, Path, description = "Connection id"),
    ),
    request_body = CloseRequest,
    responses(
        (status = 200, description = "OK", body = ConnectionInfo),
        (status = "4XX", description = "Unknown ids, a state that refuses", body = ErrorBody),
        (status = "5XX", description = "Server error", body = ErrorBody),
    )
)]
pub async fn close(
    State(svc): State<LabService>,
    ApiPath(p): ApiPath<ConnectionPath>,
    ApiJson(req): ApiJson<CloseRequest>,
) -> ApiResult<Json<ConnectionInfo>> {
    Ok(Json(svc.close(p.sid, p.cid, req).await?))
}

/// ABORT one end (a RST leaves).
#[utoipa::path(
    post, path = "/api/v1/sessions/{sid}/connections/{cid}/abort", tag = "connections",
    params(
        ("sid" = u64, Path, description = "Session id"),
        ("cid" = u64, Path, description = "Connection id"),
    ),
    request_body = SideRequest,
    responses(
        (status = 200, description = "OK", body = ConnectionInfo),
        (status = "4XX", description = "Unknown ids", body = ErrorBody),
        (status = "5XX", description = "Server error", body = ErrorBody),
    )
)]
pub async fn abort(
    State(svc): State<LabService>,
    ApiPath(p): ApiPath<ConnectionPath>,
    ApiJson(req): ApiJson<SideRequest>,
) -> ApiResult<Json<ConnectionInfo>> {
    Ok(Json(svc.abort(p.sid, p.cid, req).await?))
}

// ----- faults and injection -----

/// Installs a fault rule.
#[utoipa::path(
    post, path = "/api/v1/sessions/{sid}/faults", tag = "faults",
    params(("sid" = u64, Path, description = "Session id")),
    request_body = AddFault,
    responses(
        (status = 201, description = "Created", body = FaultInfo),
        (status = "4XX", description = "Bad values, unknown hosts, limit", body = ErrorBody),
        (status = "5XX", description = "Server error", body = ErrorBody),
    )
)]
pub async fn add_fault(
    State(svc): State<LabService>,
    ApiPath(p): ApiPath<SessionPath>,
    ApiJson(req): ApiJson<AddFault>,
) -> ApiResult<impl IntoResponse> {
    Ok((StatusCode::CREATED, Json(svc.add_fault(p.sid, req).await?)))
}

/// The installed fault rules with their counters.
#[utoipa::path(
    get, path = "/api/v1/sessions/{sid}/faults", tag = "faults",
    params(("sid" = u64, Path, description = "Session id")),
    responses(
        (status = 200, description = "OK", body = FaultList),
        (status = "4XX", description = "Unknown or ended session", body = ErrorBody),
        (status = "5XX", description = "Server error", body = ErrorBody),
    )
)]
pub async fn list_faults(
    State(svc): State<LabService>,
    ApiPath(p): ApiPath<SessionPath>,
) -> ApiResult<Json<FaultList>> {
    Ok(Json(FaultList { faults: svc.list_faults(p.sid).await? }))
}

/// Removes a fault rule, releasing what it holds.
#[utoipa::path(
    delete, path = "/api/v1/sessions/{sid}/faults/{fid}", tag = "faults",
    params(
        ("sid" = u64, Path, description = "Session id"),
        ("fid" = u64, Path, description = "Fault rule id"),
    ),
    responses(
        (status = 204, description = "Removed"),
        (status = "4XX", description = "Unknown ids", body = ErrorBody),
        (status = "5XX", description = "Server error", body = ErrorBody),
    )
)]
pub async fn delete_fault(State(svc): State<LabService>, ApiPath(p): ApiPath<FaultPath>) -> ApiResult<StatusCode> {
    svc.delete_fault(p.sid, p.fid).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Sends the segments a rule holds on their way.
#[utoipa::path(
    post, path = "/api/v1/sessions/{sid}/faults/{fid}/release", tag = "faults",
    params(
        ("sid" = u64, Path, description = "Session id"),
        ("fid" = u64, Path, description = "Fault rule id"),
    ),
    responses(
        (status = 200, description = "OK", body = Released),
        (status = "4XX", description = "Unknown ids", body = ErrorBody),
        (status = "5XX", description = "Server error", body = ErrorBody),
    )
)]
pub async fn release_fault(State(svc): State<LabService>, ApiPath(p): ApiPath<FaultPath>) -> ApiResult<Json<Released>> {
    Ok(Json(Released { released: svc.release_fault(p.sid, p.fid).await? }))
}

/// Injects a crafted segment.
#[utoipa::path(
    post, path = "/api/v1/sessions/{sid}/inject", tag = "faults",
    params(("sid" = u64, Path, description = "Session id")),
    request_body = Inject,
    responses(
        (status = 201, description = "Injected", body = InjectResult),
        (status = "4XX", description = "Bad values, unknown hosts", body = ErrorBody),
        (status = "5XX", description = "Server error", body = ErrorBody),
    )
)]
pub async fn inject(
    State(svc): State<LabService>,
    ApiPath(p): ApiPath<SessionPath>,
    ApiJson(req): ApiJson<Inject>,
) -> ApiResult<impl IntoResponse> {
    Ok((StatusCode::CREATED, Json(svc.inject(p.sid, req).await?)))
}

// ----- the clock -----

/// Steps, advances, runs until idle, pauses or resumes the virtual clock.
#[utoipa::path(
    post, path = "/api/v1/sessions/{sid}/clock", tag = "clock",
    params(("sid" = u64, Path, description = "Session id")),
    request_body = ClockRequest,
    responses(
        (status = 200, description = "OK", body = ClockState),
        (status = "4XX", description = "Bad action or values", body = ErrorBody),
        (status = "5XX", description = "Server error", body = ErrorBody),
    )
)]
pub async fn clock(
    State(svc): State<LabService>,
    ApiPath(p): ApiPath<SessionPath>,
    ApiJson(req): ApiJson<ClockRequest>,
) -> ApiResult<Json<ClockState>> {
    Ok(Json(svc.clock(p.sid, req).await?))
}

// ----- history -----

/// A page of a session's events, by `seq`.
#[utoipa::path(
    get, path = "/api/v1/sessions/{sid}/events", tag = "history",
    params(
        ("sid" = u64, Path, description = "Session id"),
        ("after_seq" = Option<u64>, Query, description = "Only events with a greater `seq`"),
        ("limit" = Option<u64>, Query, description = "At most this many (default 1000, at most 10000)"),
        ("kind" = Option<String>, Query, description = "Only these kinds, comma-separated"),
        ("connection" = Option<u64>, Query, description = "Only this connection's events"),
    ),
    responses(
        (status = 200, description = "OK", body = EventPage),
        (status = "4XX", description = "Unknown session, bad filter", body = ErrorBody),
        (status = "5XX", description = "Server error", body = ErrorBody),
    )
)]
pub async fn events(
    State(svc): State<LabService>,
    ApiPath(p): ApiPath<SessionPath>,
    ApiQuery(q): ApiQuery<EventQuery>,
) -> ApiResult<Json<EventPage>> {
    Ok(Json(svc.events(p.sid, q).await?))
}

/// Every segment of a session with its fate.
#[utoipa::path(
    get, path = "/api/v1/sessions/{sid}/segments", tag = "history",
    params(("sid" = u64, Path, description = "Session id")),
    responses(
        (status = 200, description = "OK", body = SegmentList),
        (status = "4XX", description = "Unknown session", body = ErrorBody),
        (status = "5XX", description = "Server error", body = ErrorBody),
    )
)]
pub async fn segments(State(svc): State<LabService>, ApiPath(p): ApiPath<SessionPath>) -> ApiResult<Json<SegmentList>> {
    Ok(Json(svc.segments(p.sid).await?))
}

/// The session's segments as a pcap file for Wireshark/tshark: one packet per
/// segment as sent (lost and dropped ones included), Ethernet + IPv4 + TCP
/// with correct checksums, timestamps in virtual time.
#[utoipa::path(
    get, path = "/api/v1/sessions/{sid}/pcap", tag = "history",
    params(("sid" = u64, Path, description = "Session id")),
    responses(
        (status = 200, description = "A pcap file (nanosecond timestamps, Ethernet link type); at most \
            max_report_events packets",
         content_type = "application/vnd.tcpdump.pcap", body = Vec<u8>,
         headers(("x-tcplab-truncated" = String, description = "`true` when the session sent more segments than the capture holds"))),
        (status = "4XX", description = "Unknown session", body = ErrorBody),
        (status = "5XX", description = "Server error", body = ErrorBody),
    )
)]
pub async fn pcap(
    State(svc): State<LabService>,
    ApiPath(p): ApiPath<SessionPath>,
) -> ApiResult<axum::response::Response> {
    let capture = svc.pcap(p.sid).await?;
    let disposition = format!("attachment; filename=\"tcplab-session-{}.pcap\"", p.sid);
    Ok((
        [
            (axum::http::header::CONTENT_TYPE, crate::pcap::CONTENT_TYPE.to_string()),
            (axum::http::header::CONTENT_DISPOSITION, disposition),
            // The first max_report_events segments when the session sent more.
            (axum::http::HeaderName::from_static("x-tcplab-truncated"), capture.truncated.to_string()),
        ],
        capture.pcap,
    )
        .into_response())
}
