//! Domain buckets: one object store per domain, built from that domain's own settings and
//! credentials only, registered with the engine's runtime under the bucket's URL.
//!
//! - `file://` buckets use the local file system.
//! - `s3://`, `gs://`, `az://` / `abfss://` buckets use object_store's clients, configured from
//!   the domain's `storage` options plus its credentials (`credentials_env`, `secrets_file`).
//!   Nothing is taken from the process environment implicitly, so one domain's credentials are
//!   never used for another's data, and a bucket without credentials must say so
//!   (`skip_signature = "true"`) instead of falling back to instance metadata.
//! - Every remote store has request and connect timeouts and bounded retries, so a domain whose
//!   storage is down fails its queries quickly while the rest of the mesh keeps serving.
//!
//! Credential values never appear in errors or logs: problems name the domain and the option.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use datafusion::execution::runtime_env::RuntimeEnv;
use deltalake::logstore::{
    default_logstore, logstore_factories, LogStore, LogStoreFactory, StorageConfig,
};
use meshql_catalog::{DomainConfig, Mesh};
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::local::LocalFileSystem;
use object_store::{ClientOptions, ObjectStore, RetryConfig};
use url::Url;

use crate::error::{EngineError, Result};

/// Defaults for remote buckets (each overridable per domain in `storage`).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_MAX_RETRIES: usize = 2;
const DEFAULT_RETRY_TIMEOUT: Duration = Duration::from_secs(15);

/// Creates and registers the object store of every domain's bucket (also used by cluster
/// workers, which read the same buckets with the same per-domain credentials).
pub fn register_domain_stores(runtime: &RuntimeEnv, mesh: &Mesh) -> Result<()> {
    register_delta_schemes();
    for domain in &mesh.domains {
        let store = store_for_domain(&domain.config).map_err(|message| {
            EngineError::Catalog(meshql_catalog::CatalogError::Invalid(vec![
                meshql_catalog::Problem::new(
                    &mesh.config.file,
                    format!("domains.{}", domain.name()),
                    message,
                ),
            ]))
        })?;
        // Count requests per domain. Local buckets share one `file://` store: it tells domains
        // apart by path, so it knows every local domain.
        let peers = mesh
            .domains
            .iter()
            .filter(|d| same_store(&d.config.bucket, &domain.config.bucket))
            .map(|d| (d.config.bucket.path().to_string(), d.name().to_string()))
            .collect();
        let store = Arc::new(crate::store_metrics::InstrumentedStore::new(store, peers));
        runtime.register_object_store(&domain.config.bucket, store);
    }
    Ok(())
}

/// Whether two buckets are served by the same registered store (same scheme and host).
fn same_store(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme() && a.host_str() == b.host_str()
}

/// The store of one domain (also used to open its Delta tables).
pub(crate) fn store_for_domain(
    domain: &DomainConfig,
) -> std::result::Result<Arc<dyn ObjectStore>, String> {
    let url = &domain.bucket;
    if url.scheme() == "file" {
        return Ok(Arc::new(LocalFileSystem::new()));
    }
    let mut options = domain.storage.clone();
    options.extend(load_credentials(domain)?);
    let take_duration =
        |options: &mut BTreeMap<String, String>, key: &str, default: Duration| match options
            .remove(key)
        {
            None => Ok(default),
            Some(v) => parse_duration(&v)
                .ok_or_else(|| format!("storage.{key}: `{v}` is not a duration such as `30s`")),
        };
    let timeout = take_duration(&mut options, "timeout", DEFAULT_TIMEOUT)?;
    let connect_timeout = take_duration(&mut options, "connect_timeout", DEFAULT_CONNECT_TIMEOUT)?;
    let retry_timeout = take_duration(&mut options, "retry_timeout", DEFAULT_RETRY_TIMEOUT)?;
    let max_retries = match options.remove("max_retries") {
        None => DEFAULT_MAX_RETRIES,
        Some(v) => v
            .parse()
            .map_err(|_| format!("storage.max_retries: `{v}` is not a number"))?,
    };
    let allow_http = match options.remove("allow_http") {
        None => false,
        Some(v) => v
            .parse()
            .map_err(|_| format!("storage.allow_http: `{v}` is not true or false"))?,
    };
    let skip_signature = options
        .get("skip_signature")
        .map(|v| v == "true")
        .unwrap_or(false);
    let client = ClientOptions::new()
        .with_timeout(timeout)
        .with_connect_timeout(connect_timeout)
        .with_allow_http(allow_http);
    let retry = RetryConfig {
        max_retries,
        retry_timeout,
        ..Default::default()
    };
    let unknown = |key: &str| {
        format!(
            "storage: unknown option `{key}` for a {}:// bucket",
            url.scheme()
        )
    };
    let store: Arc<dyn ObjectStore> = match url.scheme() {
        "s3" | "s3a" => {
            if !skip_signature
                && !options.contains_key("access_key_id")
                && !options.contains_key("aws_access_key_id")
            {
                return Err("no credentials: set credentials_env or secrets_file (access_key_id, secret_access_key), or storage.skip_signature = \"true\" for a public bucket".to_string());
            }
            let mut b = AmazonS3Builder::new()
                .with_url(url.as_str())
                .with_client_options(client)
                .with_retry(retry);
            for (k, v) in &options {
                b = b.with_config(AmazonS3ConfigKey::from_str(k).map_err(|_| unknown(k))?, v);
            }
            Arc::new(b.build().map_err(|e| redact(&e.to_string(), &options))?)
        }
        "gs" => {
            let mut b = GoogleCloudStorageBuilder::new()
                .with_url(url.as_str())
                .with_client_options(client)
                .with_retry(retry);
            for (k, v) in &options {
                b = b.with_config(GoogleConfigKey::from_str(k).map_err(|_| unknown(k))?, v);
            }
            Arc::new(b.build().map_err(|e| redact(&e.to_string(), &options))?)
        }
        "az" | "abfs" | "abfss" => {
            let mut b = MicrosoftAzureBuilder::new()
                .with_url(url.as_str())
                .with_client_options(client)
                .with_retry(retry);
            for (k, v) in &options {
                b = b.with_config(AzureConfigKey::from_str(k).map_err(|_| unknown(k))?, v);
            }
            Arc::new(b.build().map_err(|e| redact(&e.to_string(), &options))?)
        }
        other => return Err(format!("unsupported bucket scheme `{other}://`")),
    };
    Ok(store)
}

/// The domain's credentials: from the environment variables it names and its secrets file.
fn load_credentials(
    domain: &DomainConfig,
) -> std::result::Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    if let Some(path) = &domain.secrets_file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("secrets_file {}: {e}", path.display()))?;
        let table: toml::Table = text.parse().map_err(|_| {
            format!(
                "secrets_file {}: not valid TOML of `option = \"value\"` lines",
                path.display()
            )
        })?;
        for (k, v) in table {
            match v.as_str() {
                Some(s) => {
                    out.insert(k, s.to_string());
                }
                None => {
                    return Err(format!(
                        "secrets_file {}: `{k}` must be a string",
                        path.display()
                    ))
                }
            }
        }
    }
    for (option, var) in &domain.credentials_env {
        let value = std::env::var(var).map_err(|_| {
            format!("credentials_env.{option}: environment variable `{var}` is not set")
        })?;
        out.insert(option.clone(), value);
    }
    Ok(out)
}

/// Removes option values (credentials included) from a message.
fn redact(message: &str, options: &BTreeMap<String, String>) -> String {
    let mut m = message.to_string();
    for v in options.values().filter(|v| v.len() >= 4) {
        m = m.replace(v.as_str(), "<redacted>");
    }
    m
}

fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit() && c != '.')?);
    let n: f64 = n.parse().ok()?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        _ => return None,
    };
    (secs > 0.0).then(|| Duration::from_secs_f64(secs))
}

/// deltalake registers log stores for `file://` and `memory://` only (its cloud features pull in
/// the cloud SDKs). meshql hands deltalake the domain's own object store, so the plain log store
/// works for every scheme: meshql only reads.
fn register_delta_schemes() {
    let factories = logstore_factories();
    for scheme in ["s3://", "s3a://", "gs://", "az://", "abfs://", "abfss://"] {
        if let Ok(url) = Url::parse(scheme) {
            if factories.get(&url).is_none() {
                factories.insert(url, Arc::new(ReadOnlyLogStoreFactory));
            }
        }
    }
}

#[derive(Debug)]
struct ReadOnlyLogStoreFactory;

impl LogStoreFactory for ReadOnlyLogStoreFactory {
    fn with_options(
        &self,
        prefixed_store: Arc<dyn ObjectStore>,
        root_store: Arc<dyn ObjectStore>,
        location: &Url,
        options: &StorageConfig,
    ) -> deltalake::DeltaResult<Arc<dyn LogStore>> {
        Ok(default_logstore(
            prefixed_store,
            root_store,
            location,
            options,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn domain(bucket: &str, storage: &[(&str, &str)]) -> DomainConfig {
        DomainConfig {
            name: "sales".into(),
            bucket: Url::parse(bucket).unwrap(),
            description: String::new(),
            owner: String::new(),
            storage: storage
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            credentials_env: BTreeMap::new(),
            secrets_file: None,
        }
    }

    #[test]
    fn builds_each_kind_of_bucket() {
        store_for_domain(&domain("file:///tmp/x/", &[])).unwrap();
        store_for_domain(&domain(
            "s3://b/p/",
            &[
                ("region", "eu-west-1"),
                ("skip_signature", "true"),
                ("timeout", "2s"),
            ],
        ))
        .unwrap();
        store_for_domain(&domain("gs://b/", &[("skip_signature", "true")])).unwrap();
        store_for_domain(&domain(
            "az://container/",
            &[("account_name", "acct"), ("skip_signature", "true")],
        ))
        .unwrap();
    }

    #[test]
    fn refuses_ambient_credentials_and_unknown_options() {
        let err = store_for_domain(&domain("s3://b/", &[])).unwrap_err();
        assert!(err.contains("no credentials"), "{err}");
        let err = store_for_domain(&domain(
            "s3://b/",
            &[("skip_signature", "true"), ("colour", "red")],
        ))
        .unwrap_err();
        assert!(err.contains("colour"), "{err}");
        let err = store_for_domain(&domain(
            "s3://b/",
            &[("skip_signature", "true"), ("timeout", "soon")],
        ))
        .unwrap_err();
        assert!(err.contains("storage.timeout"), "{err}");
    }

    #[test]
    fn credentials_come_from_the_secrets_file_and_named_env_vars_only() {
        let dir = tempfile::tempdir().unwrap();
        let secrets = dir.path().join("sales.toml");
        std::fs::write(
            &secrets,
            "access_key_id = \"AKIDEXAMPLE\"\nsecret_access_key = \"file-secret-value\"\n",
        )
        .unwrap();
        let mut d = domain("s3://b/", &[("region", "us-east-1")]);
        d.secrets_file = Some(secrets);
        store_for_domain(&d).unwrap();
        let creds = load_credentials(&d).unwrap();
        assert_eq!(creds["secret_access_key"], "file-secret-value");
        // A named variable that is not set is an error naming the option and the variable.
        let mut d = domain("s3://b/", &[]);
        d.credentials_env.insert(
            "secret_access_key".into(),
            "MESHQL_UNSET_TEST_VARIABLE".into(),
        );
        let err = store_for_domain(&d).unwrap_err();
        assert!(
            err.contains("credentials_env.secret_access_key")
                && err.contains("MESHQL_UNSET_TEST_VARIABLE"),
            "{err}"
        );
        // Redaction removes values from messages.
        let opts: BTreeMap<String, String> = [(
            "secret_access_key".to_string(),
            "file-secret-value".to_string(),
        )]
        .into();
        assert_eq!(
            redact("bad key file-secret-value here", &opts),
            "bad key <redacted> here"
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("2s"), Some(Duration::from_secs(2)));
        assert_eq!(parse_duration("x"), None);
    }
}
