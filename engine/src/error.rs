//! Engine errors. Each variant says what kind of failure it is (the request's fault, a product's
//! storage, a resource limit, a bug) and keeps its cause as a `#[source]`, so that the Flight
//! and HTTP front ends map it to a status in one exhaustive place and log the whole chain, while
//! clients see only the message.
//!
//! Errors cross DataFusion as `DataFusionError::External` (meshql's table providers and
//! execution plans raise them) and are recovered by [`EngineError::from_datafusion`], which
//! classifies DataFusion's own errors by their type, never by their text. The product a storage
//! error concerns is attached where the product is read (its scan), not guessed afterwards.

use std::sync::Arc;

use datafusion::arrow::error::ArrowError;
use datafusion::error::DataFusionError;
use datafusion::sql::sqlparser::parser::ParserError;
use meshql_catalog::CatalogError;

/// A boxed cause.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Errors of the engine crate.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The mesh catalog could not be loaded.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// A product's data could not be read: missing files, unreachable storage, corrupt data.
    /// `message` is safe to show to the caller (paths relative to the product's location).
    #[error("product `{product}` is unavailable: {message}")]
    ProductUnavailable {
        product: String,
        message: String,
        #[source]
        source: BoxError,
    },
    /// A product's data does not satisfy its contract.
    #[error("product `{product}` violates its contract: column `{column}` {message}")]
    ContractViolation {
        product: String,
        column: String,
        message: String,
    },
    /// Storage or I/O failed outside any product (e.g. spill files).
    #[error("storage error: {message}")]
    Storage {
        message: String,
        #[source]
        source: BoxError,
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
    #[error("{message}")]
    Plan {
        message: String,
        #[source]
        source: Option<Box<DataFusionError>>,
    },
    /// Query execution failed because of the query (a division by zero, a failed cast).
    #[error("{message}")]
    Execution {
        message: String,
        #[source]
        source: Option<Box<DataFusionError>>,
    },
    /// The request is over a limit on its size or shape (`max_sql_bytes`, `max_expr_depth`).
    #[error("{message}")]
    LimitExceeded {
        /// The configuration key of the limit.
        limit: &'static str,
        message: String,
    },
    /// The query ran out of a shared resource: memory, a queue slot, its time. The message
    /// names the limit.
    #[error("{message}")]
    ResourcesExhausted {
        message: String,
        #[source]
        source: Option<Box<DataFusionError>>,
    },
    /// A cluster worker running part of the query could not be reached or went away.
    #[error("cluster worker {worker} is unavailable: {message}")]
    WorkerUnavailable { worker: String, message: String },
    /// A connection inside the cluster failed while every worker still answers a health check:
    /// a transient link failure (e.g. a connection to a worker that has just restarted), worth
    /// retrying.
    #[error("a connection inside the cluster failed: {message} (every worker answers a health check; running the query again should succeed)")]
    ClusterLink { message: String },
    /// The query was cancelled before it finished.
    #[error("the query was cancelled")]
    Cancelled,
    /// A bug or an unexpected condition inside meshql, without a further cause.
    #[error("internal error: {0}")]
    Internal(String),
    /// A bug inside meshql or DataFusion (an internal error, a panic), with its cause.
    #[error("internal error: {context}")]
    Bug {
        context: String,
        #[source]
        source: BoxError,
    },
}

impl EngineError {
    /// A planning error without a DataFusion cause.
    pub fn plan(message: impl Into<String>) -> Self {
        EngineError::Plan {
            message: message.into(),
            source: None,
        }
    }

    /// Recovers the most useful error from a DataFusion error: a meshql error wrapped inside it,
    /// or a classification of DataFusion's own by its type.
    pub fn from_datafusion(e: DataFusionError) -> Self {
        match e {
            DataFusionError::External(inner) => match inner.downcast::<EngineError>() {
                Ok(engine) => *engine,
                Err(other) => from_external(other),
            },
            DataFusionError::Context(ctx, inner) => match EngineError::from_datafusion(*inner) {
                EngineError::Plan { message, source } => EngineError::Plan {
                    message: format!("{ctx}: {message}"),
                    source,
                },
                EngineError::Execution { message, source } => EngineError::Execution {
                    message: format!("{ctx}: {message}"),
                    source,
                },
                other => other,
            },
            DataFusionError::Shared(inner) => match Arc::try_unwrap(inner) {
                Ok(e) => EngineError::from_datafusion(e),
                Err(shared) => EngineError::from_shared(&shared),
            },
            DataFusionError::Diagnostic(_, inner) => EngineError::from_datafusion(*inner),
            DataFusionError::Collection(mut errors) if !errors.is_empty() => {
                EngineError::from_datafusion(errors.remove(0))
            }
            DataFusionError::SQL(ref p, _)
                if matches!(**p, ParserError::RecursionLimitExceeded) =>
            {
                EngineError::LimitExceeded {
                    limit: "sql_parser.recursion_limit",
                    message: "the statement nests parentheses, subqueries or function calls \
                              too deeply for the SQL parser"
                        .to_string(),
                }
            }
            e @ (DataFusionError::SQL(..)
            | DataFusionError::Plan(_)
            | DataFusionError::SchemaError(..)
            | DataFusionError::NotImplemented(_)
            | DataFusionError::Configuration(_)) => EngineError::Plan {
                message: strip_prefix(&e),
                source: Some(Box::new(e)),
            },
            e @ DataFusionError::ResourcesExhausted(_) => EngineError::ResourcesExhausted {
                message: strip_prefix(&e),
                source: Some(Box::new(e)),
            },
            e @ (DataFusionError::ObjectStore(_)
            | DataFusionError::IoError(_)
            | DataFusionError::ParquetError(_)) => EngineError::Storage {
                message: strip_prefix(&e),
                source: Box::new(e),
            },
            DataFusionError::ArrowError(arrow, bt) => from_arrow(*arrow, bt),
            DataFusionError::ExecutionJoin(join) => {
                if join.is_cancelled() {
                    EngineError::Cancelled
                } else {
                    EngineError::Bug {
                        context: format!("a query task failed: {join}"),
                        source: join,
                    }
                }
            }
            e @ DataFusionError::Execution(_) => EngineError::Execution {
                message: strip_prefix(&e),
                source: Some(Box::new(e)),
            },
            e => EngineError::Bug {
                context: e.to_string(),
                source: Box::new(e),
            },
        }
    }

    /// Classifies an error that other partitions of the query still share (the same
    /// classification; the cause is kept as text).
    fn from_shared(e: &DataFusionError) -> Self {
        let text = |e: &DataFusionError| -> BoxError { e.to_string().into() };
        match e {
            DataFusionError::External(inner) => match inner.downcast_ref::<EngineError>() {
                Some(engine) => engine.duplicate(),
                None if is_storage_external(inner.as_ref()) => EngineError::Storage {
                    message: inner.to_string(),
                    source: text(e),
                },
                None => EngineError::Execution {
                    message: inner.to_string(),
                    source: None,
                },
            },
            DataFusionError::Context(_, inner) | DataFusionError::Diagnostic(_, inner) => {
                EngineError::from_shared(inner)
            }
            DataFusionError::Shared(inner) => EngineError::from_shared(inner),
            DataFusionError::Collection(errors) if !errors.is_empty() => {
                EngineError::from_shared(&errors[0])
            }
            other => match other {
                DataFusionError::ResourcesExhausted(_) => EngineError::ResourcesExhausted {
                    message: strip_prefix(other),
                    source: None,
                },
                DataFusionError::ObjectStore(_)
                | DataFusionError::IoError(_)
                | DataFusionError::ParquetError(_) => EngineError::Storage {
                    message: strip_prefix(other),
                    source: text(other),
                },
                DataFusionError::ArrowError(a, _) if is_storage_arrow(a) => EngineError::Storage {
                    message: strip_prefix(other),
                    source: text(other),
                },
                DataFusionError::SQL(..)
                | DataFusionError::Plan(_)
                | DataFusionError::SchemaError(..)
                | DataFusionError::NotImplemented(_)
                | DataFusionError::Configuration(_) => EngineError::plan(strip_prefix(other)),
                DataFusionError::Execution(_) | DataFusionError::ArrowError(..) => {
                    EngineError::Execution {
                        message: strip_prefix(other),
                        source: None,
                    }
                }
                _ => EngineError::Bug {
                    context: other.to_string(),
                    source: text(other),
                },
            },
        }
    }

    /// A copy of this error with the same variant and text; causes are kept as text.
    fn duplicate(&self) -> Self {
        let text = |e: &dyn std::error::Error| -> BoxError { e.to_string().into() };
        match self {
            EngineError::Catalog(c) => EngineError::Bug {
                context: c.to_string(),
                source: text(c),
            },
            EngineError::ProductUnavailable {
                product,
                message,
                source,
            } => EngineError::ProductUnavailable {
                product: product.clone(),
                message: message.clone(),
                source: text(source.as_ref()),
            },
            EngineError::ContractViolation {
                product,
                column,
                message,
            } => EngineError::ContractViolation {
                product: product.clone(),
                column: column.clone(),
                message: message.clone(),
            },
            EngineError::Storage { message, source } => EngineError::Storage {
                message: message.clone(),
                source: text(source.as_ref()),
            },
            EngineError::WorkerUnavailable { worker, message } => EngineError::WorkerUnavailable {
                worker: worker.clone(),
                message: message.clone(),
            },
            EngineError::ClusterLink { message } => EngineError::ClusterLink {
                message: message.clone(),
            },
            EngineError::ProductStale {
                product,
                sla,
                age,
                stale_reader_group,
            } => EngineError::ProductStale {
                product: product.clone(),
                sla: sla.clone(),
                age: age.clone(),
                stale_reader_group: stale_reader_group.clone(),
            },
            EngineError::ReadOnly(m) => EngineError::ReadOnly(m.clone()),
            EngineError::AccessDenied { product, reason } => EngineError::AccessDenied {
                product: product.clone(),
                reason: reason.clone(),
            },
            EngineError::Plan { message, .. } => EngineError::plan(message.clone()),
            EngineError::Execution { message, .. } => EngineError::Execution {
                message: message.clone(),
                source: None,
            },
            EngineError::LimitExceeded { limit, message } => EngineError::LimitExceeded {
                limit,
                message: message.clone(),
            },
            EngineError::ResourcesExhausted { message, .. } => EngineError::ResourcesExhausted {
                message: message.clone(),
                source: None,
            },
            EngineError::Cancelled => EngineError::Cancelled,
            EngineError::Internal(m) => EngineError::Internal(m.clone()),
            EngineError::Bug { context, source } => EngineError::Bug {
                context: context.clone(),
                source: text(source.as_ref()),
            },
        }
    }

    /// True for errors caused by the request (bad SQL, unknown table, a refused statement, a
    /// limit on the request's shape) rather than by meshql, its storage or its load; these are
    /// logged at info, the rest at warn.
    pub fn is_user_error(&self) -> bool {
        match self {
            EngineError::ReadOnly(_)
            | EngineError::Plan { .. }
            | EngineError::Execution { .. }
            | EngineError::AccessDenied { .. }
            | EngineError::LimitExceeded { .. }
            | EngineError::Cancelled => true,
            EngineError::Catalog(_)
            | EngineError::ProductUnavailable { .. }
            | EngineError::ContractViolation { .. }
            | EngineError::WorkerUnavailable { .. }
            | EngineError::ClusterLink { .. }
            | EngineError::ProductStale { .. }
            | EngineError::Storage { .. }
            | EngineError::ResourcesExhausted { .. }
            | EngineError::Internal(_)
            | EngineError::Bug { .. } => false,
        }
    }

    /// Takes bucket roots and local paths out of the caller-facing text of errors that come
    /// from storage or from inside meshql. Errors about the request itself (plan, execution)
    /// are left alone: their text may echo what the caller typed, and rewriting it would tell
    /// the caller which paths are buckets.
    pub(crate) fn redact(self, rules: &[(String, String)]) -> Self {
        let r = |m: String| redact_text(m, rules);
        match self {
            EngineError::ProductUnavailable {
                product,
                message,
                source,
            } => EngineError::ProductUnavailable {
                product,
                message: r(message),
                source,
            },
            EngineError::Storage { message, source } => EngineError::Storage {
                message: r(message),
                source,
            },
            EngineError::ResourcesExhausted { message, source } => {
                EngineError::ResourcesExhausted {
                    message: r(message),
                    source,
                }
            }
            EngineError::Internal(m) => EngineError::Internal(r(m)),
            EngineError::Bug { context, source } => EngineError::Bug {
                context: r(context),
                source,
            },
            other => other,
        }
    }
}

/// Applies `(from, to)` replacements, in order.
pub(crate) fn redact_text(mut text: String, rules: &[(String, String)]) -> String {
    for (from, to) in rules {
        if !from.is_empty() && text.contains(from.as_str()) {
            text = text.replace(from.as_str(), to);
        }
    }
    text
}

/// True when an error (or what it wraps) comes from storage: the object store, the file system,
/// Parquet or Delta decoding.
pub(crate) fn is_storage_error(e: &DataFusionError) -> bool {
    match e {
        DataFusionError::ObjectStore(_)
        | DataFusionError::IoError(_)
        | DataFusionError::ParquetError(_) => true,
        DataFusionError::ArrowError(a, _) => is_storage_arrow(a),
        DataFusionError::External(inner) => is_storage_external(inner.as_ref()),
        DataFusionError::Context(_, inner) | DataFusionError::Diagnostic(_, inner) => {
            is_storage_error(inner)
        }
        DataFusionError::Shared(inner) => is_storage_error(inner),
        DataFusionError::Collection(errors) => errors.first().is_some_and(is_storage_error),
        _ => false,
    }
}

fn is_storage_arrow(a: &ArrowError) -> bool {
    match a {
        ArrowError::IoError(..) | ArrowError::ParquetError(_) => true,
        ArrowError::ExternalError(inner) => is_storage_external(inner.as_ref()),
        _ => false,
    }
}

fn is_storage_external(e: &(dyn std::error::Error + Send + Sync + 'static)) -> bool {
    if let Some(df) = e.downcast_ref::<DataFusionError>() {
        return is_storage_error(df);
    }
    if let Some(a) = e.downcast_ref::<ArrowError>() {
        return is_storage_arrow(a);
    }
    e.is::<object_store::Error>()
        || e.is::<std::io::Error>()
        || e.is::<parquet::errors::ParquetError>()
        || e.is::<deltalake::DeltaTableError>()
}

fn from_external(e: BoxError) -> EngineError {
    if is_storage_external(e.as_ref()) {
        return EngineError::Storage {
            message: e.to_string(),
            source: e,
        };
    }
    match e.downcast::<DataFusionError>() {
        Ok(df) => EngineError::from_datafusion(*df),
        Err(e) => match e.downcast::<ArrowError>() {
            Ok(a) => from_arrow(*a, None),
            Err(e) => EngineError::Execution {
                message: e.to_string(),
                source: Some(Box::new(DataFusionError::External(e))),
            },
        },
    }
}

fn from_arrow(a: ArrowError, bt: Option<String>) -> EngineError {
    if is_storage_arrow(&a) {
        let e = DataFusionError::ArrowError(Box::new(a), bt);
        return EngineError::Storage {
            message: strip_prefix(&e),
            source: Box::new(e),
        };
    }
    let e = DataFusionError::ArrowError(Box::new(a), bt);
    match &e {
        DataFusionError::ArrowError(a, _) if matches!(**a, ArrowError::MemoryError(_)) => {
            EngineError::ResourcesExhausted {
                message: strip_prefix(&e),
                source: Some(Box::new(e)),
            }
        }
        _ => EngineError::Execution {
            message: strip_prefix(&e),
            source: Some(Box::new(e)),
        },
    }
}

/// DataFusion prefixes messages with the error kind ("Error during planning: "); clients get
/// the message itself.
pub(crate) fn strip_prefix(e: &DataFusionError) -> String {
    let s = e.to_string();
    for p in [
        "Error during planning: ",
        "SQL error: ",
        "Schema error: ",
        "Execution error: ",
        "This feature is not implemented: ",
        "Arrow error: ",
        "Resources exhausted: ",
        "Object Store error: ",
        "IO error: ",
        "Parquet error: ",
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datafusion_errors_are_classified_by_type() {
        let storage = DataFusionError::ObjectStore(Box::new(object_store::Error::NotFound {
            path: "x".into(),
            source: "gone".into(),
        }));
        assert!(matches!(
            EngineError::from_datafusion(storage),
            EngineError::Storage { .. }
        ));
        let io = DataFusionError::IoError(std::io::Error::other("disk"));
        assert!(matches!(
            EngineError::from_datafusion(io),
            EngineError::Storage { .. }
        ));
        let div = DataFusionError::ArrowError(Box::new(ArrowError::DivideByZero), None);
        assert!(matches!(
            EngineError::from_datafusion(div),
            EngineError::Execution { .. }
        ));
        let mem = DataFusionError::ResourcesExhausted("memory_limit reached".into());
        let e = EngineError::from_datafusion(mem);
        assert!(
            matches!(&e, EngineError::ResourcesExhausted { .. }),
            "{e:?}"
        );
        assert_eq!(e.to_string(), "memory_limit reached");
        // A meshql error inside DataFusion's wrappers comes back as it was, shared or not.
        let inner = EngineError::ProductUnavailable {
            product: "a.b".into(),
            message: "gone".into(),
            source: "cause".into(),
        };
        let shared = Arc::new(DataFusionError::External(Box::new(inner)));
        let held = Arc::clone(&shared);
        let e = EngineError::from_datafusion(DataFusionError::Context(
            "ctx".into(),
            Box::new(DataFusionError::Shared(shared)),
        ));
        assert!(
            matches!(&e, EngineError::ProductUnavailable { product, .. } if product == "a.b"),
            "{e:?}"
        );
        drop(held);
        // The cause is kept.
        let e = EngineError::from_datafusion(DataFusionError::Plan("no such column".into()));
        assert!(std::error::Error::source(&e).is_some());
        assert_eq!(e.to_string(), "no such column");
    }
}
