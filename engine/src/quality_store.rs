//! Where quality results live in a running engine, and the background monitor that produces
//! them.
//!
//! [`QualityStore`] keeps, per product, the results of its latest checks (one per data
//! version, the newest few) in memory, and runs checks on demand: a check of a given product,
//! data version and set of rules runs once, however many callers ask for it at the same time.
//! Checks are bounded: at most `[quality] max_concurrent_checks` run at once (the others wait
//! their turn) and together they use a DataFusion memory pool of `[quality] memory_limit`
//! bytes, separate from the queries' (their grouping operators spill to disk past it).
//!
//! [`run_monitor`] (started by `meshql serve`) looks at every product's data state every
//! `[quality] check_interval` and checks a product again when its data version changed (a new
//! Delta version, added, removed or rewritten Parquet files). Querying `meshql.products` or
//! `meshql.quality` asks for results of the current data versions too, and waits a bounded
//! time for them.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::prelude::SessionConfig;
use meshql_catalog::{Mesh, Product};
use tokio::sync::{watch, Semaphore};

use crate::error::Result;
use crate::freshness::{observe_bounded, DataState, Observations};
use crate::quality::{check_config, check_runtime, rules_fingerprint, run_check, ProductCheck};

/// Results kept per product (the newest data versions checked).
const KEEP_PER_PRODUCT: usize = 4;

/// (product, data version, rules fingerprint).
type CheckKey = (String, String, String);

/// Quality results and the machinery that produces them.
#[derive(Debug)]
pub(crate) struct QualityStore {
    /// The checks' runtime: their own memory pool, the engine's object stores.
    runtime: Arc<RuntimeEnv>,
    config: SessionConfig,
    permits: Arc<Semaphore>,
    interval: Duration,
    results: Mutex<HashMap<String, VecDeque<Arc<ProductCheck>>>>,
    running: Mutex<HashMap<CheckKey, watch::Receiver<Option<Arc<ProductCheck>>>>>,
    /// The latest observation of each product's storage.
    pub(crate) observations: Observations,
}

impl QualityStore {
    pub(crate) fn try_new(
        mesh: &Mesh,
        stores: &Arc<RuntimeEnv>,
        target_partitions: usize,
        batch_size: usize,
    ) -> Result<Self> {
        let q = &mesh.config.quality;
        Ok(Self {
            runtime: check_runtime(q.memory_limit_bytes, Some(stores))?,
            config: check_config(target_partitions, batch_size),
            permits: Arc::new(Semaphore::new(q.max_concurrent_checks.max(1))),
            interval: Duration::from_secs(q.check_interval_secs.max(1)),
            results: Mutex::new(HashMap::new()),
            running: Mutex::new(HashMap::new()),
            observations: Observations::new(Duration::from_secs(mesh.config.refresh_interval_secs)),
        })
    }

    /// The newest result for `product` checked with its current rules, whatever data version
    /// it was for.
    pub(crate) fn latest(&self, product: &Product) -> Option<Arc<ProductCheck>> {
        let fingerprint = rules_fingerprint(&product.manifest);
        self.results
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&product.qualified_name())?
            .iter()
            .find(|c| c.rules_fingerprint == fingerprint)
            .cloned()
    }

    /// The result for `product` at data version `state.version`, if it was checked.
    fn stored(&self, product: &Product, state: &DataState) -> Option<Arc<ProductCheck>> {
        let fingerprint = rules_fingerprint(&product.manifest);
        self.results
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&product.qualified_name())?
            .iter()
            .find(|c| c.rules_fingerprint == fingerprint && c.data_version == state.version)
            .cloned()
    }

    fn keep(&self, check: Arc<ProductCheck>) {
        let mut results = self.results.lock().unwrap_or_else(|p| p.into_inner());
        let list = results.entry(check.product.clone()).or_default();
        list.retain(|c| {
            !(c.data_version == check.data_version
                && c.rules_fingerprint == check.rules_fingerprint)
        });
        list.push_front(check);
        list.truncate(KEEP_PER_PRODUCT);
    }

    /// The result of checking `product` (of `mesh`) at the data version of `state`. A stored
    /// one is returned at once; otherwise a check is started (unless the same one is running)
    /// and awaited for at most `wait` (None: not at all).
    pub(crate) async fn result(
        self: &Arc<Self>,
        mesh: &Arc<Mesh>,
        product: &Product,
        state: &DataState,
        wait: Option<Duration>,
    ) -> Option<Arc<ProductCheck>> {
        if let Some(c) = self.stored(product, state) {
            return Some(c);
        }
        let key: CheckKey = (
            product.qualified_name(),
            state.version.clone(),
            rules_fingerprint(&product.manifest),
        );
        let mut rx = {
            let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
            // A check whose task died (its sender is gone without a result) is started again.
            let alive = running
                .get(&key)
                .is_some_and(|rx| rx.has_changed().is_ok() || rx.borrow().is_some());
            if alive {
                running.get(&key).cloned()?
            } else {
                let (tx, rx) = watch::channel(None);
                running.insert(key.clone(), rx.clone());
                self.spawn(Arc::clone(mesh), product, state.clone(), key, tx);
                rx
            }
        };
        let wait = wait?;
        let waited = tokio::time::timeout(wait, async {
            rx.wait_for(Option::is_some)
                .await
                .ok()
                .and_then(|r| r.clone())
        })
        .await;
        match waited {
            Ok(Some(r)) => Some(r),
            _ => self.stored(product, state),
        }
    }

    fn spawn(
        self: &Arc<Self>,
        mesh: Arc<Mesh>,
        product: &Product,
        state: DataState,
        key: CheckKey,
        tx: watch::Sender<Option<Arc<ProductCheck>>>,
    ) {
        let store = Arc::clone(self);
        let (domain, name) = (
            product.manifest.domain.clone(),
            product.manifest.name.clone(),
        );
        tokio::spawn(async move {
            let check = async {
                let permit = Arc::clone(&store.permits).acquire_owned().await.ok()?;
                let d = mesh.domain(&domain)?;
                let p = d.product(&name)?;
                let check = run_check(&store.runtime, &store.config, d, p, Some(state)).await;
                drop(permit);
                Some(Arc::new(check))
            }
            .await;
            if let Some(check) = &check {
                let failing: Vec<&str> = check
                    .rules
                    .iter()
                    .filter(|r| r.status != crate::quality::RuleStatus::Pass)
                    .map(|r| r.rule.as_str())
                    .collect();
                // Failures are news; passing checks are routine.
                if failing.is_empty() {
                    tracing::debug!(product = %check.product, data_version = %check.data_version, duration_ms = check.duration_ms, "quality check passed");
                } else {
                    tracing::info!(product = %check.product, data_version = %check.data_version, not_passing = ?failing, duration_ms = check.duration_ms, "quality check found failing rules");
                }
                store.keep(Arc::clone(check));
            }
            store
                .running
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&key);
            let _ = tx.send(check);
        });
    }
}

/// Observes every product every `[quality] check_interval` and starts a check of each product
/// with rules whose data version has no result yet. Ends when the engine (its store) is gone.
pub(crate) async fn run_monitor(
    current_mesh: impl Fn() -> Option<Arc<Mesh>>,
    stores: Arc<RuntimeEnv>,
    store: Weak<QualityStore>,
) {
    loop {
        let Some(s) = store.upgrade() else { return };
        let Some(mesh) = current_mesh() else { return };
        let interval = s.interval;
        for d in &mesh.domains {
            for p in &d.products {
                let state = observe_bounded(&stores, d, p, None).await;
                s.observations.record(&p.qualified_name(), state.clone());
                if let (Ok(state), false) = (state, p.manifest.quality.is_empty()) {
                    s.result(&mesh, p, &state, None).await;
                }
            }
        }
        drop(s);
        tokio::time::sleep(interval).await;
    }
}
