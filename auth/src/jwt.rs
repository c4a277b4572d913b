//! JWT bearer tokens from an identity provider (`[auth.jwt]`): signature (HS256 shared secret,
//! RS256 public keys or a JWKS file), `exp`, `nbf`, audience and issuer checked with a small
//! clock-skew leeway; claims mapped to a principal.
//!
//! JWT principals live in their own namespace: a token with `sub = "admin"` is the principal
//! `jwt:admin` (the configured `user_prefix` plus the subject), which owns nothing of the local
//! user `admin` (audit records, prepared statements, sessions, running queries) and matches no
//! `user:admin` policy selector. Only `map_to_local_users = true` lets a token stand for a
//! local user, and then it gets exactly that user's groups and attributes.

use std::collections::HashMap;

use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use meshql_catalog::{JwtConfig, Principal, UserConfig};

use crate::AuthError;

/// Verifies JWTs and maps their claims to principals.
pub(crate) struct JwtVerifier {
    config: JwtConfig,
    hs256: Option<DecodingKey>,
    /// `(kid, key)`; keys without a `kid` are tried for every token.
    rs256: Vec<(Option<String>, DecodingKey)>,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("hs256", &self.hs256.is_some())
            .field("rs256_keys", &self.rs256.len())
            .finish()
    }
}

impl JwtVerifier {
    pub(crate) fn try_new(config: &JwtConfig) -> Result<Self, String> {
        let hs256 = match &config.hs256_secret_env {
            Some(var) => {
                let secret = std::env::var(var).map_err(|_| {
                    format!("auth.jwt.hs256_secret_env: environment variable `{var}` is not set")
                })?;
                if secret.len() < 32 {
                    return Err(format!(
                        "auth.jwt.hs256_secret_env: the secret in `{var}` is shorter than 32 bytes"
                    ));
                }
                Some(DecodingKey::from_secret(secret.as_bytes()))
            }
            None => None,
        };
        let mut rs256 = Vec::new();
        for path in &config.rs256_public_keys {
            let pem = std::fs::read(path)
                .map_err(|e| format!("auth.jwt.rs256_public_keys: {}: {e}", path.display()))?;
            let key = DecodingKey::from_rsa_pem(&pem).map_err(|e| {
                format!(
                    "auth.jwt.rs256_public_keys: {}: not an RSA public key: {e}",
                    path.display()
                )
            })?;
            rs256.push((None, key));
        }
        if let Some(path) = &config.jwks_file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("auth.jwt.jwks_file: {}: {e}", path.display()))?;
            let set: jsonwebtoken::jwk::JwkSet = serde_json::from_str(&text)
                .map_err(|e| format!("auth.jwt.jwks_file: {}: not a JWKS: {e}", path.display()))?;
            for jwk in &set.keys {
                let key = DecodingKey::from_jwk(jwk)
                    .map_err(|e| format!("auth.jwt.jwks_file: {}: {e}", path.display()))?;
                rs256.push((jwk.common.key_id.clone(), key));
            }
        }
        Ok(Self {
            config: config.clone(),
            hs256,
            rs256,
        })
    }

    /// The principal of a valid token; `users` are the configured local users, consulted only
    /// with `map_to_local_users`.
    pub(crate) fn verify(
        &self,
        token: &str,
        users: &HashMap<String, UserConfig>,
    ) -> Result<Principal, AuthError> {
        let invalid = |why: &str| {
            tracing::info!(reason = why, "JWT rejected");
            AuthError::unauthenticated("invalid token; authenticate with the handshake first")
        };
        let header = decode_header(token).map_err(|_| invalid("malformed header"))?;
        let keys: Vec<&DecodingKey> = match header.alg {
            Algorithm::HS256 => self.hs256.iter().collect(),
            Algorithm::RS256 => self
                .rs256
                .iter()
                .filter(|(kid, _)| kid.is_none() || header.kid.is_none() || kid == &header.kid)
                .map(|(_, k)| k)
                .collect(),
            _ => Vec::new(),
        };
        if keys.is_empty() {
            return Err(invalid("no key for this algorithm"));
        }
        let mut validation = Validation::new(header.alg);
        validation.set_audience(&self.config.audiences);
        if !self.config.issuers.is_empty() {
            validation.set_issuer(&self.config.issuers);
        }
        validation.set_required_spec_claims(&["exp", "aud"]);
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.leeway = self.config.leeway_secs;
        let mut last = None;
        for key in keys {
            match decode::<serde_json::Map<String, serde_json::Value>>(token, key, &validation) {
                Ok(data) => {
                    return self
                        .principal(&data.claims, users)
                        .ok_or_else(|| invalid("missing user claim"))
                }
                Err(e) => last = Some(e),
            }
        }
        match last.map(|e| e.into_kind()) {
            Some(jsonwebtoken::errors::ErrorKind::ExpiredSignature) => Err(
                AuthError::unauthenticated("token expired; authenticate again"),
            ),
            Some(jsonwebtoken::errors::ErrorKind::ImmatureSignature) => {
                tracing::info!(reason = "nbf in the future", "JWT rejected");
                Err(AuthError::unauthenticated(
                    "token not yet valid (`nbf` is in the future)",
                ))
            }
            Some(kind) => Err(invalid(&format!("{kind:?}"))),
            None => Err(invalid("no key")),
        }
    }

    fn principal(
        &self,
        claims: &serde_json::Map<String, serde_json::Value>,
        users: &HashMap<String, UserConfig>,
    ) -> Option<Principal> {
        let text = |v: &serde_json::Value| match v {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            serde_json::Value::Bool(b) => Some(b.to_string()),
            _ => None,
        };
        let subject = claims
            .get(&self.config.user_claim)
            .and_then(text)
            .filter(|u| !u.is_empty())?;
        if self.config.map_to_local_users {
            if let Some(local) = users.get(&subject) {
                // The token proves who it is; what a local user may do stays in meshql.toml.
                return Some(Principal::from_user(local));
            }
        }
        let mut p = Principal::new(format!("{}{subject}", self.config.user_prefix));
        match claims.get(&self.config.groups_claim) {
            Some(serde_json::Value::Array(items)) => p.groups.extend(items.iter().filter_map(text)),
            Some(serde_json::Value::String(s)) => {
                p.groups.extend(s.split_whitespace().map(str::to_string))
            }
            _ => {}
        }
        for (attr, claim) in &self.config.attribute_claims {
            if let Some(v) = claims.get(claim).and_then(text) {
                p.attributes.insert(attr.clone(), v);
            }
        }
        Some(p)
    }
}
