//! Principals (who is asking) and password hashing for configured users.

use std::collections::{BTreeMap, BTreeSet};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

use crate::config::UserConfig;
use crate::error::{CatalogError, Result};

/// An authenticated identity: a user, the groups (roles) it holds and its attributes
/// (e.g. `region = EU`). Every query carries one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Principal {
    pub user: String,
    pub groups: BTreeSet<String>,
    pub attributes: BTreeMap<String, String>,
}

impl Principal {
    pub fn new(user: impl Into<String>) -> Self {
        Self {
            user: user.into(),
            groups: BTreeSet::new(),
            attributes: BTreeMap::new(),
        }
    }

    pub fn with_group(mut self, group: impl Into<String>) -> Self {
        self.groups.insert(group.into());
        self
    }

    pub fn with_attribute(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.attributes.insert(key.into(), value.into());
        self
    }

    /// The principal of a configured user.
    pub fn from_user(user: &UserConfig) -> Self {
        Self {
            user: user.name.clone(),
            groups: user.groups.iter().cloned().collect(),
            attributes: user.attributes.clone(),
        }
    }

    pub fn has_group(&self, group: &str) -> bool {
        self.groups.contains(group)
    }
}

/// Hashes a password with Argon2id into a PHC string. `salt` must be at least 8 random bytes.
pub fn hash_password(password: &str, salt: &[u8]) -> Result<String> {
    let salt =
        SaltString::encode_b64(salt).map_err(|e| CatalogError::PasswordHash(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| CatalogError::PasswordHash(e.to_string()))
}

/// Checks a password against a PHC hash; false for a wrong password or an unusable hash.
pub fn verify_password(password: &str, phc_hash: &str) -> bool {
    match PasswordHash::new(phc_hash) {
        Ok(h) => Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_then_verify() {
        let h = hash_password("s3cret", b"0123456789abcdef").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("s3cret", &h));
        assert!(!verify_password("wrong", &h));
        assert!(!verify_password("s3cret", "not-a-hash"));
    }
}
