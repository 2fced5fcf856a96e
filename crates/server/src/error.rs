//! API errors, mapped to the wire in this one place: a status code and a
//! JSON body `{error, message}`. A 4xx message is for people and names only
//! what the request got wrong. A server fault (5xx) answers only its code,
//! `"internal error"` and a `correlationId`; the detail (database text, file
//! paths) is logged at error level under that id and never sent.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use idmint_fleet::correlation_id;
use idmint_flows::access::AccessError;
use idmint_flows::FlowError;
use idmint_pki::PkiError;
use idmint_registry::RegistryError;
use idmint_rest::ErrorBody;

/// The message of every 5xx answer.
const INTERNAL_MESSAGE: &str = "internal error";

/// An error answered to a client.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// A short machine-readable code, e.g. `not_found`.
    pub code: &'static str,
    /// What went wrong, for people (4xx). For a 5xx, the internal detail:
    /// logged with the correlation id, never sent.
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

    /// 500; `detail` goes to the log, not to the client.
    pub fn internal(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", detail)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = if self.status.is_server_error() {
            let id = correlation_id();
            tracing::error!(
                correlation_id = %id,
                status = self.status.as_u16(),
                code = self.code,
                "request failed: {}",
                self.message
            );
            ErrorBody {
                error: Some(self.code.into()),
                message: Some(INTERNAL_MESSAGE.into()),
                correlation_id: Some(id),
            }
        } else {
            ErrorBody {
                error: Some(self.code.into()),
                message: Some(self.message),
                correlation_id: None,
            }
        };
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
            RegistryError::ThingExists { .. } => Self::new(
                StatusCode::CONFLICT,
                "thing_exists",
                format!("{message}: this credential may only create new things"),
            ),
            RegistryError::InvalidTransition { .. } => {
                Self::new(StatusCode::CONFLICT, "invalid_transition", message)
            }
            RegistryError::PolicyAttached { .. } => {
                Self::new(StatusCode::CONFLICT, "policy_attached", message)
            }
            RegistryError::Clone { .. } => Self::new(StatusCode::CONFLICT, "clone", message),
            // The store's own errors (SQL, connection, migration, corrupt
            // rows) and busy: the detail is for the log.
            _ => Self::internal(message),
        }
    }
}

impl From<AccessError> for ApiError {
    fn from(e: AccessError) -> Self {
        let message = e.to_string();
        match e {
            AccessError::Unauthenticated(_) => {
                let mut e = Self::unauthorized(message);
                e.basic_challenge = true;
                e
            }
            AccessError::ThingExists { .. } => {
                Self::new(StatusCode::CONFLICT, "thing_exists", message)
            }
            _ => Self::forbidden(message),
        }
    }
}

impl From<PkiError> for ApiError {
    fn from(e: PkiError) -> Self {
        if e.is_the_requests() {
            Self::bad_request(e.to_string())
        } else {
            Self::internal(e.to_string())
        }
    }
}

impl From<FlowError> for ApiError {
    fn from(e: FlowError) -> Self {
        match e {
            FlowError::Registry(r) => r.into(),
            FlowError::Pki(p) => p.into(),
            FlowError::Access(a) => a.into(),
            FlowError::Invalid(m) => Self::bad_request(m),
            FlowError::Conflict(m) => Self::new(StatusCode::CONFLICT, "conflict", m),
            e @ FlowError::CaRevoked(_) => {
                Self::new(StatusCode::CONFLICT, "conflict", e.to_string())
            }
            e @ FlowError::Policy(_) => Self::bad_request(e.to_string()),
            e @ FlowError::UnknownProfile { .. } => Self::bad_request(e.to_string()),
            e @ FlowError::CaCannotSign(_) => Self::bad_request(e.to_string()),
            e @ FlowError::BatchCaKeyAtFactory { .. } => Self::bad_request(e.to_string()),
            // I/O, configuration, data directory, passphrase: they name
            // files of the server, so they are logged, not sent.
            e => Self::internal(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body(e: ApiError) -> (StatusCode, serde_json::Value) {
        let response = e.into_response();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap_or_default();
        (status, serde_json::from_slice(&bytes).unwrap_or_default())
    }

    #[tokio::test]
    async fn a_server_fault_answers_a_correlation_id_and_no_detail() {
        let e: ApiError = FlowError::io(
            "/var/lib/idmint/registry.db",
            std::io::Error::other("disk full"),
        )
        .into();
        let (status, json) = body(e).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(json["error"], "internal");
        assert_eq!(json["message"], "internal error");
        let id = json["correlationId"].as_str().unwrap_or("");
        assert_eq!(id.len(), 16, "{json}");
        assert!(!json.to_string().contains("registry.db"), "{json}");
        assert!(!json.to_string().contains("disk full"), "{json}");
    }

    #[tokio::test]
    async fn a_client_fault_keeps_its_message_and_has_no_correlation_id() {
        let e: ApiError = RegistryError::NotFound {
            kind: "thing",
            name: "t1".into(),
        }
        .into();
        let (status, json) = body(e).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(json["message"], "thing \"t1\" not found");
        assert!(json.get("correlationId").is_none(), "{json}");
    }

    #[tokio::test]
    async fn a_signing_failure_is_ours_a_bad_csr_is_the_clients() {
        let (status, _) =
            body(PkiError::Pkcs11("/usr/lib/softhsm/libsofthsm2.so: slot 3".into()).into()).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        let (status, json) = body(PkiError::CsrSignatureInvalid.into()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(json["message"].as_str().unwrap_or("").contains("signature"));
    }

    #[tokio::test]
    async fn each_flow_failure_answers_the_status_a_caller_can_act_on() {
        let cases = [
            (
                FlowError::Invalid("give a count".into()),
                StatusCode::BAD_REQUEST,
            ),
            (
                FlowError::Conflict("batch b is a mint batch, not a station batch".into()),
                StatusCode::CONFLICT,
            ),
            (FlowError::CaRevoked("issuing".into()), StatusCode::CONFLICT),
            (
                FlowError::Internal("encoding the bundle: out of memory".into()),
                StatusCode::INTERNAL_SERVER_ERROR,
            ),
            (
                FlowError::Pkcs11NotConfigured("set IDMINT_PKCS11_MODULE".into()),
                StatusCode::INTERNAL_SERVER_ERROR,
            ),
            (
                FlowError::Pki(PkiError::Randomness),
                StatusCode::INTERNAL_SERVER_ERROR,
            ),
        ];
        for (e, want) in cases {
            let text = e.to_string();
            let (status, json) = body(e.into()).await;
            assert_eq!(status, want, "{text}");
            if status.is_server_error() {
                assert!(!json.to_string().contains(&text), "{json}");
            } else {
                assert_eq!(json["message"], text);
            }
        }
    }
}
