//! Managing our CAs after `init`: more issuing CAs (one per product line or
//! factory is normal).

use idmint_pki::{CaBuilder, KeyType};
use idmint_registry::{validate_name, Ca, CaKind};

use crate::init::new_ca;
use crate::{FlowError, Idmint};

/// A request for a new issuing CA.
pub struct NewIssuingCa<'a> {
    /// Its registry name.
    pub name: &'a str,
    /// The CA that signs it (a root or another CA we hold).
    pub parent: &'a str,
    /// Validity in days.
    pub valid_days: u32,
    /// Key type (the configured one when `None`).
    pub key_type: Option<KeyType>,
    /// Subject common name (derived from the name when `None`).
    pub common_name: Option<&'a str>,
}

impl Idmint {
    /// Creates an issuing CA under `parent`.
    pub async fn create_issuing_ca(
        &self,
        actor: &str,
        req: &NewIssuingCa<'_>,
    ) -> Result<Ca, FlowError> {
        self.create_ca(actor, req, CaKind::Issuing).await
    }

    /// Creates a CA of `kind` (issuing or claim) under `parent`.
    pub(crate) async fn create_ca(
        &self,
        actor: &str,
        req: &NewIssuingCa<'_>,
        kind: CaKind,
    ) -> Result<Ca, FlowError> {
        validate_name("CA name", req.name)?;
        if self.store().ca(req.name).await?.is_some() {
            return Err(idmint_registry::RegistryError::AlreadyExists {
                kind: "CA",
                name: req.name.to_string(),
            }
            .into());
        }
        let parent = self.signing_ca(req.parent).await?;
        let org = self.config().org.clone();
        let cn = req
            .common_name
            .map(str::to_string)
            .unwrap_or_else(|| format!("{org} {} CA", req.name));
        let ca = CaBuilder::issuing(&cn, req.key_type.unwrap_or(self.config().key_type), &parent)
            .organization(&org)
            .valid_days(req.valid_days)
            .build()?;
        let passphrase = self.passphrase()?;
        let mut tx = self.store().begin(actor).await?;
        tx.insert_ca(&new_ca(req.name, kind, Some(req.parent), &ca, &passphrase)?)
            .await?;
        tx.commit().await?;
        Ok(self.store().require_ca(req.name).await?)
    }
}
