//! meshql engine: DataFusion over the mesh catalog.
//!
//! Resolves `domain.product` names to Parquet and Delta tables in each domain's bucket, exposes
//! exactly each product's contract, and runs SQL for a principal within a read-only surface,
//! streaming results in client-facing Arrow types.

mod audit;
mod buckets;
mod contract;
mod delta_cache;
pub mod demo;
mod error;
mod freshness;
pub mod output;
mod policy;
mod policy_exec;
mod product;
mod product_status;
mod provider;
pub mod quality;
mod quality_store;
mod session;
mod system;
mod time_travel;

pub use audit::{AuditRecord, AUDIT_ADMIN_GROUP};
pub use contract::{arrow_type, contract_schema};
pub use error::{EngineError, Result};
pub use product::ProductRead;
pub use provider::MESH_CATALOG;
pub use session::{BatchStream, EngineOptions, MeshEngine, PlannedQuery, QuerySession, TableInfo};
pub use system::SYSTEM_SCHEMA;

pub use meshql_catalog as catalog;
