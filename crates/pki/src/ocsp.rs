//! OCSP (RFC 6960, in the RFC 5019 profile): reading a request, telling
//! which CA a request's certificate ids name, signing responses, and issuing
//! the delegated responder certificate a CA signs so that its own key is
//! not used per response.

use std::time::Duration as StdDuration;

use der::asn1::{BitString, Null, ObjectIdentifier, OctetString};
use der::{Decode, Encode};
use rcgen::{
    CertificateParams, CustomExtension, DistinguishedName, DnType, IsCa, KeyUsagePurpose,
    SigningKey,
};
use spki::AlgorithmIdentifierOwned;
use time::{Duration, OffsetDateTime};
use x509_cert::ext::pkix::CrlReason;
use x509_cert::Certificate;
use x509_ocsp::{
    BasicOcspResponse, CertId, OcspGeneralizedTime, OcspRequest, OcspResponse, ResponderId,
    ResponseData, RevokedInfo, SingleResponse, Version,
};

use idmint_types::Serial;

use crate::ca::{random_serial, BACKDATE};
use crate::{CertificateAuthority, DeviceKey, IssuedCertificate, KeyType, PkiError};
pub use idmint_types::RevocationReason;

const SHA1: ObjectIdentifier = const_oid::db::rfc5912::ID_SHA_1;
const SHA256: ObjectIdentifier = const_oid::db::rfc5912::ID_SHA_256;
/// id-pkix-ocsp-nocheck (RFC 6960 §4.2.2.2.1): relying parties need not
/// check the responder certificate's own revocation.
const OCSP_NOCHECK: &[u64] = &[1, 3, 6, 1, 5, 5, 7, 48, 1, 5];

fn malformed(e: der::Error) -> PkiError {
    PkiError::MalformedOcspRequest(e.to_string())
}

fn encoding(e: der::Error) -> PkiError {
    PkiError::Signing(format!("OCSP response encoding: {e}"))
}

/// A parsed OCSP request.
#[derive(Clone, Debug)]
pub struct Request {
    inner: OcspRequest,
}

/// One certificate a request asks about.
#[derive(Clone, Copy, Debug)]
pub struct Query<'r> {
    id: &'r CertId,
}

impl Request {
    /// Parses a DER `OCSPRequest`.
    pub fn from_der(der: &[u8]) -> Result<Request, PkiError> {
        Ok(Request {
            inner: OcspRequest::from_der(der).map_err(malformed)?,
        })
    }

    /// The certificates it asks about, in order.
    pub fn queries(&self) -> impl Iterator<Item = Query<'_>> {
        self.inner
            .tbs_request
            .request_list
            .iter()
            .map(|r| Query { id: &r.req_cert })
    }
}

impl Query<'_> {
    /// The serial number asked about: lowercase hex without leading zero
    /// bytes, as the registry stores serials.
    pub fn serial(&self) -> Serial {
        Serial::from_integer_bytes(self.id.serial_number.as_bytes())
    }
}

/// A DER OCSP request (RFC 5019: one certificate, SHA-1 CertID, no nonce)
/// for serial number `serial` (big-endian bytes) of the CA whose
/// certificate is `issuer_der`: what a relying party sends.
pub fn request_for(issuer_der: &[u8], serial: &[u8]) -> Result<Vec<u8>, PkiError> {
    request_with(issuer_der, serial, true)
}

/// A one-certificate request whose CertID hashes with SHA-1 (`sha1`) or
/// SHA-256.
fn request_with(issuer_der: &[u8], serial: &[u8], sha1: bool) -> Result<Vec<u8>, PkiError> {
    let issuer = IssuerId::of(issuer_der)?;
    let (oid, name_hash, key_hash) = if sha1 {
        (SHA1, issuer.name_sha1, issuer.key_sha1)
    } else {
        (SHA256, issuer.name_sha256, issuer.key_sha256)
    };
    let id = CertId {
        hash_algorithm: AlgorithmIdentifierOwned {
            oid,
            parameters: Some(der::Any::from(Null)),
        },
        issuer_name_hash: OctetString::new(name_hash).map_err(encoding)?,
        issuer_key_hash: OctetString::new(key_hash).map_err(encoding)?,
        serial_number: x509_cert::serial_number::SerialNumber::new(serial)
            .map_err(|e| PkiError::MalformedCertificate(format!("serial: {e}")))?,
    };
    OcspRequest {
        tbs_request: x509_ocsp::TbsRequest {
            version: Version::V1,
            requestor_name: None,
            request_list: vec![x509_ocsp::Request {
                req_cert: id,
                single_request_extensions: None,
            }],
            request_extensions: None,
        },
        optional_signature: None,
    }
    .to_der()
    .map_err(encoding)
}

/// Whether a DER `OCSPResponse` is a successful (signed) one.
pub fn is_successful(response_der: &[u8]) -> bool {
    OcspResponse::from_der(response_der)
        .is_ok_and(|r| r.response_status == x509_ocsp::OcspResponseStatus::Successful)
}

/// A CA as OCSP certificate ids name it: the hashes of its subject name and
/// public key, with SHA-1 (what RFC 5019 clients send) and SHA-256.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuerId {
    name_sha1: Vec<u8>,
    key_sha1: Vec<u8>,
    name_sha256: Vec<u8>,
    key_sha256: Vec<u8>,
}

impl IssuerId {
    /// The id of the CA whose certificate is `ca_der`.
    pub fn of(ca_der: &[u8]) -> Result<IssuerId, PkiError> {
        let cert = Certificate::from_der(ca_der)
            .map_err(|e| PkiError::MalformedCertificate(e.to_string()))?;
        let name = cert
            .tbs_certificate
            .subject
            .to_der()
            .map_err(|e| PkiError::MalformedCertificate(e.to_string()))?;
        let key = cert
            .tbs_certificate
            .subject_public_key_info
            .subject_public_key
            .raw_bytes();
        Ok(IssuerId {
            name_sha1: crate::digest::sha1_legacy(&name).to_vec(),
            key_sha1: crate::digest::sha1_legacy(key).to_vec(),
            name_sha256: crate::sha256(&name).to_vec(),
            key_sha256: crate::sha256(key).to_vec(),
        })
    }

    /// Whether `query` names a certificate of this CA.
    pub fn issued(&self, query: &Query<'_>) -> bool {
        let (name, key) = (
            query.id.issuer_name_hash.as_bytes(),
            query.id.issuer_key_hash.as_bytes(),
        );
        match query.id.hash_algorithm.oid {
            o if o == SHA1 => self.name_sha1 == name && self.key_sha1 == key,
            o if o == SHA256 => self.name_sha256 == name && self.key_sha256 == key,
            _ => false,
        }
    }
}

/// What a response says of one certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Issued and not revoked.
    Good,
    /// Revoked (or on hold) at `at`, for `reason`.
    Revoked {
        /// When.
        at: OffsetDateTime,
        /// Why.
        reason: RevocationReason,
    },
    /// Not a certificate this responder knows (an unknown serial, or
    /// another CA's certificate).
    Unknown,
}

/// Why a request got no signed answer (RFC 6960 `OCSPResponseStatus`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The request did not parse.
    MalformedRequest,
    /// It names no certificate of a CA this responder serves.
    Unauthorized,
    /// The responder failed.
    InternalError,
}

/// The unsigned `OCSPResponse` for a failure.
pub fn failure_response(failure: Failure) -> Vec<u8> {
    let response = match failure {
        Failure::MalformedRequest => OcspResponse::malformed_request(),
        Failure::Unauthorized => OcspResponse::unauthorized(),
        Failure::InternalError => OcspResponse::internal_error(),
    };
    // The fixed encodings of the three statuses, should encoding fail.
    response.to_der().unwrap_or_else(|_| {
        let status = match failure {
            Failure::MalformedRequest => 1,
            Failure::InternalError => 2,
            Failure::Unauthorized => 6,
        };
        vec![0x30, 0x03, 0x0a, 0x01, status]
    })
}

/// Who signs responses: a CA itself, or a delegated responder certificate
/// it issued (sent along in each response, so relying parties can check it).
pub struct Responder<'a> {
    /// The signing key.
    pub key: &'a crate::Signer,
    /// The responder certificate (DER): the CA's own, or a delegated one.
    pub certificate_der: &'a [u8],
    /// Whether `certificate_der` is a delegated responder certificate (then
    /// it is included in responses).
    pub delegated: bool,
}

/// One answer of a response.
#[derive(Clone, Copy, Debug)]
pub struct Answer<'r> {
    /// The certificate asked about.
    pub query: Query<'r>,
    /// Its status.
    pub status: Status,
}

fn gtime(at: OffsetDateTime) -> Result<OcspGeneralizedTime, PkiError> {
    let secs = u64::try_from(at.unix_timestamp()).unwrap_or(0);
    let dt = der::DateTime::from_unix_duration(StdDuration::from_secs(secs)).map_err(encoding)?;
    Ok(OcspGeneralizedTime::from(dt))
}

fn crl_reason(reason: RevocationReason) -> CrlReason {
    match reason {
        RevocationReason::Unspecified => CrlReason::Unspecified,
        RevocationReason::KeyCompromise => CrlReason::KeyCompromise,
        RevocationReason::CaCompromise => CrlReason::CaCompromise,
        RevocationReason::AffiliationChanged => CrlReason::AffiliationChanged,
        RevocationReason::Superseded => CrlReason::Superseded,
        RevocationReason::CessationOfOperation => CrlReason::CessationOfOperation,
        RevocationReason::CertificateHold => CrlReason::CertificateHold,
        RevocationReason::PrivilegeWithdrawn => CrlReason::PrivilegeWithdrawn,
    }
}

fn signature_algorithm(key_type: KeyType) -> AlgorithmIdentifierOwned {
    let (oid, parameters) = match key_type {
        KeyType::P256 => (const_oid::db::rfc5912::ECDSA_WITH_SHA_256, None),
        KeyType::P384 => (const_oid::db::rfc5912::ECDSA_WITH_SHA_384, None),
        KeyType::Ed25519 => (const_oid::db::rfc8410::ID_ED_25519, None),
        KeyType::Rsa2048 | KeyType::Rsa3072 => (
            const_oid::db::rfc5912::SHA_256_WITH_RSA_ENCRYPTION,
            Some(der::Any::from(Null)),
        ),
    };
    AlgorithmIdentifierOwned { oid, parameters }
}

/// Signs a successful `OCSPResponse` (DER) answering `answers`, produced
/// at `produced_at` and valid until `next_update`. No nonce is echoed: as
/// RFC 5019 allows, responses are signed once and served to every asker
/// until they are refreshed.
pub fn sign_response(
    responder: &Responder<'_>,
    answers: &[Answer<'_>],
    produced_at: OffsetDateTime,
    next_update: OffsetDateTime,
) -> Result<Vec<u8>, PkiError> {
    let responder_cert = Certificate::from_der(responder.certificate_der)
        .map_err(|e| PkiError::MalformedCertificate(e.to_string()))?;
    let key_bits = responder_cert
        .tbs_certificate
        .subject_public_key_info
        .subject_public_key
        .raw_bytes();
    let responses = answers
        .iter()
        .map(|a| {
            let cert_status = match a.status {
                Status::Good => x509_ocsp::CertStatus::good(),
                Status::Unknown => x509_ocsp::CertStatus::unknown(),
                Status::Revoked { at, reason } => x509_ocsp::CertStatus::revoked(RevokedInfo {
                    revocation_time: gtime(at)?,
                    revocation_reason: Some(crl_reason(reason)),
                }),
            };
            Ok(SingleResponse {
                cert_id: a.query.id.clone(),
                cert_status,
                this_update: gtime(produced_at)?,
                next_update: Some(gtime(next_update)?),
                single_extensions: None,
            })
        })
        .collect::<Result<Vec<_>, PkiError>>()?;
    let data = ResponseData {
        version: Version::V1,
        responder_id: ResponderId::ByKey(
            OctetString::new(crate::digest::sha1_legacy(key_bits).to_vec()).map_err(encoding)?,
        ),
        produced_at: gtime(produced_at)?,
        responses,
        response_extensions: None,
    };
    let tbs = data.to_der().map_err(encoding)?;
    let signature = responder.key.sign(&tbs)?;
    let basic = BasicOcspResponse {
        tbs_response_data: data,
        signature_algorithm: signature_algorithm(responder.key.key_type()),
        signature: BitString::from_bytes(&signature).map_err(encoding)?,
        certs: responder.delegated.then(|| vec![responder_cert]),
    };
    OcspResponse::successful(basic)
        .map_err(encoding)?
        .to_der()
        .map_err(encoding)
}

/// The authority information access extension (RFC 5280 §4.2.2.1) naming
/// `ocsp_url` as the OCSP responder.
pub(crate) fn authority_info_access(ocsp_url: &str) -> Result<CustomExtension, PkiError> {
    use x509_cert::ext::pkix::name::GeneralName;
    use x509_cert::ext::pkix::{AccessDescription, AuthorityInfoAccessSyntax};
    let uri = der::asn1::Ia5String::new(ocsp_url).map_err(|e| PkiError::Profile {
        profile: "OCSP URL".into(),
        reason: format!("{ocsp_url:?}: {e}"),
    })?;
    let aia = AuthorityInfoAccessSyntax(vec![AccessDescription {
        access_method: const_oid::db::rfc5280::ID_AD_OCSP,
        access_location: GeneralName::UniformResourceIdentifier(uri),
    }]);
    Ok(CustomExtension::from_oid_content(
        &[1, 3, 6, 1, 5, 5, 7, 1, 1],
        aia.to_der().map_err(encoding)?,
    ))
}

impl CertificateAuthority {
    /// Issues a delegated OCSP responder certificate for `key`, valid for
    /// `validity` from now: extended key usage id-kp-OCSPSigning,
    /// id-pkix-ocsp-nocheck, digitalSignature only, the CA's name with
    /// " OCSP Responder" as its common name.
    pub fn issue_ocsp_responder(
        &self,
        key: &DeviceKey,
        validity: Duration,
    ) -> Result<IssuedCertificate, PkiError> {
        let now = OffsetDateTime::now_utc()
            .replace_nanosecond(0)
            .unwrap_or(OffsetDateTime::now_utc());
        self.issue_ocsp_responder_until(key, now + validity)
    }

    /// Issues a delegated OCSP responder certificate for `key`, valid from
    /// now until `not_after` (at most the CA's own expiry): what `batch
    /// authorize` has an offline batch CA sign for its whole lifetime, since
    /// the batch CA key leaves the maker and cannot renew it. Same
    /// extensions as [`CertificateAuthority::issue_ocsp_responder`].
    pub fn issue_ocsp_responder_until(
        &self,
        key: &DeviceKey,
        not_after: OffsetDateTime,
    ) -> Result<IssuedCertificate, PkiError> {
        let now = OffsetDateTime::now_utc()
            .replace_nanosecond(0)
            .unwrap_or(OffsetDateTime::now_utc());
        let mut params = CertificateParams::default();
        params.not_before = now - BACKDATE;
        params.not_after = not_after.min(self.info().not_after);
        params.serial_number = Some(random_serial()?);
        let mut name = DistinguishedName::new();
        let ca_name = self.info().subject_cn.as_deref().unwrap_or("idmint CA");
        name.push(DnType::CommonName, format!("{ca_name} OCSP Responder"));
        params.distinguished_name = name;
        params.is_ca = IsCa::ExplicitNoCa;
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::OcspSigning];
        params.custom_extensions = vec![CustomExtension::from_oid_content(
            OCSP_NOCHECK,
            Null.to_der().map_err(encoding)?,
        )];
        let cert = params.signed_by(key.key_pair(), self.issuer())?;
        let der = cert.der().to_vec();
        let info = crate::CertificateInfo::from_der(&der)?;
        Ok(IssuedCertificate { der, info })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CaBuilder, Signer};

    fn request(ca: &CertificateAuthority, serial: &[u8], sha1: bool) -> Vec<u8> {
        request_with(ca.certificate_der(), serial, sha1).unwrap()
    }

    #[test]
    fn a_request_names_its_issuer_by_either_hash_and_its_serial() {
        let root = CaBuilder::root("Test Root", KeyType::P256).build().unwrap();
        let other = CaBuilder::root("Other Root", KeyType::P256)
            .build()
            .unwrap();
        let id = IssuerId::of(root.certificate_der()).unwrap();
        let other_id = IssuerId::of(other.certificate_der()).unwrap();
        for sha1 in [true, false] {
            let der = request(&root, &[0x00, 0x8f, 0x01], sha1);
            let parsed = Request::from_der(&der).unwrap();
            let query = parsed.queries().next().unwrap();
            assert!(id.issued(&query));
            assert!(!other_id.issued(&query));
            assert_eq!(query.serial(), "8f01");
        }
    }

    #[test]
    fn request_for_names_the_issuer_and_serial() {
        let root = CaBuilder::root("Test Root", KeyType::P256).build().unwrap();
        let der = request_for(root.certificate_der(), &[0x01, 0x02]).unwrap();
        let parsed = Request::from_der(&der).unwrap();
        let query = parsed.queries().next().unwrap();
        assert!(IssuerId::of(root.certificate_der()).unwrap().issued(&query));
        assert_eq!(query.serial(), "0102");
        assert!(!is_successful(&failure_response(Failure::Unauthorized)));
    }

    #[test]
    fn garbage_is_a_malformed_request() {
        for bad in [
            &b""[..],
            b"\x30\x03\x02\x01",
            b"not der at all",
            &[0x30, 0x80],
        ] {
            assert!(matches!(
                Request::from_der(bad),
                Err(PkiError::MalformedOcspRequest(_))
            ));
        }
    }

    #[test]
    fn a_delegated_responder_signs_what_its_certificate_says() {
        let ca = CaBuilder::root("Test Root", KeyType::P256).build().unwrap();
        let key = DeviceKey::generate(KeyType::P256).unwrap();
        let responder = ca.issue_ocsp_responder(&key, Duration::days(2)).unwrap();
        let parsed = x509_parser::parse_x509_certificate(&responder.der)
            .unwrap()
            .1;
        let eku = parsed.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.ocsp_signing && !eku.client_auth && !eku.server_auth);
        assert!(parsed
            .extensions()
            .iter()
            .any(|e| e.oid.to_id_string() == "1.3.6.1.5.5.7.48.1.5"));
        assert!(!parsed.is_ca());

        let der = request(&ca, &[0x42], true);
        let parsed_request = Request::from_der(&der).unwrap();
        let signer = Signer::software(key);
        let now = OffsetDateTime::now_utc();
        let answers: Vec<Answer<'_>> = parsed_request
            .queries()
            .map(|query| Answer {
                query,
                status: Status::Revoked {
                    at: now,
                    reason: RevocationReason::KeyCompromise,
                },
            })
            .collect();
        let response = sign_response(
            &Responder {
                key: &signer,
                certificate_der: &responder.der,
                delegated: true,
            },
            &answers,
            now,
            now + Duration::hours(1),
        )
        .unwrap();
        assert!(is_successful(&response));
        let decoded = OcspResponse::from_der(&response).unwrap();
        let basic =
            BasicOcspResponse::from_der(decoded.response_bytes.unwrap().response.as_bytes())
                .unwrap();
        assert_eq!(basic.certs.as_ref().map(Vec::len), Some(1));
        assert_eq!(basic.tbs_response_data.responses.len(), 1);
        // The signature verifies with the responder certificate's key.
        let spki = x509_parser::parse_x509_certificate(&responder.der)
            .unwrap()
            .1
            .public_key()
            .raw
            .to_vec();
        let verifier =
            crate::VerifyingKey::from_spki(&spki, crate::SignatureEncoding::Der).unwrap();
        assert!(verifier.verifies(
            &basic.tbs_response_data.to_der().unwrap(),
            basic.signature.raw_bytes(),
        ));
    }

    #[test]
    fn issued_certificates_point_at_the_crl_and_the_responder() {
        let ca = CaBuilder::root("Test Root", KeyType::P256)
            .build()
            .unwrap()
            .with_revocation_pointers(crate::RevocationPointers {
                crl_url: "https://pki.example.com/crl/root.crl".into(),
                ocsp_url: "https://pki.example.com/ocsp".into(),
            })
            .unwrap();
        let key = DeviceKey::generate(KeyType::P256).unwrap();
        let cert = ca
            .issue(
                &key.public_key().unwrap(),
                &crate::Profile::device(),
                &crate::SubjectValues::for_thing("dev-1"),
            )
            .unwrap();
        let parsed = x509_parser::parse_x509_certificate(&cert.der).unwrap().1;
        let mut crl = None;
        let mut ocsp = None;
        for ext in parsed.extensions() {
            match ext.parsed_extension() {
                x509_parser::extensions::ParsedExtension::CRLDistributionPoints(points) => {
                    crl = Some(format!("{points:?}"));
                }
                x509_parser::extensions::ParsedExtension::AuthorityInfoAccess(aia) => {
                    ocsp = aia
                        .accessdescs
                        .iter()
                        .find(|d| d.access_method.to_id_string() == "1.3.6.1.5.5.7.48.1")
                        .map(|d| format!("{:?}", d.access_location));
                }
                _ => {}
            }
        }
        assert!(crl
            .unwrap()
            .contains("https://pki.example.com/crl/root.crl"));
        assert!(ocsp.unwrap().contains("https://pki.example.com/ocsp"));

        let refused = CaBuilder::root("Test Root", KeyType::P256)
            .build()
            .unwrap()
            .with_revocation_pointers(crate::RevocationPointers {
                crl_url: "ftp://x/y.crl".into(),
                ocsp_url: "https://pki.example.com/ocsp".into(),
            });
        assert!(matches!(refused, Err(PkiError::Profile { .. })));
    }

    #[test]
    fn failures_encode_their_status() {
        assert_eq!(
            failure_response(Failure::MalformedRequest),
            [0x30, 0x03, 0x0a, 0x01, 0x01]
        );
        assert_eq!(
            failure_response(Failure::Unauthorized),
            [0x30, 0x03, 0x0a, 0x01, 0x06]
        );
    }
}
