//! Grants: which principal holds which role in which scope. Roles are
//! stored here and nowhere else; a thing's attributes never confer access.
//! The bootstrap-enrollment ledger (each EST bootstrap certificate enrolls
//! once) lives here too, since it is an access record as well.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;
use sqlx::Row;
use time::OffsetDateTime;

use sqlx::any::AnyRow;

use crate::row::{from_row, parsed, time};
use crate::write::unique_to;
use crate::{now, AuditEvent, CaSettings, RegistryError, Role, Store, WriteTx};

/// Where a grant applies.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// Everywhere.
    All,
    /// One batch.
    Batch(String),
    /// One CA (and the certificates it issued).
    Ca(String),
    /// One provisioning template.
    Template(String),
    /// One thing.
    Thing(String),
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::All => f.write_str("*"),
            Scope::Batch(b) => write!(f, "batch:{b}"),
            Scope::Ca(c) => write!(f, "ca:{c}"),
            Scope::Template(t) => write!(f, "template:{t}"),
            Scope::Thing(t) => write!(f, "thing:{t}"),
        }
    }
}

impl FromStr for Scope {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "*" {
            return Ok(Scope::All);
        }
        let (kind, name) = s.split_once(':').ok_or_else(|| {
            format!("bad scope {s:?}: expected *, batch:ID, ca:NAME, template:NAME or thing:NAME")
        })?;
        if name.is_empty() || name.chars().any(char::is_control) || name.len() > 128 {
            return Err(format!(
                "bad scope {s:?}: the name after {kind}: is empty or invalid"
            ));
        }
        let name = name.to_string();
        match kind {
            "batch" => Ok(Scope::Batch(name)),
            "ca" => Ok(Scope::Ca(name)),
            "template" => Ok(Scope::Template(name)),
            "thing" => Ok(Scope::Thing(name)),
            _ => Err(format!(
                "bad scope {s:?}: {kind:?} is not batch, ca, template or thing"
            )),
        }
    }
}

impl Serialize for Scope {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A principal's role in a scope.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Grant {
    /// Who: `cert:<certificate id>`.
    pub principal: String,
    /// The role.
    pub role: Role,
    /// Where.
    pub scope: Scope,
    /// When it was granted.
    #[serde(with = "time::serde::rfc3339")]
    pub created: OffsetDateTime,
    /// Who granted it (the audit actor).
    pub created_by: String,
}

impl<'r> sqlx::FromRow<'r, AnyRow> for Grant {
    fn from_row(row: &'r AnyRow) -> Result<Grant, sqlx::Error> {
        Ok(Grant {
            principal: row.try_get("principal")?,
            role: parsed(row, "role")?,
            scope: parsed(row, "scope")?,
            created: time(row, "created")?,
            created_by: row.try_get("created_by")?,
        })
    }
}

const GRANT_COLUMNS: &str = "principal, role, scope, created, created_by";

impl Store {
    /// The grants of one principal.
    pub async fn grants_of(&self, principal: &str) -> Result<Vec<Grant>, RegistryError> {
        let sql =
            format!("SELECT {GRANT_COLUMNS} FROM grants WHERE principal = $1 ORDER BY role, scope");
        let rows = sqlx::query(&sql)
            .bind(principal)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(from_row::<Grant>).collect()
    }

    /// Every grant, by principal.
    pub async fn list_grants(&self) -> Result<Vec<Grant>, RegistryError> {
        let sql = format!("SELECT {GRANT_COLUMNS} FROM grants ORDER BY principal, role, scope");
        let rows = sqlx::query(&sql).fetch_all(&self.pool).await?;
        rows.iter().map(from_row::<Grant>).collect()
    }

    /// The certificate a bootstrap certificate enrolled, if it has.
    pub async fn bootstrap_enrollment(
        &self,
        bootstrap_id: &str,
    ) -> Result<Option<String>, RegistryError> {
        let row =
            sqlx::query("SELECT certificate_id FROM bootstrap_enrollments WHERE bootstrap_id = $1")
                .bind(bootstrap_id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|r| r.try_get(0)).transpose()?)
    }
}

impl WriteTx {
    /// Adds a grant (audited `grant.add`).
    pub async fn insert_grant(
        &mut self,
        principal: &str,
        role: Role,
        scope: &Scope,
    ) -> Result<(), RegistryError> {
        let scope_text = scope.to_string();
        let actor = self.actor().to_string();
        sqlx::query(
            "INSERT INTO grants (principal, role, scope, created, created_by) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(principal)
        .bind(role.as_str())
        .bind(scope_text.as_str())
        .bind(now())
        .bind(actor.as_str())
        .execute(&mut *self.tx)
        .await
        .map_err(|e| unique_to(e, "grant", &format!("{principal} {role} {scope_text}")))?;
        self.audit(
            principal,
            AuditEvent::GrantAdd {
                role,
                scope: scope_text,
            },
        );
        Ok(())
    }

    /// Removes a grant (audited `grant.remove`).
    pub async fn delete_grant(
        &mut self,
        principal: &str,
        role: Role,
        scope: &Scope,
    ) -> Result<(), RegistryError> {
        let scope_text = scope.to_string();
        let done =
            sqlx::query("DELETE FROM grants WHERE principal = $1 AND role = $2 AND scope = $3")
                .bind(principal)
                .bind(role.as_str())
                .bind(scope_text.as_str())
                .execute(&mut *self.tx)
                .await?;
        crate::write::changed(done, "grant", &format!("{principal} {role} {scope_text}"))?;
        self.audit(
            principal,
            AuditEvent::GrantRemove {
                role,
                scope: scope_text,
            },
        );
        Ok(())
    }

    /// The grants of one principal, read inside this transaction.
    pub async fn grants_of(&mut self, principal: &str) -> Result<Vec<Grant>, RegistryError> {
        let sql =
            format!("SELECT {GRANT_COLUMNS} FROM grants WHERE principal = $1 ORDER BY role, scope");
        let rows = sqlx::query(&sql)
            .bind(principal)
            .fetch_all(&mut *self.tx)
            .await?;
        rows.iter().map(from_row::<Grant>).collect()
    }

    /// Records that `bootstrap_id` enrolled `certificate_id`; a second
    /// enrollment of the same bootstrap certificate is `AlreadyExists`.
    pub async fn record_bootstrap_enrollment(
        &mut self,
        bootstrap_id: &str,
        certificate_id: &str,
        thing: &str,
    ) -> Result<(), RegistryError> {
        sqlx::query(
            "INSERT INTO bootstrap_enrollments (bootstrap_id, certificate_id, thing, enrolled) VALUES ($1, $2, $3, $4)",
        )
        .bind(bootstrap_id)
        .bind(certificate_id)
        .bind(thing)
        .bind(now())
        .execute(&mut *self.tx)
        .await
        .map_err(|e| unique_to(e, "bootstrap enrollment of certificate", bootstrap_id))?;
        Ok(())
    }

    /// Sets whether a registered CA's certificates may bootstrap EST
    /// enrollment, and the one batch they enroll into.
    pub async fn set_ca_est_bootstrap(
        &mut self,
        name: &str,
        enabled: bool,
        batch: Option<&str>,
    ) -> Result<(), RegistryError> {
        let done = sqlx::query(
            "UPDATE cas SET est_bootstrap = $1, est_bootstrap_batch = $2 WHERE name = $3",
        )
        .bind(i64::from(enabled))
        .bind(batch)
        .bind(name)
        .execute(&mut *self.tx)
        .await?;
        crate::write::changed(done, "CA", name)?;
        self.audit(
            name,
            AuditEvent::CaUpdate(CaSettings::EstBootstrap {
                est_bootstrap: enabled,
                est_bootstrap_batch: batch.map(str::to_string),
            }),
        );
        Ok(())
    }
}

/// A grant made from a thing's old `role` attribute.
#[derive(Clone, Debug)]
pub struct ConvertedRole {
    /// The thing whose attribute it was.
    pub thing: String,
    /// The certificate that now holds the grant.
    pub certificate: String,
    /// The role.
    pub role: Role,
}

/// The name of the one-time conversion of `role` attributes into grants.
const ROLE_ATTRIBUTES: &str = "role-attributes-to-grants";

impl Store {
    /// Whether the role-attribute conversion has run on this registry.
    pub async fn role_attributes_converted(&self) -> Result<bool, RegistryError> {
        let row = sqlx::query("SELECT done FROM conversions WHERE name = $1")
            .bind(ROLE_ATTRIBUTES)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }
}

impl WriteTx {
    /// Once per registry: every thing whose `role` attribute names a role
    /// gives that role (scope `*`) to each of its live certificates, audited
    /// `grant.migrate`. The attribute stays as plain data; from now on it
    /// confers nothing. Returns what was converted (empty after the first
    /// run).
    pub async fn convert_role_attributes(&mut self) -> Result<Vec<ConvertedRole>, RegistryError> {
        let done = sqlx::query("SELECT done FROM conversions WHERE name = $1")
            .bind(ROLE_ATTRIBUTES)
            .fetch_optional(&mut *self.tx)
            .await?;
        if done.is_some() {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(
            "SELECT t.name, t.attributes, c.id FROM things t JOIN certificates c ON c.thing = t.name \
             WHERE c.status <> 'REVOKED' AND t.attributes LIKE '%\"role\"%' ORDER BY t.name, c.id",
        )
        .fetch_all(&mut *self.tx)
        .await?;
        let mut converted = Vec::new();
        for row in rows {
            let thing: String = row.try_get(0)?;
            let attributes: String = row.try_get(1)?;
            let certificate: String = row.try_get(2)?;
            let attributes: std::collections::BTreeMap<String, String> =
                serde_json::from_str(&attributes)
                    .map_err(|e| RegistryError::Corrupt(format!("thing attributes: {e}")))?;
            let Some(role) = attributes.get("role").and_then(|r| r.parse::<Role>().ok()) else {
                continue;
            };
            let principal = format!("cert:{certificate}");
            sqlx::query(
                "INSERT INTO grants (principal, role, scope, created, created_by) VALUES ($1, $2, '*', $3, $4) ON CONFLICT DO NOTHING",
            )
            .bind(principal.as_str())
            .bind(role.as_str())
            .bind(now())
            .bind(ROLE_ATTRIBUTES)
            .execute(&mut *self.tx)
            .await?;
            self.audit(
                &principal,
                AuditEvent::GrantMigrate {
                    role,
                    scope: "*".into(),
                    from_thing_attribute: thing.clone(),
                },
            );
            converted.push(ConvertedRole {
                thing,
                certificate,
                role,
            });
        }
        sqlx::query("INSERT INTO conversions (name, done) VALUES ($1, $2)")
            .bind(ROLE_ATTRIBUTES)
            .bind(now())
            .execute(&mut *self.tx)
            .await?;
        Ok(converted)
    }
}
