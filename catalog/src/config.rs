//! The mesh configuration file (`meshql.toml`): server settings, domains and their buckets,
//! where the catalog of product manifests lives, and the users.
//!
//! Every setting may be overridden from the environment as `MESHQL__SECTION__KEY`
//! (e.g. `MESHQL__SERVER__BIND=0.0.0.0:50051`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use url::Url;

use crate::error::Problem;
use crate::manifest::{is_identifier, Fields};

/// Prefix of environment variables that override configuration settings.
pub const ENV_PREFIX: &str = "MESHQL__";

/// Default limit of one gRPC message (16 MiB, what ADBC and JDBC use).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// Default `catalog.refresh_interval`: new Delta commits are visible within this many seconds.
pub(crate) const DEFAULT_REFRESH_INTERVAL_SECS: u64 = 5;

/// Default `catalog.stale_reader_group`: the group (role) whose members may still read a product
/// whose freshness SLA is breached under `on_breach = "refuse"`.
pub const DEFAULT_STALE_READER_GROUP: &str = "stale_reader";

/// Default address `meshql serve` binds.
pub const DEFAULT_BIND: &str = "127.0.0.1:50051";

/// Names a domain may not take: they are schemas meshql itself provides.
const RESERVED_SCHEMAS: &[&str] = &["meshql", "information_schema"];

/// The parsed `meshql.toml`.
#[derive(Debug, Clone)]
pub struct MeshConfig {
    /// The file this configuration was read from.
    pub file: PathBuf,
    pub server: ServerConfig,
    /// Directory holding one folder of product manifests per domain.
    pub catalog_dir: PathBuf,
    /// How long a product's Delta snapshot is reused before checking for new commits, in
    /// seconds (0: check on every query). New Parquet files are seen by the next query.
    pub refresh_interval_secs: u64,
    /// `catalog.stale_reader_group`: members may read stale products whose SLA says
    /// `on_breach = "refuse"` (default `stale_reader`).
    pub stale_reader_group: String,
    pub domains: Vec<DomainConfig>,
    pub users: Vec<UserConfig>,
    pub audit: AuditConfig,
    /// `[auth.jwt]`: accept JWT bearer tokens from an identity provider.
    pub jwt: Option<JwtConfig>,
    /// `[quality]`: how the server runs quality checks in the background.
    pub quality: QualityConfig,
}

/// `[quality]`: background quality checks (see docs/quality.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QualityConfig {
    /// How often the server looks for new data (a new Delta version, changed Parquet files)
    /// to check, in seconds.
    pub check_interval_secs: u64,
    /// Checks running at once; more wait their turn.
    pub max_concurrent_checks: usize,
    /// Bytes of memory all running checks may use together (their own DataFusion pool;
    /// grouping operators spill to disk past it).
    pub memory_limit_bytes: u64,
}

/// Default `quality.check_interval`.
pub const DEFAULT_QUALITY_CHECK_INTERVAL_SECS: u64 = 60;
/// Default `quality.max_concurrent_checks`.
pub const DEFAULT_QUALITY_MAX_CONCURRENT_CHECKS: usize = 1;
/// Default `quality.memory_limit` (512 MiB).
pub const DEFAULT_QUALITY_MEMORY_LIMIT_BYTES: u64 = 512 * 1024 * 1024;

impl Default for QualityConfig {
    fn default() -> Self {
        Self {
            check_interval_secs: DEFAULT_QUALITY_CHECK_INTERVAL_SECS,
            max_concurrent_checks: DEFAULT_QUALITY_MAX_CONCURRENT_CHECKS,
            memory_limit_bytes: DEFAULT_QUALITY_MEMORY_LIMIT_BYTES,
        }
    }
}

/// `[auth.jwt]`: how JWT bearer tokens are verified and mapped to principals.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JwtConfig {
    /// Name of the environment variable holding the HS256 shared secret (never the secret
    /// itself: configuration files get copied around).
    pub hs256_secret_env: Option<String>,
    /// PEM files of RS256 public keys.
    pub rs256_public_keys: Vec<PathBuf>,
    /// A JWKS file (RS256 keys selected by `kid`).
    pub jwks_file: Option<PathBuf>,
    /// Accepted `iss` values (any when empty).
    pub issuers: Vec<String>,
    /// Accepted `aud` values (required: a token for another service is rejected).
    pub audiences: Vec<String>,
    /// Claim holding the user name.
    pub user_claim: String,
    /// Claim holding the groups (a list, or a space-separated string).
    pub groups_claim: String,
    /// Principal attribute name -> claim name.
    pub attribute_claims: BTreeMap<String, String>,
}

/// `[audit]`: where query audit records go.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditConfig {
    /// JSON-lines file the records are appended to (relative to the configuration file).
    /// Without it, records are only kept in memory for `meshql.audit`.
    pub file: Option<PathBuf>,
    /// Record a SHA-256 of the SQL text instead of the text itself.
    pub hash_sql: bool,
}

/// `[server]` settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address the Flight SQL server binds, `HOST:PORT`.
    pub bind: String,
    /// How long a token issued by the handshake stays valid, in seconds.
    pub token_ttl_secs: u64,
    /// When true the server warns at start that demo credentials are in use.
    pub demo_credentials: bool,
    /// Largest gRPC message accepted or sent, in bytes (default 16 MiB).
    pub max_message_bytes: usize,
    /// TLS for the Flight SQL endpoint; plaintext when absent.
    pub tls: Option<TlsConfig>,
}

/// `[server.tls]`: certificate and key (PEM files, relative to the configuration file), and an
/// optional client CA that turns on mutual TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// When set, clients must present a certificate signed by this CA.
    pub client_ca: Option<PathBuf>,
}

/// One `[[domains]]` entry: a business domain and its bucket.
#[derive(Debug, Clone)]
pub struct DomainConfig {
    pub name: String,
    /// Root of the domain's storage. Relative paths in the file are resolved against the
    /// configuration file's directory and become `file://` URLs.
    pub bucket: Url,
    pub description: String,
    pub owner: String,
    /// Object store settings (object_store option names such as `region`, `endpoint`,
    /// `allow_http`, plus meshql's `timeout`, `connect_timeout`, `max_retries`, `retry_timeout`).
    pub storage: BTreeMap<String, String>,
    /// Credentials taken from the environment: option name -> environment variable.
    pub credentials_env: BTreeMap<String, String>,
    /// A TOML file of credential options (option name = value), kept out of this file.
    pub secrets_file: Option<PathBuf>,
}

/// One `[[users]]` entry.
#[derive(Debug, Clone)]
pub struct UserConfig {
    pub name: String,
    /// Argon2 hash in PHC string format (`$argon2id$v=19$...`).
    pub password_hash: String,
    pub groups: Vec<String>,
    pub attributes: BTreeMap<String, String>,
}

impl MeshConfig {
    /// Parses a configuration from TOML text. `file` is used for resolving relative paths and
    /// in problem reports; `env` supplies overrides (pass `std::env::vars()`).
    pub fn parse(
        file: &Path,
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, Vec<Problem>> {
        let mut value: toml::Table = text.parse::<toml::Table>().map_err(|e| {
            vec![
                Problem::new(file, "", format!("not valid TOML: {}", e.message()))
                    .with_span(text, e.span()),
            ]
        })?;
        apply_env_overrides(&mut value, env);
        let base_dir = file.parent().map(Path::to_path_buf).unwrap_or_default();
        let problems = std::cell::RefCell::new(Vec::new());
        let mut f = Fields::new(file, "", &value, &problems);
        f.known(&[
            "server", "catalog", "domains", "users", "audit", "auth", "quality",
        ]);

        let server = match f.table("server") {
            Some(t) => {
                let mut s = Fields::new(file, "server", t, &problems);
                s.known(&[
                    "bind",
                    "token_ttl",
                    "demo_credentials",
                    "max_message_bytes",
                    "tls",
                ]);
                let bind = s.string("bind").unwrap_or_else(|| DEFAULT_BIND.to_string());
                let token_ttl_secs = s.duration_secs("token_ttl").unwrap_or(12 * 3600);
                let demo_credentials = s.bool("demo_credentials").unwrap_or(false);
                let max_message_bytes = s
                    .positive_int("max_message_bytes")
                    .unwrap_or(DEFAULT_MAX_MESSAGE_BYTES);
                let tls = s.table("tls").and_then(|t| {
                    let mut tls = Fields::new(file, "server.tls", t, &problems);
                    tls.known(&["cert", "key", "client_ca"]);
                    let cert = tls.required_string("cert").map(|p| base_dir.join(p));
                    let key = tls.required_string("key").map(|p| base_dir.join(p));
                    let client_ca = tls.string("client_ca").map(|p| base_dir.join(p));
                    Some(TlsConfig {
                        cert: cert?,
                        key: key?,
                        client_ca,
                    })
                });
                ServerConfig {
                    bind,
                    token_ttl_secs,
                    demo_credentials,
                    max_message_bytes,
                    tls,
                }
            }
            None => ServerConfig {
                bind: DEFAULT_BIND.to_string(),
                token_ttl_secs: 12 * 3600,
                demo_credentials: false,
                max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
                tls: None,
            },
        };

        let mut refresh_interval_secs = DEFAULT_REFRESH_INTERVAL_SECS;
        let mut stale_reader_group = DEFAULT_STALE_READER_GROUP.to_string();
        let catalog_dir = match f.table("catalog") {
            Some(t) => {
                let mut c = Fields::new(file, "catalog", t, &problems);
                c.known(&["dir", "refresh_interval", "stale_reader_group"]);
                if t.contains_key("stale_reader_group") {
                    if let Some(g) = c.required_string("stale_reader_group") {
                        stale_reader_group = g;
                    }
                }
                if let Some(v) = t.get("refresh_interval") {
                    refresh_interval_secs = match v {
                        toml::Value::Integer(0) => 0,
                        toml::Value::String(s) if s.trim() == "0" || s.trim() == "0s" => 0,
                        _ => c
                            .duration_secs("refresh_interval")
                            .unwrap_or(DEFAULT_REFRESH_INTERVAL_SECS),
                    };
                }
                c.required_string("dir").map(|d| base_dir.join(d))
            }
            None => {
                f.problem(
                    "catalog",
                    "missing section [catalog] (with `dir`, the manifests folder)",
                );
                None
            }
        };

        let mut domains = Vec::new();
        for (i, t) in f.array_of_tables("domains", true).into_iter().enumerate() {
            let path = format!("domains[{i}]");
            let mut d = Fields::new(file, &path, t, &problems);
            d.known(&[
                "name",
                "bucket",
                "description",
                "owner",
                "storage",
                "credentials_env",
                "secrets_file",
            ]);
            let name = d.required_string("name");
            if let Some(n) = &name {
                if !is_identifier(n) {
                    d.problem("name", format!("`{n}` is not a valid domain name (lowercase letters, digits and `_`, starting with a letter)"));
                } else if RESERVED_SCHEMAS.contains(&n.as_str()) {
                    d.problem("name", format!("`{n}` is reserved for meshql's own schema"));
                }
            }
            let bucket =
                d.required_string("bucket")
                    .and_then(|b| match resolve_bucket(&base_dir, &b) {
                        Ok(u) => Some(u),
                        Err(e) => {
                            d.problem("bucket", e);
                            None
                        }
                    });
            let description = d.string("description").unwrap_or_default();
            let owner = d.string("owner").unwrap_or_default();
            let storage = d.string_map("storage").unwrap_or_default();
            let credentials_env = d.string_map("credentials_env").unwrap_or_default();
            let secrets_file = d.string("secrets_file").map(|p| base_dir.join(p));
            for key in storage.keys() {
                if is_credential_key(key) {
                    d.problem(
                        &format!("storage.{key}"),
                        "credentials do not belong in the configuration file: use credentials_env or secrets_file",
                    );
                }
            }
            if let (Some(name), Some(bucket)) = (name, bucket) {
                domains.push((
                    path,
                    DomainConfig {
                        name,
                        bucket,
                        description,
                        owner,
                        storage,
                        credentials_env,
                        secrets_file,
                    },
                ));
            }
        }
        // Each domain owns its bucket: one object store (and one set of credentials) per bucket.
        for (i, (path, d)) in domains.iter().enumerate() {
            if d.bucket.scheme() == "file" {
                continue;
            }
            if let Some((_, other)) = domains[..i].iter().find(|(_, o)| {
                o.bucket.scheme() == d.bucket.scheme() && o.bucket.host_str() == d.bucket.host_str()
            }) {
                problems.borrow_mut().push(Problem::new(
                    file,
                    format!("{path}.bucket"),
                    format!("domains `{}` and `{}` share the bucket {}://{}; give each domain its own bucket", other.name, d.name, d.bucket.scheme(), d.bucket.host_str().unwrap_or("")),
                ));
            }
        }
        let mut seen = std::collections::HashSet::new();
        for (path, d) in &domains {
            if !seen.insert(d.name.clone()) {
                problems.borrow_mut().push(Problem::new(
                    file,
                    format!("{path}.name"),
                    format!("domain `{}` is defined more than once", d.name),
                ));
            }
        }

        let f = Fields::new(file, "", &value, &problems);
        let mut users = Vec::new();
        for (i, t) in f.array_of_tables("users", false).into_iter().enumerate() {
            let path = format!("users[{i}]");
            let mut u = Fields::new(file, &path, t, &problems);
            u.known(&["name", "password_hash", "groups", "attributes"]);
            let name = u.required_string("name");
            let password_hash = u.required_string("password_hash");
            if let Some(h) = &password_hash {
                if argon2::PasswordHash::new(h).is_err() {
                    u.problem("password_hash", "not an argon2 PHC hash string (`$argon2id$v=19$...`); create one with `meshql hash-password`");
                }
            }
            let groups = u.string_list("groups").unwrap_or_default();
            let attributes = u.string_map("attributes").unwrap_or_default();
            if let (Some(name), Some(password_hash)) = (name, password_hash) {
                users.push((
                    path,
                    UserConfig {
                        name,
                        password_hash,
                        groups,
                        attributes,
                    },
                ));
            }
        }
        let mut seen = std::collections::HashSet::new();
        for (path, u) in &users {
            if !seen.insert(u.name.clone()) {
                problems.borrow_mut().push(Problem::new(
                    file,
                    format!("{path}.name"),
                    format!("user `{}` is defined more than once", u.name),
                ));
            }
        }

        let audit = match f.table("audit") {
            Some(t) => {
                let mut a = Fields::new(file, "audit", t, &problems);
                a.known(&["file", "sql"]);
                let audit_file = a.string("file").map(|p| base_dir.join(p));
                let hash_sql = match a.string("sql").as_deref() {
                    None | Some("text") => false,
                    Some("hash") => true,
                    Some(other) => {
                        a.problem("sql", format!("`{other}`: expected \"text\" or \"hash\""));
                        false
                    }
                };
                AuditConfig {
                    file: audit_file,
                    hash_sql,
                }
            }
            None => AuditConfig::default(),
        };
        let jwt = f.table("auth").and_then(|t| {
            let mut a = Fields::new(file, "auth", t, &problems);
            a.known(&["jwt"]);
            let t = a.table("jwt")?;
            let mut j = Fields::new(file, "auth.jwt", t, &problems);
            j.known(&[
                "hs256_secret_env",
                "rs256_public_keys",
                "jwks_file",
                "issuers",
                "audiences",
                "user_claim",
                "groups_claim",
                "attribute_claims",
            ]);
            let jwt = JwtConfig {
                hs256_secret_env: j.string("hs256_secret_env"),
                rs256_public_keys: j.string_list("rs256_public_keys").unwrap_or_default().into_iter().map(|p| base_dir.join(p)).collect(),
                jwks_file: j.string("jwks_file").map(|p| base_dir.join(p)),
                issuers: j.string_list("issuers").unwrap_or_default(),
                audiences: j.string_list("audiences").unwrap_or_default(),
                user_claim: j.string("user_claim").unwrap_or_else(|| "sub".to_string()),
                groups_claim: j.string("groups_claim").unwrap_or_else(|| "groups".to_string()),
                attribute_claims: j.string_map("attribute_claims").unwrap_or_default(),
            };
            if jwt.audiences.is_empty() {
                j.problem("audiences", "required: the `aud` values meshql accepts (tokens for other services are rejected)");
            }
            if jwt.hs256_secret_env.is_none() && jwt.rs256_public_keys.is_empty() && jwt.jwks_file.is_none() {
                j.problem("", "set at least one of hs256_secret_env, rs256_public_keys, jwks_file");
            }
            Some(jwt)
        });
        let quality = match f.table("quality") {
            Some(t) => parse_quality_config(file, t, &problems),
            None => QualityConfig::default(),
        };
        let problems = problems.into_inner();
        match (problems.is_empty(), catalog_dir) {
            (true, Some(catalog_dir)) => Ok(MeshConfig {
                file: file.to_path_buf(),
                server,
                catalog_dir,
                refresh_interval_secs,
                stale_reader_group,
                domains: domains.into_iter().map(|(_, d)| d).collect(),
                users: users.into_iter().map(|(_, u)| u).collect(),
                audit,
                jwt,
                quality,
            }),
            _ => Err(problems),
        }
    }

    /// The domain with this name.
    pub fn domain(&self, name: &str) -> Option<&DomainConfig> {
        self.domains.iter().find(|d| d.name == name)
    }

    /// The user with this name.
    pub fn user(&self, name: &str) -> Option<&UserConfig> {
        self.users.iter().find(|u| u.name == name)
    }

    /// True when `principal` may read products whose freshness SLA is breached and says
    /// `on_breach = "refuse"` (it holds `catalog.stale_reader_group`).
    pub fn may_read_stale(&self, principal: &crate::principal::Principal) -> bool {
        principal.has_group(&self.stale_reader_group)
    }
}

/// `[quality]`: `check_interval` (a duration), `max_concurrent_checks` (a positive integer),
/// `memory_limit` (a size such as `"512MiB"`, or bytes).
fn parse_quality_config(
    file: &Path,
    t: &toml::Table,
    problems: &std::cell::RefCell<Vec<Problem>>,
) -> QualityConfig {
    let mut q = Fields::new(file, "quality", t, problems);
    q.known(&["check_interval", "max_concurrent_checks", "memory_limit"]);
    let defaults = QualityConfig::default();
    let memory_limit_bytes = match t.get("memory_limit") {
        None => defaults.memory_limit_bytes,
        Some(toml::Value::Integer(n)) if *n > 0 => *n as u64,
        Some(toml::Value::String(s)) => match s.trim().parse::<bytesize::ByteSize>() {
            Ok(b) if b.as_u64() > 0 => b.as_u64(),
            _ => {
                q.problem(
                    "memory_limit",
                    format!("`{s}` is not a size such as \"512MiB\" or \"2GiB\""),
                );
                defaults.memory_limit_bytes
            }
        },
        Some(other) => {
            q.problem(
                "memory_limit",
                format!("expected a size such as \"512MiB\", found {other}"),
            );
            defaults.memory_limit_bytes
        }
    };
    QualityConfig {
        check_interval_secs: q
            .duration_secs("check_interval")
            .unwrap_or(defaults.check_interval_secs),
        max_concurrent_checks: q
            .positive_int("max_concurrent_checks")
            .unwrap_or(defaults.max_concurrent_checks),
        memory_limit_bytes,
    }
}

/// Turns a bucket setting into a URL: absolute URLs are kept, paths become `file://` URLs
/// (relative ones resolved against the configuration file's directory).
fn resolve_bucket(base_dir: &Path, bucket: &str) -> Result<Url, String> {
    if bucket.contains("://") {
        let url = Url::parse(bucket).map_err(|e| format!("`{bucket}` is not a valid URL: {e}"))?;
        return match url.scheme() {
            "file" | "s3" | "s3a" | "gs" | "az" | "abfs" | "abfss" => Ok(ensure_dir_url(url)),
            other => Err(format!(
                "unsupported bucket scheme `{other}://`: expected file://, s3://, gs://, az:// or abfss://"
            )),
        };
    }
    let path = if Path::new(bucket).is_absolute() {
        PathBuf::from(bucket)
    } else {
        let base = if base_dir.as_os_str().is_empty() {
            std::env::current_dir().map_err(|e| e.to_string())?
        } else if base_dir.is_absolute() {
            base_dir.to_path_buf()
        } else {
            std::env::current_dir()
                .map_err(|e| e.to_string())?
                .join(base_dir)
        };
        base.join(bucket)
    };
    let path = normalize(&path);
    Url::from_directory_path(&path)
        .map_err(|()| format!("`{}` is not a usable directory path", path.display()))
}

/// Option names that carry secrets; they must come from the environment or a secrets file.
fn is_credential_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    [
        "secret",
        "password",
        "token",
        "access_key",
        "account_key",
        "sas",
        "service_account_key",
        "client_secret",
    ]
    .iter()
    .any(|s| k.contains(s))
}

/// Removes `.` and `..` components without touching the file system.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

fn ensure_dir_url(mut url: Url) -> Url {
    if !url.path().ends_with('/') {
        let p = format!("{}/", url.path());
        url.set_path(&p);
    }
    url
}

/// Applies `MESHQL__SECTION__KEY=value` overrides onto the parsed TOML. Values that parse as a
/// TOML integer or boolean keep that type; everything else is a string.
fn apply_env_overrides(table: &mut toml::Table, env: impl IntoIterator<Item = (String, String)>) {
    for (key, raw) in env {
        let Some(rest) = key.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let path: Vec<String> = rest.split("__").map(|s| s.to_ascii_lowercase()).collect();
        if path.iter().any(String::is_empty) {
            continue;
        }
        let value = if let Ok(i) = raw.parse::<i64>() {
            toml::Value::Integer(i)
        } else if let Ok(b) = raw.parse::<bool>() {
            toml::Value::Boolean(b)
        } else {
            toml::Value::String(raw)
        };
        let mut t = &mut *table;
        for (i, part) in path.iter().enumerate() {
            if i + 1 == path.len() {
                t.insert(part.clone(), value);
                break;
            }
            let entry = t
                .entry(part.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if !entry.is_table() {
                *entry = toml::Value::Table(toml::Table::new());
            }
            match entry.as_table_mut() {
                Some(next) => t = next,
                None => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$Wl1ZiKBWgKfCPWyC0JBSpHiCxEe0A2yKxsNx0cbdwzg";

    fn parse(text: &str, env: Vec<(&str, &str)>) -> Result<MeshConfig, Vec<Problem>> {
        MeshConfig::parse(
            Path::new("/mesh/meshql.toml"),
            text,
            env.into_iter().map(|(k, v)| (k.to_string(), v.to_string())),
        )
    }

    #[test]
    fn parses_a_complete_config_and_resolves_relative_buckets() {
        let text = format!(
            r#"
            [server]
            bind = "127.0.0.1:1234"
            [catalog]
            dir = "catalog"
            [[domains]]
            name = "sales"
            bucket = "buckets/sales"
            [[domains]]
            name = "shipping"
            bucket = "s3://shipping-bucket/data"
            [[users]]
            name = "ann"
            password_hash = "{HASH}"
            groups = ["pii_reader"]
            attributes = {{ region = "EU" }}
            "#
        );
        let c = parse(&text, vec![]).unwrap();
        assert_eq!(c.server.bind, "127.0.0.1:1234");
        assert_eq!(c.catalog_dir, PathBuf::from("/mesh/catalog"));
        assert_eq!(
            c.domain("sales").unwrap().bucket.as_str(),
            "file:///mesh/buckets/sales/"
        );
        assert_eq!(
            c.domain("shipping").unwrap().bucket.as_str(),
            "s3://shipping-bucket/data/"
        );
        assert_eq!(c.user("ann").unwrap().attributes["region"], "EU");
    }

    #[test]
    fn quality_section() {
        let base = "[catalog]\ndir = \"c\"\n[[domains]]\nname = \"d\"\nbucket = \"b\"\n";
        let c = parse(base, vec![]).unwrap();
        assert_eq!(c.quality, QualityConfig::default());
        let c = parse(
            &format!("{base}[quality]\ncheck_interval = \"5m\"\nmax_concurrent_checks = 2\nmemory_limit = \"64MiB\"\n"),
            vec![],
        )
        .unwrap();
        assert_eq!(
            c.quality,
            QualityConfig {
                check_interval_secs: 300,
                max_concurrent_checks: 2,
                memory_limit_bytes: 64 * 1024 * 1024,
            }
        );
        let problems = parse(
            &format!("{base}[quality]\ncheck_interval = \"soon\"\nmax_concurrent_checks = 0\nmemory_limit = \"lots\"\nparallel = true\n"),
            vec![],
        )
        .unwrap_err();
        let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        for f in [
            "quality.check_interval",
            "quality.max_concurrent_checks",
            "quality.memory_limit",
            "quality.parallel",
        ] {
            assert!(fields.contains(&f), "{f} in {problems:?}");
        }
    }

    #[test]
    fn env_overrides_win() {
        let text = "[catalog]\ndir = \"c\"\n[server]\nbind = \"127.0.0.1:1\"\n[[domains]]\nname = \"d\"\nbucket = \"b\"\n";
        let c = parse(
            text,
            vec![("MESHQL__SERVER__BIND", "0.0.0.0:9"), ("OTHER", "x")],
        )
        .unwrap();
        assert_eq!(c.server.bind, "0.0.0.0:9");
    }

    #[test]
    fn reports_every_problem_with_its_field() {
        let text = r#"
            [catalog]
            [[domains]]
            name = "Sales!"
            bucket = "ftp://x"
            [[domains]]
            bucket = "b"
            [[users]]
            name = "u"
            password_hash = "plain"
            colour = "red"
        "#;
        let problems = parse(text, vec![]).unwrap_err();
        let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            vec![
                "catalog.dir",
                "domains[0].name",
                "domains[0].bucket",
                "domains[1].name",
                "users[0].colour",
                "users[0].password_hash"
            ],
            "{problems:#?}"
        );
    }

    #[test]
    fn bad_toml_names_the_line() {
        let problems = parse("[catalog\ndir = 1", vec![]).unwrap_err();
        assert_eq!(problems.len(), 1);
        assert!(problems[0].message.contains("line 1"), "{}", problems[0]);
    }
}
