//! Endorsement-key certificates: the chain from a TPM's EK certificate to a
//! registered TPM manufacturer's CA, accepting what EK certificates carry (a
//! critical subjectAltName of TCG directoryName attributes, an empty subject,
//! no EKU or only the EK certificate purpose 2.23.133.8.1).

use time::OffsetDateTime;

use crate::PkiError;

/// 2.23.133.8.1 (tcg-kp-EKCertificate), the DER content of the OID.
const TCG_KP_EK_CERTIFICATE: &[u8] = &[0x67, 0x81, 0x05, 0x08, 0x01];

/// Verifies an EK certificate (DER) against TPM manufacturers' CA
/// certificates, `now`. rustls-webpki checks the path, signatures, validity
/// and basic constraints; the extended key usage must be absent or include
/// 2.23.133.8.1 (an EK certificate is never a TLS client). webpki reads the
/// critical SAN (it knows the extension) and, with no name to match, does not
/// judge its directoryName entries or the empty subject.
pub fn verify_ek_chain_at(
    ek_certificate: &[u8],
    intermediates: &[&[u8]],
    roots: &[&[u8]],
    now: OffsetDateTime,
) -> Result<(), PkiError> {
    crate::verify::verify_for_usage(
        ek_certificate,
        intermediates,
        roots,
        now,
        webpki::KeyUsage::required_if_present(TCG_KP_EK_CERTIFICATE),
    )
    .map_err(|e| match e {
        PkiError::MalformedCertificate(m) if !m.starts_with("trust anchor") => {
            PkiError::MalformedCertificate(format!("EK certificate: {m}"))
        }
        e => e,
    })
}
