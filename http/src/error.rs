//! The edge between meshql errors and HTTP responses. A client gets the same code name (the
//! gRPC status code Flight SQL would send) and message as over Flight SQL, with the HTTP status
//! of the usual gRPC-to-HTTP mapping. The matches are exhaustive, so a new engine or
//! authentication error variant must be given a code here (and in flight-server's status.rs).
//!
//! Body: `{"error": {"code": "INVALID_ARGUMENT", "message": "..."}}`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use meshql_auth::AuthError;
use meshql_engine::EngineError;

/// A gRPC status code, by the name clients see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    InvalidArgument,
    FailedPrecondition,
    PermissionDenied,
    NotFound,
    Unauthenticated,
    ResourceExhausted,
    Unavailable,
    Cancelled,
    Internal,
}

impl Code {
    /// The gRPC code name (`INVALID_ARGUMENT`).
    pub fn name(self) -> &'static str {
        match self {
            Code::InvalidArgument => "INVALID_ARGUMENT",
            Code::FailedPrecondition => "FAILED_PRECONDITION",
            Code::PermissionDenied => "PERMISSION_DENIED",
            Code::NotFound => "NOT_FOUND",
            Code::Unauthenticated => "UNAUTHENTICATED",
            Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
            Code::Unavailable => "UNAVAILABLE",
            Code::Cancelled => "CANCELLED",
            Code::Internal => "INTERNAL",
        }
    }

    /// The HTTP status for the code (as grpc-gateway maps them; 499 for a cancelled request).
    pub fn http_status(self) -> StatusCode {
        match self {
            Code::InvalidArgument | Code::FailedPrecondition => StatusCode::BAD_REQUEST,
            Code::PermissionDenied => StatusCode::FORBIDDEN,
            Code::NotFound => StatusCode::NOT_FOUND,
            Code::Unauthenticated => StatusCode::UNAUTHORIZED,
            Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
            Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Code::Cancelled => {
                StatusCode::from_u16(499).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            }
            Code::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// The code of an engine error: the same as flight-server's `engine_status`.
pub fn engine_code(e: &EngineError) -> Code {
    match e {
        EngineError::Catalog(_) => Code::Internal,
        EngineError::ProductUnavailable { .. } => Code::Unavailable,
        EngineError::ContractViolation { .. } => Code::FailedPrecondition,
        EngineError::ProductStale { .. } => Code::FailedPrecondition,
        EngineError::ReadOnly(_) => Code::PermissionDenied,
        EngineError::AccessDenied { .. } => Code::PermissionDenied,
        EngineError::Plan { .. } => Code::InvalidArgument,
        EngineError::Execution { .. } => Code::InvalidArgument,
        EngineError::LimitExceeded { .. } => Code::InvalidArgument,
        EngineError::Storage { .. } => Code::Unavailable,
        EngineError::WorkerUnavailable { .. } => Code::Unavailable,
        EngineError::ClusterLink { .. } => Code::Unavailable,
        EngineError::ResourcesExhausted { .. } => Code::ResourceExhausted,
        EngineError::Cancelled => Code::Cancelled,
        EngineError::Internal(_) => Code::Internal,
        EngineError::Bug { .. } => Code::Internal,
    }
}

/// The gRPC code name of an engine error (for metrics labels).
pub(crate) fn engine_code_name(e: &EngineError) -> &'static str {
    engine_code(e).name()
}

/// An error answered to an HTTP client.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// A product that does not exist or that the caller may not see (the same answer).
    #[error("product `{0}` not found")]
    ProductNotFound(String),
    /// A running query that does not exist or is not the caller's.
    #[error("no running query `{0}` of yours")]
    QueryNotFound(String),
    /// No route at this path.
    #[error("no such route: {0}; the API lives under /api/v1/")]
    NoRoute(String),
    /// A malformed request (bad JSON, unknown format).
    #[error("{0}")]
    BadRequest(String),
    /// A state-changing request from another origin (CSRF).
    #[error("cross-origin request refused: {0}")]
    CrossOrigin(String),
    /// Something failed inside the HTTP layer.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn code(&self) -> Code {
        match self {
            ApiError::Engine(e) => engine_code(e),
            ApiError::Auth(AuthError::Unauthenticated(_)) => Code::Unauthenticated,
            ApiError::Auth(AuthError::PasswordCheck(_)) => Code::Internal,
            ApiError::ProductNotFound(_) | ApiError::QueryNotFound(_) | ApiError::NoRoute(_) => {
                Code::NotFound
            }
            ApiError::BadRequest(_) => Code::InvalidArgument,
            ApiError::CrossOrigin(_) => Code::PermissionDenied,
            ApiError::Internal(_) => Code::Internal,
        }
    }

    /// The JSON body of the error.
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({"error": {"code": self.code().name(), "message": self.to_string()}})
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = self.code();
        match &self {
            ApiError::Engine(e) if e.is_user_error() => {
                tracing::info!(error = %self, "request failed")
            }
            ApiError::Engine(_) | ApiError::Internal(_) | ApiError::Auth(_) => {
                tracing::warn!(error = %self, "request failed")
            }
            _ => tracing::debug!(error = %self, "request refused"),
        }
        let mut response = (code.http_status(), axum::Json(self.body())).into_response();
        if code == Code::Unauthenticated {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same table as flight-server's status mapping: keep them in step.
    #[test]
    fn engine_errors_map_to_the_flight_codes() {
        let cases = [
            (
                EngineError::Catalog(meshql_catalog::CatalogError::Invalid(vec![])),
                "INTERNAL",
                500,
            ),
            (
                EngineError::ProductUnavailable {
                    product: "p".into(),
                    message: "m".into(),
                    source: "s".into(),
                },
                "UNAVAILABLE",
                503,
            ),
            (
                EngineError::ContractViolation {
                    product: "p".into(),
                    column: "c".into(),
                    message: "m".into(),
                },
                "FAILED_PRECONDITION",
                400,
            ),
            (EngineError::ReadOnly("r".into()), "PERMISSION_DENIED", 403),
            (
                EngineError::AccessDenied {
                    product: "p".into(),
                    reason: "r".into(),
                },
                "PERMISSION_DENIED",
                403,
            ),
            (EngineError::plan("p"), "INVALID_ARGUMENT", 400),
            (
                EngineError::Execution {
                    message: "e".into(),
                    source: None,
                },
                "INVALID_ARGUMENT",
                400,
            ),
            (
                EngineError::LimitExceeded {
                    limit: "limits.max_sql_bytes",
                    message: "l".into(),
                },
                "INVALID_ARGUMENT",
                400,
            ),
            (
                EngineError::Storage {
                    message: "s".into(),
                    source: "s".into(),
                },
                "UNAVAILABLE",
                503,
            ),
            (
                EngineError::WorkerUnavailable {
                    worker: "w".into(),
                    message: "m".into(),
                },
                "UNAVAILABLE",
                503,
            ),
            (
                EngineError::ClusterLink {
                    message: "m".into(),
                },
                "UNAVAILABLE",
                503,
            ),
            (
                EngineError::ResourcesExhausted {
                    message: "r".into(),
                    source: None,
                },
                "RESOURCE_EXHAUSTED",
                429,
            ),
            (EngineError::Cancelled, "CANCELLED", 499),
            (EngineError::Internal("i".into()), "INTERNAL", 500),
            (
                EngineError::Bug {
                    context: "b".into(),
                    source: "s".into(),
                },
                "INTERNAL",
                500,
            ),
        ];
        for (e, name, status) in cases {
            let code = engine_code(&e);
            assert_eq!(code.name(), name, "{e:?}");
            assert_eq!(code.http_status().as_u16(), status, "{e:?}");
        }
    }

    #[test]
    fn error_bodies_carry_code_and_message() {
        let e = ApiError::ProductNotFound("sales.orders".into());
        assert_eq!(
            e.body(),
            serde_json::json!({"error": {"code": "NOT_FOUND", "message": "product `sales.orders` not found"}})
        );
        let e = ApiError::Auth(AuthError::Unauthenticated("nope".into()));
        assert_eq!(e.code().http_status(), StatusCode::UNAUTHORIZED);
    }
}
