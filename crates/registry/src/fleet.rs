//! Fleet provisioning records (scenario 5): provisioning templates, claim
//! certificates and the templates they may use, single-use certificate
//! ownership tokens (stored as SHA-256 hashes), thing groups, and the built-in allow-list hook's permitted serials.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row;
use time::OffsetDateTime;

use crate::row::{flag, from_row, json, parsed, time, typed};
use crate::store::{ts, CERT_COLUMNS};
use crate::write::{changed, unique_to};
use crate::{
    now, validate_name, validate_thing_name, AuditEvent, Certificate, CertificateId,
    CertificateStanding, CertificateStatus, RegistryError, Store, WriteTx,
};

/// How a template is used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TemplateKind {
    /// Fleet provisioning by claim (RegisterThing over MQTT).
    Fleet,
    /// Just-in-time provisioning of certificates chaining to an auto-registering CA.
    Jitp,
}

impl TemplateKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            TemplateKind::Fleet => "fleet",
            TemplateKind::Jitp => "jitp",
        }
    }
}

impl fmt::Display for TemplateKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TemplateKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "fleet" => Ok(TemplateKind::Fleet),
            "jitp" => Ok(TemplateKind::Jitp),
            _ => Err(format!(
                "unknown template type {s:?} (expected fleet or jitp)"
            )),
        }
    }
}

/// A stored provisioning template.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProvisioningTemplate {
    /// Unique name (1–36 of `[0-9A-Za-z_-]`).
    pub name: String,
    /// Fleet or JITP.
    pub kind: TemplateKind,
    /// The template JSON, as given.
    pub body: String,
    /// Pre-provisioning hook: an http(s) URL, or `allow-list`.
    pub hook: Option<String>,
    /// Hook timeout, milliseconds.
    pub hook_timeout_ms: i64,
    /// Disabled templates refuse every request.
    pub enabled: bool,
    /// Created.
    #[serde(with = "time::serde::rfc3339")]
    pub created: OffsetDateTime,
    /// Last changed.
    #[serde(with = "time::serde::rfc3339")]
    pub updated: OffsetDateTime,
}

/// A template to create, or the new state of one to update.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewTemplate {
    /// Unique name.
    pub name: String,
    /// Fleet or JITP.
    pub kind: TemplateKind,
    /// The template JSON (validated by the caller).
    pub body: String,
    /// Pre-provisioning hook.
    pub hook: Option<String>,
    /// Hook timeout, milliseconds.
    pub hook_timeout_ms: i64,
    /// Enabled.
    pub enabled: bool,
}

/// A claim certificate and the templates it may use.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Claim {
    /// The claim certificate's id.
    pub certificate_id: CertificateId,
    /// Templates whose provisioning topics it may use.
    pub templates: Vec<String>,
    /// Provisioning requests allowed per minute (0: no limit).
    pub rate_per_minute: i64,
}

/// A certificate ownership token, as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnershipToken {
    /// The certificate it proves ownership of.
    pub certificate_id: CertificateId,
    /// The claim certificate that asked for it.
    pub claim_certificate_id: String,
    /// Expiry, Unix seconds.
    pub expires: i64,
}

/// An ownership token RegisterThing may spend, as its first look finds it:
/// with what the operation needs next, read in the same query.
#[derive(Clone, Debug)]
pub struct UsableToken {
    /// The token.
    pub token: OwnershipToken,
    /// The DER of the certificate it is for.
    pub certificate_der: Vec<u8>,
    /// The standing of the claim certificate it was issued to (`None`: no
    /// longer registered).
    pub claim: Option<CertificateStanding>,
}

/// The revocation reason (RFC 5280 name) of a certificate whose ownership
/// token expired before RegisterThing.
const EXPIRED_TOKEN_REASON: crate::RevocationReason = crate::RevocationReason::CessationOfOperation;

const TEMPLATE_COLUMNS: &str = "name, kind, body, hook, hook_timeout_ms, enabled, created, updated";

const TOKEN_QUERY: &str = "SELECT certificate_id, claim_certificate_id, expires, used FROM ownership_tokens WHERE token_sha256 = $1";

fn usable_token(row: Option<&AnyRow>, claim: &str) -> Result<OwnershipToken, RegistryError> {
    let row = row.ok_or(RegistryError::OwnershipToken("is unknown"))?;
    let token = OwnershipToken {
        certificate_id: typed(row, "certificate_id")?,
        claim_certificate_id: row.try_get(1)?,
        expires: row.try_get(2)?,
    };
    let used: Option<i64> = row.try_get(3)?;
    // A token spent by RegisterThing was used before it expired; one retired
    // by the sweep (`expire_ownership_token`) is marked used at or after.
    match used {
        Some(at) if at >= token.expires => {
            return Err(RegistryError::OwnershipToken("has expired"))
        }
        Some(_) => return Err(RegistryError::OwnershipToken("was already used")),
        None => {}
    }
    if token.expires <= now() {
        return Err(RegistryError::OwnershipToken("has expired"));
    }
    if token.claim_certificate_id != claim {
        return Err(RegistryError::OwnershipToken(
            "was issued to another claim certificate",
        ));
    }
    Ok(token)
}

impl<'r> sqlx::FromRow<'r, AnyRow> for Claim {
    fn from_row(row: &'r AnyRow) -> Result<Claim, sqlx::Error> {
        Ok(Claim {
            certificate_id: typed(row, "certificate_id")?,
            templates: json(row, "templates")?,
            rate_per_minute: row.try_get("rate_per_minute")?,
        })
    }
}

impl<'r> sqlx::FromRow<'r, AnyRow> for ProvisioningTemplate {
    fn from_row(row: &'r AnyRow) -> Result<ProvisioningTemplate, sqlx::Error> {
        Ok(ProvisioningTemplate {
            name: row.try_get("name")?,
            kind: parsed(row, "kind")?,
            body: row.try_get("body")?,
            hook: row.try_get("hook")?,
            hook_timeout_ms: row.try_get("hook_timeout_ms")?,
            enabled: flag(row, "enabled")?,
            created: time(row, "created")?,
            updated: time(row, "updated")?,
        })
    }
}

impl Store {
    /// A provisioning template by name.
    pub async fn template(
        &self,
        name: &str,
    ) -> Result<Option<ProvisioningTemplate>, RegistryError> {
        let sql = format!("SELECT {TEMPLATE_COLUMNS} FROM templates WHERE name = $1");
        let row = sqlx::query(&sql)
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(from_row::<ProvisioningTemplate>).transpose()
    }

    /// All provisioning templates, by name.
    pub async fn list_templates(&self) -> Result<Vec<ProvisioningTemplate>, RegistryError> {
        let sql = format!("SELECT {TEMPLATE_COLUMNS} FROM templates ORDER BY name");
        let rows = sqlx::query(&sql).fetch_all(&self.pool).await?;
        rows.iter().map(from_row::<ProvisioningTemplate>).collect()
    }

    /// The claim a certificate holds, if it is a claim certificate.
    pub async fn claim(&self, certificate_id: &str) -> Result<Option<Claim>, RegistryError> {
        let row = sqlx::query(
            "SELECT certificate_id, templates, rate_per_minute FROM claims WHERE certificate_id = $1",
        )
        .bind(certificate_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(from_row::<Claim>).transpose()
    }

    /// A certificate by id with the claim it holds, if it is a claim
    /// certificate: what a client certificate check needs, in one query.
    pub async fn certificate_and_claim(
        &self,
        id: &str,
    ) -> Result<Option<(Certificate, Option<Claim>)>, RegistryError> {
        // Built once: this runs at every client certificate check.
        static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
            let columns: Vec<String> = CERT_COLUMNS.split(", ").map(|c| format!("c.{c}")).collect();
            format!(
                "SELECT {}, cl.certificate_id, cl.templates, cl.rate_per_minute FROM certificates c \
                 LEFT JOIN claims cl ON cl.certificate_id = c.id WHERE c.id = $1",
                columns.join(", ")
            )
        });
        let row = sqlx::query(SQL.as_str())
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let certificate = from_row::<Certificate>(&row)?;
        let claim_id: Option<String> = row.try_get("certificate_id")?;
        let claim = match claim_id {
            Some(_) => Some(from_row::<Claim>(&row)?),
            None => None,
        };
        Ok(Some((certificate, claim)))
    }

    /// The ownership token with this hash, if it is usable now by `claim`
    /// (the same checks as [`WriteTx::use_ownership_token`], without spending
    /// it), with its certificate's DER and the claim certificate's standing.
    pub async fn usable_ownership_token(
        &self,
        hash: &str,
        claim: &str,
    ) -> Result<UsableToken, RegistryError> {
        let row = sqlx::query(
            "SELECT t.certificate_id, t.claim_certificate_id, t.expires, t.used, d.der, c.status, c.not_before, c.not_after \
             FROM ownership_tokens t JOIN certificates d ON d.id = t.certificate_id \
             LEFT JOIN certificates c ON c.id = t.claim_certificate_id WHERE t.token_sha256 = $1",
        )
        .bind(hash)
        .fetch_optional(&self.pool)
        .await?;
        let token = usable_token(row.as_ref(), claim)?;
        let Some(row) = row else {
            return Err(RegistryError::OwnershipToken("is unknown"));
        };
        let status: Option<String> = row.try_get(5)?;
        let claim = match status {
            Some(status) => Some(CertificateStanding {
                status: status.parse().map_err(RegistryError::Corrupt)?,
                not_before: ts(row.try_get(6)?),
                not_after: ts(row.try_get(7)?),
            }),
            None => None,
        };
        Ok(UsableToken {
            token,
            certificate_der: row.try_get(4)?,
            claim,
        })
    }

    /// Ownership tokens that expired unused before `at`, oldest first: (hash, token).
    pub async fn expired_ownership_tokens(
        &self,
        at: i64,
        limit: i64,
    ) -> Result<Vec<(String, OwnershipToken)>, RegistryError> {
        let rows = sqlx::query(
            "SELECT token_sha256, certificate_id, claim_certificate_id, expires FROM ownership_tokens WHERE used IS NULL AND expires <= $1 ORDER BY expires LIMIT $2",
        )
        .bind(at)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get(0)?,
                    OwnershipToken {
                        certificate_id: typed(r, "certificate_id")?,
                        claim_certificate_id: r.try_get(2)?,
                        expires: r.try_get(3)?,
                    },
                ))
            })
            .collect()
    }

    /// The groups a thing belongs to, by name.
    pub async fn thing_groups(&self, thing: &str) -> Result<Vec<String>, RegistryError> {
        let rows =
            sqlx::query("SELECT group_name FROM thing_groups WHERE thing = $1 ORDER BY group_name")
                .bind(thing)
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| r.try_get(0).map_err(RegistryError::from))
            .collect()
    }

    /// Whether the allow list of `template` permits `serial`.
    pub async fn allow_listed(&self, template: &str, serial: &str) -> Result<bool, RegistryError> {
        let row = sqlx::query("SELECT 1 FROM allow_list WHERE template = $1 AND serial = $2")
            .bind(template)
            .bind(serial)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }
}

impl WriteTx {
    /// Creates a provisioning template.
    pub async fn insert_template(&mut self, t: &NewTemplate) -> Result<(), RegistryError> {
        validate_name("template name", &t.name)?;
        let now = now();
        sqlx::query(
            "INSERT INTO templates (name, kind, body, hook, hook_timeout_ms, enabled, created, updated) VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
        )
        .bind(t.name.as_str())
        .bind(t.kind.as_str())
        .bind(t.body.as_str())
        .bind(t.hook.as_deref())
        .bind(t.hook_timeout_ms)
        .bind(i64::from(t.enabled))
        .bind(now)
        .execute(&mut *self.tx)
        .await
        .map_err(|e| unique_to(e, "template", &t.name))?;
        self.audit(
            &t.name,
            AuditEvent::TemplateCreate {
                kind: t.kind,
                hook: t.hook.clone(),
                enabled: t.enabled,
                body: t.body.clone(),
            },
        );
        Ok(())
    }

    /// Replaces a template's kind, body, hook and enabled state.
    pub async fn update_template(&mut self, t: &NewTemplate) -> Result<(), RegistryError> {
        let done = sqlx::query(
            "UPDATE templates SET kind = $1, body = $2, hook = $3, hook_timeout_ms = $4, enabled = $5, updated = $6 WHERE name = $7",
        )
        .bind(t.kind.as_str())
        .bind(t.body.as_str())
        .bind(t.hook.as_deref())
        .bind(t.hook_timeout_ms)
        .bind(i64::from(t.enabled))
        .bind(now())
        .bind(t.name.as_str())
        .execute(&mut *self.tx)
        .await?;
        changed(done, "template", &t.name)?;
        self.audit(
            &t.name,
            AuditEvent::TemplateUpdate {
                kind: t.kind,
                hook: t.hook.clone(),
                enabled: t.enabled,
                body: t.body.clone(),
            },
        );
        Ok(())
    }

    /// Deletes a template and its allow list.
    pub async fn delete_template(&mut self, name: &str) -> Result<(), RegistryError> {
        let done = sqlx::query("DELETE FROM templates WHERE name = $1")
            .bind(name)
            .execute(&mut *self.tx)
            .await?;
        changed(done, "template", name)?;
        sqlx::query("DELETE FROM allow_list WHERE template = $1")
            .bind(name)
            .execute(&mut *self.tx)
            .await?;
        self.audit(name, AuditEvent::TemplateDelete {});
        Ok(())
    }

    /// Adds serial numbers to a template's allow list (already listed ones are kept).
    pub async fn allow_serials(
        &mut self,
        template: &str,
        serials: &[String],
    ) -> Result<usize, RegistryError> {
        let mut added = 0;
        for serial in serials {
            let done = sqlx::query(
                "INSERT INTO allow_list (template, serial) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            )
            .bind(template)
            .bind(serial.as_str())
            .execute(&mut *self.tx)
            .await?;
            added += done.rows_affected() as usize;
        }
        self.audit(
            template,
            AuditEvent::TemplateAllowList {
                added: added as u64,
                given: serials.len() as u64,
            },
        );
        Ok(added)
    }

    /// Records that a (registered) certificate is a claim certificate.
    pub async fn insert_claim(&mut self, claim: &Claim) -> Result<(), RegistryError> {
        let templates = serde_json::to_string(&claim.templates)
            .map_err(|e| RegistryError::Corrupt(e.to_string()))?;
        sqlx::query(
            "INSERT INTO claims (certificate_id, templates, rate_per_minute, created) VALUES ($1, $2, $3, $4)",
        )
        .bind(claim.certificate_id.as_str())
        .bind(templates.as_str())
        .bind(claim.rate_per_minute)
        .bind(now())
        .execute(&mut *self.tx)
        .await
        .map_err(|e| unique_to(e, "claim", &claim.certificate_id))?;
        self.audit(
            &claim.certificate_id,
            AuditEvent::ClaimCreate {
                templates: claim.templates.clone(),
                rate_per_minute: claim.rate_per_minute,
            },
        );
        Ok(())
    }

    /// Stores a new ownership token (its hash) for a PENDING_ACTIVATION certificate.
    pub async fn insert_ownership_token(
        &mut self,
        hash: &str,
        token: &OwnershipToken,
    ) -> Result<(), RegistryError> {
        sqlx::query(
            "INSERT INTO ownership_tokens (token_sha256, certificate_id, claim_certificate_id, expires) VALUES ($1, $2, $3, $4)",
        )
        .bind(hash)
        .bind(token.certificate_id.as_str())
        .bind(token.claim_certificate_id.as_str())
        .bind(token.expires)
        .execute(&mut *self.tx)
        .await
        .map_err(|e| unique_to(e, "ownership token", &token.certificate_id))?;
        Ok(())
    }

    /// Spends an ownership token: it must exist, be unused, unexpired and
    /// belong to `claim`. Atomic, so a token works once even with several
    /// servers racing.
    pub async fn use_ownership_token(
        &mut self,
        hash: &str,
        claim: &str,
    ) -> Result<OwnershipToken, RegistryError> {
        let spent = sqlx::query(
            "UPDATE ownership_tokens SET used = $1 WHERE token_sha256 = $2 AND used IS NULL AND expires > $1 AND claim_certificate_id = $3 \
             RETURNING certificate_id, claim_certificate_id, expires",
        )
        .bind(now())
        .bind(hash)
        .bind(claim)
        .fetch_optional(&mut *self.tx)
        .await?;
        if let Some(row) = spent {
            return Ok(OwnershipToken {
                certificate_id: typed(&row, "certificate_id")?,
                claim_certificate_id: row.try_get(1)?,
                expires: row.try_get(2)?,
            });
        }
        // Not spent: say why.
        let row = sqlx::query(TOKEN_QUERY)
            .bind(hash)
            .fetch_optional(&mut *self.tx)
            .await?;
        usable_token(row.as_ref(), claim)?;
        Err(RegistryError::OwnershipToken("was already used"))
    }

    /// Makes a PENDING_ACTIVATION certificate `status` and attaches it to
    /// `thing`, in one statement (the end of RegisterThing and JITP). Fails
    /// if the certificate is not pending any more.
    pub async fn activate_pending(
        &mut self,
        id: &str,
        status: CertificateStatus,
        thing: &str,
    ) -> Result<(), RegistryError> {
        validate_thing_name(thing)?;
        let done = sqlx::query(
            "UPDATE certificates SET status = $1, thing = $2, updated = $3 WHERE id = $4 AND status = $5",
        )
        .bind(status.as_str())
        .bind(thing)
        .bind(now())
        .bind(id)
        .bind(CertificateStatus::PendingActivation.as_str())
        .execute(&mut *self.tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(RegistryError::InvalidTransition {
                id: id.into(),
                from: "not PENDING_ACTIVATION".into(),
                to: status.to_string(),
            });
        }
        self.audit(
            id,
            AuditEvent::CertificateStatus {
                from: CertificateStatus::PendingActivation,
                to: status,
                reason: None,
            },
        );
        self.audit(
            id,
            AuditEvent::CertificateAttach {
                thing: thing.to_string(),
            },
        );
        Ok(())
    }

    /// Retires an expired, unused ownership token: the token is marked spent
    /// (its `used` time at or after its expiry, which [`usable_token`] reports
    /// as "has expired"), and its certificate, if still PENDING_ACTIVATION, is
    /// REVOKED with `cessationOfOperation`. The certificate stays in the
    /// registry, so its CA's CRL lists it and OCSP answers revoked: its key is
    /// in a device's hands and the certificate is valid for years. Audited
    /// `fleet.token_expired`. Returns whether a certificate was revoked;
    /// `false` when another server retired the token first.
    pub async fn expire_ownership_token(
        &mut self,
        hash: &str,
        certificate_id: &CertificateId,
    ) -> Result<bool, RegistryError> {
        let now = now();
        let spent = sqlx::query(
            "UPDATE ownership_tokens SET used = $1 WHERE token_sha256 = $2 AND used IS NULL AND expires <= $1 \
             RETURNING claim_certificate_id, expires",
        )
        .bind(now)
        .bind(hash)
        .fetch_optional(&mut *self.tx)
        .await?;
        let Some(row) = spent else {
            return Ok(false);
        };
        let claim: String = row.try_get(0)?;
        let expires: i64 = row.try_get(1)?;
        let pending = self
            .certificate(certificate_id)
            .await?
            .is_some_and(|c| c.status == CertificateStatus::PendingActivation);
        if pending {
            self.set_certificate_status(
                certificate_id,
                CertificateStatus::Revoked,
                Some(EXPIRED_TOKEN_REASON),
            )
            .await?;
        }
        self.audit(
            certificate_id,
            AuditEvent::FleetTokenExpired {
                claim,
                expired: expires,
                revoked: pending,
                reason: EXPIRED_TOKEN_REASON,
            },
        );
        Ok(pending)
    }

    /// Sets a thing's groups: adds `groups` (merge) or replaces the set.
    pub async fn set_thing_groups(
        &mut self,
        thing: &str,
        groups: &[String],
        merge: bool,
    ) -> Result<(), RegistryError> {
        if !merge {
            sqlx::query("DELETE FROM thing_groups WHERE thing = $1")
                .bind(thing)
                .execute(&mut *self.tx)
                .await?;
        }
        for group in groups {
            validate_name("thing group", group)?;
            sqlx::query(
                "INSERT INTO thing_groups (thing, group_name) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            )
            .bind(thing)
            .bind(group.as_str())
            .execute(&mut *self.tx)
            .await?;
        }
        self.audit(
            thing,
            AuditEvent::ThingGroups {
                groups: groups.to_vec(),
                merge,
            },
        );
        Ok(())
    }
}
