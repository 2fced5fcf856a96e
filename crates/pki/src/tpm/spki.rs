//! A TPM public key as an X.509 SubjectPublicKeyInfo, and an EK certificate's
//! SubjectPublicKeyInfo as a TPM key: the bridge between the TPM's encodings
//! and the certificates idmint reads and issues.

use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey as X509PublicKey;
use x509_parser::x509::SubjectPublicKeyInfo;

use super::{EccCurve, TpmError, TpmKey};

/// OID 1.2.840.113549.1.1.1 (rsaEncryption), DER content.
const RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
/// OID 1.2.840.10045.2.1 (id-ecPublicKey).
const EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
/// OID 1.2.840.10045.3.1.7 (prime256v1).
const P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// OID 1.3.132.0.34 (secp384r1).
const P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];

/// The DER SubjectPublicKeyInfo of a TPM key.
pub(crate) fn spki_der(key: &TpmKey) -> Vec<u8> {
    match key {
        TpmKey::Rsa { modulus, exponent } => {
            let e = exponent.to_be_bytes();
            let rsa_public = tlv(0x30, &[integer(modulus), integer(&e)].concat());
            let algorithm = tlv(
                0x30,
                &[tlv(0x06, RSA_ENCRYPTION), vec![0x05, 0x00]].concat(),
            );
            tlv(0x30, &[algorithm, bit_string(&rsa_public)].concat())
        }
        TpmKey::Ecc { curve, x, y } => {
            let curve_oid = match curve {
                EccCurve::P256 => P256,
                EccCurve::P384 => P384,
            };
            let algorithm = tlv(
                0x30,
                &[tlv(0x06, EC_PUBLIC_KEY), tlv(0x06, curve_oid)].concat(),
            );
            let point = [&[0x04][..], x, y].concat();
            tlv(0x30, &[algorithm, bit_string(&point)].concat())
        }
    }
}

/// The TPM key of a DER SubjectPublicKeyInfo (an EK certificate's, or a
/// CSR's): RSA, or ECC on P-256 / P-384.
pub(crate) fn key_from_spki(der: &[u8]) -> Result<TpmKey, TpmError> {
    let malformed = TpmError::Malformed {
        structure: "SubjectPublicKeyInfo",
        reason: "not an RSA or P-256/P-384 public key",
    };
    let (rest, spki) = SubjectPublicKeyInfo::from_der(der).map_err(|_| malformed.clone())?;
    if !rest.is_empty() {
        return Err(malformed);
    }
    match spki.parsed().map_err(|_| malformed.clone())? {
        X509PublicKey::RSA(rsa) => {
            let modulus = strip(rsa.modulus).to_vec();
            let e = strip(rsa.exponent);
            if e.len() > 4 || e.is_empty() || modulus.is_empty() {
                return Err(malformed);
            }
            let exponent = e.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b));
            Ok(TpmKey::Rsa { modulus, exponent })
        }
        X509PublicKey::EC(point) => {
            let curve_oid = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .ok_or(malformed.clone())?;
            let curve = match curve_oid.as_bytes() {
                P256 => EccCurve::P256,
                P384 => EccCurve::P384,
                _ => return Err(malformed),
            };
            let data = point.data();
            let len = curve.coordinate_len();
            if data.len() != 1 + 2 * len || data[0] != 0x04 {
                return Err(malformed);
            }
            Ok(TpmKey::Ecc {
                curve,
                x: data[1..=len].to_vec(),
                y: data[1 + len..].to_vec(),
            })
        }
        _ => Err(malformed),
    }
}

fn strip(bytes: &[u8]) -> &[u8] {
    &bytes[bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len())..]
}

fn integer(unsigned_be: &[u8]) -> Vec<u8> {
    let trimmed = strip(unsigned_be);
    let mut content = Vec::with_capacity(trimmed.len() + 1);
    if trimmed.first().is_none_or(|b| b & 0x80 != 0) {
        content.push(0);
    }
    content.extend_from_slice(trimmed);
    tlv(0x02, &content)
}

fn bit_string(content: &[u8]) -> Vec<u8> {
    tlv(0x03, &[&[0u8][..], content].concat())
}

fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let bytes = strip(&bytes);
        out.push(0x80 | bytes.len() as u8);
        out.extend_from_slice(bytes);
    }
    out.extend_from_slice(content);
    out
}
