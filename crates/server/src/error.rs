//! API errors: a status code and a JSON body `{error, message}`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use idmint_flows::FlowError;
use idmint_pki::PkiError;
use idmint_registry::RegistryError;

/// An error answered to a client.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// A short machine-readable code, e.g. `not_found`.
    pub code: &'static str,
    /// What went wrong, for people.
    pub message: String,
    /// Seconds to wait before retrying (429).
    pub retry_after: Option<u64>,
    /// Whether to ask for HTTP Basic credentials (401).
    pub basic_challenge: bool,
}

impl ApiError {
    /// An error with a status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
            basic_challenge: false,
        }
    }

    /// 400.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 401.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 403.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 415.
    pub fn unsupported_media(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            message,
        )
    }

    /// 500.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(code = self.code, message = %self.message, "request failed");
        }
        let body = serde_json::json!({"error": self.code, "message": self.message});
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.basic_challenge {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"idmint\""),
            );
        }
        response
    }
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        let message = e.to_string();
        match e {
            RegistryError::NotFound { .. } => Self::not_found(message),
            RegistryError::AlreadyExists { .. } => {
                Self::new(StatusCode::CONFLICT, "conflict", message)
            }
            RegistryError::InvalidName { .. } => Self::bad_request(message),
            RegistryError::QuotaExhausted { .. } => {
                Self::new(StatusCode::CONFLICT, "quota_exhausted", message)
            }
            RegistryError::InvalidTransition { .. } => {
                Self::new(StatusCode::CONFLICT, "invalid_transition", message)
            }
            RegistryError::Clone { .. } => Self::new(StatusCode::CONFLICT, "clone", message),
            _ => Self::internal(message),
        }
    }
}

impl From<PkiError> for ApiError {
    fn from(e: PkiError) -> Self {
        Self::bad_request(e.to_string())
    }
}

impl From<FlowError> for ApiError {
    fn from(e: FlowError) -> Self {
        match e {
            FlowError::Registry(r) => r.into(),
            FlowError::Pki(p) => p.into(),
            FlowError::Invalid(m) => Self::bad_request(m),
            e @ FlowError::UnknownProfile { .. } => Self::bad_request(e.to_string()),
            e @ FlowError::CaCannotSign(_) => Self::bad_request(e.to_string()),
            e => Self::internal(e.to_string()),
        }
    }
}
