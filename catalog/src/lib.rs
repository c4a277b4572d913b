//! meshql catalog: the model of a data mesh.
//!
//! Domains own buckets; each domain publishes data products described by a manifest whose
//! contract (columns, types, classifications, SLA) is the product's public interface. This crate
//! loads and validates the mesh configuration (`meshql.toml`) and the product manifests, and knows
//! nothing of DataFusion or Flight SQL.

mod config;
mod error;
mod manifest;
mod mesh;
mod policy;
mod principal;
mod types;

pub use config::{
    AuditConfig, DomainConfig, HttpConfig, JwtConfig, MeshConfig, ServerConfig, TelemetryConfig,
    TlsConfig, UserConfig, DEFAULT_BIND, DEFAULT_MAX_MESSAGE_BYTES, ENV_PREFIX,
};
pub use error::{CatalogError, Problem, Result};
pub use manifest::{ColumnSpec, Format, ProductManifest, Sla};
pub use mesh::{Domain, Mesh, Product, GLOBAL_POLICY_DIR, POLICY_FILE};
pub use policy::{
    substitute, ColumnAccess, Grant, Mask, MaskTarget, Policies, PolicySet, ProductAccess,
    RowFilter, Selector,
};
pub use principal::{hash_password, verify_password, Principal};
pub use types::ColumnType;
