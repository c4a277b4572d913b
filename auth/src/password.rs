//! Password checks against the configured users' argon2 hashes, in constant work per attempt:
//! an unknown user name is verified against a dummy hash computed once at start with the
//! parameters the configured users' hashes use, so that a login attempt costs one argon2
//! verification whether or not the user exists (no user enumeration by timing).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use argon2::password_hash::{PasswordHash, PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use meshql_catalog::{verify_password, Principal, UserConfig};
use rand::RngCore;

use crate::AuthError;

/// Message for every failed login, so that it does not reveal which part was wrong.
pub(crate) const BAD_CREDENTIALS: &str = "invalid user name or password";

/// The configured users and the dummy hash for unknown ones.
#[derive(Debug)]
pub(crate) struct Passwords {
    pub(crate) users: HashMap<String, UserConfig>,
    dummy_hash: String,
    verifications: AtomicU64,
}

impl Passwords {
    pub(crate) fn new(users: &[UserConfig]) -> Self {
        Self {
            users: users.iter().map(|u| (u.name.clone(), u.clone())).collect(),
            dummy_hash: dummy_hash(users),
            verifications: AtomicU64::new(0),
        }
    }

    /// Continues the verification count of the users this replaces.
    pub(crate) fn carry_verifications(&mut self, previous: &Passwords) {
        *self.verifications.get_mut() += previous.verifications();
    }

    /// How many argon2 verifications have run (known and unknown users alike).
    pub(crate) fn verifications(&self) -> u64 {
        self.verifications.load(Ordering::Relaxed)
    }

    /// Checks `user`'s password; an unknown user costs the same argon2 work as a known one.
    pub(crate) async fn check(
        self: &Arc<Self>,
        user: &str,
        password: &str,
    ) -> Result<Principal, AuthError> {
        let known = self.users.get(user);
        let hash = known.map_or_else(|| self.dummy_hash.clone(), |u| u.password_hash.clone());
        let password = password.to_string();
        let this = Arc::clone(self);
        // Argon2 is deliberately slow: keep it off the async workers.
        let ok = tokio::task::spawn_blocking(move || {
            this.verifications.fetch_add(1, Ordering::Relaxed);
            verify_password(&password, &hash)
        })
        .await
        .map_err(AuthError::PasswordCheck)?;
        match known {
            Some(config) if ok => {
                tracing::info!(user, "login");
                Ok(Principal::from_user(config))
            }
            Some(_) => {
                tracing::info!(user, "login failed: wrong password");
                Err(AuthError::unauthenticated(BAD_CREDENTIALS))
            }
            None => {
                tracing::info!(user, "login failed: unknown user");
                Err(AuthError::unauthenticated(BAD_CREDENTIALS))
            }
        }
    }

    #[cfg(test)]
    pub(crate) fn dummy_hash(&self) -> &str {
        &self.dummy_hash
    }
}

/// An argon2 hash of a random password, with the algorithm, version and parameters most of the
/// configured hashes use (argon2's defaults when there are none).
fn dummy_hash(users: &[UserConfig]) -> String {
    let mut counts: Vec<((Algorithm, Version, Params), usize)> = Vec::new();
    for u in users {
        let Ok(hash) = PasswordHash::new(&u.password_hash) else {
            continue;
        };
        let (Ok(alg), Ok(params)) = (Algorithm::try_from(hash.algorithm), Params::try_from(&hash))
        else {
            continue;
        };
        let version = hash
            .version
            .and_then(|v| Version::try_from(v).ok())
            .unwrap_or_default();
        let key = (alg, version, params);
        match counts.iter_mut().find(|(k, _)| *k == key) {
            Some((_, n)) => *n += 1,
            None => counts.push((key, 1)),
        }
    }
    // The most common setting; the first one configured on a tie.
    let mut best: Option<&((Algorithm, Version, Params), usize)> = None;
    for c in &counts {
        if best.is_none_or(|b| c.1 > b.1) {
            best = Some(c);
        }
    }
    let argon = match best {
        Some(((alg, version, params), _)) => Argon2::new(*alg, *version, params.clone()),
        None => Argon2::default(),
    };
    let mut secret = [0u8; 32];
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut secret);
    rand::rng().fill_bytes(&mut salt);
    let hashed = SaltString::encode_b64(&salt)
        .and_then(|salt| argon.hash_password(&secret, &salt).map(|h| h.to_string()));
    match hashed {
        Ok(h) => h,
        Err(e) => {
            // Not reachable with parameters read from valid hashes; fall back to the defaults.
            tracing::warn!(error = %e, "dummy password hash with the users' parameters failed");
            let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string());
            salt.and_then(|s| {
                Argon2::default()
                    .hash_password(&secret, &s)
                    .map(|h| h.to_string())
                    .map_err(|e| e.to_string())
            })
            .unwrap_or_default()
        }
    }
}
