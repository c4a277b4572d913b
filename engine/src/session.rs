//! The engine and its per-principal query sessions.
//!
//! [`MeshEngine`] holds what is shared: the catalog in force (a [`CatalogSnapshot`] that a
//! reload swaps atomically, see [`crate::reload`]), the DataFusion runtime (object stores,
//! the memory pool of `memory_limit`, the spill directory, caches), the audit log, admission
//! control and the query runtime whose large-stack threads plan and run every query.
//! [`QuerySession`] is created per request for one principal: it takes the snapshot in force
//! once (its queries finish on that catalog even if a reload happens meanwhile) and owns a DataFusion
//! `SessionContext` whose `mesh` catalog is built for that principal, plans SQL within meshql's
//! read-only surface and streams results in client-facing types.
//!
//! A query's life: `plan_sql` checks the SQL's size, parses it, checks its depth and the
//! read-only allow-list, and plans it (on the query runtime); `execute` waits for admission,
//! then plans it physically with a memory pool of `query_memory_limit` and runs it on the query
//! runtime, until `statement_timeout`. The admission permit and the audit record belong to the
//! result stream: the slot is released and the record written when it ends or is dropped.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use arc_swap::ArcSwap;
use arrow::array::{Array, ArrayRef, RecordBatch, StringArray};
use arrow::datatypes::{DataType, SchemaRef};
use datafusion::catalog::SchemaProvider;
use datafusion::catalog::{CatalogProviderList, MemoryCatalogProviderList};
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::memory_pool::{FairSpillPool, MemoryPool, TrackConsumersPool};
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::execution::{SessionState, SessionStateBuilder, TaskContext};
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionConfig;
use futures::{Stream, StreamExt};
use meshql_catalog::{Mesh, Principal};
use std::sync::Mutex;
use std::time::Instant;

use crate::admission::{Admission, AdmissionStats, Permit};
use crate::audit::{AuditLog, AuditStats, WorkersUsed, AUDIT_ADMIN_GROUP};
use crate::contract::contract_schema;
use crate::delta_cache::DeltaCache;
use crate::error::{EngineError, Result};
use crate::executor::QueryRuntime;
use crate::limits::Limits;
use crate::memory::QueryPool;
use crate::output::{output_schema, to_output_batch};
use crate::product::{check_product, product_url};
use crate::product::{ProductRead, ReadLog};
use crate::provider::{MeshCatalog, SessionShared, MESH_CATALOG};
use crate::quality_store::QualityStore;
use crate::reload::StatusState;
use crate::result_cache::ResultCache;
use crate::snapshot::CatalogSnapshot;
use crate::system::{system_schema, SystemContext, SystemSchema, SYSTEM_SCHEMA};

/// A stream of result batches in client-facing types.
pub type BatchStream = Pin<Box<dyn Stream<Item = Result<RecordBatch>> + Send>>;

/// Tunables of the engine that callers may override over the configuration.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Partitions (threads) per query; defaults to the number of cores.
    pub target_partitions: usize,
    /// Rows per batch.
    pub batch_size: usize,
    /// Customizes the DataFusion session state of every query session (distributed execution
    /// installs its planner, codecs and worker resolver here).
    pub session_hook: Option<SessionHook>,
}

/// A function applied to the DataFusion session state builder of every query session, after
/// meshql's own settings.
#[derive(Clone)]
pub struct SessionHook(pub Arc<dyn Fn(SessionStateBuilder) -> SessionStateBuilder + Send + Sync>);

impl std::fmt::Debug for SessionHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionHook")
    }
}

impl Default for EngineOptions {
    fn default() -> Self {
        let limits = Limits::default();
        Self {
            target_partitions: limits.target_partitions,
            batch_size: limits.batch_size,
            session_hook: None,
        }
    }
}

/// The query engine over one mesh.
#[derive(Debug, Clone)]
pub struct MeshEngine {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// The catalog in force; a reload swaps it (see [`crate::snapshot`]).
    catalog: ArcSwap<CatalogSnapshot>,
    /// What a reload reports besides the snapshot; also serializes installs.
    status: Mutex<StatusState>,
    runtime: Arc<RuntimeEnv>,
    limits: Limits,
    /// `[engine.datafusion]`, as `datafusion.`-prefixed keys.
    datafusion: Vec<(String, String)>,
    audit: Arc<AuditLog>,
    delta_cache: Arc<DeltaCache>,
    admission: Admission,
    /// Quality results, background checks and observations of products' storage.
    quality: Arc<QualityStore>,
    /// Applied to every query session's state (distributed execution installs itself here).
    session_hook: Option<SessionHook>,
    /// Answers of repeated queries (None: `result_cache_size = 0`).
    result_cache: Option<Arc<ResultCache>>,
    /// What every query session's state is copied from, and what policy expressions are
    /// parsed with (`MeshEngine::session_template`).
    session_template: std::sync::OnceLock<Arc<SessionState>>,
    /// The digest of the template's DataFusion settings, for the result cache's keys.
    settings_digest: std::sync::OnceLock<Arc<str>>,
    /// Statements planned since the engine started (`MeshEngine::statements_planned`).
    statements_planned: std::sync::atomic::AtomicU64,
    /// The memory pools of queries still alive (`MeshEngine::queries_wound_down`).
    live_query_pools: Arc<crate::memory::LiveQueryPools>,
    /// Declared last: dropped after everything that may still hold query tasks.
    queries: QueryRuntime,
}

/// Stack needed around operations on a planned query that run on the caller's thread
/// (dropping or binding its plan); more is allocated on the heap when less remains.
const CALLER_RED_ZONE: usize = 32 * 1024 * 1024;

/// Stack size for the threads of a runtime that calls into the engine (the server's): with
/// `CALLER_RED_ZONE` and room for the caller's own frames, `on_big_stack` runs in place
/// on such a thread. On a smaller stack it still works, but maps and unmaps a fresh segment on
/// every call (several per query: the result cache's lookups, dropping plans), with the
/// system calls and cross-thread TLB flushes that brings. Only touched pages use memory.
pub const CALLER_STACK_SIZE: usize = 2 * CALLER_RED_ZONE;

/// Runs `f` with at least [`CALLER_RED_ZONE`] of stack (on a fresh segment when needed).
pub(crate) fn on_big_stack<T>(f: impl FnOnce() -> T) -> T {
    stacker::maybe_grow(CALLER_RED_ZONE, crate::executor::STACK_SIZE, f)
}

impl MeshEngine {
    /// Creates an engine over a loaded mesh with the limits of its `[engine]` and `[limits]`
    /// sections, registering each domain's bucket.
    pub fn try_new(mesh: Mesh) -> Result<Self> {
        let limits = Limits::from_config(&mesh.config.engine, &mesh.config.limits);
        Self::try_new_with_limits(mesh, limits)
    }

    /// Like [`MeshEngine::try_new`], with parallelism and batch size overridden.
    pub fn try_new_with_options(mesh: Mesh, options: EngineOptions) -> Result<Self> {
        let mut limits = Limits::from_config(&mesh.config.engine, &mesh.config.limits);
        limits.target_partitions = options.target_partitions;
        limits.batch_size = options.batch_size;
        Self::build(mesh, limits, options.session_hook)
    }

    /// Creates an engine with explicit limits (the configuration's are ignored).
    pub fn try_new_with_limits(mesh: Mesh, limits: Limits) -> Result<Self> {
        Self::build(mesh, limits, None)
    }

    fn build(mesh: Mesh, limits: Limits, session_hook: Option<SessionHook>) -> Result<Self> {
        let config_problem = |field: &str, message: String| {
            EngineError::Catalog(meshql_catalog::CatalogError::Invalid(vec![
                meshql_catalog::Problem::new(&mesh.config.file, field, message),
            ]))
        };
        let mode = match &limits.spill_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir).map_err(|e| {
                    config_problem(
                        "engine.spill_dir",
                        format!("cannot create {}: {e}", dir.display()),
                    )
                })?;
                DiskManagerMode::Directories(vec![dir.clone()])
            }
            None => DiskManagerMode::OsTmpDirectory,
        };
        let pool: Arc<dyn MemoryPool> = Arc::new(TrackConsumersPool::new(
            FairSpillPool::new(limits.memory_limit as usize),
            std::num::NonZeroUsize::MIN.saturating_add(4),
        ));
        // No list-files cache: DataFusion's default keeps a Parquet listing forever, and new
        // files must be seen by the next query.
        let runtime = RuntimeEnvBuilder::new()
            .with_cache_manager(
                datafusion::execution::cache::cache_manager::CacheManagerConfig::default()
                    .with_list_files_cache_limit(0),
            )
            .with_memory_pool(pool)
            .with_disk_manager_builder(DiskManagerBuilder::default().with_mode(mode))
            .build_arc()
            .map_err(EngineError::from_datafusion)?;
        crate::buckets::register_domain_stores(&runtime, &mesh)?;
        let datafusion: Vec<(String, String)> = mesh
            .config
            .engine
            .datafusion
            .iter()
            .map(|(k, v)| (format!("datafusion.{k}"), v.clone()))
            .collect();
        // Check the pass-through settings now, so that a bad value fails the start.
        let mut probe = SessionConfig::new();
        for (key, value) in &datafusion {
            probe.options_mut().set(key, value).map_err(|e| {
                config_problem(
                    &format!(
                        "engine.datafusion.\"{}\"",
                        key.trim_start_matches("datafusion.")
                    ),
                    crate::error::strip_prefix(&e),
                )
            })?;
        }
        let audit = AuditLog::try_new(&mesh.config.audit).map_err(|e| {
            config_problem(
                "audit.file",
                format!(
                    "cannot open the audit file {}: {e}",
                    mesh.config
                        .audit
                        .file
                        .as_deref()
                        .unwrap_or(std::path::Path::new(""))
                        .display()
                ),
            )
        })?;
        let redaction = redaction_rules(&mesh, limits.spill_dir.as_deref());
        let queries = QueryRuntime::try_new(limits.target_partitions)?;
        let quality = Arc::new(QualityStore::try_new(
            &mesh,
            &runtime,
            limits.target_partitions,
            limits.batch_size,
        )?);
        let result_cache =
            ResultCache::new(limits.result_cache_size, limits.result_cache_max_entry).map(Arc::new);
        Ok(Self {
            inner: Arc::new(Inner {
                quality,
                delta_cache: Arc::new(DeltaCache::new(mesh.config.refresh_interval)),
                admission: Admission::new(
                    limits.max_concurrent_queries,
                    limits.max_queries_per_user,
                    limits.queue_timeout,
                ),
                catalog: ArcSwap::from_pointee(CatalogSnapshot::new(1, Arc::new(mesh), redaction)),
                status: Mutex::new(StatusState::default()),
                runtime,
                limits,
                datafusion,
                audit: Arc::new(audit),
                session_hook,
                result_cache,
                session_template: std::sync::OnceLock::new(),
                settings_digest: std::sync::OnceLock::new(),
                statements_planned: std::sync::atomic::AtomicU64::new(0),
                live_query_pools: Arc::default(),
                queries,
            }),
        })
    }

    /// How many SQL statements sessions of this engine have planned (`QuerySession::plan_sql`),
    /// refused ones included: against the number of queries run, it shows how often a
    /// transport reused a plan instead of planning again.
    pub fn statements_planned(&self) -> u64 {
        self.inner
            .statements_planned
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The catalog in force now (a later call may return a newer one).
    pub fn mesh(&self) -> Arc<Mesh> {
        Arc::clone(self.snapshot().mesh())
    }

    /// The catalog snapshot in force now: the mesh, its generation and what is derived from it.
    pub fn snapshot(&self) -> Arc<CatalogSnapshot> {
        self.inner.catalog.load_full()
    }

    /// A snapshot of `mesh` with what the engine derives from it.
    pub(crate) fn make_snapshot(&self, generation: u64, mesh: Arc<Mesh>) -> CatalogSnapshot {
        let redaction = redaction_rules(&mesh, self.inner.limits.spill_dir.as_deref());
        CatalogSnapshot::new(generation, mesh, redaction)
    }

    /// Puts `snapshot` in force.
    pub(crate) fn swap_snapshot(&self, snapshot: Arc<CatalogSnapshot>) {
        self.inner.catalog.store(snapshot);
    }

    /// The reload status (held while a catalog is installed).
    pub(crate) fn status_state(&self) -> std::sync::MutexGuard<'_, StatusState> {
        self.inner.status.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// Counters of the audit writer (records written, write errors, dropped, reopened).
    pub fn audit_stats(&self) -> AuditStats {
        self.inner.audit.stats()
    }

    /// Waits until every audit record produced so far is in the audit file.
    pub fn flush_audit(&self) {
        self.inner.audit.flush()
    }

    /// Queries running and queued.
    pub fn admission_stats(&self) -> AdmissionStats {
        self.inner.admission.stats()
    }

    /// Resolves once every query that ended has wound down: its operators and tasks are dropped
    /// and all it reserved is released. A failed or cancelled query's tasks stop after its error
    /// has reached the caller; this waits for that (and for queries still running).
    pub async fn queries_wound_down(&self) {
        self.inner.live_query_pools.none_alive().await
    }

    /// Bytes reserved in the shared memory pool, and its size.
    pub fn memory_reserved(&self) -> (usize, u64) {
        (
            self.inner.runtime.memory_pool.reserved(),
            self.inner.limits.memory_limit,
        )
    }

    /// The SQL text as it may appear in logs: with `[audit] sql = "hash"` only its SHA-256
    /// (`sha256:...`), otherwise the text, cut after 1 KiB.
    pub fn sql_for_log(&self, sql: &str) -> String {
        if self.inner.audit.hash_sql() {
            return format!("sha256:{}", crate::audit::sha256_hex(sql));
        }
        const LOG_SQL: usize = 1024;
        if sql.len() <= LOG_SQL {
            return sql.to_string();
        }
        let mut cut = LOG_SQL;
        while !sql.is_char_boundary(cut) {
            cut -= 1;
        }
        format!("{}… ({} bytes)", &sql[..cut], sql.len())
    }

    /// The runtime (object stores, memory pool, disk manager), for health and metrics.
    pub(crate) fn runtime(&self) -> &Arc<RuntimeEnv> {
        &self.inner.runtime
    }

    /// The audit log, for history and usage.
    pub(crate) fn audit_log(&self) -> &Arc<AuditLog> {
        &self.inner.audit
    }

    /// Starts the background quality monitor (`meshql serve` does): every `[quality]
    /// check_interval` it observes each product's data and checks the rules of products whose
    /// data version has no result yet, within the checks' concurrency and memory bounds. It
    /// stops when the engine is dropped. Needs a Tokio runtime.
    pub fn spawn_quality_monitor(&self) -> tokio::task::JoinHandle<()> {
        // The catalog in force at each round: products published by a reload are observed.
        let inner = Arc::downgrade(&self.inner);
        let current = move || inner.upgrade().map(|i| Arc::clone(i.catalog.load().mesh()));
        tokio::spawn(crate::quality_store::run_monitor(
            current,
            Arc::clone(&self.inner.runtime),
            Arc::downgrade(&self.inner.quality),
        ))
    }

    /// A session for one principal.
    pub fn session(&self, principal: Principal) -> Result<QuerySession> {
        QuerySession::try_new(self.clone(), principal, None)
    }

    /// A session whose unqualified table names resolve in `schema` (a domain).
    pub fn session_with_schema(
        &self,
        principal: Principal,
        schema: Option<&str>,
    ) -> Result<QuerySession> {
        QuerySession::try_new(self.clone(), principal, schema)
    }

    /// The DataFusion state every query session starts from, made once: meshql's settings
    /// and optimizer rules, the session hook's additions, the default functions, and an empty
    /// catalog list that no session uses (each registers its own). Policy expressions are
    /// parsed with it as it is: it holds no catalog, so nothing it parses can reach back to a
    /// session (a session's own state holds the mesh catalog, which holds the policy state: a
    /// session's state used here would be an Arc cycle keeping every session alive).
    fn session_template(&self) -> &Arc<SessionState> {
        self.inner.session_template.get_or_init(|| {
            let mut builder = SessionStateBuilder::new()
                .with_config(self.session_config("public"))
                .with_runtime_env(Arc::clone(&self.inner.runtime))
                .with_default_features()
                .with_physical_optimizer_rules(crate::filter_barrier::physical_optimizer_rules())
                .with_query_planner(Arc::new(crate::shared_subplan::MeshqlQueryPlanner));
            if let Some(hook) = &self.inner.session_hook {
                builder = (hook.0)(builder);
            }
            Arc::new(builder.build())
        })
    }

    /// A digest of the template's DataFusion settings, made once. A session's settings are the
    /// template's with its own default schema (statements that change settings are refused),
    /// so this digest and the default schema identify them.
    fn settings_digest(&self) -> &Arc<str> {
        self.inner.settings_digest.get_or_init(|| {
            crate::result_cache::settings_digest(self.session_template().config_options())
        })
    }

    fn session_config(&self, default_schema: &str) -> SessionConfig {
        let mut config = SessionConfig::new()
            .with_default_catalog_and_schema(MESH_CATALOG, default_schema)
            .with_create_default_catalog_and_schema(false)
            .with_information_schema(true)
            .with_target_partitions(self.inner.limits.target_partitions)
            .with_batch_size(self.inner.limits.batch_size);
        // Static predicates prune from statistics and run above the scan; only scans filtered
        // by a join's or TopK's runtime filter decode lazily (see `row_filters`).
        config.options_mut().execution.parquet.pushdown_filters = false;
        // A sort reserves this much up front for merging its spilled runs; it must fit well
        // inside one query's share of memory.
        let share = usize::try_from(self.inner.limits.query_memory_limit).unwrap_or(usize::MAX);
        let reservation = &mut config.options_mut().execution.sort_spill_reservation_bytes;
        *reservation = (*reservation).min(share / 4);
        for (key, value) in &self.inner.datafusion {
            // Checked when the engine was created.
            let _ = config.options_mut().set(key, value);
        }
        config
    }

    /// Parses and type-checks every policy against the contracts; returns
    /// `(file, field, problem)` for each invalid one. Reads no data.
    pub fn check_policies(&self) -> Vec<(std::path::PathBuf, String, String)> {
        self.check_policies_of(&self.mesh())
    }

    /// [`MeshEngine::check_policies`] of another catalog (one about to be installed).
    pub(crate) fn check_policies_of(
        &self,
        mesh: &Mesh,
    ) -> Vec<(std::path::PathBuf, String, String)> {
        let state = SessionStateBuilder::new()
            .with_config(self.session_config("public"))
            .with_runtime_env(Arc::clone(&self.inner.runtime))
            .with_default_features()
            .build();
        crate::policy::check_policies(&state, mesh)
    }

    /// Checks one product's data (`domain.name`) against its contract, as
    /// [`MeshEngine::check_data`] does for every product; an unknown product is a problem.
    pub async fn check_product_data(&self, domain: &str, name: &str) -> Vec<String> {
        let mesh = self.mesh();
        let (Some(d), Some(p)) = (mesh.domain(domain), mesh.product(domain, name)) else {
            return vec![format!("unknown product `{domain}.{name}`")];
        };
        let config = self.session_config("public");
        match check_product(&self.inner.runtime, &config, d, p).await {
            Ok(()) => Vec::new(),
            Err(problems) => problems,
        }
    }

    /// Checks every product's data against its contract; returns `(product, problem)` pairs.
    pub async fn check_data(&self) -> Vec<(String, String)> {
        let config = self.session_config("public");
        let mut out = Vec::new();
        let mesh = self.mesh();
        for d in &mesh.domains {
            for p in &d.products {
                if let Err(problems) = check_product(&self.inner.runtime, &config, d, p).await {
                    out.extend(problems.into_iter().map(|m| (p.qualified_name(), m)));
                }
            }
        }
        out
    }
}

/// Replacements that take locations out of caller-facing texts: a product's location becomes
/// relative (`part-0.parquet`), a bucket root `<bucket>/`, the spill directory `<spill_dir>/`.
fn redaction_rules(mesh: &Mesh, spill_dir: Option<&std::path::Path>) -> Vec<(String, String)> {
    fn forms(url: &url::Url) -> Vec<String> {
        let mut out = vec![url.to_string()];
        if let Ok(p) = url.to_file_path() {
            out.push(p.display().to_string());
        }
        let path = url.path().to_string();
        out.push(path.trim_start_matches('/').to_string());
        out.push(path);
        out
    }
    let mut rules: Vec<(String, String)> = Vec::new();
    for d in &mesh.domains {
        for p in &d.products {
            if let Ok(url) = product_url(d, p) {
                for f in forms(&url) {
                    let dir = format!("{}/", f.trim_end_matches('/'));
                    rules.push((dir, String::new()));
                    rules.push((f.trim_end_matches('/').to_string(), "<location>".into()));
                }
            }
        }
        for f in forms(&d.config.bucket) {
            rules.push((
                format!("{}/", f.trim_end_matches('/')),
                "<bucket>/".to_string(),
            ));
            rules.push((f.trim_end_matches('/').to_string(), "<bucket>".into()));
        }
    }
    if let Some(dir) = spill_dir {
        let d = dir.display().to_string();
        rules.push((
            format!("{}/", d.trim_end_matches('/')),
            "<spill_dir>/".into(),
        ));
        rules.push((d.trim_end_matches('/').to_string(), "<spill_dir>".into()));
    }
    // Longest first, so that a product's location wins over its bucket's root; nothing shorter
    // than a few characters (a bucket at `/` would erase every slash).
    rules.retain(|(from, _)| from.len() > 3);
    rules.sort_by_key(|(from, _)| std::cmp::Reverse(from.len()));
    rules.dedup_by(|a, b| a.0 == b.0);
    rules
}

/// A logical plan that is dropped on a large stack: deep expression trees are dropped
/// recursively.
#[derive(Clone)]
struct DeepPlan(Option<Arc<LogicalPlan>>);

impl DeepPlan {
    fn get(&self) -> &LogicalPlan {
        // Always Some until dropped.
        self.0.as_deref().unwrap_or(&EMPTY_PLAN)
    }

    fn arc(&self) -> Arc<LogicalPlan> {
        self.0
            .clone()
            .unwrap_or_else(|| Arc::new(EMPTY_PLAN.clone()))
    }
}

static EMPTY_PLAN: std::sync::LazyLock<LogicalPlan> = std::sync::LazyLock::new(|| {
    LogicalPlan::EmptyRelation(datafusion::logical_expr::EmptyRelation {
        produce_one_row: false,
        schema: Arc::new(datafusion::common::DFSchema::empty()),
    })
});

impl Drop for DeepPlan {
    fn drop(&mut self) {
        if let Some(plan) = self.0.take() {
            if let Ok(plan) = Arc::try_unwrap(plan) {
                on_big_stack(move || drop(plan));
            }
        }
    }
}

/// A planned query: the logical plan and the schema its results will have for the client.
#[derive(Clone)]
pub struct PlannedQuery {
    plan: DeepPlan,
    pub schema: SchemaRef,
    /// The SQL text, for the audit record.
    sql: Arc<str>,
}

impl std::fmt::Debug for PlannedQuery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the plan: it may be deep, and it holds policy expressions.
        f.debug_struct("PlannedQuery")
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

impl PlannedQuery {
    /// The logical plan.
    pub fn plan(&self) -> &LogicalPlan {
        self.plan.get()
    }

    /// The query's placeholders (`$1`, `$2`, ... in order) as a schema with one field per
    /// placeholder, named after it. A placeholder whose type cannot be inferred from its use is
    /// typed `Utf8`; values are cast to the inferred type when bound.
    pub fn parameter_schema(&self) -> Result<SchemaRef> {
        let fields = self
            .plan()
            .get_parameter_fields()
            .map_err(EngineError::from_datafusion)?;
        let mut params: Vec<(String, Option<arrow::datatypes::FieldRef>)> =
            fields.into_iter().collect();
        params.sort_by_key(|(id, _)| placeholder_index(id));
        let fields: Vec<arrow::datatypes::Field> = params
            .into_iter()
            .map(|(id, field)| {
                let dt = field
                    .map(|f| f.data_type().clone())
                    .unwrap_or(arrow::datatypes::DataType::Utf8);
                arrow::datatypes::Field::new(id, crate::output::output_type(&dt), true)
            })
            .collect();
        Ok(Arc::new(arrow::datatypes::Schema::new(fields)))
    }

    /// Binds positional parameter values (for `$1`, `$2`, ...). Values are plain data, never
    /// spliced into SQL text.
    pub fn bind(&self, values: Vec<datafusion::scalar::ScalarValue>) -> Result<PlannedQuery> {
        let expected = self.parameter_schema()?;
        if values.len() != expected.fields().len() {
            return Err(EngineError::plan(format!(
                "the statement has {} parameter(s) but {} value(s) were bound",
                expected.fields().len(),
                values.len()
            )));
        }
        let types = self
            .plan()
            .get_parameter_types()
            .map_err(EngineError::from_datafusion)?;
        let values = values
            .into_iter()
            .zip(expected.fields())
            .map(|(v, f)| match types.get(f.name()).cloned().flatten() {
                Some(dt) if v.data_type() != dt && !v.is_null() => v.cast_to(&dt).map_err(|e| {
                    EngineError::plan(format!(
                        "parameter {} cannot be used as {dt}: {e}",
                        f.name()
                    ))
                }),
                Some(dt) if v.is_null() => datafusion::scalar::ScalarValue::try_from(&dt)
                    .map_err(EngineError::from_datafusion),
                _ => Ok(v),
            })
            .collect::<Result<Vec<_>>>()?;
        let plan = on_big_stack(|| self.plan().clone().with_param_values(values))
            .map_err(EngineError::from_datafusion)?;
        Ok(PlannedQuery {
            schema: Arc::clone(&self.schema),
            plan: DeepPlan(Some(Arc::new(plan))),
            sql: Arc::clone(&self.sql),
        })
    }
}

fn placeholder_index(id: &str) -> (usize, String) {
    (
        id.trim_start_matches('$').parse().unwrap_or(usize::MAX),
        id.to_string(),
    )
}

/// One principal's view of the mesh, for one request.
pub struct QuerySession {
    engine: MeshEngine,
    /// The catalog this session was created on; all its queries use it.
    snapshot: Arc<CatalogSnapshot>,
    principal: Principal,
    /// Shared (not copied) by the tasks that plan and run this session's queries.
    state: Arc<SessionState>,
    system: Arc<SystemSchema>,
    reads: Arc<ReadLog>,
    workers: Arc<WorkersUsed>,
}

/// A table as metadata calls (GetTables, JDBC `getColumns`) describe it, from the catalog alone.
#[derive(Debug, Clone)]
pub struct TableInfo {
    pub catalog: String,
    pub schema: String,
    pub name: String,
    /// `TABLE` for products, `SYSTEM TABLE` for `meshql.*`.
    pub table_type: &'static str,
    /// Client-facing schema: the columns this principal can see, masked ones included.
    pub arrow_schema: SchemaRef,
    pub description: String,
    /// Owner and contract version (empty for system tables).
    pub owner: String,
    pub version: String,
    /// Primary key columns in key order (only visible ones).
    pub primary_key: Vec<String>,
    /// The contract's description of each column of `arrow_schema`, in the same order.
    pub column_descriptions: Vec<String>,
    /// The product's last known status (`healthy`, or e.g. `failing: error rule ... failed`),
    /// from earlier observations only (None before any, and for system tables).
    pub status: Option<String>,
}

impl std::fmt::Debug for QuerySession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuerySession")
            .field("principal", &self.principal)
            .finish_non_exhaustive()
    }
}

impl QuerySession {
    fn try_new(
        engine: MeshEngine,
        principal: Principal,
        default_schema: Option<&str>,
    ) -> Result<Self> {
        let workers = Arc::new(WorkersUsed::default());
        // A copy of the engine's template, with a catalog list (below), default schema and
        // workers record of its own (building a state anew registers every function again).
        let mut state = SessionState::clone(engine.session_template());
        let config = state.config_mut();
        config.options_mut().catalog.default_schema =
            default_schema.unwrap_or("public").to_string();
        config.set_extension(Arc::clone(&workers));
        let config = config.clone();
        let snapshot = engine.snapshot();
        let mesh = Arc::clone(snapshot.mesh());
        let system = system_schema(SystemContext {
            mesh: &mesh,
            runtime: &engine.inner.runtime,
            audit: &engine.inner.audit,
            principal: &principal,
            redaction: &snapshot.redaction,
            status: &engine.catalog_status(),
            quality: &engine.inner.quality,
        })?;
        let reads = Arc::new(ReadLog::default());
        // Policy expressions are parsed with the template (see `session_template`).
        let policy_state = Arc::clone(engine.session_template());
        let shared = Arc::new(SessionShared {
            mesh: Arc::clone(&mesh),
            runtime: Arc::clone(&engine.inner.runtime),
            config,
            principal: principal.clone(),
            state: policy_state,
            reads: Arc::clone(&reads),
            delta_cache: Arc::clone(&engine.inner.delta_cache),
            resolved: snapshot.resolved.clone(),
            quality: Arc::clone(&engine.inner.quality),
        });
        let catalogs = MemoryCatalogProviderList::new();
        catalogs.register_catalog(
            MESH_CATALOG.to_string(),
            Arc::new(MeshCatalog::new(
                shared,
                Arc::clone(&system) as Arc<dyn SchemaProvider>,
            )),
        );
        state.register_catalog_list(Arc::new(catalogs));
        Ok(Self {
            engine,
            snapshot,
            principal,
            state: Arc::new(state),
            system,
            reads,
            workers,
        })
    }

    fn is_admin(&self) -> bool {
        self.principal.has_group(AUDIT_ADMIN_GROUP)
    }

    /// The products read so far by this session's queries, with Delta versions, columns and
    /// the policies applied.
    pub fn reads(&self) -> Vec<ProductRead> {
        self.reads.snapshot()
    }

    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    /// The catalog snapshot this session (and every query it runs) uses.
    pub fn snapshot(&self) -> &Arc<CatalogSnapshot> {
        &self.snapshot
    }

    /// The error as this session's caller sees it.
    fn client_error(&self, e: EngineError) -> EngineError {
        e.redact(&self.snapshot.redaction)
    }

    /// The schemas (domains with something visible, then `meshql`) this principal can see.
    pub fn schemas(&self) -> Vec<String> {
        let mesh = self.snapshot.mesh();
        let mut out: Vec<String> = mesh
            .domains
            .iter()
            .filter(|d| {
                d.products.iter().any(|p| {
                    mesh.access(&self.principal, d.name(), &p.manifest.name)
                        .is_some()
                })
            })
            .map(|d| d.name().to_string())
            .collect();
        out.push(SYSTEM_SCHEMA.to_string());
        out
    }

    /// Every table this principal can see, described from the catalog without touching storage.
    pub async fn tables(&self) -> Result<Vec<TableInfo>> {
        let mut out = Vec::new();
        let mesh = self.snapshot.mesh();
        for p in mesh.products() {
            let Some(access) = mesh.policies.access(&self.principal, &p.manifest) else {
                continue;
            };
            // Denied columns are absent; masked ones keep their contract type.
            let visible: Vec<&meshql_catalog::ColumnSpec> = access
                .columns
                .iter()
                .filter_map(|(name, _)| p.manifest.column(name))
                .collect();
            let full = contract_schema(&p.manifest);
            let fields: Vec<arrow::datatypes::Field> = visible
                .iter()
                .filter_map(|c| full.field_with_name(&c.name).ok().cloned())
                .collect();
            out.push(TableInfo {
                catalog: MESH_CATALOG.to_string(),
                schema: p.manifest.domain.clone(),
                name: p.manifest.name.clone(),
                table_type: "TABLE",
                arrow_schema: output_schema(&arrow::datatypes::Schema::new(fields)),
                description: with_deprecation(&p.manifest.description, &p.manifest.deprecated),
                owner: p.manifest.owner.clone(),
                version: p.manifest.version.clone(),
                primary_key: visible
                    .iter()
                    .filter(|c| c.primary_key)
                    .map(|c| c.name.clone())
                    .collect(),
                column_descriptions: visible
                    .iter()
                    .map(|c| with_deprecation(&c.description, &c.deprecated))
                    .collect(),
                status: crate::product_status::known_status(
                    mesh,
                    &self.engine.inner.quality,
                    &self.principal,
                    p,
                ),
            });
        }
        for name in self.system.table_names() {
            if let Some(t) = self.system.schema_of(&name) {
                let t = TableSchemaOnly(t);
                out.push(TableInfo {
                    catalog: MESH_CATALOG.to_string(),
                    schema: SYSTEM_SCHEMA.to_string(),
                    name: name.clone(),
                    table_type: "SYSTEM TABLE",
                    column_descriptions: vec![String::new(); t.schema().fields().len()],
                    arrow_schema: output_schema(&t.schema()),
                    description: format!("meshql system table: the catalog's {name}"),
                    owner: String::new(),
                    version: String::new(),
                    primary_key: Vec::new(),
                    status: None,
                });
            }
        }
        Ok(out)
    }

    /// Plans one SQL statement. Only queries (and EXPLAIN / SHOW / DESCRIBE of them) are
    /// accepted. A refused statement leaves an audit record.
    pub async fn plan_sql(&self, sql: &str) -> Result<PlannedQuery> {
        let start = Instant::now();
        self.engine
            .inner
            .statements_planned
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let limits = &self.engine.inner.limits;
        let planned = match crate::limits::check_sql_size(sql, limits.max_sql_bytes) {
            Err(e) => Err(e),
            Ok(()) => {
                let state = Arc::clone(&self.state);
                let text: Arc<str> = Arc::from(sql);
                let max_depth = limits.max_expr_depth;
                let admin = self.is_admin();
                let timeout = limits.statement_timeout;
                self.engine
                    .inner
                    .queries
                    .run("planning", async move {
                        let work = plan_on_query_runtime(state, text, max_depth, admin);
                        match tokio::time::timeout(timeout, work).await {
                            Ok(planned) => planned,
                            Err(_) => Err(statement_timeout(timeout)),
                        }
                    })
                    .await
            }
        }
        .map_err(|e| self.client_error(e));
        if let Err(e) = &planned {
            let oversized = matches!(
                e,
                EngineError::LimitExceeded {
                    limit: "max_sql_bytes",
                    ..
                }
            );
            self.engine.inner.audit.record_sql_cut(
                &self.principal,
                sql,
                oversized.then_some(1024),
                self.reads.snapshot(),
                self.workers.snapshot(),
                0,
                0,
                start.elapsed(),
                "error",
                Some(e.to_string()),
                None,
            );
        }
        planned
    }

    /// The state a query is optimized and executed with: the session's, stamped with the
    /// query's start (what `now()` returns) and the settings its functions read. Planning SQL
    /// shares the session's state instead; it evaluates no functions.
    fn execution_state(&self) -> SessionState {
        let mut state = (*self.state).clone();
        state.mark_start_execution();
        state
    }

    /// The runtime one query executes with: the engine's, with a memory pool of
    /// `query_memory_limit` over the shared one (same object stores, disk manager, caches).
    fn query_runtime_env(&self) -> Arc<RuntimeEnv> {
        let inner = &self.engine.inner;
        let mut runtime = (*inner.runtime).clone();
        runtime.memory_pool = Arc::new(QueryPool::new(
            Arc::clone(&inner.runtime.memory_pool),
            usize::try_from(inner.limits.query_memory_limit).unwrap_or(usize::MAX),
            Arc::clone(&inner.live_query_pools),
        ));
        Arc::new(runtime)
    }

    /// Executes a planned query, streaming batches as DataFusion produces them. Waits for
    /// admission first (at most `queue_timeout`); the stream holds the admission permit until
    /// it ends or is dropped, and fails when `statement_timeout` passes. The audit record is
    /// written when the stream ends, fails or is dropped (cancelled).
    pub async fn execute(&self, query: PlannedQuery) -> Result<BatchStream> {
        let start = Instant::now();
        let inner = &self.engine.inner;
        let audit = AuditGuard {
            log: Arc::clone(&inner.audit),
            principal: self.principal.clone(),
            sql: Arc::clone(&query.sql),
            reads: Arc::clone(&self.reads),
            workers: Arc::clone(&self.workers),
            start,
            rows: 0,
            bytes: 0,
            done: false,
            plan: None,
            cache: None,
        };
        // A repeated query is answered from the result cache, without admission or planning.
        let mut audit = audit;
        let mut fill_key = None;
        if let Some(cache) = &inner.result_cache {
            let key = ResultCache::key(
                query.plan(),
                self.snapshot.generation(),
                self.engine.settings_digest(),
                &self.state.config_options().catalog.default_schema,
                &inner.runtime,
            )
            .await;
            if let Some(key) = key {
                if let Some(hit) = cache.get(&key) {
                    audit.cache = Some("hit");
                    let batches: Vec<Result<RecordBatch>> =
                        hit.batches.iter().cloned().map(Ok).collect();
                    return Ok(Box::pin(QueryStream {
                        inner: Box::pin(futures::stream::iter(batches)),
                        audit,
                        permit: None,
                        redaction: Arc::clone(&self.snapshot.redaction),
                        shorten_output: false,
                    }));
                }
                audit.cache = Some("miss");
                fill_key = Some((Arc::clone(cache), key));
            }
        }
        let permit = match inner.admission.admit(&self.principal.user).await {
            Ok(p) => p,
            Err(e) => {
                audit.finish("error", Some(e.to_string()));
                return Err(e);
            }
        };
        let timeout = inner.limits.statement_timeout;
        let deadline = tokio::time::Instant::now() + timeout;
        let plan = query.plan.arc();
        let schema = Arc::clone(&query.schema);
        drop(query);
        let explain = matches!(*plan, LogicalPlan::Explain(_) | LogicalPlan::Analyze(_));
        // Planned with the session's state, run with the query's own memory pool.
        let state = self.execution_state();
        let runtime = self.query_runtime_env();
        let started = inner
            .queries
            .run("execution", async move {
                let start = async {
                    let physical = state
                        .create_physical_plan(&plan)
                        .await
                        .map_err(EngineError::from_datafusion)?;
                    drop(plan);
                    let task = TaskContext::from(&state).with_runtime(runtime);
                    let stream = datafusion::physical_plan::execute_stream(
                        Arc::clone(&physical),
                        Arc::new(task),
                    )
                    .map_err(EngineError::from_datafusion)?;
                    Ok((stream, physical))
                };
                match tokio::time::timeout_at(deadline, start).await {
                    Ok(stream) => stream,
                    Err(_) => Err(statement_timeout(timeout)),
                }
            })
            .await;
        let stream = match started {
            Ok((s, physical)) => {
                audit.plan = Some(physical);
                s
            }
            Err(e) => {
                let e = self.client_error(e);
                audit.finish("error", Some(e.to_string()));
                return Err(e);
            }
        };
        let out_schema = Arc::clone(&schema);
        let batches = stream.map(move |r| match r {
            Ok(batch) => to_output_batch(&batch, &out_schema).map_err(|e| EngineError::Bug {
                context: "converting a result batch".to_string(),
                source: Box::new(e),
            }),
            Err(e) => Err(EngineError::from_datafusion(e)),
        });
        let batches: OutputStream = match fill_key {
            Some((cache, key)) => Box::pin(cache.fill(key, batches)),
            None => Box::pin(batches),
        };
        let forwarded = match inner
            .queries
            .forward(batches, deadline, move || statement_timeout(timeout))
        {
            Ok(f) => f,
            Err(e) => {
                audit.finish("error", Some(e.to_string()));
                return Err(e);
            }
        };
        // EXPLAIN shows file paths: non-admins see only their last segment.
        let shorten_output = explain && !self.is_admin();
        Ok(Box::pin(QueryStream {
            inner: Box::pin(forwarded),
            audit,
            permit: Some(permit),
            redaction: Arc::clone(&self.snapshot.redaction),
            shorten_output,
        }))
    }

    /// The physical plan of a planned query (what EXPLAIN shows), without running it.
    pub async fn physical_plan(
        &self,
        query: &PlannedQuery,
    ) -> Result<std::sync::Arc<dyn datafusion::physical_plan::ExecutionPlan>> {
        let plan = query.plan.arc();
        let state = self.execution_state();
        self.engine
            .inner
            .queries
            .run("planning", async move {
                state
                    .create_physical_plan(&plan)
                    .await
                    .map_err(EngineError::from_datafusion)
            })
            .await
            .map_err(|e| self.client_error(e))
    }

    /// Plans and executes one SQL statement.
    pub async fn sql(&self, sql: &str) -> Result<(SchemaRef, BatchStream)> {
        let q = self.plan_sql(sql).await?;
        let schema = Arc::clone(&q.schema);
        Ok((schema, self.execute(q).await?))
    }
}

/// A description as metadata calls show it (Flight SQL remarks, JDBC `REMARKS`): a deprecated
/// product's or column's ends with `DEPRECATED: reason (sunset YYYY-MM-DD)`.
fn with_deprecation(description: &str, deprecated: &Option<meshql_catalog::Deprecation>) -> String {
    match deprecated {
        None => description.to_string(),
        Some(d) if description.is_empty() => format!("DEPRECATED: {d}"),
        Some(d) => format!("{} DEPRECATED: {d}", description.trim_end()),
    }
}

/// Parses, checks and plans one statement (runs on the query runtime).
async fn plan_on_query_runtime(
    state: Arc<SessionState>,
    sql: Arc<str>,
    max_depth: usize,
    admin: bool,
) -> Result<PlannedQuery> {
    let statement = crate::time_travel::parse_statement(&sql)?;
    let mut statement = crate::limits::check_depth(statement, max_depth)?;
    crate::read_only::check_statement(&statement)?;
    crate::time_travel::rewrite(&mut statement)?;
    let plan = state
        .statement_to_plan(statement)
        .await
        .map_err(EngineError::from_datafusion)?;
    crate::read_only::check_plan(&plan, admin)?;
    let schema = output_schema(plan.schema().as_arrow());
    Ok(PlannedQuery {
        plan: DeepPlan(Some(Arc::new(plan))),
        schema,
        sql,
    })
}

fn statement_timeout(timeout: std::time::Duration) -> EngineError {
    EngineError::ResourcesExhausted {
        message: format!(
            "the statement ran longer than {} (statement_timeout)",
            humantime::format_duration(timeout)
        ),
        source: None,
    }
}

/// Writes a query's audit record once, when it ends one way or another.
struct AuditGuard {
    log: Arc<AuditLog>,
    principal: Principal,
    sql: Arc<str>,
    reads: Arc<ReadLog>,
    workers: Arc<WorkersUsed>,
    start: Instant,
    rows: u64,
    bytes: u64,
    done: bool,
    /// The executed plan, for the operators' metrics (spilled bytes) when the query ends.
    plan: Option<Arc<dyn datafusion::physical_plan::ExecutionPlan>>,
    /// `hit` or `miss` for a query the result cache could answer; None otherwise.
    cache: Option<&'static str>,
}

/// Bytes the operators of `plan` spilled to disk.
fn spilled_bytes(plan: &dyn datafusion::physical_plan::ExecutionPlan) -> usize {
    let own = plan.metrics().and_then(|m| m.spilled_bytes()).unwrap_or(0);
    own + plan
        .children()
        .into_iter()
        .map(|c| spilled_bytes(c.as_ref()))
        .sum::<usize>()
}

impl AuditGuard {
    fn finish(mut self, outcome: &'static str, error: Option<String>) {
        self.write(outcome, error);
    }

    fn write(&mut self, outcome: &'static str, error: Option<String>) {
        if !self.done {
            self.done = true;
            if let Some(plan) = self.plan.take() {
                // A deep plan is walked and dropped with stack to spare (the caller's thread).
                on_big_stack(move || {
                    let spilled = spilled_bytes(plan.as_ref());
                    if spilled > 0 {
                        metrics::counter!(crate::telemetry::SPILLED_BYTES)
                            .increment(spilled as u64);
                    }
                    drop(plan);
                });
            }
            self.log.record(
                &self.principal,
                &self.sql,
                self.reads.snapshot(),
                self.workers.snapshot(),
                self.rows,
                self.bytes,
                self.start.elapsed(),
                outcome,
                error,
                self.cache,
            );
        }
    }
}

impl Drop for AuditGuard {
    fn drop(&mut self) {
        // Dropped before the end: the client went away or the query was cancelled.
        self.write("cancelled", None);
    }
}

/// The result stream a caller gets: the query's batches, its audit record and its admission
/// permit, released as soon as the stream ends.
/// A query's client-facing batches, before auditing.
type OutputStream = Pin<Box<dyn Stream<Item = Result<RecordBatch>> + Send>>;

struct QueryStream {
    inner: OutputStream,
    audit: AuditGuard,
    permit: Option<Permit>,
    redaction: Arc<Vec<(String, String)>>,
    /// Shorten paths in the output (EXPLAIN for non-admins).
    shorten_output: bool,
}

impl Stream for QueryStream {
    type Item = Result<RecordBatch>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let polled = match this.inner.poll_next_unpin(cx) {
            Poll::Ready(Some(Ok(batch))) if this.shorten_output => {
                Poll::Ready(Some(shorten_paths_in_batch(batch)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.redact(&this.redaction)))),
            other => other,
        };
        match &polled {
            Poll::Ready(Some(Ok(batch))) => {
                this.audit.rows += batch.num_rows() as u64;
                this.audit.bytes += batch.get_array_memory_size() as u64;
            }
            Poll::Ready(Some(Err(e))) => {
                this.audit.write("error", Some(e.to_string()));
                this.permit = None;
            }
            Poll::Ready(None) => {
                this.audit.write("ok", None);
                this.permit = None;
            }
            Poll::Pending => {}
        }
        polled
    }
}

/// Shortens every path in the string columns of a batch (EXPLAIN output for non-admins): a
/// token with two or more `/` keeps only its last segment (`…/part-0.parquet`). Uniform on
/// purpose: it does not depend on which paths are buckets, so a path the caller typed into a
/// literal is shortened the same whether or not it is a product's location.
fn shorten_paths_in_batch(batch: RecordBatch) -> Result<RecordBatch> {
    let columns: Vec<ArrayRef> = batch
        .columns()
        .iter()
        .map(|c| match c.data_type() {
            DataType::Utf8 => match c.as_any().downcast_ref::<StringArray>() {
                Some(s) => Arc::new(
                    s.iter()
                        .map(|v| v.map(shorten_paths))
                        .collect::<StringArray>(),
                ) as ArrayRef,
                None => Arc::clone(c),
            },
            _ => Arc::clone(c),
        })
        .collect();
    RecordBatch::try_new(batch.schema(), columns).map_err(|e| EngineError::Bug {
        context: "shortening paths in EXPLAIN output".to_string(),
        source: Box::new(e),
    })
}

/// See [`shorten_paths_in_batch`].
fn shorten_paths(text: &str) -> String {
    const DELIMITERS: &[char] = &[
        ' ', '\n', '\t', '[', ']', '{', '}', '(', ')', ',', '\'', '"', '=',
    ];
    let mut out = String::with_capacity(text.len());
    let mut token = String::new();
    let flush = |token: &mut String, out: &mut String| {
        if token.matches('/').count() >= 2 {
            let trimmed = token.trim_end_matches('/');
            let last = trimmed.rsplit('/').next().unwrap_or("");
            out.push('…');
            out.push('/');
            out.push_str(last);
            if token.ends_with('/') {
                out.push('/');
            }
        } else {
            out.push_str(token);
        }
        token.clear();
    };
    for ch in text.chars() {
        if DELIMITERS.contains(&ch) {
            flush(&mut token, &mut out);
            out.push(ch);
        } else {
            token.push(ch);
        }
    }
    flush(&mut token, &mut out);
    out
}

/// A schema standing in for a system table when only its shape is needed.
struct TableSchemaOnly(SchemaRef);

impl TableSchemaOnly {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_in_explain_output_are_shortened_uniformly() {
        assert_eq!(
            shorten_paths(
                "file_groups={1 group: [[tmp/m/buckets/c/c-000.parquet, a/b/x.parquet]]}"
            ),
            "file_groups={1 group: [[…/c-000.parquet, …/x.parquet]]}"
        );
        assert_eq!(
            shorten_paths("Utf8(\"/srv/mesh/buckets/\")"),
            "Utf8(\"…/buckets/\")"
        );
        assert_eq!(shorten_paths("a / b, x/y"), "a / b, x/y");
    }

    #[tokio::test]
    async fn a_dropped_session_is_freed() {
        let dir = tempfile::tempdir().unwrap();
        let opts = crate::demo::DemoOptions {
            dir: dir.path().to_path_buf(),
            scale: 1,
            force: false,
        };
        let report = crate::demo::write_demo(&opts, &mut |_: &str| {})
            .await
            .unwrap();
        let mesh = meshql_catalog::Mesh::load(&report.config).unwrap();
        let engine = MeshEngine::try_new(mesh).unwrap();
        let mesh = engine.mesh();
        let user = mesh.config.user("eu_analyst").unwrap();
        let session = engine.session(Principal::from_user(user)).unwrap();
        // Plan and run a policed query, so the catalog has resolved products.
        let (_, stream) = session
            .sql("SELECT count(*) FROM customers.customers")
            .await
            .unwrap();
        let _: Vec<RecordBatch> = futures::TryStreamExt::try_collect(stream).await.unwrap();
        let reads = Arc::downgrade(&session.reads);
        let catalog = Arc::downgrade(&session.system);
        drop(session);
        assert!(reads.upgrade().is_none(), "the session's state outlived it");
        assert!(
            catalog.upgrade().is_none(),
            "the session's system schema outlived it"
        );
    }
}
