//! Authentication: HTTP Basic credentials checked against the configured users' argon2 hashes
//! in the Flight handshake, answered with a bearer token that every other call must carry.
//!
//! Tokens are random, kept server-side with their principal, and expire after the configured
//! time. Basic credentials are accepted with padded (pyarrow, JDBC) and unpadded (ADBC/Go)
//! base64.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::alphabet::STANDARD;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, URL_SAFE_NO_PAD};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use meshql_catalog::{verify_password, MeshConfig, Principal, UserConfig};
use rand::RngCore;
use tonic::metadata::MetadataMap;
use tonic::Status;

/// Base64 that accepts input with or without padding.
const LENIENT_B64: GeneralPurpose = GeneralPurpose::new(
    &STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Message for every failed login, so that it does not reveal which part was wrong.
const BAD_CREDENTIALS: &str = "invalid user name or password";

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
}

impl Authenticator {
    pub fn new(config: &MeshConfig) -> Self {
        Self {
            users: config
                .users
                .iter()
                .map(|u| (u.name.clone(), u.clone()))
                .collect(),
            tokens: Mutex::new(HashMap::new()),
            ttl: Duration::from_secs(config.server.token_ttl_secs),
        }
    }

    /// Handles the `authorization` header of a handshake: Basic credentials yield a new token;
    /// a valid Bearer token is accepted as is. Returns the token to send back.
    pub async fn handshake(
        self: &Arc<Self>,
        metadata: &MetadataMap,
    ) -> Result<(String, Principal), Status> {
        let header = authorization(metadata)?;
        if let Some(encoded) = strip_scheme(header, "Basic") {
            let decoded = LENIENT_B64
                .decode(encoded.trim())
                .map_err(|_| Status::unauthenticated("malformed Basic credentials: not base64"))?;
            let decoded = String::from_utf8(decoded)
                .map_err(|_| Status::unauthenticated("malformed Basic credentials: not UTF-8"))?;
            let (user, password) = decoded.split_once(':').ok_or_else(|| {
                Status::unauthenticated("malformed Basic credentials: expected user:password")
            })?;
            let principal = self.check_password(user, password).await?;
            let token = self.issue(principal.clone());
            Ok((token, principal))
        } else if let Some(token) = strip_scheme(header, "Bearer") {
            let principal = self.principal_for_token(token.trim())?;
            Ok((token.trim().to_string(), principal))
        } else {
            Err(Status::unauthenticated(
                "unsupported authorization scheme: use Basic or Bearer",
            ))
        }
    }

    /// The principal of a request carrying `authorization: Bearer <token>`.
    pub fn authenticate(&self, metadata: &MetadataMap) -> Result<Principal, Status> {
        let header = authorization(metadata)?;
        let token = strip_scheme(header, "Bearer").ok_or_else(|| {
            Status::unauthenticated(
                "expected `authorization: Bearer <token>`; authenticate with the handshake first",
            )
        })?;
        self.principal_for_token(token.trim())
    }

    async fn check_password(
        self: &Arc<Self>,
        user: &str,
        password: &str,
    ) -> Result<Principal, Status> {
        let Some(config) = self.users.get(user).cloned() else {
            tracing::info!(user, "login failed: unknown user");
            return Err(Status::unauthenticated(BAD_CREDENTIALS));
        };
        let password = password.to_string();
        let hash = config.password_hash.clone();
        // Argon2 is deliberately slow: keep it off the async workers.
        let ok = tokio::task::spawn_blocking(move || verify_password(&password, &hash))
            .await
            .map_err(|e| Status::internal(format!("password check failed: {e}")))?;
        if ok {
            tracing::info!(user, "login");
            Ok(Principal::from_user(&config))
        } else {
            tracing::info!(user, "login failed: wrong password");
            Err(Status::unauthenticated(BAD_CREDENTIALS))
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

    fn principal_for_token(&self, token: &str) -> Result<Principal, Status> {
        let tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        match tokens.get(token) {
            Some(e) if e.expires > Instant::now() => Ok(e.principal.clone()),
            Some(_) => Err(Status::unauthenticated("token expired; authenticate again")),
            None => Err(Status::unauthenticated(
                "invalid token; authenticate with the handshake first",
            )),
        }
    }
}

fn authorization(metadata: &MetadataMap) -> Result<&str, Status> {
    metadata
        .get("authorization")
        .ok_or_else(|| {
            Status::unauthenticated(
                "missing `authorization` header; authenticate with the handshake first",
            )
        })?
        .to_str()
        .map_err(|_| Status::unauthenticated("`authorization` header is not ASCII"))
}

fn strip_scheme<'a>(header: &'a str, scheme: &str) -> Option<&'a str> {
    let (s, rest) = header.split_once(' ')?;
    s.eq_ignore_ascii_case(scheme).then_some(rest)
}
