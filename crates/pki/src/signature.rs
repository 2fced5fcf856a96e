//! Signature verification for the whole workspace: a public key parsed once
//! and checked against many signatures (manifest log signers, offline
//! bundle signatures, issuer keys in a vendor's chain), so no other crate
//! calls a verification primitive itself.

use aws_lc_rs::signature::{self, ParsedPublicKey, VerificationAlgorithm};
use x509_parser::prelude::FromDer;
use x509_parser::x509::SubjectPublicKeyInfo;

use crate::{KeyType, PkiError};

/// How an ECDSA signature is laid out (Ed25519 and RSA signatures have one
/// layout each and ignore this).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignatureEncoding {
    /// An ASN.1 DER `Ecdsa-Sig-Value`, as in X.509 and CMS.
    Der,
    /// Raw `r || s`, as in JWS (RFC 7518 §3.4).
    Fixed,
}

/// A public key prepared for verifying signatures: ECDSA P-256 with SHA-256,
/// ECDSA P-384 with SHA-384, Ed25519, or RSA PKCS#1 v1.5 with SHA-256.
#[derive(Clone, Debug)]
pub struct VerifyingKey {
    key: ParsedPublicKey,
}

impl VerifyingKey {
    /// Prepares the key of a DER SubjectPublicKeyInfo; its type picks the
    /// algorithm.
    pub fn from_spki(spki_der: &[u8], encoding: SignatureEncoding) -> Result<Self, PkiError> {
        let key_type = KeyType::from_spki(spki_der)?;
        let (_, spki) = SubjectPublicKeyInfo::from_der(spki_der)
            .map_err(|e| PkiError::InvalidKey(format!("SubjectPublicKeyInfo: {e}")))?;
        Self::of_type(key_type, &spki.subject_public_key.data, encoding)
    }

    /// Prepares a P-256 key from its SEC1 point (uncompressed, 65 bytes).
    pub fn p256(point: &[u8], encoding: SignatureEncoding) -> Result<Self, PkiError> {
        Self::of_type(KeyType::P256, point, encoding)
    }

    fn of_type(
        key_type: KeyType,
        key: &[u8],
        encoding: SignatureEncoding,
    ) -> Result<Self, PkiError> {
        let fixed = encoding == SignatureEncoding::Fixed;
        let algorithm: &'static dyn VerificationAlgorithm = match key_type {
            KeyType::P256 if fixed => &signature::ECDSA_P256_SHA256_FIXED,
            KeyType::P256 => &signature::ECDSA_P256_SHA256_ASN1,
            KeyType::P384 if fixed => &signature::ECDSA_P384_SHA384_FIXED,
            KeyType::P384 => &signature::ECDSA_P384_SHA384_ASN1,
            KeyType::Ed25519 => &signature::ED25519,
            KeyType::Rsa2048 | KeyType::Rsa3072 => &signature::RSA_PKCS1_2048_8192_SHA256,
        };
        ParsedPublicKey::new(algorithm, key)
            .map(|key| VerifyingKey { key })
            .map_err(|_| PkiError::InvalidKey(format!("not a valid {key_type} public key")))
    }

    /// Whether `signature` is this key's signature over `message`.
    pub fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        self.key.verify_sig(message, signature).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DeviceKey;

    #[test]
    fn every_key_type_verifies_its_own_signature_and_no_other() {
        for key_type in [KeyType::P256, KeyType::P384, KeyType::Ed25519] {
            let key = DeviceKey::generate(key_type).unwrap();
            let signature = key.sign(b"message").unwrap();
            let verifier =
                VerifyingKey::from_spki(&key.spki_der(), SignatureEncoding::Der).unwrap();
            assert!(verifier.verifies(b"message", &signature), "{key_type}");
            assert!(!verifier.verifies(b"massage", &signature), "{key_type}");
            let other = DeviceKey::generate(key_type).unwrap();
            assert!(!verifier.verifies(b"message", &other.sign(b"message").unwrap()));
        }
    }

    #[test]
    fn fixed_signatures_verify_with_a_fixed_verifier() {
        let key = DeviceKey::generate(KeyType::P256).unwrap();
        let signature = key.sign_fixed(b"jws input").unwrap();
        assert_eq!(signature.len(), 64);
        let spki = key.spki_der();
        let fixed = VerifyingKey::from_spki(&spki, SignatureEncoding::Fixed).unwrap();
        assert!(fixed.verifies(b"jws input", &signature));
        let der = VerifyingKey::from_spki(&spki, SignatureEncoding::Der).unwrap();
        assert!(!der.verifies(b"jws input", &signature));
        let ed25519 = DeviceKey::generate(KeyType::Ed25519).unwrap();
        assert!(ed25519.sign_fixed(b"jws input").is_err());
    }

    #[test]
    fn garbage_keys_are_refused() {
        assert!(VerifyingKey::from_spki(b"\x30\x03\x02\x01\x00", SignatureEncoding::Der).is_err());
        assert!(VerifyingKey::p256(&[4u8; 65], SignatureEncoding::Fixed).is_err());
    }
}
