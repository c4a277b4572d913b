//! Credentials as a request carries them, read from HTTP headers by every transport alike:
//! `authorization: Basic ...` (padded or unpadded base64), `authorization: Bearer <token>` (a
//! session token or a JWT), or, for browsers, a session cookie holding a session token. Parsing
//! only: checking them is [`crate::Authenticator::verify`]'s job.

use std::borrow::Cow;

use base64::alphabet::STANDARD;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use http::HeaderMap;

use crate::AuthError;

/// Base64 that accepts input with or without padding (pyarrow and JDBC pad, ADBC/Go does not).
pub(crate) const LENIENT_B64: GeneralPurpose = GeneralPurpose::new(
    &STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

pub(crate) const MISSING_AUTHORIZATION: &str =
    "missing `authorization` header; authenticate with the handshake first";
pub(crate) const UNSUPPORTED_SCHEME: &str = "unsupported authorization scheme: use Basic or Bearer";

/// What a request presents to prove who it is.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// A user name and password (HTTP Basic). Checking them costs an argon2 verification.
    Basic { user: String, password: String },
    /// A session token issued by a login or the handshake, or a JWT from an identity provider.
    Bearer {
        token: String,
        /// The token came from the session cookie rather than the `authorization` header:
        /// the HTTP transport must then protect the request against cross-site forgery.
        from_cookie: bool,
    },
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print a password or a token.
        match self {
            Credentials::Basic { user, .. } => f
                .debug_struct("Basic")
                .field("user", user)
                .finish_non_exhaustive(),
            Credentials::Bearer { from_cookie, .. } => f
                .debug_struct("Bearer")
                .field("from_cookie", from_cookie)
                .finish_non_exhaustive(),
        }
    }
}

impl Credentials {
    /// The credentials of a request: its `authorization` header (Basic or Bearer) or, when it
    /// has none and `session_cookie` names a cookie, that cookie's value as a session token.
    /// The header wins over the cookie. A request with neither is UNAUTHENTICATED with a
    /// message saying what is missing.
    pub fn from_headers(
        headers: &HeaderMap,
        session_cookie: Option<&str>,
    ) -> Result<Self, AuthError> {
        if let Some(value) = headers.get(http::header::AUTHORIZATION) {
            let header = value
                .to_str()
                .map_err(|_| AuthError::unauthenticated("`authorization` header is not ASCII"))?;
            return Self::from_authorization(header);
        }
        if let Some(token) = session_cookie.and_then(|name| cookie(headers, name)) {
            return Ok(Credentials::Bearer {
                token: token.to_string(),
                from_cookie: true,
            });
        }
        Err(AuthError::unauthenticated(MISSING_AUTHORIZATION))
    }

    /// Parses the value of an `authorization` header.
    pub fn from_authorization(header: &str) -> Result<Self, AuthError> {
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
            Ok(Credentials::Basic {
                user: user.to_string(),
                password: password.to_string(),
            })
        } else if let Some(token) = strip_scheme(header, "Bearer") {
            Ok(Credentials::Bearer {
                token: token.trim().to_string(),
                from_cookie: false,
            })
        } else {
            Err(AuthError::unauthenticated(Cow::Borrowed(
                UNSUPPORTED_SCHEME,
            )))
        }
    }
}

fn strip_scheme<'a>(header: &'a str, scheme: &str) -> Option<&'a str> {
    let (s, rest) = header.split_once(' ')?;
    s.eq_ignore_ascii_case(scheme).then_some(rest)
}

/// The value of cookie `name` in the request's `cookie` headers (RFC 6265 `name=value` pairs
/// separated by `;`), if present and non-empty.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.trim().trim_matches('"'))
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(
                http::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        m
    }

    #[test]
    fn basic_padded_and_unpadded() {
        let padded = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("ann:p:w")
        );
        let unpadded = format!(
            "basic {}",
            base64::engine::general_purpose::STANDARD_NO_PAD.encode("ann:p:w")
        );
        for h in [padded, unpadded] {
            assert_eq!(
                Credentials::from_authorization(&h).unwrap(),
                Credentials::Basic {
                    user: "ann".into(),
                    password: "p:w".into()
                }
            );
        }
        for (bad, why) in [
            ("Basic !!!", "not base64"),
            ("Basic YW5u", "expected user:password"),
            ("Digest x", "unsupported"),
            ("Bearer", "unsupported"),
        ] {
            let e = Credentials::from_authorization(bad)
                .unwrap_err()
                .to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn header_wins_over_cookie() {
        let c = Credentials::from_headers(
            &headers(&[("authorization", "Bearer abc"), ("cookie", "s=xyz")]),
            Some("s"),
        )
        .unwrap();
        assert_eq!(
            c,
            Credentials::Bearer {
                token: "abc".into(),
                from_cookie: false
            }
        );
        let c = Credentials::from_headers(
            &headers(&[("cookie", "a=1; s=xyz"), ("cookie", "b=2")]),
            Some("s"),
        )
        .unwrap();
        assert_eq!(
            c,
            Credentials::Bearer {
                token: "xyz".into(),
                from_cookie: true
            }
        );
        // A cookie is only read when the transport names one.
        let e = Credentials::from_headers(&headers(&[("cookie", "s=xyz")]), None).unwrap_err();
        assert_eq!(e.to_string(), MISSING_AUTHORIZATION);
        let e = Credentials::from_headers(&headers(&[("cookie", "s=")]), Some("s")).unwrap_err();
        assert_eq!(e.to_string(), MISSING_AUTHORIZATION);
    }

    #[test]
    fn debug_hides_secrets() {
        let c = Credentials::Basic {
            user: "ann".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
        let c = Credentials::Bearer {
            token: "tok123".into(),
            from_cookie: false,
        };
        assert!(!format!("{c:?}").contains("tok123"));
    }
}
