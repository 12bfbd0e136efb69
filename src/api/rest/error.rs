//! The one place where failures become HTTP responses.
//!
//! Every error the REST API sends has the body
//! `{"error":{"code":"<code>","message":"<message>"}}`. A [`service::Error`]
//! keeps its [`service::Error::code`] and gets the status of the table in
//! [`ApiError::status`]; failures that never reach the service (a body that
//! is not JSON, a path id that is not a number, an unknown route) get the
//! same shape with a code of their own.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::service;

/// The body of every error response.
#[derive(Clone, Debug, Serialize, serde::Deserialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// `code` and `message` of an error response.
#[derive(Clone, Debug, Serialize, serde::Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Machine-readable: `invalid_argument`, `not_found`, `already_exists`, `failed_precondition`,
    /// `resource_exhausted`, `unauthenticated`, `permission_denied`, `unavailable`, `internal`, or for
    /// HTTP-level failures `method_not_allowed`, `unsupported_media_type`,
    /// `payload_too_large`.
    pub code: String,
    /// For people; an `invalid_argument` message starts with the field it is about.
    pub message: String,
}

/// A failed REST request.
#[derive(Debug)]
pub enum ApiError {
    /// The service refused or failed.
    Service(service::Error),
    /// The request never reached the service: bad JSON, a bad path id, an
    /// unknown route, a wrong method, a body too large.
    Http {
        /// Status to send.
        status: StatusCode,
        /// `error.code`.
        code: &'static str,
        /// `error.message`.
        message: String,
    },
}

impl ApiError {
    /// A 400 `invalid_argument` about `field` (through the service's own error,
    /// so it is mapped like one).
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> ApiError {
        ApiError::Service(service::Error::invalid(field, message))
    }

    /// A 404 for a path no route serves.
    pub fn no_route(method: &axum::http::Method, path: &str) -> ApiError {
        ApiError::Http {
            status: StatusCode::NOT_FOUND,
            code: "not_found",
            message: format!("no route for {method} {path}"),
        }
    }

    /// A 405 for a route that exists with other methods.
    pub fn method_not_allowed(method: &axum::http::Method, path: &str) -> ApiError {
        ApiError::Http {
            status: StatusCode::METHOD_NOT_ALLOWED,
            code: "method_not_allowed",
            message: format!("method {method} is not allowed on {path}"),
        }
    }

    /// The HTTP status: the one table for service errors.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Service(e) => match e {
                service::Error::InvalidArgument { .. } => StatusCode::BAD_REQUEST,
                service::Error::NotFound { .. } => StatusCode::NOT_FOUND,
                service::Error::AlreadyExists(_) | service::Error::FailedPrecondition(_) => StatusCode::CONFLICT,
                service::Error::LimitExceeded { .. } => StatusCode::TOO_MANY_REQUESTS,
                service::Error::BudgetExceeded { .. } => StatusCode::UNPROCESSABLE_ENTITY,
                service::Error::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
                service::Error::PermissionDenied(_) => StatusCode::FORBIDDEN,
                service::Error::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
                service::Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            },
            ApiError::Http { status, .. } => *status,
        }
    }

    /// `error.code`.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Service(e) => e.code(),
            ApiError::Http { code, .. } => code,
        }
    }

    /// `error.message`: never the details of an internal error.
    pub fn message(&self) -> String {
        match self {
            ApiError::Service(service::Error::Internal(_)) => "internal error".to_string(),
            ApiError::Service(e) => e.to_string(),
            ApiError::Http { message, .. } => message.clone(),
        }
    }

    /// A rejection's status turned into an error code of ours.
    fn from_rejection(status: StatusCode, message: String) -> ApiError {
        match status {
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::Http { status, code: "payload_too_large", message },
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::Http { status, code: "unsupported_media_type", message },
            s if s.is_server_error() => ApiError::Service(service::Error::Internal(message)),
            _ => ApiError::Http { status: StatusCode::BAD_REQUEST, code: "invalid_argument", message },
        }
    }
}

impl From<service::Error> for ApiError {
    fn from(e: service::Error) -> ApiError {
        ApiError::Service(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if let ApiError::Service(service::Error::Internal(details)) = &self {
            tracing::error!(error = %details, "internal error");
        }
        let body = ErrorBody { error: ErrorDetail { code: self.code().to_string(), message: self.message() } };
        (status, Json(body)).into_response()
    }
}

/// The detail after axum's generic first sentence (`Failed to ...: <detail>`).
fn detail(body_text: String, prefix: &str) -> String {
    match body_text.strip_prefix(prefix) {
        Some(rest) => rest.trim_start_matches(':').trim().to_string(),
        None => body_text,
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> ApiError {
        let status = r.status();
        let message = match &r {
            JsonRejection::JsonDataError(_) => format!(
                "request body: {}",
                detail(r.body_text(), "Failed to deserialize the JSON body into the target type")
            ),
            JsonRejection::JsonSyntaxError(_) => {
                format!(
                    "request body is not valid JSON: {}",
                    detail(r.body_text(), "Failed to parse the request body as JSON")
                )
            }
            JsonRejection::MissingJsonContentType(_) => {
                "request body: expected the header Content-Type: application/json".to_string()
            }
            _ if status == StatusCode::PAYLOAD_TOO_LARGE => "request body: larger than max_body_bytes".to_string(),
            _ => format!("request body: {}", r.body_text()),
        };
        ApiError::from_rejection(status, message)
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> ApiError {
        let status = r.status();
        let message = format!("query string: {}", detail(r.body_text(), "Failed to deserialize query string"));
        ApiError::from_rejection(status, message)
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> ApiError {
        use axum::extract::path::ErrorKind;
        let status = r.status();
        match r {
            PathRejection::FailedToDeserializePathParams(e) => match e.into_kind() {
                ErrorKind::ParseErrorAtKey { key, value, expected_type } => {
                    let what = if expected_type.starts_with('u') { "a non-negative integer" } else { expected_type };
                    ApiError::invalid(key, format!("expected {what}, got {value:?}"))
                }
                ErrorKind::DeserializeError { key, value, message } => {
                    ApiError::invalid(key, format!("cannot use {value:?}: {message}"))
                }
                ErrorKind::InvalidUtf8InPathParam { key } => ApiError::invalid(key, "not valid UTF-8"),
                kind => ApiError::from_rejection(status, format!("path: {kind}")),
            },
            other => ApiError::from_rejection(status, format!("path: {}", other.body_text())),
        }
    }
}
