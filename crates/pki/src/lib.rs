//! idmint's public-key infrastructure: key generation, the CA hierarchy,
//! certificate profiles, PKCS#10 checks, certificate building, CRLs, OCSP responses and chain
//! verification.
//!
//! Everything here is pure computation over keys and certificates: no files,
//! no database. The registry and the provisioning flows build on it.
//!
//! ```
//! use idmint_pki::{CaBuilder, KeyType, Profile, SubjectValues};
//!
//! let root = CaBuilder::root("Example Co Root CA", KeyType::P256).build().unwrap();
//! let issuing = CaBuilder::issuing("Example Co Device CA", KeyType::P256, &root)
//!     .build()
//!     .unwrap();
//! let device_key = idmint_pki::DeviceKey::generate(KeyType::P256).unwrap();
//! let values = SubjectValues::for_thing("sensor-0001");
//! let cert = issuing
//!     .issue(&device_key.public_key().unwrap(), &Profile::device(), &values)
//!     .unwrap();
//! assert_eq!(cert.info.subject_cn.as_deref(), Some("sensor-0001"));
//! idmint_pki::verify_chain(&cert.der, &[issuing.certificate_der()], &[root.certificate_der()])
//!     .unwrap();
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

mod ca;
mod cert;
mod client_chain;
mod crl;
mod csr;
mod digest;
mod error;
mod key;
pub mod ocsp;
mod pkcs11;
mod profile;
mod protect;
mod signature;
mod signer;
pub mod tpm;
mod verify;

pub use ca::{CaBuilder, CertificateAuthority, IssuedCertificate, RevocationPointers};
pub use cert::{certificate_id, CertificateInfo};
pub use client_chain::{AcceptedIntermediate, ChainRejection, ClientChainVerifier, Verified};
pub use crl::{build_crl, build_crl_by, CrlKind, CrlSigner, RevocationReason, RevokedEntry};
pub use csr::Csr;
pub use digest::{
    constant_time_eq, derive_key, hmac_sha256, hmac_sha256_verify, random_fill, sha256, sha256_hex,
};
pub use error::PkiError;
pub use key::{DeviceKey, KeyType, PublicKey};
pub use pkcs11::{Pkcs11Config, Pkcs11Key, Pkcs11Uri};
pub use profile::{ExtendedKeyUsage, KeyUsage, Profile, SubjectValues};
pub use protect::{decrypt_private_key, encrypt_private_key, KeyProtection};
pub use signature::{SignatureEncoding, VerifyingKey};
pub use signer::Signer;
pub use verify::{verify_chain, verify_chain_at};

/// Encodes DER bytes as a PEM block with the given label (`CERTIFICATE`, ...).
pub fn to_pem(label: &str, der: &[u8]) -> String {
    pem::encode_config(
        &pem::Pem::new(label, der.to_vec()),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}
