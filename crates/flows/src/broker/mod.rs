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
    /// issuing, claim, and batch CAs whose key the maker kept), not outside
    /// trust anchors.
    pub async fn crl_issuers(&self) -> Result<Vec<String>, FlowError> {
        Ok(self
            .store()
            .list_cas()
            .await?
            .into_iter()
            .filter(|ca| ca.kind != CaKind::External && ca.key_ref.is_some())
            .map(|ca| ca.name)
            .collect())
    }
}
