//! meshql authentication, shared by every transport (Flight SQL over gRPC, HTTP): credentials
//! read from a request's headers ([`Credentials`]: Basic, a bearer session token or JWT, or a
//! session cookie) become one [`Identity`] with its [`Principal`], through one
//! [`Authenticator`]. It reads `http::HeaderMap`s and returns identities or [`AuthError`]s, and
//! knows nothing of tonic or axum: each transport wraps it in its own layer or extractor and maps
//! the error itself.
//!
//! Basic credentials are checked against the configured users' argon2 hashes (an unknown user
//! costs the same work as a known one); a login or handshake answers with a session token that
//! is random, kept server-side with its principal, and expires after the configured time. With
//! `[auth.jwt]` configured, JWT bearer tokens from an identity provider are accepted too; their
//! principals are named `jwt:<subject>` unless the configuration maps them to local users.
//!
//! Users change while the server runs (a catalog reload calls [`Authenticator::prepare_update`]
//! and applies it): a session token names its user, and each request resolves the principal from
//! the users in force *now*, so changed groups or attributes apply to open sessions at their
//! next request. A token stops working when its user is removed or its password changes (the
//! holder must log in again); JWTs are checked against the `[auth.jwt]` settings in force.

mod credentials;
mod jwt;
mod password;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arc_swap::{ArcSwap, ArcSwapOption};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http::HeaderMap;
use meshql_catalog::{MeshConfig, Principal};
use rand::RngCore;

use credentials::MISSING_AUTHORIZATION;
pub use credentials::{cookie, Credentials};
use jwt::JwtVerifier;
use password::Passwords;

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

/// How a request proved its identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialKind {
    /// User name and password (Basic), checked on this request.
    Password,
    /// A session token issued by a login or the handshake.
    SessionToken,
    /// A JWT from the configured identity provider.
    Jwt,
}

/// An authenticated request: who it is and how it proved it.
#[derive(Debug, Clone)]
pub struct Identity {
    pub principal: Principal,
    pub kind: CredentialKind,
    /// The bearer token the request carried (session token or JWT), if any. Flight SQL keys
    /// its sessions by it; an HTTP logout revokes it.
    pub token: Option<String>,
    /// The credentials came from the session cookie: the HTTP transport must check the
    /// request's origin (CSRF) before acting on it.
    pub from_cookie: bool,
}

#[derive(Debug)]
struct TokenEntry {
    /// The local user the token was issued to; its principal is read from the users in force
    /// at each request.
    user: String,
    /// The user's password hash when the token was issued: a changed password ends the session.
    password_hash: String,
    expires: Instant,
}

/// Users and `[auth.jwt]` settings checked and ready to be put in force by
/// [`Authenticator::apply`].
#[derive(Debug)]
pub struct AuthUpdate {
    /// None: the users did not change.
    passwords: Option<Passwords>,
    jwt: Option<JwtVerifier>,
}

/// Checks credentials and tokens. One per server, shared by its transports (an `Arc`), so that
/// a session token issued on one works on the others.
#[derive(Debug)]
pub struct Authenticator {
    passwords: ArcSwap<Passwords>,
    tokens: Mutex<HashMap<String, TokenEntry>>,
    ttl: Duration,
    jwt: ArcSwapOption<JwtVerifier>,
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
            passwords: ArcSwap::from_pointee(Passwords::new(&config.users)),
            tokens: Mutex::new(HashMap::new()),
            ttl: Duration::from_secs(config.server.token_ttl_secs),
            jwt: ArcSwapOption::from_pointee(jwt),
        }
    }

    /// Checks the users and `[auth.jwt]` settings of a new configuration without putting them
    /// in force; fails when a JWT secret or key cannot be loaded.
    pub fn prepare_update(&self, config: &MeshConfig) -> Result<AuthUpdate, String> {
        let jwt = config.jwt.as_ref().map(JwtVerifier::try_new).transpose()?;
        let current = self.passwords.load();
        let same_users = current.users.len() == config.users.len()
            && config
                .users
                .iter()
                .all(|u| current.users.get(&u.name) == Some(u));
        Ok(AuthUpdate {
            passwords: (!same_users).then(|| Passwords::new(&config.users)),
            jwt,
        })
    }

    /// Puts prepared users and JWT settings in force: the next request of every session is
    /// authenticated against them (see the crate documentation).
    pub fn apply(&self, update: AuthUpdate) {
        if let Some(p) = update.passwords {
            let mut p = p;
            p.carry_verifications(&self.passwords.load());
            let users = p.users.len();
            self.passwords.store(Arc::new(p));
            // Tokens of removed users or changed passwords are dropped at their next use;
            // drop them now too, so they do not wait for their expiry in memory.
            let passwords = self.passwords.load();
            self.tokens
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .retain(|_, e| {
                    passwords
                        .users
                        .get(&e.user)
                        .is_some_and(|u| u.password_hash == e.password_hash)
                });
            tracing::info!(users, "users updated");
        }
        self.jwt.store(update.jwt.map(Arc::new));
    }

    /// [`Authenticator::prepare_update`] then [`Authenticator::apply`].
    pub fn update(&self, config: &MeshConfig) -> Result<(), String> {
        let update = self.prepare_update(config)?;
        self.apply(update);
        Ok(())
    }

    /// The identity of a request: its credentials read by [`Credentials::from_headers`] (the
    /// `authorization` header, else the cookie `session_cookie` when a transport names one)
    /// and checked by [`Authenticator::verify`]. Every transport authenticates through this.
    pub async fn identify(
        &self,
        headers: &HeaderMap,
        session_cookie: Option<&str>,
    ) -> Result<Identity, AuthError> {
        self.verify(Credentials::from_headers(headers, session_cookie)?)
            .await
    }

    /// Checks credentials: a password costs an argon2 verification (no token is issued: see
    /// [`Authenticator::login`]); a bearer token is a session token or, with `[auth.jwt]`, a
    /// JWT.
    pub async fn verify(&self, credentials: Credentials) -> Result<Identity, AuthError> {
        match credentials {
            Credentials::Basic { user, password } => Ok(Identity {
                principal: self.passwords.load_full().check(&user, &password).await?,
                kind: CredentialKind::Password,
                token: None,
                from_cookie: false,
            }),
            Credentials::Bearer { token, from_cookie } => {
                let (principal, kind) = self.principal_for_token(&token)?;
                Ok(Identity {
                    principal,
                    kind,
                    token: Some(token),
                    from_cookie,
                })
            }
        }
    }

    /// Handles the `authorization` header of a handshake: Basic credentials yield a new token;
    /// a valid Bearer token is accepted as is. Returns the token to send back.
    pub async fn handshake(&self, headers: &HeaderMap) -> Result<(String, Principal), AuthError> {
        match Credentials::from_headers(headers, None)? {
            Credentials::Basic { user, password } => self.login(&user, &password).await,
            Credentials::Bearer { token, .. } => {
                let (principal, _) = self.principal_for_token(&token)?;
                Ok((token, principal))
            }
        }
    }

    /// The principal of a request carrying `authorization: Bearer <token>`.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Principal, AuthError> {
        let header = headers
            .get(http::header::AUTHORIZATION)
            .ok_or_else(|| AuthError::unauthenticated(MISSING_AUTHORIZATION))?
            .to_str()
            .map_err(|_| AuthError::unauthenticated("`authorization` header is not ASCII"))?;
        match Credentials::from_authorization(header) {
            Ok(Credentials::Bearer { token, .. }) => Ok(self.principal_for_token(&token)?.0),
            Ok(Credentials::Basic { .. }) | Err(_) => Err(AuthError::unauthenticated(
                "expected `authorization: Bearer <token>`; authenticate with the handshake first",
            )),
        }
    }

    /// Checks a user name and password (an HTTP login form, a Basic header) and issues a new
    /// session token for the principal, usable as `authorization: Bearer <token>` on every
    /// transport (and as the HTTP session cookie).
    pub async fn login(
        &self,
        user: &str,
        password: &str,
    ) -> Result<(String, Principal), AuthError> {
        let passwords = self.passwords.load_full();
        let principal = passwords.check(user, password).await?;
        let hash = passwords
            .users
            .get(user)
            .map(|u| u.password_hash.clone())
            .unwrap_or_default();
        let token = self.issue(user, hash);
        Ok((token, principal))
    }

    /// The principal of a session token issued by [`Authenticator::login`] or the handshake, or
    /// of a JWT when `[auth.jwt]` is configured.
    pub fn authenticate_token(&self, token: &str) -> Result<Principal, AuthError> {
        self.principal_for_token(token).map(|(p, _)| p)
    }

    /// Revokes a session token (logout). Unknown tokens are ignored.
    pub fn revoke(&self, token: &str) {
        self.tokens
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(token.trim());
    }

    /// How many argon2 password verifications this authenticator has run, for unknown users
    /// (against the dummy hash) and known ones alike (for tests and metrics).
    pub fn password_verifications(&self) -> u64 {
        self.passwords.load().verifications()
    }

    fn issue(&self, user: &str, password_hash: String) -> String {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        let token = URL_SAFE_NO_PAD.encode(bytes);
        let now = Instant::now();
        let mut tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        tokens.retain(|_, e| e.expires > now);
        tokens.insert(
            token.clone(),
            TokenEntry {
                user: user.to_string(),
                password_hash,
                expires: now + self.ttl,
            },
        );
        token
    }

    fn principal_for_token(&self, token: &str) -> Result<(Principal, CredentialKind), AuthError> {
        let token = token.trim();
        {
            let mut tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
            match tokens.get(token) {
                Some(e) if e.expires > Instant::now() => {
                    // The user as configured now: groups and attributes may have changed.
                    let passwords = self.passwords.load();
                    return match passwords.users.get(&e.user) {
                        Some(u) if u.password_hash == e.password_hash => {
                            Ok((Principal::from_user(u), CredentialKind::SessionToken))
                        }
                        _ => {
                            tokens.remove(token);
                            Err(AuthError::unauthenticated(
                                "session ended: the account changed; authenticate again",
                            ))
                        }
                    };
                }
                Some(_) => {
                    return Err(AuthError::unauthenticated(
                        "token expired; authenticate again",
                    ))
                }
                None => {}
            }
        }
        match self.jwt.load().as_deref() {
            Some(jwt) if token.matches('.').count() == 2 => jwt
                .verify(token, &self.passwords.load().users)
                .map(|p| (p, CredentialKind::Jwt)),
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

#[cfg(test)]
mod tests {
    use super::*;
    use credentials::LENIENT_B64;
    use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
    use meshql_catalog::UserConfig;
    use std::path::Path;

    const SECRET_VAR: &str = "MESHQL_TEST_JWT_SECRET_AUTH_RS";
    const SECRET: &str = "an-hs256-test-secret-that-is-long-enough";

    fn config_with(extra_jwt: &str) -> MeshConfig {
        // SAFETY: only this test module sets this variable, always to the same value.
        unsafe { std::env::set_var(SECRET_VAR, SECRET) };
        let text = format!(
            "[server]\ntoken_ttl = 1\n[catalog]\ndir = \"c\"\n[[domains]]\nname = \"d\"\nbucket = \"b\"\n\
             [auth.jwt]\nhs256_secret_env = \"{SECRET_VAR}\"\naudiences = [\"meshql\"]\nissuers = [\"https://idp.test\"]\n\
             attribute_claims = {{ region = \"geo\" }}\n{extra_jwt}"
        );
        let mut config =
            MeshConfig::parse(Path::new("/m/meshql.toml"), &text, std::iter::empty()).unwrap();
        config.users.push(UserConfig {
            name: "ann".into(),
            password_hash: meshql_catalog::hash_password("pw", b"0123456789abcdef").unwrap(),
            groups: vec!["sales".into()],
            attributes: [("region".to_string(), "NA".to_string())].into(),
        });
        config
    }

    fn config() -> MeshConfig {
        config_with("")
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

    fn claims(sub: &str) -> serde_json::Value {
        serde_json::json!({"sub": sub, "groups": ["pii_reader"], "geo": "EU", "aud": "meshql", "iss": "https://idp.test", "exp": now() + 600})
    }

    fn bearer(token: &str) -> HeaderMap {
        let mut m = HeaderMap::new();
        m.insert("authorization", format!("Bearer {token}").parse().unwrap());
        m
    }

    fn basic(user_password: &str) -> HeaderMap {
        let mut m = HeaderMap::new();
        m.insert(
            "authorization",
            format!("Basic {}", LENIENT_B64.encode(user_password))
                .parse()
                .unwrap(),
        );
        m
    }

    #[test]
    fn jwt_claims_become_a_namespaced_principal() {
        let auth = Authenticator::try_new(&config()).unwrap();
        let mut c = claims("eve");
        c["groups"] = serde_json::json!(["sales", "pii_reader"]);
        let p = auth.authenticate(&bearer(&jwt(c, SECRET))).unwrap();
        assert_eq!(p.user, "jwt:eve");
        assert!(p.has_group("sales") && p.has_group("pii_reader"));
        assert_eq!(p.attributes["region"], "EU");
        // A subject naming a local user is still its own principal, with the token's claims.
        let p = auth
            .authenticate(&bearer(&jwt(claims("ann"), SECRET)))
            .unwrap();
        assert_eq!(p.user, "jwt:ann");
        assert!(p.has_group("pii_reader") && !p.has_group("sales"));
    }

    #[test]
    fn mapping_to_local_users_is_explicit_and_takes_the_local_rules() {
        let auth = Authenticator::try_new(&config_with(
            "map_to_local_users = true\nuser_prefix = \"idp:\"\n",
        ))
        .unwrap();
        let p = auth
            .authenticate(&bearer(&jwt(claims("ann"), SECRET)))
            .unwrap();
        // The local user's name, groups and attributes; not the token's.
        assert_eq!(p.user, "ann");
        assert!(p.has_group("sales") && !p.has_group("pii_reader"));
        assert_eq!(p.attributes["region"], "NA");
        // An unknown subject keeps its (configured) namespace.
        let p = auth
            .authenticate(&bearer(&jwt(claims("eve"), SECRET)))
            .unwrap();
        assert_eq!(p.user, "idp:eve");
    }

    #[test]
    fn bad_jwts_are_unauthenticated() {
        let auth = Authenticator::try_new(&config()).unwrap();
        let base = claims("eve");
        let mut expired = base.clone();
        expired["exp"] = serde_json::json!(now() - 3600);
        let mut wrong_aud = base.clone();
        wrong_aud["aud"] = serde_json::json!("another-service");
        let mut wrong_iss = base.clone();
        wrong_iss["iss"] = serde_json::json!("https://evil.test");
        let mut future = base.clone();
        future["nbf"] = serde_json::json!(now() + 3600);
        for (what, token) in [
            ("expired", jwt(expired.clone(), SECRET)),
            (
                "wrong key",
                jwt(base.clone(), "another-secret-that-is-also-long-enough"),
            ),
            ("wrong audience", jwt(wrong_aud, SECRET)),
            ("wrong issuer", jwt(wrong_iss, SECRET)),
            ("not yet valid", jwt(future.clone(), SECRET)),
            ("garbage", "a.b.c".to_string()),
        ] {
            let err = auth.authenticate(&bearer(&token)).unwrap_err();
            assert!(matches!(err, AuthError::Unauthenticated(_)), "{what}");
        }
        let err = auth
            .authenticate(&bearer(&jwt(expired, SECRET)))
            .unwrap_err();
        assert!(err.to_string().contains("expired"), "{err}");
        let err = auth
            .authenticate(&bearer(&jwt(future, SECRET)))
            .unwrap_err();
        assert!(err.to_string().contains("not yet valid"), "{err}");
    }

    #[test]
    fn nbf_and_exp_allow_the_documented_leeway() {
        let auth = Authenticator::try_new(&config()).unwrap();
        let skew = meshql_catalog::DEFAULT_JWT_LEEWAY_SECS as i64;
        let mut c = claims("eve");
        c["nbf"] = serde_json::json!(now() + skew / 2);
        auth.authenticate(&bearer(&jwt(c.clone(), SECRET)))
            .expect("nbf within the leeway");
        c["nbf"] = serde_json::json!(now() + skew + 60);
        auth.authenticate(&bearer(&jwt(c, SECRET)))
            .expect_err("nbf past the leeway");
        let mut c = claims("eve");
        c["exp"] = serde_json::json!(now() - skew / 2);
        auth.authenticate(&bearer(&jwt(c, SECRET)))
            .expect("exp within the leeway");
    }

    #[tokio::test]
    async fn handshake_tokens_expire() {
        let auth = Authenticator::try_new(&config())
            .unwrap()
            .with_token_ttl(Duration::ZERO);
        let (token, _) = auth.handshake(&basic("ann:pw")).await.unwrap();
        let err = auth.authenticate(&bearer(&token)).unwrap_err();
        assert!(matches!(err, AuthError::Unauthenticated(_)));
        assert!(err.to_string().contains("expired"), "{err}");
        // Wrong password and unknown user give the same answer.
        let a = auth.handshake(&basic("ann:nope")).await.unwrap_err();
        let b = auth.handshake(&basic("bob:nope")).await.unwrap_err();
        assert_eq!(a.to_string(), b.to_string());
    }

    #[tokio::test]
    async fn every_credential_kind_becomes_an_identity() {
        let auth = Authenticator::try_new(&config()).unwrap();
        let id = auth.identify(&basic("ann:pw"), None).await.unwrap();
        assert_eq!(
            (id.principal.user.as_str(), id.kind),
            ("ann", CredentialKind::Password)
        );
        assert!(id.token.is_none());
        let (token, _) = auth.login("ann", "pw").await.unwrap();
        let id = auth.identify(&bearer(&token), None).await.unwrap();
        assert_eq!(id.kind, CredentialKind::SessionToken);
        assert_eq!(id.token.as_deref(), Some(token.as_str()));
        let mut cookie = HeaderMap::new();
        cookie.insert("cookie", format!("meshql_session={token}").parse().unwrap());
        let id = auth
            .identify(&cookie, Some("meshql_session"))
            .await
            .unwrap();
        assert!(id.from_cookie && id.kind == CredentialKind::SessionToken);
        let id = auth
            .identify(&bearer(&jwt(claims("eve"), SECRET)), None)
            .await
            .unwrap();
        assert_eq!(
            (id.principal.user.as_str(), id.kind),
            ("jwt:eve", CredentialKind::Jwt)
        );
        auth.revoke(&token);
        let e = auth
            .identify(&cookie, Some("meshql_session"))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("invalid token"), "{e}");
    }

    #[tokio::test]
    async fn session_tokens_follow_the_users_in_force() {
        let mut config = config();
        let auth = Authenticator::try_new(&config)
            .unwrap()
            .with_token_ttl(Duration::from_secs(600));
        let (token, p) = auth.login("ann", "pw").await.unwrap();
        assert!(p.has_group("sales"));
        // Changed groups apply to the open session at its next request.
        config.users[0].groups = vec!["marketing".into()];
        auth.update(&config).unwrap();
        let p = auth.authenticate(&bearer(&token)).unwrap();
        assert!(p.has_group("marketing") && !p.has_group("sales"), "{p:?}");
        // A changed password ends the session; the new password works.
        config.users[0].password_hash =
            meshql_catalog::hash_password("pw2", b"fedcba9876543210").unwrap();
        auth.update(&config).unwrap();
        let e = auth.authenticate(&bearer(&token)).unwrap_err();
        assert!(matches!(e, AuthError::Unauthenticated(_)), "{e}");
        auth.login("ann", "pw").await.unwrap_err();
        let (token, _) = auth.login("ann", "pw2").await.unwrap();
        auth.authenticate(&bearer(&token)).unwrap();
        // A removed user's tokens stop working and it cannot log in.
        config.users.clear();
        auth.update(&config).unwrap();
        auth.authenticate(&bearer(&token)).unwrap_err();
        auth.login("ann", "pw2").await.unwrap_err();
        // Unchanged users keep the same password table (no new dummy hash).
        let before = Arc::as_ptr(&auth.passwords.load_full());
        auth.update(&config).unwrap();
        assert_eq!(before, Arc::as_ptr(&auth.passwords.load_full()));
    }

    #[tokio::test]
    async fn unknown_users_cost_one_real_argon2_verification() {
        let config = config();
        let auth = Authenticator::try_new(&config).unwrap();
        // The dummy hash is a real argon2 hash with the configured users' parameters.
        let passwords = auth.passwords.load();
        let dummy = argon2::password_hash::PasswordHash::new(passwords.dummy_hash()).unwrap();
        let user =
            argon2::password_hash::PasswordHash::new(&config.users[0].password_hash).unwrap();
        assert_eq!(dummy.algorithm, user.algorithm);
        assert_eq!(dummy.version, user.version);
        assert_eq!(dummy.params, user.params);
        assert_ne!(dummy.salt, user.salt);
        let before = auth.password_verifications();
        auth.login("nobody", "pw").await.unwrap_err();
        assert_eq!(auth.password_verifications(), before + 1);
        auth.login("ann", "wrong").await.unwrap_err();
        assert_eq!(auth.password_verifications(), before + 2);
        auth.login("ann", "pw").await.unwrap();
        assert_eq!(auth.password_verifications(), before + 3);
    }

    #[test]
    fn dummy_hash_follows_the_users_parameters() {
        use argon2::{Algorithm as A, Argon2, Params, PasswordHasher, Version};
        let mut config = config();
        let cheap = Params::new(1024, 1, 1, None).unwrap();
        let salt = argon2::password_hash::SaltString::encode_b64(b"0123456789abcdef").unwrap();
        let hash = Argon2::new(A::Argon2i, Version::V0x13, cheap)
            .hash_password(b"pw", &salt)
            .unwrap()
            .to_string();
        for name in ["b", "c"] {
            config.users.push(UserConfig {
                name: name.into(),
                password_hash: hash.clone(),
                groups: vec![],
                attributes: Default::default(),
            });
        }
        let auth = Authenticator::try_new(&config).unwrap();
        let passwords = auth.passwords.load();
        let dummy = argon2::password_hash::PasswordHash::new(passwords.dummy_hash()).unwrap();
        let expected = argon2::password_hash::PasswordHash::new(&hash).unwrap();
        assert_eq!(dummy.algorithm, expected.algorithm);
        assert_eq!(dummy.params, expected.params);
    }
}
