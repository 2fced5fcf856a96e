//! TPM 2.0 attestation records: the sessions between a device's attestation
//! request and its activation (spent once), and the ledger of one identity
//! per endorsement key per batch that refuses a second (a cloned or replayed
//! TPM). The decisions are the flows'; this stores them.

use sqlx::Row;

use crate::write::unique_to;
use crate::{now, AuditEvent, RegistryError, Store, WriteTx};

/// A session to open: what the device sent and what idmint expects back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewTpmSession {
    /// Random id (hex).
    pub id: String,
    /// The batch the identity will count against.
    pub batch: String,
    /// SHA-256 (hex) of the EK's SubjectPublicKeyInfo.
    pub ek_sha256: String,
    /// The AK's `TPM2B_PUBLIC`.
    pub ak_public: Vec<u8>,
    /// The identity key's `TPM2B_PUBLIC`.
    pub identity_public: Vec<u8>,
    /// The CSR (DER) for the identity key.
    pub csr: Vec<u8>,
    /// SHA-256 (hex) of the secret wrapped to the EK (the secret is not kept).
    pub secret_sha256: String,
    /// The nonce the device's `TPM2_Certify` must carry.
    pub nonce: Vec<u8>,
    /// When it expires (Unix seconds).
    pub expires: i64,
}

/// A stored session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TpmSession {
    /// What was stored.
    pub session: NewTpmSession,
    /// When it was opened (Unix seconds).
    pub created: i64,
    /// When an activation spent it, if one did.
    pub spent: Option<i64>,
}

impl Store {
    /// The session `id`, spent or not.
    pub async fn tpm_session(&self, id: &str) -> Result<Option<TpmSession>, RegistryError> {
        let row = sqlx::query(
            "SELECT id, batch_id, ek_sha256, ak_public, identity_public, csr, secret_sha256, nonce, \
             created, expires, spent FROM tpm_sessions WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(TpmSession {
            session: NewTpmSession {
                id: row.try_get("id")?,
                batch: row.try_get("batch_id")?,
                ek_sha256: row.try_get("ek_sha256")?,
                ak_public: row.try_get("ak_public")?,
                identity_public: row.try_get("identity_public")?,
                csr: row.try_get("csr")?,
                secret_sha256: row.try_get("secret_sha256")?,
                nonce: row.try_get("nonce")?,
                expires: row.try_get("expires")?,
            },
            created: row.try_get("created")?,
            spent: row.try_get("spent")?,
        }))
    }

    /// The certificate an endorsement key already has in `batch`, if any.
    pub async fn tpm_identity(
        &self,
        batch: &str,
        ek_sha256: &str,
    ) -> Result<Option<String>, RegistryError> {
        let row = sqlx::query(
            "SELECT certificate_id FROM tpm_identities WHERE batch_id = $1 AND ek_sha256 = $2",
        )
        .bind(batch)
        .bind(ek_sha256)
        .fetch_optional(&self.pool)
        .await?;
        Ok(match row {
            Some(row) => Some(row.try_get("certificate_id")?),
            None => None,
        })
    }
}

impl WriteTx {
    /// Opens a session, audited `tpm.challenge` (subject: the session id).
    pub async fn insert_tpm_session(&mut self, s: &NewTpmSession) -> Result<(), RegistryError> {
        sqlx::query(
            "INSERT INTO tpm_sessions (id, batch_id, ek_sha256, ak_public, identity_public, csr, \
             secret_sha256, nonce, created, expires) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&s.id)
        .bind(&s.batch)
        .bind(&s.ek_sha256)
        .bind(&s.ak_public)
        .bind(&s.identity_public)
        .bind(&s.csr)
        .bind(&s.secret_sha256)
        .bind(&s.nonce)
        .bind(now())
        .bind(s.expires)
        .execute(&mut *self.tx)
        .await
        .map_err(|e| unique_to(e, "TPM session", &s.id))?;
        self.audit(
            &s.id,
            AuditEvent::TpmChallenge {
                batch: s.batch.clone(),
                ek_sha256: s.ek_sha256.clone(),
            },
        );
        Ok(())
    }

    /// Spends a session (its secret and nonce are good once): fails
    /// `AlreadyExists` if an activation spent it already.
    pub async fn spend_tpm_session(&mut self, id: &str) -> Result<(), RegistryError> {
        let done =
            sqlx::query("UPDATE tpm_sessions SET spent = $1 WHERE id = $2 AND spent IS NULL")
                .bind(now())
                .bind(id)
                .execute(&mut *self.tx)
                .await?;
        if done.rows_affected() == 0 {
            return Err(RegistryError::AlreadyExists {
                kind: "activation of TPM session",
                name: id.to_string(),
            });
        }
        Ok(())
    }

    /// Records the identity an endorsement key received in a batch, audited
    /// `tpm.identity` (subject: the certificate id); a second one for the
    /// same EK and batch fails `AlreadyExists` (a clone).
    pub async fn record_tpm_identity(
        &mut self,
        batch: &str,
        ek_sha256: &str,
        certificate_id: &str,
        session: &str,
    ) -> Result<(), RegistryError> {
        sqlx::query(
            "INSERT INTO tpm_identities (batch_id, ek_sha256, certificate_id, session_id, created) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(batch)
        .bind(ek_sha256)
        .bind(certificate_id)
        .bind(session)
        .bind(now())
        .execute(&mut *self.tx)
        .await
        .map_err(|e| unique_to(e, "identity in this batch for the TPM endorsement key", ek_sha256))?;
        self.audit(
            certificate_id,
            AuditEvent::TpmIdentity {
                batch: batch.to_string(),
                ek_sha256: ek_sha256.to_string(),
                session: session.to_string(),
            },
        );
        Ok(())
    }
}
