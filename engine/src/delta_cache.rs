//! Delta snapshot cache: a product's latest Delta snapshot is kept and reused for
//! `catalog.refresh_interval`; after that the next query brings it up to date incrementally
//! (reading only the new commits), instead of replaying the log on every query.
//! Time-travel reads bypass the cache. What is kept per version (the column statistics folded
//! from the log, [`crate::delta_stats`], and a plain version's files, [`crate::delta_files`])
//! is kept beside it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use datafusion::execution::runtime_env::RuntimeEnv;
use deltalake::DeltaTable;
use url::Url;

use crate::delta_files::VersionFacts;
use crate::product::{open_delta, ReadFailure};

#[derive(Debug)]
pub(crate) struct DeltaCache {
    refresh: Duration,
    tables: Mutex<HashMap<String, (DeltaTable, Instant)>>,
    /// Per table URL: the version last read and what is kept of it.
    versions: Mutex<HashMap<String, (i64, VersionFacts)>>,
}

impl DeltaCache {
    pub(crate) fn new(refresh: Duration) -> Self {
        Self {
            refresh,
            tables: Mutex::new(HashMap::new()),
            versions: Mutex::new(HashMap::new()),
        }
    }

    /// What is kept of the table at `url` as of `version` (see [`VersionFacts`]): `compute`d
    /// once per version (every time when the version is unknown).
    pub(crate) fn version_facts(
        &self,
        url: &Url,
        version: Option<i64>,
        compute: impl FnOnce() -> VersionFacts,
    ) -> VersionFacts {
        let Some(version) = version else {
            return compute();
        };
        let key = url.to_string();
        let lock = || self.versions.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((v, kept)) = lock().get(&key) {
            if *v == version {
                return kept.clone();
            }
        }
        let computed = compute();
        lock().insert(key, (version, computed.clone()));
        computed
    }

    /// The latest snapshot of the Delta table at `url`, at most `refresh` old.
    pub(crate) async fn latest(
        &self,
        runtime: &Arc<RuntimeEnv>,
        url: &Url,
    ) -> Result<DeltaTable, ReadFailure> {
        let key = url.to_string();
        let cached = self
            .tables
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .cloned();
        let table = match cached {
            Some((table, at)) if at.elapsed() < self.refresh => return Ok(table),
            Some((mut table, _)) => match table.update_incremental(None).await {
                Ok(()) => table,
                Err(e) => {
                    self.tables
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&key);
                    return Err(ReadFailure::new(
                        format!("cannot refresh the Delta table: {e}"),
                        e,
                    ));
                }
            },
            None => open_delta(runtime, url, None).await?,
        };
        self.tables
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, (table.clone(), Instant::now()));
        Ok(table)
    }
}
