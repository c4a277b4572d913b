//! The edge between engine errors and gRPC statuses: one exhaustive, table-tested mapping.
//!
//! | engine error          | status              | why                                         |
//! |-----------------------|---------------------|---------------------------------------------|
//! | `Plan`                | INVALID_ARGUMENT    | bad SQL, unknown table or column            |
//! | `Execution`           | INVALID_ARGUMENT    | the query failed on data (1/0, a cast)      |
//! | `LimitExceeded`       | INVALID_ARGUMENT    | over `max_sql_bytes` / `max_expr_depth`     |
//! | `ReadOnly`            | PERMISSION_DENIED   | not a query                                 |
//! | `AccessDenied`        | PERMISSION_DENIED   | a policy cannot be applied (fail closed)    |
//! | `ProductUnavailable`  | UNAVAILABLE         | a product's storage failed                  |
//! | `Storage`             | UNAVAILABLE         | other storage or I/O (spill files)          |
//! | `WorkerUnavailable`   | UNAVAILABLE         | a cluster worker failed or went away        |
//! | `ClusterLink`         | UNAVAILABLE         | a link inside the cluster failed; retry     |
//! | `ContractViolation`   | FAILED_PRECONDITION | the data breaks its contract                |
//! | `ProductStale`        | FAILED_PRECONDITION | data older than a `refuse` freshness SLA    |
//! | `ResourcesExhausted`  | RESOURCE_EXHAUSTED  | memory, queue or time limit                 |
//! | `Cancelled`           | CANCELLED           | the query was cancelled                     |
//! | `Catalog`             | INTERNAL            | the catalog is broken (startup problem)     |
//! | `Internal`, `Bug`     | INTERNAL            | a bug or a panic                            |
//!
//! Errors caused by the request are logged at info; the others at warn with their whole
//! cause chain (clients only see the message).

use meshql_auth::AuthError;
use meshql_engine::EngineError;
use tonic::{Code, Status};

/// The status code of an engine error.
pub(crate) fn code(e: &EngineError) -> Code {
    match e {
        EngineError::Plan { .. } => Code::InvalidArgument,
        EngineError::Execution { .. } => Code::InvalidArgument,
        EngineError::LimitExceeded { .. } => Code::InvalidArgument,
        EngineError::ReadOnly(_) => Code::PermissionDenied,
        EngineError::AccessDenied { .. } => Code::PermissionDenied,
        EngineError::ProductUnavailable { .. } => Code::Unavailable,
        EngineError::Storage { .. } => Code::Unavailable,
        EngineError::WorkerUnavailable { .. } => Code::Unavailable,
        EngineError::ClusterLink { .. } => Code::Unavailable,
        EngineError::ContractViolation { .. } => Code::FailedPrecondition,
        EngineError::ProductStale { .. } => Code::FailedPrecondition,
        EngineError::ResourcesExhausted { .. } => Code::ResourceExhausted,
        EngineError::Cancelled => Code::Cancelled,
        EngineError::Catalog(_) => Code::Internal,
        EngineError::Internal(_) => Code::Internal,
        EngineError::Bug { .. } => Code::Internal,
    }
}

/// The whole cause chain, for logs.
fn chain(e: &EngineError) -> String {
    let mut out = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// Converts an engine error into the status a client receives.
pub(crate) fn engine_status(e: EngineError) -> Status {
    if e.is_user_error() {
        tracing::info!(error = %e, "request failed");
    } else {
        tracing::warn!(error = %chain(&e), "request failed");
    }
    Status::new(code(&e), e.to_string())
}

/// The gRPC code name of an engine error (metrics labels).
pub(crate) fn engine_code_name(e: &EngineError) -> &'static str {
    code_name(code(e))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn df(
        e: datafusion::error::DataFusionError,
    ) -> Option<Box<datafusion::error::DataFusionError>> {
        Some(Box::new(e))
    }

    /// One row per variant: a sample error, the status code a client gets.
    macro_rules! rows {
        ($($name:ident: $error:expr => $code:expr;)*) => {
            $(
                #[test]
                fn $name() {
                    let e: EngineError = $error;
                    let text = e.to_string();
                    let status = engine_status(e);
                    assert_eq!(status.code(), $code);
                    assert_eq!(status.message(), text);
                }
            )*
        };
    }

    rows! {
        plan_is_invalid_argument: EngineError::Plan {
            message: "table 'mesh.x.y' not found".into(),
            source: df(datafusion::error::DataFusionError::Plan("x".into())),
        } => Code::InvalidArgument;
        execution_is_invalid_argument: EngineError::Execution {
            message: "Divide by zero error".into(),
            source: None,
        } => Code::InvalidArgument;
        limit_is_invalid_argument: EngineError::LimitExceeded {
            limit: "max_sql_bytes",
            message: "too long (max_sql_bytes)".into(),
        } => Code::InvalidArgument;
        read_only_is_permission_denied:
            EngineError::ReadOnly("meshql is read-only".into()) => Code::PermissionDenied;
        access_denied_is_permission_denied: EngineError::AccessDenied {
            product: "a.b".into(),
            reason: "policy invalid".into(),
        } => Code::PermissionDenied;
        product_unavailable_is_unavailable: EngineError::ProductUnavailable {
            product: "a.b".into(),
            message: "gone".into(),
            source: "cause".into(),
        } => Code::Unavailable;
        storage_is_unavailable: EngineError::Storage {
            message: "disk".into(),
            source: Box::new(std::io::Error::other("disk")),
        } => Code::Unavailable;
        worker_unavailable_is_unavailable: EngineError::WorkerUnavailable {
            worker: "http://10.0.0.5:50052".into(),
            message: "connection refused".into(),
        } => Code::Unavailable;
        cluster_link_is_unavailable: EngineError::ClusterLink {
            message: "tcp connect error".into(),
        } => Code::Unavailable;
        contract_violation_is_failed_precondition: EngineError::ContractViolation {
            product: "a.b".into(),
            column: "c".into(),
            message: "is missing".into(),
        } => Code::FailedPrecondition;
        product_stale_is_failed_precondition: EngineError::ProductStale {
            product: "a.b".into(),
            sla: "6h".into(),
            age: "7h".into(),
            stale_reader_group: "stale_reader".into(),
        } => Code::FailedPrecondition;
        resources_exhausted_is_resource_exhausted: EngineError::ResourcesExhausted {
            message: "query_memory_limit".into(),
            source: None,
        } => Code::ResourceExhausted;
        cancelled_is_cancelled: EngineError::Cancelled => Code::Cancelled;
        catalog_is_internal: EngineError::Catalog(meshql_catalog::CatalogError::Invalid(vec![]))
            => Code::Internal;
        internal_is_internal: EngineError::Internal("bug".into()) => Code::Internal;
        bug_is_internal: EngineError::Bug {
            context: "a panic".into(),
            source: "boom".into(),
        } => Code::Internal;
    }

    #[test]
    fn storage_errors_from_datafusion_are_unavailable_not_invalid_argument() {
        let e = EngineError::from_datafusion(datafusion::error::DataFusionError::IoError(
            std::io::Error::new(std::io::ErrorKind::PermissionDenied, "403 Forbidden"),
        ));
        assert_eq!(code(&e), Code::Unavailable);
        assert!(!e.is_user_error());
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

#[cfg(test)]
mod auth_status_tests {
    use super::*;

    #[tokio::test]
    async fn every_auth_error_has_its_status() {
        let join_error = tokio::spawn(async { panic!("argon2 worker died") })
            .await
            .unwrap_err();
        let rows: Vec<(AuthError, tonic::Code, &str)> = vec![
            (
                AuthError::Unauthenticated("invalid user name or password".into()),
                tonic::Code::Unauthenticated,
                "invalid user name or password",
            ),
            (
                AuthError::PasswordCheck(join_error),
                tonic::Code::Internal,
                "password check failed",
            ),
        ];
        for (error, code, message) in rows {
            let status = auth_status(error);
            assert_eq!((status.code(), status.message()), (code, message));
        }
    }
}
