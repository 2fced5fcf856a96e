//! What idmint needs to know about any X.509 certificate, ours or a
//! vendor's: its id, serial, names, validity and public key.

use std::collections::BTreeMap;

use ::time::OffsetDateTime;
use idmint_types::{CertificateId, Serial};
use x509_parser::oid_registry::{
    Oid, OID_X509_COMMON_NAME, OID_X509_COUNTRY_NAME, OID_X509_DN_QUALIFIER,
    OID_X509_ORGANIZATIONAL_UNIT, OID_X509_ORGANIZATION_NAME, OID_X509_SERIALNUMBER,
    OID_X509_STATE_OR_PROVINCE_NAME,
};
use x509_parser::prelude::{FromDer, X509Certificate, X509Name};

use crate::{KeyType, PkiError};

/// The certificate id: lowercase hex SHA-256 of the DER (as AWS IoT does).
pub fn certificate_id(der: &[u8]) -> CertificateId {
    CertificateId::from_sha256(&crate::sha256(der))
}

/// The facts of a certificate that the registry stores and checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateInfo {
    /// Lowercase hex SHA-256 of the DER.
    pub id: CertificateId,
    /// Serial number, lowercase hex, no leading zero bytes.
    pub serial: Serial,
    /// Subject, RFC 4514 style.
    pub subject: String,
    /// Subject common name, if any.
    pub subject_cn: Option<String>,
    /// Issuer, RFC 4514 style.
    pub issuer: String,
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity.
    pub not_after: OffsetDateTime,
    /// The subject key's type, if it is one idmint knows.
    pub key_type: Option<KeyType>,
    /// The DER SubjectPublicKeyInfo.
    pub spki_der: Vec<u8>,
    /// Lowercase hex SHA-256 of the DER SubjectPublicKeyInfo (finds clones).
    pub public_key_sha256: String,
    /// Whether basicConstraints says CA.
    pub is_ca: bool,
    /// The subject's attributes that provisioning templates can use, by the
    /// AWS IoT parameter suffix: `CommonName`, `SerialNumber`,
    /// `Organization`, `OrganizationalUnit`, `Country`, `StateName`,
    /// `DistinguishedNameQualifier` (first value of each, when present).
    pub subject_fields: BTreeMap<&'static str, String>,
}

impl CertificateInfo {
    /// Parses a DER certificate.
    pub fn from_der(der: &[u8]) -> Result<Self, PkiError> {
        let (_, cert) = X509Certificate::from_der(der)
            .map_err(|e| PkiError::MalformedCertificate(e.to_string()))?;
        Self::from_parsed(&cert, der)
    }

    /// The facts of a certificate already parsed from `der`, for callers
    /// that need the parsed certificate too and should not parse it twice.
    /// As with [`CertificateInfo::from_der`], bytes after the certificate
    /// are an error; so is a `der` that `cert` was not parsed from.
    pub fn from_parsed(cert: &X509Certificate<'_>, der: &[u8]) -> Result<Self, PkiError> {
        match der.strip_prefix(cert.as_raw()) {
            Some([]) => {}
            Some(rest) => {
                return Err(PkiError::MalformedCertificate(format!(
                    "{} trailing bytes after the certificate",
                    rest.len()
                )))
            }
            None => {
                return Err(PkiError::MalformedCertificate(
                    "the DER given is not the parsed certificate's".into(),
                ))
            }
        }
        let spki_der = cert.public_key().raw.to_vec();
        let subject_cn = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_string);
        Ok(CertificateInfo {
            id: certificate_id(der),
            serial: Serial::from_integer_bytes(cert.raw_serial()),
            subject: cert.subject().to_string(),
            subject_cn,
            issuer: cert.issuer().to_string(),
            not_before: cert.validity().not_before.to_datetime(),
            not_after: cert.validity().not_after.to_datetime(),
            key_type: KeyType::from_spki(&spki_der).ok(),
            public_key_sha256: crate::sha256_hex(&spki_der),
            spki_der,
            is_ca: cert.is_ca(),
            subject_fields: subject_fields(cert.subject()),
        })
    }

    /// Parses a PEM certificate (the first `CERTIFICATE` block).
    pub fn from_pem(pem_text: &[u8]) -> Result<(Self, Vec<u8>), PkiError> {
        let der = pem_certificate_der(pem_text)?;
        Ok((Self::from_der(&der)?, der))
    }

    /// Whether the certificate is valid at `time`.
    pub fn valid_at(&self, time: OffsetDateTime) -> bool {
        self.not_before <= time && time <= self.not_after
    }
}

fn subject_fields(name: &X509Name<'_>) -> BTreeMap<&'static str, String> {
    let wanted: [(&'static str, Oid<'static>); 7] = [
        ("CommonName", OID_X509_COMMON_NAME),
        ("SerialNumber", OID_X509_SERIALNUMBER),
        ("Organization", OID_X509_ORGANIZATION_NAME),
        ("OrganizationalUnit", OID_X509_ORGANIZATIONAL_UNIT),
        ("Country", OID_X509_COUNTRY_NAME),
        ("StateName", OID_X509_STATE_OR_PROVINCE_NAME),
        ("DistinguishedNameQualifier", OID_X509_DN_QUALIFIER),
    ];
    wanted
        .into_iter()
        .filter_map(|(field, oid)| {
            let value = name.iter_by_oid(&oid).next()?.as_str().ok()?;
            Some((field, value.to_string()))
        })
        .collect()
}

/// Extracts the DER of the first `CERTIFICATE` PEM block.
pub(crate) fn pem_certificate_der(pem_text: &[u8]) -> Result<Vec<u8>, PkiError> {
    let block = pem::parse(pem_text).map_err(|e| PkiError::BadPem {
        expected: "CERTIFICATE",
        reason: e.to_string(),
    })?;
    if block.tag() != "CERTIFICATE" {
        return Err(PkiError::BadPem {
            expected: "CERTIFICATE",
            reason: format!("found a {} block", block.tag()),
        });
    }
    Ok(block.into_contents())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::{CaBuilder, KeyType};

    #[test]
    fn from_parsed_is_from_der_without_the_second_parse() {
        let root = CaBuilder::root("Test Root", KeyType::P256).build().unwrap();
        let der = root.certificate_der().to_vec();
        let (_, cert) = X509Certificate::from_der(&der).unwrap();
        let info = CertificateInfo::from_parsed(&cert, &der).unwrap();
        assert_eq!(info, CertificateInfo::from_der(&der).unwrap());
        assert_eq!(info.id, certificate_id(&der));
        assert!(info.is_ca);

        let mut longer = der.clone();
        longer.extend_from_slice(&[0, 0]);
        let (_, cert) = X509Certificate::from_der(&longer).unwrap();
        for err in [
            CertificateInfo::from_parsed(&cert, &longer).unwrap_err(),
            CertificateInfo::from_der(&longer).unwrap_err(),
        ] {
            assert_eq!(
                err.to_string(),
                "malformed certificate: 2 trailing bytes after the certificate"
            );
        }
        let other = CaBuilder::root("Other Root", KeyType::P256)
            .build()
            .unwrap();
        assert!(matches!(
            CertificateInfo::from_parsed(&cert, other.certificate_der()),
            Err(PkiError::MalformedCertificate(_))
        ));
    }
}
