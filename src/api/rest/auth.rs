//! Access control and CORS for the REST API and the dashboard: one axum
//! middleware that finds the presented token and asks
//! [`AccessConfig::check`], and tower-http's `CorsLayer` when origins are
//! configured.
//!
//! A token is taken from, in order: the `Authorization: Bearer` header (API
//! clients), the `?token=` query parameter (a browser opening the dashboard
//! or an `EventSource`, which cannot set headers), or the `tcplab_token`
//! cookie. A request authenticated by `?token=` gets that cookie back
//! (`HttpOnly`, `SameSite=Strict`), so the page's stylesheets, scripts and
//! API calls that follow carry it with no change to the dashboard; the
//! parameter is removed before routing, so handlers with strict query
//! parsing never see it. `GET`/`HEAD` read; every other method changes.
//! `GET /healthz` stays open for probes.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tower_http::cors::{AllowOrigin, CorsLayer};

use super::error::ApiError;
use crate::auth::AccessConfig;

/// The cookie that carries the token for a browser.
pub const COOKIE: &str = "tcplab_token";

/// Wraps `router` (every route and the dashboard's fallback) in access
/// control, and in CORS when `access.cors_origins` is not empty.
pub fn protect(router: Router, access: Arc<AccessConfig>) -> Router {
    let cors = cors_layer(&access.cors_origins);
    let router = if access.enabled() {
        router.layer(axum::middleware::from_fn_with_state(access, authenticate))
    } else {
        router
    };
    // CORS outermost: a preflight carries no credentials and must not get a 401.
    match cors {
        Some(cors) => router.layer(cors),
        None => router,
    }
}

/// `CorsLayer` for the configured origins, or `None` (CORS off: browsers on
/// other origins may not read the API's answers).
fn cors_layer(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let origins: Vec<HeaderValue> = origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()).collect();
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_methods([Method::GET, Method::HEAD, Method::POST, Method::PUT, Method::DELETE])
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE, "last-event-id".parse().expect("header name")])
            .max_age(std::time::Duration::from_secs(600)),
    )
}

/// The middleware: allow, or answer 401/403 with the JSON error body.
async fn authenticate(State(access): State<Arc<AccessConfig>>, mut req: Request, next: Next) -> Response {
    if req.uri().path() == "/healthz" {
        return next.run(req).await;
    }
    let (query_token, stripped) = take_query_token(req.uri());
    let header_token =
        req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(crate::auth::bearer);
    let cookie_token = cookie(&req);
    let presented = header_token.map(str::to_string).or_else(|| query_token.clone()).or(cookie_token);
    let changes = !matches!(*req.method(), Method::GET | Method::HEAD);
    if let Err(e) = access.check(presented.as_deref(), changes) {
        let unauthenticated = matches!(e, crate::service::Error::Unauthenticated(_));
        let mut response = ApiError::from(e).into_response();
        if unauthenticated {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        return response;
    }
    if let Some(uri) = stripped {
        *req.uri_mut() = uri;
    }
    let mut response = next.run(req).await;
    // Only a token that passed the check, and only one given by `?token=`, becomes the cookie.
    if let Some(token) = query_token.filter(|t| Some(t) == presented.as_ref()) {
        let value = format!("{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict");
        if let Ok(value) = HeaderValue::from_str(&value) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    response
}

/// The `token` query parameter (decoded) and the URI without it, when present.
fn take_query_token(uri: &Uri) -> (Option<String>, Option<Uri>) {
    let Some(query) = uri.query() else { return (None, None) };
    let is_token = |piece: &&str| piece.split('=').next() == Some("token");
    let Some(raw) = query.split('&').find(is_token) else { return (None, None) };
    let token = raw.split_once('=').map(|(_, v)| percent_decode(v)).filter(|t| !t.is_empty());
    let rest: Vec<&str> = query.split('&').filter(|p| !is_token(p) && !p.is_empty()).collect();
    let path_and_query =
        if rest.is_empty() { uri.path().to_string() } else { format!("{}?{}", uri.path(), rest.join("&")) };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = path_and_query.parse().ok();
    (token, Uri::from_parts(parts).ok())
}

/// `%XX` and `+` decoding of a query value (invalid escapes are kept as they are).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The `tcplab_token` cookie of a request.
fn cookie(req: &Request) -> Option<String> {
    req.headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(COOKIE)?.strip_prefix('=').map(str::to_string))
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_parameter_is_taken_out_of_the_query() {
        let uri: Uri = "/api/v1/sessions/1/events/stream?after_seq=3&token=a%2Bb&kind=x".parse().expect("uri");
        let (token, stripped) = take_query_token(&uri);
        assert_eq!(token.as_deref(), Some("a+b"));
        assert_eq!(stripped.expect("stripped").to_string(), "/api/v1/sessions/1/events/stream?after_seq=3&kind=x");
        let (token, stripped) = take_query_token(&"/?token=abc".parse().expect("uri"));
        assert_eq!((token.as_deref(), stripped.map(|u| u.to_string())), (Some("abc"), Some("/".to_string())));
        let (token, stripped) = take_query_token(&"/x?tokens=1".parse().expect("uri"));
        assert_eq!((token, stripped), (None, None));
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b+c"), "a b c");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(percent_decode("100%"), "100%");
    }
}
