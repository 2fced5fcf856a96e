//! API and enrollment tokens: created with a random secret shown once,
//! stored as a SHA-256 hash, checked in constant time.

use idmint_registry::{Role, Token};
use zeroize::Zeroizing;

use crate::{FlowError, Idmint};

/// The prefix of every token secret (so leaked tokens are recognisable).
pub const TOKEN_PREFIX: &str = "idm_";

/// Lowercase hex SHA-256 of a token secret (what the registry stores).
pub fn token_hash(secret: &str) -> String {
    idmint_pki::sha256_hex(secret.as_bytes())
}

/// Whether `secret` is the secret of `token` (constant time; a revoked
/// token never matches).
pub fn token_matches(token: &Token, secret: &str) -> bool {
    let computed = token_hash(secret);
    idmint_pki::constant_time_eq(computed.as_bytes(), token.hash.as_bytes())
        && token.revoked_at.is_none()
}

impl Idmint {
    /// Creates a token and returns its secret (shown once, never stored).
    /// `enroll` tokens must name a batch; `station` tokens may.
    pub async fn create_token(
        &self,
        actor: &str,
        name: &str,
        role: Role,
        batch: Option<&str>,
    ) -> Result<Zeroizing<String>, FlowError> {
        if role == Role::Enroll && batch.is_none() {
            return Err(FlowError::Invalid("an enroll token needs --batch".into()));
        }
        if let Some(b) = batch {
            if !matches!(role, Role::Enroll | Role::Station) {
                return Err(FlowError::Invalid(format!(
                    "a {role} token cannot be scoped to a batch"
                )));
            }
            self.store().require_batch(b).await?;
        }
        let mut bytes = Zeroizing::new([0u8; 32]);
        idmint_pki::random_fill(bytes.as_mut())?;
        let secret = Zeroizing::new(format!("{TOKEN_PREFIX}{}", hex::encode(&bytes[..])));
        let mut tx = self.store().begin(actor).await?;
        tx.insert_token(name, role, batch, &token_hash(&secret))
            .await?;
        tx.commit().await?;
        Ok(secret)
    }

    /// Revokes a token.
    pub async fn revoke_token(&self, actor: &str, name: &str) -> Result<(), FlowError> {
        let mut tx = self.store().begin(actor).await?;
        tx.revoke_token(name).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The token a bearer secret belongs to, if any and not revoked.
    pub async fn token_for_secret(&self, secret: &str) -> Result<Option<Token>, FlowError> {
        let found = self.store().token_by_hash(&token_hash(secret)).await?;
        Ok(found.filter(|t| token_matches(t, secret)))
    }

    /// The token named `name` if `secret` is its secret and it is not revoked.
    pub async fn token_for_basic(
        &self,
        name: &str,
        secret: &str,
    ) -> Result<Option<Token>, FlowError> {
        let found = self.store().token(name).await?;
        Ok(found.filter(|t| token_matches(t, secret)))
    }
}
