//! The Microchip Trust&GO / TrustFLEX `SignedSecureElement`: a flattened
//! JWS (`payload`, `protected`, `header.uniqueId`, `signature`) whose
//! payload lists the secure element's public keys as JWKs with their
//! certificates. [`SignedSecureElement::parse`] turns the JSON text into
//! typed values (decoding every base64 field once); [`LogSigner::verify`]
//! checks the ES256 signature against the vendor's registered log signer.

use std::borrow::Cow;
use std::collections::BTreeMap;

use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;
use idmint_pki::{PkiError, SignatureEncoding, VerifyingKey};
use serde::Deserialize;
use x509_parser::prelude::{FromDer, ParsedExtension, X509Certificate};

use super::{Reason, Rejection};

/// base64url, padding optional (JWS fields are unpadded).
pub(crate) const B64URL: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);
/// Standard base64, padding optional (JWK `x5c` entries).
pub(crate) const B64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// One signed secure element, decoded but not yet verified.
#[derive(Clone, Debug)]
pub struct SignedSecureElement {
    /// The unprotected `header.uniqueId`, if given.
    pub header_unique_id: Option<String>,
    /// The protected header.
    pub protected: ProtectedHeader,
    /// The payload.
    pub payload: SecureElementPayload,
    /// `BASE64URL(protected) || '.' || BASE64URL(payload)`: what was signed.
    pub signing_input: Vec<u8>,
    /// The signature bytes (raw `r || s` for ES256).
    pub signature: Vec<u8>,
}

/// The JWS protected header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProtectedHeader {
    /// `typ`.
    pub typ: Option<String>,
    /// `alg` (only `ES256` verifies).
    pub alg: String,
    /// `kid`: the log signer's subject key identifier.
    pub kid: Option<Vec<u8>>,
    /// `x5t#S256`: SHA-256 of the log signer's certificate DER.
    pub x5t_s256: Option<Vec<u8>>,
}

/// The decoded payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecureElementPayload {
    /// The chip serial number, hex.
    pub unique_id: String,
    /// Descriptive fields kept as thing attributes: `version`, `model`,
    /// `partNumber`, `manufacturer`, `provisioner`, `distributor`,
    /// `provisioningTimestamp`.
    pub attributes: BTreeMap<String, String>,
    /// The public keys.
    pub keys: Vec<Jwk>,
}

/// A JWK from the payload's `publicKeySet`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Jwk {
    /// `kid` (the key slot).
    pub kid: Option<String>,
    /// `kty`.
    pub kty: String,
    /// `crv`.
    pub crv: Option<String>,
    /// The X coordinate.
    pub x: Vec<u8>,
    /// The Y coordinate.
    pub y: Vec<u8>,
    /// Certificate DERs: the key's certificate, then its issuers.
    pub x5c: Vec<Vec<u8>>,
}

impl Jwk {
    /// The uncompressed EC point `04 || x || y`.
    pub fn ec_point(&self) -> Vec<u8> {
        let mut point = Vec::with_capacity(1 + self.x.len() + self.y.len());
        point.push(4);
        point.extend_from_slice(&self.x);
        point.extend_from_slice(&self.y);
        point
    }
}

/// A JSON string, borrowed from the entry's text unless it has escapes.
#[derive(Deserialize)]
struct Text<'a>(#[serde(borrow)] Cow<'a, str>);

#[derive(Deserialize)]
struct RawSigned<'a> {
    #[serde(borrow)]
    payload: Text<'a>,
    #[serde(borrow)]
    protected: Text<'a>,
    #[serde(default)]
    header: Option<RawHeader>,
    #[serde(borrow)]
    signature: Text<'a>,
}

#[derive(Deserialize)]
struct RawHeader {
    #[serde(rename = "uniqueId", default)]
    unique_id: Option<String>,
}

#[derive(Deserialize)]
struct RawProtected {
    #[serde(default)]
    typ: Option<String>,
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(rename = "x5t#S256", default)]
    x5t_s256: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawPayload<'a> {
    #[serde(default)]
    version: Option<serde_json::Value>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    part_number: Option<String>,
    #[serde(default)]
    manufacturer: Option<RawOrg>,
    #[serde(default)]
    provisioner: Option<RawOrg>,
    #[serde(default)]
    distributor: Option<RawOrg>,
    #[serde(default)]
    provisioning_timestamp: Option<String>,
    unique_id: String,
    #[serde(borrow)]
    public_key_set: RawKeySet<'a>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawOrg {
    #[serde(default)]
    organization_name: Option<String>,
    #[serde(default)]
    organizational_unit_name: Option<String>,
}

#[derive(Deserialize)]
struct RawKeySet<'a> {
    #[serde(borrow)]
    keys: Vec<RawJwk<'a>>,
}

#[derive(Deserialize)]
struct RawJwk<'a> {
    #[serde(default)]
    kid: Option<String>,
    kty: String,
    #[serde(default)]
    crv: Option<String>,
    #[serde(borrow, default)]
    x: Option<Text<'a>>,
    #[serde(borrow, default)]
    y: Option<Text<'a>>,
    #[serde(borrow, default)]
    x5c: Option<Vec<Text<'a>>>,
}

fn malformed(what: impl Into<String>) -> Rejection {
    Rejection::new(Reason::MalformedEntry, what)
}

fn b64url(field: &str, text: &str) -> Result<Vec<u8>, Rejection> {
    B64URL
        .decode(text)
        .map_err(|e| malformed(format!("{field} is not base64url: {e}")))
}

impl SignedSecureElement {
    /// Parses one `SignedSecureElement` from its JSON text.
    pub fn parse(json: &[u8]) -> Result<Self, Rejection> {
        let raw: RawSigned = serde_json::from_slice(json)
            .map_err(|e| malformed(format!("not a SignedSecureElement: {e}")))?;
        let protected_json = b64url("protected", &raw.protected.0)?;
        let protected: RawProtected = serde_json::from_slice(&protected_json)
            .map_err(|e| malformed(format!("protected header: {e}")))?;
        let payload_json = b64url("payload", &raw.payload.0)?;
        let payload: RawPayload = serde_json::from_slice(&payload_json)
            .map_err(|e| malformed(format!("payload: {e}")))?;
        let signature = b64url("signature", &raw.signature.0)?;
        let (protected_text, payload_text) = (raw.protected.0.as_bytes(), raw.payload.0.as_bytes());
        let mut signing_input = Vec::with_capacity(protected_text.len() + 1 + payload_text.len());
        signing_input.extend_from_slice(protected_text);
        signing_input.push(b'.');
        signing_input.extend_from_slice(payload_text);
        Ok(SignedSecureElement {
            header_unique_id: raw.header.and_then(|h| h.unique_id),
            protected: ProtectedHeader {
                typ: protected.typ,
                alg: protected.alg,
                kid: protected
                    .kid
                    .as_deref()
                    .map(|k| b64url("kid", k))
                    .transpose()?,
                x5t_s256: protected
                    .x5t_s256
                    .as_deref()
                    .map(|k| b64url("x5t#S256", k))
                    .transpose()?,
            },
            payload: SecureElementPayload::from_raw(payload)?,
            signing_input,
            signature,
        })
    }

    /// The key the device authenticates with: the first JWK that carries
    /// a certificate.
    pub fn device_key(&self) -> Option<&Jwk> {
        self.payload.keys.iter().find(|k| !k.x5c.is_empty())
    }
}

impl SecureElementPayload {
    fn from_raw(raw: RawPayload<'_>) -> Result<Self, Rejection> {
        let mut attributes = BTreeMap::new();
        if let Some(v) = raw.version {
            let v = match v {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            };
            attributes.insert("version".to_string(), v);
        }
        for (k, v) in [
            ("model", raw.model),
            ("partNumber", raw.part_number),
            ("provisioningTimestamp", raw.provisioning_timestamp),
        ] {
            if let Some(v) = v {
                attributes.insert(k.to_string(), v);
            }
        }
        for (k, org) in [
            ("manufacturer", raw.manufacturer),
            ("provisioner", raw.provisioner),
            ("distributor", raw.distributor),
        ] {
            if let Some(org) = org {
                let name = match (org.organization_name, org.organizational_unit_name) {
                    (Some(o), Some(u)) => format!("{o} / {u}"),
                    (Some(o), None) => o,
                    (None, Some(u)) => u,
                    (None, None) => continue,
                };
                attributes.insert(k.to_string(), name);
            }
        }
        let keys = raw
            .public_key_set
            .keys
            .into_iter()
            .map(|k| {
                Ok(Jwk {
                    kid: k.kid,
                    kty: k.kty,
                    crv: k.crv,
                    x: k.x
                        .map(|x| b64url("JWK x", &x.0))
                        .transpose()?
                        .unwrap_or_default(),
                    y: k.y
                        .map(|y| b64url("JWK y", &y.0))
                        .transpose()?
                        .unwrap_or_default(),
                    x5c: k
                        .x5c
                        .unwrap_or_default()
                        .iter()
                        .map(|c| {
                            B64.decode(&*c.0)
                                .map_err(|e| malformed(format!("JWK x5c is not base64: {e}")))
                        })
                        .collect::<Result<_, _>>()?,
                })
            })
            .collect::<Result<Vec<_>, Rejection>>()?;
        Ok(SecureElementPayload {
            unique_id: raw.unique_id,
            attributes,
            keys,
        })
    }
}

/// The vendor's registered manifest log signer: its key, key identifier
/// and certificate digest, prepared once.
#[derive(Clone, Debug)]
pub struct LogSigner {
    /// The key, parsed once; `None` if the certificate's point is not on
    /// P-256, and then no signature verifies.
    key: Option<VerifyingKey>,
    ski: Option<Vec<u8>>,
    sha256: Vec<u8>,
}

impl LogSigner {
    /// Prepares the signer certificate (DER). It must hold a P-256 key.
    pub fn from_certificate_der(der: &[u8]) -> Result<Self, PkiError> {
        let bad =
            |why: String| PkiError::MalformedCertificate(format!("manifest log signer: {why}"));
        let (_, cert) = X509Certificate::from_der(der).map_err(|e| bad(e.to_string()))?;
        let spki = cert.public_key();
        if spki.algorithm.algorithm != x509_parser::oid_registry::OID_KEY_TYPE_EC_PUBLIC_KEY {
            return Err(bad("its key is not an EC key".into()));
        }
        let point = spki.subject_public_key.data.as_ref();
        if point.len() != 65 || point[0] != 4 {
            return Err(bad("its key is not an uncompressed P-256 point".into()));
        }
        let ski = cert
            .extensions()
            .iter()
            .find_map(|ext| match ext.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
                _ => None,
            });
        Ok(LogSigner {
            key: VerifyingKey::p256(point, SignatureEncoding::Fixed).ok(),
            ski,
            sha256: idmint_pki::sha256(der).to_vec(),
        })
    }

    /// Checks `alg`, `kid`, `x5t#S256` and the ES256 signature.
    pub fn verify(&self, element: &SignedSecureElement) -> Result<(), Rejection> {
        let header = &element.protected;
        if header.alg != "ES256" {
            return Err(Rejection::new(
                Reason::UnsupportedAlgorithm,
                format!(
                    "protected header alg is {:?}, only ES256 is accepted",
                    header.alg
                ),
            ));
        }
        if let (Some(kid), Some(ski)) = (&header.kid, &self.ski) {
            if kid != ski {
                return Err(Rejection::new(
                    Reason::SignerMismatch,
                    "kid does not match the registered log signer's key identifier",
                ));
            }
        }
        if let Some(x5t) = &header.x5t_s256 {
            if *x5t != self.sha256 {
                return Err(Rejection::new(
                    Reason::SignerMismatch,
                    "x5t#S256 does not match the registered log signer certificate",
                ));
            }
        }
        if element.signature.len() != 64 {
            return Err(Rejection::new(
                Reason::BadSignature,
                format!(
                    "ES256 signature is {} bytes, expected 64",
                    element.signature.len()
                ),
            ));
        }
        let verified = self
            .key
            .as_ref()
            .is_some_and(|key| key.verifies(&element.signing_input, &element.signature));
        if !verified {
            return Err(Rejection::new(
                Reason::BadSignature,
                "JWS signature does not verify with the log signer's key",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn encode(value: &serde_json::Value) -> String {
        B64URL.encode(value.to_string())
    }

    fn element(alg: &str, payload: serde_json::Value) -> Vec<u8> {
        serde_json::json!({
            "protected": encode(&serde_json::json!({"typ": "JWT", "alg": alg, "kid": B64URL.encode([1, 2, 3])})),
            "payload": encode(&payload),
            "header": {"uniqueId": "0123"},
            "signature": B64URL.encode([0u8; 64]),
        })
        .to_string()
        .into_bytes()
    }

    fn payload() -> serde_json::Value {
        serde_json::json!({
            "version": 1, "model": "ATECC608B", "partNumber": "ATECC608B-TNGTLSU-G",
            "manufacturer": {"organizationName": "Microchip Technology Inc", "organizationalUnitName": "Secure Products Group"},
            "provisioningTimestamp": "2024-01-01T00:00:00.000Z", "uniqueId": "0123",
            "publicKeySet": {"keys": [
                {"kid": "0", "kty": "EC", "crv": "P-256", "x": B64URL.encode([7u8; 32]), "y": B64URL.encode([8u8; 32]), "x5c": [B64.encode(b"cert"), B64.encode(b"ca")]},
                {"kid": "1", "kty": "EC", "crv": "P-256", "x": B64URL.encode([9u8; 32]), "y": B64URL.encode([9u8; 32])}
            ]}
        })
    }

    #[test]
    fn parses_a_signed_secure_element() {
        let e = SignedSecureElement::parse(&element("ES256", payload())).unwrap();
        assert_eq!(e.protected.alg, "ES256");
        assert_eq!(e.protected.kid.as_deref(), Some(&[1u8, 2, 3][..]));
        assert_eq!(e.header_unique_id.as_deref(), Some("0123"));
        assert_eq!(e.payload.unique_id, "0123");
        assert_eq!(e.payload.attributes["version"], "1");
        assert_eq!(
            e.payload.attributes["manufacturer"],
            "Microchip Technology Inc / Secure Products Group"
        );
        assert_eq!(e.payload.keys.len(), 2);
        let key = e.device_key().unwrap();
        assert_eq!(key.x5c, vec![b"cert".to_vec(), b"ca".to_vec()]);
        assert_eq!(key.ec_point().len(), 65);
        assert_eq!(e.signature.len(), 64);
        assert!(e.signing_input.contains(&b'.'));
    }

    #[test]
    fn escaped_json_strings_decode_like_plain_ones() {
        // `/` escaped as `\/` (as some JSON writers do) in x5c, and a
        // payload character written as a `\u` escape.
        let cert = [0xffu8, 0xfe, 0xfd, 0x3f, 0xbf];
        assert!(B64.encode(cert).contains('/'));
        let mut p = payload();
        p["publicKeySet"]["keys"][0]["x5c"] = serde_json::json!([B64.encode(cert)]);
        let payload_text = B64URL.encode(p.to_string().replace('/', "\\/"));
        let protected_text = encode(&serde_json::json!({"alg": "ES256"}));
        let first = payload_text.chars().next().unwrap();
        let text = format!(
            "{{\"protected\": \"{protected_text}\", \"payload\": \"\\u{:04x}{}\", \"signature\": \"{}\"}}",
            u32::from(first),
            &payload_text[1..],
            B64URL.encode([0u8; 64])
        );
        let e = SignedSecureElement::parse(text.as_bytes()).unwrap();
        assert_eq!(e.device_key().unwrap().x5c, vec![cert.to_vec()]);
        assert_eq!(
            e.signing_input,
            format!("{protected_text}.{payload_text}").into_bytes()
        );
    }

    #[test]
    fn rejects_garbage_without_panicking() {
        for bad in [
            &b""[..],
            b"[]",
            b"{}",
            b"{\"payload\":\"!!\",\"protected\":\"\",\"signature\":\"\"}",
            b"{\"payload\":\"e30\",\"protected\":\"e30\",\"signature\":\"\"}",
        ] {
            let r = SignedSecureElement::parse(bad).unwrap_err();
            assert_eq!(r.reason, Reason::MalformedEntry);
        }
        let mut p = payload();
        p["publicKeySet"]["keys"][0]["x"] = "***".into();
        assert!(SignedSecureElement::parse(&element("ES256", p)).is_err());
    }

    #[test]
    fn wrong_alg_and_bad_signature_are_told_apart() {
        let signer = LogSigner {
            key: None,
            ski: Some(vec![1, 2, 3]),
            sha256: vec![0; 32],
        };
        let e = SignedSecureElement::parse(&element("HS256", payload())).unwrap();
        assert_eq!(
            signer.verify(&e).unwrap_err().reason,
            Reason::UnsupportedAlgorithm
        );
        let e = SignedSecureElement::parse(&element("ES256", payload())).unwrap();
        assert_eq!(signer.verify(&e).unwrap_err().reason, Reason::BadSignature);
        let other = LogSigner {
            ski: Some(vec![9]),
            ..signer
        };
        assert_eq!(other.verify(&e).unwrap_err().reason, Reason::SignerMismatch);
    }
}
