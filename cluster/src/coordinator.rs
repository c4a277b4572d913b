//! The coordinator side: turning a server's engine into one that distributes its queries to the
//! workers of `[cluster]`.
//!
//! ```ignore
//! let coordinator = meshql_cluster::Coordinator::start(&mesh.config.cluster).await?;
//! let engine = MeshEngine::try_new_with_options(mesh, coordinator.engine_options(EngineOptions::default()))?;
//! // keep `coordinator` alive as long as the engine: it health-checks the workers.
//! ```

use std::sync::Arc;
use std::time::Duration;

use datafusion::execution::SessionStateBuilder;
use datafusion_distributed::{DistributedExt, SessionStateBuilderExt};
use datafusion_proto::physical_plan::PhysicalExtensionCodec;
use meshql_catalog::ClusterConfig;
use meshql_engine::{EngineOptions, SessionHook};
use url::Url;

use crate::auth::ClusterSecret;
use crate::channel::{LinkSettings, MeshChannels};
use crate::codec::MeshqlCodec;
use crate::error::{ClusterError, Result};
use crate::planner::{MeshqlQueryPlanner, Precomputed};
use crate::pool::{PoolResolver, WorkerPool};
use crate::scale::{policy_desired_task_count, policy_scale_up};

/// A running coordinator: the workers, their health checks and the session hook that makes an
/// engine distribute its queries. Dropping it stops the health checks.
#[derive(Debug)]
pub struct Coordinator {
    pool: Arc<WorkerPool>,
    channels: MeshChannels,
    codec: Arc<dyn PhysicalExtensionCodec>,
    scan_bytes_per_partition: usize,
    prober: tokio::task::JoinHandle<()>,
}

impl Drop for Coordinator {
    fn drop(&mut self) {
        self.prober.abort();
    }
}

impl Coordinator {
    /// Starts coordinating the workers of `config`, with the shared secret from the
    /// environment variable `config.secret_env`. Workers are checked once before this returns
    /// (those not answering yet are logged and used once they do).
    pub async fn start(config: &ClusterConfig) -> Result<Self> {
        let secret = ClusterSecret::from_env(&config.secret_env)?;
        Self::start_with(config, secret, Arc::new(MeshqlCodec)).await
    }

    /// Like [`Coordinator::start`], with an explicit secret and plan codec (tests use this to
    /// prove that a broken codec fails queries instead of leaking).
    pub async fn start_with(
        config: &ClusterConfig,
        secret: ClusterSecret,
        codec: Arc<dyn PhysicalExtensionCodec>,
    ) -> Result<Self> {
        if config.workers.is_empty() {
            return Err(ClusterError::Config(
                "[cluster] workers is empty: nothing to coordinate".to_string(),
            ));
        }
        let settings = link_settings(config, secret);
        let pool = WorkerPool::new(&config.workers, settings.connect_timeout);
        let channels = MeshChannels::new(settings);
        pool.set_channels(channels.clone());
        pool.probe_all().await;
        let up = pool.up().len();
        tracing::info!(
            workers = config.workers.len(),
            up,
            "coordinating the cluster's workers"
        );
        let prober = pool.spawn_prober(Duration::from_secs(config.probe_interval_secs.max(1)));
        Ok(Self {
            pool,
            channels,
            codec,
            scan_bytes_per_partition: usize::try_from(config.scan_bytes_per_partition)
                .unwrap_or(usize::MAX)
                .max(1),
            prober,
        })
    }

    /// The hook that makes a query session distribute its queries.
    pub fn session_hook(&self) -> SessionHook {
        let pool = Arc::clone(&self.pool);
        let channels = self.channels.clone();
        let codec = Arc::clone(&self.codec);
        let scan_bytes = self.scan_bytes_per_partition;
        SessionHook(Arc::new(move |builder: SessionStateBuilder| {
            let mut builder = builder
                .with_query_planner(Arc::new(Precomputed))
                .with_distributed_planner()
                .with_distributed_worker_resolver(PoolResolver(Arc::clone(&pool)))
                .with_distributed_channel_resolver(channels.clone())
                .with_distributed_user_codec_arc(Arc::clone(&codec))
                .with_distributed_desired_task_count_handler(policy_desired_task_count)
                .with_distributed_scale_up_leaf_node_handler(policy_scale_up);
            if let Err(e) = builder.set_distributed_file_scan_config_bytes_per_partition(scan_bytes)
            {
                tracing::warn!(error = %e, "cannot set cluster.scan_bytes_per_partition");
            }
            match builder.query_planner().take() {
                Some(distributed) => builder.with_query_planner(Arc::new(MeshqlQueryPlanner {
                    distributed,
                    pool: Arc::clone(&pool),
                })),
                None => builder,
            }
        }))
    }

    /// `base` with the session hook set.
    pub fn engine_options(&self, mut base: EngineOptions) -> EngineOptions {
        base.session_hook = Some(self.session_hook());
        base
    }

    /// Every worker with whether it is currently up.
    pub fn workers(&self) -> Vec<(Url, bool)> {
        self.pool.status()
    }

    /// Checks every worker now (the background check does this every `probe_interval`).
    pub async fn check_workers(&self) {
        self.pool.probe_all().await;
    }
}

pub(crate) fn link_settings(config: &ClusterConfig, secret: ClusterSecret) -> LinkSettings {
    LinkSettings {
        secret,
        connect_timeout: Duration::from_secs(config.connect_timeout_secs.max(1)),
        keepalive_interval: Duration::from_secs(config.probe_interval_secs.max(1)),
    }
}
