//! Ids typed by people: a certificate or batch named by a unique prefix of
//! its id, as git names commits. An exact id always wins; a prefix must be
//! at least [`MIN_PREFIX`] characters and match exactly one record, and an
//! ambiguous one is refused with the ids it matches.

use idmint_types::{BatchId, CertificateId};

use crate::row::typed;
use crate::{RegistryError, Store};

/// The shortest prefix accepted in place of a whole id.
pub const MIN_PREFIX: usize = 4;

/// How many matches an ambiguous prefix lists.
const SHOWN_MATCHES: usize = 10;

impl Store {
    /// The full id of the certificate that `text` names: its whole id, or a
    /// unique prefix of at least [`MIN_PREFIX`] hex digits (any case).
    /// `NotFound` when nothing matches, `Ambiguous` when several do.
    pub async fn resolve_certificate_id(&self, text: &str) -> Result<CertificateId, RegistryError> {
        let lower = text.to_ascii_lowercase();
        let prefix = lower.chars().all(|c| c.is_ascii_hexdigit());
        self.resolve_id("certificate", "certificates", text, &lower, prefix)
            .await
    }

    /// The full id of the batch that `text` names: its whole id, or a
    /// unique prefix of at least [`MIN_PREFIX`] characters (letters, digits,
    /// `-`). `NotFound` when nothing matches, `Ambiguous` when several do.
    pub async fn resolve_batch_id(&self, text: &str) -> Result<BatchId, RegistryError> {
        let prefix = text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
        self.resolve_id("batch", "batches", text, text, prefix)
            .await
    }

    /// Exact match on `text` first; then, when `prefix_ok` (the characters
    /// cannot be LIKE wildcards) and long enough, a prefix match on
    /// `candidate`.
    async fn resolve_id<T>(
        &self,
        kind: &'static str,
        table: &'static str,
        text: &str,
        candidate: &str,
        prefix_ok: bool,
    ) -> Result<T, RegistryError>
    where
        T: TryFrom<String>,
        T::Error: std::fmt::Display,
    {
        let exact = format!("SELECT id FROM {table} WHERE id = $1");
        if let Some(row) = sqlx::query(&exact)
            .bind(candidate)
            .fetch_optional(&self.pool)
            .await?
        {
            return Ok(typed(&row, "id")?);
        }
        let not_found = || RegistryError::NotFound {
            kind,
            name: text.to_string(),
        };
        if !prefix_ok || candidate.len() < MIN_PREFIX {
            return Err(not_found());
        }
        let like = format!("SELECT id FROM {table} WHERE id LIKE $1 ORDER BY id LIMIT $2");
        let rows = sqlx::query(&like)
            .bind(format!("{candidate}%"))
            .bind((SHOWN_MATCHES + 1) as i64)
            .fetch_all(&self.pool)
            .await?;
        match rows.len() {
            0 => Err(not_found()),
            1 => Ok(typed(&rows[0], "id")?),
            n => {
                let mut matches = Vec::with_capacity(n);
                for row in &rows {
                    matches.push(sqlx::Row::try_get::<String, _>(row, "id")?);
                }
                matches.truncate(SHOWN_MATCHES);
                Err(RegistryError::Ambiguous {
                    kind,
                    prefix: text.to_string(),
                    more: n > SHOWN_MATCHES,
                    matches,
                })
            }
        }
    }
}
