//! Running the Flight SQL server on a bound listener until a shutdown signal.

use std::future::Future;
use std::net::SocketAddr;

use meshql_catalog::ServerConfig;
use meshql_engine::MeshEngine;
use tokio::net::TcpListener;

use crate::get_schema::flight_service;
use crate::service::MeshFlightSqlService;
use crate::tls::server_tls_config;

/// Default limit for one gRPC message in either direction (16 MiB, what ADBC uses).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = meshql_catalog::DEFAULT_MAX_MESSAGE_BYTES;

/// Largest header list accepted: JDBC sends unknown URL options as headers.
const MAX_HEADER_LIST_BYTES: u32 = 256 * 1024;

/// Errors of the server crate.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot bind {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("{0}")]
    Setup(String),
}

/// Result alias of the server crate.
pub type Result<T, E = ServerError> = std::result::Result<T, E>;

/// Binds `addr` (`HOST:PORT`, port 0 for an ephemeral port).
pub async fn bind(addr: &str) -> Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind {
            addr: addr.to_string(),
            source,
        })
}

/// Serves Flight SQL on `listener` until `shutdown` completes, with the mesh's `[server]`
/// settings: TLS (and mutual TLS) from `[server.tls]`, message sizes from
/// `max_message_bytes`.
pub async fn serve(
    engine: MeshEngine,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<()> {
    let config = engine.mesh().config.server.clone();
    let service = MeshFlightSqlService::try_new(engine)
        .map_err(|s| ServerError::Setup(s.message().to_string()))?;
    serve_service(service, &config, listener, shutdown).await
}

/// Like [`serve`], authenticating with `auth`, shared with the HTTP server so that a token
/// issued by one transport works on the other.
pub async fn serve_with_auth(
    engine: MeshEngine,
    auth: std::sync::Arc<meshql_auth::Authenticator>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<()> {
    let config = engine.mesh().config.server.clone();
    let service = MeshFlightSqlService::try_new_with_auth(engine, auth)
        .map_err(|s| ServerError::Setup(s.message().to_string()))?;
    serve_service(service, &config, listener, shutdown).await
}

/// Serves an existing service (tests use this to observe it while it runs).
pub async fn serve_service(
    service: MeshFlightSqlService,
    config: &ServerConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<()> {
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = &config.tls {
        let tls = server_tls_config(tls).map_err(ServerError::Setup)?;
        builder = builder.tls_config(tls)?;
    }
    let max_message_bytes = if config.max_message_bytes == 0 {
        DEFAULT_MAX_MESSAGE_BYTES
    } else {
        config.max_message_bytes
    };
    builder
        .http2_max_header_list_size(MAX_HEADER_LIST_BYTES)
        .tcp_nodelay(true)
        .add_service(flight_service(service, max_message_bytes))
        // `tcp_nodelay` above applies only to listeners tonic binds itself; set it on every
        // accepted connection too, or small responses wait ~40 ms for delayed ACKs (Nagle).
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown,
        )
        .await?;
    Ok(())
}

/// Loads the TLS certificate and key of `[server.tls]` (when set), so that a bad file is reported
/// before the server announces itself. Returns whether TLS is on.
pub fn check_tls(config: &ServerConfig) -> Result<bool> {
    match &config.tls {
        Some(tls) => server_tls_config(tls)
            .map(|_| true)
            .map_err(ServerError::Setup),
        None => Ok(false),
    }
}

/// The address a listener is bound to, for the startup line.
pub fn local_addr(listener: &TcpListener) -> Result<SocketAddr> {
    listener
        .local_addr()
        .map_err(|e| ServerError::Setup(format!("cannot read the bound address: {e}")))
}
