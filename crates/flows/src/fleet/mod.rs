//! Fleet provisioning (scenario 5): devices that leave the factory with only
//! a shared claim certificate get their identity on first boot, through
//! AWS IoT's fleet provisioning operations (CreateKeysAndCertificate,
//! CreateCertificateFromCsr, RegisterThing), provisioning templates,
//! pre-provisioning hooks, claim certificates and just-in-time provisioning.
//!
//! The MQTT edge parses the wire payloads and calls these flows; every
//! refusal comes back as a [`Rejection`] in AWS's `{statusCode, errorCode,
//! errorMessage}` shape.

pub mod claims;
pub mod hook;
pub mod identify;
pub mod jitp;
pub mod provision;
pub mod templates;

pub use claims::{ClaimCredentials, CLAIM_CA};
pub use identify::MqttIdentity;
pub use provision::{ClaimSession, CreatedCertificate, Registered};

use idmint_registry::RegistryError;

use crate::FlowError;

/// A refused provisioning request, as AWS IoT reports it on `/rejected`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{error_code} ({status_code}): {message}")]
pub struct Rejection {
    /// HTTP-like status: 400, 403, 404, 429 or 500.
    pub status_code: u16,
    /// A stable code, e.g. `InvalidPayload`, `ACCESS_DENIED`.
    pub error_code: &'static str,
    /// What a person can act on.
    pub message: String,
}

impl Rejection {
    /// A malformed or unusable request (400).
    pub fn invalid(error_code: &'static str, message: impl Into<String>) -> Self {
        Rejection {
            status_code: 400,
            error_code,
            message: message.into(),
        }
    }

    /// Not allowed (403).
    pub fn forbidden(error_code: &'static str, message: impl Into<String>) -> Self {
        Rejection {
            status_code: 403,
            error_code,
            message: message.into(),
        }
    }

    /// Something named does not exist (404).
    pub fn not_found(message: impl Into<String>) -> Self {
        Rejection {
            status_code: 404,
            error_code: "NotFound",
            message: message.into(),
        }
    }

    /// Too many requests (429).
    pub fn throttled(message: impl Into<String>) -> Self {
        Rejection {
            status_code: 429,
            error_code: "Throttled",
            message: message.into(),
        }
    }

    /// Our fault (500); the details go to the log, not to the device.
    pub fn internal(error: &dyn std::fmt::Display) -> Self {
        tracing::error!("fleet provisioning failed: {error}");
        Rejection {
            status_code: 500,
            error_code: "InternalFailure",
            message: "internal failure; the server log has the details".into(),
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
            FlowError::Invalid(m) => Rejection::invalid("InvalidParameters", m),
            FlowError::Pki(e) => Rejection::invalid("InvalidCsr", e.to_string()),
            other => Rejection::internal(&other),
        }
    }
}

impl From<RegistryError> for Rejection {
    fn from(e: RegistryError) -> Self {
        FlowError::from(e).into()
    }
}
