//! meshql catalog: the model of a data mesh.
//!
//! Domains own buckets; each domain publishes data products described by a manifest whose
//! contract (columns, types, classifications, SLA) is the product's public interface. This crate
//! loads and validates the mesh configuration (`meshql.toml`) and the product manifests (with
//! their quality rules and lineage), compares contract versions, detects catalog changes for hot
//! reload and installs manifests atomically. It knows nothing of DataFusion or Flight SQL.

mod config;
mod error;
mod evolution;
mod fingerprint;
mod lineage;
mod manifest;
mod mesh;
mod policy;
mod principal;
mod publish;
mod quality;
mod types;

pub use config::{
    AuditConfig, ClusterConfig, DomainConfig, EngineConfig, HttpConfig, JwtConfig, LimitsConfig,
    MeshConfig, QualityConfig, ServerConfig, TelemetryConfig, TlsConfig, UserConfig,
    DATAFUSION_KEYS, DEFAULT_BIND, DEFAULT_CLUSTER_SECRET_ENV, DEFAULT_JWT_LEEWAY_SECS,
    DEFAULT_JWT_USER_PREFIX, DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_QUALITY_CHECK_INTERVAL_SECS,
    DEFAULT_QUALITY_MAX_CONCURRENT_CHECKS, DEFAULT_QUALITY_MEMORY_LIMIT_BYTES,
    DEFAULT_SCAN_BYTES_PER_PARTITION, DEFAULT_STALE_READER_GROUP, ENV_PREFIX,
};
pub use error::{CatalogError, Problem, Result};
pub use evolution::{diff, is_major_bump, is_widening, Change, ChangeKind, ContractDiff, Verdict};
pub use fingerprint::CatalogFingerprint;
pub use lineage::{Input, LineageEdge};
pub use manifest::{ColumnSpec, Deprecation, Format, OnBreach, ProductManifest, Sla};
pub use mesh::{Domain, Mesh, Product, GLOBAL_POLICY_DIR, POLICY_FILE};
pub use policy::{
    substitute, ColumnAccess, Grant, Mask, MaskTarget, Policies, PolicySet, ProductAccess,
    RowFilter, Selector,
};
pub use principal::{hash_password, verify_password, Principal};
pub use publish::{write_atomically, InstallPlan};
pub use quality::{QualityKind, QualityRule, RuleLiteral, Severity, RULE_KINDS};
pub use types::ColumnType;
