//! The cluster's shared secret: workers answer only callers that present it (the coordinator,
//! and other workers fetching shuffled data), as `authorization: Bearer <secret>` on every RPC.
//!
//! The secret comes from the environment variable named by `[cluster] secret_env`, never from a
//! file meshql reads; it is compared in constant time and never logged.

use std::sync::Arc;

use http::HeaderValue;
use subtle::ConstantTimeEq;
use tonic::{Request, Status};

use crate::error::{ClusterError, Result};

/// Shortest secret accepted, in bytes.
pub const MIN_SECRET_LEN: usize = 16;

/// The shared secret of a cluster.
#[derive(Clone)]
pub struct ClusterSecret(Arc<str>);

impl std::fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterSecret(<redacted>)")
    }
}

impl ClusterSecret {
    /// Reads the secret from the environment variable `var`.
    pub fn from_env(var: &str) -> Result<Self> {
        match std::env::var(var) {
            Ok(v) => Self::new(&v).map_err(|e| ClusterError::Secret(format!("{var}: {e}"))),
            Err(_) => Err(ClusterError::Secret(format!(
                "environment variable `{var}` is not set; set it to the same random value (at least {MIN_SECRET_LEN} characters) on the server and every worker"
            ))),
        }
    }

    /// A secret from its value.
    pub fn new(value: &str) -> std::result::Result<Self, String> {
        let value = value.trim();
        if value.len() < MIN_SECRET_LEN {
            return Err(format!(
                "the secret must be at least {MIN_SECRET_LEN} characters long"
            ));
        }
        if HeaderValue::from_str(&format!("Bearer {value}")).is_err() {
            return Err("the secret must be printable ASCII".to_string());
        }
        Ok(Self(Arc::from(value)))
    }

    /// The `authorization` header value callers send.
    pub(crate) fn header(&self) -> HeaderValue {
        let mut v = HeaderValue::from_str(&format!("Bearer {}", self.0))
            .unwrap_or_else(|_| HeaderValue::from_static(""));
        v.set_sensitive(true);
        v
    }

    /// Whether a request carries this secret.
    fn admits<T>(&self, request: &Request<T>) -> bool {
        request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(|given| bool::from(given.as_bytes().ct_eq(self.0.as_bytes())))
            .unwrap_or(false)
    }

    /// A tonic interceptor that refuses every request without the secret, before its body is
    /// read.
    pub(crate) fn interceptor(
        &self,
    ) -> impl FnMut(Request<()>) -> std::result::Result<Request<()>, Status> + Clone {
        let secret = self.clone();
        move |request: Request<()>| {
            if secret.admits(&request) {
                Ok(request)
            } else {
                let peer = request
                    .remote_addr()
                    .map(|a| a.to_string())
                    .unwrap_or_else(|| "unknown".to_string());
                tracing::warn!(%peer, "refused a worker request without the cluster secret");
                Err(Status::unauthenticated(
                    "this is a meshql cluster worker: only the cluster's coordinator and workers may call it",
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weak_or_missing_secrets_are_refused_without_echoing_them() {
        assert!(ClusterSecret::new("short").is_err());
        assert!(ClusterSecret::new("line\nbreak-in-the-secret").is_err());
        let err = ClusterSecret::from_env("MESHQL_TEST_UNSET_CLUSTER_SECRET").unwrap_err();
        assert!(err.to_string().contains("MESHQL_TEST_UNSET_CLUSTER_SECRET"));
        let s = ClusterSecret::new("a-long-enough-cluster-secret").unwrap();
        assert!(!format!("{s:?}").contains("long-enough"));
    }

    #[test]
    fn only_the_exact_secret_is_admitted() {
        let s = ClusterSecret::new("a-long-enough-cluster-secret").unwrap();
        let mut check = s.interceptor();
        let with = |v: Option<&str>| {
            let mut r = Request::new(());
            if let Some(v) = v {
                r.metadata_mut().insert("authorization", v.parse().unwrap());
            }
            r
        };
        assert!(check(with(Some("Bearer a-long-enough-cluster-secret"))).is_ok());
        for bad in [
            None,
            Some("Bearer a-long-enough-cluster-secreT"),
            Some("Bearer a-long-enough-cluster-secret-and-more"),
            Some("Bearer "),
            Some("Basic a-long-enough-cluster-secret"),
        ] {
            let err = check(with(bad)).unwrap_err();
            assert_eq!(err.code(), tonic::Code::Unauthenticated, "{bad:?}");
        }
    }
}
