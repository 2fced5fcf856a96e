//! AWS IoT policy records: named policy documents and the certificates
//! they are attached to. The documents are checked by the flows' policy
//! evaluator before they are stored; the registry keeps the text.

use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row;
use time::OffsetDateTime;

use crate::row::{from_row, time, typed};
use crate::write::{changed, unique_to};
use crate::{now, validate_name, AuditEvent, CertificateId, RegistryError, Store, WriteTx};

/// A stored policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Policy {
    /// Its name.
    pub name: String,
    /// The document text; `None` for a name a template attached before
    /// any document was created (it grants nothing).
    pub document: Option<String>,
    /// Created.
    #[serde(with = "time::serde::rfc3339")]
    pub created: OffsetDateTime,
    /// How many certificates it is attached to.
    pub attachments: i64,
}

const POLICY_COLUMNS: &str = "p.name, p.document, p.created, (SELECT COUNT(*) FROM certificate_policies c WHERE c.policy = p.name) AS attachments";

impl<'r> sqlx::FromRow<'r, AnyRow> for Policy {
    fn from_row(row: &'r AnyRow) -> Result<Policy, sqlx::Error> {
        Ok(Policy {
            name: row.try_get("name")?,
            document: row.try_get("document")?,
            created: time(row, "created")?,
            attachments: row.try_get("attachments")?,
        })
    }
}

impl Store {
    /// A policy by name.
    pub async fn policy(&self, name: &str) -> Result<Option<Policy>, RegistryError> {
        let sql = format!("SELECT {POLICY_COLUMNS} FROM policies p WHERE p.name = $1");
        let row = sqlx::query(&sql)
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(from_row::<Policy>).transpose()
    }

    /// Every policy, by name.
    pub async fn list_policies(&self) -> Result<Vec<Policy>, RegistryError> {
        let sql = format!("SELECT {POLICY_COLUMNS} FROM policies p ORDER BY p.name");
        let rows = sqlx::query(&sql).fetch_all(&self.pool).await?;
        rows.iter().map(from_row::<Policy>).collect()
    }

    /// The names of the policies attached to a certificate.
    pub async fn certificate_policies(&self, id: &str) -> Result<Vec<String>, RegistryError> {
        let rows = sqlx::query(
            "SELECT policy FROM certificate_policies WHERE certificate_id = $1 ORDER BY policy",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| r.try_get(0).map_err(RegistryError::from))
            .collect()
    }

    /// The policies attached to a certificate, with their documents.
    pub async fn certificate_policy_documents(
        &self,
        id: &str,
    ) -> Result<Vec<(String, Option<String>)>, RegistryError> {
        let rows = sqlx::query(
            "SELECT p.name, p.document FROM certificate_policies c JOIN policies p ON p.name = c.policy WHERE c.certificate_id = $1 ORDER BY p.name",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("name")?, r.try_get("document")?)))
            .collect()
    }

    /// Every attachment (certificate id, policy name), by certificate.
    pub async fn policy_attachments(&self) -> Result<Vec<(CertificateId, String)>, RegistryError> {
        let rows = sqlx::query(
            "SELECT certificate_id, policy FROM certificate_policies ORDER BY certificate_id, policy",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((typed(r, "certificate_id")?, r.try_get(1)?)))
            .collect()
    }
}

impl WriteTx {
    /// Creates a policy (audited `policy.create`); its name must be new,
    /// unless a template attached the name before it had a document.
    pub async fn insert_policy(&mut self, name: &str, document: &str) -> Result<(), RegistryError> {
        validate_name("policy name", name)?;
        let filled =
            sqlx::query("UPDATE policies SET document = $1 WHERE name = $2 AND document IS NULL")
                .bind(document)
                .bind(name)
                .execute(&mut *self.tx)
                .await?;
        if filled.rows_affected() == 0 {
            sqlx::query("INSERT INTO policies (name, document, created) VALUES ($1, $2, $3)")
                .bind(name)
                .bind(document)
                .bind(now())
                .execute(&mut *self.tx)
                .await
                .map_err(|e| unique_to(e, "policy", name))?;
        }
        self.audit(
            name,
            AuditEvent::PolicyCreate {
                document: document.to_string(),
            },
        );
        Ok(())
    }

    /// Deletes a policy that is attached to no certificate (audited
    /// `policy.delete`).
    pub async fn delete_policy(&mut self, name: &str) -> Result<(), RegistryError> {
        let row = sqlx::query("SELECT COUNT(*) FROM certificate_policies WHERE policy = $1")
            .bind(name)
            .fetch_one(&mut *self.tx)
            .await?;
        let attached: i64 = row.try_get(0)?;
        if attached > 0 {
            return Err(RegistryError::PolicyAttached {
                name: name.to_string(),
                certificates: attached,
            });
        }
        let done = sqlx::query("DELETE FROM policies WHERE name = $1")
            .bind(name)
            .execute(&mut *self.tx)
            .await?;
        changed(done, "policy", name)?;
        self.audit(name, AuditEvent::PolicyDelete {});
        Ok(())
    }

    /// Attaches a policy to a certificate (audited `policy.attach`). With
    /// `document` (a template's `PolicyDocument`) the policy is created if
    /// it is new; without, it must exist.
    pub async fn attach_policy(
        &mut self,
        certificate_id: &str,
        policy: &str,
        document: Option<&str>,
    ) -> Result<(), RegistryError> {
        let found = sqlx::query("SELECT 1 FROM certificates WHERE id = $1")
            .bind(certificate_id)
            .fetch_optional(&mut *self.tx)
            .await?;
        if found.is_none() {
            return Err(RegistryError::NotFound {
                kind: "certificate",
                name: certificate_id.to_string(),
            });
        }
        self.attach_policy_to_activated(certificate_id, policy, document)
            .await
    }

    /// [`Self::attach_policy`] for a certificate this transaction has just
    /// activated (provisioning), which therefore exists: one read fewer per
    /// policy on the fleet path.
    pub async fn attach_policy_to_activated(
        &mut self,
        certificate_id: &str,
        policy: &str,
        document: Option<&str>,
    ) -> Result<(), RegistryError> {
        validate_name("policy name", policy)?;
        match document {
            Some(document) => {
                sqlx::query(
                    "INSERT INTO policies (name, document, created) VALUES ($1, $2, $3) ON CONFLICT (name) DO UPDATE SET document = excluded.document WHERE policies.document IS NULL",
                )
                .bind(policy)
                .bind(document)
                .bind(now())
                .execute(&mut *self.tx)
                .await?;
            }
            None => {
                let exists =
                    sqlx::query("SELECT 1 FROM policies WHERE name = $1 AND document IS NOT NULL")
                        .bind(policy)
                        .fetch_optional(&mut *self.tx)
                        .await?;
                if exists.is_none() {
                    return Err(RegistryError::NotFound {
                        kind: "policy",
                        name: policy.to_string(),
                    });
                }
            }
        }
        sqlx::query(
            "INSERT INTO certificate_policies (certificate_id, policy) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(certificate_id)
        .bind(policy)
        .execute(&mut *self.tx)
        .await?;
        self.audit(
            certificate_id,
            AuditEvent::PolicyAttach {
                policy: policy.to_string(),
            },
        );
        Ok(())
    }

    /// Detaches a policy from a certificate (audited `policy.detach`).
    pub async fn detach_policy(
        &mut self,
        certificate_id: &str,
        policy: &str,
    ) -> Result<(), RegistryError> {
        let done = sqlx::query(
            "DELETE FROM certificate_policies WHERE certificate_id = $1 AND policy = $2",
        )
        .bind(certificate_id)
        .bind(policy)
        .execute(&mut *self.tx)
        .await?;
        changed(
            done,
            "policy attachment",
            &format!("{policy} on {certificate_id}"),
        )?;
        self.audit(
            certificate_id,
            AuditEvent::PolicyDetach {
                policy: policy.to_string(),
            },
        );
        Ok(())
    }
}
