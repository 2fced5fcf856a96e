//! The typed errors of the PKI layer.

use time::OffsetDateTime;

/// Everything that can go wrong while generating keys, parsing requests,
/// building or verifying certificates.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PkiError {
    /// The input is not PEM of the expected kind.
    #[error("not a PEM {expected}: {reason}")]
    BadPem {
        /// The PEM label we looked for, e.g. `CERTIFICATE REQUEST`.
        expected: &'static str,
        /// What was wrong with it.
        reason: String,
    },
    /// A PKCS#10 request could not be parsed.
    #[error("malformed certificate signing request: {0}")]
    MalformedCsr(String),
    /// A PKCS#10 request's self-signature does not verify (no proof of possession).
    #[error(
        "certificate signing request signature does not verify (no proof of possession of the key)"
    )]
    CsrSignatureInvalid,
    /// A certificate could not be parsed.
    #[error("malformed certificate: {0}")]
    MalformedCertificate(String),
    /// An OCSP request could not be parsed.
    #[error("malformed OCSP request: {0}")]
    MalformedOcspRequest(String),
    /// The key type is not one idmint issues for.
    #[error("unsupported key type: {0}")]
    UnsupportedKeyType(String),
    /// Key generation failed in the crypto provider.
    #[error("key generation failed for {key_type}: {reason}")]
    KeyGeneration {
        /// The requested key type.
        key_type: String,
        /// The provider's message.
        reason: String,
    },
    /// A private key could not be loaded.
    #[error("invalid private key: {0}")]
    InvalidKey(String),
    /// Decrypting a stored private key failed (usually a wrong passphrase).
    #[error("cannot decrypt the private key: wrong passphrase or corrupt key file")]
    KeyDecryption,
    /// A profile could not be applied.
    #[error("profile {profile:?}: {reason}")]
    Profile {
        /// The profile name.
        profile: String,
        /// What is wrong.
        reason: String,
    },
    /// A subject or SAN template referenced an unknown variable.
    #[error("template {template:?} uses unknown variable {{{variable}}}")]
    UnknownTemplateVariable {
        /// The template text.
        template: String,
        /// The unknown variable name.
        variable: String,
    },
    /// Certificate or CRL generation failed.
    #[error("signing failed: {0}")]
    Signing(String),
    /// A PKCS#11 token or URI problem.
    #[error("{0}")]
    Pkcs11(String),
    /// The system random generator failed (a fault of this machine, never
    /// of a request).
    #[error("the system random generator failed")]
    Randomness,
    /// A certificate chain did not verify.
    #[error("certificate chain does not verify: {0}")]
    ChainInvalid(String),
    /// TPM input (a public area, an attestation, a signature, an EK) is
    /// unusable, or the TPM credential crypto failed.
    #[error("TPM: {0}")]
    Tpm(#[from] crate::tpm::TpmError),
    /// The certificate is not valid at the given time.
    #[error("certificate not valid at {time}: valid {not_before} to {not_after}")]
    NotValidAt {
        /// The time checked.
        time: OffsetDateTime,
        /// Start of validity.
        not_before: OffsetDateTime,
        /// End of validity.
        not_after: OffsetDateTime,
    },
}

impl PkiError {
    /// Whether the failure is the request's fault (a bad CSR, key or
    /// certificate it sent), so its text may go back to the client; anything
    /// else (key generation, signing, a PKCS#11 token, a stored key that does
    /// not decrypt, the random generator) is ours, and its detail stays in
    /// the log. The HTTP and MQTT edges both decide with this one method.
    pub fn is_the_requests(&self) -> bool {
        matches!(
            self,
            PkiError::BadPem { .. }
                | PkiError::MalformedCsr(_)
                | PkiError::CsrSignatureInvalid
                | PkiError::MalformedCertificate(_)
                | PkiError::MalformedOcspRequest(_)
                | PkiError::UnsupportedKeyType(_)
                | PkiError::Profile { .. }
                | PkiError::UnknownTemplateVariable { .. }
                | PkiError::ChainInvalid(_)
                | PkiError::NotValidAt { .. }
        ) || matches!(self, PkiError::Tpm(e) if e.is_the_requests())
    }
}

impl From<rcgen::Error> for PkiError {
    fn from(e: rcgen::Error) -> Self {
        PkiError::Signing(e.to_string())
    }
}
