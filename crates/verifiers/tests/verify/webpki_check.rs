//! rustls-webpki as a verifier: what rustls-based brokers, gateways and
//! cloud backends run on a device's client certificate.

use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use webpki::{
    BorrowedCertRevocationList, CertRevocationList, EndEntityCert, KeyUsage, RevocationCheckDepth,
    RevocationOptionsBuilder, UnknownStatusPolicy,
};

/// id-kp-OCSPSigning (1.3.6.1.5.5.7.3.9), the OID's value bytes.
const OCSP_SIGNING: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x09];

fn now() -> UnixTime {
    UnixTime::now()
}

/// The root parses as a trust anchor.
pub fn trust_anchor(root: &[u8]) -> Result<(), webpki::Error> {
    webpki::anchor_from_trusted_cert(&CertificateDer::from(root)).map(|_| ())
}

fn path(
    leaf: &[u8],
    root: &[u8],
    intermediates: &[&[u8]],
    usage: KeyUsage,
    crls: &[&[u8]],
) -> Result<(), webpki::Error> {
    let root = CertificateDer::from(root);
    let anchors = [webpki::anchor_from_trusted_cert(&root)?];
    let intermediates: Vec<CertificateDer<'_>> = intermediates
        .iter()
        .map(|d| CertificateDer::from(*d))
        .collect();
    let leaf = CertificateDer::from(leaf);
    let end_entity = EndEntityCert::try_from(&leaf)?;
    let crls: Vec<CertRevocationList<'_>> = crls
        .iter()
        .map(|der| BorrowedCertRevocationList::from_der(der).map(Into::into))
        .collect::<Result<_, _>>()?;
    let crl_refs: Vec<&CertRevocationList<'_>> = crls.iter().collect();
    let revocation = RevocationOptionsBuilder::new(&crl_refs).ok().map(|b| {
        b.with_depth(RevocationCheckDepth::Chain)
            .with_status_policy(UnknownStatusPolicy::Allow)
            .build()
    });
    end_entity
        .verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &anchors,
            &intermediates,
            now(),
            usage,
            revocation,
            None,
        )
        .map(|_| ())
}

/// A TLS client certificate path, checked against `crls` where given.
pub fn client(
    leaf: &[u8],
    root: &[u8],
    intermediates: &[&[u8]],
    crls: &[&[u8]],
) -> Result<(), webpki::Error> {
    path(leaf, root, intermediates, KeyUsage::client_auth(), crls)
}

/// A TLS server certificate path, valid for `name` (a DNS name or an IP
/// address).
pub fn server(
    leaf: &[u8],
    root: &[u8],
    intermediates: &[&[u8]],
    name: &str,
) -> Result<(), webpki::Error> {
    path(leaf, root, intermediates, KeyUsage::server_auth(), &[])?;
    let der = CertificateDer::from(leaf);
    let cert = EndEntityCert::try_from(&der)?;
    let name = ServerName::try_from(name).map_err(|_| webpki::Error::BadDer)?;
    cert.verify_is_valid_for_subject_name(&name)
}

/// A delegated OCSP responder: a valid path whose extended key usages allow
/// id-kp-OCSPSigning (webpki applies the check to every certificate of the
/// path, so CAs without an EKU extension pass; that the responder itself
/// carries id-kp-OCSPSigning is x509-parser's check).
pub fn ocsp_responder(
    leaf: &[u8],
    root: &[u8],
    intermediates: &[&[u8]],
) -> Result<(), webpki::Error> {
    path(
        leaf,
        root,
        intermediates,
        KeyUsage::required_if_present(OCSP_SIGNING),
        &[],
    )
}

/// `leaf` is signed by `issuer` and valid now, `issuer` taken as the trust
/// anchor (an OCSP client's check of a responder its CA delegated to).
pub fn signed_by(leaf: &[u8], issuer: &[u8]) -> Result<(), webpki::Error> {
    path(
        leaf,
        issuer,
        &[],
        KeyUsage::required_if_present(OCSP_SIGNING),
        &[],
    )
}
