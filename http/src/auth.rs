//! Who is asking, over HTTP: the session cookie (set by `POST /api/v1/login`),
//! `authorization: Bearer <token or JWT>` and `authorization: Basic` all become the same
//! [`Principal`] through the one `meshql-auth` [`Authenticator`] the Flight SQL server uses, so a
//! browser session token is also a Flight SQL bearer token and a Flight token works here.
//!
//! CSRF: the session cookie is `HttpOnly; SameSite=Strict`, and every state-changing request
//! (anything but GET/HEAD/OPTIONS) is refused when the browser says it comes from another site
//! (`Sec-Fetch-Site` other than `same-origin`/`none`, or an `Origin` whose host is not this
//! server's `Host`). Clients that are not browsers send neither header and are not affected.

use std::sync::Arc;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use meshql_auth::{AuthError, Authenticator};
use meshql_catalog::Principal;
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::AppState;

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "meshql_session";

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Viewer {
    pub principal: Principal,
    /// The session token when the caller came with the session cookie or a bearer token.
    pub token: Option<String>,
}

/// The session token of the `meshql_session` cookie, if any.
fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == SESSION_COOKIE)
        .map(|(_, v)| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

fn scheme<'a>(header: &'a str, scheme: &str) -> Option<&'a str> {
    let (s, rest) = header.split_once(' ')?;
    s.eq_ignore_ascii_case(scheme).then_some(rest.trim())
}

/// Authenticates a request's headers: `authorization` first (Bearer or Basic), else the
/// session cookie.
pub async fn authenticate(
    auth: &Arc<Authenticator>,
    headers: &HeaderMap,
) -> Result<Viewer, ApiError> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let value = value.to_str().map_err(|_| {
            ApiError::Auth(AuthError::Unauthenticated(
                "`authorization` header is not ASCII".into(),
            ))
        })?;
        if let Some(token) = scheme(value, "Bearer") {
            let principal = auth.authenticate_token(token)?;
            return Ok(Viewer {
                principal,
                token: Some(token.to_string()),
            });
        }
        if let Some(encoded) = scheme(value, "Basic") {
            let (user, password) = basic_credentials(encoded)?;
            // A Basic request is a one-off login: its session token is not kept.
            let (token, principal) = auth.login(&user, &password).await?;
            auth.revoke(&token);
            return Ok(Viewer {
                principal,
                token: None,
            });
        }
        return Err(ApiError::Auth(AuthError::Unauthenticated(
            "unsupported authorization scheme: use Bearer or Basic".into(),
        )));
    }
    match session_cookie(headers) {
        Some(token) => {
            let principal = auth.authenticate_token(&token)?;
            Ok(Viewer {
                principal,
                token: Some(token),
            })
        }
        None => Err(ApiError::Auth(AuthError::Unauthenticated(
            "not logged in: POST /api/v1/login, or send `authorization: Bearer <token>`".into(),
        ))),
    }
}

fn basic_credentials(encoded: &str) -> Result<(String, String), ApiError> {
    let bad = |why: &'static str| ApiError::Auth(AuthError::Unauthenticated(why.into()));
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    let decoded = engine
        .decode(encoded)
        .map_err(|_| bad("malformed Basic credentials: not base64"))?;
    let decoded =
        String::from_utf8(decoded).map_err(|_| bad("malformed Basic credentials: not UTF-8"))?;
    let (user, password) = decoded
        .split_once(':')
        .ok_or_else(|| bad("malformed Basic credentials: expected user:password"))?;
    Ok((user.to_string(), password.to_string()))
}

impl FromRequestParts<AppState> for Viewer {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        authenticate(&state.inner.auth, &parts.headers).await
    }
}

/// Refuses state-changing requests that a browser marks as coming from another site.
pub(crate) async fn csrf_guard(request: Request, next: Next) -> Response {
    if matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    ) {
        return next.run(request).await;
    }
    if let Err(why) = same_origin(request.headers()) {
        return ApiError::CrossOrigin(why).into_response();
    }
    next.run(request).await
}

fn same_origin(headers: &HeaderMap) -> Result<(), String> {
    let text = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = text(header::HeaderName::from_static("sec-fetch-site")) {
        if !matches!(site, "same-origin" | "none") {
            return Err(format!("Sec-Fetch-Site is `{site}`"));
        }
    }
    if let Some(origin) = text(header::ORIGIN) {
        let host = text(header::HOST).unwrap_or_default();
        let authority = origin
            .split_once("://")
            .map(|(_, rest)| rest.trim_end_matches('/'))
            .unwrap_or("");
        if authority.is_empty() || !authority.eq_ignore_ascii_case(host) {
            return Err(format!("Origin `{origin}` is not this server"));
        }
    }
    Ok(())
}

#[derive(Debug, Deserialize)]
pub(crate) struct LoginRequest {
    user: String,
    password: String,
}

/// The caller as the API describes it.
#[derive(Debug, Serialize)]
pub(crate) struct Me {
    user: String,
    groups: Vec<String>,
    /// Member of the audit admin group (sees everyone's history).
    admin: bool,
}

impl Me {
    fn of(p: &Principal) -> Self {
        Self {
            user: p.user.clone(),
            groups: p.groups.iter().cloned().collect(),
            admin: p.has_group(meshql_engine::AUDIT_ADMIN_GROUP),
        }
    }
}

fn session_cookie_header(token: &str, max_age: Option<u64>) -> Result<HeaderValue, ApiError> {
    let age = max_age
        .map(|s| format!("; Max-Age={s}"))
        .unwrap_or_default();
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict{age}"
    ))
    .map_err(|e| ApiError::Internal(format!("session cookie: {e}")))
}

/// `POST /api/v1/login` `{"user": ..., "password": ...}`: sets the session cookie and returns
/// the caller and the session token (usable as a bearer token over HTTP and Flight SQL).
pub(crate) async fn login(
    State(state): State<AppState>,
    body: Result<Json<LoginRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(req) = body.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let (token, principal) = state.inner.auth.login(&req.user, &req.password).await?;
    let mut body =
        serde_json::to_value(Me::of(&principal)).map_err(|e| ApiError::Internal(e.to_string()))?;
    body["token"] = serde_json::Value::String(token.clone());
    let mut response = Json(body).into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        session_cookie_header(&token, Some(state.inner.token_ttl_secs))?,
    );
    Ok(response)
}

/// `POST /api/v1/logout`: revokes the session (cookie or bearer token) and clears the cookie.
pub(crate) async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if let Some(token) = session_cookie(&headers) {
        state.inner.auth.revoke(&token);
    }
    if let Some(token) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| scheme(v, "Bearer"))
    {
        state.inner.auth.revoke(token);
    }
    let mut response = Json(serde_json::json!({"logged_out": true})).into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, session_cookie_header("", Some(0))?);
    Ok(response)
}

/// `GET /api/v1/me`: who the caller is.
pub(crate) async fn me(viewer: Viewer) -> Json<Me> {
    Json(Me::of(&viewer.principal))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn cross_site_requests_are_refused() {
        let ok = [
            headers(&[]),
            headers(&[
                ("host", "127.0.0.1:8080"),
                ("origin", "http://127.0.0.1:8080"),
            ]),
            headers(&[("sec-fetch-site", "same-origin")]),
            headers(&[("sec-fetch-site", "none")]),
        ];
        for h in ok {
            assert!(same_origin(&h).is_ok(), "{h:?}");
        }
        let refused = [
            headers(&[("host", "127.0.0.1:8080"), ("origin", "http://evil.test")]),
            headers(&[("host", "127.0.0.1:8080"), ("origin", "null")]),
            headers(&[
                ("host", "127.0.0.1:8080"),
                ("origin", "http://127.0.0.1:9999"),
            ]),
            headers(&[("sec-fetch-site", "cross-site")]),
            headers(&[("sec-fetch-site", "same-site")]),
        ];
        for h in refused {
            assert!(same_origin(&h).is_err(), "{h:?}");
        }
    }

    #[test]
    fn reads_the_session_cookie_among_others() {
        let h = headers(&[("cookie", "a=b; meshql_session=tok123; c=d")]);
        assert_eq!(session_cookie(&h).as_deref(), Some("tok123"));
        assert_eq!(session_cookie(&headers(&[("cookie", "a=b")])), None);
    }

    #[test]
    fn basic_credentials_with_and_without_padding() {
        assert_eq!(
            basic_credentials("YWRtaW46YWRtaW4=").unwrap(),
            ("admin".to_string(), "admin".to_string())
        );
        assert_eq!(
            basic_credentials("YWRtaW46YWRtaW4").unwrap(),
            ("admin".to_string(), "admin".to_string())
        );
        assert!(basic_credentials("!!!").is_err());
    }
}
