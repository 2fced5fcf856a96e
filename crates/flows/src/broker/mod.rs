//! Outside brokers (mosquitto, EMQX, ...) that trust idmint: the CRL
//! directory they re-read, the mosquitto ACL compiled from attached
//! policies, and the decisions their HTTP authorizers ask for.

pub mod authorize;
pub mod crl_dir;
pub mod mosquitto;

use idmint_registry::CaKind;

use crate::{FlowError, Idmint};

impl Idmint {
    /// The CAs idmint can sign a CRL for: its own whose key it holds (root,
    /// issuing, claim, and batch CAs whose key the maker kept) and offline
    /// batch CAs with a CRL signer, not outside trust anchors.
    pub async fn crl_issuers(&self) -> Result<Vec<String>, FlowError> {
        let cas = self
            .store()
            .list_cas()
            .await?
            .into_iter()
            .filter(|ca| !ca.kind.is_outside())
            .collect::<Vec<_>>();
        let mut names = Vec::with_capacity(cas.len());
        for ca in cas {
            // An offline batch CA's CRL is signed by the CRL signer it
            // signed at authorization, when its batch has one.
            if ca.key_ref.is_some()
                || (ca.kind == CaKind::Batch
                    && self.store().revocation_signers(&ca.name).await?.is_some())
            {
                names.push(ca.name);
            }
        }
        Ok(names)
    }
}
