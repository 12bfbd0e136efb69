//! Extractors whose rejections are [`ApiError`]s: the same JSON error body
//! as every other failure, naming the field serde or the path complained about.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// A JSON request body (`Content-Type: application/json`, at most
/// `max_body_bytes`, unknown fields refused by the model types).
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let json_type = req
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(is_json_media_type);
        if !json_type {
            return Err(ApiError::Http {
                status: axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
                code: "unsupported_media_type",
                message: "request body: expected the header Content-Type: application/json".to_string(),
            });
        }
        let bytes = match bytes::Bytes::from_request(req, state).await {
            Ok(bytes) => bytes,
            Err(rejection) => return Err(axum::extract::rejection::JsonRejection::from(rejection).into()),
        };
        super::json::from_slice(&bytes).map(ApiJson)
    }
}

/// `application/json` or another `application/...+json`, parameters aside.
fn is_json_media_type(value: &str) -> bool {
    let essence = value.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Path parameters, deserialised into a struct so a bad one is named.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiPath<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(ApiPath(value)),
            Err(rejection) => Err(rejection.into()),
        }
    }
}

/// A query string.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(ApiQuery(value)),
            Err(rejection) => Err(rejection.into()),
        }
    }
}

/// `/api/v1/sessions/{sid}...`.
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct SessionPath {
    /// Session id.
    pub sid: u64,
}

/// `/api/v1/sessions/{sid}/connections/{cid}...`.
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct ConnectionPath {
    /// Session id.
    pub sid: u64,
    /// Connection id.
    pub cid: u64,
}

/// `/api/v1/sessions/{sid}/faults/{fid}...`.
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct FaultPath {
    /// Session id.
    pub sid: u64,
    /// Fault rule id.
    pub fid: u64,
}

/// `/api/v1/sessions/{sid}/listeners/{lid}...`.
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct ListenerPath {
    /// Session id.
    pub sid: u64,
    /// Listener id.
    pub lid: u64,
}
