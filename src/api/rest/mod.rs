//! The REST API: axum routes over [`LabService`], one thin handler per
//! operation, JSON in the shapes of [`crate::service::model`].
//!
//! - Every failure, including bad input that never reaches the service, an
//!   unknown route (404) and a wrong method (405), has the body
//!   `{"error":{"code":"<code>","message":"<message>"}}` ([`ApiError`]).
//! - Request bodies are limited to `limits.max_body_bytes` (413 beyond).
//! - `GET /api/v1/openapi.json` is the OpenAPI 3.1 document ([`ApiDoc`]),
//!   generated from the handlers' `#[utoipa::path]` attributes.
//! - `GET .../events/stream` is Server-Sent Events ([`stream`]).
//!
//! [`router`] has a fallback (the dashboard's files from
//! [`crate::api::web`], else the 404 body) and a method-not-allowed
//! fallback; to merge another router with its own fallback into it, call
//! `reset_fallback` on one of them first.

pub mod auth;
pub mod error;
pub mod extract;
pub mod handlers;
pub mod json;
pub mod labs;
pub mod stream;
#[cfg(test)]
mod tests;
pub mod wire;

use std::sync::OnceLock;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{Method, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;

pub use error::{ApiError, ErrorBody, ErrorDetail};
use handlers::*;

use crate::service::LabService;
use crate::service::model::*;

/// The OpenAPI document of the REST API.
#[derive(OpenApi)]
#[openapi(
    info(title = "tcplab", description = "A TCP connection lab: a deterministic RFC 9293 TCP on a simulated network."),
    paths(
        handlers::healthz,
        openapi_json,
        handlers::list_profiles,
        handlers::run_packetdrill,
        handlers::create_session,
        handlers::list_sessions,
        handlers::get_session,
        handlers::patch_profile,
        handlers::end_session,
        handlers::add_host,
        handlers::list_hosts,
        handlers::set_link,
        handlers::list_links,
        handlers::add_listener,
        handlers::list_listeners,
        handlers::accept,
        handlers::close_listener,
        handlers::open_connection,
        handlers::list_connections,
        handlers::get_connection,
        handlers::send,
        handlers::received,
        handlers::close,
        handlers::abort,
        handlers::add_fault,
        handlers::list_faults,
        handlers::delete_fault,
        handlers::release_fault,
        handlers::inject,
        handlers::clock,
        handlers::events,
        stream::event_stream,
        handlers::segments,
        labs::list_labs,
        labs::get_lab,
        labs::run_lab,
        labs::run_lab_toml,
        handlers::pcap,
        crate::api::metrics::metrics,
    ),
    components(schemas(
        ErrorBody,
        ErrorDetail,
        stream::SseMessage,
        Health,
        ClockMode,
        CreateSession,
        ProfileInfo,
        ProfileList,
        crate::service::packetdrill::RunPacketdrill,
        crate::service::packetdrill::PacketdrillResult,
        crate::service::packetdrill::PacketdrillMismatch,
        SessionInfo,
        SessionList,
        AddHost,
        HostInfo,
        HostList,
        SetLink,
        LinkInfo,
        LinkList,
        AddListener,
        ListenerInfo,
        ListenerList,
        OpenConnection,
        EndInfo,
        ConnectionInfo,
        ConnectionList,
        SideRequest,
        CloseRequest,
        SendData,
        SendResult,
        Received,
        AddFault,
        FaultMatch,
        FaultInfo,
        FaultList,
        Released,
        InjectEndpoint,
        Inject,
        InjectResult,
        ClockRequest,
        ClockState,
        crate::service::LimitHit,
        EventPage,
        SegmentInfo,
        SegmentList,
        crate::service::labs::LabList,
        crate::service::labs::LabInfo,
        crate::service::labs::LabVariantInfo,
        crate::service::labs::RunLab,
        crate::service::labs::RunLabToml,
        crate::service::labs::LabRunResult,
        crate::service::labs::LabVariantRun,
        crate::service::labs::LabCheck,
    )),
    tags(
        (name = "meta", description = "Health and this document"),
        (name = "sessions", description = "Sessions: one simulated world each"),
        (name = "topology", description = "Hosts and links"),
        (name = "connections", description = "Listeners, connections and the user calls of RFC 9293"),
        (name = "faults", description = "Fault rules and injected segments"),
        (name = "clock", description = "The virtual clock"),
        (name = "history", description = "Events and segments"),
        (name = "labs", description = "Built-in labs, run as sessions"),
    )
)]
pub struct ApiDoc;

/// The document as JSON text, built once.
fn openapi_text() -> Bytes {
    static TEXT: OnceLock<Bytes> = OnceLock::new();
    TEXT.get_or_init(|| Bytes::from(ApiDoc::openapi().to_json().unwrap_or_else(|_| "{}".to_string()))).clone()
}

/// This document.
#[utoipa::path(
    get, path = "/api/v1/openapi.json", tag = "meta",
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json", body = Object))
)]
pub async fn openapi_json() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], openapi_text()).into_response()
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::method_not_allowed(&method, uri.path())
}

/// The REST API over `service`, with its state applied: serve it, or merge it
/// into a larger router.
pub fn router(service: LabService) -> Router {
    let body_limit = service.limits().max_body_bytes;
    let conn = "/api/v1/sessions/{sid}/connections/{cid}";
    Router::new()
        .route("/healthz", get(healthz))
        .route("/api/v1/openapi.json", get(openapi_json))
        .route("/api/v1/profiles", get(list_profiles))
        .route("/api/v1/sessions", post(create_session).get(list_sessions))
        .route("/api/v1/sessions/{sid}", get(get_session).delete(end_session))
        .route("/api/v1/sessions/{sid}/profile", axum::routing::patch(patch_profile))
        .route("/api/v1/sessions/{sid}/hosts", post(add_host).get(list_hosts))
        .route("/api/v1/sessions/{sid}/links", axum::routing::put(set_link).get(list_links))
        .route("/api/v1/sessions/{sid}/listeners", post(add_listener).get(list_listeners))
        .route("/api/v1/sessions/{sid}/listeners/{lid}", axum::routing::delete(close_listener))
        .route("/api/v1/sessions/{sid}/listeners/{lid}/accept", post(accept))
        .route("/api/v1/sessions/{sid}/connections", post(open_connection).get(list_connections))
        .route(conn, get(get_connection))
        .route(&format!("{conn}/send"), post(send))
        .route(&format!("{conn}/received"), get(received))
        .route(&format!("{conn}/close"), post(close))
        .route(&format!("{conn}/abort"), post(abort))
        .route("/api/v1/sessions/{sid}/faults", post(add_fault).get(list_faults))
        .route("/api/v1/sessions/{sid}/faults/{fid}", axum::routing::delete(delete_fault))
        .route("/api/v1/sessions/{sid}/faults/{fid}/release", post(release_fault))
        .route("/api/v1/sessions/{sid}/inject", post(inject))
        .route("/api/v1/sessions/{sid}/packetdrill", post(run_packetdrill))
        .route("/api/v1/sessions/{sid}/clock", post(clock))
        .route("/api/v1/sessions/{sid}/events", get(events))
        .route("/api/v1/sessions/{sid}/events/stream", get(stream::event_stream))
        .route("/api/v1/sessions/{sid}/segments", get(segments))
        .route("/api/v1/labs", get(labs::list_labs))
        .route("/api/v1/labs/runs", post(labs::run_lab_toml))
        .route("/api/v1/labs/{name}", get(labs::get_lab))
        .route("/api/v1/labs/{name}/runs", post(labs::run_lab))
        .route("/api/v1/sessions/{sid}/pcap", get(pcap))
        .route("/metrics", get(crate::api::metrics::metrics))
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(crate::api::web::fallback)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn_with_state(body_limit, refuse_oversized_after_reading))
        .layer(TraceLayer::new_for_http())
        .layer(axum::middleware::from_fn_with_state(service.metrics().clone(), crate::api::metrics::track_http))
        .with_state(service)
}

/// How much of a refused body is read (and dropped) before the 413, at most.
const OVERSIZED_DRAIN_BYTES: usize = 64 * 1024 * 1024;
/// How long reading a refused body may take, at most.
const OVERSIZED_DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(2);

/// A POST, PUT or PATCH body whose declared length is over `max_body_bytes`
/// gets its 413 once the client has sent it (read and dropped, within a
/// bound), not while it is still sending: a server that closes a connection
/// with unread octets resets it, and a client still uploading then sees the
/// reset instead of the answer. A client that waits for `100 Continue` gets
/// the 413 at once. (A body without a declared length is cut at the limit
/// by `DefaultBodyLimit` as before.)
async fn refuse_oversized_after_reading(
    axum::extract::State(limit): axum::extract::State<usize>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    use futures::StreamExt as _;
    let declared =
        request.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    let has_body = matches!(*request.method(), Method::POST | Method::PUT | Method::PATCH);
    if !has_body || declared.is_none_or(|n| n <= limit as u64) {
        return next.run(request).await;
    }
    // A client that waits for `100 Continue` before sending the body has sent
    // nothing: answer at once (reading would invite the upload).
    let waits_to_send = request
        .headers()
        .get(header::EXPECT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
    if waits_to_send {
        return payload_too_large();
    }
    let mut body = request.into_body().into_data_stream();
    let mut read = 0usize;
    let _ = tokio::time::timeout(OVERSIZED_DRAIN_TIME, async {
        while let Some(Ok(chunk)) = body.next().await {
            read += chunk.len();
            if read > OVERSIZED_DRAIN_BYTES {
                break;
            }
        }
    })
    .await;
    payload_too_large()
}

fn payload_too_large() -> Response {
    error::ApiError::Http {
        status: axum::http::StatusCode::PAYLOAD_TOO_LARGE,
        code: "payload_too_large",
        message: "request body: larger than max_body_bytes".to_string(),
    }
    .into_response()
}
