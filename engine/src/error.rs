//! Engine errors. Converted to `DataFusionError` where DataFusion calls back into meshql
//! (catalog and table providers) and recovered from it afterwards, so that a client sees which
//! product and column a problem concerns.

use datafusion::error::DataFusionError;
use meshql_catalog::CatalogError;

/// Errors of the engine crate.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The mesh catalog could not be loaded.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// A product's data could not be read: missing files, unreachable storage, corrupt data.
    #[error("product `{product}` is unavailable: {message}")]
    ProductUnavailable { product: String, message: String },
    /// A product's data does not satisfy its contract.
    #[error("product `{product}` violates its contract: column `{column}` {message}")]
    ContractViolation {
        product: String,
        column: String,
        message: String,
    },
    /// The query reads a product whose data is older than its freshness SLA, the SLA says
    /// `on_breach = "refuse"` and the principal is not a stale reader.
    #[error(
        "product `{product}` is stale: its data is {age} old, past its freshness SLA of {sla} \
         (on_breach = \"refuse\"); members of group `{stale_reader_group}` may still read it"
    )]
    ProductStale {
        product: String,
        /// The SLA as written in the contract, e.g. `6h`.
        sla: String,
        /// The age of the product's data, e.g. `7h 12m`.
        age: String,
        stale_reader_group: String,
    },
    /// The statement is outside meshql's read-only SQL surface.
    #[error("{0}")]
    ReadOnly(String),
    /// The principal may see the product but a policy on it cannot be applied (fail closed).
    #[error("access to product `{product}` is denied: {reason}")]
    AccessDenied { product: String, reason: String },
    /// The SQL is invalid or refers to something that does not exist.
    #[error("{0}")]
    Plan(String),
    /// Query execution failed (e.g. a division by zero, a failed cast).
    #[error("{0}")]
    Execution(String),
    /// The query was cancelled or ran out of resources.
    #[error("{0}")]
    ResourcesExhausted(String),
    /// A bug or an unexpected condition inside meshql.
    #[error("internal error: {0}")]
    Internal(String),
}

impl EngineError {
    /// Recovers the most useful error from a DataFusion error: a meshql error wrapped inside it,
    /// or a classification of DataFusion's own.
    pub fn from_datafusion(e: DataFusionError) -> Self {
        match e {
            DataFusionError::External(inner) => match inner.downcast::<EngineError>() {
                Ok(engine) => *engine,
                Err(other) => EngineError::Execution(other.to_string()),
            },
            DataFusionError::Context(ctx, inner) => match EngineError::from_datafusion(*inner) {
                e @ (EngineError::ProductUnavailable { .. }
                | EngineError::ContractViolation { .. }
                | EngineError::ProductStale { .. }
                | EngineError::AccessDenied { .. }) => e,
                other => EngineError::Execution(format!("{ctx}: {other}")),
            },
            DataFusionError::Shared(inner) => match std::sync::Arc::try_unwrap(inner) {
                Ok(e) => EngineError::from_datafusion(e),
                Err(shared) => EngineError::Execution(shared.to_string()),
            },
            DataFusionError::Diagnostic(_, inner) => EngineError::from_datafusion(*inner),
            DataFusionError::Collection(mut errors) if !errors.is_empty() => {
                EngineError::from_datafusion(errors.remove(0))
            }
            e @ (DataFusionError::SQL(..)
            | DataFusionError::Plan(_)
            | DataFusionError::SchemaError(..)
            | DataFusionError::NotImplemented(_)
            | DataFusionError::Configuration(_)) => EngineError::Plan(strip_prefix(&e)),
            e @ DataFusionError::ResourcesExhausted(_) => {
                EngineError::ResourcesExhausted(strip_prefix(&e))
            }
            e @ DataFusionError::Internal(_) => EngineError::Internal(e.to_string()),
            e => EngineError::Execution(strip_prefix(&e)),
        }
    }

    /// True for errors caused by the request (bad SQL, unknown table) rather than by meshql or
    /// its storage; these are logged at info, the rest at warn.
    pub fn is_user_error(&self) -> bool {
        match self {
            EngineError::ReadOnly(_)
            | EngineError::Plan(_)
            | EngineError::Execution(_)
            | EngineError::AccessDenied { .. } => true,
            EngineError::Catalog(_)
            | EngineError::ProductUnavailable { .. }
            | EngineError::ContractViolation { .. }
            | EngineError::ProductStale { .. }
            | EngineError::ResourcesExhausted(_)
            | EngineError::Internal(_) => false,
        }
    }
}

/// DataFusion prefixes messages with the error kind ("Error during planning: "); clients get
/// the message itself.
fn strip_prefix(e: &DataFusionError) -> String {
    let s = e.to_string();
    for p in [
        "Error during planning: ",
        "SQL error: ",
        "Schema error: ",
        "Execution error: ",
        "This feature is not implemented: ",
        "Arrow error: ",
    ] {
        if let Some(rest) = s.strip_prefix(p) {
            return rest.to_string();
        }
    }
    s
}

impl From<EngineError> for DataFusionError {
    fn from(e: EngineError) -> Self {
        DataFusionError::External(Box::new(e))
    }
}

impl From<DataFusionError> for EngineError {
    fn from(e: DataFusionError) -> Self {
        EngineError::from_datafusion(e)
    }
}

/// Result alias of the engine crate.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;
