//! Readiness and resource gauges of a running engine, for `/readyz` and `/metrics`: whether
//! every domain's store is configured, and how much of the memory pool and spill space is used.

use datafusion::execution::object_store::ObjectStoreUrl;
use serde::Serialize;

use crate::session::MeshEngine;

/// Whether one domain's bucket has a store registered with the engine.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DomainReadiness {
    pub domain: String,
    pub ready: bool,
    /// Why not, when not ready.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// The engine's resources in use now.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct ResourceUsage {
    /// Bytes reserved in the memory pool.
    pub memory_pool_used: usize,
    /// Bytes of spill files on disk.
    pub spill_disk_bytes: u64,
    /// Queries waiting for admission.
    pub queries_queued: usize,
}

impl MeshEngine {
    /// One entry per configured domain, in configuration order. Checks configuration only (no
    /// request to the storage), so a slow bucket does not make the server unready.
    pub fn readiness(&self) -> Vec<DomainReadiness> {
        self.mesh()
            .domains
            .iter()
            .map(|d| {
                let bucket = &d.config.bucket;
                let problem = ObjectStoreUrl::parse(&bucket[..url::Position::BeforePath])
                    .map_err(|e| e.to_string())
                    .and_then(|u| {
                        self.runtime()
                            .object_store(&u)
                            .map(|_| ())
                            .map_err(|e| e.to_string())
                    })
                    .err();
                DomainReadiness {
                    domain: d.name().to_string(),
                    ready: problem.is_none(),
                    problem,
                }
            })
            .collect()
    }

    /// Memory pool and spill space in use now.
    pub fn resource_usage(&self) -> ResourceUsage {
        let runtime = self.runtime();
        ResourceUsage {
            memory_pool_used: runtime.memory_pool.reserved(),
            spill_disk_bytes: runtime.disk_manager.used_disk_space(),
            queries_queued: self.admission_stats().queued,
        }
    }
}
