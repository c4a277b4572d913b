//! The edge between engine errors and gRPC statuses. The match is exhaustive so that a new
//! engine error variant must be given a status here. User errors are logged at info, internal
//! ones at warn.

use meshql_auth::AuthError;
use meshql_engine::EngineError;
use tonic::Status;

/// Converts an engine error into the status a client receives.
pub(crate) fn engine_status(e: EngineError) -> Status {
    if e.is_user_error() {
        tracing::info!(error = %e, "request failed");
    } else {
        tracing::warn!(error = %e, "request failed");
    }
    let msg = e.to_string();
    match e {
        EngineError::Catalog(_) => Status::internal(msg),
        EngineError::ProductUnavailable { .. } => Status::unavailable(msg),
        EngineError::ContractViolation { .. } => Status::failed_precondition(msg),
        EngineError::ProductStale { .. } => Status::failed_precondition(msg),
        EngineError::ReadOnly(_) => Status::permission_denied(msg),
        EngineError::AccessDenied { .. } => Status::permission_denied(msg),
        EngineError::Plan(_) => Status::invalid_argument(msg),
        EngineError::Execution(_) => Status::invalid_argument(msg),
        EngineError::ResourcesExhausted(_) => Status::resource_exhausted(msg),
        EngineError::Internal(_) => Status::internal(msg),
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
