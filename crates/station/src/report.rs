//! A remote station's report on a certificate it had issued
//! `PENDING_ACTIVATION`: its device installed it and proved its key
//! (activate), or it never became usable (spoil). Both read and change the
//! certificate inside one write transaction, so two stations reporting the
//! same device cannot both count.

use idmint_registry::{
    AuditEvent, Certificate, CertificateId, CertificateStatus, RegistryError, StationSpoiled,
};

use super::spoil_certificate;
use idmint_flows::access::{AccessError, Action, Authorized};
use idmint_flows::FlowError;

/// What a remote station reports.
#[derive(Clone, Debug)]
pub enum StationReport {
    /// The device installed the certificate and proved its key.
    Provisioned {
        /// The device's hardware id.
        hw_id: Option<String>,
        /// Whether its credential storage was locked.
        locked: bool,
    },
    /// The certificate never became usable: why (at most 500 characters kept).
    Spoiled {
        /// The failed step and what went wrong.
        reason: String,
    },
}

impl crate::Station<'_> {
    /// Applies a station's report to `certificate` of `batch`, which must be
    /// `PENDING_ACTIVATION`; returns the certificate as it is now.
    pub async fn report_station_result(
        &self,
        who: &Authorized,
        batch: &str,
        certificate: &CertificateId,
        report: &StationReport,
    ) -> Result<Certificate, FlowError> {
        if who.action() != Action::ReportStation {
            return Err(
                AccessError::Refused("a station report needs that authorization".into()).into(),
            );
        }
        let mut tx = self.store().begin(who.actor()).await?;
        let cert = tx
            .certificate(certificate)
            .await?
            .filter(|c| c.batch.as_deref() == Some(batch))
            .ok_or_else(|| RegistryError::NotFound {
                kind: "certificate of this batch",
                name: certificate.to_string(),
            })?;
        let to = match report {
            StationReport::Provisioned { .. } => CertificateStatus::Active,
            StationReport::Spoiled { .. } => CertificateStatus::Revoked,
        };
        if cert.status != CertificateStatus::PendingActivation {
            return Err(RegistryError::InvalidTransition {
                id: certificate.to_string(),
                from: cert.status.to_string(),
                to: format!("{to} (only a PENDING_ACTIVATION certificate can be reported)"),
            }
            .into());
        }
        match report {
            StationReport::Provisioned { hw_id, locked } => {
                tx.set_certificate_status(certificate, CertificateStatus::Active, None)
                    .await?;
                tx.audit(
                    cert.thing.as_deref().unwrap_or(certificate),
                    AuditEvent::StationProvisioned {
                        batch: batch.to_string(),
                        hw_id: hw_id.clone(),
                        certificate: certificate.to_string(),
                        injected: None,
                        locked: *locked,
                        address: None,
                        remote: true,
                    },
                );
            }
            StationReport::Spoiled { reason } => {
                let why: String = reason.chars().take(500).collect();
                let details = StationSpoiled {
                    batch: batch.to_string(),
                    stage: None,
                    reason: why.clone(),
                    remote: true,
                };
                spoil_certificate(&mut tx, certificate, &why, details).await?;
            }
        }
        tx.commit().await?;
        Ok(self.store().require_certificate(certificate).await?)
    }
}
