//! The `mesh` catalog as DataFusion sees it: one schema per domain, one table per product,
//! plus the `meshql` system schema. Built per query session, for that session's principal.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::{CatalogProvider, SchemaProvider, TableProvider};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::prelude::SessionConfig;
use meshql_catalog::{Domain, Mesh};

use crate::product::resolve_product;
use crate::system::SYSTEM_SCHEMA;

/// Name of the catalog holding the mesh.
pub const MESH_CATALOG: &str = "mesh";

#[derive(Debug)]
pub(crate) struct MeshCatalog {
    domains: Vec<Arc<DomainSchema>>,
    system: Arc<dyn SchemaProvider>,
}

impl MeshCatalog {
    pub(crate) fn new(
        mesh: &Arc<Mesh>,
        runtime: &Arc<RuntimeEnv>,
        config: &SessionConfig,
        system: Arc<dyn SchemaProvider>,
    ) -> Self {
        let domains = mesh
            .domains
            .iter()
            .map(|d| {
                Arc::new(DomainSchema {
                    domain: d.clone(),
                    runtime: Arc::clone(runtime),
                    config: config.clone(),
                })
            })
            .collect();
        Self { domains, system }
    }
}

impl CatalogProvider for MeshCatalog {
    fn schema_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .domains
            .iter()
            .map(|d| d.domain.name().to_string())
            .collect();
        names.push(SYSTEM_SCHEMA.to_string());
        names
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        if name == SYSTEM_SCHEMA {
            return Some(Arc::clone(&self.system));
        }
        self.domains
            .iter()
            .find(|d| d.domain.name() == name)
            .map(|d| Arc::clone(d) as Arc<dyn SchemaProvider>)
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

/// A domain's products as a schema.
#[derive(Debug)]
pub(crate) struct DomainSchema {
    domain: Domain,
    runtime: Arc<RuntimeEnv>,
    config: SessionConfig,
}

#[async_trait]
impl SchemaProvider for DomainSchema {
    fn table_names(&self) -> Vec<String> {
        self.domain
            .products
            .iter()
            .map(|p| p.manifest.name.clone())
            .collect()
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        let Some(product) = self.domain.product(name) else {
            return Ok(None);
        };
        let table = resolve_product(&self.runtime, &self.config, &self.domain, product).await?;
        Ok(Some(table))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.domain.product(name).is_some()
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
