//! The `mesh` catalog as DataFusion sees it, for one principal: one schema per domain in which
//! it can see something, one table per visible product, plus the `meshql` system schema.
//! A product the principal may not see is absent everywhere, exactly like a missing one.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::{CatalogProvider, SchemaProvider, TableProvider};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::execution::SessionState;
use datafusion::logical_expr::TableType;
use datafusion::prelude::SessionConfig;
use meshql_catalog::{Domain, Format, Mesh, Principal};

use crate::delta_cache::DeltaCache;
use crate::freshness::{query_sla, RefusedTable, SlaVerdict};
use crate::policy::compile;
use crate::product::{resolve_product, Deprecations, ProductTable, ReadLog, ResolvedProduct};
use crate::system::SYSTEM_SCHEMA;
use crate::time_travel::split_versioned;

/// Name of the catalog holding the mesh.
pub const MESH_CATALOG: &str = "mesh";

/// What every schema of one session shares.
#[derive(Debug)]
pub(crate) struct SessionShared {
    pub(crate) mesh: Arc<Mesh>,
    pub(crate) runtime: Arc<RuntimeEnv>,
    pub(crate) config: SessionConfig,
    pub(crate) principal: Principal,
    /// Used to parse policy expressions (functions, types); holds no mesh catalog.
    /// For compiling policy expressions (shared by the engine's sessions).
    pub(crate) state: Arc<SessionState>,
    pub(crate) reads: Arc<ReadLog>,
    pub(crate) delta_cache: Arc<DeltaCache>,
    /// Parquet products already resolved in this catalog snapshot.
    pub(crate) resolved: moka::sync::Cache<String, ResolvedProduct>,
    /// Observations of products' storage, for freshness SLAs at query time.
    pub(crate) quality: Arc<crate::quality_store::QualityStore>,
}

impl SessionShared {
    fn visible(&self, domain: &str, product: &str) -> bool {
        self.mesh.access(&self.principal, domain, product).is_some()
    }

    /// [`Self::visible`] for a product in hand (no lookup by name).
    fn sees(&self, product: &meshql_catalog::Product) -> bool {
        self.mesh
            .policies
            .access(&self.principal, &product.manifest)
            .is_some()
    }
}

/// Domains are looked up when a query names them, not listed for every session: planning a
/// query costs the same in a catalog of 100 products as in one of 10,000.
#[derive(Debug)]
pub(crate) struct MeshCatalog {
    shared: Arc<SessionShared>,
    system: Arc<dyn SchemaProvider>,
}

impl MeshCatalog {
    pub(crate) fn new(shared: Arc<SessionShared>, system: Arc<dyn SchemaProvider>) -> Self {
        Self { shared, system }
    }

    /// The domain at `index` as a schema, when the principal sees one of its products.
    fn domain_schema(&self, index: usize) -> Option<DomainSchema> {
        let d = &self.shared.mesh.domains[index];
        d.products
            .iter()
            .any(|p| self.shared.sees(p))
            .then(|| DomainSchema {
                index,
                shared: Arc::clone(&self.shared),
            })
    }
}

impl CatalogProvider for MeshCatalog {
    fn schema_names(&self) -> Vec<String> {
        let mut names: Vec<String> = (0..self.shared.mesh.domains.len())
            .filter_map(|i| self.domain_schema(i))
            .map(|d| d.domain().name().to_string())
            .collect();
        names.push(SYSTEM_SCHEMA.to_string());
        names
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        if name == SYSTEM_SCHEMA {
            return Some(Arc::clone(&self.system));
        }
        let index = self
            .shared
            .mesh
            .domains
            .iter()
            .position(|d| d.name() == name)?;
        self.domain_schema(index)
            .map(|d| Arc::new(d) as Arc<dyn SchemaProvider>)
    }

    fn register_schema(
        &self,
        name: &str,
        _schema: Arc<dyn SchemaProvider>,
    ) -> DfResult<Option<Arc<dyn SchemaProvider>>> {
        Err(DataFusionError::Plan(format!(
            "meshql is read-only: cannot create schema `{name}`"
        )))
    }
}

/// A domain's visible products as a schema.
#[derive(Debug)]
pub(crate) struct DomainSchema {
    /// Index of the domain in the session's mesh.
    index: usize,
    shared: Arc<SessionShared>,
}

impl DomainSchema {
    fn domain(&self) -> &Domain {
        &self.shared.mesh.domains[self.index]
    }
}

#[async_trait]
impl SchemaProvider for DomainSchema {
    fn table_names(&self) -> Vec<String> {
        self.domain()
            .products
            .iter()
            .filter(|p| self.shared.sees(p))
            .map(|p| p.manifest.name.clone())
            .collect()
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        let shared = &self.shared;
        let (name, as_of) = split_versioned(name);
        let Some(product) = self.domain().product(name) else {
            return Ok(None);
        };
        let Some(access) = shared
            .mesh
            .policies
            .access(&shared.principal, &product.manifest)
        else {
            return Ok(None);
        };
        let qualified = product.qualified_name();
        // A Parquet product resolved by an earlier query of this catalog is reused (Delta
        // products have their own snapshot cache; time travel reads what it asks for).
        let reusable = as_of.is_none() && product.manifest.format == Format::Parquet;
        let kept = reusable.then(|| shared.resolved.get(&qualified)).flatten();
        let resolved = match kept {
            Some(resolved) => resolved,
            None => {
                let resolved = resolve_product(
                    &shared.runtime,
                    &shared.config,
                    self.domain(),
                    product,
                    as_of.as_ref(),
                    Some(&shared.delta_cache),
                )
                .await?;
                if reusable {
                    shared.resolved.insert(qualified.clone(), resolved.clone());
                }
                resolved
            }
        };
        let secured = if access.is_unrestricted(&product.manifest) {
            None
        } else {
            Some(compile(
                &shared.state,
                &qualified,
                resolved.plan.schema(),
                &shared.principal,
                &access,
            )?)
        };
        shared
            .reads
            .resolved(&qualified, resolved.delta_version, access.policy_names());
        // Freshness SLA (time travel is exempt: it asks for old data on purpose).
        let sla = match as_of {
            Some(_) => SlaVerdict::Fresh,
            None => {
                query_sla(
                    &shared.quality.observations,
                    &shared.runtime,
                    &shared.mesh,
                    self.domain(),
                    product,
                    &shared.principal,
                    &shared.delta_cache,
                )
                .await
            }
        };
        if let Some(b) = sla.breach() {
            shared.reads.sla_breach(&qualified, b.to_string());
        }
        let table = ProductTable::try_new(
            qualified.clone(),
            resolved.plan,
            secured,
            Some(Arc::clone(&shared.reads)),
        )?
        .with_deprecations(Deprecations::of(&product.manifest))
        .with_cache_facts(resolved.delta_version, product.manifest.result_cache)
        .with_log_statistics(resolved.log_statistics);
        match sla {
            SlaVerdict::Refused(breach) => Ok(Some(Arc::new(RefusedTable::new(
                Arc::new(table),
                qualified,
                breach,
                shared.mesh.config.stale_reader_group.clone(),
            )))),
            _ => Ok(Some(Arc::new(table))),
        }
    }

    async fn table_type(&self, name: &str) -> DfResult<Option<TableType>> {
        // Answered from the catalog: listing tables never touches storage.
        Ok(self.table_exist(name).then_some(TableType::Base))
    }

    fn table_exist(&self, name: &str) -> bool {
        let (name, _) = split_versioned(name);
        self.domain().product(name).is_some() && self.shared.visible(self.domain().name(), name)
    }

    fn register_table(
        &self,
        name: String,
        _table: Arc<dyn TableProvider>,
    ) -> DfResult<Option<Arc<dyn TableProvider>>> {
        Err(DataFusionError::Plan(format!(
            "meshql is read-only: cannot create table `{name}`"
        )))
    }
}
