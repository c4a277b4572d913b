//! The result cache: answers a repeated query from memory (dashboards refreshing the same
//! aggregation), never with another principal's rows and never with stale data.
//!
//! An entry is keyed by
//! - the query's logical plan, as planned for the caller (every literal and bound parameter in
//!   it; table sources are left out of the key so that it holds no provider),
//! - for every product the plan reads, its identity *as this principal reads it*: the compiled
//!   row filter and column expressions of the policies that apply (with the principal's
//!   attributes substituted), the Delta version read, and a SHA-256 fingerprint of the
//!   product's Parquet listing (every file's path, size, modification time and e-tag, listed
//!   again for every lookup),
//! - the catalog generation (a reload that changes policies, contracts or locations starts
//!   afresh) and the session's DataFusion settings (a digest of the engine's, time zone and the
//!   rest, and the session's default schema).
//!
//! Principals whose effective rules on the products read are the same share entries; others
//! never do, because their compiled policies differ. Data changes are seen at once: a new,
//! replaced or removed Parquet file changes the listing fingerprint, a Delta commit the version
//! (read with the same `refresh_interval` as an uncached query).
//!
//! Only plain queries over products are cached: not EXPLAIN, DESCRIBE or SHOW, nothing that
//! reads a `meshql.*` system table or `information_schema`, nothing whose plan or policies call
//! a function that is not immutable (`now()`, `random()`, `current_date`), no product whose
//! manifest says `result_cache = false`, and no product refused or wrapped for freshness. A
//! result is kept only when its stream ended without error and its batches fit in
//! `result_cache_max_entry`; the whole cache is bounded by `result_cache_size` (least recently
//! and least frequently used entries go first; 0 turns the cache off). Hits, misses and bytes
//! are metrics, and every audit record of a cacheable query says `cache: hit` or `miss`.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::catalog::TableProvider;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::datasource::listing::ListingTable;
use datafusion::datasource::source_as_provider;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::logical_expr::{Expr, LogicalPlan, TableSource, Volatility};
use futures::{Stream, StreamExt, TryStreamExt};
use object_store::ObjectStoreExt;

use crate::error::Result;
use crate::product::ProductTable;

use crate::telemetry::{
    RESULT_CACHE_BYTES as BYTES, RESULT_CACHE_HITS as HITS, RESULT_CACHE_MISSES as MISSES,
};

/// What identifies one query's answer (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct CacheKey {
    plan: LogicalPlan,
    /// Catalog generation, settings and the identity of every product read, in plan order.
    context: String,
}

/// A stored answer: the client-facing batches of one query.
#[derive(Debug)]
pub(crate) struct CachedResult {
    pub(crate) batches: Vec<RecordBatch>,
    bytes: u64,
}

/// The cache itself; one per engine.
pub(crate) struct ResultCache {
    entries: moka::sync::Cache<CacheKey, Arc<CachedResult>>,
    max_entry: u64,
}

impl std::fmt::Debug for ResultCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResultCache")
            .field("entries", &self.entries.entry_count())
            .field("bytes", &self.entries.weighted_size())
            .finish()
    }
}

impl ResultCache {
    /// A cache of at most `size` bytes keeping results of at most `max_entry` bytes; None when
    /// `size` is 0 (no cache).
    pub(crate) fn new(size: u64, max_entry: u64) -> Option<Self> {
        if size == 0 {
            return None;
        }
        let entries = moka::sync::Cache::builder()
            .max_capacity(size)
            .weigher(|_key: &CacheKey, value: &Arc<CachedResult>| {
                u32::try_from(value.bytes).unwrap_or(u32::MAX)
            })
            .build();
        Some(Self {
            entries,
            max_entry: max_entry.min(size).min(u64::from(u32::MAX)),
        })
    }

    /// The stored answer for `key`, counting the hit or the miss.
    pub(crate) fn get(&self, key: &CacheKey) -> Option<Arc<CachedResult>> {
        let found = crate::session::on_big_stack(|| self.entries.get(key));
        metrics::counter!(if found.is_some() { HITS } else { MISSES }).increment(1);
        found
    }

    fn insert(&self, key: CacheKey, batches: Vec<RecordBatch>, bytes: u64) {
        crate::session::on_big_stack(|| {
            self.entries
                .insert(key, Arc::new(CachedResult { batches, bytes }));
            self.entries.run_pending_tasks();
        });
        metrics::gauge!(BYTES).set(self.entries.weighted_size() as f64);
    }

    /// Wraps a query's output stream so that, when it ends without error and its batches fit
    /// in `result_cache_max_entry`, they are stored under `key`.
    pub(crate) fn fill<S>(self: &Arc<Self>, key: CacheKey, stream: S) -> CacheFill<S> {
        CacheFill {
            inner: stream,
            cache: Arc::clone(self),
            key: Some(key),
            batches: Vec::new(),
            bytes: 0,
        }
    }

    /// The key of `plan` for this principal and session, or None when the plan must not be
    /// cached. Lists the location of every Parquet product read.
    pub(crate) async fn key(
        plan: &LogicalPlan,
        generation: u64,
        settings_digest: &str,
        default_schema: &str,
        runtime: &RuntimeEnv,
    ) -> Option<CacheKey> {
        let (products, cacheable) = crate::session::on_big_stack(|| products_read(plan));
        if !cacheable || products.is_empty() {
            return None;
        }
        let mut context = format!(
            "generation={generation}\nsettings={settings_digest}\ndefault_schema={default_schema}\n"
        );
        // Each identity lists its product's location: all of them at once, kept in plan order.
        let identities = products.iter().map(|product| async move {
            let any: &dyn std::any::Any = product.as_ref();
            any.downcast_ref::<ProductTable>()?
                .cache_identity(runtime)
                .await
        });
        for identity in futures::future::join_all(identities).await {
            context.push_str(&identity?);
            context.push('\n');
        }
        let plan = crate::session::on_big_stack(|| without_sources(plan))?;
        Some(CacheKey { plan, context })
    }
}

/// A SHA-256 digest of every DataFusion setting (name and value), for [`ResultCache::key`].
pub(crate) fn settings_digest(options: &ConfigOptions) -> Arc<str> {
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    for e in options.entries() {
        hasher.update(format!("{}={:?}\n", e.key, e.value).as_bytes());
    }
    Arc::from(crate::audit::hex(&hasher.finalize()))
}

/// The products `plan` reads (in plan order, subqueries included), and whether the plan may be
/// cached: every table it reads is a product and every function it calls is immutable.
fn products_read(plan: &LogicalPlan) -> (Vec<Arc<dyn TableProvider>>, bool) {
    let mut products = Vec::new();
    let mut cacheable = true;
    let walked = plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node {
            match source_as_provider(&scan.source) {
                Ok(p) if (p.as_ref() as &dyn std::any::Any).is::<ProductTable>() => {
                    products.push(p)
                }
                _ => cacheable = false,
            }
        }
        if !matches!(
            node,
            LogicalPlan::Projection(_)
                | LogicalPlan::Filter(_)
                | LogicalPlan::Aggregate(_)
                | LogicalPlan::Sort(_)
                | LogicalPlan::Limit(_)
                | LogicalPlan::Join(_)
                | LogicalPlan::Union(_)
                | LogicalPlan::Distinct(_)
                | LogicalPlan::SubqueryAlias(_)
                | LogicalPlan::Window(_)
                | LogicalPlan::TableScan(_)
                | LogicalPlan::Subquery(_)
                | LogicalPlan::EmptyRelation(_)
                | LogicalPlan::Values(_)
                | LogicalPlan::Repartition(_)
                | LogicalPlan::Unnest(_)
        ) {
            cacheable = false;
        }
        node.apply_expressions(|e| {
            if not_immutable(e) {
                cacheable = false;
            }
            Ok(TreeNodeRecursion::Continue)
        })?;
        Ok(if cacheable {
            TreeNodeRecursion::Continue
        } else {
            TreeNodeRecursion::Stop
        })
    });
    (products, cacheable && walked.is_ok())
}

/// True when `expr` calls a function whose result may change between two runs.
pub(crate) fn not_immutable(expr: &Expr) -> bool {
    expr.exists(|e| {
        Ok(matches!(e, Expr::ScalarFunction(f)
            if f.func.signature().volatility != Volatility::Immutable))
    })
    .unwrap_or(true)
}

/// `plan` with every table source replaced by its schema alone, so that a key holds no
/// provider (nor the Delta snapshot or listing behind it).
fn without_sources(plan: &LogicalPlan) -> Option<LogicalPlan> {
    plan.clone()
        .transform_up_with_subqueries(|node| match node {
            LogicalPlan::TableScan(mut scan) => {
                scan.source = Arc::new(KeySource(scan.source.schema()));
                Ok(Transformed::yes(LogicalPlan::TableScan(scan)))
            }
            other => Ok(Transformed::no(other)),
        })
        .ok()
        .map(|t| t.data)
}

/// A table source that is only a schema (for keys).
#[derive(Debug)]
struct KeySource(SchemaRef);

impl TableSource for KeySource {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.0)
    }
}

/// SHA-256 of a Parquet product's listing: path, size, modification time and e-tag of every
/// object under its location (or of the one file). None when the store cannot be listed.
pub(crate) async fn listing_fingerprint(
    runtime: &RuntimeEnv,
    table: &ListingTable,
) -> Option<String> {
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    for url in table.table_paths() {
        let store = runtime.object_store(url.object_store()).ok()?;
        let mut objects = if url.is_collection() {
            store
                .list(Some(url.prefix()))
                .try_collect::<Vec<_>>()
                .await
                .ok()?
        } else {
            vec![store.head(url.prefix()).await.ok()?]
        };
        objects.sort_by(|a, b| a.location.cmp(&b.location));
        hasher.update(url.as_str().as_bytes());
        for o in objects {
            hasher.update(
                format!(
                    "\n{}\t{}\t{}\t{:?}\t{:?}",
                    o.location,
                    o.size,
                    o.last_modified.timestamp_nanos_opt().unwrap_or_default(),
                    o.e_tag,
                    o.version
                )
                .as_bytes(),
            );
        }
    }
    Some(crate::audit::hex(&hasher.finalize()))
}

/// A query's output stream that stores its batches in the cache when it ends well.
pub(crate) struct CacheFill<S> {
    inner: S,
    cache: Arc<ResultCache>,
    /// None once the result is stored or has proved not storable.
    key: Option<CacheKey>,
    batches: Vec<RecordBatch>,
    bytes: u64,
}

impl<S> Stream for CacheFill<S>
where
    S: Stream<Item = Result<RecordBatch>> + Unpin,
{
    type Item = Result<RecordBatch>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let polled = this.inner.poll_next_unpin(cx);
        match &polled {
            Poll::Ready(Some(Ok(batch))) if this.key.is_some() => {
                this.bytes += batch.get_array_memory_size() as u64;
                if this.bytes > this.cache.max_entry {
                    this.key = None;
                    this.batches = Vec::new();
                } else {
                    this.batches.push(batch.clone());
                }
            }
            Poll::Ready(Some(Err(_))) => {
                this.key = None;
                this.batches = Vec::new();
            }
            Poll::Ready(None) => {
                if let Some(key) = this.key.take() {
                    let batches = std::mem::take(&mut this.batches);
                    this.cache.insert(key, batches, this.bytes);
                }
            }
            _ => {}
        }
        polled
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::{col, lit};

    #[test]
    fn only_immutable_calls_qualify() {
        let now = datafusion::functions::datetime::expr_fn::now();
        let random = datafusion::functions::math::expr_fn::random();
        let abs = datafusion::functions::math::expr_fn::abs(col("a"));
        assert!(not_immutable(&now));
        assert!(not_immutable(&col("a").gt(random)));
        assert!(!not_immutable(&abs.gt(lit(1))));
        assert!(!not_immutable(&col("a").eq(lit("x"))));
    }
}
