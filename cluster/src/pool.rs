//! The coordinator's view of its workers: which are up, health checks, and naming the worker
//! behind a failed query.
//!
//! Plans are only given to workers that are up. A worker goes down when it fails a health
//! check: the background one every `probe_interval`, or the one made when a distributed query
//! fails; a worker that comes back answers the next background check and is used again.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use datafusion::error::{DataFusionError, Result};
use datafusion_distributed::WorkerResolver;
use meshql_engine::{EngineError, WorkersUsed};
use url::Url;

use crate::channel::{link_failure, worker_label, MeshChannels};
use crate::telemetry::{WORKER_ERRORS, WORKER_LABEL, WORKER_UP};

#[derive(Debug)]
struct WorkerState {
    url: Url,
    label: String,
    up: AtomicBool,
    /// Counts the times the worker was marked down: a health check that started before the
    /// latest one must not mark it up again (it may have answered just before it died).
    downs: AtomicU64,
}

/// The workers of a cluster and their health.
#[derive(Debug)]
pub(crate) struct WorkerPool {
    workers: Vec<WorkerState>,
    /// Set once the channels (which hold a weak reference back to this pool) exist.
    channels: std::sync::OnceLock<MeshChannels>,
    probe_timeout: Duration,
}

impl WorkerPool {
    pub(crate) fn new(urls: &[Url], probe_timeout: Duration) -> Arc<Self> {
        Arc::new(Self {
            workers: urls
                .iter()
                .map(|u| WorkerState {
                    url: u.clone(),
                    label: worker_label(u),
                    up: AtomicBool::new(false),
                    downs: AtomicU64::new(0),
                })
                .collect(),
            channels: std::sync::OnceLock::new(),
            probe_timeout,
        })
    }

    pub(crate) fn set_channels(&self, channels: MeshChannels) {
        let _ = self.channels.set(channels);
    }

    /// URLs of the workers that are up.
    pub(crate) fn up(&self) -> Vec<Url> {
        self.workers
            .iter()
            .filter(|w| w.up.load(Ordering::Acquire))
            .map(|w| w.url.clone())
            .collect()
    }

    /// Every worker with whether it is up.
    pub(crate) fn status(&self) -> Vec<(Url, bool)> {
        self.workers
            .iter()
            .map(|w| (w.url.clone(), w.up.load(Ordering::Acquire)))
            .collect()
    }

    fn set(&self, w: &WorkerState, up: bool, why: &str) {
        if !up {
            w.downs.fetch_add(1, Ordering::AcqRel);
        }
        let was = w.up.swap(up, Ordering::AcqRel);
        metrics::gauge!(WORKER_UP, WORKER_LABEL => w.label.clone()).set(if up { 1.0 } else { 0.0 });
        match (was, up) {
            (false, true) => tracing::info!(worker = %w.label, "cluster worker is up"),
            (true, false) => {
                tracing::warn!(worker = %w.label, reason = why, "cluster worker is unavailable")
            }
            _ => {}
        }
    }

    /// Checks one worker: it must answer (and accept the secret) within the probe timeout. A
    /// quick failure is retried once: the first call after a broken connection fails while the
    /// channel reconnects.
    async fn ping(&self, url: &Url) -> std::result::Result<(), String> {
        let Some(channels) = self.channels.get() else {
            return Err("not connected".to_string());
        };
        let mut last = String::new();
        for _ in 0..2 {
            let mut client = channels.client(url).map_err(|e| e.to_string())?;
            match tokio::time::timeout(self.probe_timeout, client.ping()).await {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(why)) => last = why,
                Err(_) => {
                    return Err(format!(
                        "no answer within {}s",
                        self.probe_timeout.as_secs_f32()
                    ))
                }
            }
        }
        Err(last)
    }

    /// Checks every worker once (concurrently) and updates their state.
    pub(crate) async fn probe_all(&self) {
        let checks = self.workers.iter().map(|w| async move {
            let downs = w.downs.load(Ordering::Acquire);
            let r = self.ping(&w.url).await;
            (w, downs, r)
        });
        for (w, downs, r) in futures::future::join_all(checks).await {
            match r {
                // Marked down while this check ran (a failed query found it gone): the answer
                // is stale; the next check decides.
                Ok(()) if w.downs.load(Ordering::Acquire) != downs => {}
                Ok(()) => self.set(w, true, ""),
                Err(why) => self.set(w, false, &why),
            }
        }
    }

    /// Checks every worker every `interval` until the pool is dropped.
    pub(crate) fn spawn_prober(
        self: &Arc<Self>,
        interval: Duration,
    ) -> tokio::task::JoinHandle<()> {
        let weak: Weak<Self> = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(pool) = weak.upgrade() else { return };
                pool.probe_all().await;
            }
        })
    }

    /// Names the worker behind a failed distributed query, when there is one: a worker the query
    /// used that no longer answers a health check (within the connect timeout). Error texts
    /// cannot tell: a healthy worker whose stream was reset because another one froze reports a
    /// transport error too. The worker is marked down, so the next query avoids it. Errors of the
    /// query itself (every worker answers) pass through.
    pub(crate) async fn attribute(
        &self,
        e: DataFusionError,
        used: Option<&WorkersUsed>,
    ) -> DataFusionError {
        if let Some((worker, message)) = worker_unavailable(&e) {
            return unavailable(worker, message);
        }
        let used = used.map(WorkersUsed::snapshot).unwrap_or_default();
        let candidates: Vec<&WorkerState> = self
            .workers
            .iter()
            .filter(|w| used.contains(&w.label))
            .collect();
        let checks = candidates.iter().map(|w| async move {
            let r = self.ping(&w.url).await;
            (*w, r)
        });
        let mut failed = None;
        for (w, r) in futures::future::join_all(checks).await {
            if let Err(why) = r {
                self.set(w, false, &why);
                metrics::counter!(WORKER_ERRORS, WORKER_LABEL => w.label.clone()).increment(1);
                failed.get_or_insert((w.label.clone(), why));
            }
        }
        match failed {
            Some((worker, why)) => unavailable(worker, format!("{why} (while running: {e})")),
            // Every worker answers, yet a link failed (a stale connection to a worker that
            // restarted, a reset stream between two workers): say so, as a retryable error,
            // rather than as an error of the query.
            None => match link_failure(&e) {
                Some(message) => {
                    DataFusionError::External(Box::new(EngineError::ClusterLink { message }))
                }
                None => e,
            },
        }
    }
}

fn unavailable(worker: String, message: String) -> DataFusionError {
    DataFusionError::External(Box::new(EngineError::WorkerUnavailable { worker, message }))
}

/// A `WorkerUnavailable` carried inside `e`, if any.
fn worker_unavailable(e: &DataFusionError) -> Option<(String, String)> {
    match e {
        DataFusionError::External(inner) => match inner.downcast_ref::<EngineError>() {
            Some(EngineError::WorkerUnavailable { worker, message }) => {
                Some((worker.clone(), message.clone()))
            }
            _ => None,
        },
        DataFusionError::Context(_, inner) | DataFusionError::Diagnostic(_, inner) => {
            worker_unavailable(inner)
        }
        DataFusionError::Shared(inner) => worker_unavailable(inner),
        DataFusionError::Collection(errors) => errors.iter().find_map(worker_unavailable),
        _ => None,
    }
}

/// The [`WorkerResolver`] datafusion-distributed asks for workers: the ones that are up.
pub(crate) struct PoolResolver(pub(crate) Arc<WorkerPool>);

impl WorkerResolver for PoolResolver {
    fn get_urls(&self) -> Result<Vec<Url>> {
        Ok(self.0.up())
    }
}
