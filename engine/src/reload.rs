//! Hot reload of the catalog: the [`Reloader`] looks for changes every
//! `catalog.refresh_interval`, loads a changed catalog completely, checks it as `catalog lint`
//! does, and swaps it in atomically; a change that does not validate is rejected as a whole and
//! the previous catalog stays in force. [`CatalogStatus`] says what is in force and what was
//! rejected (`meshql.catalog_status`, a warn-level log line and the metrics
//! `meshql_catalog_reloads_total{outcome}` and `meshql_catalog_generation`).
//!
//! A reload covers what the catalog is made of: domains (with their buckets), product
//! manifests, global and domain policies, and users (through a [`ReloadHook`]: the server's
//! authenticator). The server's own settings (`[server]`, `[engine]`, `[limits]`, `[audit]`,
//! `[http]`, `[cluster]`, `[telemetry]`) are read at start only; a change to them is applied by a
//! restart.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use meshql_catalog::{CatalogFingerprint, Mesh, Problem};

use crate::session::MeshEngine;
use crate::snapshot::CatalogSnapshot;

use crate::telemetry::{
    CATALOG_GENERATION as GENERATION_METRIC, CATALOG_RELOADS as RELOADS_METRIC,
};

/// What must happen outside the engine when a catalog comes into force (the authenticator
/// picks up the users), in two steps: given the new catalog, check it and return the commit to
/// run when it is swapped in, or the problems that reject it. The check must have no effect.
#[derive(Clone)]
pub struct ReloadHook(pub Arc<ReloadCheck>);

/// The first step of a [`ReloadHook`]: check the new catalog, return its commit or problems.
pub type ReloadCheck = dyn Fn(&Mesh) -> Result<ReloadCommit, Vec<Problem>> + Send + Sync;

/// The second step of a [`ReloadHook`]: run once, just before the new catalog is swapped in.
pub type ReloadCommit = Box<dyn FnOnce() + Send>;

impl std::fmt::Debug for ReloadHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReloadHook")
    }
}

/// A change that was rejected: when, and every problem by file and field.
#[derive(Debug, Clone)]
pub struct Rejection {
    pub at: SystemTime,
    pub problems: Vec<Problem>,
    /// The files whose change was rejected (empty when not known).
    pub changed: Vec<PathBuf>,
}

/// What is in force, and the last rejected change while it is the latest change.
#[derive(Debug, Clone)]
pub struct CatalogStatus {
    pub generation: u64,
    /// When the catalog in force came into force.
    pub since: SystemTime,
    /// How many files and folders it was read from, when known (a reloader scanned them).
    pub files: Option<usize>,
    /// When a reloader last looked for changes.
    pub last_checked: Option<SystemTime>,
    /// The last change that was rejected, if no change was applied after it.
    pub rejected: Option<Rejection>,
    /// Reloads applied and rejected since start.
    pub applied: u64,
    pub rejections: u64,
}

/// The mutable part of the status (the snapshot itself lives in the engine's swap).
#[derive(Debug, Default)]
pub(crate) struct StatusState {
    files: Option<usize>,
    last_checked: Option<SystemTime>,
    rejected: Option<Rejection>,
    applied: u64,
    rejections: u64,
}

/// The result of one look for changes.
#[derive(Debug, Clone)]
pub enum ReloadOutcome {
    /// Nothing the catalog is made of changed.
    Unchanged,
    /// A new catalog is in force.
    Applied {
        generation: u64,
        changed: Vec<PathBuf>,
    },
    /// The change did not validate; the previous catalog stays in force.
    Rejected { problems: Vec<Problem> },
}

impl MeshEngine {
    /// What is in force and what was last rejected.
    pub fn catalog_status(&self) -> CatalogStatus {
        let snapshot = self.snapshot();
        let state = self.status_state();
        CatalogStatus {
            generation: snapshot.generation(),
            since: snapshot.since(),
            files: state.files,
            last_checked: state.last_checked,
            rejected: state.rejected.clone(),
            applied: state.applied,
            rejections: state.rejections,
        }
    }

    /// Checks `mesh` as `catalog lint` does on the engine's side (every policy and quality rule
    /// type-checked against the contracts, every domain's bucket usable) and, with `hook`, as the hook does;
    /// then swaps it in atomically. Sessions created from now on see it; sessions (and queries)
    /// already running keep theirs. On problems nothing changes, the rejection is recorded in
    /// the status and logged, and the problems are returned.
    pub fn install_catalog(
        &self,
        mesh: Mesh,
        hook: Option<&ReloadHook>,
    ) -> Result<Arc<CatalogSnapshot>, Vec<Problem>> {
        self.install_catalog_with(mesh, hook, None, Vec::new())
    }

    fn install_catalog_with(
        &self,
        mesh: Mesh,
        hook: Option<&ReloadHook>,
        files: Option<usize>,
        changed: Vec<PathBuf>,
    ) -> Result<Arc<CatalogSnapshot>, Vec<Problem>> {
        let mut problems: Vec<Problem> = self
            .check_policies_of(&mesh)
            .into_iter()
            .chain(crate::quality::lint_quality(&mesh))
            .map(|(file, field, message)| Problem::new(file, field, message))
            .collect();
        if let Err(e) = crate::buckets::register_domain_stores(self.runtime(), &mesh) {
            problems.extend(engine_problems(e, &mesh.config.file));
        }
        let commit = match hook.map(|h| (h.0)(&mesh)) {
            Some(Ok(c)) => Some(c),
            Some(Err(p)) => {
                problems.extend(p);
                None
            }
            None => None,
        };
        if !problems.is_empty() {
            self.record_rejection(problems.clone(), changed);
            return Err(problems);
        }
        let mesh = Arc::new(mesh);
        let mut state = self.status_state();
        if let Some(commit) = commit {
            commit();
        }
        let generation = self.snapshot().generation() + 1;
        let snapshot = Arc::new(self.make_snapshot(generation, mesh));
        self.swap_snapshot(Arc::clone(&snapshot));
        if files.is_some() {
            state.files = files;
        }
        state.rejected = None;
        state.applied += 1;
        drop(state);
        metrics::counter!(RELOADS_METRIC, "outcome" => "applied").increment(1);
        metrics::gauge!(GENERATION_METRIC).set(generation as f64);
        tracing::info!(
            generation,
            products = snapshot.mesh().products().count(),
            changed = ?changed,
            "catalog reloaded"
        );
        Ok(snapshot)
    }

    /// Records (and logs) a rejected change.
    fn record_rejection(&self, problems: Vec<Problem>, changed: Vec<PathBuf>) {
        let generation = self.snapshot().generation();
        tracing::warn!(
            generation,
            problems = problems.len(),
            changed = ?changed,
            "catalog change rejected; the catalog in force stays: {}",
            problems
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join("; ")
        );
        metrics::counter!(RELOADS_METRIC, "outcome" => "rejected").increment(1);
        let mut state = self.status_state();
        state.rejections += 1;
        state.rejected = Some(Rejection {
            at: SystemTime::now(),
            problems,
            changed,
        });
    }
}

/// The problems of an engine error about a catalog (a bucket that cannot be used).
fn engine_problems(e: crate::error::EngineError, config_file: &Path) -> Vec<Problem> {
    match e {
        crate::error::EngineError::Catalog(meshql_catalog::CatalogError::Invalid(p)) => p,
        other => vec![Problem::new(config_file, "", other.to_string())],
    }
}

/// Looks for catalog changes and applies them (see the module documentation). One per server;
/// [`Reloader::spawn`] runs it every `catalog.refresh_interval`, [`Reloader::check_now`] once
/// (an HTTP endpoint or a test may call it).
#[derive(Debug)]
pub struct Reloader {
    engine: MeshEngine,
    config_file: PathBuf,
    hook: Option<ReloadHook>,
    /// The fingerprint of the last catalog tried (applied or rejected); held while a check
    /// runs, so checks never overlap.
    seen: tokio::sync::Mutex<CatalogFingerprint>,
}

/// Stops the reloader task when dropped.
#[derive(Debug)]
pub struct ReloaderTask(tokio::task::JoinHandle<()>);

impl Drop for ReloaderTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Reloader {
    /// A reloader of `engine`'s catalog from `config_file`; `initial` is the fingerprint
    /// scanned *before* the catalog in force was loaded (so a change racing with that load is
    /// seen at the first check).
    pub fn new(
        engine: MeshEngine,
        config_file: &Path,
        initial: CatalogFingerprint,
        hook: Option<ReloadHook>,
    ) -> Arc<Self> {
        engine.status_state().files = Some(initial.len());
        metrics::gauge!(GENERATION_METRIC).set(engine.snapshot().generation() as f64);
        Arc::new(Self {
            engine,
            config_file: config_file.to_path_buf(),
            hook,
            seen: tokio::sync::Mutex::new(initial),
        })
    }

    /// Runs [`Reloader::check_now`] every `interval` until the returned task is dropped.
    pub fn spawn(self: &Arc<Self>, interval: Duration) -> ReloaderTask {
        let this = Arc::clone(self);
        ReloaderTask(tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                this.check_now().await;
            }
        }))
    }

    /// Rescans the catalog's files; when anything changed, loads the catalog completely and
    /// installs it, or rejects it as a whole. A rejected catalog is not tried again until its
    /// files change again.
    pub async fn check_now(&self) -> ReloadOutcome {
        let mut seen = self.seen.lock().await;
        let previous = seen.clone();
        let config = self.config_file.clone();
        let scanned = tokio::task::spawn_blocking(move || {
            let now = previous.rescan(&config);
            if now == previous {
                return (now, None);
            }
            let changed = previous.changed_paths(&now);
            (now, Some((changed, Mesh::load_checked(&config))))
        })
        .await;
        self.engine.status_state().last_checked = Some(SystemTime::now());
        let (now, loaded) = match scanned {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "the catalog scan did not complete");
                return ReloadOutcome::Unchanged;
            }
        };
        let Some((changed, loaded)) = loaded else {
            *seen = now;
            return ReloadOutcome::Unchanged;
        };
        let files = now.len();
        *seen = now;
        let mesh = match loaded {
            Ok(m) => m,
            Err(problems) => {
                self.engine
                    .record_rejection(problems.clone(), changed.clone());
                return ReloadOutcome::Rejected { problems };
            }
        };
        let engine = self.engine.clone();
        let hook = self.hook.clone();
        let installed = tokio::task::spawn_blocking(move || {
            engine
                .install_catalog_with(mesh, hook.as_ref(), Some(files), changed.clone())
                .map(|s| (s.generation(), changed))
        })
        .await;
        match installed {
            Ok(Ok((generation, changed))) => ReloadOutcome::Applied {
                generation,
                changed,
            },
            Ok(Err(problems)) => ReloadOutcome::Rejected { problems },
            Err(e) => {
                tracing::error!(error = %e, "installing the catalog did not complete");
                ReloadOutcome::Unchanged
            }
        }
    }
}
