//! The catalog in force: one immutable [`CatalogSnapshot`] per loaded catalog, swapped
//! atomically by a reload.
//!
//! Every query session takes the current snapshot once, when it is created, and uses only that
//! one: a query in flight finishes on the catalog it started with, and the next session sees the
//! new one. Whatever is derived from a catalog and stays valid as long as it does belongs here
//! (today: the redaction rules built from the buckets and product locations; later: resolved
//! table providers, file listings, Parquet metadata, compiled policies): it is built (or filled
//! lazily) per snapshot and dropped with it, so it can never outlive the catalog it was derived
//! from. The generation numbers snapshots in the order they came into force (1 is the catalog
//! the engine started with); caches keyed by it are invalidated by a reload for free.
//!
//! Resolved Parquet products are kept here: a product's location kind (file or directory), its
//! inferred schema and its contract projection are found by the first query that names it and
//! reused by the next ones for `catalog.refresh_interval` (the files themselves are still listed
//! by every query, so new files are read at once; see docs/limits.md "Planning caches").

use std::sync::Arc;
use std::time::SystemTime;

use meshql_catalog::Mesh;

use crate::product::ResolvedProduct;

/// Resolved Parquet products kept at most, per snapshot.
const MAX_RESOLVED: u64 = 100_000;

/// One loaded, validated catalog and what the engine derives from it.
#[derive(Debug)]
pub struct CatalogSnapshot {
    generation: u64,
    mesh: Arc<Mesh>,
    /// When this snapshot came into force.
    since: SystemTime,
    /// Replacements that take bucket roots and local paths out of caller-facing texts.
    pub(crate) redaction: Arc<Vec<(String, String)>>,
    /// Parquet products resolved by earlier queries, by qualified name (no time travel).
    pub(crate) resolved: moka::sync::Cache<String, ResolvedProduct>,
}

impl CatalogSnapshot {
    pub(crate) fn new(generation: u64, mesh: Arc<Mesh>, redaction: Vec<(String, String)>) -> Self {
        let resolved = moka::sync::Cache::builder()
            .max_capacity(MAX_RESOLVED)
            .time_to_live(mesh.config.refresh_interval)
            .build();
        Self {
            generation,
            mesh,
            since: SystemTime::now(),
            redaction: Arc::new(redaction),
            resolved,
        }
    }

    /// 1 for the catalog the engine started with, +1 for every reload applied since.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The catalog.
    pub fn mesh(&self) -> &Arc<Mesh> {
        &self.mesh
    }

    /// When this snapshot came into force.
    pub fn since(&self) -> SystemTime {
        self.since
    }
}
