//! The engine and its per-principal query sessions.
//!
//! [`MeshEngine`] holds what is shared (the loaded mesh, the runtime with its object stores,
//! memory pool and caches). [`QuerySession`] is created per request for one principal: it owns a
//! DataFusion `SessionContext` whose `mesh` catalog is built for that principal, plans SQL within
//! meshql's read-only surface and streams results in client-facing types.

use std::pin::Pin;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::execution::SessionStateBuilder;
use datafusion::logical_expr::{LogicalPlan, Statement};
use datafusion::prelude::{SessionConfig, SessionContext};
use futures::{Stream, StreamExt};
use meshql_catalog::{Mesh, Principal};

use crate::audit::AuditLog;
use crate::contract::contract_schema;
use crate::delta_cache::DeltaCache;
use crate::error::{EngineError, Result};
use crate::output::{output_schema, to_output_batch};
use crate::product::{check_product, product_url};
use crate::product::{ProductRead, ReadLog};
use crate::provider::{MeshCatalog, SessionShared, MESH_CATALOG};
use crate::quality_store::QualityStore;
use crate::system::{system_schema, SystemSchema, SYSTEM_SCHEMA};
use datafusion::catalog::SchemaProvider;
use std::time::Instant;

/// A stream of result batches in client-facing types.
pub type BatchStream = Pin<Box<dyn Stream<Item = Result<RecordBatch>> + Send>>;

/// Tunables of the engine.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Partitions (threads) per query; defaults to the number of cores.
    pub target_partitions: usize,
    /// Rows per batch.
    pub batch_size: usize,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            target_partitions: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
            batch_size: 8192,
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
    mesh: Arc<Mesh>,
    runtime: Arc<RuntimeEnv>,
    options: EngineOptions,
    /// `(product, location prefix)`, to attribute storage errors to the product they concern.
    locations: Vec<(String, String)>,
    audit: Arc<AuditLog>,
    delta_cache: Arc<DeltaCache>,
    /// Quality results, background checks and observations of products' storage.
    quality: Arc<QualityStore>,
}

impl MeshEngine {
    /// Creates an engine over a loaded mesh, registering each domain's bucket.
    pub fn try_new(mesh: Mesh) -> Result<Self> {
        Self::try_new_with_options(mesh, EngineOptions::default())
    }

    pub fn try_new_with_options(mesh: Mesh, options: EngineOptions) -> Result<Self> {
        // No list-files cache: DataFusion's default keeps a Parquet listing forever, and new
        // files must be seen by the next query.
        let runtime = RuntimeEnvBuilder::new()
            .with_cache_manager(
                datafusion::execution::cache::cache_manager::CacheManagerConfig::default()
                    .with_list_files_cache_limit(0),
            )
            .build_arc()?;
        crate::buckets::register_domain_stores(&runtime, &mesh)?;
        let mut locations = Vec::new();
        for d in &mesh.domains {
            for p in &d.products {
                if let Ok(url) = product_url(d, p) {
                    let loc = match url.to_file_path() {
                        Ok(path) => path.display().to_string(),
                        Err(()) => url.path().to_string(),
                    };
                    // Object store paths appear in errors without the leading slash.
                    locations.push((p.qualified_name(), loc.trim_start_matches('/').to_string()));
                }
            }
        }
        // Longest prefix first, so nested locations attribute to the most specific product.
        locations.sort_by_key(|l| std::cmp::Reverse(l.1.len()));
        let audit = AuditLog::try_new(&mesh.config.audit).map_err(|e| {
            EngineError::Internal(format!(
                "cannot open the audit file {:?}: {e}",
                mesh.config.audit.file
            ))
        })?;
        let quality = Arc::new(QualityStore::try_new(
            &mesh,
            &runtime,
            options.target_partitions,
            options.batch_size,
        )?);
        Ok(Self {
            inner: Arc::new(Inner {
                quality,
                delta_cache: Arc::new(DeltaCache::new(std::time::Duration::from_secs(
                    mesh.config.refresh_interval_secs,
                ))),
                mesh: Arc::new(mesh),
                runtime,
                options,
                locations,
                audit: Arc::new(audit),
            }),
        })
    }

    pub fn mesh(&self) -> &Mesh {
        &self.inner.mesh
    }

    /// Starts the background quality monitor (`meshql serve` does): every `[quality]
    /// check_interval` it observes each product's data and checks the rules of products whose
    /// data version has no result yet, within the checks' concurrency and memory bounds. It
    /// stops when the engine is dropped. Needs a Tokio runtime.
    pub fn spawn_quality_monitor(&self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(crate::quality_store::run_monitor(
            Arc::clone(&self.inner.mesh),
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

    fn session_config(&self, default_schema: &str) -> SessionConfig {
        let mut config = SessionConfig::new()
            .with_default_catalog_and_schema(MESH_CATALOG, default_schema)
            .with_create_default_catalog_and_schema(false)
            .with_information_schema(true)
            .with_target_partitions(self.inner.options.target_partitions)
            .with_batch_size(self.inner.options.batch_size);
        config.options_mut().execution.parquet.pushdown_filters = true;
        config
    }

    /// Parses and type-checks every policy against the contracts; returns
    /// `(file, field, problem)` for each invalid one. Reads no data.
    pub fn check_policies(&self) -> Vec<(std::path::PathBuf, String, String)> {
        let state = SessionStateBuilder::new()
            .with_config(self.session_config("public"))
            .with_runtime_env(Arc::clone(&self.inner.runtime))
            .with_default_features()
            .build();
        crate::policy::check_policies(&state, &self.inner.mesh)
    }

    /// Checks every product's data against its contract; returns `(product, problem)` pairs.
    pub async fn check_data(&self) -> Vec<(String, String)> {
        let config = self.session_config("public");
        let mut out = Vec::new();
        for d in &self.inner.mesh.domains {
            for p in &d.products {
                if let Err(problems) = check_product(&self.inner.runtime, &config, d, p).await {
                    out.extend(problems.into_iter().map(|m| (p.qualified_name(), m)));
                }
            }
        }
        out
    }

    /// Turns a DataFusion error into an engine error, naming the product a storage error
    /// concerns when the message points into a product's location.
    fn attribute(&self, e: datafusion::error::DataFusionError) -> EngineError {
        let err = EngineError::from_datafusion(e);
        match err {
            EngineError::Execution(msg) | EngineError::Internal(msg) => {
                match self
                    .inner
                    .locations
                    .iter()
                    .find(|(_, loc)| msg.contains(loc.as_str()))
                {
                    Some((product, _)) => EngineError::ProductUnavailable {
                        product: product.clone(),
                        message: msg,
                    },
                    None => EngineError::Execution(msg),
                }
            }
            other => other,
        }
    }
}

/// A planned query: the logical plan and the schema its results will have for the client.
#[derive(Debug, Clone)]
pub struct PlannedQuery {
    pub plan: LogicalPlan,
    pub schema: SchemaRef,
    /// The SQL text, for the audit record.
    sql: Arc<str>,
}

impl PlannedQuery {
    /// The query's placeholders (`$1`, `$2`, ... in order) as a schema with one field per
    /// placeholder, named after it. A placeholder whose type cannot be inferred from its use is
    /// typed `Utf8`; values are cast to the inferred type when bound.
    pub fn parameter_schema(&self) -> Result<SchemaRef> {
        let fields = self
            .plan
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
            return Err(EngineError::Plan(format!(
                "the statement has {} parameter(s) but {} value(s) were bound",
                expected.fields().len(),
                values.len()
            )));
        }
        let types = self
            .plan
            .get_parameter_types()
            .map_err(EngineError::from_datafusion)?;
        let values = values
            .into_iter()
            .zip(expected.fields())
            .map(|(v, f)| match types.get(f.name()).cloned().flatten() {
                Some(dt) if v.data_type() != dt && !v.is_null() => v.cast_to(&dt).map_err(|e| {
                    EngineError::Plan(format!(
                        "parameter {} cannot be used as {dt}: {e}",
                        f.name()
                    ))
                }),
                Some(dt) if v.is_null() => datafusion::scalar::ScalarValue::try_from(&dt)
                    .map_err(EngineError::from_datafusion),
                _ => Ok(v),
            })
            .collect::<Result<Vec<_>>>()?;
        let plan = self
            .plan
            .clone()
            .with_param_values(values)
            .map_err(EngineError::from_datafusion)?;
        Ok(PlannedQuery {
            schema: Arc::clone(&self.schema),
            plan,
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
    principal: Principal,
    ctx: SessionContext,
    system: Arc<SystemSchema>,
    reads: Arc<ReadLog>,
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
        let config = engine.session_config(default_schema.unwrap_or("public"));
        let state = SessionStateBuilder::new()
            .with_config(config.clone())
            .with_runtime_env(Arc::clone(&engine.inner.runtime))
            .with_default_features()
            .build();
        let mesh = Arc::clone(&engine.inner.mesh);
        let visible_columns = |domain: &str, product: &str| -> Option<Vec<String>> {
            mesh.access(&principal, domain, product)
                .map(|a| a.columns.iter().map(|(c, _)| c.to_string()).collect())
        };
        let audit_records = engine.inner.audit.visible_to(&principal);
        let system = system_schema(
            &mesh,
            &engine.inner.runtime,
            &visible_columns,
            audit_records,
            (&engine.inner.quality, &principal),
        )?;
        let reads = Arc::new(ReadLog::default());
        let shared = Arc::new(SessionShared {
            mesh: Arc::clone(&mesh),
            runtime: Arc::clone(&engine.inner.runtime),
            config,
            principal: principal.clone(),
            state: state.clone(),
            reads: Arc::clone(&reads),
            delta_cache: Arc::clone(&engine.inner.delta_cache),
            quality: Arc::clone(&engine.inner.quality),
        });
        let ctx = SessionContext::new_with_state(state);
        ctx.register_catalog(
            MESH_CATALOG,
            Arc::new(MeshCatalog::new(
                shared,
                Arc::clone(&system) as Arc<dyn SchemaProvider>,
            )),
        );
        Ok(Self {
            engine,
            principal,
            ctx,
            system,
            reads,
        })
    }

    /// The products read so far by this session's queries, with Delta versions, columns and
    /// the policies applied.
    pub fn reads(&self) -> Vec<ProductRead> {
        self.reads.snapshot()
    }

    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    /// The schemas (domains with something visible, then `meshql`) this principal can see.
    pub fn schemas(&self) -> Vec<String> {
        let mesh = &self.engine.inner.mesh;
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
        let mesh = &self.engine.inner.mesh;
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
                description: p.manifest.description.clone(),
                owner: p.manifest.owner.clone(),
                version: p.manifest.version.clone(),
                primary_key: visible
                    .iter()
                    .filter(|c| c.primary_key)
                    .map(|c| c.name.clone())
                    .collect(),
                column_descriptions: visible.iter().map(|c| c.description.clone()).collect(),
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

    /// Plans one SQL statement. Only queries (and EXPLAIN / SHOW of them) are accepted.
    /// A refused statement leaves an audit record.
    pub async fn plan_sql(&self, sql: &str) -> Result<PlannedQuery> {
        let start = Instant::now();
        let planned: Result<PlannedQuery> = async {
            let state = self.ctx.state();
            let statement = crate::time_travel::parse(sql)?;
            let plan = state
                .statement_to_plan(statement)
                .await
                .map_err(|e| self.engine.attribute(e))?;
            check_read_only(&plan)?;
            let schema = output_schema(plan.schema().as_arrow());
            Ok(PlannedQuery {
                plan,
                schema,
                sql: Arc::from(sql),
            })
        }
        .await;
        if let Err(e) = &planned {
            self.engine.inner.audit.record(
                &self.principal,
                sql,
                self.reads.snapshot(),
                0,
                0,
                start.elapsed(),
                "error",
                Some(e.to_string()),
            );
        }
        planned
    }

    /// Executes a planned query, streaming batches as DataFusion produces them. The audit record
    /// is written when the stream ends, fails or is dropped (cancelled).
    pub async fn execute(&self, query: PlannedQuery) -> Result<BatchStream> {
        let start = Instant::now();
        let PlannedQuery { plan, schema, sql } = query;
        let audit = AuditGuard {
            log: Arc::clone(&self.engine.inner.audit),
            principal: self.principal.clone(),
            sql,
            reads: Arc::clone(&self.reads),
            start,
            rows: 0,
            bytes: 0,
            done: false,
        };
        let stream = async {
            let df = self
                .ctx
                .execute_logical_plan(plan)
                .await
                .map_err(|e| self.engine.attribute(e))?;
            df.execute_stream()
                .await
                .map_err(|e| self.engine.attribute(e))
        }
        .await;
        let stream = match stream {
            Ok(s) => s,
            Err(e) => {
                audit.finish("error", Some(e.to_string()));
                return Err(e);
            }
        };
        let engine = self.engine.clone();
        let batches = stream.map(move |r| match r {
            Ok(batch) => to_output_batch(&batch, &schema)
                .map_err(|e| EngineError::Internal(format!("converting a result batch: {e}"))),
            Err(e) => Err(engine.attribute(e)),
        });
        Ok(Box::pin(AuditedStream {
            inner: Box::pin(batches),
            audit,
        }))
    }

    /// The physical plan of a planned query (what EXPLAIN shows), without running it.
    pub async fn physical_plan(
        &self,
        query: &PlannedQuery,
    ) -> Result<std::sync::Arc<dyn datafusion::physical_plan::ExecutionPlan>> {
        self.ctx
            .state()
            .create_physical_plan(&query.plan)
            .await
            .map_err(|e| self.engine.attribute(e))
    }

    /// Plans and executes one SQL statement.
    pub async fn sql(&self, sql: &str) -> Result<(SchemaRef, BatchStream)> {
        let q = self.plan_sql(sql).await?;
        let schema = Arc::clone(&q.schema);
        Ok((schema, self.execute(q).await?))
    }
}

/// Rejects everything but queries: DDL, DML, COPY, SET and transaction statements.
fn check_read_only(plan: &LogicalPlan) -> Result<()> {
    let what = match plan {
        LogicalPlan::Ddl(ddl) => Some(ddl.name().to_string()),
        LogicalPlan::Dml(dml) => Some(format!("{} ({})", dml.op, dml.table_name)),
        LogicalPlan::Copy(_) => Some("COPY".to_string()),
        LogicalPlan::Statement(Statement::SetVariable(_)) => Some("SET".to_string()),
        LogicalPlan::Statement(Statement::ResetVariable(_)) => Some("RESET".to_string()),
        LogicalPlan::Statement(Statement::TransactionStart(_) | Statement::TransactionEnd(_)) => {
            Some("transactions".to_string())
        }
        LogicalPlan::Statement(
            Statement::Prepare(_) | Statement::Execute(_) | Statement::Deallocate(_),
        ) => Some("SQL-level PREPARE/EXECUTE (use the client's prepared statements)".to_string()),
        _ => None,
    };
    match what {
        Some(w) => Err(EngineError::ReadOnly(format!(
            "meshql is read-only: {w} is not allowed; only queries (SELECT, WITH, EXPLAIN, SHOW) are accepted"
        ))),
        None => Ok(()),
    }
}

/// Writes a query's audit record once, when it ends one way or another.
struct AuditGuard {
    log: Arc<AuditLog>,
    principal: Principal,
    sql: Arc<str>,
    reads: Arc<ReadLog>,
    start: Instant,
    rows: u64,
    bytes: u64,
    done: bool,
}

impl AuditGuard {
    fn finish(mut self, outcome: &'static str, error: Option<String>) {
        self.write(outcome, error);
    }

    fn write(&mut self, outcome: &'static str, error: Option<String>) {
        if !self.done {
            self.done = true;
            self.log.record(
                &self.principal,
                &self.sql,
                self.reads.snapshot(),
                self.rows,
                self.bytes,
                self.start.elapsed(),
                outcome,
                error,
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

struct AuditedStream {
    inner: BatchStream,
    audit: AuditGuard,
}

impl Stream for AuditedStream {
    type Item = Result<RecordBatch>;

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let polled = this.inner.as_mut().poll_next(cx);
        match &polled {
            std::task::Poll::Ready(Some(Ok(batch))) => {
                this.audit.rows += batch.num_rows() as u64;
                this.audit.bytes += batch.get_array_memory_size() as u64;
            }
            std::task::Poll::Ready(Some(Err(e))) => this.audit.write("error", Some(e.to_string())),
            std::task::Poll::Ready(None) => this.audit.write("ok", None),
            std::task::Poll::Pending => {}
        }
        polled
    }
}

/// A schema standing in for a system table when only its shape is needed.
struct TableSchemaOnly(SchemaRef);

impl TableSchemaOnly {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.0)
    }
}
