//! Ids typed by people: a certificate or batch named by a unique prefix of
//! its id, as git names commits. An exact id always wins; a prefix must be
//! at least [`MIN_PREFIX`] characters and match exactly one record, and an
//! ambiguous one is refused with the ids it matches.

use sqlx::Row;

use crate::{RegistryError, Store};

/// The shortest prefix accepted in place of a whole id.
pub const MIN_PREFIX: usize = 4;

/// How many matches an ambiguous prefix lists.
const SHOWN_MATCHES: usize = 10;

impl Store {
    /// The full id of the certificate that `text` names: its whole id, or a
    /// unique prefix of at least [`MIN_PREFIX`] hex digits (any case).
    /// `NotFound` when nothing matches, `Ambiguous` when several do.
    pub async fn resolve_certificate_id(&self, text: &str) -> Result<String, RegistryError> {
        let lower = text.to_ascii_lowercase();
        let prefix = lower.chars().all(|c| c.is_ascii_hexdigit());
        self.resolve_id("certificate", "certificates", text, &lower, prefix)
            .await
    }

    /// The full id of the batch that `text` names: its whole id, or a
    /// unique prefix of at least [`MIN_PREFIX`] characters (letters, digits,
    /// `-`). `NotFound` when nothing matches, `Ambiguous` when several do.
    pub async fn resolve_batch_id(&self, text: &str) -> Result<String, RegistryError> {
        let prefix = text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
        self.resolve_id("batch", "batches", text, text, prefix)
            .await
    }

    /// Exact match on `text` first; then, when `prefix_ok` (the characters
    /// cannot be LIKE wildcards) and long enough, a prefix match on
    /// `candidate`.
    async fn resolve_id(
        &self,
        kind: &'static str,
        table: &'static str,
        text: &str,
        candidate: &str,
        prefix_ok: bool,
    ) -> Result<String, RegistryError> {
        let exact = format!("SELECT id FROM {table} WHERE id = $1");
        if sqlx::query(&exact)
            .bind(text)
            .fetch_optional(&self.pool)
            .await?
            .is_some()
        {
            return Ok(text.to_string());
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
        let mut matches = Vec::with_capacity(rows.len());
        for row in &rows {
            matches.push(row.try_get::<String, _>(0)?);
        }
        match matches.len() {
            0 => Err(not_found()),
            1 => Ok(matches.remove(0)),
            n => {
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
