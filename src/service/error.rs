//! The one error type of the service layer. REST maps it once to an HTTP
//! status with a JSON body, gRPC once to a `tonic::Status`; both use
//! [`Error::code`] so the two APIs name failures the same way.

use crate::engine::StackError;
use crate::sim::WorldError;
use crate::store::StoreError;

/// Everything a request can fail with.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The request names a field with a value that cannot work.
    #[error("{field}: {message}")]
    InvalidArgument {
        /// The field, as the request spells it (`profile.mss`, `link.loss`).
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// An id or name that does not exist.
    #[error("{what} {id} not found")]
    NotFound {
        /// What kind of thing (`session`, `connection`, `host`, ...).
        what: &'static str,
        /// The id or name asked for.
        id: String,
    },
    /// What the request would create exists already: a host name or an
    /// address taken, a port (or four-tuple) in use. Its own code, so a
    /// client can tell "exists" from "refused in this state".
    #[error("{0}")]
    AlreadyExists(String),
    /// The request is well formed but the state refuses it: the TCP state
    /// (RFC 9293's "connection does not exist", "connection closing"), an
    /// ended session, a raw host asked for TCP.
    #[error("{0}")]
    FailedPrecondition(String),
    /// A capacity limit is reached: the server or the session is full
    /// (sessions, hosts, connections, fault rules, subscribers).
    #[error("limit {limit} reached (at most {max}); {}", super::limits::raise_hint(limit))]
    LimitExceeded {
        /// The limit's name, as the configuration spells it.
        limit: &'static str,
        /// Its value.
        max: u64,
    },
    /// One request asks for more than its budget: a size, a nesting depth,
    /// a number of steps, items or virtual time over a configured limit.
    /// Nothing was done, or (for a run stopped part-way) what was done is
    /// kept and `what` says so.
    #[error("{what}: over the limit {limit} = {max}; {}", super::limits::raise_hint(limit))]
    BudgetExceeded {
        /// The limit's name, as the configuration spells it.
        limit: &'static str,
        /// Its value.
        max: u64,
        /// What asked for too much (`script: line 3`, `ms`, `toml: line 12 (advance)`).
        what: String,
    },
    /// A credential is missing or wrong.
    #[error("{0}")]
    Unauthenticated(String),
    /// A valid credential that does not allow this (a read-only token asked
    /// for a change).
    #[error("{0}")]
    PermissionDenied(String),
    /// The server is shutting down.
    #[error("the server is shutting down")]
    Unavailable,
    /// A fault of ours; the message is logged, not shown to clients.
    #[error("internal error")]
    Internal(String),
}

impl Error {
    /// The machine-readable code, shared by REST's `error.code` and gRPC's status.
    pub fn code(&self) -> &'static str {
        match self {
            Error::InvalidArgument { .. } => "invalid_argument",
            Error::NotFound { .. } => "not_found",
            Error::AlreadyExists(_) => "already_exists",
            Error::FailedPrecondition(_) => "failed_precondition",
            Error::LimitExceeded { .. } | Error::BudgetExceeded { .. } => "resource_exhausted",
            Error::Unauthenticated(_) => "unauthenticated",
            Error::PermissionDenied(_) => "permission_denied",
            Error::Unavailable => "unavailable",
            Error::Internal(_) => "internal",
        }
    }

    /// A bad value for `field`.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Error {
        Error::InvalidArgument { field: field.into(), message: message.into() }
    }

    /// A request over its budget (see [`Error::BudgetExceeded`]).
    pub fn over_budget(limit: &'static str, max: u64, what: impl Into<String>) -> Error {
        Error::BudgetExceeded { limit, max, what: what.into() }
    }

    /// A missing thing.
    pub fn not_found(what: &'static str, id: impl ToString) -> Error {
        Error::NotFound { what, id: id.to_string() }
    }
}

impl From<WorldError> for Error {
    fn from(e: WorldError) -> Error {
        match e {
            WorldError::UnknownHost(name) => Error::not_found("host", name),
            WorldError::UnknownConnection(id) => Error::not_found("connection", id),
            WorldError::UnknownFault(id) => Error::not_found("fault", id),
            WorldError::UnknownListener(id) => Error::not_found("listener", id),
            WorldError::NoSuchEnd(conn, side) => Error::not_found("connection end", format!("{conn}/{side}")),
            WorldError::DuplicateHost(_)
            | WorldError::DuplicateAddress(_)
            | WorldError::Stack(StackError::AddressInUse) => Error::AlreadyExists(e.to_string()),
            WorldError::BadHostName => Error::invalid("name", e.to_string()),
            WorldError::Link(l) => Error::invalid(l.field, l.message),
            WorldError::Profile(p) => Error::invalid(format!("profile.{}", p.field), p.message),
            WorldError::ProfileChange(p) => Error::invalid(p.field, p.message),
            WorldError::BadPort(field) => Error::invalid(field, "must be between 1 and 65535"),
            WorldError::Encode(d) => Error::invalid("options", d.to_string()),
            WorldError::NotTcpHost(_) | WorldError::NotRawHost(_) | WorldError::Stack(_) => {
                Error::FailedPrecondition(e.to_string())
            }
        }
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Error {
        Error::Internal(format!("store: {e}"))
    }
}
