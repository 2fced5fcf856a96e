//! API and enrollment tokens (by role, optionally scoped to a batch; only a
//! SHA-256 hash of the secret is stored).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::Row;
use time::OffsetDateTime;

use crate::row::{from_row, parsed, time, time_option};
use crate::write::changed;
use crate::{now, validate_name, AuditEvent, RegistryError, Store, WriteTx};

/// What a token (or a client certificate) may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything.
    Admin,
    /// Reads, and certificate state changes.
    Operator,
    /// Issues certificates against batches (remote stations).
    Station,
    /// Reads only.
    Reader,
    /// EST enrollment against one batch only.
    Enroll,
}

impl Role {
    /// All roles.
    pub const ALL: [Role; 5] = [
        Role::Admin,
        Role::Operator,
        Role::Station,
        Role::Reader,
        Role::Enroll,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Station => "station",
            Role::Reader => "reader",
            Role::Enroll => "enroll",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s.to_ascii_lowercase())
            .ok_or_else(|| {
                format!("unknown role {s:?} (expected admin, operator, station, reader or enroll)")
            })
    }
}

/// A stored token (never its secret).
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Token {
    /// Unique name (the HTTP Basic user name for EST).
    pub name: String,
    /// Its role.
    pub role: Role,
    /// The batch an `enroll` or `station` token is limited to.
    pub batch: Option<String>,
    /// Lowercase hex SHA-256 of the secret.
    #[serde(skip)]
    pub hash: String,
    /// Created.
    #[serde(with = "time::serde::rfc3339")]
    pub created: OffsetDateTime,
    /// When revoked.
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
}

const TOKEN_COLUMNS: &str = "name, role, batch, hash, created, revoked_at";

impl<'r> sqlx::FromRow<'r, AnyRow> for Token {
    fn from_row(row: &'r AnyRow) -> Result<Token, sqlx::Error> {
        Ok(Token {
            name: row.try_get("name")?,
            role: parsed(row, "role")?,
            batch: row.try_get("batch")?,
            hash: row.try_get("hash")?,
            created: time(row, "created")?,
            revoked_at: time_option(row, "revoked_at")?,
        })
    }
}

impl Store {
    /// A token by name (revoked ones included).
    pub async fn token(&self, name: &str) -> Result<Option<Token>, RegistryError> {
        let sql = format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE name = $1");
        let row = sqlx::query(&sql)
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(from_row::<Token>).transpose()
    }

    /// A token by the hash of its secret (revoked ones included).
    pub async fn token_by_hash(&self, hash: &str) -> Result<Option<Token>, RegistryError> {
        let sql = format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE hash = $1");
        let row = sqlx::query(&sql)
            .bind(hash)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(from_row::<Token>).transpose()
    }

    /// All tokens, by name.
    pub async fn list_tokens(&self) -> Result<Vec<Token>, RegistryError> {
        let sql = format!("SELECT {TOKEN_COLUMNS} FROM tokens ORDER BY name");
        let rows = sqlx::query(&sql).fetch_all(&self.pool).await?;
        rows.iter().map(from_row::<Token>).collect()
    }
}

impl WriteTx {
    /// Stores a new token (its secret's hash only).
    pub async fn insert_token(
        &mut self,
        name: &str,
        role: Role,
        batch: Option<&str>,
        hash: &str,
    ) -> Result<(), RegistryError> {
        validate_name("token name", name)?;
        if name.contains(':') {
            return Err(RegistryError::InvalidName {
                kind: "token name",
                name: name.escape_default().to_string(),
                reason: "contains ':' (it is the HTTP Basic user name)",
            });
        }
        let exists = sqlx::query("SELECT name FROM tokens WHERE name = $1")
            .bind(name)
            .fetch_optional(&mut *self.tx)
            .await?;
        if exists.is_some() {
            return Err(RegistryError::AlreadyExists {
                kind: "token",
                name: name.into(),
            });
        }
        sqlx::query(
            "INSERT INTO tokens (name, role, batch, hash, created) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(name)
        .bind(role.as_str())
        .bind(batch)
        .bind(hash)
        .bind(now())
        .execute(&mut *self.tx)
        .await?;
        self.audit(
            name,
            AuditEvent::TokenCreate {
                role,
                batch: batch.map(str::to_string),
            },
        );
        Ok(())
    }

    /// Revokes a token.
    pub async fn revoke_token(&mut self, name: &str) -> Result<(), RegistryError> {
        let done =
            sqlx::query("UPDATE tokens SET revoked_at = COALESCE(revoked_at, $1) WHERE name = $2")
                .bind(now())
                .bind(name)
                .execute(&mut *self.tx)
                .await?;
        changed(done, "token", name)?;
        self.audit(name, AuditEvent::TokenRevoke {});
        Ok(())
    }
}
