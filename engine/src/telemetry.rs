//! Per-query metrics and trace spans, shared by every transport (Flight SQL, HTTP).
//!
//! Metrics go through the `metrics` facade: without an installed recorder (no `[http]` server,
//! unit tests) they cost next to nothing. The names are constants here and documented in
//! `docs/metrics.md`; labels never carry principal names or SQL.
//!
//! Every query gets a root `query` span with children `authenticate`, `plan`, `execute` and
//! `stream`; the products it read are the `meshql.products` attribute. With
//! `[telemetry] otlp_endpoint` set, the binary exports these spans over OTLP/HTTP.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use arrow::array::RecordBatch;
use futures::Stream;
use tracing::field::Empty;
use tracing::Span;

use crate::error::{EngineError, Result};
use crate::product::ProductRead;
use crate::session::BatchStream;

/// Queries by transport, outcome (`ok`, `error`, `cancelled`) and status code (gRPC code name).
pub const QUERIES: &str = "meshql_queries_total";
/// Planning time (parse, resolve products, apply policies), seconds, by transport.
pub const PLANNING_SECONDS: &str = "meshql_query_planning_seconds";
/// Time from the start of the request to the first result batch, seconds, by transport.
pub const FIRST_BATCH_SECONDS: &str = "meshql_query_first_batch_seconds";
/// Total time of a query until its last batch (or failure), seconds, by transport and outcome.
pub const DURATION_SECONDS: &str = "meshql_query_duration_seconds";
/// Result rows sent, by transport.
pub const ROWS_SENT: &str = "meshql_rows_sent_total";
/// Result bytes sent (Arrow in-memory size of the result batches), by transport.
pub const BYTES_SENT: &str = "meshql_bytes_sent_total";
/// Queries executing now (planned, streaming results), by transport.
pub const QUERIES_RUNNING: &str = "meshql_queries_running";
/// Queries waiting for admission (`[limits] max_concurrent_queries`).
pub const QUERIES_QUEUED: &str = "meshql_queries_queued";
/// Bytes reserved in the engine's memory pool now.
pub const MEMORY_POOL_USED: &str = "meshql_memory_pool_used_bytes";
/// Bytes of spill files on disk now.
pub const SPILL_DISK_BYTES: &str = "meshql_spill_disk_bytes";
/// Bytes spilled to disk since start (summed from each finished query's operators).
pub const SPILLED_BYTES: &str = "meshql_spilled_bytes_total";
/// Object store requests, by domain and operation.
pub const STORE_REQUESTS: &str = "meshql_object_store_requests_total";
/// Failed object store requests, by domain and operation.
pub const STORE_ERRORS: &str = "meshql_object_store_errors_total";
/// Catalog changes looked at by the reloader, by outcome (`applied`, `rejected`).
pub const CATALOG_RELOADS: &str = "meshql_catalog_reloads_total";
/// The generation of the catalog in force (1 at start, +1 per applied reload).
pub const CATALOG_GENERATION: &str = "meshql_catalog_generation";
/// Answers served from the result cache.
pub const RESULT_CACHE_HITS: &str = "meshql_result_cache_hits_total";
/// Cacheable queries that were run (and stored when their result fit).
pub const RESULT_CACHE_MISSES: &str = "meshql_result_cache_misses_total";
/// Bytes of results held by the result cache.
pub const RESULT_CACHE_BYTES: &str = "meshql_result_cache_bytes";
/// Audit records that could not be written.
pub const AUDIT_WRITE_ERRORS: &str = "meshql_audit_write_errors_total";

/// Registers the description and unit of every metric with the installed recorder.
pub fn describe_metrics() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(
        QUERIES,
        "Queries by transport, outcome and status code (gRPC code name)"
    );
    describe_histogram!(
        PLANNING_SECONDS,
        Unit::Seconds,
        "Time to plan a query, policies included"
    );
    describe_histogram!(
        FIRST_BATCH_SECONDS,
        Unit::Seconds,
        "Time from the request to the first result batch"
    );
    describe_histogram!(
        DURATION_SECONDS,
        Unit::Seconds,
        "Total query time, until the last batch or the failure"
    );
    describe_counter!(ROWS_SENT, "Result rows sent");
    describe_counter!(
        BYTES_SENT,
        Unit::Bytes,
        "Result bytes sent (Arrow size of the batches)"
    );
    describe_gauge!(QUERIES_RUNNING, "Queries executing now");
    describe_gauge!(QUERIES_QUEUED, "Queries waiting for admission");
    describe_gauge!(
        MEMORY_POOL_USED,
        Unit::Bytes,
        "Bytes reserved in the engine's memory pool"
    );
    describe_gauge!(
        SPILL_DISK_BYTES,
        Unit::Bytes,
        "Bytes of spill files on disk now"
    );
    describe_counter!(
        SPILLED_BYTES,
        Unit::Bytes,
        "Bytes spilled to disk since start"
    );
    describe_counter!(STORE_REQUESTS, "Object store requests by domain");
    describe_counter!(STORE_ERRORS, "Failed object store requests by domain");
    describe_counter!(CATALOG_RELOADS, "Catalog reloads by outcome");
    describe_gauge!(CATALOG_GENERATION, "Generation of the catalog in force");
    describe_counter!(RESULT_CACHE_HITS, "Queries answered from the result cache");
    describe_counter!(
        RESULT_CACHE_MISSES,
        "Cacheable queries that were run (their result stored when it fit)"
    );
    describe_gauge!(
        RESULT_CACHE_BYTES,
        Unit::Bytes,
        "Bytes of results held by the result cache"
    );
    describe_counter!(
        AUDIT_WRITE_ERRORS,
        "Audit records that could not be written"
    );
}

/// Follows one query through a transport: its spans and its metrics.
#[derive(Debug)]
pub struct QueryObserver {
    transport: &'static str,
    start: Instant,
    span: Span,
}

impl QueryObserver {
    /// Starts observing a query arriving over `transport` (`flight`, `http`).
    pub fn start(transport: &'static str) -> Self {
        let span = tracing::info_span!(
            "query",
            otel.name = "meshql.query",
            meshql.transport = transport,
            enduser.id = Empty,
            meshql.products = Empty,
            meshql.rows = Empty,
            meshql.outcome = Empty,
            rpc.grpc.status_code = Empty,
        );
        Self {
            transport,
            start: Instant::now(),
            span,
        }
    }

    /// The query's root span.
    pub fn span(&self) -> &Span {
        &self.span
    }

    /// A child span for authenticating the caller.
    pub fn authenticate_span(&self) -> Span {
        tracing::info_span!(parent: &self.span, "authenticate")
    }

    /// Records who is asking (after authentication).
    pub fn authenticated(&self, user: &str) {
        self.span.record("enduser.id", user);
    }

    /// A child span for planning.
    pub fn plan_span(&self) -> Span {
        tracing::info_span!(parent: &self.span, "plan")
    }

    /// Records that planning took from the start until now, and the products the plan reads.
    pub fn planned(&self, planning_started: Instant, reads: &[ProductRead]) {
        metrics::histogram!(PLANNING_SECONDS, "transport" => self.transport)
            .record(planning_started.elapsed().as_secs_f64());
        let products: Vec<&str> = reads.iter().map(|r| r.product.as_str()).collect();
        self.span
            .record("meshql.products", products.join(",").as_str());
    }

    /// A child span for starting execution.
    pub fn execute_span(&self) -> Span {
        tracing::info_span!(parent: &self.span, "execute")
    }

    /// The query failed before streaming (authentication, planning, execution start).
    pub fn failed(self, code: &'static str) {
        self.finish("error", code, 0);
    }

    /// Observes the query's result stream; `classify` names the status code of an error.
    pub fn observe(
        self,
        stream: BatchStream,
        classify: fn(&EngineError) -> &'static str,
    ) -> ObservedStream {
        metrics::gauge!(QUERIES_RUNNING, "transport" => self.transport).increment(1.0);
        let stream_span = tracing::info_span!(parent: &self.span, "stream");
        ObservedStream {
            inner: stream,
            observer: Some(self),
            stream_span,
            classify,
            rows: 0,
            first_batch: false,
        }
    }

    fn finish(self, outcome: &'static str, code: &'static str, rows: u64) {
        let transport = self.transport;
        metrics::counter!(QUERIES, "transport" => transport, "outcome" => outcome, "code" => code)
            .increment(1);
        metrics::histogram!(DURATION_SECONDS, "transport" => transport, "outcome" => outcome)
            .record(self.start.elapsed().as_secs_f64());
        self.span.record("meshql.outcome", outcome);
        self.span.record("rpc.grpc.status_code", code);
        self.span
            .record("meshql.rows", i64::try_from(rows).unwrap_or(i64::MAX));
    }
}

/// A result stream with its query's metrics: first batch time, rows and bytes sent, and the
/// outcome when it ends, fails or is dropped (cancelled).
pub struct ObservedStream {
    inner: BatchStream,
    observer: Option<QueryObserver>,
    stream_span: Span,
    classify: fn(&EngineError) -> &'static str,
    rows: u64,
    first_batch: bool,
}

impl std::fmt::Debug for ObservedStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObservedStream")
            .field("rows", &self.rows)
            .finish_non_exhaustive()
    }
}

impl ObservedStream {
    /// Ends the query successfully before its last batch (a row cap was reached).
    pub fn finish_early(mut self) {
        self.end("ok", "OK");
    }

    fn end(&mut self, outcome: &'static str, code: &'static str) {
        if let Some(observer) = self.observer.take() {
            metrics::gauge!(QUERIES_RUNNING, "transport" => observer.transport).decrement(1.0);
            observer.finish(outcome, code, self.rows);
            self.stream_span = Span::none();
        }
    }
}

impl Stream for ObservedStream {
    type Item = Result<RecordBatch>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let polled = {
            let _entered = this.stream_span.enter();
            this.inner.as_mut().poll_next(cx)
        };
        match &polled {
            Poll::Ready(Some(Ok(batch))) => {
                if let Some(o) = &this.observer {
                    if !this.first_batch {
                        this.first_batch = true;
                        metrics::histogram!(FIRST_BATCH_SECONDS, "transport" => o.transport)
                            .record(o.start.elapsed().as_secs_f64());
                    }
                    this.rows += batch.num_rows() as u64;
                    metrics::counter!(ROWS_SENT, "transport" => o.transport)
                        .increment(batch.num_rows() as u64);
                    metrics::counter!(BYTES_SENT, "transport" => o.transport)
                        .increment(batch.get_array_memory_size() as u64);
                }
            }
            Poll::Ready(Some(Err(e))) => {
                let code = (this.classify)(e);
                this.end("error", code);
            }
            Poll::Ready(None) => this.end("ok", "OK"),
            Poll::Pending => {}
        }
        polled
    }
}

impl Drop for ObservedStream {
    fn drop(&mut self) {
        self.end("cancelled", "CANCELLED");
    }
}
