//! Loading a whole mesh: the configuration plus every domain's product manifests.
//!
//! Layout on disk: `<catalog.dir>/<domain>/products/<product>.toml`. Loading validates
//! everything (configuration, manifests with their quality rules, lineage across products,
//! policies and users) and reports every problem with its file and field.

use std::cell::RefCell;
use std::path::{Path, PathBuf};

use crate::config::{DomainConfig, MeshConfig};
use crate::error::{CatalogError, Problem, Result};
use crate::lineage::check_lineage;
use crate::manifest::ProductManifest;
use crate::policy::{parse_policy_file, Policies, ProductAccess};
use crate::principal::Principal;

/// Folder (inside `catalog.dir`) of the platform's global policies.
pub const GLOBAL_POLICY_DIR: &str = "_global";
/// File name of a policy file, in `_global/` or a domain's folder.
pub const POLICY_FILE: &str = "policies.toml";

/// A loaded, validated mesh.
#[derive(Debug, Clone)]
pub struct Mesh {
    pub config: MeshConfig,
    pub domains: Vec<Domain>,
    pub policies: Policies,
}

/// A domain with its products.
#[derive(Debug, Clone)]
pub struct Domain {
    pub config: DomainConfig,
    pub products: Vec<Product>,
}

/// A data product: its manifest and where the manifest came from.
#[derive(Debug, Clone)]
pub struct Product {
    pub manifest: ProductManifest,
    /// The manifest file.
    pub file: PathBuf,
}

impl Product {
    /// `domain.product`.
    pub fn qualified_name(&self) -> String {
        format!("{}.{}", self.manifest.domain, self.manifest.name)
    }
}

impl Domain {
    pub fn name(&self) -> &str {
        &self.config.name
    }

    pub fn product(&self, name: &str) -> Option<&Product> {
        self.products.iter().find(|p| p.manifest.name == name)
    }
}

impl Mesh {
    /// Reads and validates `meshql.toml` and every manifest it points to. Environment
    /// overrides (`MESHQL__SECTION__KEY`) are applied.
    pub fn load(config_file: &Path) -> Result<Mesh> {
        let text = std::fs::read_to_string(config_file).map_err(|source| CatalogError::Io {
            path: config_file.to_path_buf(),
            source,
        })?;
        let config = MeshConfig::parse(config_file, &text, std::env::vars())
            .map_err(CatalogError::Invalid)?;
        Self::load_manifests(config)
    }

    /// Like [`Mesh::load`], but every failure is a list of problems by file and field (an
    /// unreadable configuration file is a problem too): what a hot reload reports when it
    /// rejects a change, and what `catalog lint` reports from the catalog's side.
    pub fn load_checked(config_file: &Path) -> std::result::Result<Mesh, Vec<Problem>> {
        Self::load(config_file).map_err(|e| into_problems(e, config_file))
    }

    /// Loads the manifests of an already parsed configuration.
    pub fn load_manifests(config: MeshConfig) -> Result<Mesh> {
        Self::load_manifests_with(config, None)
    }

    /// Loads the manifests, with `overlay` (a manifest file path inside the catalog and its
    /// text) read instead of what is on disk at that path, or added when there is no such file:
    /// the catalog as it will be once the manifest is installed.
    pub(crate) fn load_manifests_with(
        config: MeshConfig,
        overlay: Option<(&Path, &str)>,
    ) -> Result<Mesh> {
        let problems = RefCell::new(Vec::<Problem>::new());
        let dir = &config.catalog_dir;
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) => {
                return Err(CatalogError::Invalid(vec![Problem::new(
                    &config.file,
                    "catalog.dir",
                    format!("cannot read catalog directory {}: {e}", dir.display()),
                )]))
            }
        };
        // Folders that name no configured domain are mistakes worth reporting.
        let mut folders: Vec<PathBuf> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect();
        folders.sort();
        for folder in &folders {
            let name = folder
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            if name != GLOBAL_POLICY_DIR && config.domain(name).is_none() {
                problems.borrow_mut().push(Problem::new(
                    folder,
                    "",
                    format!(
                        "folder names unknown domain `{name}` (configured domains: {})",
                        config
                            .domains
                            .iter()
                            .map(|d| d.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
        }
        let mut domains = Vec::new();
        let mut invalid_products: Vec<(String, Vec<String>)> = Vec::new();
        for d in &config.domains {
            let products_dir = dir.join(&d.name).join("products");
            let mut files: Vec<PathBuf> = match std::fs::read_dir(&products_dir) {
                Ok(e) => e
                    .filter_map(|e| e.ok())
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                    .collect(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
                Err(e) => {
                    problems.borrow_mut().push(Problem::new(
                        &products_dir,
                        "",
                        format!("cannot read folder: {e}"),
                    ));
                    Vec::new()
                }
            };
            if let Some((path, _)) = overlay {
                if path.parent() == Some(products_dir.as_path()) && !files.iter().any(|f| f == path)
                {
                    files.push(path.to_path_buf());
                }
            }
            files.sort();
            let mut products: Vec<Product> = Vec::new();
            // Manifests that failed to load still name products policies may refer to.
            let mut invalid: Vec<String> = Vec::new();
            for file in files {
                let read = match overlay {
                    Some((path, text)) if path == file => Ok(text.to_string()),
                    _ => std::fs::read_to_string(&file),
                };
                let text = match read {
                    Ok(t) => t,
                    Err(e) => {
                        problems.borrow_mut().push(Problem::new(
                            &file,
                            "",
                            format!("cannot read file: {e}"),
                        ));
                        continue;
                    }
                };
                match ProductManifest::parse(&file, &text) {
                    Ok(m) => {
                        if m.domain != d.name {
                            let msg = if config.domain(&m.domain).is_none() {
                                format!("unknown domain `{}`; this manifest lives in the folder of domain `{}`", m.domain, d.name)
                            } else {
                                format!(
                                    "`{}` does not match the folder's domain `{}`",
                                    m.domain, d.name
                                )
                            };
                            problems
                                .borrow_mut()
                                .push(Problem::new(&file, "domain", msg));
                        } else if products.iter().any(|p| p.manifest.name == m.name) {
                            problems.borrow_mut().push(Problem::new(
                                &file,
                                "name",
                                format!(
                                    "product `{}.{}` is defined more than once",
                                    d.name, m.name
                                ),
                            ));
                        } else {
                            products.push(Product { manifest: m, file });
                        }
                    }
                    Err(p) => {
                        problems.borrow_mut().extend(p);
                        if let Some(stem) = file.file_stem().and_then(|s| s.to_str()) {
                            invalid.push(stem.to_string());
                        }
                    }
                }
            }
            invalid_products.push((d.name.clone(), invalid));
            domains.push(Domain {
                config: d.clone(),
                products,
            });
        }
        let domain_names: Vec<&str> = config.domains.iter().map(|d| d.name.as_str()).collect();
        check_lineage(&domain_names, &domains, &invalid_products, &problems);
        let policies = load_policies(&config, &domains, &invalid_products, &problems);
        let problems = problems.into_inner();
        if problems.is_empty() {
            Ok(Mesh {
                config,
                domains,
                policies,
            })
        } else {
            Err(CatalogError::Invalid(problems))
        }
    }

    /// What `principal` may read of `domain.product`; None when it may not see it (or it
    /// does not exist).
    pub fn access(
        &self,
        principal: &Principal,
        domain: &str,
        product: &str,
    ) -> Option<ProductAccess<'_>> {
        let p = self.product(domain, product)?;
        self.policies.access(principal, &p.manifest)
    }

    pub fn domain(&self, name: &str) -> Option<&Domain> {
        self.domains.iter().find(|d| d.config.name == name)
    }

    /// The product `domain.name`.
    pub fn product(&self, domain: &str, name: &str) -> Option<&Product> {
        self.domain(domain)?.product(name)
    }

    /// Every product of every domain.
    pub fn products(&self) -> impl Iterator<Item = &Product> {
        self.domains.iter().flat_map(|d| d.products.iter())
    }
}

/// The problems of a failed load; I/O errors become a problem on their file.
pub(crate) fn into_problems(e: CatalogError, config_file: &Path) -> Vec<Problem> {
    match e {
        CatalogError::Invalid(p) => p,
        CatalogError::Io { path, source } => {
            vec![Problem::new(
                path,
                "",
                format!("cannot read file: {source}"),
            )]
        }
        other => vec![Problem::new(config_file, "", other.to_string())],
    }
}

fn load_policies(
    config: &MeshConfig,
    domains: &[Domain],
    invalid_products: &[(String, Vec<String>)],
    problems: &RefCell<Vec<Problem>>,
) -> Policies {
    let known: Vec<&str> = domains.iter().map(|d| d.name()).collect();
    let read = |file: &Path| -> Option<String> {
        match std::fs::read_to_string(file) {
            Ok(t) => Some(t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                problems.borrow_mut().push(Problem::new(
                    file,
                    "",
                    format!("cannot read file: {e}"),
                ));
                None
            }
        }
    };
    let global_file = config.catalog_dir.join(GLOBAL_POLICY_DIR).join(POLICY_FILE);
    let global = read(&global_file)
        .map(|text| parse_policy_file(&global_file, &text, None, &[], &[], &known, problems))
        .unwrap_or_default();
    let mut out = Policies {
        global,
        domains: Vec::new(),
    };
    for d in domains {
        let file = config.catalog_dir.join(d.name()).join(POLICY_FILE);
        if let Some(text) = read(&file) {
            let manifests: Vec<&ProductManifest> = d.products.iter().map(|p| &p.manifest).collect();
            let invalid = invalid_products
                .iter()
                .find(|(n, _)| n == d.name())
                .map(|(_, v)| v.as_slice())
                .unwrap_or(&[]);
            let set = parse_policy_file(
                &file,
                &text,
                Some(d.name()),
                &manifests,
                invalid,
                &known,
                problems,
            );
            out.domains.push((d.name().to_string(), set));
        }
    }
    out
}
