//! Self-serve publishing: validating a proposed manifest against the whole catalog, finding the
//! published version it replaces, and installing it atomically so a running server picks it up.
//!
//! The flow a CLI follows: [`InstallPlan::prepare`] (parse, check the domain, load the catalog as
//! it would be with the manifest installed: every problem by file and field) ->
//! [`InstallPlan::diff`] (contract evolution verdict) -> data and quality checks (engine, on
//! [`InstallPlan::mesh`]) -> [`InstallPlan::install`] (temporary file in the same folder, fsync,
//! rename, fsync of the folder; refused if the installed manifest changed since the plan).

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::MeshConfig;
use crate::error::{CatalogError, Problem, Result};
use crate::evolution::{diff, ContractDiff};
use crate::manifest::ProductManifest;
use crate::mesh::{into_problems, Mesh, Product};

/// A validated manifest ready to be installed into the catalog.
#[derive(Debug, Clone)]
pub struct InstallPlan {
    /// The file the manifest was read from (problems name it).
    pub source: PathBuf,
    /// Where it will be installed: the file of the published version, or
    /// `<catalog.dir>/<domain>/products/<name>.toml` for a new product.
    pub target: PathBuf,
    /// The manifest text, installed verbatim.
    pub text: String,
    pub proposed: ProductManifest,
    /// The published version (as on disk now), if any.
    pub published: Option<Product>,
    /// The whole catalog as it will be once installed (for data and quality checks).
    pub mesh: Mesh,
    /// The target's text when planned (None: no file), to refuse a concurrent change.
    published_text: Option<String>,
}

impl InstallPlan {
    /// Reads the manifest at `manifest_file` and plans its installation into the catalog of
    /// `config_file`. Problems (in the manifest, or anywhere in the catalog as it would be)
    /// come back as [`CatalogError::Invalid`], those of the manifest naming `manifest_file`.
    pub fn prepare(config_file: &Path, manifest_file: &Path) -> Result<InstallPlan> {
        let text = fs::read_to_string(manifest_file).map_err(|source| CatalogError::Io {
            path: manifest_file.to_path_buf(),
            source,
        })?;
        Self::prepare_text(config_file, manifest_file, &text)
    }

    /// Like [`InstallPlan::prepare`] with the manifest text given; `source` names it in
    /// problems.
    pub fn prepare_text(config_file: &Path, source: &Path, text: &str) -> Result<InstallPlan> {
        let config_text = fs::read_to_string(config_file).map_err(|e| CatalogError::Io {
            path: config_file.to_path_buf(),
            source: e,
        })?;
        let config = MeshConfig::parse(config_file, &config_text, std::env::vars())
            .map_err(CatalogError::Invalid)?;
        let proposed = ProductManifest::parse(source, text).map_err(CatalogError::Invalid)?;
        if config.domain(&proposed.domain).is_none() {
            return Err(CatalogError::Invalid(vec![Problem::new(
                source,
                "domain",
                format!(
                    "unknown domain `{}` (configured domains: {})",
                    proposed.domain,
                    config
                        .domains
                        .iter()
                        .map(|d| d.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )]));
        }
        let products_dir = config.catalog_dir.join(&proposed.domain).join("products");
        let (target, published) = find_target(&products_dir, &proposed, source)?;
        let published_text = match fs::read_to_string(&target) {
            Ok(t) => Some(t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(source) => {
                return Err(CatalogError::Io {
                    path: target,
                    source,
                })
            }
        };
        let mesh = Mesh::load_manifests_with(config, Some((&target, text))).map_err(|e| {
            // Problems of the proposed manifest name the file the user gave.
            let mut problems = into_problems(e, config_file);
            for p in &mut problems {
                if p.file == target {
                    p.file = source.to_path_buf();
                }
            }
            CatalogError::Invalid(problems)
        })?;
        Ok(InstallPlan {
            source: source.to_path_buf(),
            target,
            text: text.to_string(),
            proposed,
            published,
            mesh,
            published_text,
        })
    }

    /// The contract diff against the published version ([`ContractDiff::new_product`] when
    /// there is none).
    pub fn diff(&self) -> ContractDiff {
        match &self.published {
            Some(p) => diff(&p.manifest, &self.proposed),
            None => ContractDiff::new_product(&self.proposed),
        }
    }

    /// Installs the manifest atomically. Refused with [`CatalogError::Changed`] when the
    /// installed manifest changed (or appeared) since the plan was made.
    pub fn install(&self) -> Result<PathBuf> {
        let now = match fs::read_to_string(&self.target) {
            Ok(t) => Some(t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(source) => {
                return Err(CatalogError::Io {
                    path: self.target.clone(),
                    source,
                })
            }
        };
        if now != self.published_text {
            return Err(CatalogError::Changed {
                path: self.target.clone(),
            });
        }
        write_atomically(&self.target, &self.text)?;
        Ok(self.target.clone())
    }
}

/// The file a manifest for `proposed` goes to, with the published product it replaces.
fn find_target(
    products_dir: &Path,
    proposed: &ProductManifest,
    source: &Path,
) -> Result<(PathBuf, Option<Product>)> {
    let mut files: Vec<PathBuf> = match fs::read_dir(products_dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(source) => {
            return Err(CatalogError::Io {
                path: products_dir.to_path_buf(),
                source,
            })
        }
    };
    files.sort();
    let default = products_dir.join(format!("{}.toml", proposed.name));
    let mut default_holds: Option<std::result::Result<ProductManifest, Vec<Problem>>> = None;
    for file in files {
        let text = fs::read_to_string(&file).map_err(|source| CatalogError::Io {
            path: file.clone(),
            source,
        })?;
        let parsed = ProductManifest::parse(&file, &text);
        if let Ok(m) = &parsed {
            if m.domain == proposed.domain && m.name == proposed.name {
                let product = Product {
                    manifest: m.clone(),
                    file: file.clone(),
                };
                return Ok((file, Some(product)));
            }
        }
        if file == default {
            default_holds = Some(parsed);
        }
    }
    match default_holds {
        None => Ok((default, None)),
        Some(Ok(other)) => Err(CatalogError::Invalid(vec![Problem::new(
            source,
            "name",
            format!(
                "{} already holds product `{}`; rename that file before publishing `{}`",
                default.display(),
                other.qualified_name(),
                proposed.qualified_name()
            ),
        )])),
        Some(Err(problems)) => {
            let mut out = vec![Problem::new(
                source,
                "name",
                format!(
                    "the installed manifest {} does not load, so its published version is unknown; fix or remove it first",
                    default.display()
                ),
            )];
            out.extend(problems);
            Err(CatalogError::Invalid(out))
        }
    }
}

/// Writes `text` to `path` atomically: a temporary file in the same folder (named so that no
/// catalog load or fingerprint picks it up: `.<name>.<pid>.<nanos>.tmp`), flushed to disk,
/// renamed over `path`, then the folder flushed. Readers see the old file or the new one, never
/// a part. The folder is created if missing.
pub fn write_atomically(path: &Path, text: &str) -> Result<()> {
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |source| CatalogError::Io { path: p, source }
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&dir).map_err(io(&dir))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| "manifest".to_string());
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let tmp = dir.join(format!(".{name}.{}.{nanos}.tmp", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()
    };
    if let Err(e) = write() {
        let _ = fs::remove_file(&tmp);
        return Err(io(&tmp)(e));
    }
    if let Err(e) = fs::rename(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(io(path)(e));
    }
    // Make the rename itself durable. Opening a folder is not possible everywhere; the rename
    // is done either way.
    #[cfg(unix)]
    if let Ok(d) = fs::File::open(&dir) {
        d.sync_all().map_err(io(&dir))?;
    }
    Ok(())
}
