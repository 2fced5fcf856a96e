//! Just-in-time provisioning: a device whose certificate chains to an
//! outside CA registered with `--auto-register --template T` registers
//! itself from that template on its first connection, with the template
//! parameters taken from its certificate's subject. Unlike the cloud
//! service, the first connection is kept, and a template that needs a
//! subject field the certificate lacks fails without writing anything.

use idmint_pki::{CertificateInfo, IssuedCertificate};
use idmint_registry::{AuditEvent, Ca, CertificateStatus, ProvisionedVia, TemplateKind};
use serde::Serialize;

use super::provision::{certificate_parameters, thing_name};
use super::Rejection;
use idmint_flows::issue::certificate_record;

/// The `$aws/events/certificates/registered/{caCertificateId}` event.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RegisteredEvent {
    /// The new certificate's id.
    pub certificate_id: String,
    /// The CA certificate's id.
    pub ca_certificate_id: String,
    /// Unix milliseconds.
    pub timestamp: i64,
    /// Its status after provisioning.
    pub certificate_status: CertificateStatus,
    /// The thing it was attached to.
    pub thing_name: String,
    /// The template used.
    pub template_name: String,
}

impl crate::Fleet<'_> {
    /// Registers `leaf` (already verified to chain to `ca`) from the CA's
    /// auto-registration template.
    pub async fn jitp_register(&self, ca: &Ca, leaf: &[u8]) -> Result<RegisteredEvent, Rejection> {
        let template_name = ca
            .template
            .clone()
            .filter(|_| ca.auto_register)
            .ok_or_else(|| {
                Rejection::forbidden(
                    "ACCESS_DENIED",
                    format!("CA {} does not auto-register certificates", ca.name),
                )
            })?;
        let stored = self
            .store()
            .template(&template_name)
            .await?
            .filter(|t| t.kind == TemplateKind::Jitp && t.enabled)
            .ok_or_else(|| {
                Rejection::not_found(format!(
                    "CA {} auto-registers with template {template_name}, which is missing, disabled or not a JITP template",
                    ca.name
                ))
            })?;
        let template = super::templates::check_template(&template_name, stored.kind, &stored.body)?;
        let info = CertificateInfo::from_der(leaf)
            .map_err(|e| Rejection::invalid("InvalidCertificate", e.to_string()))?;
        let provisioning = template
            .render(&certificate_parameters(&info))
            .map_err(|e| {
                Rejection::invalid(
                    "InvalidParameters",
                    format!("JITP template {template_name} cannot register this certificate: {e}"),
                )
            })?;
        let thing_name = thing_name(&provisioning, &template_name)?;
        let certificate = IssuedCertificate {
            der: leaf.to_vec(),
            info,
        };
        let mut tx = self.store().begin(&format!("jitp:{}", ca.name)).await?;
        tx.insert_certificate(&certificate_record(
            &certificate,
            &ca.name,
            None,
            CertificateStatus::PendingActivation,
            None,
        ))
        .await?;
        let existing = self
            .apply_provisioning(
                &mut tx,
                &certificate.info.id,
                &template_name,
                &provisioning,
                ProvisionedVia::Jitp {
                    ca: ca.name.clone(),
                },
            )
            .await?;
        tx.audit(
            &certificate.info.id,
            AuditEvent::JitpRegister {
                ca: ca.name.clone(),
                template: template_name.clone(),
                thing: thing_name.clone(),
                existing_thing: existing,
            },
        );
        tx.commit().await?;
        let status = self
            .store()
            .require_certificate(&certificate.info.id)
            .await?
            .status;
        Ok(RegisteredEvent {
            certificate_id: certificate.info.id.to_string(),
            ca_certificate_id: ca.id.to_string(),
            timestamp: time::OffsetDateTime::now_utc().unix_timestamp() * 1000,
            certificate_status: status,
            thing_name,
            template_name,
        })
    }
}

impl crate::Fleet<'_> {
    /// Turns JITP on (with a JITP template) or off for an outside CA.
    pub async fn set_auto_register(
        &self,
        actor: &str,
        ca: &str,
        auto_register: bool,
        template: Option<&str>,
    ) -> Result<Ca, idmint_flows::FlowError> {
        use idmint_flows::FlowError;
        let record = self.store().require_ca(ca).await?;
        if record.kind != idmint_registry::CaKind::External {
            return Err(FlowError::Invalid(format!(
                "CA {ca} is one of ours; auto-registration is for registered outside CAs"
            )));
        }
        let template = template.map(str::to_string).or(record.template.clone());
        if auto_register {
            let name = template.as_deref().ok_or_else(|| {
                FlowError::Invalid("auto-registration needs a template: pass --template".into())
            })?;
            let t = self.require_template(name).await?;
            if t.kind != TemplateKind::Jitp {
                return Err(FlowError::Invalid(format!(
                    "template {name} is a {} template; auto-registration needs a jitp template",
                    t.kind
                )));
            }
        }
        let mut tx = self.store().begin(actor).await?;
        tx.set_ca_auto_register(ca, auto_register, template.as_deref())
            .await?;
        tx.commit().await?;
        Ok(self.store().require_ca(ca).await?)
    }
}
