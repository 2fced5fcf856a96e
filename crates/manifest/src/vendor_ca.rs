//! Registering an outside (vendor) CA as a trust anchor for device
//! certificates, with the vendor's manifest log-signer certificate.

use idmint_pki::CertificateInfo;
use idmint_registry::{validate_name, Ca, CaKind, NewCa, RegistryError};

use super::LogSigner;
use idmint_flows::FlowError;

/// A request to register an outside CA.
#[derive(Clone, Debug)]
pub struct RegisterCa {
    /// Its registry name.
    pub name: String,
    /// The CA certificate, PEM or DER.
    pub certificate: Vec<u8>,
    /// The vendor's manifest log-signer certificate, PEM or DER.
    pub signer: Option<Vec<u8>>,
}

fn parse_certificate(what: &str, bytes: &[u8]) -> Result<(CertificateInfo, Vec<u8>), FlowError> {
    let trimmed = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .map(|i| &bytes[i..])
        .unwrap_or(&[]);
    let parsed = if trimmed.starts_with(b"-----BEGIN") {
        CertificateInfo::from_pem(trimmed)
    } else {
        CertificateInfo::from_der(bytes).map(|i| (i, bytes.to_vec()))
    };
    parsed.map_err(|e| FlowError::Invalid(format!("{what}: {e}")))
}

impl crate::Manifests<'_> {
    /// Registers an outside CA (kind `external`: it signs nothing of ours,
    /// it anchors device certificates made elsewhere).
    pub async fn register_external_ca(
        &self,
        actor: &str,
        req: &RegisterCa,
    ) -> Result<Ca, FlowError> {
        validate_name("CA name", &req.name)?;
        if self.store().ca(&req.name).await?.is_some() {
            return Err(RegistryError::AlreadyExists {
                kind: "CA",
                name: req.name.clone(),
            }
            .into());
        }
        let (info, der) = parse_certificate("CA certificate", &req.certificate)?;
        if !info.is_ca {
            return Err(FlowError::Invalid(format!(
                "{} is not a CA certificate (basicConstraints CA is not set)",
                info.subject
            )));
        }
        let signer_der = match &req.signer {
            Some(bytes) => {
                let (_, signer_der) = parse_certificate("signer certificate", bytes)?;
                LogSigner::from_certificate_der(&signer_der)?;
                Some(signer_der)
            }
            None => None,
        };
        let mut tx = self.store().begin(actor).await?;
        tx.insert_ca(&NewCa {
            name: req.name.clone(),
            kind: CaKind::External,
            parent: None,
            certificate_der: der,
            id: info.id.clone(),
            subject: info.subject.clone(),
            key_type: info.key_type.map(|k| k.to_string()),
            not_before: info.not_before.unix_timestamp(),
            not_after: info.not_after.unix_timestamp(),
            key_ref: None,
            signer_der,
        })
        .await?;
        tx.commit().await?;
        Ok(self.store().require_ca(&req.name).await?)
    }
}

impl crate::Manifests<'_> {
    /// Lets certificates chaining to an outside CA bootstrap EST enrollment
    /// (once each), or stops them; `batch`, if given, is the one batch they
    /// enroll into. Off by default: registering a vendor for manifest
    /// import does not make its chips enrollment credentials.
    pub async fn set_est_bootstrap(
        &self,
        actor: &str,
        name: &str,
        enabled: bool,
        batch: Option<&str>,
    ) -> Result<Ca, FlowError> {
        let ca = self.store().require_ca(name).await?;
        if ca.kind != CaKind::External {
            return Err(FlowError::Invalid(format!(
                "CA {name:?} is one of ours ({}): only a registered outside CA can bootstrap EST enrollment",
                ca.kind.as_str()
            )));
        }
        if let Some(b) = batch {
            self.store().require_batch(b).await?;
        }
        let mut tx = self.store().begin(actor).await?;
        tx.set_ca_est_bootstrap(name, enabled, batch.filter(|_| enabled))
            .await?;
        tx.commit().await?;
        Ok(self.store().require_ca(name).await?)
    }
}
