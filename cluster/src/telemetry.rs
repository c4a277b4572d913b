//! The coordinator's metrics about its workers, recorded through the `metrics` facade (the
//! server's `GET /metrics` exports them; see docs/metrics.md). Every one is labelled
//! [`WORKER_LABEL`] with the worker's URL as listed in `[cluster] workers`.

/// Plan fragments (tasks of a stage) sent to a worker.
pub const WORKER_FRAGMENTS: &str = "meshql_worker_fragments_total";
/// Rows the coordinator received from a worker.
pub const WORKER_ROWS: &str = "meshql_worker_rows_total";
/// Bytes (Arrow in-memory size of the batches) the coordinator received from a worker.
pub const WORKER_BYTES: &str = "meshql_worker_bytes_total";
/// Failed calls to a worker, and failed health checks after a query failed.
pub const WORKER_ERRORS: &str = "meshql_worker_errors_total";
/// 1 while a worker answers its health checks, 0 while it is down.
pub const WORKER_UP: &str = "meshql_worker_up";
/// The label naming the worker.
pub const WORKER_LABEL: &str = "worker";
