//! Who is calling, as HTTP sees it: the `Authorization` header (a bearer
//! token, or HTTP Basic with a token for EST) or else the TLS client
//! certificate, turned into a [`Principal`] by the access module. What the
//! principal may do is decided there too ([`Principal::authorize`]).

use axum::http::{header, HeaderMap};
use base64::Engine;
use idmint_flows::access::{Credentials, Principal};

use crate::{ApiError, ConnInfo, Shared};

/// Parses an `Authorization` header value (what the fuzz target exercises).
pub fn parse_authorization(value: &str) -> Result<Credentials, ApiError> {
    let (scheme, rest) = value
        .trim()
        .split_once(' ')
        .ok_or_else(|| unauthorized("malformed Authorization header"))?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return Ok(Credentials::Bearer(rest.to_string()));
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .map_err(|_| unauthorized("malformed Basic credentials"))?;
        let text =
            String::from_utf8(raw).map_err(|_| unauthorized("malformed Basic credentials"))?;
        let (user, pass) = text
            .split_once(':')
            .ok_or_else(|| unauthorized("malformed Basic credentials"))?;
        return Ok(Credentials::Basic(user.to_string(), pass.to_string()));
    }
    Err(unauthorized(format!(
        "unsupported authorization scheme {scheme:?}"
    )))
}

/// A 401 that asks for HTTP Basic credentials.
pub fn unauthorized(message: impl Into<String>) -> ApiError {
    let mut e = ApiError::unauthorized(message);
    e.basic_challenge = true;
    e
}

/// Authenticates a request: the `Authorization` header if present, else the
/// TLS client certificate if any. `Ok(None)`: no credentials at all.
pub async fn authenticate(
    state: &Shared,
    headers: &HeaderMap,
    conn: Option<&ConnInfo>,
) -> Result<Option<Principal>, ApiError> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let value = value
            .to_str()
            .map_err(|_| unauthorized("malformed Authorization header"))?;
        let credentials = parse_authorization(value)?;
        return Ok(Some(state.idmint.principal_for_token(&credentials).await?));
    }
    match conn {
        Some(conn) if !conn.certs.is_empty() => Ok(Some(
            state.idmint.principal_for_certificate(&conn.certs).await?,
        )),
        _ => Ok(None),
    }
}

/// Authenticates or fails with 401.
pub async fn require_caller(
    state: &Shared,
    headers: &HeaderMap,
    conn: Option<&ConnInfo>,
) -> Result<Principal, ApiError> {
    authenticate(state, headers, conn)
        .await?
        .ok_or_else(|| unauthorized("authentication required"))
}

/// The authenticated caller of a REST handler: the extractor every handler
/// that needs one takes, so authentication is not repeated per handler. A
/// request without credentials is refused with 401 before the handler runs.
pub struct Caller(pub Principal);

impl axum::extract::FromRequestParts<Shared> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &Shared,
    ) -> Result<Self, Self::Rejection> {
        let conn = parts.extensions.get::<ConnInfo>();
        require_caller(state, &parts.headers, conn)
            .await
            .map(Caller)
    }
}
