//! Pending certificate rotations (EST `simplereenroll`): the replaced
//! certificate stays ACTIVE until its overlap ends, then is retired.

use serde::Serialize;

use crate::{AuditEvent, CertificateId, RegistryError, Store, WriteTx};

/// A certificate rotation: the old certificate stays ACTIVE until
/// `retire_at`, then becomes INACTIVE.
#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct Rotation {
    /// The replaced certificate.
    #[sqlx(try_from = "String")]
    pub old_id: CertificateId,
    /// Its replacement.
    #[sqlx(try_from = "String")]
    pub new_id: CertificateId,
    /// When the old one is retired, Unix seconds.
    pub retire_at: i64,
}

impl Store {
    /// Rotations whose overlap has ended and that are not yet retired.
    pub async fn due_rotations(&self, at: i64) -> Result<Vec<Rotation>, RegistryError> {
        Ok(sqlx::query_as::<_, Rotation>(
            "SELECT old_id, new_id, retire_at FROM rotations WHERE done = 0 AND retire_at <= $1 ORDER BY retire_at LIMIT 500",
        )
        .bind(at)
        .fetch_all(&self.pool)
        .await?)
    }
}

impl WriteTx {
    /// Records a rotation: `old_id` is retired (INACTIVE) at `retire_at`.
    pub async fn insert_rotation(
        &mut self,
        old_id: &str,
        new_id: &str,
        retire_at: i64,
    ) -> Result<(), RegistryError> {
        sqlx::query("DELETE FROM rotations WHERE old_id = $1")
            .bind(old_id)
            .execute(&mut *self.tx)
            .await?;
        sqlx::query(
            "INSERT INTO rotations (old_id, new_id, retire_at, done) VALUES ($1, $2, $3, 0)",
        )
        .bind(old_id)
        .bind(new_id)
        .bind(retire_at)
        .execute(&mut *self.tx)
        .await?;
        self.audit(
            old_id,
            AuditEvent::CertificateRotate {
                replacement: new_id.to_string(),
                retire_at,
            },
        );
        Ok(())
    }

    /// The rotation still pending for a thing (its old certificate is the
    /// thing's), read inside this transaction.
    pub async fn pending_rotation_of_thing(
        &mut self,
        thing: &str,
    ) -> Result<Option<Rotation>, RegistryError> {
        Ok(sqlx::query_as::<_, Rotation>(
            "SELECT r.old_id, r.new_id, r.retire_at FROM rotations r JOIN certificates c ON c.id = r.old_id \
             WHERE r.done = 0 AND c.thing = $1 ORDER BY r.retire_at LIMIT 1",
        )
        .bind(thing)
        .fetch_optional(&mut *self.tx)
        .await?)
    }

    /// Marks a rotation as done (the caller has set the old certificate's state).
    pub async fn finish_rotation(&mut self, old_id: &str) -> Result<(), RegistryError> {
        sqlx::query("UPDATE rotations SET done = 1 WHERE old_id = $1")
            .bind(old_id)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }
}
