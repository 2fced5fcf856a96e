//! PKCS#7 / CMS "certs-only" messages (RFC 7030 section 4.1.3): a
//! SignedData with no content and no signers, carrying certificates.

use cms::content_info::ContentInfo;
use cms::signed_data::{CertificateSet, EncapsulatedContentInfo, SignedData, SignerInfos};
use der::asn1::SetOfVec;
use der::{Decode, Encode};
use x509_cert::Certificate;

/// DER of a certs-only SignedData carrying `certificates` (DER each).
pub fn certs_only(certificates: &[Vec<u8>]) -> Result<Vec<u8>, der::Error> {
    let mut set = SetOfVec::new();
    for der in certificates {
        let cert = Certificate::from_der(der)?;
        set.insert(cms::cert::CertificateChoices::Certificate(cert))?;
    }
    let signed = SignedData {
        version: cms::content_info::CmsVersion::V1,
        digest_algorithms: SetOfVec::new(),
        encap_content_info: EncapsulatedContentInfo {
            econtent_type: const_oid::db::rfc5911::ID_DATA,
            econtent: None,
        },
        certificates: Some(CertificateSet(set)),
        crls: None,
        signer_infos: SignerInfos(SetOfVec::new()),
    };
    let info = ContentInfo {
        content_type: const_oid::db::rfc5911::ID_SIGNED_DATA,
        content: der::Any::encode_from(&signed)?,
    };
    info.to_der()
}

/// The certificates (DER) in a certs-only message.
pub fn certificates_of(der: &[u8]) -> Result<Vec<Vec<u8>>, der::Error> {
    let info = ContentInfo::from_der(der)?;
    let signed: SignedData = info.content.decode_as()?;
    let mut out = Vec::new();
    if let Some(set) = signed.certificates {
        for choice in set.0.iter() {
            if let cms::cert::CertificateChoices::Certificate(c) = choice {
                out.push(c.to_der()?);
            }
        }
    }
    Ok(out)
}
