//! meshql over HTTP (SPEC §10): the web catalog and SQL console at `/`, the JSON API under
//! `/api/v1/`, Prometheus `/metrics`, `/healthz` and `/readyz`.
//!
//! The same principals and rules as Flight SQL: callers authenticate through the shared
//! [`Authenticator`] (session cookie, bearer token or JWT, Basic), and every answer comes from
//! the engine or the catalog policies for that principal. See `docs/http.md`.

mod auth;
mod catalog_api;
mod encode;
mod error;
mod ops;
mod query_api;
mod ui;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, HeaderValue};
use axum::routing::{get, post};
use axum::Router;
use meshql_auth::Authenticator;
use meshql_engine::MeshEngine;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;

pub use auth::{authenticate, Viewer, SESSION_COOKIE};
pub use error::{engine_code, ApiError, Code};
pub use ops::{install_metrics_recorder, HTTP_REQUESTS, HTTP_REQUEST_SECONDS};

/// How long streaming responses may run on after the shutdown signal before they are cut.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// What the HTTP server needs besides the engine and the authenticator.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// The Flight SQL address shown in "connect" snippets (`grpc://HOST:PORT`).
    pub flight_url: String,
    /// The Prometheus recorder's handle ([`install_metrics_recorder`]).
    pub metrics: PrometheusHandle,
}

/// Shared state of the HTTP handlers.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    engine: MeshEngine,
    auth: Arc<Authenticator>,
    flight_url: String,
    metrics: PrometheusHandle,
    running: Arc<query_api::RunningQueries>,
    token_ttl_secs: u64,
}

/// The HTTP routes over `engine`, authenticating with `auth` (share it with the Flight SQL
/// server so that tokens work on both).
pub fn router(engine: MeshEngine, auth: Arc<Authenticator>, options: HttpOptions) -> Router {
    let token_ttl_secs = engine.mesh().config.server.token_ttl_secs;
    let state = AppState {
        inner: Arc::new(Inner {
            engine,
            auth,
            flight_url: options.flight_url,
            metrics: options.metrics,
            running: Arc::default(),
            token_ttl_secs,
        }),
    };
    let api = Router::new()
        .route("/login", post(auth::login))
        .route("/logout", post(auth::logout))
        .route("/me", get(auth::me))
        .route("/catalog", get(catalog_api::catalog))
        .route("/products/{domain}/{name}", get(catalog_api::product))
        .route(
            "/products/{domain}/{name}/preview",
            get(catalog_api::preview),
        )
        .route("/query", post(query_api::query))
        .route("/queries/{id}/cancel", post(query_api::cancel))
        .route("/download", get(query_api::download))
        .route("/history", get(query_api::history));
    Router::new()
        .route("/", get(ui::index))
        .route("/assets/app.js", get(ui::app_js))
        .route("/assets/app.css", get(ui::app_css))
        .route("/metrics", get(ops::metrics))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .nest("/api/v1", api)
        .route_layer(axum::middleware::from_fn(ops::count_requests))
        .fallback(|uri: axum::http::Uri| async move { ApiError::NoRoute(uri.path().to_string()) })
        .layer(axum::middleware::from_fn(auth::csrf_guard))
        .layer(axum::middleware::from_fn(security_headers))
        .with_state(state)
}

/// Headers every response carries: nothing but this origin may run, frame or be fetched.
async fn security_headers(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; \
             connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

/// Binds `addr` (`HOST:PORT`; port 0 picks a free port).
pub async fn bind(addr: &str) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot bind {addr}: {e}")))
}

/// The address a listener is bound to, for the startup line.
pub fn local_addr(listener: &TcpListener) -> std::io::Result<SocketAddr> {
    listener.local_addr()
}

/// Serves `router` on `listener` until `shutdown` completes; responses still streaming then get
/// a short grace period and are cut.
pub async fn serve(
    router: Router,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (tx, rx) = tokio::sync::watch::channel(false);
    let graceful = async move {
        shutdown.await;
        let _ = tx.send(true);
    };
    let server = axum::serve(listener, router).with_graceful_shutdown(graceful);
    let mut rx2 = rx.clone();
    let deadline = async move {
        let _ = rx2.wait_for(|stop| *stop).await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    tokio::select! {
        r = server => r,
        _ = deadline => {
            tracing::info!("HTTP responses still streaming at shutdown were cut");
            Ok(())
        }
    }
}
