//! Chain verification with rustls-webpki, the same verifier TLS stacks use:
//! a device certificate against intermediates and trust anchors.

use rustls_pki_types::{CertificateDer, UnixTime};
use time::OffsetDateTime;

use crate::PkiError;

/// Verifies `leaf` (DER) as a TLS client certificate chaining through
/// `intermediates` to one of `roots`, now.
pub fn verify_chain(leaf: &[u8], intermediates: &[&[u8]], roots: &[&[u8]]) -> Result<(), PkiError> {
    verify_chain_at(leaf, intermediates, roots, OffsetDateTime::now_utc())
}

/// Like [`verify_chain`] at a given time.
pub fn verify_chain_at(
    leaf: &[u8],
    intermediates: &[&[u8]],
    roots: &[&[u8]],
    time: OffsetDateTime,
) -> Result<(), PkiError> {
    verify_for_usage(
        leaf,
        intermediates,
        roots,
        time,
        webpki::KeyUsage::client_auth(),
    )
}

/// The one rustls-webpki path check: `leaf` through `intermediates` to one
/// of `roots` at `time`, for `usage` (client authentication for devices; the
/// TCG EK purpose for TPM endorsement keys).
pub(crate) fn verify_for_usage(
    leaf: &[u8],
    intermediates: &[&[u8]],
    roots: &[&[u8]],
    time: OffsetDateTime,
    usage: webpki::KeyUsage,
) -> Result<(), PkiError> {
    let leaf_der = CertificateDer::from(leaf);
    let end_entity = webpki::EndEntityCert::try_from(&leaf_der)
        .map_err(|e| PkiError::MalformedCertificate(format!("{e:?}")))?;
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
    let seconds = u64::try_from(time.unix_timestamp()).unwrap_or(0);
    end_entity
        .verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &anchors,
            &inter,
            UnixTime::since_unix_epoch(std::time::Duration::from_secs(seconds)),
            usage,
            None,
            None,
        )
        .map(|_| ())
        .map_err(|e| PkiError::ChainInvalid(format!("{e:?}")))
}
