//! meshql engine: DataFusion over the mesh catalog.
//!
//! Resolves `domain.product` names to Parquet and Delta tables in each domain's bucket, exposes
//! exactly each product's contract, and runs SQL for a principal within a read-only surface,
//! streaming results in client-facing Arrow types.

mod admission;
mod audit;
mod buckets;
mod catalog_status;
mod conjunctions;
mod contract;
mod decimal_arith;
mod delta_cache;
mod delta_files;
mod delta_stats;
pub mod demo;
mod error;
mod executor;
mod filter_barrier;
mod freshness;
mod health;
mod impact;
mod limit_barrier;
pub mod limits;
mod memory;
pub mod output;
mod policy;
mod policy_exec;
mod product;
mod product_status;
mod provider;
pub mod quality;
mod quality_store;
mod read_only;
mod reload;
mod result_cache;
mod row_filters;
mod scan;
mod session;
mod shared_subplan;
mod snapshot;
mod store_metrics;
mod system;
pub mod telemetry;
mod time_travel;
mod usage;
mod wrapper_expr;

pub use admission::AdmissionStats;
pub use audit::{AuditRecord, AuditStats, WorkersUsed, AUDIT_ADMIN_GROUP};
pub use buckets::register_domain_stores;
pub use contract::{arrow_type, contract_schema};
pub use error::{BoxError, EngineError, Result};
pub use health::{DomainReadiness, ResourceUsage};
pub use impact::{usage_of_columns, ColumnUsage, PrincipalUsage, QueryUsage};
pub use limit_barrier::LimitBarrierExec;
pub use limits::Limits;
pub use policy_exec::PolicyExec;
pub use product::ProductRead;
pub use provider::MESH_CATALOG;
pub use reload::{
    CatalogStatus, Rejection, ReloadCheck, ReloadCommit, ReloadHook, ReloadOutcome, Reloader,
    ReloaderTask,
};
pub use row_filters::{KEEP_IF_PASSING, KEEP_IF_PASSING_FROM_ABOVE, SAMPLE_ROWS};
pub use scan::{attach_product, ProductScanExec};
pub use session::{
    BatchStream, EngineOptions, MeshEngine, PlannedQuery, QuerySession, SessionHook, TableInfo,
    CALLER_STACK_SIZE,
};
pub use snapshot::CatalogSnapshot;
pub use system::SYSTEM_SCHEMA;
pub use usage::{ConsumerUsage, DayUsage, ProductUsage};

pub use meshql_catalog as catalog;
