//! The one signing abstraction for CA keys: a software key held in memory
//! (loaded from its encrypted file), or a key that lives elsewhere (a PKCS#11
//! token) and signs without ever leaving it.

use rcgen::{KeyPair, PublicKeyData, SignatureAlgorithm, SigningKey};
use zeroize::Zeroizing;

use crate::{DeviceKey, KeyType, PkiError};

/// A CA signing key.
pub struct Signer {
    kind: SignerKind,
    key_type: KeyType,
}

enum SignerKind {
    Software(KeyPair),
    External(Box<dyn SigningKey + Send + Sync>),
}

impl Signer {
    /// A signer over a software key.
    pub fn software(key: DeviceKey) -> Self {
        let key_type = key.key_type();
        Signer {
            kind: SignerKind::Software(key.into_key_pair()),
            key_type,
        }
    }

    /// A signer over a key held outside this process (e.g. in a PKCS#11
    /// token); `key` signs with the algorithm it reports.
    pub fn external(key: Box<dyn SigningKey + Send + Sync>) -> Result<Self, PkiError> {
        let key_type = KeyType::from_spki(&key.subject_public_key_info())?;
        Ok(Signer {
            kind: SignerKind::External(key),
            key_type,
        })
    }

    /// The key's type.
    pub fn key_type(&self) -> KeyType {
        self.key_type
    }

    /// For software keys, the private key as PKCS#8 DER (to be encrypted
    /// before it is stored). `None` for keys that never leave their token.
    pub fn software_pkcs8_der(&self) -> Option<Zeroizing<Vec<u8>>> {
        match &self.kind {
            SignerKind::Software(pair) => Some(Zeroizing::new(pair.serialize_der())),
            SignerKind::External(_) => None,
        }
    }

    /// The DER SubjectPublicKeyInfo of the key.
    pub fn spki_der(&self) -> Vec<u8> {
        self.subject_public_key_info()
    }

    /// Whether the key is held outside this process.
    pub fn is_external(&self) -> bool {
        matches!(self.kind, SignerKind::External(_))
    }
}

impl PublicKeyData for Signer {
    fn der_bytes(&self) -> &[u8] {
        match &self.kind {
            SignerKind::Software(pair) => pair.der_bytes(),
            SignerKind::External(key) => key.der_bytes(),
        }
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        match &self.kind {
            SignerKind::Software(pair) => pair.algorithm(),
            SignerKind::External(key) => key.algorithm(),
        }
    }
}

impl SigningKey for Signer {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        match &self.kind {
            SignerKind::Software(pair) => pair.sign(msg),
            SignerKind::External(key) => key.sign(msg),
        }
    }
}
