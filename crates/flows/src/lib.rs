//! idmint's provisioning flows: everything between an edge (CLI, HTTP, MQTT,
//! serial) and the PKI and registry.
//!
//! An edge parses its input into a typed request and calls a flow; a flow
//! uses [`idmint_pki`] for keys and certificates and [`idmint_registry`] for
//! the store, and never the reverse. [`Idmint`] is the opened data directory:
//! its configuration, its store and its CA keys.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub mod access;
pub mod audit_checkpoint;
pub mod broker;
pub mod ca;
pub mod certificates;
pub mod config;
mod context;
pub mod crl;
mod error;
pub mod files;
pub mod init;
pub mod issue;
pub mod mqtt_topic;
pub mod ocsp;
pub mod offline_revocation;
pub mod registrar;
mod scenario;
pub mod server_identity;
pub mod things;
pub mod tokens;

pub use config::Config;
pub use context::{Idmint, PASSPHRASE_ENV, PASSPHRASE_FILE};
pub use error::FlowError;
pub use idmint_pki as pki;
pub use idmint_registry as registry;
pub use idmint_types::ThingName;

/// `n` random bytes from the system generator.
pub fn random_bytes(n: usize) -> Result<Vec<u8>, FlowError> {
    let mut bytes = vec![0u8; n];
    idmint_pki::random_fill(&mut bytes)?;
    Ok(bytes)
}

/// `n` random bytes, lowercase hex.
pub fn random_hex(n: usize) -> Result<String, FlowError> {
    Ok(hex::encode(random_bytes(n)?))
}

/// A new correlation id: 16 random lowercase hex characters. An edge gives
/// it to a client that hit an internal failure, in place of the detail, and
/// logs it with the detail, so the two can be matched. HTTP and MQTT both
/// use this one.
pub fn correlation_id() -> String {
    match random_hex(8) {
        Ok(id) => id,
        // The system generator failing is not a reason to fail the answer:
        // the id only has to tell log lines apart, so the clock will do.
        Err(_) => {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            format!("{:016x}", nanos as u64)
        }
    }
}
