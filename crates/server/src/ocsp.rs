//! The OCSP responder (RFC 6960): parses a request, looks each certificate
//! up in the registry and answers with a BasicOCSPResponse signed by the
//! issuing CA itself.

use std::time::Duration;

use der::asn1::{BitString, OctetString};
use der::{Decode, Encode};
use idmint_pki::{CertificateAuthority, KeyType};
use idmint_registry::{CaKind, CertificateStatus, RevocationReason, Store};
use rcgen::SigningKey;
use spki::AlgorithmIdentifierOwned;
use x509_cert::ext::pkix::CrlReason;
use x509_cert::Certificate;
use x509_ocsp::{
    BasicOcspResponse, CertStatus, OcspGeneralizedTime, OcspRequest, OcspResponse, ResponderId,
    ResponseData, RevokedInfo, SingleResponse, Version,
};

use idmint_flows::Idmint;

const SHA1: der::asn1::ObjectIdentifier = const_oid::db::rfc5912::ID_SHA_1;
const SHA256: der::asn1::ObjectIdentifier = const_oid::db::rfc5912::ID_SHA_256;

/// How long a response may be cached (its nextUpdate).
pub const RESPONSE_VALIDITY: Duration = Duration::from_secs(3600);

/// Parses a DER OCSP request (what the fuzz target exercises).
pub fn parse_request(der: &[u8]) -> Result<OcspRequest, der::Error> {
    OcspRequest::from_der(der)
}

/// One of our CAs, as OCSP identifies it.
struct Issuer {
    name: String,
    name_hash_sha1: Vec<u8>,
    key_hash_sha1: Vec<u8>,
    name_hash_sha256: Vec<u8>,
    key_hash_sha256: Vec<u8>,
}

fn digest(alg: &'static aws_lc_rs::digest::Algorithm, data: &[u8]) -> Vec<u8> {
    aws_lc_rs::digest::digest(alg, data).as_ref().to_vec()
}

async fn issuers(store: &Store) -> Result<Vec<Issuer>, idmint_registry::RegistryError> {
    let mut out = Vec::new();
    for ca in store.list_cas().await? {
        if ca.kind == CaKind::External {
            continue;
        }
        let Ok(cert) = Certificate::from_der(&ca.certificate_der) else {
            continue;
        };
        let Ok(name) = cert.tbs_certificate.subject.to_der() else {
            continue;
        };
        let key = cert
            .tbs_certificate
            .subject_public_key_info
            .subject_public_key
            .raw_bytes();
        out.push(Issuer {
            name: ca.name.clone(),
            name_hash_sha1: digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, &name),
            key_hash_sha1: digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, key),
            name_hash_sha256: digest(&aws_lc_rs::digest::SHA256, &name),
            key_hash_sha256: digest(&aws_lc_rs::digest::SHA256, key),
        });
    }
    Ok(out)
}

fn gtime(unix: i64) -> Result<OcspGeneralizedTime, der::Error> {
    let secs = u64::try_from(unix).unwrap_or(0);
    let dt = der::DateTime::from_unix_duration(Duration::from_secs(secs))?;
    Ok(OcspGeneralizedTime::from(dt))
}

fn signature_algorithm(key_type: KeyType) -> Result<AlgorithmIdentifierOwned, der::Error> {
    Ok(match key_type {
        KeyType::P256 => AlgorithmIdentifierOwned {
            oid: const_oid::db::rfc5912::ECDSA_WITH_SHA_256,
            parameters: None,
        },
        KeyType::P384 => AlgorithmIdentifierOwned {
            oid: const_oid::db::rfc5912::ECDSA_WITH_SHA_384,
            parameters: None,
        },
        KeyType::Ed25519 => AlgorithmIdentifierOwned {
            oid: const_oid::db::rfc8410::ID_ED_25519,
            parameters: None,
        },
        KeyType::Rsa2048 | KeyType::Rsa3072 => AlgorithmIdentifierOwned {
            oid: const_oid::db::rfc5912::SHA_256_WITH_RSA_ENCRYPTION,
            parameters: Some(der::Any::from(der::asn1::Null)),
        },
    })
}

fn reason_of(reason: Option<RevocationReason>) -> CrlReason {
    match reason.unwrap_or(RevocationReason::Unspecified) {
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

fn encode(response: &OcspResponse) -> Vec<u8> {
    response
        .to_der()
        .unwrap_or_else(|_| vec![0x30, 0x03, 0x0a, 0x01, 0x02])
}

/// Answers a DER OCSP request with a DER OCSP response (always an
/// `OCSPResponse`, with a non-successful status for bad requests).
pub async fn respond(idmint: &Idmint, request_der: &[u8]) -> Vec<u8> {
    let Ok(request) = parse_request(request_der) else {
        return encode(&OcspResponse::malformed_request());
    };
    match build(idmint, &request).await {
        Ok(Some(r)) => encode(&r),
        Ok(None) => encode(&OcspResponse::unauthorized()),
        Err(e) => {
            tracing::error!("OCSP response failed: {e}");
            encode(&OcspResponse::internal_error())
        }
    }
}

async fn build(
    idmint: &Idmint,
    request: &OcspRequest,
) -> Result<Option<OcspResponse>, Box<dyn std::error::Error>> {
    let issuers = issuers(idmint.store()).await?;
    let now = idmint_registry::now();
    let mut signer: Option<(String, std::sync::Arc<CertificateAuthority>)> = None;
    let mut responses = Vec::new();
    for req in &request.tbs_request.request_list {
        let id = &req.req_cert;
        let (name_hash, key_hash) = (
            id.issuer_name_hash.as_bytes(),
            id.issuer_key_hash.as_bytes(),
        );
        let issuer = issuers.iter().find(|i| match id.hash_algorithm.oid {
            o if o == SHA1 => i.key_hash_sha1 == key_hash && i.name_hash_sha1 == name_hash,
            o if o == SHA256 => i.key_hash_sha256 == key_hash && i.name_hash_sha256 == name_hash,
            _ => false,
        });
        let Some(issuer) = issuer else { continue };
        match &signer {
            Some((n, _)) if *n != issuer.name => continue,
            Some(_) => {}
            None => signer = Some((issuer.name.clone(), idmint.signing_ca(&issuer.name).await?)),
        }
        let serial = serial_hex(id.serial_number.as_bytes());
        let status = match idmint
            .store()
            .certificate_by_serial(&issuer.name, &serial)
            .await?
        {
            None => CertStatus::unknown(),
            Some(c) => match c.status {
                CertificateStatus::Active => CertStatus::good(),
                CertificateStatus::Revoked => CertStatus::revoked(RevokedInfo {
                    revocation_time: gtime(c.revoked_at.unwrap_or(c.updated).unix_timestamp())?,
                    revocation_reason: Some(reason_of(c.revocation_reason)),
                }),
                // Suspended or not yet activated: on hold, so relying parties refuse it.
                CertificateStatus::Inactive | CertificateStatus::PendingActivation => {
                    CertStatus::revoked(RevokedInfo {
                        revocation_time: gtime(c.updated.unix_timestamp())?,
                        revocation_reason: Some(CrlReason::CertificateHold),
                    })
                }
            },
        };
        responses.push(SingleResponse {
            cert_id: id.clone(),
            cert_status: status,
            this_update: gtime(now)?,
            next_update: Some(gtime(now + RESPONSE_VALIDITY.as_secs() as i64)?),
            single_extensions: None,
        });
    }
    let Some((_, ca)) = signer else {
        return Ok(None);
    };
    let ca_cert = Certificate::from_der(ca.certificate_der())?;
    let key_bits = ca_cert
        .tbs_certificate
        .subject_public_key_info
        .subject_public_key
        .raw_bytes();
    let nonce: Vec<x509_cert::ext::Extension> = request
        .tbs_request
        .request_extensions
        .iter()
        .flatten()
        .filter(|e| e.extn_id == const_oid::db::rfc6960::ID_PKIX_OCSP_NONCE)
        .cloned()
        .collect();
    let data = ResponseData {
        version: Version::V1,
        responder_id: ResponderId::ByKey(OctetString::new(digest(
            &aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY,
            key_bits,
        ))?),
        produced_at: gtime(now)?,
        responses,
        response_extensions: if nonce.is_empty() { None } else { Some(nonce) },
    };
    let tbs = data.to_der()?;
    let signature = ca.signer().sign(&tbs)?;
    let basic = BasicOcspResponse {
        tbs_response_data: data,
        signature_algorithm: signature_algorithm(ca.signer().key_type())?,
        signature: BitString::from_bytes(&signature)?,
        certs: None,
    };
    Ok(Some(OcspResponse::successful(basic)?))
}

/// Lowercase hex without leading zero bytes, as the registry stores serials.
pub fn serial_hex(raw: &[u8]) -> String {
    let first = raw
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(raw.len().saturating_sub(1));
    hex::encode(&raw[first..])
}
