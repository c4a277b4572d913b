//! Operations endpoints: Prometheus `/metrics` (no login; labels never carry principal names or
//! SQL), `/healthz` (the process serves) and `/readyz` (the catalog is loaded and every domain's
//! store is configured), plus the per-request HTTP metrics.
//!
//! The Prometheus recorder is the process-wide `metrics` recorder, installed once; it keeps
//! what Flight SQL, the engine and this crate emit and renders it on request (no listener of
//! its own).

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use meshql_engine::telemetry;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use serde_json::json;

use crate::AppState;

/// HTTP requests by method, route (the route template, never a product name) and status.
pub const HTTP_REQUESTS: &str = "meshql_http_requests_total";
/// HTTP request time until the response head, seconds, by route.
pub const HTTP_REQUEST_SECONDS: &str = "meshql_http_request_duration_seconds";

/// Histogram buckets for every `*_seconds` metric.
const SECONDS_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

static HANDLE: OnceLock<Result<PrometheusHandle, String>> = OnceLock::new();

/// Installs the process-wide Prometheus recorder (once; later calls return the same handle).
pub fn install_metrics_recorder() -> Result<PrometheusHandle, String> {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
                .map_err(|e| e.to_string())?
                .build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).map_err(|e| e.to_string())?;
            telemetry::describe_metrics();
            metrics::describe_counter!(HTTP_REQUESTS, "HTTP requests by method, route and status");
            metrics::describe_histogram!(
                HTTP_REQUEST_SECONDS,
                metrics::Unit::Seconds,
                "HTTP request time until the response head"
            );
            Ok(handle)
        })
        .clone()
}

/// `GET /metrics`: Prometheus text format.
pub(crate) async fn metrics(State(state): State<AppState>) -> Response {
    let usage = state.inner.engine.resource_usage();
    metrics::gauge!(telemetry::MEMORY_POOL_USED).set(usage.memory_pool_used as f64);
    metrics::gauge!(telemetry::SPILL_DISK_BYTES).set(usage.spill_disk_bytes as f64);
    metrics::gauge!(telemetry::QUERIES_QUEUED).set(usage.queries_queued as f64);
    let mut response = state.inner.metrics.render().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

/// `GET /healthz`: the process is up and serving.
pub(crate) async fn healthz() -> &'static str {
    "ok\n"
}

/// `GET /readyz`: 200 when the catalog is loaded and every domain's store is configured,
/// 503 otherwise. Domain names stay out of the answer (it needs no login); problems are logged.
pub(crate) async fn readyz(State(state): State<AppState>) -> Response {
    let domains = state.inner.engine.readiness();
    let unready: Vec<_> = domains.iter().filter(|d| !d.ready).collect();
    for d in &unready {
        tracing::warn!(domain = %d.domain, problem = ?d.problem, "domain not ready");
    }
    let ready = unready.is_empty();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({
            "ready": ready,
            "catalog_loaded": true,
            "domains": domains.len(),
            "domains_unready": unready.len(),
        })),
    )
        .into_response()
}

/// Counts every request by method, route template and status.
pub(crate) async fn count_requests(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let method = request.method().as_str().to_string();
    let start = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::histogram!(HTTP_REQUEST_SECONDS, "route" => route.clone())
        .record(start.elapsed().as_secs_f64());
    metrics::counter!(HTTP_REQUESTS, "method" => method, "route" => route, "status" => status)
        .increment(1);
    response
}
