//! Who may do what: one place turns a credential (API, station or enroll
//! token, registered device certificate, claim certificate, EST bootstrap
//! certificate, or the local operator holding the data directory) into a
//! typed [`Principal`], once, for HTTP, EST and MQTT alike, and decides
//! principal × action × scope. Edges parse their input, ask here, and call a
//! flow with the proof they get back; they never check roles by hand.
//!
//! Roles come from tokens (their role and batch) and from grants
//! (`idmint grant add`); a thing's attributes never confer anything.

mod credential;
mod grants;
pub mod policy;
mod policy_store;

use idmint_registry::{Certificate, CertificateId, Grant, Role, Scope, Thing};

pub use credential::{ClientCertificate, Credentials};
pub use grants::ConvertedRoles;
pub(crate) use policy_store::in_force;
pub use policy_store::{common_name_of, PolicyHolder, PolicySubject};

/// An authenticated caller.
#[derive(Clone, Debug)]
pub enum Principal {
    /// Whoever holds the data directory and the CA passphrase: the CLI.
    Local {
        /// Who the audit records name, e.g. `cli:alice`.
        actor: String,
    },
    /// An API, station or enroll token.
    Token {
        /// Its name.
        name: String,
        /// Its role.
        role: Role,
        /// The batch it is limited to.
        batch: Option<String>,
    },
    /// A registered, ACTIVE certificate of ours, with the grants it holds.
    Device {
        /// The certificate.
        certificate: Box<Certificate>,
        /// Its grants (empty for an ordinary device).
        grants: Vec<Grant>,
    },
    /// A claim certificate (fleet provisioning): only the provisioning
    /// topics of its templates.
    Claim {
        /// The claim certificate's id.
        certificate_id: CertificateId,
        /// The templates it may use.
        templates: Vec<String>,
        /// Provisioning requests per minute (0: no limit).
        rate_per_minute: u32,
    },
    /// A certificate chaining to an outside CA registered with
    /// `--est-bootstrap`: one EST enrollment, into that CA's batch.
    Bootstrap {
        /// SHA-256 of its DER.
        id: CertificateId,
        /// The outside CA's name.
        ca: String,
        /// The thing its enrollment creates: the device id a manifest
        /// registered for it, else its subject CN.
        thing: Option<String>,
        /// The one batch it may enroll into, if the CA names one.
        batch: Option<String>,
    },
}

/// Something a principal asks to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Action {
    /// Read certificates, things, CAs, batches, the audit report.
    Read,
    /// Revoke, activate or deactivate a certificate.
    ChangeCertificateStatus,
    /// Issue a certificate against a batch for a station's device (REST).
    IssueInBatch,
    /// Report a station's device as provisioned or spoiled.
    ReportStation,
    /// Enroll a new device over EST.
    Enroll,
    /// Add or remove grants.
    ManageGrants,
    /// Create claim certificates (provisioning by trusted user).
    CreateClaim,
    /// Create, delete, attach and detach AWS IoT policies.
    ManagePolicies,
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Action::Read => "read",
            Action::ChangeCertificateStatus => "change certificate states",
            Action::IssueInBatch => "issue certificates in a batch",
            Action::ReportStation => "report station results",
            Action::Enroll => "enroll devices",
            Action::ManageGrants => "manage grants",
            Action::CreateClaim => "create claim certificates",
            Action::ManagePolicies => "manage policies",
        })
    }
}

/// What an action is about: each field set places the resource in that
/// scope; a grant or token matches when its scope is `*` or any of them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resource {
    /// The batch.
    pub batch: Option<String>,
    /// The CA.
    pub ca: Option<String>,
    /// The provisioning template.
    pub template: Option<String>,
    /// The thing.
    pub thing: Option<String>,
}

impl Resource {
    /// Anything at all (listings, the audit report): only `*` scopes match.
    pub fn everything() -> Resource {
        Resource::default()
    }

    /// One batch.
    pub fn batch(batch: &str) -> Resource {
        Resource {
            batch: Some(batch.to_string()),
            ..Resource::default()
        }
    }

    /// A certificate: its CA, batch and thing.
    pub fn certificate(cert: &Certificate) -> Resource {
        Resource {
            batch: cert.batch.as_ref().map(ToString::to_string),
            ca: Some(cert.ca.clone()),
            template: None,
            thing: cert.thing.clone(),
        }
    }

    fn within(&self, scope: &Scope) -> bool {
        match scope {
            Scope::All => true,
            Scope::Batch(b) => self.batch.as_deref() == Some(b),
            Scope::Ca(c) => self.ca.as_deref() == Some(c),
            Scope::Template(t) => self.template.as_deref() == Some(t),
            Scope::Thing(t) => self.thing.as_deref() == Some(t),
        }
    }
}

/// Why a principal may not do something.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AccessError {
    /// The credential was missing, unknown, revoked, expired or untrusted.
    #[error("{0}")]
    Unauthenticated(String),
    /// The principal is known but may not do this here.
    #[error("{who} may not {action}{where_}")]
    Forbidden {
        /// The principal, as the audit log names it.
        who: String,
        /// What it asked for.
        action: Action,
        /// Where, if it matters (", in batch b1").
        where_: String,
    },
    /// A request that would attach a new certificate to a thing the
    /// principal may not act on.
    #[error("thing {thing:?} already exists: {allowed}")]
    ThingExists {
        /// The existing thing.
        thing: String,
        /// What would be allowed instead.
        allowed: String,
    },
    /// A rule of the credential refuses the request (a bootstrap
    /// certificate enrolling twice, a label naming another batch).
    #[error("{0}")]
    Refused(String),
}

/// Proof that a principal may perform an action on a resource: only
/// [`Principal::authorize`] makes one.
#[derive(Clone, Debug)]
pub struct Authorized {
    actor: String,
    action: Action,
}

impl Authorized {
    /// Who the audit records name.
    pub fn actor(&self) -> &str {
        &self.actor
    }

    /// What was authorized.
    pub fn action(&self) -> Action {
        self.action
    }
}

/// Which existing things a new certificate may attach to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attach {
    /// Any (the local operator, an operator or admin).
    Any,
    /// Things of this batch (its station).
    InBatch(String),
    /// None: the thing must be new (enroll tokens, bootstrap certificates).
    NewOnly,
}

/// Proof that a principal may issue a certificate, and under which rules:
/// only [`Principal::authorize_issuance`] makes one, and every issuance
/// flow takes one.
#[derive(Clone, Debug)]
pub struct AuthorizedIssuance {
    actor: String,
    batch: Option<String>,
    attach: Attach,
    bootstrap: Option<CertificateId>,
}

impl AuthorizedIssuance {
    /// Who the audit records name.
    pub fn actor(&self) -> &str {
        &self.actor
    }

    /// The batch the issuance must count against, if the principal is
    /// limited to one.
    pub fn batch(&self) -> Option<&str> {
        self.batch.as_deref()
    }

    /// The bootstrap certificate this issuance spends, if any.
    pub(crate) fn bootstrap(&self) -> Option<&CertificateId> {
        self.bootstrap.as_ref()
    }

    /// Whether a new certificate may attach to `thing`, which exists.
    pub fn may_attach(&self, thing: &Thing) -> Result<(), AccessError> {
        let ok = match &self.attach {
            Attach::Any => true,
            Attach::InBatch(b) => thing.batch.as_deref() == Some(b.as_str()),
            Attach::NewOnly => false,
        };
        if ok {
            return Ok(());
        }
        let allowed = match &self.attach {
            Attach::InBatch(b) => format!(
                "it is not of batch {b}; this station may only certify new things or things of its batch"
            ),
            _ => "this credential may only create new things; an existing thing renews with simplereenroll using its current certificate, or an operator issues for it".to_string(),
        };
        Err(AccessError::ThingExists {
            thing: thing.name.clone(),
            allowed,
        })
    }
}

/// Proof that a registered ACTIVE certificate asks to renew itself: only
/// [`Principal::authorize_reenroll`] makes one.
#[derive(Clone, Debug)]
pub struct AuthorizedReenroll {
    certificate: Certificate,
    thing: String,
}

impl AuthorizedReenroll {
    /// The certificate that renews itself.
    pub fn certificate(&self) -> &Certificate {
        &self.certificate
    }

    /// The thing it is attached to.
    pub fn thing(&self) -> &str {
        &self.thing
    }
}

impl Principal {
    /// Who the audit records name: `token:NAME`, `cert:<id>` or the local
    /// operator's actor.
    pub fn actor(&self) -> String {
        match self {
            Principal::Local { actor } => actor.clone(),
            Principal::Token { name, .. } => format!("token:{name}"),
            Principal::Device { certificate, .. } => format!("cert:{}", certificate.id),
            Principal::Claim { certificate_id, .. } => format!("cert:{certificate_id}"),
            Principal::Bootstrap { id, .. } => format!("cert:{id}"),
        }
    }

    /// The roles this principal holds, each with its scope.
    fn roles(&self) -> Vec<(Role, Scope)> {
        match self {
            Principal::Local { .. } => vec![(Role::Admin, Scope::All)],
            Principal::Token { role, batch, .. } => {
                vec![(*role, batch.clone().map_or(Scope::All, Scope::Batch))]
            }
            Principal::Device { grants, .. } => {
                grants.iter().map(|g| (g.role, g.scope.clone())).collect()
            }
            Principal::Claim { .. } | Principal::Bootstrap { .. } => Vec::new(),
        }
    }

    /// Decides whether this principal may perform `action` on `resource`.
    pub fn authorize(
        &self,
        action: Action,
        resource: &Resource,
    ) -> Result<Authorized, AccessError> {
        let allowed = self
            .roles()
            .iter()
            .any(|(role, scope)| role_allows(*role, action) && resource.within(scope));
        if allowed {
            return Ok(Authorized {
                actor: self.actor(),
                action,
            });
        }
        Err(self.forbidden(action, resource))
    }

    /// Decides whether this principal may issue into `batch` (or outside
    /// any batch), and returns the rules the issuance must follow.
    pub fn authorize_issuance(
        &self,
        action: Action,
        batch: Option<&str>,
    ) -> Result<AuthorizedIssuance, AccessError> {
        let resource = Resource {
            batch: batch.map(str::to_string),
            ..Resource::default()
        };
        if let Principal::Bootstrap {
            id, batch: allowed, ..
        } = self
        {
            if action != Action::Enroll {
                return Err(self.forbidden(action, &resource));
            }
            if let Some(allowed) = allowed {
                if batch != Some(allowed.as_str()) {
                    return Err(AccessError::Refused(format!(
                        "this bootstrap certificate may only enroll into batch {allowed}"
                    )));
                }
            }
            return Ok(AuthorizedIssuance {
                actor: self.actor(),
                batch: batch.map(str::to_string),
                attach: Attach::NewOnly,
                bootstrap: Some(id.clone()),
            });
        }
        let roles = self.roles();
        let matching: Vec<Role> = roles
            .iter()
            .filter(|(role, scope)| role_allows(*role, action) && resource.within(scope))
            .map(|(role, _)| *role)
            .collect();
        if matching.is_empty() {
            return Err(self.forbidden(action, &resource));
        }
        // Enrollment into no batch at all is for admins only: anyone else
        // is limited to a batch's quota.
        if batch.is_none() && !matching.contains(&Role::Admin) {
            return Err(AccessError::Refused(
                "this credential is not scoped to a batch: enroll under a batch label (/.well-known/est/BATCH/simpleenroll) with a token of that batch".into(),
            ));
        }
        let attach = if matching
            .iter()
            .any(|r| matches!(r, Role::Admin | Role::Operator))
        {
            Attach::Any
        } else if matching.contains(&Role::Station) {
            batch.map_or(Attach::NewOnly, |b| Attach::InBatch(b.to_string()))
        } else {
            Attach::NewOnly
        };
        Ok(AuthorizedIssuance {
            actor: self.actor(),
            batch: batch.map(str::to_string),
            attach,
            bootstrap: None,
        })
    }

    /// The batch this principal is limited to, if exactly one.
    pub fn batch(&self) -> Option<&str> {
        match self {
            Principal::Token { batch, .. } => batch.as_deref(),
            Principal::Bootstrap { batch, .. } => batch.as_deref(),
            _ => None,
        }
    }

    fn forbidden(&self, action: Action, resource: &Resource) -> AccessError {
        let who = match self {
            Principal::Token { name, role, batch } => match batch {
                Some(b) => format!("the {role} token {name} (batch {b})"),
                None => format!("the {role} token {name}"),
            },
            Principal::Device { certificate, .. } => {
                format!("certificate {} (no grant for this)", certificate.id)
            }
            Principal::Claim { .. } => "a claim certificate".into(),
            Principal::Bootstrap { .. } => "a bootstrap certificate".into(),
            Principal::Local { actor } => actor.clone(),
        };
        let where_ = match (&resource.batch, &resource.thing) {
            (Some(b), _) => format!(" in batch {b}"),
            (None, Some(t)) => format!(" on thing {t}"),
            _ => String::new(),
        };
        AccessError::Forbidden {
            who,
            action,
            where_,
        }
    }

    /// A device certificate (checked: registered, ACTIVE, chaining to its
    /// CA) attached to a thing may renew itself.
    pub fn authorize_reenroll(&self) -> Result<AuthorizedReenroll, AccessError> {
        match self {
            Principal::Device { certificate, .. } => {
                let thing = certificate.thing.clone().ok_or_else(|| {
                    AccessError::Refused("the certificate is attached to no thing".into())
                })?;
                Ok(AuthorizedReenroll {
                    certificate: (**certificate).clone(),
                    thing,
                })
            }
            Principal::Bootstrap { .. } => Err(AccessError::Refused(
                "a bootstrap certificate cannot re-enroll: use simpleenroll".into(),
            )),
            _ => Err(AccessError::Refused(
                "re-enrollment needs the current certificate as TLS client certificate".into(),
            )),
        }
    }
}

/// What each role may do (in its scope).
fn role_allows(role: Role, action: Action) -> bool {
    use Action::*;
    match role {
        Role::Admin => true,
        Role::Operator => matches!(action, Read | ChangeCertificateStatus | CreateClaim),
        Role::Reader => action == Read,
        Role::Station => matches!(action, IssueInBatch | ReportStation | Enroll | Read),
        Role::Enroll => action == Enroll,
    }
}

/// Refuses an operation of a claim certificate that is no longer in force
/// (revoked, deactivated or expired since its session began; `None`: no
/// longer registered).
pub fn ensure_claim_in_force(
    claim: Option<&idmint_registry::CertificateStanding>,
) -> Result<(), crate::FlowError> {
    if claim.is_some_and(|c| c.in_force_at(time::OffsetDateTime::now_utc())) {
        Ok(())
    } else {
        Err(crate::FlowError::Access(AccessError::Unauthenticated(
            "this claim certificate is no longer ACTIVE and valid".into(),
        )))
    }
}

#[cfg(test)]
mod tests;
