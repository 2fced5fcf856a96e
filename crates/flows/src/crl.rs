//! CRLs: a signed list of a CA's revoked certificates, with a CRL number
//! that grows with every CRL issued.

use idmint_pki::{build_crl, RevocationReason, RevokedEntry};
use time::{Duration, OffsetDateTime};

use crate::{FlowError, Idmint};

/// How long a CRL is valid before the next one is due.
pub const CRL_VALIDITY: Duration = Duration::days(7);

impl Idmint {
    /// Issues a CRL (DER) for `ca`.
    pub async fn issue_crl(&self, actor: &str, ca: &str) -> Result<Vec<u8>, FlowError> {
        let authority = self.signing_ca(ca).await?;
        let revoked = self.store().revoked_certificates(ca).await?;
        let entries: Vec<RevokedEntry> = revoked
            .iter()
            .map(|c| RevokedEntry {
                serial: c.serial.clone(),
                revoked_at: c.revoked_at.unwrap_or(c.updated),
                reason: c.revocation_reason.unwrap_or(RevocationReason::Unspecified),
            })
            .collect();
        let mut tx = self.store().begin(actor).await?;
        let number = tx.next_crl_number(ca).await?;
        let now = OffsetDateTime::now_utc();
        let der = build_crl(
            &authority,
            &entries,
            u64::try_from(number).unwrap_or(0),
            now,
            now + CRL_VALIDITY,
        )?;
        tx.commit().await?;
        Ok(der)
    }
}
