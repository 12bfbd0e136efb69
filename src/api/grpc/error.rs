//! The one place where a [`service::Error`] becomes a [`tonic::Status`].
//!
//! The status code follows [`service::Error::code`] (the same names REST puts
//! in `error.code`), and the message is the error's `Display`, so both APIs
//! word a failure the same way. Internal errors are logged with their detail
//! and reach the client only as "internal error".

use tonic::{Code, Status};

use crate::service;

/// The gRPC code for each service error; exhaustive, so a new variant must
/// be given one here.
fn code(error: &service::Error) -> Code {
    match error {
        service::Error::InvalidArgument { .. } => Code::InvalidArgument,
        service::Error::NotFound { .. } => Code::NotFound,
        service::Error::AlreadyExists(_) => Code::AlreadyExists,
        service::Error::FailedPrecondition(_) => Code::FailedPrecondition,
        service::Error::LimitExceeded { .. } | service::Error::BudgetExceeded { .. } => Code::ResourceExhausted,
        service::Error::Unauthenticated(_) => Code::Unauthenticated,
        service::Error::PermissionDenied(_) => Code::PermissionDenied,
        service::Error::Unavailable => Code::Unavailable,
        service::Error::Internal(_) => Code::Internal,
    }
}

impl From<service::Error> for Status {
    fn from(error: service::Error) -> Status {
        if let service::Error::Internal(detail) = &error {
            tracing::error!(detail = %detail, "internal error in a gRPC call");
        }
        // `Display` of `Internal` is the generic "internal error", never the detail.
        Status::new(code(&error), error.to_string())
    }
}
