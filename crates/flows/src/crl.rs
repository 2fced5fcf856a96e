//! CRLs: a signed list of a CA's revoked certificates and of the revoked
//! CAs it signed, with a CRL number that grows with every CRL issued. An
//! offline batch CA's CRL is signed by the CRL signer it signed at `batch
//! authorize` (see [`crate::offline`]).

use std::sync::Arc;

use idmint_pki::{
    build_crl, build_crl_by, CertificateAuthority, CrlKind, CrlSigner, RevocationReason,
    RevokedEntry,
};
use time::{Duration, OffsetDateTime};

use crate::{FlowError, Idmint};

/// What signs a CA's CRL.
enum CrlKey {
    /// The CA's own key.
    Ca(Arc<CertificateAuthority>),
    /// The CRL signer an offline batch CA signed for the maker.
    Delegated(Box<CrlSigner>),
}

/// How long a CRL is valid before the next one is due.
pub const CRL_VALIDITY: Duration = Duration::days(7);

/// Which CRL of a CA to issue.
#[derive(Clone, Debug)]
pub enum CrlRequest {
    /// A complete CRL, on its own.
    Full,
    /// A complete CRL that names `delta_url` as where its delta CRLs are.
    Base {
        /// The URL of the CA's delta CRL.
        delta_url: String,
    },
    /// A delta CRL over the complete CRL numbered `base`, read from the
    /// registry at `base_read_at`: every revocation from then on.
    Delta {
        /// The base CRL's number.
        base: u64,
        /// When the base CRL's entries were read.
        base_read_at: OffsetDateTime,
    },
}

/// A CRL just issued.
#[derive(Clone, Debug)]
pub struct IssuedCrl {
    /// The DER CRL.
    pub der: Vec<u8>,
    /// Its CRL number.
    pub number: u64,
    /// When its entries were read from the registry (a delta CRL over it
    /// starts there).
    pub read_at: OffsetDateTime,
    /// How many certificates it lists.
    pub entries: usize,
}

impl Idmint {
    /// Issues a complete CRL (DER) for `ca` ([`Idmint::issue_crl_of`]).
    pub async fn issue_crl(&self, actor: &str, ca: &str) -> Result<Vec<u8>, FlowError> {
        Ok(self.issue_crl_of(actor, ca, &CrlRequest::Full).await?.der)
    }

    /// Issues a CRL for `ca`, complete or delta: signed by its key, or for
    /// an offline batch CA (its key at the factory) by the CRL signer it
    /// signed at `batch authorize` ([`FlowError::BatchCaKeyAtFactory`] for
    /// batches authorized before there was one). Complete and delta CRLs
    /// share the CA's CRL number sequence.
    pub async fn issue_crl_of(
        &self,
        actor: &str,
        ca: &str,
        request: &CrlRequest,
    ) -> Result<IssuedCrl, FlowError> {
        let key = match self.signing_ca(ca).await {
            Ok(authority) => CrlKey::Ca(authority),
            Err(FlowError::CaCannotSign(_)) => {
                CrlKey::Delegated(Box::new(self.offline_crl_signer(ca).await?))
            }
            Err(e) => return Err(e),
        };
        let read_at = OffsetDateTime::now_utc();
        let revoked = self.store().revoked_certificates(ca).await?;
        let mut entries: Vec<RevokedEntry> = revoked
            .iter()
            .map(|c| RevokedEntry {
                serial: c.serial.clone(),
                revoked_at: c.revoked_at.unwrap_or(c.updated),
                reason: c.revocation_reason.unwrap_or(RevocationReason::Unspecified),
            })
            .collect();
        // The CAs it signed that were revoked (`idmint ca revoke`).
        for child in self.store().revoked_child_cas(ca).await? {
            let info = idmint_pki::CertificateInfo::from_der(&child.certificate_der)?;
            entries.push(RevokedEntry {
                serial: info.serial,
                revoked_at: child.revoked_at.unwrap_or(child.created),
                reason: child
                    .revocation_reason
                    .unwrap_or(RevocationReason::Unspecified),
            });
        }
        let kind = match request {
            CrlRequest::Full => CrlKind::Full,
            CrlRequest::Base { delta_url } => CrlKind::Base {
                delta_url: delta_url.clone(),
            },
            CrlRequest::Delta { base, base_read_at } => {
                // Timestamps are kept to the second: a second of overlap,
                // so nothing revoked as the base was read is missed.
                let since = *base_read_at - Duration::seconds(1);
                entries.retain(|e| e.revoked_at >= since);
                CrlKind::Delta { base: *base }
            }
        };
        let mut tx = self.store().begin(actor).await?;
        let number = tx.next_crl_number(ca).await?;
        let now = OffsetDateTime::now_utc();
        let number = u64::try_from(number).unwrap_or(0);
        let der = match &key {
            CrlKey::Ca(authority) => {
                build_crl(authority, &entries, number, now, now + CRL_VALIDITY, &kind)?
            }
            CrlKey::Delegated(signer) => {
                build_crl_by(signer, &entries, number, now, now + CRL_VALIDITY, &kind)?
            }
        };
        tx.commit().await?;
        Ok(IssuedCrl {
            der,
            number,
            read_at,
            entries: entries.len(),
        })
    }
}

impl Idmint {
    /// Revokes CA `name` for `reason` (`idmint ca revoke`): it goes on its
    /// parent's CRL and OCSP answers revoked for it; it issues nothing more
    /// and certificates chaining through it are refused as client
    /// certificates. A root cannot be revoked (stop trusting it instead).
    pub async fn revoke_ca(
        &self,
        actor: &str,
        name: &str,
        reason: RevocationReason,
    ) -> Result<(), FlowError> {
        let mut tx = self.store().begin(actor).await?;
        tx.revoke_ca(name, reason).await?;
        tx.commit().await?;
        self.forget_signing_ca(name);
        Ok(())
    }
}
