//! The `meshql` system schema: the catalog itself as tables (`domains`, `products`,
//! `columns`, `audit`, `usage`, `catalog_status`), built from the manifests for the calling principal.
//!
//! Everything is filtered to what the caller may see: products and columns it cannot see are
//! absent (`columns.ordinal` and `products.columns` number and count only visible columns),
//! and only members of group `admin` see bucket URLs (`domains.bucket` is NULL for others).
//! `meshql.audit` reads the engine's in-memory audit ring when it is scanned; nothing is
//! copied into the session.
//!
//! `meshql.products` also shows each product's freshness: its current Delta version (or Parquet
//! file count), when its data last changed, its contract's freshness SLA and whether the SLA is
//! met now, and its status (`healthy`, `warning`, `at_risk`, `stale`, `failing`,
//! `unavailable`; see `product_status`). `meshql.quality`, `meshql.lineage` and
//! `meshql.column_lineage` come from `product_status`. Only querying `products` and `quality`
//! reads storage (listing files, the Delta log; quality checks run in the background); listing
//! tables and every metadata call answer from the catalog alone.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Int32Array, Int64Array, ListBuilder, RecordBatch, StringArray,
    StringBuilder,
};
use arrow::datatypes::{DataType, Field, Schema};
use std::collections::BTreeMap;

use arrow::array::TimestampMicrosecondArray;
use arrow::datatypes::{SchemaRef, TimeUnit};
use async_trait::async_trait;
use datafusion::catalog::{MemTable, SchemaProvider, TableProvider};
use datafusion::error::Result as DfResult;
use datafusion::execution::runtime_env::RuntimeEnv;
use meshql_catalog::Mesh;

use crate::audit::{AuditLog, AUDIT_ADMIN_GROUP};
use crate::error::{redact_text, EngineError, Result};
use crate::quality_store::QualityStore;
use meshql_catalog::Principal;

/// Name of the system schema.
pub const SYSTEM_SCHEMA: &str = "meshql";

fn strings<'a>(v: impl IntoIterator<Item = Option<&'a str>>) -> ArrayRef {
    Arc::new(StringArray::from_iter(v))
}

fn table(fields: Vec<Field>, columns: Vec<ArrayRef>) -> Result<Arc<MemTable>> {
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(Arc::clone(&schema), columns)
        .map_err(|e| EngineError::Internal(e.to_string()))?;
    Ok(Arc::new(
        MemTable::try_new(schema, vec![vec![batch]])
            .map_err(|e| EngineError::Internal(e.to_string()))?,
    ))
}

/// The sunset dates of deprecations (NULL: not deprecated, or no date).
fn sunsets<'a>(v: impl IntoIterator<Item = Option<&'a meshql_catalog::Deprecation>>) -> ArrayRef {
    Arc::new(arrow::array::Date32Array::from_iter(v.into_iter().map(
        |d| {
            d.and_then(|d| d.sunset).map(|day| {
                let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
                (day - epoch).num_days() as i32
            })
        },
    )))
}

fn s(name: &str, nullable: bool) -> Field {
    Field::new(name, DataType::Utf8, nullable)
}

/// What the system schema of one session is built from.
pub(crate) struct SystemContext<'a> {
    pub(crate) mesh: &'a Arc<Mesh>,
    pub(crate) runtime: &'a Arc<RuntimeEnv>,
    pub(crate) audit: &'a Arc<AuditLog>,
    pub(crate) principal: &'a Principal,
    /// Quality results and observations of products' storage.
    pub(crate) quality: &'a Arc<QualityStore>,
    /// Replacements that take bucket roots and local paths out of texts shown to non-admins.
    pub(crate) redaction: &'a Arc<Vec<(String, String)>>,
    /// The reload status, for `meshql.catalog_status`.
    pub(crate) status: &'a crate::reload::CatalogStatus,
}

/// Builds the system schema for one principal.
pub(crate) fn system_schema(cx: SystemContext<'_>) -> Result<Arc<SystemSchema>> {
    let SystemContext {
        mesh,
        runtime,
        audit,
        principal,
        redaction,
        status,
        quality,
    } = cx;
    let schema = SystemSchema {
        tables: std::sync::OnceLock::new(),
        status: status.clone(),
        mesh: Arc::clone(mesh),
        runtime: Arc::clone(runtime),
        audit: Arc::new(AuditTable {
            log: Arc::clone(audit),
            principal: principal.clone(),
        }),
        usage: Arc::new(crate::usage::UsageTable::new(
            Arc::clone(audit),
            principal.clone(),
            Arc::clone(mesh),
        )),
        redaction: Arc::clone(redaction),
        quality: Arc::clone(quality),
        principal: principal.clone(),
    };
    Ok(Arc::new(schema))
}

/// Names of the tables [`catalog_tables`] builds.
const CATALOG_TABLES: &[&str] = &["catalog_status", "columns", "domains", "products"];

/// The tables of the system schema that are built from the catalog for the principal
/// (`catalog_status`, `domains`, `products`, `columns`): built when one of them is first read,
/// not for every session (planning a product query stays flat in the size of the catalog).
fn catalog_tables(
    mesh: &Arc<Mesh>,
    principal: &Principal,
    status: &crate::reload::CatalogStatus,
) -> Result<BTreeMap<String, Arc<MemTable>>> {
    let visible_columns = |domain: &str, product: &str| -> Option<Vec<String>> {
        mesh.access(principal, domain, product)
            .map(|a| a.columns.iter().map(|(c, _)| c.to_string()).collect())
    };
    let admin = principal.has_group(AUDIT_ADMIN_GROUP);
    let visible = |d: &str, p: &str| visible_columns(d, p).is_some();
    let domains: Vec<_> = mesh
        .domains
        .iter()
        .filter(|d| {
            d.products
                .iter()
                .any(|p| visible(d.name(), &p.manifest.name))
        })
        .collect();
    let domains_table = table(
        vec![
            s("name", false),
            s("description", false),
            s("owner", false),
            s("bucket", true),
            Field::new("products", DataType::Int32, false),
        ],
        vec![
            strings(domains.iter().map(|d| Some(d.name()))),
            strings(domains.iter().map(|d| Some(d.config.description.as_str()))),
            strings(domains.iter().map(|d| Some(d.config.owner.as_str()))),
            // Bucket URLs (and local paths) are for admins only.
            strings(
                domains
                    .iter()
                    .map(|d| admin.then_some(d.config.bucket.as_str())),
            ),
            Arc::new(Int32Array::from_iter_values(domains.iter().map(|d| {
                d.products
                    .iter()
                    .filter(|p| visible(d.name(), &p.manifest.name))
                    .count() as i32
            }))),
        ],
    )?;
    let products: Vec<_> = mesh
        .products()
        .filter(|p| visible(&p.manifest.domain, &p.manifest.name))
        .collect();
    let tags: Vec<String> = products.iter().map(|p| p.manifest.tags.join(",")).collect();
    let products_table = table(
        vec![
            s("domain", false),
            s("name", false),
            s("version", false),
            s("description", false),
            s("owner", false),
            s("format", false),
            s("location", false),
            s("freshness_sla", true),
            s("tags", false),
            Field::new("columns", DataType::Int32, false),
            s("deprecated", true),
            Field::new("sunset", DataType::Date32, true),
        ],
        vec![
            strings(products.iter().map(|p| Some(p.manifest.domain.as_str()))),
            strings(products.iter().map(|p| Some(p.manifest.name.as_str()))),
            strings(products.iter().map(|p| Some(p.manifest.version.as_str()))),
            strings(
                products
                    .iter()
                    .map(|p| Some(p.manifest.description.as_str())),
            ),
            strings(products.iter().map(|p| Some(p.manifest.owner.as_str()))),
            strings(products.iter().map(|p| Some(p.manifest.format.as_str()))),
            strings(products.iter().map(|p| Some(p.manifest.location.as_str()))),
            strings(
                products
                    .iter()
                    .map(|p| p.manifest.sla.freshness.as_ref().map(|(t, _)| t.as_str())),
            ),
            strings(tags.iter().map(|t| Some(t.as_str()))),
            Arc::new(Int32Array::from_iter_values(products.iter().map(|p| {
                visible_columns(&p.manifest.domain, &p.manifest.name)
                    .map(|shown| {
                        p.manifest
                            .columns
                            .iter()
                            .filter(|c| shown.contains(&c.name))
                            .count()
                    })
                    .unwrap_or(0) as i32
            }))),
            strings(
                products
                    .iter()
                    .map(|p| p.manifest.deprecated.as_ref().map(|d| d.reason.as_str())),
            ),
            sunsets(products.iter().map(|p| p.manifest.deprecated.as_ref())),
        ],
    )?;
    let cols: Vec<_> = products
        .iter()
        .flat_map(|p| {
            let shown = visible_columns(&p.manifest.domain, &p.manifest.name).unwrap_or_default();
            // Ordinals number the visible columns only: a gap would reveal a hidden one.
            p.manifest
                .columns
                .iter()
                .filter(move |c| shown.contains(&c.name))
                .enumerate()
                .map(move |(i, c)| (*p, i, c))
        })
        .collect();
    let types: Vec<String> = cols.iter().map(|(_, _, c)| c.ty.to_string()).collect();
    let columns_table = table(
        vec![
            s("domain", false),
            s("product", false),
            s("name", false),
            Field::new("ordinal", DataType::Int32, false),
            s("type", false),
            Field::new("nullable", DataType::Boolean, false),
            s("description", false),
            s("classification", true),
            Field::new("primary_key", DataType::Boolean, false),
            s("deprecated", true),
            Field::new("sunset", DataType::Date32, true),
        ],
        vec![
            strings(
                cols.iter()
                    .map(|(p, _, _)| Some(p.manifest.domain.as_str())),
            ),
            strings(cols.iter().map(|(p, _, _)| Some(p.manifest.name.as_str()))),
            strings(cols.iter().map(|(_, _, c)| Some(c.name.as_str()))),
            Arc::new(Int32Array::from_iter_values(
                cols.iter().map(|(_, i, _)| *i as i32 + 1),
            )),
            strings(types.iter().map(|t| Some(t.as_str()))),
            Arc::new(BooleanArray::from_iter(
                cols.iter().map(|(_, _, c)| Some(c.nullable)),
            )),
            strings(cols.iter().map(|(_, _, c)| Some(c.description.as_str()))),
            strings(cols.iter().map(|(_, _, c)| c.classification.as_deref())),
            Arc::new(BooleanArray::from_iter(
                cols.iter().map(|(_, _, c)| Some(c.primary_key)),
            )),
            strings(
                cols.iter()
                    .map(|(_, _, c)| c.deprecated.as_ref().map(|d| d.reason.as_str())),
            ),
            sunsets(cols.iter().map(|(_, _, c)| c.deprecated.as_ref())),
        ],
    )?;
    let status_table = crate::catalog_status::catalog_status_table(status, mesh, principal)?;
    let mut tables = BTreeMap::new();
    for (name, t) in [
        ("catalog_status", status_table),
        ("domains", domains_table),
        ("products", products_table),
        ("columns", columns_table),
    ] {
        tables.insert(name.to_string(), t);
    }
    Ok(tables)
}

/// The system schema of one session.
#[derive(Debug)]
pub(crate) struct SystemSchema {
    /// The catalog tables, built on first use (see [`catalog_tables`]).
    tables: std::sync::OnceLock<std::result::Result<BTreeMap<String, Arc<MemTable>>, String>>,
    /// The reload status when the session began, for `meshql.catalog_status`.
    status: crate::reload::CatalogStatus,
    mesh: Arc<Mesh>,
    runtime: Arc<RuntimeEnv>,
    audit: Arc<AuditTable>,
    /// `meshql.usage`, computed from the audit ring when scanned.
    usage: Arc<crate::usage::UsageTable>,
    redaction: Arc<Vec<(String, String)>>,
    quality: Arc<QualityStore>,
    principal: Principal,
}

/// System tables computed when they are read (`product_status`).
const HEALTH_TABLES: &[&str] = &["quality", "lineage", "column_lineage"];

/// `meshql.audit`: the records of the engine's audit ring this principal may see, read when
/// the table is scanned.
#[derive(Debug)]
pub(crate) struct AuditTable {
    log: Arc<AuditLog>,
    principal: Principal,
}

fn audit_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        s("time", false),
        s("user", false),
        s("sql", true),
        s("sql_sha256", false),
        s("products", false),
        Field::new("rows", DataType::Int64, false),
        Field::new("bytes", DataType::Int64, false),
        Field::new("duration_ms", DataType::Int64, false),
        s("outcome", false),
        s("error", true),
        Field::new(
            "workers",
            DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true))),
            false,
        ),
        s("cache", true),
    ]))
}

/// The cluster workers of each record (an empty list for queries run on this server alone).
fn worker_lists<'a>(records: impl IntoIterator<Item = &'a [String]>) -> ArrayRef {
    let mut lists = ListBuilder::new(StringBuilder::new());
    for workers in records {
        for w in workers {
            lists.values().append_value(w);
        }
        lists.append(true);
    }
    Arc::new(lists.finish())
}

impl AuditTable {
    fn batch(&self) -> Result<RecordBatch> {
        let audit = self.log.visible_to(&self.principal);
        let products_json: Vec<String> = audit
            .iter()
            .map(|r| serde_json::to_string(&r.products).unwrap_or_default())
            .collect();
        let columns: Vec<ArrayRef> = vec![
            strings(audit.iter().map(|r| Some(r.time.as_str()))),
            strings(audit.iter().map(|r| Some(r.user.as_str()))),
            strings(audit.iter().map(|r| r.sql.as_deref())),
            strings(audit.iter().map(|r| Some(r.sql_sha256.as_str()))),
            strings(products_json.iter().map(|p| Some(p.as_str()))),
            Arc::new(Int64Array::from_iter_values(
                audit.iter().map(|r| r.rows as i64),
            )),
            Arc::new(Int64Array::from_iter_values(
                audit.iter().map(|r| r.bytes as i64),
            )),
            Arc::new(Int64Array::from_iter_values(
                audit.iter().map(|r| r.duration_ms as i64),
            )),
            strings(audit.iter().map(|r| Some(r.outcome))),
            strings(audit.iter().map(|r| r.error.as_deref())),
            worker_lists(audit.iter().map(|r| r.workers.as_slice())),
            strings(audit.iter().map(|r| r.cache)),
        ];
        RecordBatch::try_new(audit_schema(), columns).map_err(|e| EngineError::Bug {
            context: "building meshql.audit".to_string(),
            source: Box::new(e),
        })
    }
}

#[async_trait]
impl TableProvider for AuditTable {
    fn schema(&self) -> SchemaRef {
        audit_schema()
    }

    fn table_type(&self) -> datafusion::logical_expr::TableType {
        datafusion::logical_expr::TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn datafusion::catalog::Session,
        projection: Option<&Vec<usize>>,
        filters: &[datafusion::logical_expr::Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn datafusion::physical_plan::ExecutionPlan>> {
        let batch = self.batch()?;
        MemTable::try_new(audit_schema(), vec![vec![batch]])?
            .scan(state, projection, filters, limit)
            .await
    }
}

fn freshness_fields() -> Vec<Field> {
    vec![
        Field::new("data_version", DataType::Int64, true),
        Field::new("files", DataType::Int64, true),
        Field::new(
            "last_modified",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            true,
        ),
        Field::new("sla_met", DataType::Boolean, true),
    ]
    .into_iter()
    .chain(crate::product_status::product_status_fields())
    .collect()
}

impl SystemSchema {
    /// The catalog tables, built on first use.
    fn tables(&self) -> Result<&BTreeMap<String, Arc<MemTable>>> {
        self.tables
            .get_or_init(|| {
                catalog_tables(&self.mesh, &self.principal, &self.status).map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(|e| EngineError::Internal(format!("building the system tables: {e}")))
    }

    /// The schema of a system table, without reading anything.
    pub(crate) fn schema_of(&self, name: &str) -> Option<SchemaRef> {
        if name == "audit" {
            return Some(audit_schema());
        }
        if name == "usage" {
            return Some(crate::usage::usage_schema());
        }
        match name {
            "quality" => return Some(Arc::new(crate::product_status::quality_schema())),
            "lineage" => return Some(Arc::new(crate::product_status::lineage_schema())),
            "column_lineage" => {
                return Some(Arc::new(crate::product_status::column_lineage_schema()))
            }
            _ => {}
        }
        let t = self.tables().ok()?.get(name)?;
        if name == "products" {
            let mut fields: Vec<Field> = t
                .schema()
                .fields()
                .iter()
                .map(|f| f.as_ref().clone())
                .collect();
            fields.extend(freshness_fields());
            Some(Arc::new(Schema::new(fields)))
        } else {
            Some(t.schema())
        }
    }

    /// `meshql.products` with freshness, checked now (products in parallel, each bounded).
    async fn products_with_freshness(&self) -> Result<Arc<MemTable>> {
        let base = self
            .tables()?
            .get("products")
            .ok_or_else(|| EngineError::Internal("no products table".into()))?;
        let batches = datafusion::physical_plan::collect(
            base.scan(
                &datafusion::execution::context::SessionContext::new().state(),
                None,
                &[],
                None,
            )
            .await
            .map_err(EngineError::from_datafusion)?,
            Arc::new(datafusion::execution::TaskContext::default()),
        )
        .await
        .map_err(EngineError::from_datafusion)?;
        let Some(batch) = batches.into_iter().next() else {
            return Err(EngineError::Internal("empty products table".into()));
        };
        use arrow::array::AsArray;
        let domains = batch.column(0).as_string::<i32>().clone();
        let names = batch.column(1).as_string::<i32>().clone();
        let products: Vec<&meshql_catalog::Product> = (0..batch.num_rows())
            .filter_map(|i| self.mesh.product(domains.value(i), names.value(i)))
            .collect();
        if products.len() != batch.num_rows() {
            return Err(EngineError::Internal("products table out of date".into()));
        }
        let cx = crate::product_status::HealthContext {
            mesh: &self.mesh,
            runtime: &self.runtime,
            store: &self.quality,
            principal: &self.principal,
        };
        let health = crate::product_status::products_health(&cx, &products).await;
        let state = |h: &crate::product_status::ProductHealth| h.state.as_ref().ok().cloned();
        let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
        columns.push(Arc::new(Int64Array::from(
            health
                .iter()
                .map(|h| state(h).and_then(|s| s.delta_version))
                .collect::<Vec<_>>(),
        )));
        columns.push(Arc::new(Int64Array::from(
            health
                .iter()
                .map(|h| state(h).and_then(|s| s.files))
                .collect::<Vec<_>>(),
        )));
        columns.push(Arc::new(
            TimestampMicrosecondArray::from(
                health
                    .iter()
                    .map(|h| state(h).and_then(|s| s.last_modified_us))
                    .collect::<Vec<_>>(),
            )
            .with_timezone("UTC"),
        ));
        columns.push(Arc::new(BooleanArray::from(
            health.iter().map(|h| h.sla_met).collect::<Vec<_>>(),
        )));
        columns.push(strings(health.iter().map(|h| Some(h.status.as_str()))));
        let details: Vec<String> = health
            .iter()
            .map(|h| redact_text(h.detail.clone(), &self.redaction))
            .collect();
        columns.push(strings(details.iter().map(|d| Some(d.as_str()))));
        columns.push(strings(
            health.iter().map(|h| h.at_risk_upstream.as_deref()),
        ));
        let schema = self
            .schema_of("products")
            .ok_or_else(|| EngineError::Internal("no products schema".into()))?;
        let fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
        table(fields, columns)
    }
}

#[async_trait]
impl SchemaProvider for SystemSchema {
    fn table_names(&self) -> Vec<String> {
        let mut names: Vec<String> = CATALOG_TABLES.iter().map(|t| t.to_string()).collect();
        names.push("audit".to_string());
        names.push("usage".to_string());
        names.extend(HEALTH_TABLES.iter().map(|t| t.to_string()));
        names.sort();
        names
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        let cx = crate::product_status::HealthContext {
            mesh: &self.mesh,
            runtime: &self.runtime,
            store: &self.quality,
            principal: &self.principal,
        };
        match name {
            "quality" => {
                return Ok(Some(
                    crate::product_status::quality_table(&cx).await? as Arc<dyn TableProvider>,
                ))
            }
            "lineage" => {
                return Ok(Some(
                    crate::product_status::lineage_table(&self.mesh, &self.principal)?
                        as Arc<dyn TableProvider>,
                ))
            }
            "column_lineage" => {
                return Ok(Some(crate::product_status::column_lineage_table(
                    &self.mesh,
                    &self.principal,
                )? as Arc<dyn TableProvider>))
            }
            _ => {}
        }
        if name == "products" {
            return Ok(Some(
                self.products_with_freshness().await? as Arc<dyn TableProvider>,
            ));
        }
        if name == "audit" {
            return Ok(Some(Arc::clone(&self.audit) as Arc<dyn TableProvider>));
        }
        if name == "usage" {
            return Ok(Some(Arc::clone(&self.usage) as Arc<dyn TableProvider>));
        }
        if !CATALOG_TABLES.contains(&name) {
            return Ok(None);
        }
        Ok(self
            .tables()?
            .get(name)
            .map(|t| Arc::clone(t) as Arc<dyn TableProvider>))
    }

    async fn table_type(
        &self,
        name: &str,
    ) -> DfResult<Option<datafusion::logical_expr::TableType>> {
        Ok(self
            .table_exist(name)
            .then_some(datafusion::logical_expr::TableType::Base))
    }

    fn table_exist(&self, name: &str) -> bool {
        name == "audit"
            || name == "usage"
            || CATALOG_TABLES.contains(&name)
            || HEALTH_TABLES.contains(&name)
    }
}
