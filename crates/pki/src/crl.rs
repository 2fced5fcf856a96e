//! Certificate revocation lists (RFC 5280 §5) signed by an issuing CA, or
//! by a CRL signer certificate the CA issued beforehand (an offline batch
//! CA, whose own key is at the factory).
//!
//! A CRL signer certificate carries the CA's own subject name and
//! keyUsage cRLSign only, so the CRLs it signs name the CA as their issuer
//! and cover the CA's certificates as they are (no cRLIssuer in their CRL
//! distribution points needed); the CRL's authority key identifier names
//! the signer's key, which is how OpenSSL (`-extended_crl`) finds the
//! signer among the untrusted certificates and checks its path up to the
//! same trust anchor. For `-crl_check_all` the signer's own status comes
//! from a second, empty CRL the CA signs ahead for its whole lifetime,
//! scoped by an issuing distribution point to the URI in the signer's CRL
//! distribution point, so that it covers the signer certificate and no
//! device certificate ([`CertificateAuthority::crl_signer_status_crl`]).

use idmint_types::Serial;
use rcgen::{
    CertificateParams, CertificateRevocationListParams, CrlDistributionPoint,
    CrlIssuingDistributionPoint, CrlScope, DistinguishedName, DnType, DnValue, IsCa, Issuer,
    KeyIdMethod, KeyUsagePurpose, RevokedCertParams, SerialNumber,
};
use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;

use crate::ca::{random_serial, BACKDATE};
use crate::{
    CertificateAuthority, CertificateInfo, DeviceKey, IssuedCertificate, PkiError, Signer,
};

pub use idmint_types::RevocationReason;

fn to_rcgen(reason: RevocationReason) -> rcgen::RevocationReason {
    use rcgen::RevocationReason as R;
    match reason {
        RevocationReason::Unspecified => R::Unspecified,
        RevocationReason::KeyCompromise => R::KeyCompromise,
        RevocationReason::CaCompromise => R::CaCompromise,
        RevocationReason::AffiliationChanged => R::AffiliationChanged,
        RevocationReason::Superseded => R::Superseded,
        RevocationReason::CessationOfOperation => R::CessationOfOperation,
        RevocationReason::CertificateHold => R::CertificateHold,
        RevocationReason::PrivilegeWithdrawn => R::PrivilegeWithdrawn,
    }
}

/// One revoked certificate on a CRL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RevokedEntry {
    /// Serial number, hex.
    pub serial: Serial,
    /// When it was revoked.
    pub revoked_at: OffsetDateTime,
    /// Why.
    pub reason: RevocationReason,
}

/// Where a CRL stands among its CA's CRLs (RFC 5280 §5.2.4, §5.2.6). The
/// complete CRLs and the delta CRLs of a CA share one CRL number sequence.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum CrlKind {
    /// A complete CRL, on its own.
    #[default]
    Full,
    /// A complete CRL whose later changes are published as delta CRLs at
    /// `delta_url` (a freshestCRL extension naming it).
    Base {
        /// The URL of the CA's delta CRL.
        delta_url: String,
    },
    /// A delta CRL: the revocations since the complete CRL numbered `base`
    /// (a critical deltaCRLIndicator naming it).
    Delta {
        /// The CRL number of the complete CRL it completes.
        base: u64,
    },
}

/// Signs a CRL for `ca` listing `revoked`, valid from `this_update` to
/// `next_update`, with the given monotonically increasing CRL number.
pub fn build_crl(
    ca: &CertificateAuthority,
    revoked: &[RevokedEntry],
    crl_number: u64,
    this_update: OffsetDateTime,
    next_update: OffsetDateTime,
    kind: &CrlKind,
) -> Result<Vec<u8>, PkiError> {
    let der = sign_crl(
        ca.issuer(),
        revoked,
        crl_number,
        this_update,
        next_update,
        None,
    )?;
    with_kind(der, kind, ca.issuer().key())
}

/// Signs a CRL for the CA that issued `signer`'s certificate, with the
/// signer's key: the CRL names the CA (the signer certificate's subject)
/// as its issuer and the signer's key in its authority key identifier.
pub fn build_crl_by(
    signer: &CrlSigner,
    revoked: &[RevokedEntry],
    crl_number: u64,
    this_update: OffsetDateTime,
    next_update: OffsetDateTime,
    kind: &CrlKind,
) -> Result<Vec<u8>, PkiError> {
    let der = sign_crl(
        &signer.issuer,
        revoked,
        crl_number,
        this_update,
        next_update,
        None,
    )?;
    with_kind(der, kind, signer.issuer.key())
}

/// Adds what `kind` says to a CRL rcgen signed (rcgen has no delta CRL
/// extensions): decoded and re-encoded with x509-cert, the new TBS signed
/// by the same key.
fn with_kind(der: Vec<u8>, kind: &CrlKind, key: &Signer) -> Result<Vec<u8>, PkiError> {
    use der::asn1::{BitString, Ia5String, OctetString, Uint};
    use der::{Decode, Encode};
    use rcgen::SigningKey;
    use x509_cert::ext::pkix::crl::dp::DistributionPoint;
    use x509_cert::ext::pkix::crl::{BaseCrlNumber, FreshestCrl};
    use x509_cert::ext::pkix::name::{DistributionPointName, GeneralName};
    use x509_cert::ext::Extension;

    let asn1 = |e: der::Error| PkiError::Signing(format!("CRL extension: {e}"));
    let (oid, critical, value) = match kind {
        CrlKind::Full => return Ok(der),
        CrlKind::Base { delta_url } => {
            let uri = Ia5String::new(delta_url).map_err(asn1)?;
            let point = DistributionPoint {
                distribution_point: Some(DistributionPointName::FullName(vec![
                    GeneralName::UniformResourceIdentifier(uri),
                ])),
                reasons: None,
                crl_issuer: None,
            };
            let value = FreshestCrl(vec![point]).to_der().map_err(asn1)?;
            (const_oid::db::rfc5280::ID_CE_FRESHEST_CRL, false, value)
        }
        CrlKind::Delta { base } => {
            let number = Uint::new(&base.to_be_bytes()).map_err(asn1)?;
            let value = BaseCrlNumber(number).to_der().map_err(asn1)?;
            (
                const_oid::db::rfc5280::ID_CE_DELTA_CRL_INDICATOR,
                true,
                value,
            )
        }
    };
    let mut list = x509_cert::crl::CertificateList::from_der(&der).map_err(asn1)?;
    list.tbs_cert_list
        .crl_extensions
        .get_or_insert_with(Vec::new)
        .push(Extension {
            extn_id: oid,
            critical,
            extn_value: OctetString::new(value).map_err(asn1)?,
        });
    let tbs = list.tbs_cert_list.to_der().map_err(asn1)?;
    let signature = key.sign(&tbs)?;
    list.signature = BitString::from_bytes(&signature).map_err(asn1)?;
    list.to_der().map_err(asn1)
}

/// A CRL signer: a certificate with a CA's subject name and keyUsage
/// cRLSign only, issued by that CA, and its key.
pub struct CrlSigner {
    der: Vec<u8>,
    issuer: Issuer<'static, Signer>,
}

impl std::fmt::Debug for CrlSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CrlSigner").finish_non_exhaustive()
    }
}

impl CrlSigner {
    /// Puts a CRL signer certificate and its key together, checking that
    /// they belong together and that the certificate may sign CRLs (and
    /// nothing else: not a CA, keyUsage cRLSign only).
    pub fn from_parts(certificate_der: Vec<u8>, signer: Signer) -> Result<Self, PkiError> {
        let info = CertificateInfo::from_der(&certificate_der)?;
        if info.spki_der != signer.spki_der() {
            return Err(PkiError::InvalidKey(format!(
                "the key does not belong to the CRL signer certificate {}",
                info.subject
            )));
        }
        let (_, parsed) = x509_parser::parse_x509_certificate(&certificate_der)
            .map_err(|e| PkiError::MalformedCertificate(e.to_string()))?;
        let crl_sign_only = parsed
            .key_usage()
            .ok()
            .flatten()
            .is_some_and(|ku| ku.value.crl_sign() && !ku.value.key_cert_sign());
        if parsed.is_ca() || !crl_sign_only {
            return Err(PkiError::MalformedCertificate(format!(
                "{} is not a CRL signer certificate (keyUsage cRLSign only, not a CA)",
                info.subject
            )));
        }
        let issuer =
            Issuer::from_ca_cert_der(&CertificateDer::from(certificate_der.as_slice()), signer)?;
        Ok(CrlSigner {
            der: certificate_der,
            issuer,
        })
    }

    /// The CRL signer certificate, DER.
    pub fn certificate_der(&self) -> &[u8] {
        &self.der
    }
}

impl CertificateAuthority {
    /// Issues a CRL signer certificate for `key`: the CA's own subject
    /// name, keyUsage cRLSign only, not a CA, valid until `not_after` (at
    /// most the CA's expiry), with `status_url` as its CRL distribution
    /// point (where [`CertificateAuthority::crl_signer_status_crl`] is
    /// published).
    pub fn issue_crl_signer(
        &self,
        key: &DeviceKey,
        status_url: &str,
        not_after: OffsetDateTime,
    ) -> Result<IssuedCertificate, PkiError> {
        let now = OffsetDateTime::now_utc()
            .replace_nanosecond(0)
            .unwrap_or(OffsetDateTime::now_utc());
        let mut params = CertificateParams::default();
        params.distinguished_name = subject_of(self.certificate_der())?;
        params.not_before = now - BACKDATE;
        params.not_after = not_after.min(self.info().not_after);
        params.serial_number = Some(random_serial()?);
        params.is_ca = IsCa::ExplicitNoCa;
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::CrlSign];
        params.crl_distribution_points = vec![CrlDistributionPoint {
            uris: vec![status_url.to_string()],
        }];
        let cert = params.signed_by(key.key_pair(), self.issuer())?;
        let der = cert.der().to_vec();
        let info = CertificateInfo::from_der(&der)?;
        Ok(IssuedCertificate { der, info })
    }

    /// Signs the CRL that says a CRL signer certificate of this CA is not
    /// revoked, from now until `next_update` (the CA's expiry): empty,
    /// CRL number 1, scoped by a critical issuing distribution point to
    /// `status_url` and user certificates only, so it covers only
    /// certificates naming `status_url` as their distribution point (the
    /// CRL signer) and never a device certificate.
    pub fn crl_signer_status_crl(
        &self,
        status_url: &str,
        next_update: OffsetDateTime,
    ) -> Result<Vec<u8>, PkiError> {
        let now = OffsetDateTime::now_utc()
            .replace_nanosecond(0)
            .unwrap_or(OffsetDateTime::now_utc());
        sign_crl(
            self.issuer(),
            &[],
            1,
            now - BACKDATE,
            next_update,
            Some(CrlIssuingDistributionPoint {
                distribution_point: CrlDistributionPoint {
                    uris: vec![status_url.to_string()],
                },
                scope: Some(CrlScope::UserCertsOnly),
            }),
        )
    }
}

/// The subject name of a certificate, attribute by attribute with its
/// string type, so that a certificate issued with it names exactly the same
/// subject.
fn subject_of(der: &[u8]) -> Result<DistinguishedName, PkiError> {
    use x509_parser::der_parser::asn1_rs::Tag;
    let bad = |what: &str| PkiError::MalformedCertificate(format!("CA subject name: {what}"));
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| bad(&e.to_string()))?;
    let mut dn = DistinguishedName::new();
    for rdn in cert.subject().iter() {
        let mut attributes = rdn.iter();
        let (Some(attr), None) = (attributes.next(), attributes.next()) else {
            return Err(bad("only one attribute per RDN is supported"));
        };
        let oid: Vec<u64> = attr
            .attr_type()
            .iter()
            .ok_or_else(|| bad("attribute type"))?
            .collect();
        let data = attr.attr_value().data;
        let text = std::str::from_utf8(data).map_err(|_| bad("not UTF-8"))?;
        let value = match attr.attr_value().header.tag() {
            Tag::PrintableString => {
                DnValue::PrintableString(text.try_into().map_err(|_| bad("PrintableString"))?)
            }
            Tag::Ia5String => DnValue::Ia5String(text.try_into().map_err(|_| bad("IA5String"))?),
            Tag::Utf8String => DnValue::Utf8String(text.to_string()),
            _ => return Err(bad("string type")),
        };
        dn.push(DnType::from_oid(&oid), value);
    }
    Ok(dn)
}

fn sign_crl(
    issuer: &Issuer<'static, Signer>,
    revoked: &[RevokedEntry],
    crl_number: u64,
    this_update: OffsetDateTime,
    next_update: OffsetDateTime,
    issuing_distribution_point: Option<CrlIssuingDistributionPoint>,
) -> Result<Vec<u8>, PkiError> {
    let revoked_certs = revoked
        .iter()
        .map(|r| {
            let bytes = hex::decode(r.serial.as_str()).map_err(|_| {
                PkiError::Signing(format!("serial {:?} is not hex", r.serial.as_str()))
            })?;
            Ok(RevokedCertParams {
                serial_number: SerialNumber::from_slice(&bytes),
                revocation_time: r.revoked_at,
                reason_code: Some(to_rcgen(r.reason)),
                invalidity_date: None,
            })
        })
        .collect::<Result<Vec<_>, PkiError>>()?;
    let params = CertificateRevocationListParams {
        this_update,
        next_update,
        crl_number: SerialNumber::from_slice(&crl_number.to_be_bytes()),
        issuing_distribution_point,
        revoked_certs,
        key_identifier_method: KeyIdMethod::Sha256,
    };
    Ok(params.signed_by(issuer)?.der().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CaBuilder, KeyType};
    use time::Duration;
    use x509_parser::extensions::ParsedExtension;

    fn akid(crl: &x509_parser::revocation_list::CertificateRevocationList<'_>) -> Vec<u8> {
        crl.extensions()
            .iter()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::AuthorityKeyIdentifier(a) => {
                    a.key_identifier.as_ref().map(|k| k.0.to_vec())
                }
                _ => None,
            })
            .unwrap()
    }

    #[test]
    fn base_and_delta_crls_carry_their_links_and_stay_signed() {
        let root = CaBuilder::root("Delta Root", KeyType::P256)
            .build()
            .unwrap();
        let (_, ca) = x509_parser::parse_x509_certificate(root.certificate_der()).unwrap();
        let now = OffsetDateTime::now_utc();
        let entry = RevokedEntry {
            serial: Serial::parse("0a0b").unwrap(),
            revoked_at: now,
            reason: RevocationReason::Superseded,
        };
        let url = "https://pki.example.com/crl/root-delta.crl";
        let kinds = [
            CrlKind::Base {
                delta_url: url.into(),
            },
            CrlKind::Delta { base: 7 },
        ];
        for (number, kind) in [8u64, 9].into_iter().zip(kinds) {
            let der = build_crl(
                &root,
                std::slice::from_ref(&entry),
                number,
                now,
                now + Duration::days(1),
                &kind,
            )
            .unwrap();
            let (rest, crl) = x509_parser::parse_x509_crl(&der).unwrap();
            assert!(rest.is_empty());
            crl.verify_signature(ca.public_key()).unwrap();
            assert_eq!(
                crl.crl_number().map(|n| n.to_string()),
                Some(number.to_string())
            );
            assert_eq!(crl.iter_revoked_certificates().count(), 1);
            let find = |oid: &str| {
                crl.extensions()
                    .iter()
                    .find(|e| e.oid.to_id_string() == oid)
                    .map(|e| (e.critical, e.value.to_vec()))
            };
            match kind {
                CrlKind::Base { .. } => {
                    let (critical, value) = find("2.5.29.46").expect("freshestCRL");
                    assert!(!critical);
                    assert!(value.windows(url.len()).any(|w| w == url.as_bytes()));
                    assert!(find("2.5.29.27").is_none());
                }
                CrlKind::Delta { .. } => {
                    let (critical, value) = find("2.5.29.27").expect("deltaCRLIndicator");
                    assert!(critical);
                    assert_eq!(value, [0x02, 0x01, 0x07], "INTEGER 7");
                    assert!(find("2.5.29.46").is_none());
                }
                CrlKind::Full => unreachable!(),
            }
        }
    }

    #[test]
    fn a_crl_signer_signs_crls_in_its_cas_name() {
        let root = CaBuilder::root("Test Root", KeyType::P256).build().unwrap();
        let batch = CaBuilder::issuing("Test Batch CA", KeyType::P256, &root)
            .organization("Example Co")
            .build()
            .unwrap();
        let key = DeviceKey::generate(KeyType::P256).unwrap();
        let url = "urn:idmint:crl-signer:test";
        let issued = batch
            .issue_crl_signer(&key, url, batch.info().not_after + Duration::days(9))
            .unwrap();
        assert_eq!(issued.info.not_after, batch.info().not_after);
        let (_, cert) = x509_parser::parse_x509_certificate(&issued.der).unwrap();
        let (_, ca) = x509_parser::parse_x509_certificate(batch.certificate_der()).unwrap();
        assert_eq!(cert.subject().as_raw(), ca.subject().as_raw());
        assert!(!cert.is_ca());
        let ku = cert.key_usage().unwrap().unwrap().value;
        assert!(ku.crl_sign() && !ku.key_cert_sign() && !ku.digital_signature());
        cert.verify_signature(Some(ca.public_key())).unwrap();
        let ski = cert
            .extensions()
            .iter()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
                _ => None,
            })
            .unwrap();

        let signer = CrlSigner::from_parts(issued.der.clone(), Signer::software(key)).unwrap();
        let now = OffsetDateTime::now_utc();
        let entry = RevokedEntry {
            serial: Serial::parse("0102").unwrap(),
            revoked_at: now,
            reason: RevocationReason::KeyCompromise,
        };
        let der = build_crl_by(
            &signer,
            &[entry],
            3,
            now,
            now + Duration::days(1),
            &CrlKind::Full,
        )
        .unwrap();
        let (_, crl) = x509_parser::parse_x509_crl(&der).unwrap();
        assert_eq!(crl.issuer().as_raw(), ca.subject().as_raw());
        assert_eq!(akid(&crl), ski);
        crl.verify_signature(cert.public_key()).unwrap();
        assert!(crl.verify_signature(ca.public_key()).is_err());
        assert_eq!(crl.iter_revoked_certificates().count(), 1);

        // The CA's own key cannot pose as a CRL signer.
        assert!(CrlSigner::from_parts(
            batch.certificate_der().to_vec(),
            Signer::software(DeviceKey::generate(KeyType::P256).unwrap())
        )
        .is_err());

        let status = batch
            .crl_signer_status_crl(url, batch.info().not_after)
            .unwrap();
        let (_, status) = x509_parser::parse_x509_crl(&status).unwrap();
        status.verify_signature(ca.public_key()).unwrap();
        assert_eq!(status.iter_revoked_certificates().count(), 0);
        assert!(status
            .extensions()
            .iter()
            .any(|e| e.critical && e.oid.to_id_string() == "2.5.29.28"));
    }
}
