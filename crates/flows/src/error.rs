//! The typed errors of the flows.

use std::path::PathBuf;

use idmint_pki::PkiError;
use idmint_registry::RegistryError;

/// Everything a flow can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FlowError {
    /// A key, certificate or request problem.
    #[error(transparent)]
    Pki(#[from] PkiError),
    /// A registry problem.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The configuration file is invalid.
    #[error("configuration {path}: {reason}")]
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The data directory has not been initialised.
    #[error("no idmint data directory at {0}: run `idmint init` first (or pass --data DIR)")]
    NotInitialised(PathBuf),
    /// `init` on a directory that already holds a registry.
    #[error("{0} is already initialised")]
    AlreadyInitialised(PathBuf),
    /// No CA passphrase is available.
    #[error("no CA passphrase: set IDMINT_CA_PASSPHRASE or restore {0}")]
    NoPassphrase(PathBuf),
    /// An unknown certificate profile.
    #[error("unknown profile {name:?} (configured: {known})")]
    UnknownProfile {
        /// The requested name.
        name: String,
        /// The configured names.
        known: String,
    },
    /// A CA that was revoked (`idmint ca revoke`), or one under it: it
    /// issues nothing more.
    #[error("CA {0:?} is revoked: it issues no more certificates (create another with `idmint ca create-issuing`)")]
    CaRevoked(String),
    /// A CA that cannot sign (an outside CA, or its key is unavailable).
    #[error("CA {0:?} cannot sign: it is an outside trust anchor")]
    CaCannotSign(String),
    /// An offline batch CA (its key is at the factory) authorized before
    /// `batch authorize` made a CRL signer and an OCSP responder for it:
    /// the maker cannot sign its CRL or OCSP answers.
    #[error("batch CA {ca:?} cannot sign here: its key is at the factory, and its batch was authorized before `batch authorize` made a CRL signer and an OCSP responder for the maker; revoke it (idmint ca revoke {ca}) to refuse its certificates on its parent's CRL")]
    BatchCaKeyAtFactory {
        /// The batch CA.
        ca: String,
    },
    /// The principal may not do this (see [`crate::access`]).
    #[error(transparent)]
    Access(#[from] crate::access::AccessError),
    /// A policy document that is refused.
    #[error(transparent)]
    Policy(#[from] crate::access::policy::PolicyError),
    /// A request that makes no sense as given: the caller changes it.
    #[error("{0}")]
    Invalid(String),
    /// A request that is well formed but that the current state refuses (a
    /// batch of another kind, a file that exists, a log another station
    /// holds): the caller changes the state or picks another target.
    #[error("{0}")]
    Conflict(String),
    /// A key in a PKCS#11 token, and no token configured here: set
    /// `IDMINT_PKCS11_MODULE` and `IDMINT_PKCS11_PIN` (the message says
    /// which key).
    #[error("{0}")]
    Pkcs11NotConfigured(String),
    /// A fault of this process or machine, never of the request (an
    /// encoder, a worker thread, a broken audit log): an edge logs the
    /// detail and answers a correlation id.
    #[error("{0}")]
    Internal(String),
}

impl FlowError {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        FlowError::Io {
            path: path.into(),
            source,
        }
    }
}
