//! The transports' side of [`crate::metrics`]: `GET /metrics`, the axum
//! middleware that times every REST request, and the tower layer that times
//! every gRPC call on the tonic server.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::metrics::Metrics;
use crate::service::LabService;

/// `GET /metrics`: the Prometheus (OpenMetrics text) exposition.
#[utoipa::path(
    get, path = "/metrics", tag = "meta",
    responses((status = 200, description = "Prometheus metrics (OpenMetrics text format)",
               content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8", body = String))
)]
pub async fn metrics(State(service): State<LabService>) -> Response {
    let snapshot = service.metrics_snapshot().await;
    let text = service.metrics().render(&snapshot);
    ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text).into_response()
}

/// Axum middleware (for `Router::layer`, where the matched route is known):
/// observes each request's latency by method, route template and status.
/// Requests no route matched (the dashboard's files, 404s) share the route
/// label `fallback`, so made-up paths cannot create series.
pub async fn track_http(State(metrics): State<Arc<Metrics>>, request: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = request.method().as_str().to_string();
    let route = request.extensions().get::<MatchedPath>().map_or("fallback", MatchedPath::as_str).to_string();
    let response = next.run(request).await;
    metrics.observe_http(&method, &route, response.status().as_u16(), start.elapsed());
    response
}

/// A tower layer for the tonic server that observes each call's latency (to
/// its response headers: for a stream, its set-up) by method and status.
#[derive(Clone, Debug)]
pub struct GrpcMetricsLayer {
    metrics: Arc<Metrics>,
}

impl GrpcMetricsLayer {
    /// A layer recording into `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> GrpcMetricsLayer {
        GrpcMetricsLayer { metrics }
    }
}

impl<S> tower::Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;

    fn layer(&self, inner: S) -> GrpcMetrics<S> {
        GrpcMetrics { inner, metrics: self.metrics.clone() }
    }
}

/// The service [`GrpcMetricsLayer`] wraps around the gRPC routes.
#[derive(Clone, Debug)]
pub struct GrpcMetrics<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

/// gRPC status code names (google.rpc.Code), indexed by code.
const CODES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// The call's status as the response headers carry it: an error answered
/// at once comes as a trailers-only response with `grpc-status` in the
/// headers; a reply or a stream carries it in the trailers, after the
/// headers this layer times, and counts as `OK`.
fn code_of(headers: &axum::http::HeaderMap) -> &'static str {
    match headers.get("grpc-status").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok()) {
        Some(code) => CODES.get(code).copied().unwrap_or("UNKNOWN"),
        None => "OK",
    }
}

/// The method label: the path for the services this server has; unknown
/// paths share one label, so a client cannot create series at will.
fn method_label(path: &str, code: &str) -> String {
    let known = ["/tcplab.v1.LabService/", "/grpc.health.v1.Health/", "/grpc.reflection.v1"];
    if code != "UNIMPLEMENTED" && path.len() <= 100 && known.iter().any(|k| path.starts_with(k)) {
        path.to_string()
    } else {
        "unknown".to_string()
    }
}

impl<S, B, RB> tower::Service<axum::http::Request<B>> for GrpcMetrics<S>
where
    S: tower::Service<axum::http::Request<B>, Response = axum::http::Response<RB>>,
    S::Future: Send + 'static,
    S::Error: 'static,
    RB: 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: axum::http::Request<B>) -> Self::Future {
        let start = Instant::now();
        let path = request.uri().path().to_string();
        let metrics = self.metrics.clone();
        let future = self.inner.call(request);
        Box::pin(async move {
            let result = future.await;
            let code = match &result {
                Ok(response) => code_of(response.headers()),
                Err(_) => "UNAVAILABLE",
            };
            metrics.observe_grpc(&method_label(&path, code), code, start.elapsed());
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_methods_are_labelled_without_unbounded_values() {
        let mut headers = axum::http::HeaderMap::new();
        assert_eq!(code_of(&headers), "OK");
        headers.insert("grpc-status", axum::http::HeaderValue::from_static("5"));
        assert_eq!(code_of(&headers), "NOT_FOUND");
        headers.insert("grpc-status", axum::http::HeaderValue::from_static("99"));
        assert_eq!(code_of(&headers), "UNKNOWN");
        assert_eq!(method_label("/tcplab.v1.LabService/GetSession", "OK"), "/tcplab.v1.LabService/GetSession");
        assert_eq!(method_label("/tcplab.v1.LabService/Nope", "UNIMPLEMENTED"), "unknown");
        assert_eq!(method_label("/evil/anything", "OK"), "unknown");
    }
}
