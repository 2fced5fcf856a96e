//! Checking many outside device certificates (a vendor's manifest) against
//! one registered CA with rustls-webpki, the verifier TLS stacks use: path
//! length, basic constraints, name constraints,
//! validity and the TLS client-auth extended key usage (a certificate
//! without the extension is accepted, one whose EKU excludes clientAuth is
//! not) are all webpki's.
//!
//! An import checks up to millions of leaves through the same few vendor
//! intermediates, so an intermediate that webpki accepted once is kept by
//! the caller ([`AcceptedIntermediate`]) and later leaves are verified
//! against it directly: one signature check per leaf instead of two. That
//! shortcut is taken only when the registered CA carries no name
//! constraints (which a path from the intermediate would not see);
//! otherwise every leaf gets the full path.

use rustls_pki_types::{CertificateDer, TrustAnchor, UnixTime};
use time::OffsetDateTime;

/// Why a certificate does not chain to the registered CA as a client
/// certificate.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChainRejection {
    /// The certificate (or an intermediate webpki needed) does not parse
    /// as an X.509 v3 certificate webpki accepts.
    #[error("certificate is malformed: {0}")]
    Malformed(String),
    /// No path to the registered CA: unknown issuer, bad signature, or an
    /// intermediate that may not sign (path length, key usage, name
    /// constraints).
    #[error("{0}")]
    Untrusted(String),
    /// Not valid yet at the check time.
    #[error("not valid yet")]
    NotYetValid,
    /// Expired at the check time.
    #[error("expired")]
    Expired,
    /// Its extended key usage excludes TLS client authentication.
    #[error("extended key usage excludes TLS client authentication")]
    KeyUsage,
}

/// The registered CA that device certificates must chain to, and the time
/// they are checked at.
pub struct ClientChainVerifier {
    anchor: TrustAnchor<'static>,
    at: UnixTime,
}

/// An offered intermediate webpki accepted on a path to the registered CA,
/// kept so that later leaves it signed are verified against it alone.
pub struct AcceptedIntermediate {
    anchor: TrustAnchor<'static>,
}

/// What a successful check found.
pub enum Verified {
    /// The registered CA signed the certificate directly.
    Direct,
    /// The certificate chains through `offered[index]`, which is now
    /// accepted (`None` when the caller's accepted intermediate was used).
    Through {
        /// Index into the offered intermediates.
        index: usize,
        /// The intermediate, to keep for later leaves (`None` when the
        /// registered CA has name constraints: no shortcut then).
        accepted: Option<AcceptedIntermediate>,
    },
}

impl ClientChainVerifier {
    /// A verifier for certificates chaining to `anchor_der`, checked at `at`.
    pub fn new(anchor_der: &[u8], at: OffsetDateTime) -> Result<Self, ChainRejection> {
        let anchor = webpki::anchor_from_trusted_cert(&CertificateDer::from(anchor_der))
            .map(|a| a.to_owned())
            .map_err(|e| {
                ChainRejection::Malformed(format!("the registered CA certificate: {e:?}"))
            })?;
        let seconds = u64::try_from(at.unix_timestamp()).unwrap_or(0);
        Ok(ClientChainVerifier {
            anchor,
            at: UnixTime::since_unix_epoch(std::time::Duration::from_secs(seconds)),
        })
    }

    /// Verifies `leaf` (DER) as a client certificate chaining to the
    /// registered CA, directly or through some of `offered` (DER).
    pub fn verify(&self, leaf: &[u8], offered: &[&[u8]]) -> Result<Verified, ChainRejection> {
        let leaf = CertificateDer::from(leaf);
        let end_entity = end_entity(&leaf)?;
        let offered_ders: Vec<CertificateDer<'_>> =
            offered.iter().map(|c| CertificateDer::from(*c)).collect();
        let anchors = std::slice::from_ref(&self.anchor);
        let path = end_entity
            .verify_for_usage(
                webpki::ALL_VERIFICATION_ALGS,
                anchors,
                &offered_ders,
                self.at,
                webpki::KeyUsage::client_auth(),
                None,
                None,
            )
            .map_err(rejection)?;
        let Some(first) = path.intermediate_certificates().next() else {
            return Ok(Verified::Direct);
        };
        let first = first.der();
        let index = offered
            .iter()
            .position(|c| *c == first.as_ref())
            .ok_or_else(|| {
                ChainRejection::Untrusted("path through no offered certificate".into())
            })?;
        // A path longer than one intermediate, or a CA with name
        // constraints: no shortcut, every leaf gets the whole path.
        let shortcut =
            path.intermediate_certificates().count() == 1 && self.anchor.name_constraints.is_none();
        let accepted = if shortcut {
            webpki::anchor_from_trusted_cert(&first)
                .ok()
                .map(|a| AcceptedIntermediate {
                    anchor: a.to_owned(),
                })
        } else {
            None
        };
        Ok(Verified::Through { index, accepted })
    }

    /// Verifies `leaf` against an intermediate accepted earlier by
    /// [`ClientChainVerifier::verify`] at the same time.
    pub fn verify_through(
        &self,
        leaf: &[u8],
        accepted: &AcceptedIntermediate,
    ) -> Result<(), ChainRejection> {
        let leaf = CertificateDer::from(leaf);
        end_entity(&leaf)?
            .verify_for_usage(
                webpki::ALL_VERIFICATION_ALGS,
                std::slice::from_ref(&accepted.anchor),
                &[],
                self.at,
                webpki::KeyUsage::client_auth(),
                None,
                None,
            )
            .map(|_| ())
            .map_err(rejection)
    }
}

fn end_entity<'a>(
    leaf: &'a CertificateDer<'a>,
) -> Result<webpki::EndEntityCert<'a>, ChainRejection> {
    webpki::EndEntityCert::try_from(leaf).map_err(|e| ChainRejection::Malformed(format!("{e:?}")))
}

fn rejection(e: webpki::Error) -> ChainRejection {
    use webpki::Error;
    match e {
        Error::CertExpired { .. } => ChainRejection::Expired,
        Error::CertNotValidYet { .. } => ChainRejection::NotYetValid,
        #[allow(deprecated)]
        Error::RequiredEkuNotFound | Error::RequiredEkuNotFoundContext(_) => {
            ChainRejection::KeyUsage
        }
        Error::BadDer
        | Error::BadDerTime
        | Error::TrailingData(_)
        | Error::UnsupportedCertVersion => ChainRejection::Malformed(format!("{e:?}")),
        other => ChainRejection::Untrusted(format!("{other:?}")),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::{CaBuilder, DeviceKey, KeyType, Profile, SubjectValues};

    fn leaf(ca: &crate::CertificateAuthority, name: &str) -> Vec<u8> {
        let key = DeviceKey::generate(KeyType::P256).unwrap();
        ca.issue(
            &key.public_key().unwrap(),
            &Profile::device(),
            &SubjectValues::for_thing(name),
        )
        .unwrap()
        .der
    }

    #[test]
    fn direct_through_and_shortcut_paths_agree() {
        let root = CaBuilder::root("Vendor Root", KeyType::P256)
            .build()
            .unwrap();
        let signer = CaBuilder::issuing("Vendor Signer", KeyType::P256, &root)
            .build()
            .unwrap();
        let now = OffsetDateTime::now_utc();
        let v = ClientChainVerifier::new(root.certificate_der(), now).unwrap();
        assert!(matches!(
            v.verify(&leaf(&root, "direct"), &[]).unwrap(),
            Verified::Direct
        ));
        let other = CaBuilder::root("Other Root", KeyType::P256)
            .build()
            .unwrap();
        let offered = [other.certificate_der(), signer.certificate_der()];
        let Verified::Through { index, accepted } =
            v.verify(&leaf(&signer, "through"), &offered).unwrap()
        else {
            panic!("expected a path through the signer");
        };
        assert_eq!(index, 1);
        let accepted = accepted.expect("shortcut");
        v.verify_through(&leaf(&signer, "later"), &accepted)
            .unwrap();
        // A leaf of another CA fails both ways.
        let stranger = leaf(&other, "stranger");
        assert!(matches!(
            v.verify(&stranger, &offered),
            Err(ChainRejection::Untrusted(_))
        ));
        assert!(v.verify_through(&stranger, &accepted).is_err());
    }

    #[test]
    fn a_ca_beyond_an_intermediates_path_length_vouches_for_nothing() {
        // The vendor's signer allows no CA below it; one it signed anyway
        // may not sign devices (the hand validator this replaced let it).
        let root = CaBuilder::root("Vendor Root", KeyType::P256)
            .build()
            .unwrap();
        let signer = CaBuilder::issuing("Vendor Signer", KeyType::P256, &root)
            .path_len(0)
            .build()
            .unwrap();
        let rogue = CaBuilder::issuing("Rogue Sub CA", KeyType::P256, &signer)
            .build()
            .unwrap();
        let v =
            ClientChainVerifier::new(root.certificate_der(), OffsetDateTime::now_utc()).unwrap();
        let offered = [signer.certificate_der(), rogue.certificate_der()];
        assert!(matches!(
            v.verify(&leaf(&rogue, "too-deep"), &offered),
            Err(ChainRejection::Untrusted(_))
        ));
        // Devices the signer itself signed are fine.
        assert!(v.verify(&leaf(&signer, "fine"), &offered).is_ok());
    }

    #[test]
    fn expired_and_garbage_are_told_apart() {
        let root = CaBuilder::root("Vendor Root", KeyType::P256)
            .build()
            .unwrap();
        let cert = leaf(&root, "dev");
        let later = OffsetDateTime::now_utc() + time::Duration::days(365 * 40);
        let v = ClientChainVerifier::new(root.certificate_der(), later).unwrap();
        assert_eq!(v.verify(&cert, &[]).err(), Some(ChainRejection::Expired));
        let v =
            ClientChainVerifier::new(root.certificate_der(), OffsetDateTime::now_utc()).unwrap();
        assert!(matches!(
            v.verify(b"not a certificate", &[]),
            Err(ChainRejection::Malformed(_))
        ));
    }
}
