//! A product's data as the platform sees it without reading rows, and what its freshness SLA
//! says about it.
//!
//! [`observe`] reads only storage metadata: for a Delta table its log (the current version,
//! its file count, when that version was committed); for Parquet a listing (paths, sizes and
//! modification times). From it comes the product's **data version**, a cheap fingerprint that
//! changes whenever the data does (`delta:<version>`, or `parquet:<hash of the listing>`):
//! quality results are kept per data version, and the background monitor checks a product
//! again when its data version changes.
//!
//! At query time, [`query_sla`] judges the age of the data against the contract's `[sla]
//! freshness`: a breach is recorded in the query's audit record (`on_breach = "warn"`, the
//! default), or refuses the read (`on_breach = "refuse"`, unless the principal holds
//! `catalog.stale_reader_group`). The refusal happens when the product is scanned
//! ([`RefusedTable`]), so listing columns (`information_schema`, DESCRIBE) still works.
//! Time-travel reads never get here: they ask for old data on purpose.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::error::Result as DfResult;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType};
use datafusion::physical_plan::ExecutionPlan;
use futures::StreamExt;
use meshql_catalog::{Domain, Format, Mesh, OnBreach, Principal, Product, ProductManifest};
use object_store::ObjectStoreExt;
use sha2::Digest;

use crate::delta_cache::DeltaCache;
use crate::error::EngineError;
use crate::product::{open_delta, product_url};

/// How long one product's observation may take before the product is reported unavailable.
pub(crate) const OBSERVE_TIMEOUT: Duration = Duration::from_secs(10);

/// What a product's storage says about its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DataState {
    /// `delta:<version>` or `parquet:<16 hex digits>` (a hash of the files' paths, sizes and
    /// modification times).
    pub(crate) version: String,
    /// The Delta table version, for Delta products.
    pub(crate) delta_version: Option<i64>,
    /// Number of data files.
    pub(crate) files: Option<i64>,
    /// When the data last changed (the current Delta version's commit, the newest Parquet
    /// file), in microseconds since the epoch.
    pub(crate) last_modified_us: Option<i64>,
}

impl DataState {
    /// How old the data is at `now_us` (None when the storage gives no time).
    pub(crate) fn age(&self, now_us: i64) -> Option<Duration> {
        let last = self.last_modified_us?;
        Some(Duration::from_micros(
            now_us.saturating_sub(last).max(0) as u64
        ))
    }
}

/// Reads a product's data state from its storage. `cache`: read Delta tables through the
/// engine's snapshot cache (what queries read) instead of opening them afresh.
pub(crate) async fn observe(
    runtime: &Arc<RuntimeEnv>,
    domain: &Domain,
    product: &Product,
    cache: Option<&DeltaCache>,
) -> Result<DataState, String> {
    let url = product_url(domain, product).map_err(|e| e.to_string())?;
    match product.manifest.format {
        Format::Delta => {
            let table = match cache {
                Some(cache) => cache.latest(runtime, &url).await.map_err(|e| e.message)?,
                None => open_delta(runtime, &url, None)
                    .await
                    .map_err(|e| e.message)?,
            };
            let version = table.version();
            let files = table.get_file_uris().map(|f| f.count() as i64).ok();
            // The commit file's time, from the listing the snapshot already holds; the commit
            // info otherwise (e.g. when the latest version is a checkpoint).
            let mut last_ms =
                version.and_then(|v| table.snapshot().ok().and_then(|s| s.version_timestamp(v)));
            if last_ms.is_none() {
                if let Some(Ok(commit)) = table.history(Some(1)).next().await {
                    last_ms = commit.timestamp;
                }
            }
            let delta_version = version.and_then(|v| i64::try_from(v).ok());
            Ok(DataState {
                version: format!("delta:{}", delta_version.unwrap_or(-1)),
                delta_version,
                files,
                last_modified_us: last_ms.map(|ms| ms.saturating_mul(1000)),
            })
        }
        Format::Parquet => {
            let store = ObjectStoreUrl::parse(&url[..url::Position::BeforePath])
                .map_err(|e| e.to_string())
                .and_then(|u| runtime.object_store(&u).map_err(|e| e.to_string()))?;
            let path =
                object_store::path::Path::from_url_path(url.path()).map_err(|e| e.to_string())?;
            // One file, or (NotFound) a directory of files; any other answer (a refusal, a
            // timeout) is the storage's problem, not "no files".
            let mut files: Vec<object_store::ObjectMeta> = Vec::new();
            let single = if url.path().ends_with('/') {
                None
            } else {
                match store.head(&path).await {
                    Ok(meta) => Some(meta),
                    Err(object_store::Error::NotFound { .. }) => None,
                    Err(e) => return Err(e.to_string()),
                }
            };
            match single {
                Some(meta) => files.push(meta),
                None => {
                    let mut listing = store.list(Some(&path));
                    while let Some(item) = listing.next().await {
                        let meta = item.map_err(|e| e.to_string())?;
                        if meta.location.as_ref().ends_with(".parquet") {
                            files.push(meta);
                        }
                    }
                }
            }
            if files.is_empty() {
                return Err("no Parquet files at the product's location".to_string());
            }
            files.sort_by(|a, b| a.location.cmp(&b.location));
            let mut hash = sha2::Sha256::new();
            for f in &files {
                hash.update(format!(
                    "{}\t{}\t{}\n",
                    f.location,
                    f.size,
                    f.last_modified.timestamp_micros()
                ));
            }
            let digest: String = hash
                .finalize()
                .iter()
                .take(8)
                .map(|b| format!("{b:02x}"))
                .collect();
            Ok(DataState {
                version: format!("parquet:{digest}"),
                delta_version: None,
                files: Some(files.len() as i64),
                last_modified_us: files
                    .iter()
                    .map(|f| f.last_modified.timestamp_micros())
                    .max(),
            })
        }
    }
}

/// [`observe`] bounded by [`OBSERVE_TIMEOUT`].
pub(crate) async fn observe_bounded(
    runtime: &Arc<RuntimeEnv>,
    domain: &Domain,
    product: &Product,
    cache: Option<&DeltaCache>,
) -> Result<DataState, String> {
    tokio::time::timeout(OBSERVE_TIMEOUT, observe(runtime, domain, product, cache))
        .await
        .unwrap_or_else(|_| Err("timed out reading the product's storage".to_string()))
}

/// One observation of a product.
#[derive(Debug, Clone)]
pub(crate) struct Observation {
    pub(crate) state: Result<DataState, String>,
    /// When it was made (for reuse within the refresh interval).
    pub(crate) at: Instant,
}

/// The latest observation of every product: reused by query-time SLA checks within
/// `catalog.refresh_interval`, and the last known state of each product for metadata calls
/// (which never touch storage).
#[derive(Debug)]
pub(crate) struct Observations {
    refresh: Duration,
    latest: Mutex<HashMap<String, Observation>>,
}

impl Observations {
    pub(crate) fn new(refresh: Duration) -> Self {
        Self {
            refresh,
            latest: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn record(&self, product: &str, state: Result<DataState, String>) {
        self.latest
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                product.to_string(),
                Observation {
                    state,
                    at: Instant::now(),
                },
            );
    }

    /// The last observation of `product`, however old.
    pub(crate) fn last(&self, product: &str) -> Option<Observation> {
        self.latest
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(product)
            .cloned()
    }

    /// The product's state, observed at most `catalog.refresh_interval` ago.
    async fn recent(
        &self,
        runtime: &Arc<RuntimeEnv>,
        domain: &Domain,
        product: &Product,
        cache: &DeltaCache,
    ) -> Result<DataState, String> {
        let name = product.qualified_name();
        if let Some(o) = self.last(&name) {
            if o.at.elapsed() < self.refresh {
                return o.state;
            }
        }
        let state = observe_bounded(runtime, domain, product, Some(cache)).await;
        self.record(&name, state.clone());
        state
    }
}

/// A breach of a product's freshness SLA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SlaBreach {
    /// The SLA as written (`6h`).
    pub(crate) sla: String,
    /// The data's age, for people (`7h 12m`).
    pub(crate) age: String,
}

impl std::fmt::Display for SlaBreach {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "data is {} old, past its freshness SLA of {}",
            self.age, self.sla
        )
    }
}

/// The breach of `manifest`'s freshness SLA by data in `state` at `now_us`, if any.
pub(crate) fn sla_breach(
    manifest: &ProductManifest,
    state: &DataState,
    now_us: i64,
) -> Option<SlaBreach> {
    let (sla, _) = manifest.sla.freshness.as_ref()?;
    let age = state.age(now_us)?;
    manifest.sla.is_breached(age.as_secs()).then(|| SlaBreach {
        sla: sla.clone(),
        age: format_age(age),
    })
}

/// A duration for people, in the two largest units the SLA notation uses: `3d 2h`, `7h 12m`,
/// `5m 3s`, `42s` (a zero second unit is left out: `1d`, `2h`).
pub(crate) fn format_age(d: Duration) -> String {
    let secs = d.as_secs();
    let (days, hours, minutes, seconds) = (
        secs / 86_400,
        secs % 86_400 / 3600,
        secs % 3600 / 60,
        secs % 60,
    );
    let two = |a: u64, ua: &str, b: u64, ub: &str| {
        if b == 0 {
            format!("{a}{ua}")
        } else {
            format!("{a}{ua} {b}{ub}")
        }
    };
    if days > 0 {
        two(days, "d", hours, "h")
    } else if hours > 0 {
        two(hours, "h", minutes, "m")
    } else if minutes > 0 {
        two(minutes, "m", seconds, "s")
    } else {
        format!("{seconds}s")
    }
}

/// What a query may do with a product, given its freshness SLA.
#[derive(Debug)]
pub(crate) enum SlaVerdict {
    /// No SLA, fresh data, or an age the storage cannot tell.
    Fresh,
    /// Stale, and the read goes ahead (`warn`, or a stale reader under `refuse`): the breach
    /// goes into the audit record.
    Breached(SlaBreach),
    /// Stale under `on_breach = "refuse"` for a principal that is not a stale reader.
    Refused(SlaBreach),
}

impl SlaVerdict {
    /// The breach, for the audit record.
    pub(crate) fn breach(&self) -> Option<&SlaBreach> {
        match self {
            SlaVerdict::Fresh => None,
            SlaVerdict::Breached(b) | SlaVerdict::Refused(b) => Some(b),
        }
    }
}

/// Judges a (current-version) read of `product` by `principal` against its freshness SLA.
/// The caller has already checked that the principal may see the product.
pub(crate) async fn query_sla(
    observations: &Observations,
    runtime: &Arc<RuntimeEnv>,
    mesh: &Mesh,
    domain: &Domain,
    product: &Product,
    principal: &Principal,
    cache: &DeltaCache,
) -> SlaVerdict {
    if product.manifest.sla.freshness.is_none() {
        return SlaVerdict::Fresh;
    }
    // A storage failure is the scan's to report; it is no reason to refuse.
    let Ok(state) = observations.recent(runtime, domain, product, cache).await else {
        return SlaVerdict::Fresh;
    };
    let now = chrono::Utc::now().timestamp_micros();
    match sla_breach(&product.manifest, &state, now) {
        None => SlaVerdict::Fresh,
        Some(b)
            if product.manifest.sla.on_breach == OnBreach::Refuse
                && !mesh.config.may_read_stale(principal) =>
        {
            SlaVerdict::Refused(b)
        }
        Some(b) => SlaVerdict::Breached(b),
    }
}

/// A product a query may not read because its data is stale: its schema is known (so
/// `information_schema` and DESCRIBE work), scanning it fails with
/// [`EngineError::ProductStale`].
#[derive(Debug)]
pub(crate) struct RefusedTable {
    inner: Arc<dyn TableProvider>,
    product: String,
    breach: SlaBreach,
    stale_reader_group: String,
}

impl RefusedTable {
    pub(crate) fn new(
        inner: Arc<dyn TableProvider>,
        product: String,
        breach: SlaBreach,
        stale_reader_group: String,
    ) -> Self {
        Self {
            inner,
            product,
            breach,
            stale_reader_group,
        }
    }

    fn error(&self) -> EngineError {
        EngineError::ProductStale {
            product: self.product.clone(),
            sla: self.breach.sla.clone(),
            age: self.breach.age.clone(),
            stale_reader_group: self.stale_reader_group.clone(),
        }
    }
}

#[async_trait]
impl TableProvider for RefusedTable {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }

    fn table_type(&self) -> TableType {
        self.inner.table_type()
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        self.inner.supports_filters_pushdown(filters)
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        _projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        Err(self.error().into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_like_durations() {
        let age = |secs: u64| format_age(Duration::from_secs(secs));
        assert_eq!(age(42), "42s");
        assert_eq!(age(5 * 60 + 3), "5m 3s");
        assert_eq!(age(7 * 3600 + 12 * 60 + 5), "7h 12m");
        assert_eq!(age(7200 + 59), "2h");
        assert_eq!(age(3 * 86_400 + 2 * 3600 + 5 * 60 + 59), "3d 2h");
        assert_eq!(age(912 * 86_400), "912d");
    }

    #[test]
    fn age_never_goes_negative() {
        let s = DataState {
            version: "delta:0".into(),
            delta_version: Some(0),
            files: Some(1),
            last_modified_us: Some(2_000_000),
        };
        assert_eq!(s.age(1_000_000), Some(Duration::ZERO));
        assert_eq!(s.age(5_000_000), Some(Duration::from_secs(3)));
    }
}
