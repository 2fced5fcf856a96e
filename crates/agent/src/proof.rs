//! Proof-of-possession checking (std), for the station: verify a device's
//! `prove` signature against the public key in its certificate.

use aws_lc_rs::signature::{self, UnparsedPublicKey, VerificationAlgorithm};
use x509_parser::oid_registry::{OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_SIG_ED25519};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::error::ProofError;
use crate::message::{prove_message, KeyType};

/// Check that `signature` is the device's `prove` signature for `nonce` with
/// the key certified by `cert_der` (the leaf certificate, DER): a signature
/// over [`prove_message`]`(nonce)`. A signature over the bare nonce (what a
/// version-1 device made) is refused.
///
/// Schemes: ECDSA P-256 with SHA-256 and an ASN.1 DER `Ecdsa-Sig-Value`
/// signature, or pure Ed25519. Returns the key type on success.
pub fn verify_proof(
    cert_der: &[u8],
    nonce: &[u8],
    signature: &[u8],
) -> Result<KeyType, ProofError> {
    let (_, cert) = X509Certificate::from_der(cert_der)
        .map_err(|e| ProofError::BadCertificate(e.to_string()))?;
    let spki = cert.public_key();
    let alg_oid = &spki.algorithm.algorithm;
    let (key_type, alg): (KeyType, &'static dyn VerificationAlgorithm) =
        if *alg_oid == OID_KEY_TYPE_EC_PUBLIC_KEY {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok());
            if curve.as_ref() != Some(&OID_EC_P256) {
                return Err(ProofError::UnsupportedKey(format!(
                    "EC key on curve {curve:?}"
                )));
            }
            (KeyType::P256, &signature::ECDSA_P256_SHA256_ASN1)
        } else if *alg_oid == OID_SIG_ED25519 {
            (KeyType::Ed25519, &signature::ED25519)
        } else {
            return Err(ProofError::UnsupportedKey(alg_oid.to_id_string()));
        };
    UnparsedPublicKey::new(alg, &*spki.subject_public_key.data)
        .verify(&prove_message(nonce), signature)
        .map_err(|_| ProofError::BadSignature)?;
    Ok(key_type)
}
