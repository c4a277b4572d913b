//! The worker side: `meshql worker` serves datafusion-distributed's worker service.
//!
//! A worker has the mesh's object stores (each domain's bucket with its own credentials, as
//! on the server) and nothing else: no users, principals or policies. It runs the plan
//! fragments a coordinator sends (the policies already inside them) and answers only callers
//! presenting the cluster's shared secret.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use datafusion::error::DataFusionError;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::SessionState;
use datafusion_distributed::{DistributedExt, Worker, WorkerQueryContext};
use datafusion_proto::physical_plan::PhysicalExtensionCodec;
use meshql_catalog::Mesh;
use tokio::net::TcpListener;

use crate::auth::ClusterSecret;
use crate::channel::MeshChannels;
use crate::codec::MeshqlCodec;
use crate::coordinator::link_settings;
use crate::error::{ClusterError, Result};

/// Serves a worker for `mesh` on `listener` until `shutdown` completes. The shared secret comes
/// from the environment variable named by `[cluster] secret_env`.
pub async fn run_worker(
    mesh: &Mesh,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<()> {
    ClusterWorker::new(mesh)?.serve(listener, shutdown).await
}

/// A worker ready to serve: set up (secret read, buckets registered) before it binds, so that a
/// bad configuration is reported before the worker announces itself.
pub struct ClusterWorker {
    worker: Worker,
    secret: ClusterSecret,
    keepalive: Duration,
    timeout: Duration,
}

impl std::fmt::Debug for ClusterWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterWorker").finish_non_exhaustive()
    }
}

impl ClusterWorker {
    /// A worker for `mesh`, with the secret from `[cluster] secret_env`.
    pub fn new(mesh: &Mesh) -> Result<Self> {
        let secret = ClusterSecret::from_env(&mesh.config.cluster.secret_env)?;
        Self::with_codec(mesh, secret, Arc::new(MeshqlCodec))
    }

    /// A worker with an explicit secret and plan codec (tests use this to prove that a worker
    /// without a working codec fails queries instead of leaking).
    pub fn with_codec(
        mesh: &Mesh,
        secret: ClusterSecret,
        codec: Arc<dyn PhysicalExtensionCodec>,
    ) -> Result<Self> {
        let runtime = RuntimeEnvBuilder::new()
            .build_arc()
            .map_err(|e| ClusterError::Config(format!("cannot create the worker runtime: {e}")))?;
        meshql_engine::register_domain_stores(&runtime, mesh).map_err(ClusterError::Storage)?;
        let settings = link_settings(&mesh.config.cluster, secret.clone());
        let keepalive = settings.keepalive_interval;
        let timeout = settings.keepalive_timeout();
        // Workers fetch shuffled data from each other with the same secret.
        let channels = MeshChannels::new(settings);
        let worker = Worker::from_session_builder(move |ctx: WorkerQueryContext| {
            let (codec, channels) = (Arc::clone(&codec), channels.clone());
            async move {
                Ok::<SessionState, DataFusionError>(
                    ctx.builder
                        .with_distributed_user_codec_arc(codec)
                        .with_distributed_channel_resolver(channels)
                        .build(),
                )
            }
        })
        .with_runtime_env(runtime)
        .with_version(env!("CARGO_PKG_VERSION"));
        Ok(Self {
            worker,
            secret,
            keepalive,
            timeout,
        })
    }

    /// Serves on `listener` until `shutdown` completes.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<()> {
        tonic::transport::Server::builder()
            .tcp_nodelay(true)
            .http2_keepalive_interval(Some(self.keepalive))
            .http2_keepalive_timeout(Some(self.timeout))
            .layer(tonic::service::InterceptorLayer::new(
                self.secret.interceptor(),
            ))
            .add_service(self.worker.into_worker_server())
            .serve_with_incoming_shutdown(
                tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
                shutdown,
            )
            .await?;
        Ok(())
    }
}
