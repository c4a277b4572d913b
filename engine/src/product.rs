//! Product resolution: from a manifest to a DataFusion table that exposes exactly the
//! contract's columns.
//!
//! Parquet products are read through DataFusion's listing table (a single file or a directory
//! of files); Delta products through deltalake's table provider. Either raw table is wrapped in
//! a [`ProductTable`]: a projection onto the contract columns (with casts where the physical
//! type is a compatible variant), which the planner inlines at the table reference.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::TableReference;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::datasource::provider_as_source;
use datafusion::error::Result as DfResult;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::execution::{SessionState, SessionStateBuilder};
use datafusion::logical_expr::{
    cast, col, Expr, LogicalPlan, LogicalPlanBuilder, TableProviderFilterPushDown, TableType,
};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionConfig;
use meshql_catalog::{Domain, Format, Product};
use object_store::ObjectStoreExt;
use url::Url;

use crate::contract::bind_columns;
use crate::delta_cache::DeltaCache;
use crate::delta_stats::LogStatistics;
use crate::error::{BoxError, EngineError, Result};
use crate::limit_barrier::protect_limits;
use crate::policy::SecuredView;
use crate::policy_exec::PolicyExec;
use crate::scan::{attach_product, ProductScanExec};
use crate::time_travel::AsOf;

/// A failure to read a product's storage: a message for the caller (no bucket URL in it) and
/// the cause.
#[derive(Debug)]
pub(crate) struct ReadFailure {
    pub(crate) message: String,
    pub(crate) source: BoxError,
}

impl ReadFailure {
    pub(crate) fn new(message: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Self {
            message: message.into(),
            source: source.into(),
        }
    }

    /// The failure as "product X is unavailable".
    pub(crate) fn of(self, product: &str) -> EngineError {
        EngineError::ProductUnavailable {
            product: product.to_string(),
            message: self.message,
            source: self.source,
        }
    }
}

impl std::fmt::Display for ReadFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Where a product's data lives.
pub(crate) fn product_url(domain: &Domain, product: &Product) -> Result<Url> {
    domain
        .config
        .bucket
        .join(&product.manifest.location)
        .map_err(|e| EngineError::ProductUnavailable {
            product: product.qualified_name(),
            message: format!("invalid location `{}`", product.manifest.location),
            source: Box::new(e),
        })
}

/// A product resolved to its contract plan: the raw scan projected (and cast) onto the contract
/// columns.
#[derive(Debug, Clone)]
pub(crate) struct ResolvedProduct {
    pub(crate) plan: LogicalPlan,
    /// The Delta table version read, for Delta products.
    pub(crate) delta_version: Option<i64>,
    /// Column statistics from the Delta log (None for Parquet: its scan has its own).
    pub(crate) log_statistics: Option<LogStatistics>,
}

/// Resolves a product into its contract plan.
pub(crate) async fn resolve_product(
    runtime: &Arc<RuntimeEnv>,
    config: &SessionConfig,
    domain: &Domain,
    product: &Product,
    as_of: Option<&AsOf>,
    cache: Option<&DeltaCache>,
) -> Result<ResolvedProduct> {
    let name = product.qualified_name();
    let url = product_url(domain, product)?;
    let unavailable = |f: ReadFailure| f.of(&name);
    if as_of.is_some() && product.manifest.format != Format::Delta {
        return Err(EngineError::plan(format!(
            "time travel (VERSION AS OF / TIMESTAMP AS OF) needs a Delta product; `{name}` is {}",
            product.manifest.format.as_str()
        )));
    }
    let (raw, delta_version, log_statistics) = match product.manifest.format {
        Format::Parquet => (
            resolve_parquet(runtime, config, &url)
                .await
                .map_err(unavailable)?,
            None,
            None,
        ),
        Format::Delta => {
            let (p, v, s) = resolve_delta(runtime, config, &url, as_of, cache)
                .await
                .map_err(unavailable)?;
            (p, v, Some(s))
        }
    };
    let bindings = bind_columns(&product.manifest, raw.schema().as_ref()).map_err(|errors| {
        // Report the first mismatch as the error, and mention how many more there are.
        let more = errors.len() - 1;
        let (column, mut message) = errors.into_iter().next().unwrap_or_default();
        if more > 0 {
            message.push_str(&format!(
                " (and {more} more contract mismatch(es); run `meshql catalog lint --data`)"
            ));
        }
        EngineError::ContractViolation {
            product: name.clone(),
            column,
            message,
        }
    })?;
    let exprs: Vec<Expr> = bindings
        .iter()
        .map(|b| {
            let c = col(datafusion::common::Column::new_unqualified(&b.name));
            if b.exposed == b.physical {
                c
            } else {
                cast(c, b.exposed.clone()).alias(&b.name)
            }
        })
        .collect();
    let table_ref = TableReference::full(
        "mesh",
        domain.name().to_string(),
        product.manifest.name.clone(),
    );
    let plan = LogicalPlanBuilder::scan(table_ref, provider_as_source(raw), None)
        .and_then(|b| b.project(exprs))
        .and_then(|b| b.build())
        .map_err(|e| EngineError::Bug {
            context: format!("building the contract projection of `{name}`"),
            source: Box::new(e),
        })?;
    Ok(ResolvedProduct {
        plan,
        delta_version,
        log_statistics,
    })
}

/// Checks a product's data against its contract without planning a query; used by
/// `meshql catalog lint --data`. Returns every mismatch.
pub(crate) async fn check_product(
    runtime: &Arc<RuntimeEnv>,
    config: &SessionConfig,
    domain: &Domain,
    product: &Product,
) -> std::result::Result<(), Vec<String>> {
    let url = product_url(domain, product).map_err(|e| vec![e.to_string()])?;
    let raw = match product.manifest.format {
        Format::Parquet => resolve_parquet(runtime, config, &url).await,
        Format::Delta => resolve_delta(runtime, config, &url, None, None)
            .await
            .map(|(p, _, _)| p),
    }
    .map_err(|m| vec![format!("data unavailable: {m}")])?;
    bind_columns(&product.manifest, raw.schema().as_ref())
        .map(|_| ())
        .map_err(|errs| {
            errs.into_iter()
                .map(|(c, m)| format!("column `{c}` {m}"))
                .collect()
        })
}

/// A bare session with the engine's settings and runtime, for building a product's scan (file
/// format options, Parquet settings, the domain's object stores).
fn scan_state(runtime: &Arc<RuntimeEnv>, config: &SessionConfig) -> SessionState {
    SessionStateBuilder::new()
        .with_config(config.clone())
        .with_runtime_env(Arc::clone(runtime))
        .build()
}

async fn resolve_parquet(
    runtime: &Arc<RuntimeEnv>,
    config: &SessionConfig,
    url: &Url,
) -> std::result::Result<Arc<dyn TableProvider>, ReadFailure> {
    let state = scan_state(runtime, config);
    let store_url = ObjectStoreUrl::parse(&url[..url::Position::BeforePath])
        .map_err(|e| ReadFailure::new("invalid bucket URL", e))?;
    let store = runtime
        .object_store(&store_url)
        .map_err(|e| ReadFailure::new("no object store for the bucket", e))?;
    // A location is either one file or a directory (prefix) of files. Only NotFound means
    // "not a file": a refusal or a timeout is the storage's problem and is reported as such.
    let path = object_store::path::Path::from_url_path(url.path())
        .map_err(|e| ReadFailure::new("invalid location", e))?;
    let is_file = if url.path().ends_with('/') {
        false
    } else {
        match store.head(&path).await {
            Ok(_) => true,
            Err(object_store::Error::NotFound { .. }) => false,
            Err(e) => return Err(ReadFailure::new(e.to_string(), e)),
        }
    };
    let table_url = if is_file || url.path().ends_with('/') {
        url.to_string()
    } else {
        format!("{url}/")
    };
    // The table reference names the location in full (bucket included): it scopes the keys of
    // the engine's file statistics cache, which are paths within a store otherwise.
    let table_url = ListingTableUrl::parse(&table_url)
        .map_err(|e| ReadFailure::new("invalid location", e))?
        .with_table_ref(TableReference::bare(table_url.as_str()));
    let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
        .with_file_extension(if is_file { "" } else { ".parquet" });
    let schema = options
        .infer_schema(&state, &table_url)
        .await
        .map_err(|e| ReadFailure::new(describe(&e), e))?;
    if schema.fields().is_empty() {
        return Err(ReadFailure::new(
            "no Parquet files found at the product's location",
            "empty listing",
        ));
    }
    let config = ListingTableConfig::new(table_url)
        .with_listing_options(options)
        .with_schema(schema);
    // Each file's statistics (derived from its footer) are kept across queries, checked
    // against the file's size and modification time on every listing, like the footers.
    let table = ListingTable::try_new(config)
        .map_err(|e| ReadFailure::new("cannot read the Parquet files", e))?
        .with_cache(runtime.cache_manager.get_file_statistic_cache());
    Ok(Arc::new(table))
}

/// Opens a Delta table (at a version or time when asked), through the domain's own store for
/// remote buckets.
pub(crate) async fn open_delta(
    runtime: &Arc<RuntimeEnv>,
    url: &Url,
    as_of: Option<&AsOf>,
) -> std::result::Result<deltalake::DeltaTable, ReadFailure> {
    let mut table_url = url.clone();
    if table_url.path().ends_with('/') {
        let p = table_url.path().trim_end_matches('/').to_string();
        table_url.set_path(&p);
    }
    let table = async {
        let mut builder = deltalake::DeltaTableBuilder::from_url(table_url.clone())?;
        if table_url.scheme() != "file" {
            // Remote buckets: read through the domain's own store (its credentials, timeouts).
            let store_url = ObjectStoreUrl::parse(&table_url[..url::Position::BeforePath])
                .map_err(|e| deltalake::DeltaTableError::Generic(e.to_string()))?;
            let store = runtime
                .object_store(&store_url)
                .map_err(|e| deltalake::DeltaTableError::Generic(e.to_string()))?;
            builder = builder.with_storage_backend(store, table_url.clone());
        }
        builder = match as_of {
            None => builder,
            Some(AsOf::Version(v)) => builder.with_version(*v),
            Some(AsOf::Timestamp(ts)) => builder.with_datestring(ts)?,
        };
        builder.load().await
    }
    .await
    .map_err(|e| {
        let message = match as_of {
            None => format!("cannot open the Delta table: {e}"),
            Some(AsOf::Version(v)) => format!("cannot read version {v} of the Delta table: {e}"),
            Some(AsOf::Timestamp(ts)) => format!("cannot read the Delta table as of {ts}: {e}"),
        };
        ReadFailure::new(message, e)
    })?;
    Ok(table)
}

async fn resolve_delta(
    runtime: &Arc<RuntimeEnv>,
    config: &SessionConfig,
    url: &Url,
    as_of: Option<&AsOf>,
    cache: Option<&DeltaCache>,
) -> std::result::Result<(Arc<dyn TableProvider>, Option<i64>, LogStatistics), ReadFailure> {
    let table = match (as_of, cache) {
        (None, Some(cache)) => cache.latest(runtime, url).await?,
        _ => open_delta(runtime, url, as_of).await?,
    };
    let log_store = table.log_store();
    let root = log_store.root_url();
    let store_url = ObjectStoreUrl::parse(&root[..url::Position::BeforePath])
        .map_err(|e| ReadFailure::new("invalid Delta table root", e))?;
    if runtime.object_store(&store_url).is_err() {
        runtime.register_object_store(store_url.as_ref(), log_store.root_object_store(None));
    }
    let version = table.version().and_then(|v| i64::try_from(v).ok());
    // The scan follows the engine's Parquet settings, as a Parquet product's does: without a
    // session, deltalake evaluates every pushed filter while decoding (`pushdown_filters`),
    // which costs scan-and-filter queries (see `row_filters`); with it, filters prune by
    // statistics and run above the scan, and only runtime join filters filter while decoding.
    let provider = table
        .table_provider()
        .with_session(Arc::new(scan_state(runtime, config)))
        .await
        .map_err(|e| ReadFailure::new(format!("cannot read the Delta table: {e}"), e))?;
    let schema = provider.schema();
    let fold = || crate::delta_files::version_facts(&table, schema.as_ref());
    let facts = match (as_of, cache) {
        (None, Some(cache)) => cache.version_facts(url, version, fold),
        _ => fold(),
    };
    let provider: Arc<dyn TableProvider> = match facts.plain {
        Some(files) => Arc::new(crate::delta_files::PlainDeltaTable::new(schema, files)),
        None => provider,
    };
    Ok((provider, version, facts.statistics))
}

fn describe(e: &datafusion::error::DataFusionError) -> String {
    let s = e.to_string();
    s.strip_prefix("Object Store error: ")
        .map(str::to_string)
        .unwrap_or(s)
}

/// A product as a table for one principal: its contract plan, plus the compiled policies when
/// the principal's access is restricted.
///
/// Unrestricted reads are planned like any table (user filters pushed into the scan).
/// Restricted reads put the row filter first and the masks in the projection, plan that inner
/// query on its own, and hide it behind a [`PolicyExec`] barrier.
#[derive(Debug)]
pub(crate) struct ProductTable {
    product: String,
    plan: LogicalPlan,
    secured: Option<SecuredView>,
    schema: SchemaRef,
    reads: Option<Arc<ReadLog>>,
    /// The product's deprecation and its deprecated columns, recorded in the audit record of
    /// every query that reads them.
    deprecations: Deprecations,
    /// The Delta version read (None for Parquet), for the result cache's key.
    delta_version: Option<i64>,
    /// False when the owner opted the product out of the result cache.
    result_cache: bool,
    /// Column statistics from the Delta log, reported by the product's scan.
    log_statistics: Option<LogStatistics>,
}

/// What of a product is deprecated, as audit records name it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Deprecations {
    /// `product: reason (sunset ...)`.
    product: Option<String>,
    /// (column, `column c: reason (sunset ...)`).
    columns: Vec<(String, String)>,
}

impl Deprecations {
    pub(crate) fn of(manifest: &meshql_catalog::ProductManifest) -> Self {
        Self {
            product: manifest
                .deprecated
                .as_ref()
                .map(|d| format!("product: {d}")),
            columns: manifest
                .columns
                .iter()
                .filter_map(|c| {
                    let d = c.deprecated.as_ref()?;
                    Some((c.name.clone(), format!("column {}: {d}", c.name)))
                })
                .collect(),
        }
    }

    /// The deprecations a read of `columns` touches.
    fn read<'a>(&'a self, columns: &'a [String]) -> impl Iterator<Item = String> + 'a {
        self.product.iter().cloned().chain(
            self.columns
                .iter()
                .filter(|(c, _)| columns.contains(c))
                .map(|(_, d)| d.clone()),
        )
    }
}

impl ProductTable {
    /// Records reads of the deprecated product or columns in the audit record.
    pub(crate) fn with_deprecations(mut self, deprecations: Deprecations) -> Self {
        self.deprecations = deprecations;
        self
    }

    /// The Delta version read and whether results may be cached (the manifest's
    /// `result_cache`).
    pub(crate) fn with_cache_facts(
        mut self,
        delta_version: Option<i64>,
        result_cache: bool,
    ) -> Self {
        self.delta_version = delta_version;
        self.result_cache = result_cache;
        self
    }

    /// Column statistics from the Delta log for the planner (see `delta_stats`).
    pub(crate) fn with_log_statistics(mut self, statistics: Option<LogStatistics>) -> Self {
        self.log_statistics = statistics;
        self
    }

    /// What the result cache's key records of this product as the session's principal reads
    /// it: name, Delta version, compiled policies and the Parquet listing's fingerprint. None
    /// when results that read it must not be cached (opted out, a policy calls a function that
    /// is not immutable, or the listing cannot be read).
    pub(crate) async fn cache_identity(&self, runtime: &RuntimeEnv) -> Option<String> {
        if !self.result_cache {
            return None;
        }
        let mut identity = format!("{} delta_version={:?}", self.product, self.delta_version);
        if let Some(view) = &self.secured {
            if view
                .filter
                .iter()
                .chain(view.columns.iter())
                .any(crate::result_cache::not_immutable)
            {
                return None;
            }
            identity.push_str(&format!(
                " filter={:?} columns={:?}",
                view.filter, view.columns
            ));
        }
        let mut listings = Vec::new();
        self.plan
            .apply_with_subqueries(|node| {
                if let LogicalPlan::TableScan(scan) = node {
                    if let Ok(provider) = datafusion::datasource::source_as_provider(&scan.source) {
                        listings.push(provider);
                    }
                }
                Ok(TreeNodeRecursion::Continue)
            })
            .ok()?;
        for provider in listings {
            let any: &dyn std::any::Any = provider.as_ref();
            if let Some(listing) = any.downcast_ref::<ListingTable>() {
                let fingerprint =
                    crate::result_cache::listing_fingerprint(runtime, listing).await?;
                identity.push_str(&format!(" listing={fingerprint}"));
            }
        }
        Some(identity)
    }

    pub(crate) fn try_new(
        product: String,
        plan: LogicalPlan,
        secured: Option<SecuredView>,
        reads: Option<Arc<ReadLog>>,
    ) -> Result<Self> {
        let schema = match &secured {
            None => Arc::new(plan.schema().as_arrow().clone()),
            Some(view) => {
                let projected = LogicalPlanBuilder::from(plan.clone())
                    .project(view.columns.clone())
                    .and_then(|b| b.build())
                    .map_err(|e| EngineError::AccessDenied {
                        product: product.clone(),
                        reason: format!(
                            "a mask of this product is invalid ({e}); run `meshql catalog lint`"
                        ),
                    })?;
                Arc::new(projected.schema().as_arrow().clone())
            }
        };
        Ok(Self {
            product,
            plan,
            secured,
            schema,
            reads,
            deprecations: Deprecations::default(),
            delta_version: None,
            result_cache: true,
            log_statistics: None,
        })
    }
}

#[async_trait]
impl TableProvider for ProductTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        // User predicates never go below a policy. An unrestricted read applies them exactly
        // (a `Filter` in its own plan, see `scan`), so they are evaluated once, not again above.
        let support = if self.secured.is_some() {
            TableProviderFilterPushDown::Unsupported
        } else {
            TableProviderFilterPushDown::Exact
        };
        Ok(vec![support; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let mut plan = LogicalPlanBuilder::from(self.plan.clone());
        let all: Vec<usize> = (0..self.schema.fields().len()).collect();
        let projection = projection.unwrap_or(&all);
        if let Some(reads) = &self.reads {
            // A column the query only filters on is read too (exact filters are applied here,
            // so it is not in the projection).
            let filtered: std::collections::HashSet<String> = filters
                .iter()
                .flat_map(|f| f.column_refs())
                .map(|c| c.name.clone())
                .collect();
            let columns: Vec<String> = self
                .schema
                .fields()
                .iter()
                .enumerate()
                .filter(|(i, f)| projection.contains(i) || filtered.contains(f.name()))
                .map(|(_, f)| f.name().clone())
                .collect();
            reads.deprecated_read(&self.product, self.deprecations.read(&columns));
            reads.columns_read(&self.product, columns.into_iter());
        }
        match &self.secured {
            None => {
                if let Some(filter) = filters.iter().cloned().reduce(|a, b| a.and(b)) {
                    plan = plan.filter(filter)?;
                }
                let fields = self.plan.schema().columns();
                plan = plan.project(projection.iter().map(|i| Expr::Column(fields[*i].clone())))?;
                if let Some(limit) = limit {
                    plan = plan.limit(0, Some(limit))?;
                }
                // The caller's LIMIT must stay above this plan (see `limit_barrier`); a
                // policed plan is a leaf under `PolicyExec`, which takes no limit either.
                let logical = plan.build()?;
                let physical = state
                    .create_physical_plan(&logical)
                    .await
                    .map_err(|e| attach_product(&self.product, e))?;
                Ok(Arc::new(
                    ProductScanExec::new(self.product.clone(), protect_limits(physical)?)
                        .with_source(logical)
                        .with_column_statistics(self.log_statistics.clone()),
                ))
            }
            Some(view) => {
                if let Some(filter) = &view.filter {
                    plan = plan.filter(filter.clone())?;
                }
                plan = plan.project(projection.iter().map(|i| view.columns[*i].clone()))?;
                if let Some(limit) = limit {
                    plan = plan.limit(0, Some(limit))?;
                }
                let logical = plan.build()?;
                let inner = state
                    .create_physical_plan(&logical)
                    .await
                    .map_err(|e| attach_product(&self.product, e))?;
                let inner = Arc::new(
                    ProductScanExec::new(self.product.clone(), inner).with_source(logical),
                );
                // Output columns the policies pass through as they are (not masked).
                let clear = projection
                    .iter()
                    .enumerate()
                    .filter(|(_, i)| matches!(view.columns[**i], Expr::Column(_)))
                    .map(|(at, _)| at)
                    .collect();
                Ok(Arc::new(
                    PolicyExec::new(self.product.clone(), inner).with_clear_columns(clear),
                ))
            }
        }
    }
}

/// What a query read, product by product, for its audit record.
#[derive(Debug, Default)]
pub(crate) struct ReadLog {
    reads: std::sync::Mutex<Vec<ProductRead>>,
}

/// One product read by a query.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ProductRead {
    pub product: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delta_version: Option<i64>,
    pub columns: Vec<String>,
    pub policies: Vec<String>,
    /// Set when the product's freshness SLA was breached at the time of the read (and the
    /// read went ahead: `on_breach = "warn"`, or a stale reader), e.g. `data is 7h 12m old,
    /// past its freshness SLA of 6h`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sla_breach: Option<String>,
    /// The deprecated things the query read: `product: reason (sunset YYYY-MM-DD)` and
    /// `column c: reason (sunset ...)`, so the owning domain sees who still depends on them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub deprecated: Vec<String>,
}

impl ReadLog {
    pub(crate) fn resolved(
        &self,
        product: &str,
        delta_version: Option<i64>,
        policies: Vec<String>,
    ) {
        let mut reads = self.reads.lock().unwrap_or_else(|p| p.into_inner());
        match reads.iter_mut().find(|r| r.product == product) {
            Some(r) => {
                r.delta_version = delta_version;
                r.policies = policies;
            }
            None => reads.push(ProductRead {
                product: product.to_string(),
                delta_version,
                columns: Vec::new(),
                policies,
                sla_breach: None,
                deprecated: Vec::new(),
            }),
        }
    }

    /// Records that `product` was read past its freshness SLA.
    pub(crate) fn sla_breach(&self, product: &str, breach: String) {
        let mut reads = self.reads.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = reads.iter_mut().find(|r| r.product == product) {
            r.sla_breach = Some(breach);
        }
    }

    fn deprecated_read(&self, product: &str, deprecated: impl Iterator<Item = String>) {
        let mut reads = self.reads.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = reads.iter_mut().find(|r| r.product == product) {
            for d in deprecated {
                if !r.deprecated.contains(&d) {
                    r.deprecated.push(d);
                }
            }
        }
    }

    fn columns_read(&self, product: &str, columns: impl Iterator<Item = String>) {
        let mut reads = self.reads.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = reads.iter_mut().find(|r| r.product == product) {
            for c in columns {
                if !r.columns.contains(&c) {
                    r.columns.push(c);
                }
            }
        }
    }

    pub(crate) fn snapshot(&self) -> Vec<ProductRead> {
        self.reads.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::stream::BoxStream;
    use object_store::memory::InMemory;
    use object_store::path::Path;
    use object_store::{
        CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
        PutMultipartOptions, PutOptions, PutPayload, PutResult,
    };

    /// A bucket that answers every `head` with 403 and lists nothing.
    #[derive(Debug, Default)]
    struct Refusing(InMemory);

    impl std::fmt::Display for Refusing {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("Refusing")
        }
    }

    #[async_trait]
    impl ObjectStore for Refusing {
        async fn put_opts(
            &self,
            location: &Path,
            payload: PutPayload,
            opts: PutOptions,
        ) -> object_store::Result<PutResult> {
            self.0.put_opts(location, payload, opts).await
        }

        async fn put_multipart_opts(
            &self,
            location: &Path,
            opts: PutMultipartOptions,
        ) -> object_store::Result<Box<dyn MultipartUpload>> {
            self.0.put_multipart_opts(location, opts).await
        }

        async fn get_opts(
            &self,
            location: &Path,
            options: GetOptions,
        ) -> object_store::Result<GetResult> {
            if options.head {
                return Err(object_store::Error::Generic {
                    store: "test",
                    source: "403 Forbidden".into(),
                });
            }
            self.0.get_opts(location, options).await
        }

        fn delete_stream(
            &self,
            locations: BoxStream<'static, object_store::Result<Path>>,
        ) -> BoxStream<'static, object_store::Result<Path>> {
            self.0.delete_stream(locations)
        }

        fn list(
            &self,
            prefix: Option<&Path>,
        ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
            self.0.list(prefix)
        }

        async fn list_with_delimiter(
            &self,
            prefix: Option<&Path>,
        ) -> object_store::Result<ListResult> {
            self.0.list_with_delimiter(prefix).await
        }

        async fn copy_opts(
            &self,
            from: &Path,
            to: &Path,
            options: CopyOptions,
        ) -> object_store::Result<()> {
            self.0.copy_opts(from, to, options).await
        }
    }

    #[tokio::test]
    async fn a_refused_head_is_a_storage_failure_not_an_empty_product() {
        let runtime = Arc::new(RuntimeEnv::default());
        let bucket = Url::parse("memory://bucket/").unwrap();
        runtime.register_object_store(&bucket, Arc::new(Refusing::default()));
        let url = bucket.join("stock").unwrap();
        let failure = match resolve_parquet(&runtime, &SessionConfig::new(), &url).await {
            Ok(_) => panic!("resolved"),
            Err(f) => f,
        };
        assert!(failure.message.contains("403"), "{failure}");
        assert!(!failure.message.contains("no Parquet files"), "{failure}");
    }
}
