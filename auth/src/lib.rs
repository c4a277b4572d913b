//! meshql authentication, shared by every transport (Flight SQL over gRPC, HTTP): HTTP Basic
//! credentials checked against the configured users' argon2 hashes, answered with a bearer token
//! that every other call must carry. It reads `http::HeaderMap`s and returns [`Principal`]s or
//! [`AuthError`]s, and knows nothing of tonic or axum: each transport maps the error itself.
//!
//! Tokens are random, kept server-side with their principal, and expire after the configured
//! time. Basic credentials are accepted with padded (pyarrow, JDBC) and unpadded (ADBC/Go)
//! base64. With `[auth.jwt]` configured, JWT bearer tokens from an identity provider (HS256
//! shared secret, RS256 public keys or a JWKS file) are accepted too; their claims map to the
//! user, groups and attributes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::alphabet::STANDARD;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, URL_SAFE_NO_PAD};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use http::HeaderMap;
use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use meshql_catalog::{verify_password, JwtConfig, MeshConfig, Principal, UserConfig};
use rand::RngCore;

/// Base64 that accepts input with or without padding.
const LENIENT_B64: GeneralPurpose = GeneralPurpose::new(
    &STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Message for every failed login, so that it does not reveal which part was wrong.
const BAD_CREDENTIALS: &str = "invalid user name or password";

/// Why a request could not be authenticated.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Missing, malformed, wrong or expired credentials. The message is safe to show the
    /// caller: it never says whether a user exists.
    #[error("{0}")]
    Unauthenticated(std::borrow::Cow<'static, str>),
    /// The password check itself failed (its blocking task did not complete).
    #[error("password check failed")]
    PasswordCheck(#[source] tokio::task::JoinError),
}

impl AuthError {
    fn unauthenticated(message: impl Into<std::borrow::Cow<'static, str>>) -> Self {
        AuthError::Unauthenticated(message.into())
    }
}

#[derive(Debug)]
struct TokenEntry {
    principal: Principal,
    expires: Instant,
}

/// Checks credentials and tokens.
#[derive(Debug)]
pub struct Authenticator {
    users: HashMap<String, UserConfig>,
    tokens: Mutex<HashMap<String, TokenEntry>>,
    ttl: Duration,
    jwt: Option<JwtVerifier>,
}

/// Verifies JWTs and maps their claims to principals.
struct JwtVerifier {
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
    fn try_new(config: &JwtConfig) -> Result<Self, String> {
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

    fn verify(&self, token: &str) -> Result<Principal, AuthError> {
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
        let mut last = None;
        for key in keys {
            match decode::<serde_json::Map<String, serde_json::Value>>(token, key, &validation) {
                Ok(data) => {
                    return self
                        .principal(&data.claims)
                        .ok_or_else(|| invalid("missing user claim"))
                }
                Err(e) => last = Some(e),
            }
        }
        match last.map(|e| e.into_kind()) {
            Some(jsonwebtoken::errors::ErrorKind::ExpiredSignature) => Err(
                AuthError::unauthenticated("token expired; authenticate again"),
            ),
            Some(kind) => Err(invalid(&format!("{kind:?}"))),
            None => Err(invalid("no key")),
        }
    }

    fn principal(&self, claims: &serde_json::Map<String, serde_json::Value>) -> Option<Principal> {
        let text = |v: &serde_json::Value| match v {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            serde_json::Value::Bool(b) => Some(b.to_string()),
            _ => None,
        };
        let user = claims
            .get(&self.config.user_claim)
            .and_then(text)
            .filter(|u| !u.is_empty())?;
        let mut p = Principal::new(user);
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

impl Authenticator {
    /// Fails when `[auth.jwt]` names a secret or key that cannot be loaded.
    pub fn try_new(config: &MeshConfig) -> Result<Self, String> {
        let jwt = config.jwt.as_ref().map(JwtVerifier::try_new).transpose()?;
        Ok(Self::with_jwt(config, jwt))
    }

    /// Like [`Authenticator::try_new`], but a JWT setting that cannot be loaded disables JWT
    /// authentication (logged at warn) instead of failing; `meshql serve` checks it at start.
    pub fn new(config: &MeshConfig) -> Self {
        let jwt = config
            .jwt
            .as_ref()
            .map(JwtVerifier::try_new)
            .transpose()
            .unwrap_or_else(|e| {
                tracing::warn!(error = %e, "JWT authentication disabled");
                None
            });
        Self::with_jwt(config, jwt)
    }

    fn with_jwt(config: &MeshConfig, jwt: Option<JwtVerifier>) -> Self {
        Self {
            users: config
                .users
                .iter()
                .map(|u| (u.name.clone(), u.clone()))
                .collect(),
            tokens: Mutex::new(HashMap::new()),
            ttl: Duration::from_secs(config.server.token_ttl_secs),
            jwt,
        }
    }

    /// Handles the `authorization` header of a handshake: Basic credentials yield a new token;
    /// a valid Bearer token is accepted as is. Returns the token to send back.
    pub async fn handshake(
        self: &Arc<Self>,
        headers: &HeaderMap,
    ) -> Result<(String, Principal), AuthError> {
        let header = authorization(headers)?;
        if let Some(encoded) = strip_scheme(header, "Basic") {
            let decoded = LENIENT_B64.decode(encoded.trim()).map_err(|_| {
                AuthError::unauthenticated("malformed Basic credentials: not base64")
            })?;
            let decoded = String::from_utf8(decoded).map_err(|_| {
                AuthError::unauthenticated("malformed Basic credentials: not UTF-8")
            })?;
            let (user, password) = decoded.split_once(':').ok_or_else(|| {
                AuthError::unauthenticated("malformed Basic credentials: expected user:password")
            })?;
            let principal = self.check_password(user, password).await?;
            let token = self.issue(principal.clone());
            Ok((token, principal))
        } else if let Some(token) = strip_scheme(header, "Bearer") {
            let principal = self.principal_for_token(token.trim())?;
            Ok((token.trim().to_string(), principal))
        } else {
            Err(AuthError::unauthenticated(
                "unsupported authorization scheme: use Basic or Bearer",
            ))
        }
    }

    /// The principal of a request carrying `authorization: Bearer <token>`.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Principal, AuthError> {
        let header = authorization(headers)?;
        let token = strip_scheme(header, "Bearer").ok_or_else(|| {
            AuthError::unauthenticated(
                "expected `authorization: Bearer <token>`; authenticate with the handshake first",
            )
        })?;
        self.principal_for_token(token.trim())
    }

    /// Checks a user name and password (an HTTP login form, a Basic header) and issues a new
    /// session token for the principal, usable as `authorization: Bearer <token>` on every
    /// transport (and as the HTTP session cookie).
    pub async fn login(
        self: &Arc<Self>,
        user: &str,
        password: &str,
    ) -> Result<(String, Principal), AuthError> {
        let principal = self.check_password(user, password).await?;
        let token = self.issue(principal.clone());
        Ok((token, principal))
    }

    /// The principal of a session token issued by [`Authenticator::login`] or the handshake, or
    /// of a JWT when `[auth.jwt]` is configured.
    pub fn authenticate_token(&self, token: &str) -> Result<Principal, AuthError> {
        self.principal_for_token(token.trim())
    }

    /// Revokes a session token (logout). Unknown tokens are ignored.
    pub fn revoke(&self, token: &str) {
        self.tokens
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(token.trim());
    }

    async fn check_password(
        self: &Arc<Self>,
        user: &str,
        password: &str,
    ) -> Result<Principal, AuthError> {
        let Some(config) = self.users.get(user).cloned() else {
            tracing::info!(user, "login failed: unknown user");
            return Err(AuthError::unauthenticated(BAD_CREDENTIALS));
        };
        let password = password.to_string();
        let hash = config.password_hash.clone();
        // Argon2 is deliberately slow: keep it off the async workers.
        let ok = tokio::task::spawn_blocking(move || verify_password(&password, &hash))
            .await
            .map_err(AuthError::PasswordCheck)?;
        if ok {
            tracing::info!(user, "login");
            Ok(Principal::from_user(&config))
        } else {
            tracing::info!(user, "login failed: wrong password");
            Err(AuthError::unauthenticated(BAD_CREDENTIALS))
        }
    }

    fn issue(&self, principal: Principal) -> String {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        let token = URL_SAFE_NO_PAD.encode(bytes);
        let now = Instant::now();
        let mut tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        tokens.retain(|_, e| e.expires > now);
        tokens.insert(
            token.clone(),
            TokenEntry {
                principal,
                expires: now + self.ttl,
            },
        );
        token
    }

    fn principal_for_token(&self, token: &str) -> Result<Principal, AuthError> {
        {
            let tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
            match tokens.get(token) {
                Some(e) if e.expires > Instant::now() => return Ok(e.principal.clone()),
                Some(_) => {
                    return Err(AuthError::unauthenticated(
                        "token expired; authenticate again",
                    ))
                }
                None => {}
            }
        }
        match &self.jwt {
            Some(jwt) if token.matches('.').count() == 2 => jwt.verify(token),
            _ => Err(AuthError::unauthenticated(
                "invalid token; authenticate with the handshake first",
            )),
        }
    }

    /// Sets the lifetime of tokens issued from now on.
    pub fn with_token_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }
}

fn authorization(headers: &HeaderMap) -> Result<&str, AuthError> {
    headers
        .get(http::header::AUTHORIZATION)
        .ok_or_else(|| {
            AuthError::unauthenticated(
                "missing `authorization` header; authenticate with the handshake first",
            )
        })?
        .to_str()
        .map_err(|_| AuthError::unauthenticated("`authorization` header is not ASCII"))
}

fn strip_scheme<'a>(header: &'a str, scheme: &str) -> Option<&'a str> {
    let (s, rest) = header.split_once(' ')?;
    s.eq_ignore_ascii_case(scheme).then_some(rest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use std::path::Path;

    const SECRET_VAR: &str = "MESHQL_TEST_JWT_SECRET_AUTH_RS";
    const SECRET: &str = "an-hs256-test-secret-that-is-long-enough";

    fn config() -> MeshConfig {
        // SAFETY: only this test module sets this variable.
        unsafe { std::env::set_var(SECRET_VAR, SECRET) };
        let text = format!(
            "[server]\ntoken_ttl = 1\n[catalog]\ndir = \"c\"\n[[domains]]\nname = \"d\"\nbucket = \"b\"\n\
             [auth.jwt]\nhs256_secret_env = \"{SECRET_VAR}\"\naudiences = [\"meshql\"]\nissuers = [\"https://idp.test\"]\n\
             attribute_claims = {{ region = \"geo\" }}\n"
        );
        MeshConfig::parse(Path::new("/m/meshql.toml"), &text, std::iter::empty()).unwrap()
    }

    fn jwt(claims: serde_json::Value, secret: &str) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    fn now() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    }

    fn bearer(token: &str) -> HeaderMap {
        let mut m = HeaderMap::new();
        m.insert("authorization", format!("Bearer {token}").parse().unwrap());
        m
    }

    #[test]
    fn jwt_claims_become_the_principal() {
        let auth = Authenticator::try_new(&config()).unwrap();
        let token = jwt(
            serde_json::json!({"sub": "eve", "groups": ["sales", "pii_reader"], "geo": "EU", "aud": "meshql", "iss": "https://idp.test", "exp": now() + 600}),
            SECRET,
        );
        let p = auth.authenticate(&bearer(&token)).unwrap();
        assert_eq!(p.user, "eve");
        assert!(p.has_group("sales") && p.has_group("pii_reader"));
        assert_eq!(p.attributes["region"], "EU");
    }

    #[test]
    fn bad_jwts_are_unauthenticated() {
        let auth = Authenticator::try_new(&config()).unwrap();
        let base = serde_json::json!({"sub": "eve", "aud": "meshql", "iss": "https://idp.test", "exp": now() + 600});
        let mut expired = base.clone();
        expired["exp"] = serde_json::json!(now() - 3600);
        let mut wrong_aud = base.clone();
        wrong_aud["aud"] = serde_json::json!("another-service");
        let mut wrong_iss = base.clone();
        wrong_iss["iss"] = serde_json::json!("https://evil.test");
        for (what, token) in [
            ("expired", jwt(expired, SECRET)),
            (
                "wrong key",
                jwt(base.clone(), "another-secret-that-is-also-long-enough"),
            ),
            ("wrong audience", jwt(wrong_aud, SECRET)),
            ("wrong issuer", jwt(wrong_iss, SECRET)),
            ("garbage", "a.b.c".to_string()),
        ] {
            let err = auth.authenticate(&bearer(&token)).unwrap_err();
            assert!(matches!(err, AuthError::Unauthenticated(_)), "{what}");
        }
        let mut expired = base;
        expired["exp"] = serde_json::json!(now() - 3600);
        let err = auth
            .authenticate(&bearer(&jwt(expired, SECRET)))
            .unwrap_err();
        assert!(err.to_string().contains("expired"), "{err}");
    }

    #[tokio::test]
    async fn handshake_tokens_expire() {
        let mut config = config();
        config.users.push(UserConfig {
            name: "ann".into(),
            password_hash: meshql_catalog::hash_password("pw", b"0123456789abcdef").unwrap(),
            groups: vec![],
            attributes: Default::default(),
        });
        let auth = Arc::new(
            Authenticator::try_new(&config)
                .unwrap()
                .with_token_ttl(Duration::ZERO),
        );
        let mut m = HeaderMap::new();
        m.insert(
            "authorization",
            format!("Basic {}", LENIENT_B64.encode("ann:pw"))
                .parse()
                .unwrap(),
        );
        let (token, _) = auth.handshake(&m).await.unwrap();
        let err = auth.authenticate(&bearer(&token)).unwrap_err();
        assert!(matches!(err, AuthError::Unauthenticated(_)));
        assert!(err.to_string().contains("expired"), "{err}");
        // Wrong password and unknown user give the same answer.
        m.insert(
            "authorization",
            format!("Basic {}", LENIENT_B64.encode("ann:nope"))
                .parse()
                .unwrap(),
        );
        let a = auth.handshake(&m).await.unwrap_err();
        m.insert(
            "authorization",
            format!("Basic {}", LENIENT_B64.encode("bob:nope"))
                .parse()
                .unwrap(),
        );
        let b = auth.handshake(&m).await.unwrap_err();
        assert_eq!(a.to_string(), b.to_string());
    }
}
