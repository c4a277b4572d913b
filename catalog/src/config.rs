//! The mesh configuration file (`meshql.toml`): server settings, domains and their buckets,
//! where the catalog of product manifests lives, and the users.
//!
//! Every setting may be overridden from the environment as `MESHQL__SECTION__KEY`
//! (e.g. `MESHQL__SERVER__BIND=0.0.0.0:50051`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

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
    /// whole seconds (0: check on every query); [`MeshConfig::refresh_interval`] rounded down.
    /// New Parquet files are seen by the next query.
    pub refresh_interval_secs: u64,
    /// `catalog.refresh_interval`: how often a running server looks for catalog changes
    /// (manifests, policies, users) and how long a Delta snapshot is reused. Accepts sub-second
    /// values (`"500ms"`); 0 turns the catalog reload off and checks Delta on every query.
    pub refresh_interval: std::time::Duration,
    /// `catalog.stale_reader_group`: members may read stale products whose SLA says
    /// `on_breach = "refuse"` (default `stale_reader`).
    pub stale_reader_group: String,
    pub domains: Vec<DomainConfig>,
    pub users: Vec<UserConfig>,
    pub audit: AuditConfig,
    /// `[auth.jwt]`: accept JWT bearer tokens from an identity provider.
    pub jwt: Option<JwtConfig>,
    /// `[cluster]`: distributed execution on workers (none configured: single node).
    pub cluster: ClusterConfig,
    /// `[engine]`: memory, spilling and parallelism of the query engine.
    pub engine: EngineConfig,
    /// `[limits]`: admission control and per-query limits.
    pub limits: LimitsConfig,
    /// `[http]`: the web UI, JSON API and metrics; None means no HTTP server.
    pub http: Option<HttpConfig>,
    /// `[telemetry]`: trace export.
    pub telemetry: TelemetryConfig,
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

/// `[http]`: the HTTP server (web catalog and console, JSON API, `/metrics`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpConfig {
    /// Address the HTTP server binds, `HOST:PORT`.
    pub bind: String,
}

/// `[telemetry]`: OpenTelemetry trace export.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TelemetryConfig {
    /// OTLP/HTTP endpoint traces are sent to (`http://collector:4318`; `/v1/traces` is added
    /// when the URL has no path). None: traces are not exported.
    pub otlp_endpoint: Option<String>,
    /// `service.name` of the exported spans (default `meshql`).
    pub service_name: String,
}

/// Default `cluster.secret_env`: the environment variable holding the cluster's shared secret.
pub const DEFAULT_CLUSTER_SECRET_ENV: &str = "MESHQL_CLUSTER_SECRET";

/// `[cluster]`: the workers a server distributes queries to, and how it talks to them. The same
/// section configures `meshql worker` (which only reads `secret_env`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// Worker URLs (`http://HOST:PORT`); empty: queries run on the server alone.
    pub workers: Vec<Url>,
    /// Name of the environment variable holding the shared secret that workers require from
    /// their callers (never the secret itself).
    pub secret_env: String,
    /// How long connecting to a worker, or a worker's answer to a health check, may take, in
    /// seconds.
    pub connect_timeout_secs: u64,
    /// How often workers are health-checked (and HTTP/2 keep-alive pings sent), in seconds:
    /// a worker that went away is retried, and used again once it answers.
    pub probe_interval_secs: u64,
    /// Bytes of files one partition of a distributed scan reads: a product's scan is spread
    /// over `ceil(bytes / (this × partitions))` workers (at most all of them).
    pub scan_bytes_per_partition: u64,
}

/// Default `cluster.scan_bytes_per_partition` (datafusion-distributed's default, 16 MiB).
pub const DEFAULT_SCAN_BYTES_PER_PARTITION: u64 = 16 * 1024 * 1024;

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            workers: Vec::new(),
            secret_env: DEFAULT_CLUSTER_SECRET_ENV.to_string(),
            connect_timeout_secs: 5,
            probe_interval_secs: 5,
            scan_bytes_per_partition: DEFAULT_SCAN_BYTES_PER_PARTITION,
        }
    }
}

/// `[engine]` settings. `None` means "the engine's default" (see docs/limits.md); the engine
/// resolves defaults, since some depend on the machine (its memory, its cores).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EngineConfig {
    /// Bytes of the memory pool shared by all queries.
    pub memory_limit: Option<u64>,
    /// Bytes one query may reserve from the shared pool.
    pub query_memory_limit: Option<u64>,
    /// Where spilling operators write temporary files (relative to the configuration file).
    pub spill_dir: Option<PathBuf>,
    pub target_partitions: Option<usize>,
    pub batch_size: Option<usize>,
    /// Bytes of query results kept to answer repeated queries (0: no result cache).
    pub result_cache_size: Option<u64>,
    /// Largest result, in bytes, the result cache keeps.
    pub result_cache_max_entry: Option<u64>,
    /// `[engine.datafusion]`: DataFusion configuration keys (without the `datafusion.` prefix)
    /// and their values as text; only keys in [`DATAFUSION_KEYS`] are accepted.
    pub datafusion: BTreeMap<String, String>,
}

/// `[limits]` settings; `None` means the engine's default (see docs/limits.md).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LimitsConfig {
    /// Queries running at once; more wait in a queue.
    pub max_concurrent_queries: Option<usize>,
    /// How long a query may wait in the queue.
    pub queue_timeout: Option<Duration>,
    /// Queries one user may run at once; more wait in the queue.
    pub max_queries_per_user: Option<usize>,
    /// How long one statement may run, from admission to its last batch.
    pub statement_timeout: Option<Duration>,
    /// Largest SQL text accepted, in bytes.
    pub max_sql_bytes: Option<u64>,
    /// Deepest nesting of expressions (and of UNION/INTERSECT/EXCEPT chains) accepted.
    pub max_expr_depth: Option<usize>,
}

/// DataFusion configuration keys `[engine.datafusion]` may set (without the `datafusion.`
/// prefix). Only execution and optimizer tunables: nothing that changes SQL semantics, the
/// parser (its recursion limit), the catalog or what a query may read.
pub const DATAFUSION_KEYS: &[&str] = &[
    "execution.coalesce_batches",
    "execution.collect_statistics",
    "execution.meta_fetch_concurrency",
    "execution.planning_concurrency",
    "execution.sort_spill_reservation_bytes",
    "execution.sort_in_place_threshold_bytes",
    "execution.spill_compression",
    "execution.skip_partial_aggregation_probe_ratio_threshold",
    "execution.skip_partial_aggregation_probe_rows_threshold",
    "execution.parquet.pushdown_filters",
    "execution.parquet.reorder_filters",
    "execution.parquet.enable_page_index",
    "execution.parquet.pruning",
    "execution.parquet.bloom_filter_on_read",
    "execution.parquet.metadata_size_hint",
    "optimizer.enable_dynamic_filter_pushdown",
    "optimizer.enable_topk_aggregation",
    "optimizer.hash_join_single_partition_threshold",
    "optimizer.hash_join_single_partition_threshold_rows",
    "optimizer.max_passes",
    "optimizer.prefer_hash_join",
    "optimizer.repartition_aggregations",
    "optimizer.repartition_file_min_size",
    "optimizer.repartition_file_scans",
    "optimizer.repartition_joins",
    "optimizer.repartition_sorts",
    "optimizer.repartition_windows",
    "optimizer.top_down_join_key_reordering",
];

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
    /// Prefix of the user names of JWT principals (`jwt:` by default, so a token with
    /// `sub = "admin"` is the principal `jwt:admin`, never the local user `admin`). Ends with
    /// `:`, which local user names may not contain, so the two namespaces cannot meet.
    pub user_prefix: String,
    /// When true, a token whose user claim names a configured `[[users]]` entry IS that local
    /// user: it gets the local user's name, groups and attributes (the token's groups and
    /// attribute claims are ignored for it). Other tokens stay `<user_prefix><sub>`.
    pub map_to_local_users: bool,
    /// Clock skew tolerated when checking `exp` and `nbf`, in seconds (default 30).
    pub leeway_secs: u64,
}

/// Default `[auth.jwt] user_prefix`.
pub const DEFAULT_JWT_USER_PREFIX: &str = "jwt:";

/// Default `[auth.jwt] leeway`, in seconds.
pub const DEFAULT_JWT_LEEWAY_SECS: u64 = 30;

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
#[derive(Debug, Clone, PartialEq, Eq)]
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
            "server",
            "catalog",
            "domains",
            "users",
            "audit",
            "auth",
            "cluster",
            "engine",
            "limits",
            "http",
            "telemetry",
            "quality",
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

        let mut refresh_interval = std::time::Duration::from_secs(DEFAULT_REFRESH_INTERVAL_SECS);
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
                    refresh_interval = match v {
                        toml::Value::Integer(0) => std::time::Duration::ZERO,
                        toml::Value::String(s) if s.trim() == "0" || s.trim() == "0s" => {
                            std::time::Duration::ZERO
                        }
                        // Sub-second values (`"250ms"`) and compound ones (`"1m 30s"`).
                        toml::Value::String(s)
                            if humantime::parse_duration(s.trim()).is_ok_and(|d| !d.is_zero()) =>
                        {
                            humantime::parse_duration(s.trim()).unwrap_or(
                                std::time::Duration::from_secs(DEFAULT_REFRESH_INTERVAL_SECS),
                            )
                        }
                        _ => std::time::Duration::from_secs(
                            c.duration_secs("refresh_interval")
                                .unwrap_or(DEFAULT_REFRESH_INTERVAL_SECS),
                        ),
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
            if name
                .as_deref()
                .is_some_and(|n| n.is_empty() || n.contains(':'))
            {
                u.problem(
                    "name",
                    "a user name must be non-empty and may not contain `:` (reserved for \
                     external principals such as `jwt:<subject>`)",
                );
            }
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
                "user_prefix",
                "map_to_local_users",
                "leeway",
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
                user_prefix: j.string("user_prefix").unwrap_or_else(|| DEFAULT_JWT_USER_PREFIX.to_string()),
                map_to_local_users: j.bool("map_to_local_users").unwrap_or(false),
                leeway_secs: j.duration_secs("leeway").unwrap_or(DEFAULT_JWT_LEEWAY_SECS),
            };
            if jwt.user_prefix.len() < 2 || !jwt.user_prefix.ends_with(':') || jwt.user_prefix[..jwt.user_prefix.len() - 1].contains(':') {
                j.problem("user_prefix", "must be a name followed by one `:` (e.g. `jwt:` or `okta:`), so that JWT principals never share a name with a local user");
            }
            if jwt.audiences.is_empty() {
                j.problem("audiences", "required: the `aud` values meshql accepts (tokens for other services are rejected)");
            }
            if jwt.hs256_secret_env.is_none() && jwt.rs256_public_keys.is_empty() && jwt.jwks_file.is_none() {
                j.problem("", "set at least one of hs256_secret_env, rs256_public_keys, jwks_file");
            }
            Some(jwt)
        });
        let cluster = f
            .table("cluster")
            .map(|t| parse_cluster(file, t, &problems))
            .unwrap_or_default();
        let engine = match f.table("engine") {
            Some(t) => parse_engine(file, &base_dir, t, &problems),
            None => EngineConfig::default(),
        };
        let limits = match f.table("limits") {
            Some(t) => parse_limits(file, t, &problems),
            None => LimitsConfig::default(),
        };
        let http = f.table("http").and_then(|t| {
            let mut h = Fields::new(file, "http", t, &problems);
            h.known(&["bind"]);
            let bind = h.required_string("bind")?;
            if !bind.contains(':') {
                h.problem("bind", format!("`{bind}` is not HOST:PORT"));
            }
            Some(HttpConfig { bind })
        });
        let telemetry = match f.table("telemetry") {
            Some(t) => {
                let mut tm = Fields::new(file, "telemetry", t, &problems);
                tm.known(&["otlp_endpoint", "service_name"]);
                let otlp_endpoint = tm.string("otlp_endpoint");
                if let Some(e) = &otlp_endpoint {
                    match Url::parse(e) {
                        Ok(u) if matches!(u.scheme(), "http" | "https") => {}
                        _ => tm.problem(
                            "otlp_endpoint",
                            format!("`{e}` is not an http:// or https:// URL"),
                        ),
                    }
                }
                TelemetryConfig {
                    otlp_endpoint,
                    service_name: tm
                        .string("service_name")
                        .unwrap_or_else(|| "meshql".to_string()),
                }
            }
            None => TelemetryConfig {
                otlp_endpoint: None,
                service_name: "meshql".to_string(),
            },
        };
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
                refresh_interval_secs: refresh_interval.as_secs(),
                refresh_interval,
                stale_reader_group,
                domains: domains.into_iter().map(|(_, d)| d).collect(),
                users: users.into_iter().map(|(_, u)| u).collect(),
                audit,
                jwt,
                cluster,
                engine,
                limits,
                http,
                telemetry,
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

/// Parses `[cluster]`. `workers` is a list of URLs, or one comma-separated string (handy in
/// `MESHQL__CLUSTER__WORKERS`).
fn parse_cluster(
    file: &Path,
    t: &toml::Table,
    problems: &std::cell::RefCell<Vec<Problem>>,
) -> ClusterConfig {
    let mut c = Fields::new(file, "cluster", t, problems);
    c.known(&[
        "workers",
        "secret_env",
        "connect_timeout",
        "probe_interval",
        "scan_bytes_per_partition",
    ]);
    let defaults = ClusterConfig::default();
    let raw: Vec<String> = match t.get("workers") {
        None => Vec::new(),
        Some(toml::Value::String(s)) => s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        Some(_) => c.string_list("workers").unwrap_or_default(),
    };
    let mut workers: Vec<Url> = Vec::new();
    for (i, w) in raw.iter().enumerate() {
        let field = format!("workers[{i}]");
        match Url::parse(w) {
            Ok(u)
                if matches!(u.scheme(), "http" | "https")
                    && u.host_str().is_some()
                    && u.port_or_known_default().is_some()
                    && matches!(u.path(), "" | "/")
                    && u.query().is_none()
                    && u.username().is_empty()
                    && u.password().is_none() =>
            {
                if workers.contains(&u) {
                    c.problem(&field, format!("`{w}` is listed twice"));
                } else {
                    workers.push(u);
                }
            }
            Ok(_) => c.problem(
                &field,
                format!("`{w}` is not a worker URL such as `http://10.0.0.5:50052` (scheme, host and port only)"),
            ),
            Err(e) => c.problem(&field, format!("`{w}` is not a valid URL: {e}")),
        }
    }
    let secret_env = c.string("secret_env").unwrap_or(defaults.secret_env);
    if secret_env.is_empty()
        || !secret_env
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
    {
        c.problem(
            "secret_env",
            format!("`{secret_env}` is not an environment variable name (the secret itself never belongs in this file)"),
        );
    }
    ClusterConfig {
        workers,
        secret_env,
        connect_timeout_secs: c
            .duration_secs("connect_timeout")
            .unwrap_or(defaults.connect_timeout_secs),
        probe_interval_secs: c
            .duration_secs("probe_interval")
            .unwrap_or(defaults.probe_interval_secs),
        scan_bytes_per_partition: c
            .positive_int("scan_bytes_per_partition")
            .map(|n| n as u64)
            .unwrap_or(defaults.scan_bytes_per_partition),
    }
}

fn parse_engine(
    file: &Path,
    base_dir: &Path,
    t: &toml::Table,
    problems: &std::cell::RefCell<Vec<Problem>>,
) -> EngineConfig {
    let mut e = Fields::new(file, "engine", t, problems);
    e.known(&[
        "memory_limit",
        "query_memory_limit",
        "spill_dir",
        "target_partitions",
        "batch_size",
        "result_cache_size",
        "result_cache_max_entry",
        "datafusion",
    ]);
    let memory_limit = e.byte_size("memory_limit");
    let query_memory_limit = e.byte_size("query_memory_limit");
    if let (Some(all), Some(one)) = (memory_limit, query_memory_limit) {
        if one > all {
            e.problem(
                "query_memory_limit",
                format!(
                    "{} is more than memory_limit ({}): one query's share must fit in the pool",
                    bytesize::ByteSize(one).display().iec(),
                    bytesize::ByteSize(all).display().iec()
                ),
            );
        }
    }
    let spill_dir = e.string("spill_dir").map(|p| base_dir.join(p));
    let target_partitions = e.positive_int("target_partitions");
    let batch_size = e.positive_int("batch_size");
    let result_cache_size = e.byte_size_or_zero("result_cache_size");
    let result_cache_max_entry = e.byte_size("result_cache_max_entry");
    let mut datafusion = BTreeMap::new();
    if let Some(df) = e.table("datafusion") {
        for (key, value) in df {
            let field = format!("datafusion.\"{key}\"");
            let key = key.strip_prefix("datafusion.").unwrap_or(key);
            if !DATAFUSION_KEYS.contains(&key) {
                e.problem(
                    &field,
                    format!(
                        "`{key}` is not a DataFusion setting meshql passes through (allowed: {})",
                        DATAFUSION_KEYS.join(", ")
                    ),
                );
                continue;
            }
            let text = match value {
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Float(f) => f.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                other => {
                    e.problem(
                        &field,
                        format!(
                            "expected a string, number or boolean, found {}",
                            other.type_str()
                        ),
                    );
                    continue;
                }
            };
            datafusion.insert(key.to_string(), text);
        }
    }
    EngineConfig {
        memory_limit,
        query_memory_limit,
        spill_dir,
        target_partitions,
        batch_size,
        result_cache_size,
        result_cache_max_entry,
        datafusion,
    }
}

fn parse_limits(
    file: &Path,
    t: &toml::Table,
    problems: &std::cell::RefCell<Vec<Problem>>,
) -> LimitsConfig {
    let mut l = Fields::new(file, "limits", t, problems);
    l.known(&[
        "max_concurrent_queries",
        "queue_timeout",
        "max_queries_per_user",
        "statement_timeout",
        "max_sql_bytes",
        "max_expr_depth",
    ]);
    let statement_timeout = l.duration("statement_timeout");
    if statement_timeout == Some(Duration::ZERO) {
        l.problem("statement_timeout", "must be more than 0");
    }
    LimitsConfig {
        max_concurrent_queries: l.positive_int("max_concurrent_queries"),
        queue_timeout: l.duration("queue_timeout"),
        max_queries_per_user: l.positive_int("max_queries_per_user"),
        statement_timeout,
        max_sql_bytes: l.byte_size("max_sql_bytes"),
        max_expr_depth: l.positive_int("max_expr_depth"),
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
    fn cluster_section_defaults_and_validation() {
        let base = "[catalog]\ndir = \"c\"\n[[domains]]\nname = \"d\"\nbucket = \"b\"\n";
        let c = parse(base, vec![]).unwrap();
        assert_eq!(c.cluster, ClusterConfig::default());
        assert!(c.cluster.workers.is_empty());

        let text = format!(
            "{base}[cluster]\nworkers = [\"http://10.0.0.5:50052\", \"http://w2:7000/\"]\n\
             secret_env = \"MY_SECRET\"\nconnect_timeout = \"2s\"\nprobe_interval = 1\nscan_bytes_per_partition = 1024\n"
        );
        let c = parse(&text, vec![]).unwrap();
        let urls: Vec<&str> = c.cluster.workers.iter().map(|u| u.as_str()).collect();
        assert_eq!(urls, ["http://10.0.0.5:50052/", "http://w2:7000/"]);
        assert_eq!(c.cluster.secret_env, "MY_SECRET");
        assert_eq!(c.cluster.connect_timeout_secs, 2);
        assert_eq!(c.cluster.probe_interval_secs, 1);
        assert_eq!(c.cluster.scan_bytes_per_partition, 1024);

        // One comma-separated string, e.g. from the environment.
        let c = parse(
            base,
            vec![("MESHQL__CLUSTER__WORKERS", "http://a:1, http://b:2")],
        )
        .unwrap();
        assert_eq!(c.cluster.workers.len(), 2);

        let text = format!(
            "{base}[cluster]\nworkers = [\"grpc://a:1\", \"http://a:1/path\", \"not a url\", \"http://b:2\", \"http://b:2\"]\n\
             secret_env = \"s3cr3t value!\"\nshards = 3\n"
        );
        let problems = parse(&text, vec![]).unwrap_err();
        let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "cluster.shards",
                "cluster.workers[0]",
                "cluster.workers[1]",
                "cluster.workers[2]",
                "cluster.workers[4]",
                "cluster.secret_env",
            ],
            "{problems:?}"
        );
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
    fn jwt_namespace_settings() {
        let base = "[catalog]\ndir = \"c\"\n[[domains]]\nname = \"d\"\nbucket = \"b\"\n\
                    [auth.jwt]\nhs256_secret_env = \"S\"\naudiences = [\"meshql\"]\n";
        let c = parse(base, vec![]).unwrap();
        let jwt = c.jwt.unwrap();
        assert_eq!(jwt.user_prefix, DEFAULT_JWT_USER_PREFIX);
        assert!(!jwt.map_to_local_users);
        assert_eq!(jwt.leeway_secs, DEFAULT_JWT_LEEWAY_SECS);
        let c = parse(
            &format!("{base}user_prefix = \"okta:\"\nmap_to_local_users = true\nleeway = \"2m\"\n"),
            vec![],
        )
        .unwrap();
        let jwt = c.jwt.unwrap();
        assert_eq!(
            (
                jwt.user_prefix.as_str(),
                jwt.map_to_local_users,
                jwt.leeway_secs
            ),
            ("okta:", true, 120)
        );
        for bad in ["", "jwt", ":", "a:b:"] {
            let problems = parse(&format!("{base}user_prefix = \"{bad}\"\n"), vec![]).unwrap_err();
            assert_eq!(
                problems[0].field, "auth.jwt.user_prefix",
                "{bad}: {problems:?}"
            );
        }
    }

    #[test]
    fn local_user_names_cannot_enter_the_external_namespace() {
        let text = format!(
            "[catalog]\ndir = \"c\"\n[[domains]]\nname = \"d\"\nbucket = \"b\"\n\
             [[users]]\nname = \"jwt:admin\"\npassword_hash = \"{HASH}\"\n"
        );
        let problems = parse(&text, vec![]).unwrap_err();
        assert_eq!(problems[0].field, "users[0].name", "{problems:?}");
        assert!(problems[0].message.contains("`:`"), "{problems:?}");
    }

    #[test]
    fn result_cache_sizes() {
        let base = "[catalog]\ndir = \"c\"\n[[domains]]\nname = \"d\"\nbucket = \"b\"\n";
        let c = parse(&format!("{base}[engine]\nresult_cache_size = 0\n"), vec![]).unwrap();
        assert_eq!(c.engine.result_cache_size, Some(0));
        assert_eq!(c.engine.result_cache_max_entry, None);
        let c = parse(
            &format!("{base}[engine]\nresult_cache_size = \"64MiB\"\nresult_cache_max_entry = \"1MiB\"\n"),
            vec![],
        )
        .unwrap();
        assert_eq!(c.engine.result_cache_size, Some(64 << 20));
        assert_eq!(c.engine.result_cache_max_entry, Some(1 << 20));
        let c = parse(base, vec![("MESHQL__ENGINE__RESULT_CACHE_SIZE", "0")]).unwrap();
        assert_eq!(c.engine.result_cache_size, Some(0));
        let problems = parse(
            &format!("{base}[engine]\nresult_cache_size = -1\nresult_cache_max_entry = 0\n"),
            vec![],
        )
        .unwrap_err();
        let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            ["engine.result_cache_size", "engine.result_cache_max_entry"],
            "{problems:?}"
        );
    }

    #[test]
    fn engine_and_limits_sections() {
        let base = "[catalog]\ndir = \"c\"\n[[domains]]\nname = \"d\"\nbucket = \"b\"\n";
        let text = format!(
            "{base}[engine]\nmemory_limit = \"1GiB\"\nquery_memory_limit = \"256MiB\"\nspill_dir = \"spill\"\n\
             target_partitions = 4\nbatch_size = 1024\n[engine.datafusion]\n\"execution.parquet.pushdown_filters\" = false\n\
             [limits]\nmax_concurrent_queries = 3\nqueue_timeout = \"2s\"\nmax_queries_per_user = 2\n\
             statement_timeout = \"15m\"\nmax_sql_bytes = \"1MiB\"\nmax_expr_depth = 500\n"
        );
        let c = parse(&text, vec![("MESHQL__LIMITS__MAX_SQL_BYTES", "2048")]).unwrap();
        assert_eq!(c.engine.memory_limit, Some(1 << 30));
        assert_eq!(c.engine.query_memory_limit, Some(256 << 20));
        assert_eq!(c.engine.spill_dir, Some(PathBuf::from("/mesh/spill")));
        assert_eq!(c.engine.target_partitions, Some(4));
        assert_eq!(c.engine.batch_size, Some(1024));
        assert_eq!(
            c.engine.datafusion["execution.parquet.pushdown_filters"],
            "false"
        );
        assert_eq!(c.limits.max_concurrent_queries, Some(3));
        assert_eq!(c.limits.queue_timeout, Some(Duration::from_secs(2)));
        assert_eq!(c.limits.max_queries_per_user, Some(2));
        assert_eq!(c.limits.statement_timeout, Some(Duration::from_secs(900)));
        assert_eq!(c.limits.max_sql_bytes, Some(2048), "env override");
        assert_eq!(c.limits.max_expr_depth, Some(500));
        // Defaults are left to the engine.
        let c = parse(base, vec![]).unwrap();
        assert_eq!(c.engine, EngineConfig::default());
        assert_eq!(c.limits, LimitsConfig::default());
    }

    #[test]
    fn engine_and_limits_problems_name_their_field() {
        let text = "[catalog]\ndir = \"c\"\n[[domains]]\nname = \"d\"\nbucket = \"b\"\n\
            [engine]\nmemory_limit = \"lots\"\nquery_memory_limit = 0\ncolour = 1\n\
            [engine.datafusion]\n\"sql_parser.recursion_limit\" = 1000\n\"optimizer.max_passes\" = [1]\n\
            [limits]\nqueue_timeout = \"soon\"\nstatement_timeout = \"0s\"\nmax_concurrent_queries = -1\n";
        let problems = parse(text, vec![]).unwrap_err();
        let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            vec![
                "engine.colour",
                "engine.memory_limit",
                "engine.query_memory_limit",
                "engine.datafusion.\"optimizer.max_passes\"",
                "engine.datafusion.\"sql_parser.recursion_limit\"",
                "limits.statement_timeout",
                "limits.max_concurrent_queries",
                "limits.queue_timeout",
            ],
            "{problems:#?}"
        );
        assert!(problems
            .iter()
            .all(|p| p.file == Path::new("/mesh/meshql.toml")));
        // One query's share larger than the pool.
        let text = "[catalog]\ndir = \"c\"\n[[domains]]\nname = \"d\"\nbucket = \"b\"\n\
            [engine]\nmemory_limit = \"1GiB\"\nquery_memory_limit = \"2GiB\"\n";
        let problems = parse(text, vec![]).unwrap_err();
        assert_eq!(problems[0].field, "engine.query_memory_limit");
        assert!(
            problems[0].message.contains("memory_limit"),
            "{}",
            problems[0]
        );
    }

    #[test]
    fn http_and_telemetry_sections() {
        let base = "[catalog]\ndir = \"c\"\n[[domains]]\nname = \"d\"\nbucket = \"b\"\n";
        let c = parse(base, vec![]).unwrap();
        assert_eq!(c.http, None);
        assert_eq!(c.telemetry.otlp_endpoint, None);
        let c = parse(
            &format!("{base}[http]\nbind = \"127.0.0.1:8080\"\n[telemetry]\notlp_endpoint = \"http://127.0.0.1:4318\"\n"),
            vec![],
        )
        .unwrap();
        assert_eq!(c.http.unwrap().bind, "127.0.0.1:8080");
        assert_eq!(
            c.telemetry.otlp_endpoint.as_deref(),
            Some("http://127.0.0.1:4318")
        );
        assert_eq!(c.telemetry.service_name, "meshql");
        let problems = parse(
            &format!("{base}[http]\nport = 1\n[telemetry]\notlp_endpoint = \"grpc://x\"\n"),
            vec![],
        )
        .unwrap_err();
        let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            vec!["http.port", "http.bind", "telemetry.otlp_endpoint"],
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
