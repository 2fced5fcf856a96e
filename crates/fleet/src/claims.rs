//! Claim certificates: the shared credential in a golden image (or an
//! installer's short-lived one) that may only ask for a device's own
//! identity, through the provisioning topics of its templates. They are
//! issued by a dedicated claim CA, created on first use under the root.

use idmint_pki::{DeviceKey, Profile, SubjectValues};
use idmint_registry::{
    CaKind, CertificateStatus, Claim, ClaimAllowance, RegistryError, TemplateKind,
};
use time::OffsetDateTime;
use zeroize::Zeroizing;

use super::Rejection;
use idmint_flows::ca::NewIssuingCa;
use idmint_flows::init::ROOT_CA;
use idmint_flows::issue::certificate_record;
use idmint_flows::FlowError;

/// The registry name of the claim CA.
pub const CLAIM_CA: &str = "claim";

/// How long a claim certificate is valid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClaimValidity {
    /// Days (a claim baked into a golden image).
    Days(u32),
    /// Minutes (a trusted user's temporary claim).
    Minutes(u32),
}

/// A new claim certificate and its key (returned once, never stored).
pub struct ClaimCredentials {
    /// The certificate id.
    pub certificate_id: String,
    /// The claim certificate then the claim CA, PEM.
    pub certificate_pem: String,
    /// The private key, PKCS#8 PEM.
    pub private_key: Zeroizing<String>,
    /// End of validity.
    pub not_after: OffsetDateTime,
    /// The templates it may use.
    pub templates: Vec<String>,
}

impl crate::Fleet<'_> {
    /// Creates the claim CA under the root if it does not exist yet.
    pub async fn ensure_claim_ca(&self, actor: &str) -> Result<(), FlowError> {
        if self.store().ca(CLAIM_CA).await?.is_some() {
            return Ok(());
        }
        let org = self.config().org.clone();
        let cn = format!("{org} claim CA");
        let req = NewIssuingCa {
            name: CLAIM_CA,
            parent: ROOT_CA,
            valid_days: 3650,
            key_type: None,
            common_name: Some(&cn),
            pkcs11_key: None,
        };
        match self.create_ca(actor, &req, CaKind::Claim).await {
            // Another server created it first.
            Err(FlowError::Registry(RegistryError::AlreadyExists { .. })) | Ok(_) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Issues a claim certificate allowed to use `templates` (fleet
    /// templates that must exist), limited to `rate_per_minute` provisioning
    /// requests (the `[fleet]` default when `None`; 0: no limit).
    pub async fn create_claim(
        &self,
        actor: &str,
        templates: &[String],
        validity: ClaimValidity,
        rate_per_minute: Option<u32>,
    ) -> Result<ClaimCredentials, FlowError> {
        if templates.is_empty() {
            return Err(FlowError::Invalid(
                "a claim certificate needs at least one template".into(),
            ));
        }
        for name in templates {
            let template =
                self.store()
                    .template(name)
                    .await?
                    .ok_or_else(|| RegistryError::NotFound {
                        kind: "template",
                        name: name.clone(),
                    })?;
            if template.kind != TemplateKind::Fleet {
                return Err(FlowError::Invalid(format!(
                    "template {name:?} is a {} template; claims use fleet templates",
                    template.kind
                )));
            }
        }
        self.ensure_claim_ca(actor).await?;
        let ca = self.signing_ca(CLAIM_CA).await?;
        let key = DeviceKey::generate(self.config().key_type)?;
        let mut profile = Profile::device();
        match validity {
            ClaimValidity::Days(d) => profile.validity_days = d.max(1),
            ClaimValidity::Minutes(m) => profile.validity_minutes = Some(m.max(1)),
        }
        let name = format!("claim-{}", idmint_flows::random_hex(6)?);
        let values = SubjectValues::for_thing(&name).with("org", self.config().org.as_str());
        let certificate = ca.issue_for_key(&key, &profile, &values)?;
        let mut tx = self.store().begin(actor).await?;
        tx.insert_certificate(&certificate_record(
            &certificate,
            CLAIM_CA,
            None,
            CertificateStatus::Active,
            None,
        ))
        .await?;
        tx.insert_claim(&Claim {
            certificate_id: certificate.info.id.clone(),
            templates: templates.to_vec(),
            rate_per_minute: i64::from(
                rate_per_minute.unwrap_or(self.config().fleet.claim_rate_per_minute),
            ),
        })
        .await?;
        tx.commit().await?;
        let mut pem = certificate.pem();
        if let Some(claim_ca) = self.chain(CLAIM_CA).await?.first() {
            pem.push_str(&idmint_pki::to_pem("CERTIFICATE", claim_ca));
        }
        Ok(ClaimCredentials {
            certificate_id: certificate.info.id.to_string(),
            certificate_pem: pem,
            private_key: key.pkcs8_pem(),
            not_after: certificate.info.not_after,
            templates: templates.to_vec(),
        })
    }
}

impl crate::Fleet<'_> {
    /// Counts one provisioning request of claim certificate
    /// `certificate_id` against its `rate_per_minute` (0: no limit). The
    /// count is kept in the store, so the limit holds across every server
    /// on it; over the limit, the request is throttled (429).
    pub async fn count_claim_request(
        &self,
        certificate_id: &str,
        rate_per_minute: u32,
    ) -> Result<(), Rejection> {
        match self
            .store()
            .count_claim_request(certificate_id, rate_per_minute, idmint_registry::now())
            .await?
        {
            ClaimAllowance::Allowed => Ok(()),
            ClaimAllowance::Throttled { retry_after_secs } => Err(Rejection::throttled(format!(
                "this claim certificate is limited to {rate_per_minute} requests per minute; retry in {retry_after_secs} s"
            ))),
        }
    }

    /// Deletes the claim request counters of windows that ended; returns
    /// how many.
    pub async fn forget_claim_windows(&self) -> Result<u64, FlowError> {
        Ok(self
            .store()
            .forget_claim_windows(idmint_registry::now())
            .await?)
    }
}
