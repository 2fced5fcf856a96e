//! Granting roles: `idmint grant add|list|remove` and the REST
//! equivalents (admin only), every change audited; and the one-time
//! conversion of old `role` thing attributes into grants.

use idmint_registry::{CertificateId, ConvertedRole, Grant, Role, Scope};

use super::{Action, Authorized};
use crate::{FlowError, Idmint};

/// The role attributes converted into grants when a registry was first
/// opened by this version (empty afterwards).
pub type ConvertedRoles = Vec<ConvertedRole>;

impl Idmint {
    /// Grants `role` in `scope` to the certificate `certificate_id`, which
    /// must be registered. `who` must hold [`Action::ManageGrants`].
    pub async fn add_grant(
        &self,
        who: &Authorized,
        certificate_id: &CertificateId,
        role: Role,
        scope: &Scope,
    ) -> Result<Grant, FlowError> {
        manage(who)?;
        if role == Role::Enroll {
            return Err(FlowError::Invalid(
                "the enroll role is for tokens (idmint token create --role enroll --batch B), not certificates".into(),
            ));
        }
        let mut tx = self.store().begin(who.actor()).await?;
        if tx.certificate(certificate_id).await?.is_none() {
            return Err(idmint_registry::RegistryError::NotFound {
                kind: "certificate",
                name: certificate_id.to_string(),
            }
            .into());
        }
        let principal = format!("cert:{certificate_id}");
        tx.insert_grant(&principal, role, scope).await?;
        let grant = tx
            .grants_of(&principal)
            .await?
            .into_iter()
            .find(|g| g.role == role && &g.scope == scope);
        tx.commit().await?;
        grant.ok_or_else(|| FlowError::Internal("the grant vanished".into()))
    }

    /// Removes a grant.
    pub async fn remove_grant(
        &self,
        who: &Authorized,
        certificate_id: &str,
        role: Role,
        scope: &Scope,
    ) -> Result<(), FlowError> {
        manage(who)?;
        let mut tx = self.store().begin(who.actor()).await?;
        tx.delete_grant(&format!("cert:{certificate_id}"), role, scope)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Every grant, or those of one certificate.
    pub async fn list_grants(&self, certificate_id: Option<&str>) -> Result<Vec<Grant>, FlowError> {
        Ok(match certificate_id {
            Some(id) => self.store().grants_of(&format!("cert:{id}")).await?,
            None => self.store().list_grants().await?,
        })
    }

    /// Converts old `role` thing attributes into grants, once per registry
    /// (see [`idmint_registry::WriteTx::convert_role_attributes`]).
    pub async fn convert_role_attributes(&self) -> Result<ConvertedRoles, FlowError> {
        if self.store().role_attributes_converted().await? {
            return Ok(Vec::new());
        }
        let mut tx = self.store().begin("idmint:upgrade").await?;
        let converted = tx.convert_role_attributes().await?;
        tx.commit().await?;
        for c in &converted {
            tracing::warn!(
                thing = %c.thing,
                certificate = %c.certificate,
                role = %c.role,
                "the role attribute of thing {} no longer confers access: converted into a grant of {} to certificate {} (idmint grant list)",
                c.thing, c.role, c.certificate
            );
        }
        Ok(converted)
    }
}

fn manage(who: &Authorized) -> Result<(), FlowError> {
    if who.action() != Action::ManageGrants {
        return Err(FlowError::Internal(
            "internal: a grant change needs a ManageGrants authorization".into(),
        ));
    }
    Ok(())
}
