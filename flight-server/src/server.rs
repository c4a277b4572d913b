//! Running the Flight SQL server on a bound listener until a shutdown signal.

use std::future::Future;
use std::net::SocketAddr;

use meshql_engine::MeshEngine;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

use crate::service::{flight_service, MeshFlightSqlService};

/// Default limit for one gRPC message in either direction (16 MiB, what ADBC uses).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

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

/// Serves Flight SQL on `listener` until `shutdown` completes.
pub async fn serve(
    engine: MeshEngine,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<()> {
    let service = MeshFlightSqlService::try_new(engine)
        .map_err(|s| ServerError::Setup(s.message().to_string()))?;
    tonic::transport::Server::builder()
        // Large enough for JDBC URL options sent as headers.
        .http2_max_header_list_size(256 * 1024)
        .tcp_nodelay(true)
        .add_service(flight_service(service, DEFAULT_MAX_MESSAGE_BYTES))
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await?;
    Ok(())
}

/// The address a listener is bound to, for the startup line.
pub fn local_addr(listener: &TcpListener) -> Result<SocketAddr> {
    listener
        .local_addr()
        .map_err(|e| ServerError::Setup(format!("cannot read the bound address: {e}")))
}
