//! Certificate state changes (revoke, activate, deactivate), for every
//! edge: the CLI, the REST API. The caller brings the access module's proof.

use idmint_pki::RevocationReason;
use idmint_registry::{CertificateId, CertificateStatus};

use crate::access::{AccessError, Action, Authorized};
use crate::{FlowError, Idmint};

impl Idmint {
    /// Sets a certificate's state; `reason` applies to a revocation
    /// (`unspecified` when none is given).
    pub async fn set_certificate_status(
        &self,
        who: &Authorized,
        id: &CertificateId,
        status: CertificateStatus,
        reason: Option<RevocationReason>,
    ) -> Result<(), FlowError> {
        if who.action() != Action::ChangeCertificateStatus {
            return Err(AccessError::Refused(
                "a certificate state change needs that authorization".into(),
            )
            .into());
        }
        let reason = match status {
            CertificateStatus::Revoked => Some(reason.unwrap_or(RevocationReason::Unspecified)),
            _ => None,
        };
        let mut tx = self.store().begin(who.actor()).await?;
        tx.set_certificate_status(id, status, reason).await?;
        tx.commit().await?;
        Ok(())
    }
}
