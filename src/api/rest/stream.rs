//! `GET /api/v1/sessions/{sid}/events/stream`: a session's events as
//! Server-Sent Events, resumable with `Last-Event-ID`.
//!
//! Each event goes out as `id: <seq>`, `event: <kind>`, `data: <the event's
//! JSON>`, exactly as `GET .../events` returns it. By default an event goes
//! out as soon as the session publishes it, before SQLite holds it: after a
//! SIGKILL the stored history is a gap-free prefix of what was streamed and
//! may lack its last events. With `?durable=true` an event goes out only
//! once SQLite holds it (a commit later), so every event received survives
//! a crash. A subscriber that falls behind the live broadcast gets one last
//! event named `lagged` with data `{"last_seq":N}` (and `id: N`, so a
//! reconnecting `EventSource` resumes right there) and the stream ends.
//!
//! When the session ends (or has ended, for a stream of stored history) the
//! last message is an event named `end` with data
//! `{"last_seq":N,"reason":"session_ended"}` and `id: N`. A browser's
//! `EventSource` reconnects after any stream closes; its reconnection (with
//! `Last-Event-ID: N`, nothing left to send) is answered `204 No Content`,
//! which the HTML standard defines as "stop reconnecting". Keep-alive
//! comments go out every [`KEEP_ALIVE`].

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt as _;
use serde::Deserialize;

use super::error::{ApiError, ErrorBody};
use super::extract::{ApiPath, ApiQuery, SessionPath};
use crate::service::{LabService, StreamItem};

/// How often a comment goes out on a quiet stream.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// `GET .../events/stream` query.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamQuery {
    /// Start after this `seq` (the `Last-Event-ID` header wins when both are given).
    #[serde(default)]
    pub after_seq: Option<u64>,
    /// Only these kinds, comma-separated.
    #[serde(default)]
    pub kind: Option<String>,
    /// Only this connection's events.
    #[serde(default)]
    pub connection: Option<u64>,
    /// Only events SQLite already holds (default false: at once, each marked).
    #[serde(default)]
    pub durable: Option<bool>,
}

/// One message of the stream as an SSE parser (a browser's `EventSource`,
/// schemathesis) reads it; the OpenAPI document describes each message
/// with it, as OpenAPI 3.1 does for `text/event-stream`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // only its schema is used: axum writes the messages
pub struct SseMessage {
    /// The event's kind (`state_changed`, `segment_sent`, ...), or the
    /// stream's own `lagged` or `end`.
    pub event: String,
    /// The event's `seq` (for `lagged` and `end`, the last one handed over),
    /// which a reconnection sends back as `Last-Event-ID`.
    pub id: String,
    /// The event's JSON as `GET .../events` returns it; for `lagged`
    /// `{"last_seq":N}`, for `end` `{"last_seq":N,"reason":"session_ended"}`.
    pub data: String,
}

/// The `seq` to start after: `Last-Event-ID` if present, else `after_seq`, else 0.
fn start_after(headers: &HeaderMap, query: &StreamQuery) -> Result<u64, ApiError> {
    let Some(value) = headers.get("last-event-id") else { return Ok(query.after_seq.unwrap_or(0)) };
    let text = value.to_str().map_err(|_| ApiError::invalid("Last-Event-ID", "not visible ASCII"))?.trim();
    if text.is_empty() {
        return Ok(query.after_seq.unwrap_or(0));
    }
    text.parse::<u64>().map_err(|_| {
        ApiError::invalid("Last-Event-ID", format!("expected an event seq (a non-negative integer), got {text:?}"))
    })
}

/// A session's events as Server-Sent Events: stored ones after the start, then live ones.
#[utoipa::path(
    get, path = "/api/v1/sessions/{sid}/events/stream", tag = "history",
    params(
        ("sid" = u64, Path, description = "Session id"),
        ("after_seq" = Option<u64>, Query, description = "Start after this seq (`Last-Event-ID` wins)"),
        ("kind" = Option<String>, Query, description = "Only these kinds, comma-separated"),
        ("connection" = Option<u64>, Query, description = "Only this connection's events"),
        ("durable" = Option<bool>, Query, description = "Send each event only once SQLite holds it (it then survives a server crash)"),
        ("Last-Event-ID" = Option<u64>, Header, description = "Resume after this seq"),
    ),
    responses(
        (status = 200, description = "`id: <seq>`, `event: <kind>`, `data: <event JSON>` per event; a final \
            `lagged` event with `{\"last_seq\":N}` if the client fell behind; when the session ends, a final \
            `end` event with `{\"last_seq\":N,\"reason\":\"session_ended\"}`",
            content_type = "text/event-stream", body = SseMessage),
        (status = 204, description = "The session has ended and nothing is left after the start: stop reconnecting"),
        (status = "4XX", description = "Unknown session, bad filter, bad Last-Event-ID, subscriber limit", body = ErrorBody),
        (status = "5XX", description = "Server error", body = ErrorBody),
    )
)]
pub async fn event_stream(
    State(svc): State<LabService>,
    ApiPath(p): ApiPath<SessionPath>,
    ApiQuery(q): ApiQuery<StreamQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let after = start_after(&headers, &q)?;
    let sid = p.sid;
    let subscription = svc.subscribe(sid, after, q.kind.as_deref(), q.connection, q.durable.unwrap_or(false)).await?;
    if let Some(last_seq) = ended_at(&svc, sid).await? {
        if after >= last_seq {
            return Ok(StatusCode::NO_CONTENT.into_response());
        }
    }
    // After `lagged` or `end` the subscription ends, and so does the stream.
    // REST never asks for `caught_up` (SSE has no message for it).
    let events = subscription.into_stream().filter_map(|item| {
        std::future::ready(Some(Ok::<_, Infallible>(match item {
            // Durability is the stream's choice (`?durable=true`); the data stays the stored JSON.
            StreamItem::Event { event: e, .. } => {
                Event::default().id(e.seq().to_string()).event(e.kind()).data(&*e.body)
            }
            StreamItem::Lagged { last_seq } => Event::default()
                .id(last_seq.to_string())
                .event("lagged")
                .data(serde_json::json!({ "last_seq": last_seq }).to_string()),
            StreamItem::End { last_seq } => Event::default()
                .id(last_seq.to_string())
                .event("end")
                .data(serde_json::json!({ "last_seq": last_seq, "reason": "session_ended" }).to_string()),
            StreamItem::CaughtUp { .. } => return std::future::ready(None),
        })))
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(KEEP_ALIVE).text("keep-alive")).into_response())
}

/// The session's last event's seq when it has ended, `None` while it is live.
async fn ended_at(svc: &LabService, sid: u64) -> Result<Option<u64>, ApiError> {
    let info = svc.get_session(sid).await?;
    Ok((info.status != "live").then_some(info.events))
}
