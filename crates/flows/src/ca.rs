//! Managing our CAs after `init`: more issuing CAs (one per product line or
//! factory is normal).

use idmint_pki::{CaBuilder, KeyType, Pkcs11Key, Pkcs11Uri};
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
    /// Generate the CA's key (P-256) in a PKCS#11 token at this `pkcs11:`
    /// URI instead of in software; the registry then keeps only the URI.
    pub pkcs11_key: Option<&'a str>,
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
    pub async fn create_ca(
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
        let pkcs11_uri = req.pkcs11_key.map(Pkcs11Uri::parse).transpose()?;
        let key_type = match &pkcs11_uri {
            None => req.key_type.unwrap_or(self.config().key_type),
            Some(_) if req.key_type.is_some_and(|k| k != KeyType::P256) => {
                return Err(FlowError::Invalid(
                    "a CA key generated in a PKCS#11 token is P-256".into(),
                ))
            }
            Some(_) => KeyType::P256,
        };
        let builder = CaBuilder::issuing(&cn, key_type, &parent)
            .organization(&org)
            .valid_days(req.valid_days);
        let record = match pkcs11_uri {
            None => new_ca(
                req.name,
                kind,
                Some(req.parent),
                &builder.build()?,
                &self.passphrase()?,
            )?,
            Some(uri) => {
                let config = self.pkcs11().ok_or_else(|| {
                    FlowError::Pkcs11NotConfigured(format!(
                        "the CA key is to be generated in a PKCS#11 token ({uri}): set IDMINT_PKCS11_MODULE and IDMINT_PKCS11_PIN"
                    ))
                })?;
                let signer = Pkcs11Key::generate(config, &uri)?.into_signer()?;
                let ca = builder.signer(signer).build()?;
                // No software key to encrypt: the registry keeps the URI.
                let mut record = new_ca(req.name, kind, Some(req.parent), &ca, "")?;
                record.key_ref = Some(uri.to_string());
                record
            }
        };
        let mut tx = self.store().begin(actor).await?;
        tx.insert_ca(&record).await?;
        tx.commit().await?;
        Ok(self.store().require_ca(req.name).await?)
    }
}
