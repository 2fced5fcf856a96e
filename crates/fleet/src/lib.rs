//! Fleet provisioning (scenario 5): devices that leave the factory with only
//! a shared claim certificate get their identity on first boot, through
//! AWS IoT's fleet provisioning operations (CreateKeysAndCertificate,
//! CreateCertificateFromCsr, RegisterThing), provisioning templates,
//! pre-provisioning hooks, claim certificates and just-in-time provisioning.
//!
//! The MQTT edge parses the wire payloads and calls these flows; every
//! refusal comes back as a [`Rejection`] in AWS's `{statusCode, errorCode,
//! errorMessage}` shape.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub mod claims;
pub mod hook;
pub mod identify;
pub mod jitp;
pub mod provision;
pub mod rotation;
pub mod templates;

pub use claims::{ClaimCredentials, CLAIM_CA};
pub use identify::MqttIdentity;
pub use idmint_flows::correlation_id;
pub use provision::{ClaimSession, CreatedCertificate, Registered};

use idmint_registry::RegistryError;

use idmint_flows::access::AccessError;
use idmint_flows::FlowError;

idmint_flows::scenario_service!(
    /// Scenario 5 over an opened data directory: claim certificates,
    /// provisioning templates and hooks, fleet provisioning and
    /// just-in-time registration over MQTT, EST re-enrollment.
    Fleet
);

/// A refused provisioning request, as AWS IoT reports it on `/rejected`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{error_code} ({status_code}): {message}")]
pub struct Rejection {
    /// HTTP-like status: 400, 403, 404, 429 or 500.
    pub status_code: u16,
    /// A stable code, e.g. `InvalidPayload`, `ACCESS_DENIED`.
    pub error_code: &'static str,
    /// What a person can act on; never internal detail (SQL, paths).
    pub message: String,
    /// For an internal failure (500): the id the server logged the detail
    /// under, sent to the device as `correlationId`.
    pub correlation_id: Option<String>,
}

impl Rejection {
    /// A malformed or unusable request (400).
    pub fn invalid(error_code: &'static str, message: impl Into<String>) -> Self {
        Rejection {
            status_code: 400,
            error_code,
            message: message.into(),
            correlation_id: None,
        }
    }

    /// Not allowed (403).
    pub fn forbidden(error_code: &'static str, message: impl Into<String>) -> Self {
        Rejection {
            status_code: 403,
            error_code,
            message: message.into(),
            correlation_id: None,
        }
    }

    /// Something named does not exist (404).
    pub fn not_found(message: impl Into<String>) -> Self {
        Rejection {
            status_code: 404,
            error_code: "NotFound",
            message: message.into(),
            correlation_id: None,
        }
    }

    /// Too many requests (429).
    pub fn throttled(message: impl Into<String>) -> Self {
        Rejection {
            status_code: 429,
            error_code: "Throttled",
            message: message.into(),
            correlation_id: None,
        }
    }

    /// Our fault (500): the detail goes to the log at error level under a
    /// new correlation id; the device gets the id, never the detail.
    pub fn internal(error: &dyn std::fmt::Display) -> Self {
        let id = correlation_id();
        tracing::error!(correlation_id = %id, "fleet provisioning failed: {error}");
        Rejection {
            status_code: 500,
            error_code: "InternalFailure",
            message: format!("internal error (correlation id {id})"),
            correlation_id: Some(id),
        }
    }
}

impl From<FlowError> for Rejection {
    fn from(e: FlowError) -> Self {
        match e {
            FlowError::Registry(RegistryError::OwnershipToken(why)) => Rejection::invalid(
                "InvalidCertificateOwnershipToken",
                format!("the certificate ownership token {why}"),
            ),
            FlowError::Registry(e @ RegistryError::InvalidName { .. })
            | FlowError::Registry(e @ RegistryError::AlreadyExists { .. }) => {
                Rejection::invalid("InvalidParameters", e.to_string())
            }
            FlowError::Registry(RegistryError::NotFound {
                kind: "policy",
                name,
            }) => {
                tracing::warn!(policy = %name, "a template attaches a policy that does not exist: idmint policy create {name} --document FILE");
                Rejection::invalid(
                    "InvalidParameters",
                    format!("the template attaches policy {name:?}, which does not exist"),
                )
            }
            FlowError::Access(AccessError::Unauthenticated(m)) => {
                Rejection::forbidden("NotAuthorized", m)
            }
            FlowError::Invalid(m) | FlowError::Conflict(m) => {
                Rejection::invalid("InvalidParameters", m)
            }
            FlowError::Policy(e) => Rejection::invalid("InvalidPolicyDocument", e.to_string()),
            FlowError::Pki(e) if e.is_the_requests() => {
                Rejection::invalid("InvalidCsr", e.to_string())
            }
            other => Rejection::internal(&other),
        }
    }
}

impl From<RegistryError> for Rejection {
    fn from(e: RegistryError) -> Self {
        FlowError::from(e).into()
    }
}
