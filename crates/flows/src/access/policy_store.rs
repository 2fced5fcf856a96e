//! AWS IoT policies as a registry resource: create, delete, attach and
//! detach (admin only, every change audited, documents checked by
//! [`super::policy`] before they are stored), and the policy subject of
//! one MQTT session — the documents attached to its certificate and the
//! values of the policy variables — that every decision is made against.

use idmint_registry::{CertificateId, Policy, RegistryError};

use super::policy::{evaluate, Decision, IotAction, PolicyDocument, PolicyVariables};
use super::{Action, Authorized};
use crate::{FlowError, Idmint};

/// What one session's requests are decided against.
#[derive(Clone, Debug, Default)]
pub struct PolicySubject {
    /// The documents attached to the session's certificate.
    pub policies: Vec<PolicyDocument>,
    /// The values of the policy variables.
    pub variables: PolicyVariables,
}

impl PolicySubject {
    /// The decision on `action` over `resource` (client id, topic or
    /// topic filter).
    pub fn decide(&self, action: IotAction, resource: &str) -> Decision {
        evaluate(&self.policies, action, resource, &self.variables)
    }

    /// Whether `action` on `resource` is allowed.
    pub fn allows(&self, action: IotAction, resource: &str) -> bool {
        self.decide(action, resource).allowed()
    }
}

fn manage(who: &Authorized) -> Result<(), FlowError> {
    if who.action() != Action::ManagePolicies {
        return Err(FlowError::Internal(
            "internal: a policy change needs a ManagePolicies authorization".into(),
        ));
    }
    Ok(())
}

fn not_found(name: &str) -> FlowError {
    RegistryError::NotFound {
        kind: "policy",
        name: name.to_string(),
    }
    .into()
}

/// What a session knows of its certificate: enough to build its policy
/// variables without reading the certificate again.
#[derive(Clone, Copy, Debug)]
pub struct PolicyHolder<'a> {
    /// The certificate id.
    pub certificate_id: &'a str,
    /// The thing it is attached to (things are never deleted, so this is
    /// `${iot:Connection.Thing.ThingName}`).
    pub thing: Option<&'a str>,
    /// Its subject's common name.
    pub common_name: Option<&'a str>,
}

/// The subject common name of a certificate (DER), if it has one.
pub fn common_name_of(der: &[u8]) -> Option<String> {
    idmint_pki::CertificateInfo::from_der(der)
        .ok()
        .and_then(|info| info.subject_cn)
}

impl Idmint {
    /// Creates policy `name` from `document`, which must parse.
    pub async fn create_policy(
        &self,
        who: &Authorized,
        name: &str,
        document: &str,
    ) -> Result<Policy, FlowError> {
        manage(who)?;
        PolicyDocument::parse(document)?;
        let mut tx = self.store().begin(who.actor()).await?;
        tx.insert_policy(name, document).await?;
        tx.commit().await?;
        self.policy(name).await
    }

    /// Deletes a policy attached to no certificate.
    pub async fn delete_policy(&self, who: &Authorized, name: &str) -> Result<(), FlowError> {
        manage(who)?;
        let mut tx = self.store().begin(who.actor()).await?;
        tx.delete_policy(name).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Attaches policy `name` to a registered certificate.
    pub async fn attach_policy(
        &self,
        who: &Authorized,
        name: &str,
        certificate_id: &str,
    ) -> Result<(), FlowError> {
        manage(who)?;
        let mut tx = self.store().begin(who.actor()).await?;
        tx.attach_policy(certificate_id, name, None).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Detaches policy `name` from a certificate.
    pub async fn detach_policy(
        &self,
        who: &Authorized,
        name: &str,
        certificate_id: &str,
    ) -> Result<(), FlowError> {
        manage(who)?;
        let mut tx = self.store().begin(who.actor()).await?;
        tx.detach_policy(certificate_id, name).await?;
        tx.commit().await?;
        Ok(())
    }

    /// A policy by name.
    pub async fn policy(&self, name: &str) -> Result<Policy, FlowError> {
        self.store()
            .policy(name)
            .await?
            .ok_or_else(|| not_found(name))
    }

    /// Every policy.
    pub async fn list_policies(&self) -> Result<Vec<Policy>, FlowError> {
        Ok(self.store().list_policies().await?)
    }

    /// The policy subject of a session of `certificate_id` that connected
    /// as `client_id`: its attached documents and its thing's variables.
    /// A stored document that no longer parses grants nothing (logged).
    pub async fn policy_subject(
        &self,
        certificate_id: &CertificateId,
        client_id: &str,
    ) -> Result<PolicySubject, FlowError> {
        let certificate = self.store().require_certificate(certificate_id).await?;
        let common_name = common_name_of(&certificate.der);
        let holder = PolicyHolder {
            certificate_id,
            thing: certificate.thing.as_deref(),
            common_name: common_name.as_deref(),
        };
        self.policy_subject_of(&holder, client_id).await
    }

    /// The policy subject of a session whose certificate the caller has
    /// just read (at CONNECT): the certificate is not read again, and the
    /// thing only when a document names its type or attributes.
    pub async fn policy_subject_of(
        &self,
        holder: &PolicyHolder<'_>,
        client_id: &str,
    ) -> Result<PolicySubject, FlowError> {
        let store = self.store();
        let mut policies = Vec::new();
        for (name, document) in store
            .certificate_policy_documents(holder.certificate_id)
            .await?
        {
            match document.as_deref().map(PolicyDocument::parse) {
                Some(Ok(doc)) => policies.push(doc),
                Some(Err(e)) => {
                    tracing::warn!(policy = %name, "policy grants nothing: {e}")
                }
                None => {
                    tracing::warn!(policy = %name, "policy has no document (create it with idmint policy create); it grants nothing")
                }
            }
        }
        let thing = match holder.thing {
            Some(name) if policies.iter().any(PolicyDocument::names_thing_record) => {
                store.thing(name).await?
            }
            _ => None,
        };
        let variables = PolicyVariables {
            client_id: client_id.to_string(),
            thing_name: holder.thing.map(str::to_string),
            thing_type: thing.as_ref().and_then(|t| t.thing_type.clone()),
            attributes: thing.map(|t| t.attributes).unwrap_or_default(),
            common_name: holder.common_name.map(str::to_string),
        };
        Ok(PolicySubject {
            policies,
            variables,
        })
    }

    /// Whether a session's certificate is still in force: registered,
    /// ACTIVE and within its validity. Sessions ask on every fleet
    /// operation and on their re-check timer.
    pub async fn certificate_in_force(
        &self,
        certificate_id: &CertificateId,
    ) -> Result<bool, FlowError> {
        Ok(self
            .store()
            .certificate(certificate_id)
            .await?
            .is_some_and(|c| in_force(&c)))
    }
}

/// Whether `certificate` is ACTIVE and within its validity now.
pub(crate) fn in_force(certificate: &idmint_registry::Certificate) -> bool {
    certificate
        .standing()
        .in_force_at(time::OffsetDateTime::now_utc())
}
