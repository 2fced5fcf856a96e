//! The three fleet provisioning operations, as AWS IoT defines them:
//! CreateKeysAndCertificate and CreateCertificateFromCsr issue a
//! PENDING_ACTIVATION certificate and a single-use ownership token;
//! RegisterThing spends the token, runs the pre-provisioning hook, renders
//! the template and, in one transaction, activates the certificate, creates
//! or updates the thing, its groups and policies.

use std::collections::BTreeMap;

use base64::Engine;
use idmint_pki::{CertificateInfo, Csr, DeviceKey, PublicKey, SubjectValues};
use idmint_registry::{
    now, AuditEvent, CertificateId, CertificateStatus, NewThing, OwnershipToken, ProvisionedVia,
    RegistryError, TemplateKind, ThingName,
};
use idmint_template::{
    CertificateStatus as TemplateStatus, OverrideSetting, Provisioning, Template,
};
use zeroize::Zeroizing;

use super::hook::{template_arn, HookRequest};
use super::Rejection;
use idmint_flows::issue::{certificate_record, IssueOptions};
use idmint_flows::registrar::Registration;
use idmint_flows::tokens::token_hash;

/// The claim certificate a request arrived with, as the MQTT edge knows it.
#[derive(Clone, Debug)]
pub struct ClaimSession {
    /// The claim certificate's id.
    pub certificate_id: CertificateId,
    /// Templates it may use.
    pub templates: Vec<String>,
    /// The MQTT client id.
    pub client_id: String,
}

/// A new certificate waiting for RegisterThing.
pub struct CreatedCertificate {
    /// Its id (hex SHA-256 of the DER).
    pub certificate_id: String,
    /// Certificate PEM.
    pub certificate_pem: String,
    /// The private key (CreateKeysAndCertificate only), PKCS#8 PEM.
    pub private_key: Option<Zeroizing<String>>,
    /// The single-use certificate ownership token.
    pub ownership_token: Zeroizing<String>,
}

/// What RegisterThing answers.
#[derive(Clone, Debug, PartialEq)]
pub struct Registered {
    /// The thing the certificate now belongs to.
    pub thing_name: String,
    /// The template's evaluated `DeviceConfiguration`.
    pub device_configuration: serde_json::Map<String, serde_json::Value>,
}

/// The name of the thing a rendered template creates; a template that
/// creates none cannot provision (`InvalidTemplate`).
pub(crate) fn thing_name(
    provisioning: &Provisioning,
    template_name: &str,
) -> Result<String, Rejection> {
    provisioning
        .thing
        .as_ref()
        .map(|t| t.name.clone())
        .ok_or_else(|| {
            Rejection::invalid(
                "InvalidTemplate",
                format!("template {template_name} creates no AWS::IoT::Thing"),
            )
        })
}

/// The template parameters a device (or its pre-provisioning hook) may
/// set: all it sent but the `AWS::` pseudo parameters, which only its
/// certificate sets.
pub fn device_parameters(parameters: BTreeMap<String, String>) -> BTreeMap<String, String> {
    parameters
        .into_iter()
        .filter(|(k, _)| !k.starts_with("AWS::"))
        .collect()
}

/// Renders a fleet template for a device: `params` (from
/// [`device_parameters`], after any hook) with the parameters of its
/// certificate `info`; returns what to provision and the thing's name.
/// Parameters the template cannot use are `InvalidParameters`, a template
/// without a thing `InvalidTemplate`.
pub fn render_for_device(
    template: &Template,
    template_name: &str,
    mut params: BTreeMap<String, String>,
    info: &CertificateInfo,
) -> Result<(Provisioning, String), Rejection> {
    params.extend(certificate_parameters(info));
    let provisioning = template
        .render(&params)
        .map_err(|e| Rejection::invalid("InvalidParameters", e.to_string()))?;
    let thing_name = thing_name(&provisioning, template_name)?;
    Ok((provisioning, thing_name))
}

/// The subject parameters a template may use, from a certificate.
pub(crate) fn certificate_parameters(info: &CertificateInfo) -> BTreeMap<String, String> {
    let mut params: BTreeMap<String, String> = info
        .subject_fields
        .iter()
        .map(|(k, v)| (format!("AWS::IoT::Certificate::{k}"), v.clone()))
        .collect();
    params.insert("AWS::IoT::Certificate::Id".into(), info.id.to_string());
    params
}

impl crate::Fleet<'_> {
    /// CreateKeysAndCertificate: a key made here, returned once.
    pub async fn fleet_create_keys(
        &self,
        claim: &ClaimSession,
    ) -> Result<CreatedCertificate, Rejection> {
        let key =
            DeviceKey::generate(self.config().key_type).map_err(|e| Rejection::internal(&e))?;
        let public = key.public_key().map_err(|e| Rejection::internal(&e))?;
        let mut created = self.fleet_issue(claim, &public, None).await?;
        created.private_key = Some(key.pkcs8_pem());
        Ok(created)
    }

    /// CreateCertificateFromCsr: the key stays on the device (the edge has
    /// parsed the request and checked its signature).
    pub async fn fleet_create_from_csr(
        &self,
        claim: &ClaimSession,
        csr: &Csr,
    ) -> Result<CreatedCertificate, Rejection> {
        self.fleet_issue(claim, csr.public_key(), csr.common_name())
            .await
    }

    async fn fleet_issue(
        &self,
        claim: &ClaimSession,
        key: &PublicKey,
        common_name: Option<&str>,
    ) -> Result<CreatedCertificate, Rejection> {
        let (ca_name, ca, profile) = self
            .issuer(&IssueOptions::default())
            .await
            .map_err(|e| Rejection::internal(&e))?;
        let subject = common_name.unwrap_or("idmint fleet device");
        let values = SubjectValues::for_thing(subject).with("org", self.config().org.as_str());
        let certificate = ca
            .issue(key, &profile, &values)
            .map_err(|e| Rejection::from(idmint_flows::FlowError::Pki(e)))?;
        let token = Zeroizing::new(
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(idmint_flows::random_bytes(48)?),
        );
        let lifetime = i64::try_from(self.config().fleet.token_lifetime_secs).unwrap_or(3600);
        self.registrar()
            .register(Registration {
                actor: format!("cert:{}", claim.certificate_id),
                thing: None,
                attach_existing: false,
                bootstrap: None,
                certificate: certificate_record(
                    &certificate,
                    &ca_name,
                    None,
                    CertificateStatus::PendingActivation,
                    None,
                ),
                batch: None,
                claim: Some(claim.certificate_id.clone()),
                ownership_token: Some((
                    token_hash(&token),
                    OwnershipToken {
                        certificate_id: certificate.info.id.clone(),
                        claim_certificate_id: claim.certificate_id.to_string(),
                        expires: now() + lifetime,
                    },
                )),
                tpm: None,
            })
            .await?;
        Ok(CreatedCertificate {
            certificate_id: certificate.info.id.to_string(),
            certificate_pem: certificate.pem(),
            private_key: None,
            ownership_token: token,
        })
    }

    /// RegisterThing: spends the ownership token and provisions the device
    /// from the template. All or nothing.
    pub async fn fleet_register_thing(
        &self,
        claim: &ClaimSession,
        template_name: &str,
        ownership_token: &str,
        parameters: BTreeMap<String, String>,
    ) -> Result<Registered, Rejection> {
        if !claim.templates.iter().any(|t| t == template_name) {
            return Err(Rejection::forbidden(
                "ACCESS_DENIED",
                format!("this claim certificate may not use template {template_name}"),
            ));
        }
        let stored = self
            .store()
            .template(template_name)
            .await?
            .filter(|t| t.kind == TemplateKind::Fleet)
            .ok_or_else(|| Rejection::not_found(format!("no fleet template {template_name}")))?;
        if !stored.enabled {
            return Err(Rejection::forbidden(
                "TemplateDisabled",
                format!("template {template_name} is disabled"),
            ));
        }
        let template = super::templates::check_template(template_name, stored.kind, &stored.body)?;
        if ownership_token.is_empty() {
            return Err(Rejection::invalid(
                "InvalidCertificateOwnershipToken",
                "certificateOwnershipToken is missing or empty",
            ));
        }
        let hash = token_hash(ownership_token);
        // A first look, so a bad token or a claim no longer in force costs
        // no hook call; the transaction below decides on the token.
        let usable = self
            .store()
            .usable_ownership_token(&hash, &claim.certificate_id)
            .await?;
        idmint_flows::access::ensure_claim_in_force(usable.claim.as_ref())?;
        let certificate_id = usable.token.certificate_id;
        let info = CertificateInfo::from_der(&usable.certificate_der)
            .map_err(|e| Rejection::internal(&e))?;
        let mut params = device_parameters(parameters);
        if let Some(hook) = &stored.hook {
            let pem = idmint_pki::to_pem("CERTIFICATE", &usable.certificate_der);
            let overrides = self
                .run_hook(
                    hook,
                    stored.hook_timeout_ms,
                    template_name,
                    &HookRequest {
                        claim_certificate_id: &claim.certificate_id,
                        certificate_id: &certificate_id,
                        certificate_pem: &pem,
                        template_arn: template_arn(template_name),
                        client_id: &claim.client_id,
                        parameters: &params,
                    },
                )
                .await?;
            params.extend(device_parameters(overrides));
        }
        let (provisioning, thing_name) =
            render_for_device(&template, template_name, params, &info)?;
        let actor = format!("cert:{}", claim.certificate_id);
        let mut tx = self.store().begin(&actor).await?;
        let token = tx.use_ownership_token(&hash, &claim.certificate_id).await?;
        let existing = self
            .apply_provisioning(
                &mut tx,
                &token.certificate_id,
                template_name,
                &provisioning,
                ProvisionedVia::Fleet {
                    claim: claim.certificate_id.to_string(),
                    client_id: claim.client_id.clone(),
                },
            )
            .await?;
        tx.audit(
            &token.certificate_id,
            AuditEvent::FleetRegister {
                template: template_name.to_string(),
                thing: thing_name.clone(),
                existing_thing: existing,
                claim: claim.certificate_id.to_string(),
                client_id: claim.client_id.clone(),
            },
        );
        tx.commit().await?;
        Ok(Registered {
            thing_name,
            device_configuration: provisioning.device_configuration,
        })
    }

    /// Applies a rendered template to a certificate inside `tx`: the thing
    /// (with the template's override settings when it exists), its groups,
    /// the certificate's status and thing, and its policies. Returns whether
    /// the thing already existed.
    ///
    /// As AWS IoT does, a certificate provisioned for an existing thing is
    /// attached to it (a re-provisioned device keeps its thing). That is
    /// also what a holder of a leaked claim would do to take over a thing,
    /// so it is recorded apart, as `thing.certificate_attached` on the thing
    /// with `existing: true`, the certificate, the template and `via`
    /// (which claim or CA asked); the template's pre-provisioning hook or
    /// allow list is what decides whether it may happen.
    pub(crate) async fn apply_provisioning(
        &self,
        tx: &mut idmint_registry::WriteTx,
        certificate_id: &str,
        template_name: &str,
        provisioning: &Provisioning,
        via: ProvisionedVia,
    ) -> Result<bool, Rejection> {
        let Some(spec) = &provisioning.thing else {
            return Err(Rejection::invalid(
                "InvalidTemplate",
                "the template creates no thing",
            ));
        };
        let existing = tx.thing(&spec.name).await?;
        let new_thing = existing.is_none();
        let setting = |property: &str| {
            spec.overrides
                .get(property)
                .copied()
                .unwrap_or(OverrideSetting::DoNothing)
        };
        let mut thing = NewThing::named(ThingName::parse(&spec.name).map_err(RegistryError::from)?);
        thing.thing_type = spec.thing_type.clone();
        thing.attributes = spec.attributes.clone();
        let mut merge_groups = false;
        let mut set_groups = true;
        if let Some(old) = existing {
            for property in ["AttributePayload", "ThingTypeName", "ThingGroups"] {
                if setting(property) == OverrideSetting::Fail {
                    return Err(Rejection::invalid(
                        "ResourceConflict",
                        format!(
                            "thing {} exists and the template's {property} override is FAIL",
                            spec.name
                        ),
                    ));
                }
            }
            thing.device_id = old.device_id.clone();
            thing.batch = old.batch.clone();
            thing.attributes = match setting("AttributePayload") {
                OverrideSetting::Replace => spec.attributes.clone(),
                OverrideSetting::Merge => {
                    let mut merged = old.attributes.clone();
                    merged.extend(spec.attributes.clone());
                    merged
                }
                _ => old.attributes.clone(),
            };
            if setting("ThingTypeName") != OverrideSetting::Replace {
                thing.thing_type = old.thing_type.clone();
            }
            match setting("ThingGroups") {
                OverrideSetting::Replace => {}
                OverrideSetting::Merge => merge_groups = true,
                _ => set_groups = false,
            }
        }
        tx.upsert_thing(&thing).await?;
        // Groups to add, or (replacing) an existing thing's groups to clear;
        // a new thing without groups has nothing to write.
        if set_groups && (!spec.thing_groups.is_empty() || (!merge_groups && !new_thing)) {
            tx.set_thing_groups(&spec.name, &spec.thing_groups, merge_groups)
                .await?;
        }
        let status = match provisioning.certificate.as_ref().map(|c| c.status) {
            Some(TemplateStatus::Inactive) => CertificateStatus::Inactive,
            _ => CertificateStatus::Active,
        };
        // Fails, rolling everything back, if the certificate is no longer
        // pending (e.g. revoked meanwhile).
        tx.activate_pending(certificate_id, status, &spec.name)
            .await
            .map_err(|e| match e {
                RegistryError::InvalidTransition { .. } => Rejection::invalid(
                    "InvalidCertificateOwnershipToken",
                    "the token's certificate is no longer PENDING_ACTIVATION",
                ),
                other => other.into(),
            })?;
        for policy in &provisioning.policies {
            // An inline document must be one the endpoint can enforce; a
            // named policy must exist (the registry refuses it otherwise).
            if let Some(doc) = &policy.document {
                idmint_flows::access::policy::PolicyDocument::parse(doc)
                    .map_err(idmint_flows::FlowError::from)?;
            }
            let name = match (&policy.name, &policy.document) {
                (Some(name), _) => name.clone(),
                (None, Some(doc)) => {
                    format!("policy-{}", &idmint_pki::sha256_hex(doc.as_bytes())[..16])
                }
                (None, None) => continue,
            };
            tx.attach_policy_to_activated(certificate_id, &name, policy.document.as_deref())
                .await?;
        }
        if !new_thing {
            tx.audit(
                &spec.name,
                AuditEvent::ThingCertificateAttached {
                    thing: spec.name.clone(),
                    certificate: certificate_id.to_string(),
                    template: template_name.to_string(),
                    existing: true,
                    via,
                },
            );
        }
        Ok(!new_thing)
    }

    /// Retires ownership tokens that expired unused: each token is marked
    /// spent and its certificate, issued but never registered, is REVOKED
    /// (`cessationOfOperation`) and kept, so the CRL lists it and OCSP
    /// answers revoked. Safe to run on several servers at once. Returns how
    /// many certificates were revoked.
    pub async fn sweep_ownership_tokens(&self) -> Result<usize, RegistryError> {
        let due = self.store().expired_ownership_tokens(now(), 500).await?;
        let mut revoked = 0;
        for (hash, token) in &due {
            let mut tx = self.store().begin("server:fleet-sweep").await?;
            if tx
                .expire_ownership_token(hash, &token.certificate_id)
                .await?
            {
                revoked += 1;
            }
            tx.commit().await?;
        }
        Ok(revoked)
    }
}
