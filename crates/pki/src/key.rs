//! Key types and key generation for devices and CAs.

use std::fmt;
use std::str::FromStr;

use rcgen::{KeyPair, PublicKeyData, RsaKeySize, SignatureAlgorithm};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::PkiError;

/// The key algorithms idmint generates and signs with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyType {
    /// ECDSA on NIST P-256 with SHA-256 (the default).
    P256,
    /// ECDSA on NIST P-384 with SHA-384.
    P384,
    /// Ed25519.
    Ed25519,
    /// RSA 2048 with PKCS#1 v1.5 and SHA-256.
    Rsa2048,
    /// RSA 3072 with PKCS#1 v1.5 and SHA-256.
    Rsa3072,
}

impl KeyType {
    /// All key types, in the order the CLI lists them.
    pub const ALL: [KeyType; 5] = [
        KeyType::P256,
        KeyType::P384,
        KeyType::Ed25519,
        KeyType::Rsa2048,
        KeyType::Rsa3072,
    ];

    /// The name used on the command line and in configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyType::P256 => "p256",
            KeyType::P384 => "p384",
            KeyType::Ed25519 => "ed25519",
            KeyType::Rsa2048 => "rsa2048",
            KeyType::Rsa3072 => "rsa3072",
        }
    }

    /// The signature algorithm a key of this type signs with.
    pub fn signature_algorithm(self) -> &'static SignatureAlgorithm {
        match self {
            KeyType::P256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            KeyType::P384 => &rcgen::PKCS_ECDSA_P384_SHA384,
            KeyType::Ed25519 => &rcgen::PKCS_ED25519,
            KeyType::Rsa2048 | KeyType::Rsa3072 => &rcgen::PKCS_RSA_SHA256,
        }
    }

    /// Identifies the key type of a DER SubjectPublicKeyInfo.
    pub fn from_spki(spki_der: &[u8]) -> Result<KeyType, PkiError> {
        use x509_parser::prelude::FromDer;
        use x509_parser::public_key::PublicKey as P;
        let (_, spki) = x509_parser::x509::SubjectPublicKeyInfo::from_der(spki_der)
            .map_err(|e| PkiError::UnsupportedKeyType(format!("unparseable public key: {e}")))?;
        let parsed = spki
            .parsed()
            .map_err(|e| PkiError::UnsupportedKeyType(format!("unparseable public key: {e}")))?;
        match parsed {
            P::EC(point) => match point.key_size() {
                256 => Ok(KeyType::P256),
                384 => Ok(KeyType::P384),
                bits => Err(PkiError::UnsupportedKeyType(format!(
                    "EC key of {bits} bits"
                ))),
            },
            P::RSA(rsa) => match rsa.key_size() {
                2048 => Ok(KeyType::Rsa2048),
                3072 => Ok(KeyType::Rsa3072),
                bits => Err(PkiError::UnsupportedKeyType(format!(
                    "RSA key of {bits} bits"
                ))),
            },
            P::Unknown(_)
                if spki.algorithm.algorithm == x509_parser::oid_registry::OID_SIG_ED25519 =>
            {
                Ok(KeyType::Ed25519)
            }
            _ => Err(PkiError::UnsupportedKeyType(format!(
                "public key algorithm {}",
                spki.algorithm.algorithm
            ))),
        }
    }
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for KeyType {
    type Err = PkiError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        KeyType::ALL
            .into_iter()
            .find(|k| k.as_str() == s.to_ascii_lowercase())
            .ok_or_else(|| {
                PkiError::UnsupportedKeyType(format!(
                    "{s:?} (expected one of p256, p384, ed25519, rsa2048, rsa3072)"
                ))
            })
    }
}

/// A public key as it goes into a certificate: DER SubjectPublicKeyInfo.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicKey {
    spki: rcgen::SubjectPublicKeyInfo,
    spki_der: Vec<u8>,
    key_type: KeyType,
}

impl PublicKey {
    /// Parses a DER SubjectPublicKeyInfo of a supported key type.
    pub fn from_spki_der(spki_der: &[u8]) -> Result<Self, PkiError> {
        let key_type = KeyType::from_spki(spki_der)?;
        let spki = rcgen::SubjectPublicKeyInfo::from_der(spki_der)
            .map_err(|e| PkiError::UnsupportedKeyType(e.to_string()))?;
        Ok(PublicKey {
            spki,
            spki_der: spki_der.to_vec(),
            key_type,
        })
    }

    /// The DER SubjectPublicKeyInfo.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki_der
    }

    /// The key's type.
    pub fn key_type(&self) -> KeyType {
        self.key_type
    }

    pub(crate) fn as_rcgen(&self) -> &rcgen::SubjectPublicKeyInfo {
        &self.spki
    }
}

/// The same key as a version 1 PKCS#8 document (no public key).
fn pkcs8_v1(der: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    use pkcs8::der::Encode;
    let mut info = pkcs8::PrivateKeyInfo::try_from(der).ok()?;
    info.public_key = None;
    info.to_der().ok().map(Zeroizing::new)
}

/// A freshly generated or loaded private key (software).
///
/// The PKCS#8 encoding handed out is zeroized when dropped; the key inside the
/// crypto provider is freed (and cleansed) by the provider.
pub struct DeviceKey {
    pair: KeyPair,
    key_type: KeyType,
}

impl DeviceKey {
    /// Generates a new key of the given type.
    pub fn generate(key_type: KeyType) -> Result<Self, PkiError> {
        let alg = key_type.signature_algorithm();
        let generated = match key_type {
            KeyType::Rsa2048 => KeyPair::generate_rsa_for(alg, RsaKeySize::_2048),
            KeyType::Rsa3072 => KeyPair::generate_rsa_for(alg, RsaKeySize::_3072),
            _ => KeyPair::generate_for(alg),
        };
        let pair = generated.map_err(|e| PkiError::KeyGeneration {
            key_type: key_type.to_string(),
            reason: e.to_string(),
        })?;
        Ok(DeviceKey { pair, key_type })
    }

    /// Loads a key from unencrypted PKCS#8 DER.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, PkiError> {
        let probe = KeyPair::try_from(der).map_err(|e| PkiError::InvalidKey(e.to_string()))?;
        let key_type = KeyType::from_spki(&probe.subject_public_key_info())?;
        let pair = if matches!(key_type, KeyType::Rsa2048 | KeyType::Rsa3072) {
            KeyPair::from_pkcs8_der_and_sign_algo(&der.into(), key_type.signature_algorithm())
                .map_err(|e| PkiError::InvalidKey(e.to_string()))?
        } else {
            probe
        };
        Ok(DeviceKey { pair, key_type })
    }

    /// Loads a key from unencrypted PKCS#8 PEM.
    pub fn from_pkcs8_pem(pem_text: &str) -> Result<Self, PkiError> {
        let block = pem::parse(pem_text).map_err(|e| PkiError::BadPem {
            expected: "PRIVATE KEY",
            reason: e.to_string(),
        })?;
        if block.tag() != "PRIVATE KEY" {
            return Err(PkiError::BadPem {
                expected: "PRIVATE KEY",
                reason: format!("found {}", block.tag()),
            });
        }
        let der = Zeroizing::new(block.into_contents());
        Self::from_pkcs8_der(&der)
    }

    /// The key's type.
    pub fn key_type(&self) -> KeyType {
        self.key_type
    }

    /// The public half, for a certificate or a comparison.
    pub fn public_key(&self) -> Result<PublicKey, PkiError> {
        PublicKey::from_spki_der(&self.pair.subject_public_key_info())
    }

    /// The DER SubjectPublicKeyInfo of the key.
    pub fn spki_der(&self) -> Vec<u8> {
        self.pair.subject_public_key_info()
    }

    /// The private key as PKCS#8 DER (zeroized on drop). An Ed25519 key is
    /// written as RFC 8410 §7 shows it, a version 1 `PrivateKeyInfo` without
    /// the public key: the crypto provider makes version 2 documents, which
    /// OpenSSL 3.0 refuses to read ("unsupported").
    pub fn pkcs8_der(&self) -> Zeroizing<Vec<u8>> {
        let der = Zeroizing::new(self.pair.serialize_der());
        if self.key_type == KeyType::Ed25519 {
            if let Some(v1) = pkcs8_v1(&der) {
                return v1;
            }
        }
        der
    }

    /// The private key as PKCS#8 PEM (zeroized on drop), as
    /// [`DeviceKey::pkcs8_der`].
    pub fn pkcs8_pem(&self) -> Zeroizing<String> {
        Zeroizing::new(crate::to_pem("PRIVATE KEY", &self.pkcs8_der()))
    }

    /// Signs a message with the key's signature algorithm (ECDSA signatures
    /// are DER-encoded, as in X.509).
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, PkiError> {
        use rcgen::SigningKey;
        Ok(self.pair.sign(message)?)
    }

    /// Signs a message as JWS ES256 does: an ECDSA signature laid out as raw
    /// `r || s` (RFC 7518 §3.4). Only for P-256 keys.
    pub fn sign_fixed(&self, message: &[u8]) -> Result<Vec<u8>, PkiError> {
        if self.key_type() != KeyType::P256 {
            return Err(PkiError::UnsupportedKeyType(format!(
                "{} (fixed-layout signatures are made with p256 keys)",
                self.key_type()
            )));
        }
        let der = self.sign(message)?;
        p256::ecdsa::Signature::from_der(&der)
            .map(|s| s.to_bytes().to_vec())
            .map_err(|e| PkiError::InvalidKey(format!("ECDSA signature: {e}")))
    }

    /// A PKCS#10 request (PEM) for this key with subject `CN=common_name`,
    /// as a device makes one.
    pub fn csr_pem(&self, common_name: &str) -> Result<String, PkiError> {
        let mut params = rcgen::CertificateParams::default();
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(rcgen::DnType::CommonName, common_name);
        params.distinguished_name = dn;
        Ok(params.serialize_request(&self.pair)?.pem()?)
    }

    pub(crate) fn key_pair(&self) -> &KeyPair {
        &self.pair
    }

    pub(crate) fn into_key_pair(self) -> KeyPair {
        self.pair
    }
}

#[cfg(test)]
mod pkcs8_tests {
    use super::*;

    #[test]
    fn an_ed25519_key_is_written_as_pkcs8_version_1_and_reads_back() {
        let key = DeviceKey::generate(KeyType::Ed25519).expect("key");
        let der = key.pkcs8_der();
        let info = pkcs8::PrivateKeyInfo::try_from(der.as_slice()).expect("PKCS#8");
        assert_eq!(info.version(), pkcs8::Version::V1);
        assert!(info.public_key.is_none());
        let again = DeviceKey::from_pkcs8_pem(&key.pkcs8_pem()).expect("reads back");
        assert_eq!(again.spki_der(), key.spki_der());
        assert_eq!(again.key_type(), KeyType::Ed25519);
        let message = b"the same key";
        let signature = again.sign(message).expect("sign");
        assert_eq!(
            signature,
            key.sign(message).expect("sign"),
            "Ed25519 is deterministic"
        );
    }

    #[test]
    fn other_key_types_keep_their_encoding() {
        for kt in [KeyType::P256, KeyType::P384] {
            let key = DeviceKey::generate(kt).expect("key");
            assert_eq!(
                key.pkcs8_der().as_slice(),
                key.pair.serialize_der().as_slice()
            );
        }
    }
}
