//! The SQL console's API: run a query and stream its rows as NDJSON (with a row cap), cancel it,
//! download a full result as CSV, Parquet or Arrow IPC (streamed batch by batch), and the
//! viewer's query history from the audit.
//!
//! A query that fails before its first row is answered with the error's HTTP status and the
//! Flight SQL code name and message; one that fails while streaming ends its NDJSON stream with
//! an `error` line carrying the same.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arrow::datatypes::SchemaRef;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use meshql_engine::telemetry::{ObservedStream, QueryObserver};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tracing::Instrument;

use crate::auth::{authenticate, Viewer};
use crate::encode::{columns, json_rows, Encoder, Format};
use crate::error::{engine_code_name, ApiError, Code};
use crate::AppState;

/// Rows the console shows unless asked otherwise, and the most it may ask for.
const DEFAULT_MAX_ROWS: usize = 1_000;
const MAX_MAX_ROWS: usize = 10_000;
/// History entries returned unless asked otherwise, and at most.
const DEFAULT_HISTORY: usize = 50;
const MAX_HISTORY: usize = 1_000;

/// A running console query: who owns it, and how to cancel it (once).
#[derive(Debug)]
struct Running {
    owner: String,
    cancel: Option<oneshot::Sender<()>>,
}

/// The queries being streamed to the console, so that their owner can cancel them.
#[derive(Debug, Default)]
pub(crate) struct RunningQueries {
    map: Mutex<HashMap<String, Running>>,
}

impl RunningQueries {
    fn register(self: &Arc<Self>, owner: &str) -> (String, oneshot::Receiver<()>, RunningGuard) {
        let id = uuid::Uuid::new_v4().to_string();
        let (tx, rx) = oneshot::channel();
        self.map.lock().unwrap_or_else(|p| p.into_inner()).insert(
            id.clone(),
            Running {
                owner: owner.to_string(),
                cancel: Some(tx),
            },
        );
        let guard = RunningGuard {
            registry: Arc::clone(self),
            id: id.clone(),
        };
        (id, rx, guard)
    }

    /// Cancels `owner`'s query `id`; false when there is no such query of theirs.
    fn cancel(&self, id: &str, owner: &str) -> bool {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        match map.get_mut(id) {
            Some(r) if r.owner == owner => {
                if let Some(tx) = r.cancel.take() {
                    let _ = tx.send(());
                }
                true
            }
            _ => false,
        }
    }
}

/// Forgets a running query when its response ends or is dropped.
struct RunningGuard {
    registry: Arc<RunningQueries>,
    id: String,
}

impl Drop for RunningGuard {
    fn drop(&mut self) {
        self.registry
            .map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.id);
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct QueryRequest {
    sql: String,
    max_rows: Option<usize>,
}

/// Authenticates, plans and starts a query as the caller, under one `query` span.
async fn start_query(
    state: &AppState,
    headers: &HeaderMap,
    sql: &str,
) -> Result<(Viewer, SchemaRef, ObservedStream), ApiError> {
    let observer = QueryObserver::start("http");
    let viewer = match authenticate(&state.inner.auth, headers)
        .instrument(observer.authenticate_span())
        .await
    {
        Ok(v) => v,
        Err(e) => {
            observer.failed(e.code().name());
            return Err(e);
        }
    };
    observer.authenticated(&viewer.principal.user);
    let fail = |observer: QueryObserver, e: meshql_engine::EngineError| {
        observer.failed(engine_code_name(&e));
        ApiError::Engine(e)
    };
    let session = match state.inner.engine.session(viewer.principal.clone()) {
        Ok(s) => s,
        Err(e) => return Err(fail(observer, e)),
    };
    let started = Instant::now();
    let planned = match session.plan_sql(sql).instrument(observer.plan_span()).await {
        Ok(p) => p,
        Err(e) => return Err(fail(observer, e)),
    };
    observer.planned(started, &session.reads());
    let schema = Arc::clone(&planned.schema);
    let stream = match session
        .execute(planned)
        .instrument(observer.execute_span())
        .await
    {
        Ok(s) => s,
        Err(e) => return Err(fail(observer, e)),
    };
    tracing::info!(user = %viewer.principal.user, "http query");
    Ok((viewer, schema, observer.observe(stream, engine_code_name)))
}

fn line(value: &Value) -> Bytes {
    let mut v = serde_json::to_vec(value).unwrap_or_default();
    v.push(b'\n');
    Bytes::from(v)
}

/// What the NDJSON body does next.
struct QueryBody {
    stream: Option<ObservedStream>,
    cancel: Option<oneshot::Receiver<()>>,
    _guard: RunningGuard,
    started: Instant,
    rows: usize,
    bytes: usize,
    max_rows: usize,
    done: bool,
}

impl QueryBody {
    fn summary(&self, kind: &str) -> serde_json::Map<String, Value> {
        let mut m = serde_json::Map::new();
        m.insert("type".into(), json!(kind));
        m.insert("rows".into(), json!(self.rows));
        m.insert("bytes".into(), json!(self.bytes));
        m.insert(
            "elapsed_ms".into(),
            json!(self.started.elapsed().as_millis() as u64),
        );
        m
    }

    fn error(&mut self, code: Code, message: String) -> Bytes {
        self.done = true;
        let mut m = self.summary("error");
        m.insert("code".into(), json!(code.name()));
        m.insert("message".into(), json!(message));
        line(&Value::Object(m))
    }

    async fn next_chunk(&mut self) -> Option<Bytes> {
        if self.done {
            return None;
        }
        let stream = self.stream.as_mut()?;
        let cancelled = async {
            match self.cancel.as_mut() {
                Some(rx) => {
                    if rx.await.is_err() {
                        // The registry dropped the sender: never cancelled.
                        std::future::pending::<()>().await
                    }
                }
                None => std::future::pending::<()>().await,
            }
        };
        let next = tokio::select! {
            biased;
            _ = cancelled => None,
            next = stream.next() => Some(next),
        };
        match next {
            None => {
                // Dropping the stream stops the query's work; the audit says `cancelled`.
                self.stream = None;
                Some(self.error(Code::Cancelled, "the query was cancelled".to_string()))
            }
            Some(None) => {
                self.done = true;
                let mut m = self.summary("end");
                m.insert("truncated".into(), json!(false));
                Some(line(&Value::Object(m)))
            }
            Some(Some(Err(e))) => {
                self.stream = None;
                let code = crate::error::engine_code(&e);
                Some(self.error(code, e.to_string()))
            }
            Some(Some(Ok(batch))) => {
                let n = batch.num_rows().min(self.max_rows - self.rows);
                let rows = match json_rows(&batch, 0, n) {
                    Ok(r) => r,
                    Err(e) => return Some(self.error(e.code(), e.to_string())),
                };
                self.rows += n;
                self.bytes += batch.get_array_memory_size();
                let mut out = if rows.is_empty() {
                    Vec::new()
                } else {
                    line(&json!({"type": "rows", "rows": rows})).to_vec()
                };
                if self.rows >= self.max_rows {
                    self.done = true;
                    if let Some(s) = self.stream.take() {
                        s.finish_early();
                    }
                    let mut m = self.summary("end");
                    m.insert("truncated".into(), json!(true));
                    out.extend_from_slice(&line(&Value::Object(m)));
                }
                Some(Bytes::from(out))
            }
        }
    }
}

fn ndjson_stream(body: QueryBody) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send {
    futures::stream::unfold(body, |mut body| async move {
        body.next_chunk().await.map(|chunk| (Ok(chunk), body))
    })
}

/// `POST /api/v1/query` `{"sql": ..., "max_rows": 1000}`: streams NDJSON lines — `start` (query
/// id and columns), `rows`, then `end` (rows, bytes, elapsed_ms, truncated) or `error`.
pub(crate) async fn query(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<QueryRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(req) = body.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let max_rows = req
        .max_rows
        .unwrap_or(DEFAULT_MAX_ROWS)
        .clamp(1, MAX_MAX_ROWS);
    let started = Instant::now();
    let (viewer, schema, stream) = start_query(&state, &headers, &req.sql).await?;
    let (id, cancel, guard) = state.inner.running.register(&viewer.principal.user);
    let first = line(&json!({"type": "start", "query_id": id, "columns": columns(&schema)}));
    let body = QueryBody {
        stream: Some(stream),
        cancel: Some(cancel),
        _guard: guard,
        started,
        rows: 0,
        bytes: 0,
        max_rows,
        done: false,
    };
    let chunks = futures::stream::once(async move { Ok(first) }).chain(ndjson_stream(body));
    let mut response = Body::from_stream(chunks).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    if let Ok(v) = HeaderValue::from_str(&id) {
        h.insert("x-meshql-query-id", v);
    }
    Ok(response)
}

/// `POST /api/v1/queries/{id}/cancel`: cancels one of the caller's running queries.
pub(crate) async fn cancel(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    if state.inner.running.cancel(&id, &viewer.principal.user) {
        Ok(Json(json!({"cancelled": true, "query_id": id})))
    } else {
        Err(ApiError::QueryNotFound(id))
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct DownloadQuery {
    sql: String,
    #[serde(default = "default_format")]
    format: String,
}

fn default_format() -> String {
    "csv".to_string()
}

/// `GET /api/v1/download?format=csv|parquet|arrow&sql=...`: the whole result as a file,
/// streamed batch by batch. A failure after the first bytes aborts the transfer (the client
/// sees an incomplete download, never a silently truncated file).
pub(crate) async fn download(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<DownloadQuery>,
) -> Result<Response, ApiError> {
    let format = Format::parse(&q.format)?;
    let (_viewer, schema, stream) = start_query(&state, &headers, &q.sql).await?;
    let encoder = Encoder::try_new(format, &schema)?;
    let body = DownloadBody {
        stream: Some(stream),
        encoder,
        schema,
    };
    let chunks = futures::stream::unfold(body, |mut body| async move {
        body.next_chunk().await.map(|chunk| (chunk, body))
    });
    let mut response = Body::from_stream(chunks).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    if let Ok(v) = HeaderValue::from_str(&format!(
        "attachment; filename=\"meshql-result.{}\"",
        format.extension()
    )) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(response)
}

/// A download being encoded.
struct DownloadBody {
    stream: Option<ObservedStream>,
    encoder: Encoder,
    schema: SchemaRef,
}

impl DownloadBody {
    async fn next_chunk(&mut self) -> Option<Result<Bytes, std::io::Error>> {
        let io = |e: &dyn std::fmt::Display| std::io::Error::other(e.to_string());
        loop {
            let stream = self.stream.as_mut()?;
            match stream.next().await {
                Some(Ok(batch)) => match self.encoder.batch(&batch) {
                    Ok(bytes) if bytes.is_empty() => continue,
                    Ok(bytes) => return Some(Ok(bytes)),
                    Err(e) => {
                        self.stream = None;
                        return Some(Err(io(&e)));
                    }
                },
                Some(Err(e)) => {
                    tracing::info!(error = %e, "download failed");
                    self.stream = None;
                    return Some(Err(io(&e)));
                }
                None => {
                    self.stream = None;
                    return Some(self.encoder.finish(&self.schema).map_err(|e| io(&e)));
                }
            }
        }
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct HistoryQuery {
    limit: Option<usize>,
}

/// `GET /api/v1/history?limit=50`: the caller's queries from the audit, newest first (every
/// principal's for audit admins, as in `meshql.audit`).
pub(crate) async fn history(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(q): Query<HistoryQuery>,
) -> Json<Value> {
    let limit = q.limit.unwrap_or(DEFAULT_HISTORY).clamp(1, MAX_HISTORY);
    let records = state.inner.engine.history(&viewer.principal, limit);
    Json(json!({"queries": records}))
}
