//! Product resolution: from a manifest to a DataFusion table that exposes exactly the
//! contract's columns.
//!
//! Parquet products are read through DataFusion's listing table (a single file or a directory
//! of files); Delta products through deltalake's table provider. Either raw table is wrapped in
//! a [`ProductTable`]: a projection onto the contract columns (with casts where the physical
//! type is a compatible variant), which the planner inlines at the table reference.

use std::borrow::Cow;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::TableReference;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::datasource::provider_as_source;
use datafusion::error::Result as DfResult;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::execution::SessionStateBuilder;
use datafusion::logical_expr::{cast, col, Expr, LogicalPlan, LogicalPlanBuilder, TableType};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionConfig;
use meshql_catalog::{Domain, Format, Product};
use object_store::ObjectStoreExt;
use url::Url;

use crate::contract::bind_columns;
use crate::error::{EngineError, Result};

/// Where a product's data lives.
pub(crate) fn product_url(domain: &Domain, product: &Product) -> Result<Url> {
    domain
        .config
        .bucket
        .join(&product.manifest.location)
        .map_err(|e| EngineError::ProductUnavailable {
            product: product.qualified_name(),
            message: format!("invalid location `{}`: {e}", product.manifest.location),
        })
}

/// Resolves a product into its contract-shaped table.
pub(crate) async fn resolve_product(
    runtime: &Arc<RuntimeEnv>,
    config: &SessionConfig,
    domain: &Domain,
    product: &Product,
) -> Result<Arc<dyn TableProvider>> {
    let name = product.qualified_name();
    let url = product_url(domain, product)?;
    let unavailable = |message: String| EngineError::ProductUnavailable {
        product: name.clone(),
        message,
    };
    let raw: Arc<dyn TableProvider> = match product.manifest.format {
        Format::Parquet => resolve_parquet(runtime, config, &url)
            .await
            .map_err(unavailable)?,
        Format::Delta => resolve_delta(runtime, &url).await.map_err(unavailable)?,
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
        .map_err(|e| {
            EngineError::Internal(format!("building the contract projection of `{name}`: {e}"))
        })?;
    Ok(Arc::new(ProductTable::new(plan)))
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
        Format::Delta => resolve_delta(runtime, &url).await,
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

async fn resolve_parquet(
    runtime: &Arc<RuntimeEnv>,
    config: &SessionConfig,
    url: &Url,
) -> std::result::Result<Arc<dyn TableProvider>, String> {
    let state = SessionStateBuilder::new()
        .with_config(config.clone())
        .with_runtime_env(Arc::clone(runtime))
        .build();
    let store_url =
        ObjectStoreUrl::parse(&url[..url::Position::BeforePath]).map_err(|e| e.to_string())?;
    let store = runtime
        .object_store(&store_url)
        .map_err(|e| e.to_string())?;
    // A location is either one file or a directory (prefix) of files.
    let path = object_store::path::Path::from_url_path(url.path()).map_err(|e| e.to_string())?;
    let is_file = !url.path().ends_with('/') && store.head(&path).await.is_ok();
    let table_url = if is_file || url.path().ends_with('/') {
        url.to_string()
    } else {
        format!("{url}/")
    };
    let table_url = ListingTableUrl::parse(&table_url).map_err(|e| e.to_string())?;
    let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
        .with_file_extension(if is_file { "" } else { ".parquet" });
    let schema = options
        .infer_schema(&state, &table_url)
        .await
        .map_err(|e| describe(&e))?;
    if schema.fields().is_empty() {
        return Err(format!("no Parquet files found at {url}"));
    }
    let config = ListingTableConfig::new(table_url)
        .with_listing_options(options)
        .with_schema(schema);
    let table = ListingTable::try_new(config).map_err(|e| e.to_string())?;
    Ok(Arc::new(table))
}

async fn resolve_delta(
    runtime: &Arc<RuntimeEnv>,
    url: &Url,
) -> std::result::Result<Arc<dyn TableProvider>, String> {
    let mut table_url = url.clone();
    if table_url.path().ends_with('/') {
        let p = table_url.path().trim_end_matches('/').to_string();
        table_url.set_path(&p);
    }
    let table = deltalake::open_table(table_url)
        .await
        .map_err(|e| format!("cannot open Delta table at {url}: {e}"))?;
    let log_store = table.log_store();
    let root = log_store.root_url();
    let store_url =
        ObjectStoreUrl::parse(&root[..url::Position::BeforePath]).map_err(|e| e.to_string())?;
    if runtime.object_store(&store_url).is_err() {
        runtime.register_object_store(store_url.as_ref(), log_store.root_object_store(None));
    }
    table
        .table_provider()
        .await
        .map_err(|e| format!("cannot read Delta table at {url}: {e}"))
}

fn describe(e: &datafusion::error::DataFusionError) -> String {
    let s = e.to_string();
    s.strip_prefix("Object Store error: ")
        .map(str::to_string)
        .unwrap_or(s)
}

/// A product as a table: its contract projection over the raw data, inlined by the planner at
/// every reference.
#[derive(Debug)]
pub(crate) struct ProductTable {
    plan: LogicalPlan,
    schema: SchemaRef,
}

impl ProductTable {
    fn new(plan: LogicalPlan) -> Self {
        let schema = Arc::new(plan.schema().as_arrow().clone());
        Self { plan, schema }
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

    fn get_logical_plan(&self) -> Option<Cow<'_, LogicalPlan>> {
        Some(Cow::Borrowed(&self.plan))
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let mut plan = LogicalPlanBuilder::from(self.plan.clone());
        if let Some(filter) = filters.iter().cloned().reduce(|a, b| a.and(b)) {
            plan = plan.filter(filter)?;
        }
        if let Some(projection) = projection {
            let fields = self.plan.schema().columns();
            plan = plan.project(projection.iter().map(|i| Expr::Column(fields[*i].clone())))?;
        }
        if let Some(limit) = limit {
            plan = plan.limit(0, Some(limit))?;
        }
        state.create_physical_plan(&plan.build()?).await
    }
}
