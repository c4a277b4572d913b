//! Domain buckets: one object store per domain, registered with the engine's runtime.
//!
//! This is the seam for remote storage. Today `file://` buckets are served by the local file
//! system store; S3, GCS and Azure buckets (with per-domain credentials) plug in here.

use std::sync::Arc;

use datafusion::execution::runtime_env::RuntimeEnv;
use meshql_catalog::Mesh;
use object_store::local::LocalFileSystem;
use object_store::ObjectStore;
use url::Url;

use crate::error::{EngineError, Result};

/// Creates and registers the object store of every domain's bucket.
pub(crate) fn register_domain_stores(runtime: &RuntimeEnv, mesh: &Mesh) -> Result<()> {
    for domain in &mesh.domains {
        let url = &domain.config.bucket;
        let store = store_for_bucket(url).map_err(|message| {
            EngineError::Catalog(meshql_catalog::CatalogError::Invalid(vec![
                meshql_catalog::Problem::new(
                    &mesh.config.file,
                    format!("domains.{}.bucket", domain.name()),
                    message,
                ),
            ]))
        })?;
        runtime.register_object_store(url, store);
    }
    Ok(())
}

fn store_for_bucket(url: &Url) -> std::result::Result<Arc<dyn ObjectStore>, String> {
    match url.scheme() {
        "file" => Ok(Arc::new(LocalFileSystem::new())),
        other => Err(format!(
            "`{other}://` buckets are not supported by this build yet; use a file:// bucket"
        )),
    }
}
