//! The edge between engine errors and gRPC statuses. The match is exhaustive so that a new
//! engine error variant must be given a status here. User errors are logged at info, internal
//! ones at warn.

use meshql_auth::AuthError;
use meshql_engine::EngineError;
use tonic::{Code, Status};

/// Converts an engine error into the status a client receives.
pub(crate) fn engine_status(e: EngineError) -> Status {
    if e.is_user_error() {
        tracing::info!(error = %e, "request failed");
    } else {
        tracing::warn!(error = %e, "request failed");
    }
    let msg = e.to_string();
    Status::new(engine_code(&e), msg)
}

/// The gRPC code of an engine error.
pub(crate) fn engine_code(e: &EngineError) -> Code {
    match e {
        EngineError::Catalog(_) => Code::Internal,
        EngineError::ProductUnavailable { .. } => Code::Unavailable,
        EngineError::ContractViolation { .. } => Code::FailedPrecondition,
        EngineError::ReadOnly(_) => Code::PermissionDenied,
        EngineError::AccessDenied { .. } => Code::PermissionDenied,
        EngineError::Plan(_) => Code::InvalidArgument,
        EngineError::Execution(_) => Code::InvalidArgument,
        EngineError::ResourcesExhausted(_) => Code::ResourceExhausted,
        EngineError::Internal(_) => Code::Internal,
    }
}

/// The gRPC code name of an engine error (metrics labels).
pub(crate) fn engine_code_name(e: &EngineError) -> &'static str {
    code_name(engine_code(e))
}

/// The canonical name of a gRPC code (`INVALID_ARGUMENT`), as metrics labels use it.
pub(crate) fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// Converts an authentication failure into the status a client receives.
pub(crate) fn auth_status(e: AuthError) -> Status {
    match e {
        AuthError::Unauthenticated(msg) => Status::unauthenticated(msg),
        e @ AuthError::PasswordCheck(_) => {
            tracing::warn!(error = %e, "authentication failed");
            Status::internal(e.to_string())
        }
    }
}
