//! Write transactions: every change to the registry, each appending its
//! audit records to the hash chain inside the same database transaction.

use idmint_types::CertificateId;
use sqlx::{Any, Row, Transaction};

use crate::audit::record_hash;
use crate::row::from_row;
use crate::store::{CERT_COLUMNS, THING_COLUMNS};
use crate::{
    now, validate_name, validate_thing_name, AuditEvent, AuditRecord, Backend, CaAdded, CaSettings,
    Certificate, CertificateStatus, NewBatch, NewCa, NewCertificate, NewThing, RegisteredDevice,
    RegistryError, StationPolicy, Store, Thing,
};

/// Rows per multi-row INSERT (at most 14 columns: well under SQLite's
/// 32,766 and PostgreSQL's 65,535 bound values per statement).
pub(crate) const ROWS_PER_INSERT: usize = 256;

/// A read-write transaction. Dropping it without [`WriteTx::commit`] rolls
/// everything back, audit records included.
pub struct WriteTx {
    pub(crate) tx: Transaction<'static, Any>,
    /// Which database (the placeholder syntax differs).
    pub(crate) backend: Backend,
    /// Held until commit or drop (SQLite: this process's writer queue).
    _gate: Option<tokio::sync::OwnedMutexGuard<()>>,
    actor: String,
    seq: i64,
    head: String,
    pending: Vec<AuditRecord>,
}

impl WriteTx {
    pub(crate) async fn begin(store: &Store, actor: &str) -> Result<Self, RegistryError> {
        let gate = store.lock_writers().await?;
        let mut tx = store.writer.begin().await?;
        // Taking the write lock first (a row lock on PostgreSQL, the database
        // write lock on SQLite) orders all writers along the audit chain.
        let row = sqlx::query("UPDATE chain_head SET seq = seq WHERE id = 1 RETURNING seq, hash")
            .fetch_one(&mut *tx)
            .await?;
        Ok(WriteTx {
            tx,
            backend: store.backend(),
            _gate: gate,
            actor: actor.to_string(),
            seq: row.try_get(0)?,
            head: row.try_get(1)?,
            pending: Vec::new(),
        })
    }

    /// Who this transaction acts for.
    pub fn actor(&self) -> &str {
        &self.actor
    }

    /// Names `actor` in the audit records appended from now on (one
    /// transaction writing several callers' changes, each under its own name).
    pub fn set_actor(&mut self, actor: &str) {
        actor.clone_into(&mut self.actor);
    }

    /// Appends the audit record of `event` on `subject` (written at
    /// commit): its action, and its details as JSON text.
    pub fn audit(&mut self, subject: &str, event: AuditEvent) {
        self.seq += 1;
        let time = now();
        let action = event.action();
        let details = event.details().to_string();
        let hash = record_hash(
            self.seq,
            time,
            &self.actor,
            action,
            subject,
            &details,
            &self.head,
        );
        let record = AuditRecord {
            seq: self.seq,
            time,
            actor: self.actor.clone(),
            action: action.to_string(),
            subject: subject.to_string(),
            details,
            prev_hash: std::mem::replace(&mut self.head, hash.clone()),
            hash,
        };
        self.pending.push(record);
    }

    /// Writes the audit records and commits.
    pub async fn commit(mut self) -> Result<(), RegistryError> {
        self.flush_audit().await?;
        sqlx::query("UPDATE chain_head SET seq = $1, hash = $2 WHERE id = 1")
            .bind(self.seq)
            .bind(&self.head)
            .execute(&mut *self.tx)
            .await?;
        self.tx.commit().await?;
        Ok(())
    }

    async fn flush_audit(&mut self) -> Result<(), RegistryError> {
        let pending = std::mem::take(&mut self.pending);
        for chunk in pending.chunks(ROWS_PER_INSERT) {
            let sql = multi_insert(
                self.backend,
                "INSERT INTO audit_log (seq, time, actor, action, subject, details, prev_hash, hash) VALUES ",
                8,
                chunk.len(),
            );
            let mut q = sqlx::query(&sql);
            for r in chunk {
                q = q
                    .bind(r.seq)
                    .bind(r.time)
                    .bind(r.actor.as_str())
                    .bind(r.action.as_str())
                    .bind(r.subject.as_str())
                    .bind(r.details.as_str())
                    .bind(r.prev_hash.as_str())
                    .bind(r.hash.as_str());
            }
            q.execute(&mut *self.tx).await?;
        }
        Ok(())
    }

    /// A thing, read inside this transaction. (While a write transaction
    /// is open, read through it, not through the [`Store`]: the store's
    /// pool may be exhausted by writers queued behind this one.)
    pub async fn thing(&mut self, name: &str) -> Result<Option<Thing>, RegistryError> {
        let sql = format!("SELECT {THING_COLUMNS} FROM things WHERE name = $1");
        let row = sqlx::query(&sql)
            .bind(name)
            .fetch_optional(&mut *self.tx)
            .await?;
        row.as_ref().map(from_row::<Thing>).transpose()
    }

    /// A certificate, read inside this transaction.
    pub async fn certificate(
        &mut self,
        id: &CertificateId,
    ) -> Result<Option<Certificate>, RegistryError> {
        let sql = format!("SELECT {CERT_COLUMNS} FROM certificates WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id.as_str())
            .fetch_optional(&mut *self.tx)
            .await?;
        row.as_ref().map(from_row::<Certificate>).transpose()
    }

    /// Revokes CA `name` (one of ours with a parent: a root is retired by
    /// no longer trusting it, not by a CRL) for `reason`; audited
    /// `ca.revoke`. Fails if it is unknown, a root, an outside CA, or
    /// already revoked.
    pub async fn revoke_ca(
        &mut self,
        name: &str,
        reason: crate::RevocationReason,
    ) -> Result<(), RegistryError> {
        let done = sqlx::query(
            "UPDATE cas SET revoked_at = $1, revocation_reason = $2 WHERE name = $3 AND revoked_at IS NULL \
             AND parent IS NOT NULL AND parent <> name AND kind NOT IN ('external', 'tpm-ek')",
        )
        .bind(now())
        .bind(reason.as_str())
        .bind(name)
        .execute(&mut *self.tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(RegistryError::InvalidTransition {
                id: name.into(),
                from: "not a revocable CA (unknown, a root, an outside CA, or already revoked)"
                    .into(),
                to: "REVOKED".into(),
            });
        }
        self.audit(name, AuditEvent::CaRevoke { reason });
        Ok(())
    }

    /// Adds a CA.
    pub async fn insert_ca(&mut self, ca: &NewCa) -> Result<(), RegistryError> {
        validate_name("CA name", &ca.name)?;
        let now = now();
        sqlx::query(
            "INSERT INTO cas (name, kind, parent, certificate_der, certificate_id, subject, key_type, not_before, not_after, key_ref, signer_der, created) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(ca.name.as_str())
        .bind(ca.kind.as_str())
        .bind(ca.parent.as_deref())
        .bind(ca.certificate_der.as_slice())
        .bind(ca.id.as_str())
        .bind(ca.subject.as_str())
        .bind(ca.key_type.as_deref())
        .bind(ca.not_before)
        .bind(ca.not_after)
        .bind(ca.key_ref.as_deref())
        .bind(ca.signer_der.as_deref())
        .bind(now)
        .execute(&mut *self.tx)
        .await
        .map_err(|e| unique_to(e, "CA", &ca.name))?;
        let added = CaAdded {
            kind: ca.kind,
            subject: ca.subject.clone(),
            certificate_id: ca.id.clone(),
            parent: ca.parent.clone(),
        };
        let event = if ca.kind.is_outside() {
            AuditEvent::CaRegister(added)
        } else {
            AuditEvent::CaCreate(added)
        };
        self.audit(&ca.name, event);
        Ok(())
    }

    /// Sets a CA's auto-registration (JITP) settings.
    pub async fn set_ca_auto_register(
        &mut self,
        name: &str,
        auto_register: bool,
        template: Option<&str>,
    ) -> Result<(), RegistryError> {
        let done = sqlx::query("UPDATE cas SET auto_register = $1, template = $2 WHERE name = $3")
            .bind(i64::from(auto_register))
            .bind(template)
            .bind(name)
            .execute(&mut *self.tx)
            .await?;
        changed(done, "CA", name)?;
        self.audit(
            name,
            AuditEvent::CaUpdate(CaSettings::AutoRegister {
                auto_register,
                template: template.map(str::to_string),
            }),
        );
        Ok(())
    }

    /// Increments and returns a CA's CRL number.
    pub async fn next_crl_number(&mut self, ca: &str) -> Result<i64, RegistryError> {
        let row = sqlx::query(
            "UPDATE cas SET crl_number = crl_number + 1 WHERE name = $1 RETURNING crl_number",
        )
        .bind(ca)
        .fetch_optional(&mut *self.tx)
        .await?
        .ok_or_else(|| RegistryError::NotFound {
            kind: "CA",
            name: ca.into(),
        })?;
        let n: i64 = row.try_get(0)?;
        self.audit(ca, AuditEvent::CrlIssue { crl_number: n });
        Ok(n)
    }

    /// Creates a thing, or updates its type, attributes, device id and batch.
    pub async fn upsert_thing(&mut self, thing: &NewThing) -> Result<(), RegistryError> {
        let now = now();
        let attributes = serde_json::to_string(&thing.attributes)
            .map_err(|e| RegistryError::Corrupt(e.to_string()))?;
        sqlx::query(
            "INSERT INTO things (name, thing_type, attributes, device_id, batch, created, updated) VALUES ($1, $2, $3, $4, $5, $6, $6) \
             ON CONFLICT (name) DO UPDATE SET thing_type = excluded.thing_type, attributes = excluded.attributes, \
             device_id = COALESCE(excluded.device_id, things.device_id), batch = COALESCE(excluded.batch, things.batch), updated = excluded.updated",
        )
        .bind(thing.name.as_str())
        .bind(thing.thing_type.as_deref())
        .bind(attributes.as_str())
        .bind(thing.device_id.as_deref())
        .bind(thing.batch.as_deref())
        .bind(now)
        .execute(&mut *self.tx)
        .await
        .map_err(|e| unique_to(e, "device id", thing.device_id.as_deref().unwrap_or(&thing.name)))?;
        self.audit(
            &thing.name,
            AuditEvent::ThingUpsert {
                thing_type: thing.thing_type.clone(),
                attributes: thing.attributes.clone(),
                device_id: thing.device_id.clone(),
                batch: thing.batch.clone(),
            },
        );
        Ok(())
    }

    /// Creates many new things at once (bulk issuance). Things that already
    /// exist are left as they are; a device id already taken is an error.
    /// Returns the names of the things created (the caller decides whether
    /// an existing one may be attached to).
    pub async fn insert_things(
        &mut self,
        things: &[NewThing],
    ) -> Result<Vec<String>, RegistryError> {
        let created = self.insert_thing_rows(things).await?;
        for name in &created {
            self.audit(name, AuditEvent::ThingCreate {});
        }
        Ok(created)
    }

    /// [`WriteTx::insert_things`] without the audit records (the caller
    /// writes its own); returns the names of the things created.
    pub(crate) async fn insert_thing_rows(
        &mut self,
        things: &[NewThing],
    ) -> Result<Vec<String>, RegistryError> {
        let now = now();
        let mut names = Vec::with_capacity(things.len());
        for chunk in things.chunks(ROWS_PER_INSERT) {
            let sql = multi_insert(
                self.backend,
                "INSERT INTO things (name, thing_type, attributes, device_id, batch, created, updated) VALUES ",
                7,
                chunk.len(),
            ) + " ON CONFLICT (name) DO NOTHING RETURNING name";
            let mut attrs = Vec::with_capacity(chunk.len());
            for t in chunk {
                attrs.push(
                    serde_json::to_string(&t.attributes)
                        .map_err(|e| RegistryError::Corrupt(e.to_string()))?,
                );
            }
            let mut q = sqlx::query(&sql);
            for (t, a) in chunk.iter().zip(&attrs) {
                q = q
                    .bind(t.name.as_str())
                    .bind(t.thing_type.as_deref())
                    .bind(a.as_str())
                    .bind(t.device_id.as_deref())
                    .bind(t.batch.as_deref())
                    .bind(now)
                    .bind(now);
            }
            let created = q
                .fetch_all(&mut *self.tx)
                .await
                .map_err(|e| unique_to(e, "device id", "in this batch"))?;
            for row in created {
                names.push(row.try_get(0)?);
            }
        }
        Ok(names)
    }

    /// Registers certificates (one audit record each).
    pub async fn insert_certificates(
        &mut self,
        certs: &[NewCertificate],
    ) -> Result<(), RegistryError> {
        self.insert_certificate_rows(certs).await?;
        for c in certs {
            self.audit(
                &c.id,
                AuditEvent::CertificateRegister {
                    serial: c.serial.clone(),
                    ca: c.ca.clone(),
                    thing: c.thing.clone(),
                    status: c.status,
                    batch: c.batch.clone(),
                    subject: c.subject.clone(),
                },
            );
        }
        Ok(())
    }

    /// [`WriteTx::insert_certificates`] without the audit records (the
    /// caller writes its own).
    pub(crate) async fn insert_certificate_rows(
        &mut self,
        certs: &[NewCertificate],
    ) -> Result<(), RegistryError> {
        self.refuse_clones(certs).await?;
        let now = now();
        for chunk in certs.chunks(ROWS_PER_INSERT) {
            let sql = multi_insert(
                self.backend,
                "INSERT INTO certificates (id, serial, ca, thing, status, subject, key_type, not_before, not_after, public_key_sha256, batch, der, created, updated) VALUES ",
                14,
                chunk.len(),
            );
            let mut q = sqlx::query(&sql);
            for c in chunk {
                q = q
                    .bind(c.id.as_str())
                    .bind(c.serial.as_str())
                    .bind(c.ca.as_str())
                    .bind(c.thing.as_deref())
                    .bind(c.status.as_str())
                    .bind(c.subject.as_str())
                    .bind(c.key_type.as_deref())
                    .bind(c.not_before)
                    .bind(c.not_after)
                    .bind(c.public_key_sha256.as_str())
                    .bind(c.batch.as_deref())
                    .bind(c.der.as_slice())
                    .bind(now)
                    .bind(now);
            }
            q.execute(&mut *self.tx).await.map_err(|e| {
                if is_violation_of(&e, LIVE_KEY_INDEX) {
                    // Only a writer outside the audit chain's lock gets
                    // here: `refuse_clones` has seen every committed row.
                    return RegistryError::Clone {
                        public_key_sha256: chunk
                            .first()
                            .map(|c| c.public_key_sha256.clone())
                            .unwrap_or_default(),
                        existing_certificate: None,
                    };
                }
                unique_to(
                    e,
                    "certificate",
                    chunk.first().map(|c| c.id.as_str()).unwrap_or(""),
                )
            })?;
        }
        Ok(())
    }

    /// The registry's one clone decision, made inside the issuing
    /// transaction for every certificate any flow registers (EST, the REST
    /// API, stations, mint, manifest import, offline reconcile, fleet, JITP):
    /// a live certificate (`ACTIVE`, `INACTIVE`, `PENDING_ACTIVATION`) whose
    /// public key a live certificate of another thing (or of no thing)
    /// already holds, or that appears twice in `certs`, is
    /// [`RegistryError::Clone`].
    ///
    /// The same key certified again for the same thing is a renewal, not a
    /// clone (RFC 7030 `simplereenroll` may keep the key): the older
    /// certificate is marked superseded by the new one (audited
    /// `certificate.superseded`) and keeps its status, so an overlap or
    /// rotation retires it as it would a certificate of another key.
    ///
    /// Every write transaction holds the audit chain's lock from its first
    /// statement, so this read sees every committed certificate; the partial
    /// unique index `certificates_live_public_key` backs it in the store.
    async fn refuse_clones(&mut self, certs: &[NewCertificate]) -> Result<(), RegistryError> {
        let mut seen: std::collections::HashMap<&str, &str> = std::collections::HashMap::new();
        let live: Vec<&NewCertificate> = certs
            .iter()
            .filter(|c| c.status != CertificateStatus::Revoked)
            .collect();
        for c in &live {
            if let Some(first) = seen.insert(c.public_key_sha256.as_str(), c.id.as_str()) {
                return Err(RegistryError::Clone {
                    public_key_sha256: c.public_key_sha256.clone(),
                    existing_certificate: Some(first.to_string()),
                });
            }
        }
        for chunk in live.chunks(ROWS_PER_INSERT) {
            let mut sql = String::from(
                "SELECT id, thing, public_key_sha256 FROM certificates WHERE status IN ('ACTIVE', 'INACTIVE', 'PENDING_ACTIVATION') AND public_key_sha256 IN ",
            );
            sql.push_str(&placeholder_groups(self.backend, chunk.len(), 1));
            let mut q = sqlx::query(&sql);
            for c in chunk {
                q = q.bind(c.public_key_sha256.as_str());
            }
            let held = q.fetch_all(&mut *self.tx).await?;
            let mut renewals: Vec<(String, String)> = Vec::new();
            for row in &held {
                let existing: String = row.try_get(0)?;
                let owner: Option<String> = row.try_get(1)?;
                let key: String = row.try_get(2)?;
                let Some(new) = chunk.iter().find(|c| c.public_key_sha256 == key) else {
                    continue;
                };
                match (&new.thing, &owner) {
                    (Some(t), Some(o)) if t == o => renewals.push((existing, new.id.to_string())),
                    _ => {
                        return Err(RegistryError::Clone {
                            public_key_sha256: key,
                            existing_certificate: Some(existing),
                        })
                    }
                }
            }
            for (old, new) in renewals {
                let done = sqlx::query(
                    "UPDATE certificates SET superseded_by = $1, updated = $2 WHERE id = $3 AND superseded_by IS NULL",
                )
                .bind(new.as_str())
                .bind(now())
                .bind(old.as_str())
                .execute(&mut *self.tx)
                .await?;
                if done.rows_affected() == 1 {
                    self.audit(
                        &old,
                        AuditEvent::CertificateSuperseded {
                            by: new,
                            reason: "the same key certified again for the same thing".into(),
                        },
                    );
                }
            }
        }
        Ok(())
    }

    /// Registers new devices in bulk: for each, its thing (left as it is if
    /// it exists) and its certificate, attached, with one audit record
    /// (`event`, e.g. [`AuditEvent::CertificateIssue`], subject the
    /// certificate id) naming both. The slices are parallel: entry `i` of
    /// each is one device.
    pub async fn register_devices(
        &mut self,
        event: fn(RegisteredDevice) -> AuditEvent,
        things: &[NewThing],
        certificates: &[NewCertificate],
    ) -> Result<(), RegistryError> {
        if things.len() != certificates.len() {
            return Err(RegistryError::Corrupt(format!(
                "{} things and {} certificates are not one per device",
                things.len(),
                certificates.len()
            )));
        }
        let created: std::collections::HashSet<String> =
            self.insert_thing_rows(things).await?.into_iter().collect();
        self.insert_certificate_rows(certificates).await?;
        for (t, c) in things.iter().zip(certificates) {
            self.audit(
                &c.id,
                event(RegisteredDevice {
                    thing: t.name.clone(),
                    new_thing: created.contains(t.name.as_str()),
                    device_id: t.device_id.clone(),
                    serial: c.serial.clone(),
                    ca: c.ca.clone(),
                    status: c.status,
                    batch: c.batch.clone(),
                    subject: c.subject.clone(),
                }),
            );
        }
        Ok(())
    }

    /// Registers one certificate.
    pub async fn insert_certificate(&mut self, cert: &NewCertificate) -> Result<(), RegistryError> {
        self.insert_certificates(std::slice::from_ref(cert)).await
    }

    /// Changes a certificate's state; revocation records when and why.
    pub async fn set_certificate_status(
        &mut self,
        id: &CertificateId,
        status: CertificateStatus,
        reason: Option<crate::RevocationReason>,
    ) -> Result<(), RegistryError> {
        let row = sqlx::query("SELECT status FROM certificates WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(&mut *self.tx)
            .await?
            .ok_or_else(|| RegistryError::NotFound {
                kind: "certificate",
                name: id.to_string(),
            })?;
        let current: String = row.try_get(0)?;
        let current: CertificateStatus = current.parse().map_err(RegistryError::Corrupt)?;
        if current == CertificateStatus::Revoked && status != CertificateStatus::Revoked {
            return Err(RegistryError::InvalidTransition {
                id: id.to_string(),
                from: current.to_string(),
                to: status.to_string(),
            });
        }
        let now = now();
        let (revoked_at, reason) = if status == CertificateStatus::Revoked {
            (
                Some(now),
                Some(reason.unwrap_or(crate::RevocationReason::Unspecified)),
            )
        } else {
            (None, None)
        };
        sqlx::query(
            "UPDATE certificates SET status = $1, updated = $2, revoked_at = COALESCE(revoked_at, $3), revocation_reason = COALESCE(revocation_reason, $4) WHERE id = $5",
        )
        .bind(status.as_str())
        .bind(now)
        .bind(revoked_at)
        .bind(reason.map(crate::RevocationReason::as_str))
        .bind(id.as_str())
        .execute(&mut *self.tx)
        .await?;
        self.audit(
            id,
            AuditEvent::CertificateStatus {
                from: current,
                to: status,
                reason,
            },
        );
        Ok(())
    }

    /// Attaches a certificate to a thing.
    pub async fn attach_certificate(&mut self, id: &str, thing: &str) -> Result<(), RegistryError> {
        validate_thing_name(thing)?;
        let done = sqlx::query("UPDATE certificates SET thing = $1, updated = $2 WHERE id = $3")
            .bind(thing)
            .bind(now())
            .bind(id)
            .execute(&mut *self.tx)
            .await?;
        changed(done, "certificate", id)?;
        self.audit(
            id,
            AuditEvent::CertificateAttach {
                thing: thing.to_string(),
            },
        );
        Ok(())
    }

    /// Removes a certificate that never became usable (e.g. a fleet
    /// provisioning certificate whose ownership token expired).
    pub async fn delete_certificate(&mut self, id: &str, why: &str) -> Result<(), RegistryError> {
        let done = sqlx::query("DELETE FROM certificates WHERE id = $1")
            .bind(id)
            .execute(&mut *self.tx)
            .await?;
        changed(done, "certificate", id)?;
        self.audit(
            id,
            AuditEvent::CertificateDelete {
                reason: why.to_string(),
            },
        );
        Ok(())
    }

    /// Creates a batch.
    pub async fn insert_batch(&mut self, batch: &NewBatch) -> Result<(), RegistryError> {
        let now = now();
        sqlx::query(
            "INSERT INTO batches (id, kind, product, quota, profile, ca, factory, state, allow_inject, params, created, updated) VALUES ($1, $2, $3, $4, $5, $6, $7, 'OPEN', $8, $9, $10, $10)",
        )
        .bind(batch.id.as_str())
        .bind(batch.kind.as_str())
        .bind(batch.product.as_str())
        .bind(batch.count)
        .bind(batch.profile.as_str())
        .bind(batch.ca.as_str())
        .bind(batch.factory.as_deref())
        .bind(i64::from(batch.allow_inject))
        .bind(batch.params.to_string())
        .bind(now)
        .execute(&mut *self.tx)
        .await
        .map_err(|e| unique_to(e, "batch", &batch.id))?;
        self.audit(
            &batch.id,
            AuditEvent::BatchCreate {
                kind: batch.kind,
                product: batch.product.clone(),
                count: batch.count,
                profile: batch.profile.clone(),
                ca: batch.ca.clone(),
                factory: batch.factory.clone(),
                allow_inject: batch.allow_inject,
            },
        );
        Ok(())
    }

    /// Sets a batch's station policy (audited `batch.policy`).
    pub async fn set_batch_policy(
        &mut self,
        batch: &str,
        policy: StationPolicy,
    ) -> Result<(), RegistryError> {
        let done = sqlx::query(
            "UPDATE batches SET pending_activation = $1, refuse_clones = $2, updated = $3 WHERE id = $4",
        )
        .bind(i64::from(policy.pending_activation))
        .bind(i64::from(policy.refuse_clones))
        .bind(now())
        .bind(batch)
        .execute(&mut *self.tx)
        .await?;
        changed(done, "batch", batch)?;
        self.audit(
            batch,
            AuditEvent::BatchPolicy {
                pending_activation: policy.pending_activation,
                refuse_clones: policy.refuse_clones,
            },
        );
        Ok(())
    }

    /// Takes `n` identities from a batch's quota, atomically: fails with
    /// `QuotaExhausted` (and takes nothing) if fewer than `n` remain.
    ///
    /// The one quota rule of the registry, for every kind of batch:
    /// `issued + n <= quota`. A spoiled identity (a certificate issued that
    /// never reached its device) consumed a certificate and keeps counting,
    /// so a quota of N means at most N certificates are ever issued for the
    /// batch: the overproduction guarantee. Replacing spoiled identities
    /// takes an explicit, audited [`WriteTx::raise_quota`].
    pub async fn reserve_quota(&mut self, batch: &str, n: i64) -> Result<(), RegistryError> {
        let done = sqlx::query(
            "UPDATE batches SET issued = issued + $1, updated = $2 WHERE id = $3 AND issued + $1 <= quota AND state = 'OPEN'",
        )
        .bind(n)
        .bind(now())
        .bind(batch)
        .execute(&mut *self.tx)
        .await?;
        if done.rows_affected() == 1 {
            return Ok(());
        }
        let row = sqlx::query("SELECT quota, issued, state FROM batches WHERE id = $1")
            .bind(batch)
            .fetch_optional(&mut *self.tx)
            .await?
            .ok_or_else(|| RegistryError::NotFound {
                kind: "batch",
                name: batch.into(),
            })?;
        Err(RegistryError::QuotaExhausted {
            batch: batch.into(),
            quota: row.try_get(0)?,
            issued: row.try_get(1)?,
            requested: n,
        })
    }

    /// Raises a batch's quota by `n` (audited `batch.quota`, with why): the
    /// maker's explicit decision to issue replacements, e.g. for device
    /// images lost before a mint batch completed.
    pub async fn raise_quota(
        &mut self,
        batch: &str,
        n: i64,
        why: &str,
    ) -> Result<(), RegistryError> {
        let done = sqlx::query("UPDATE batches SET quota = quota + $1, updated = $2 WHERE id = $3")
            .bind(n)
            .bind(now())
            .bind(batch)
            .execute(&mut *self.tx)
            .await?;
        changed(done, "batch", batch)?;
        self.audit(
            batch,
            AuditEvent::BatchQuota {
                raised_by: n,
                reason: why.to_string(),
            },
        );
        Ok(())
    }

    /// Records `n` identities of a batch as spoiled (issued, never installed).
    /// They stay counted in `issued` (see [`WriteTx::reserve_quota`]).
    pub async fn add_spoiled(
        &mut self,
        batch: &str,
        n: i64,
        why: &str,
    ) -> Result<(), RegistryError> {
        sqlx::query("UPDATE batches SET spoiled = spoiled + $1, updated = $2 WHERE id = $3")
            .bind(n)
            .bind(now())
            .bind(batch)
            .execute(&mut *self.tx)
            .await?;
        self.audit(
            batch,
            AuditEvent::BatchSpoiled {
                count: n,
                reason: why.to_string(),
            },
        );
        Ok(())
    }

    /// Sets a batch's state (`OPEN`, `COMPLETE`, `CLOSED`, ...) and
    /// flow parameters.
    pub async fn set_batch_state(
        &mut self,
        batch: &str,
        state: &str,
        params: Option<&serde_json::Value>,
    ) -> Result<(), RegistryError> {
        let done = sqlx::query("UPDATE batches SET state = $1, params = COALESCE($2, params), updated = $3 WHERE id = $4")
            .bind(state)
            .bind(params.map(|p| p.to_string()))
            .bind(now())
            .bind(batch)
            .execute(&mut *self.tx)
            .await?;
        changed(done, "batch", batch)?;
        self.audit(
            batch,
            AuditEvent::BatchState {
                state: state.to_string(),
            },
        );
        Ok(())
    }
}

/// `prefix` followed by `rows` groups of `columns` placeholders.
pub(crate) fn multi_insert(backend: Backend, prefix: &str, columns: usize, rows: usize) -> String {
    let mut sql = String::from(prefix);
    sql.push_str(&placeholder_groups(backend, columns, rows));
    sql
}

/// `rows` parenthesised groups of `columns` placeholders, comma-separated,
/// bound in order: plain `?` on SQLite (a `$N` name costs SQLite a walk of
/// the statement's parameter list for every value bound, quadratic in a
/// multi-row INSERT), `$1` … `$n` on PostgreSQL.
pub(crate) fn placeholder_groups(backend: Backend, columns: usize, rows: usize) -> String {
    let mut sql = String::with_capacity(rows * (columns * 6 + 3));
    let mut n = 0;
    for r in 0..rows {
        if r > 0 {
            sql.push(',');
        }
        sql.push('(');
        for c in 0..columns {
            if c > 0 {
                sql.push(',');
            }
            n += 1;
            match backend {
                Backend::Sqlite => sql.push('?'),
                Backend::Postgres => {
                    sql.push('$');
                    sql.push_str(&n.to_string());
                }
            }
        }
        sql.push(')');
    }
    sql
}

/// `NotFound` unless a statement changed at least one row.
pub(crate) fn changed(
    done: sqlx::any::AnyQueryResult,
    kind: &'static str,
    name: &str,
) -> Result<(), RegistryError> {
    if done.rows_affected() == 0 {
        return Err(RegistryError::NotFound {
            kind,
            name: name.to_string(),
        });
    }
    Ok(())
}

/// The partial unique index on the public keys of live certificates.
const LIVE_KEY_INDEX: &str = "certificates_live_public_key";

/// Whether `e` is a unique violation of the index `name` (PostgreSQL names
/// it; SQLite's writers are serialised before `refuse_clones` reads).
fn is_violation_of(e: &sqlx::Error, name: &str) -> bool {
    e.as_database_error()
        .is_some_and(|db| db.is_unique_violation() && db.constraint() == Some(name))
}

pub(crate) fn unique_to(e: sqlx::Error, kind: &'static str, name: &str) -> RegistryError {
    match e.as_database_error() {
        Some(db) if db.is_unique_violation() => RegistryError::AlreadyExists {
            kind,
            name: name.to_string(),
        },
        _ => RegistryError::Store(e),
    }
}
