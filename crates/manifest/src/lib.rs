//! Scenario 3: secure elements pre-provisioned by the HSM vendor.
//!
//! The vendor ships a manifest of the chips it provisioned; the maker
//! registers the vendor's CA (and its manifest log signer) once, then imports
//! each manifest. Every entry is read one at a time ([`source`]), parsed
//! into a typed [`ManifestEntry`] at the edge, checked in parallel (JWS
//! signature, JWK against certificate, chain to the registered CA,
//! validity, key type: [`check`]), and registered in batched transactions
//! with duplicates reported, never re-registered ([`Manifests::import_manifest`]).
//! [`Manifests::export_manifest`] writes what was imported back out in a form
//! another registry (or another idmint) can import.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::Serialize;

pub mod check;
mod export;
mod import;
pub mod jws;
pub mod source;
mod vendor_ca;

pub use export::{ExportFormat, ExportSelector};
pub use import::{ImportOptions, ImportSummary, ThingNameFrom};
pub use jws::{LogSigner, SignedSecureElement};
pub use source::{ManifestFormat, RawBody, RawEntry};
pub use vendor_ca::RegisterCa;

idmint_flows::scenario_service!(
    /// Scenario 3 over an opened data directory: register a vendor's CA,
    /// import its manifests, export what was imported.
    Manifests
);

/// Why an entry was not registered. The report names it in kebab-case.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Reason {
    /// The manifest stops in the middle of an entry, or its framing is not
    /// what its format says (reading stops there).
    MalformedManifest,
    /// The entry is not a well-formed entry of its format.
    MalformedEntry,
    /// The JWS `alg` is not ES256.
    UnsupportedAlgorithm,
    /// `kid` or `x5t#S256` names another signer than the registered one.
    SignerMismatch,
    /// The JWS signature does not verify.
    BadSignature,
    /// The unprotected `header.uniqueId` differs from the signed one.
    UniqueIdMismatch,
    /// The JWK's public key is not the certificate's.
    JwkMismatch,
    /// The entry has no certificate.
    MissingCertificate,
    /// The certificate does not parse, or is a CA certificate.
    BadCertificate,
    /// The certificate does not chain to the named CA.
    UntrustedIssuer,
    /// The certificate has expired.
    Expired,
    /// The certificate is not valid yet.
    NotYetValid,
    /// The certificate's extended key usage excludes TLS client auth.
    KeyUsage,
    /// The key type is not allowed by the profile.
    KeyTypeNotAllowed,
    /// The entry has no usable unique id.
    MissingUniqueId,
    /// The thing name derived for the entry is not a valid name.
    InvalidThingName,
    /// The certificate is registered already, to another thing, or appears
    /// twice in the manifest.
    DuplicateCertificate,
    /// The unique id (device id) is registered already with another
    /// certificate, or appears twice in the manifest.
    DuplicateUniqueId,
    /// The public key is registered already with another certificate (a
    /// cloned key), or appears twice in the manifest.
    DuplicatePublicKey,
    /// The thing name is taken by a thing with another device id.
    DuplicateThingName,
}

impl Reason {
    /// The kebab-case code.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::MalformedManifest => "malformed-manifest",
            Reason::MalformedEntry => "malformed-entry",
            Reason::UnsupportedAlgorithm => "unsupported-algorithm",
            Reason::SignerMismatch => "signer-mismatch",
            Reason::BadSignature => "bad-signature",
            Reason::UniqueIdMismatch => "unique-id-mismatch",
            Reason::JwkMismatch => "jwk-mismatch",
            Reason::MissingCertificate => "missing-certificate",
            Reason::BadCertificate => "bad-certificate",
            Reason::UntrustedIssuer => "untrusted-issuer",
            Reason::Expired => "expired",
            Reason::NotYetValid => "not-yet-valid",
            Reason::KeyUsage => "key-usage",
            Reason::KeyTypeNotAllowed => "key-type-not-allowed",
            Reason::MissingUniqueId => "missing-unique-id",
            Reason::InvalidThingName => "invalid-thing-name",
            Reason::DuplicateCertificate => "duplicate-certificate",
            Reason::DuplicateUniqueId => "duplicate-unique-id",
            Reason::DuplicatePublicKey => "duplicate-public-key",
            Reason::DuplicateThingName => "duplicate-thing-name",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rejected entry: one line of the import report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Rejection {
    /// The entry's position in the manifest, from 0.
    pub index: u64,
    /// Its unique id, when it got that far.
    pub unique_id: Option<String>,
    /// Why.
    pub reason: Reason,
    /// Details for people.
    pub message: String,
}

impl Rejection {
    /// A rejection (index and unique id filled in by the caller).
    pub fn new(reason: Reason, message: impl Into<String>) -> Self {
        Rejection {
            index: 0,
            unique_id: None,
            reason,
            message: message.into(),
        }
    }

    fn at(mut self, index: u64, unique_id: Option<&str>) -> Self {
        self.index = index;
        if self.unique_id.is_none() {
            self.unique_id = unique_id.map(str::to_string);
        }
        self
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "entry {}", self.index)?;
        if let Some(u) = &self.unique_id {
            write!(f, " ({u})")?;
        }
        write!(f, ": {}: {}", self.reason, self.message)
    }
}

/// One manifest entry, parsed from its format but not yet verified.
#[derive(Clone, Debug)]
pub struct ManifestEntry {
    /// Position in the manifest, from 0.
    pub index: u64,
    /// The device's unique id as the source gives it.
    pub unique_id: Option<String>,
    /// The thing name the source asks for, if any.
    pub thing_name: Option<String>,
    /// Attributes for the thing.
    pub attributes: BTreeMap<String, String>,
    /// The device certificate DER.
    pub certificate_der: Vec<u8>,
    /// Further certificates offered to build the chain (issuer first).
    pub intermediates: Vec<Vec<u8>>,
    /// The signed element, for the signed manifest format (its payload's
    /// attributes moved to `attributes`).
    pub signed: Option<SignedSecureElement>,
}

/// Parameter names that carry the unique id in JSON lines, in order of
/// preference. `uniqueId`/`UniqueId` are consumed; the others stay
/// attributes too.
const UNIQUE_ID_PARAMS: [&str; 4] = ["uniqueId", "UniqueId", "DeviceId", "SerialNumber"];

impl ManifestEntry {
    /// Parses a raw entry (any format). Never panics on garbage.
    pub fn parse(raw: RawEntry) -> Result<ManifestEntry, Rejection> {
        let index = raw.index;
        let parsed = match raw.body {
            RawBody::Broken(r) => Err(r),
            RawBody::Signed(text) => Self::from_signed(index, &text),
            RawBody::JsonLine(text) => Self::from_json_line(index, &text),
            RawBody::Pem { name, bytes } => {
                let (der, intermediates) = certificate_bytes(&bytes)?;
                let stem = file_stem(&name);
                Ok(ManifestEntry {
                    index,
                    unique_id: (!stem.is_empty()).then(|| stem.to_string()),
                    thing_name: None,
                    attributes: BTreeMap::new(),
                    certificate_der: der,
                    intermediates,
                    signed: None,
                })
            }
            RawBody::Csv {
                unique_id,
                certificate,
                thing_name,
                attributes,
            } => {
                let (der, intermediates) = certificate_bytes(&certificate)?;
                Ok(ManifestEntry {
                    index,
                    unique_id: Some(unique_id).filter(|u| !u.is_empty()),
                    thing_name,
                    attributes,
                    certificate_der: der,
                    intermediates,
                    signed: None,
                })
            }
        };
        parsed.map_err(|r| r.at(index, None))
    }

    fn from_signed(index: u64, text: &[u8]) -> Result<ManifestEntry, Rejection> {
        let mut element = SignedSecureElement::parse(text)?;
        let unique_id = element.payload.unique_id.clone();
        let (certificate_der, intermediates) = match element.device_key() {
            Some(key) => (key.x5c[0].clone(), key.x5c[1..].to_vec()),
            None => {
                return Err(Rejection::new(
                    Reason::MissingCertificate,
                    "no JWK in publicKeySet carries an x5c certificate",
                )
                .at(index, Some(&unique_id)))
            }
        };
        Ok(ManifestEntry {
            index,
            unique_id: Some(unique_id),
            thing_name: None,
            attributes: std::mem::take(&mut element.payload.attributes),
            certificate_der,
            intermediates,
            signed: Some(element),
        })
    }

    fn from_json_line(index: u64, text: &[u8]) -> Result<ManifestEntry, Rejection> {
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Line {
            certificate_pem: String,
            #[serde(default)]
            parameters: BTreeMap<String, serde_json::Value>,
        }
        let line: Line = serde_json::from_slice(text).map_err(|e| {
            Rejection::new(
                Reason::MalformedEntry,
                format!("not a bulk registration line: {e}"),
            )
        })?;
        let mut attributes: BTreeMap<String, String> = line
            .parameters
            .into_iter()
            .map(|(k, v)| {
                let v = match v {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                };
                (k, v)
            })
            .collect();
        let thing_name = attributes.remove("ThingName");
        let mut unique_id = None;
        for (i, key) in UNIQUE_ID_PARAMS.iter().enumerate() {
            let value = if i < 2 {
                attributes.remove(*key)
            } else {
                attributes.get(*key).cloned()
            };
            if unique_id.is_none() {
                unique_id = value;
            }
        }
        let unique_id = unique_id.or_else(|| thing_name.clone());
        let (der, intermediates) = certificate_bytes(line.certificate_pem.as_bytes())
            .map_err(|r| r.at(index, unique_id.as_deref()))?;
        Ok(ManifestEntry {
            index,
            unique_id,
            thing_name,
            attributes,
            certificate_der: der,
            intermediates,
            signed: None,
        })
    }
}

/// A certificate given as DER, or as PEM: the device certificate's
/// CERTIFICATE block first, then any further blocks, offered as
/// intermediates for the chain check (issuer first, as an export writes
/// them). Returns the device certificate and the intermediates.
fn certificate_bytes(bytes: &[u8]) -> Result<(Vec<u8>, Vec<Vec<u8>>), Rejection> {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(0);
    if bytes[start..].starts_with(b"-----BEGIN") {
        let mut blocks = pem_certificates(&bytes[start..])?.into_iter();
        let leaf = blocks
            .next()
            .ok_or_else(|| Rejection::new(Reason::BadCertificate, "no PEM CERTIFICATE block"))?;
        Ok((leaf, blocks.collect()))
    } else if bytes.first() == Some(&0x30) {
        Ok((bytes.to_vec(), Vec::new()))
    } else {
        Err(Rejection::new(
            Reason::BadCertificate,
            "neither a PEM nor a DER certificate",
        ))
    }
}

/// The DER of every CERTIFICATE block of a PEM text, in order (blocks of
/// other labels are skipped).
fn pem_certificates(text: &[u8]) -> Result<Vec<Vec<u8>>, Rejection> {
    use base64::Engine as _;
    let bad = |why: &str| Rejection::new(Reason::BadCertificate, why.to_string());
    let text = std::str::from_utf8(text).map_err(|_| bad("the PEM text is not UTF-8"))?;
    let (begin, end) = ("-----BEGIN CERTIFICATE-----", "-----END CERTIFICATE-----");
    let mut blocks = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find(begin) {
        let body_start = at + begin.len();
        let body_len = rest[body_start..]
            .find(end)
            .ok_or_else(|| bad("a PEM CERTIFICATE block has no END line"))?;
        let body: String = rest[body_start..body_start + body_len]
            .chars()
            .filter(|c| !c.is_ascii_whitespace())
            .collect();
        blocks.push(
            jws::B64
                .decode(body)
                .map_err(|_| bad("a PEM CERTIFICATE block is not base64"))?,
        );
        rest = &rest[body_start + body_len + end.len()..];
    }
    Ok(blocks)
}

/// `dir/abc.cert.pem` -> `abc`.
fn file_stem(name: &str) -> &str {
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
    let mut stem = base;
    for ext in [".pem", ".crt", ".cer", ".der"] {
        if let Some(s) = stem.strip_suffix(ext) {
            stem = s;
            break;
        }
    }
    stem.strip_suffix(".cert").unwrap_or(stem)
}

impl FromStr for Reason {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ALL_REASONS
            .iter()
            .copied()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("unknown reason {s:?}"))
    }
}

const ALL_REASONS: [Reason; 20] = [
    Reason::MalformedManifest,
    Reason::MalformedEntry,
    Reason::UnsupportedAlgorithm,
    Reason::SignerMismatch,
    Reason::BadSignature,
    Reason::UniqueIdMismatch,
    Reason::JwkMismatch,
    Reason::MissingCertificate,
    Reason::BadCertificate,
    Reason::UntrustedIssuer,
    Reason::Expired,
    Reason::NotYetValid,
    Reason::KeyUsage,
    Reason::KeyTypeNotAllowed,
    Reason::MissingUniqueId,
    Reason::InvalidThingName,
    Reason::DuplicateCertificate,
    Reason::DuplicateUniqueId,
    Reason::DuplicatePublicKey,
    Reason::DuplicateThingName,
];

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn reason_codes_round_trip() {
        for r in ALL_REASONS {
            assert_eq!(r.as_str().parse::<Reason>().unwrap(), r);
            assert_eq!(serde_json::to_value(r).unwrap(), r.as_str());
        }
    }

    #[test]
    fn file_stems() {
        assert_eq!(file_stem("a/b/0123.cert.pem"), "0123");
        assert_eq!(file_stem("x.crt"), "x");
        assert_eq!(file_stem("plain"), "plain");
    }

    #[test]
    fn a_pem_bundle_is_the_certificate_then_its_intermediates() {
        let (leaf, inter) = (vec![0x30, 1, 1], vec![0x30, 1, 2]);
        let bundle = format!(
            "{}-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n{}",
            idmint_pki::to_pem("CERTIFICATE", &leaf),
            idmint_pki::to_pem("CERTIFICATE", &inter)
        );
        let csv = RawBody::Csv {
            unique_id: "u1".into(),
            certificate: bundle.clone().into_bytes(),
            thing_name: None,
            attributes: BTreeMap::new(),
        };
        let line = serde_json::json!({"certificatePem": bundle}).to_string();
        let pem = RawBody::Pem {
            name: "u1.pem".into(),
            bytes: bundle.clone().into_bytes(),
        };
        for body in [csv, RawBody::JsonLine(line.into_bytes()), pem] {
            let e = ManifestEntry::parse(RawEntry { index: 0, body }).unwrap();
            assert_eq!(e.certificate_der, leaf);
            assert_eq!(e.intermediates, vec![inter.clone()]);
        }
        let broken =
            format!("{bundle}-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----\n");
        let body = RawBody::Pem {
            name: "u1.pem".into(),
            bytes: broken.into_bytes(),
        };
        let r = ManifestEntry::parse(RawEntry { index: 0, body }).unwrap_err();
        assert_eq!(r.reason, Reason::BadCertificate);
    }

    #[test]
    fn garbage_entries_are_rejections() {
        for body in [
            RawBody::Signed(b"{".to_vec()),
            RawBody::JsonLine(b"{\"certificatePem\": 3}".to_vec()),
            RawBody::JsonLine(b"{\"certificatePem\": \"-----BEGIN CERTIFICATE-----\"}".to_vec()),
            RawBody::Pem {
                name: "x.pem".into(),
                bytes: vec![],
            },
        ] {
            assert!(ManifestEntry::parse(RawEntry { index: 3, body }).is_err());
        }
    }
}
