//! Errors of the cluster crate: setting up a worker or a coordinator. Errors of queries running
//! on the cluster are engine errors (`EngineError::WorkerUnavailable` names the worker).

/// Errors of the cluster crate.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The shared secret's environment variable is unset or too weak.
    #[error("cluster secret: {0}")]
    Secret(String),
    /// A worker URL or address is unusable.
    #[error("{0}")]
    Config(String),
    /// The worker's storage could not be set up (a domain's bucket or credentials).
    #[error("cannot set up the domains' storage: {0}")]
    Storage(#[source] meshql_engine::EngineError),
    /// The worker's gRPC server failed.
    #[error("worker server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// Result alias of the cluster crate.
pub type Result<T, E = ClusterError> = std::result::Result<T, E>;
