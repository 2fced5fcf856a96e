//! Endorsement-key certificates: the chain from a TPM's EK certificate to a
//! registered TPM manufacturer's CA, accepting what EK certificates carry (a
//! critical subjectAltName of TCG directoryName attributes, an empty subject,
//! no EKU or only the EK certificate purpose 2.23.133.8.1).

use rustls_pki_types::{CertificateDer, UnixTime};
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
    let leaf = CertificateDer::from(ek_certificate);
    let end_entity = webpki::EndEntityCert::try_from(&leaf)
        .map_err(|e| PkiError::MalformedCertificate(format!("EK certificate: {e:?}")))?;
    let root_ders: Vec<CertificateDer<'_>> =
        roots.iter().map(|r| CertificateDer::from(*r)).collect();
    let anchors = root_ders
        .iter()
        .map(|r| {
            webpki::anchor_from_trusted_cert(r)
                .map_err(|e| PkiError::MalformedCertificate(format!("trust anchor: {e:?}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let inter: Vec<CertificateDer<'_>> = intermediates
        .iter()
        .map(|c| CertificateDer::from(*c))
        .collect();
    let seconds = u64::try_from(now.unix_timestamp()).unwrap_or(0);
    end_entity
        .verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &anchors,
            &inter,
            UnixTime::since_unix_epoch(std::time::Duration::from_secs(seconds)),
            webpki::KeyUsage::required_if_present(TCG_KP_EK_CERTIFICATE),
            None,
            None,
        )
        .map(|_| ())
        .map_err(|e| PkiError::ChainInvalid(format!("{e:?}")))
}
