//! Offline batches (scenarios 2 and 4 without a line to the maker): the
//! authorizations the maker signed for a factory, and the issuance log
//! records reconciled from the factory's offline station.
//!
//! The batch itself is an ordinary [`crate::Batch`] of kind
//! `authorization` (its quota is the authorized count) and its batch CA an
//! ordinary CA of kind `batch` with no key: the maker never holds the batch
//! CA's private key. This module adds what only offline batches have.

use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row;
use time::OffsetDateTime;

use crate::row::{from_row, time};
use crate::write::{multi_insert, unique_to, ROWS_PER_INSERT};
use crate::{now, validate_name, AuditEvent, RegistryError, Store, WriteTx};

/// An offline batch authorization as the maker registered it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OfflineAuthorization {
    /// The batch id (a batch of kind `authorization`).
    pub batch: String,
    /// Lowercase hex SHA-256 of the signed limits document: what the
    /// factory's issuance log chains from.
    pub authorization_id: String,
    /// The batch CA's registry name.
    pub batch_ca: String,
    /// First device serial number the factory may use.
    pub serial_first: i64,
    /// Last device serial number the factory may use (inclusive).
    pub serial_last: i64,
    /// Start of the issuance window, Unix seconds.
    pub not_before: i64,
    /// End of the issuance window (the batch CA's expiry), Unix seconds.
    pub not_after: i64,
    /// The signed limits document (JSON text, exactly as signed).
    pub limits: String,
    /// The maker CA's signature over the limits, base64.
    pub signature: String,
    /// Where the batch CA key went: `age` or `pkcs11`.
    pub key_kind: String,
    /// When it was created.
    #[serde(with = "time::serde::rfc3339")]
    pub created: OffsetDateTime,
}

/// An authorization to register.
#[derive(Clone, Debug)]
pub struct NewOfflineAuthorization {
    /// The batch id (the batch must be inserted in the same transaction).
    pub batch: String,
    /// SHA-256 of the signed limits, hex.
    pub authorization_id: String,
    /// The batch CA's registry name.
    pub batch_ca: String,
    /// First device serial number.
    pub serial_first: i64,
    /// Last device serial number (inclusive).
    pub serial_last: i64,
    /// Issuance window start, Unix seconds.
    pub not_before: i64,
    /// Issuance window end, Unix seconds.
    pub not_after: i64,
    /// The signed limits document.
    pub limits: String,
    /// The signature, base64.
    pub signature: String,
    /// `age` or `pkcs11`.
    pub key_kind: String,
}

/// What kind of problem reconcile (or a restarting station) found in an
/// offline issuance log. Stored by name (`duplicate`, `excess`, ...) with
/// the records a reconcile registered anyway.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FindingKind {
    /// A line that is not a log record.
    Malformed,
    /// The log was cut short.
    Truncated,
    /// Records out of order.
    Reordered,
    /// Records (or device serial numbers) missing.
    Gap,
    /// A record whose content does not match its hash or the chain, or
    /// that contradicts the records before it.
    Edited,
    /// A record not signed by the authorization's batch CA.
    Signature,
    /// A log, or a record, from another authorization.
    Foreign,
    /// A log that disagrees with one reconciled before.
    Fork,
    /// The same public key or hardware id twice (a clone).
    Duplicate,
    /// More than the authorization allows: over the count, outside the
    /// serial range or the issuance window.
    Excess,
}

impl FindingKind {
    /// Every kind, in declaration order.
    pub const ALL: [FindingKind; 10] = [
        FindingKind::Malformed,
        FindingKind::Truncated,
        FindingKind::Reordered,
        FindingKind::Gap,
        FindingKind::Edited,
        FindingKind::Signature,
        FindingKind::Foreign,
        FindingKind::Fork,
        FindingKind::Duplicate,
        FindingKind::Excess,
    ];

    /// Whether a finding of this kind rejects the log as a whole (nothing
    /// registered): every kind but duplicates and excess, which are
    /// registered (revoked) and reported. (Skipped device serial numbers
    /// are a `gap` finding made with `rejects` false: reported only.)
    pub fn rejects(self) -> bool {
        !matches!(self, FindingKind::Duplicate | FindingKind::Excess)
    }

    /// The kind's name, as reports and the registry write it.
    pub fn as_str(self) -> &'static str {
        match self {
            FindingKind::Malformed => "malformed",
            FindingKind::Truncated => "truncated",
            FindingKind::Reordered => "reordered",
            FindingKind::Gap => "gap",
            FindingKind::Edited => "edited",
            FindingKind::Signature => "signature",
            FindingKind::Foreign => "foreign",
            FindingKind::Fork => "fork",
            FindingKind::Duplicate => "duplicate",
            FindingKind::Excess => "excess",
        }
    }
}

impl std::fmt::Display for FindingKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for FindingKind {
    type Err = String;

    fn from_str(s: &str) -> Result<FindingKind, String> {
        FindingKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("{s:?} is not a kind of offline log finding"))
    }
}

/// What reconcile found wrong with a record it registered anyway (a clone
/// or an excess certificate, registered revoked).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RecordFinding {
    /// What kind of problem.
    pub kind: FindingKind,
    /// What is wrong, for a person.
    pub message: String,
}

/// One issuance log record a reconcile accepted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReconciledRecord {
    /// The batch.
    pub batch: String,
    /// Position in the log, from 1.
    pub seq: i64,
    /// The record's hash, hex.
    pub hash: String,
    /// `issued`, `provisioned`, `spoiled` or `closed`.
    pub event: String,
    /// The certificate it concerns, if any.
    pub certificate_id: Option<String>,
    /// The device serial number, for `issued`.
    pub serial: Option<i64>,
    /// The hardware id, for `issued`.
    pub hw_id: Option<String>,
    /// What reconcile found wrong with it (duplicate, excess), if
    /// anything: reported again by every later reconcile of the log.
    pub finding: Option<RecordFinding>,
    /// When it was reconciled, Unix seconds.
    pub reconciled: i64,
}

/// What an offline batch CA signed at `batch authorize`, before its key left
/// the maker: a delegated OCSP responder and a CRL signer, whose keys the
/// maker keeps (encrypted under the CA passphrase), and the CRL that covers
/// the CRL signer itself. `Debug` leaves the (encrypted) keys out.
#[derive(Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct RevocationSigners {
    /// The batch CA's registry name.
    pub ca: String,
    /// The delegated OCSP responder certificate, DER.
    pub ocsp_responder_der: Vec<u8>,
    /// Its key: PKCS#8 `ENCRYPTED PRIVATE KEY` PEM.
    pub ocsp_responder_key: String,
    /// The CRL signer certificate, DER.
    pub crl_signer_der: Vec<u8>,
    /// Its key: PKCS#8 `ENCRYPTED PRIVATE KEY` PEM.
    pub crl_signer_key: String,
    /// The URI the CRL signer names as its CRL distribution point.
    pub signer_status_url: String,
    /// The CRL (DER) the batch CA signed for its lifetime covering the CRL
    /// signer certificate.
    pub signer_status_crl: Vec<u8>,
    /// When they were registered, Unix seconds.
    pub created: i64,
}

impl std::fmt::Debug for RevocationSigners {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RevocationSigners")
            .field("ca", &self.ca)
            .field("signer_status_url", &self.signer_status_url)
            .finish_non_exhaustive()
    }
}

const AUTH_COLUMNS: &str = "batch, authorization_id, batch_ca, serial_first, serial_last, not_before, not_after, limits, signature, key_kind, created";
const RECORD_COLUMNS: &str =
    "batch, seq, hash, event, certificate_id, serial, hw_id, finding_kind, finding, reconciled";

impl<'r> sqlx::FromRow<'r, AnyRow> for ReconciledRecord {
    fn from_row(row: &'r AnyRow) -> Result<ReconciledRecord, sqlx::Error> {
        let kind: Option<String> = row.try_get("finding_kind")?;
        let message: Option<String> = row.try_get("finding")?;
        let finding = match (kind, message) {
            (None, None) => None,
            (Some(kind), message) => Some(RecordFinding {
                kind: kind
                    .parse()
                    .map_err(|e: String| sqlx::Error::ColumnDecode {
                        index: "finding_kind".into(),
                        source: e.into(),
                    })?,
                message: message.unwrap_or_default(),
            }),
            (None, Some(_)) => {
                return Err(sqlx::Error::ColumnDecode {
                    index: "finding_kind".into(),
                    source: "a finding without its kind".into(),
                })
            }
        };
        Ok(ReconciledRecord {
            batch: row.try_get("batch")?,
            seq: row.try_get("seq")?,
            hash: row.try_get("hash")?,
            event: row.try_get("event")?,
            certificate_id: row.try_get("certificate_id")?,
            serial: row.try_get("serial")?,
            hw_id: row.try_get("hw_id")?,
            finding,
            reconciled: row.try_get("reconciled")?,
        })
    }
}

const SIGNER_COLUMNS: &str = "ca, ocsp_responder_der, ocsp_responder_key, crl_signer_der, crl_signer_key, signer_status_url, signer_status_crl, created";

impl<'r> sqlx::FromRow<'r, AnyRow> for OfflineAuthorization {
    fn from_row(row: &'r AnyRow) -> Result<OfflineAuthorization, sqlx::Error> {
        Ok(OfflineAuthorization {
            batch: row.try_get("batch")?,
            authorization_id: row.try_get("authorization_id")?,
            batch_ca: row.try_get("batch_ca")?,
            serial_first: row.try_get("serial_first")?,
            serial_last: row.try_get("serial_last")?,
            not_before: row.try_get("not_before")?,
            not_after: row.try_get("not_after")?,
            limits: row.try_get("limits")?,
            signature: row.try_get("signature")?,
            key_kind: row.try_get("key_kind")?,
            created: time(row, "created")?,
        })
    }
}

impl Store {
    /// The authorization of an offline batch, if it is one.
    pub async fn offline_authorization(
        &self,
        batch: &str,
    ) -> Result<Option<OfflineAuthorization>, RegistryError> {
        let sql = format!("SELECT {AUTH_COLUMNS} FROM offline_authorizations WHERE batch = $1");
        let row = sqlx::query(&sql)
            .bind(batch)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref()
            .map(from_row::<OfflineAuthorization>)
            .transpose()
    }

    /// The authorization with this id (SHA-256 of its signed limits), if
    /// this registry made it.
    pub async fn offline_authorization_by_id(
        &self,
        authorization_id: &str,
    ) -> Result<Option<OfflineAuthorization>, RegistryError> {
        let sql = format!(
            "SELECT {AUTH_COLUMNS} FROM offline_authorizations WHERE authorization_id = $1"
        );
        let row = sqlx::query(&sql)
            .bind(authorization_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref()
            .map(from_row::<OfflineAuthorization>)
            .transpose()
    }

    /// What batch CA `ca` signed for the maker to publish its revocations
    /// with; `None` for a batch authorized before there were any (or for
    /// any other CA).
    pub async fn revocation_signers(
        &self,
        ca: &str,
    ) -> Result<Option<RevocationSigners>, RegistryError> {
        let sql = format!("SELECT {SIGNER_COLUMNS} FROM offline_revocation_signers WHERE ca = $1");
        Ok(sqlx::query_as::<_, RevocationSigners>(&sql)
            .bind(ca)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// Every reconciled issuance log record of an offline batch, by seq.
    pub async fn reconciled_records(
        &self,
        batch: &str,
    ) -> Result<Vec<ReconciledRecord>, RegistryError> {
        let sql = format!(
            "SELECT {RECORD_COLUMNS} FROM offline_log_records WHERE batch = $1 ORDER BY seq"
        );
        Ok(sqlx::query_as::<_, ReconciledRecord>(&sql)
            .bind(batch)
            .fetch_all(&self.pool)
            .await?)
    }
}

impl WriteTx {
    /// Registers an offline authorization (audited `offline.authorize`).
    pub async fn insert_offline_authorization(
        &mut self,
        auth: &NewOfflineAuthorization,
    ) -> Result<(), RegistryError> {
        validate_name("batch id", &auth.batch)?;
        if auth.serial_first > auth.serial_last {
            return Err(RegistryError::Corrupt(format!(
                "serial range {}..{} is empty",
                auth.serial_first, auth.serial_last
            )));
        }
        sqlx::query(
            "INSERT INTO offline_authorizations (batch, authorization_id, batch_ca, serial_first, serial_last, not_before, not_after, limits, signature, key_kind, created) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(auth.batch.as_str())
        .bind(auth.authorization_id.as_str())
        .bind(auth.batch_ca.as_str())
        .bind(auth.serial_first)
        .bind(auth.serial_last)
        .bind(auth.not_before)
        .bind(auth.not_after)
        .bind(auth.limits.as_str())
        .bind(auth.signature.as_str())
        .bind(auth.key_kind.as_str())
        .bind(now())
        .execute(&mut *self.tx)
        .await
        .map_err(|e| unique_to(e, "offline authorization", &auth.batch))?;
        self.audit(
            &auth.batch,
            AuditEvent::OfflineAuthorize {
                authorization: auth.authorization_id.clone(),
                batch_ca: auth.batch_ca.clone(),
                serial_first: auth.serial_first,
                serial_last: auth.serial_last,
                not_before: auth.not_before,
                not_after: auth.not_after,
                key: auth.key_kind.clone(),
            },
        );
        Ok(())
    }

    /// Registers what a batch CA signed for the maker (audited
    /// `offline.revocation_signers`, naming both certificates; register
    /// the certificates themselves in the same transaction). The batch CA
    /// must be registered first.
    pub async fn insert_revocation_signers(
        &mut self,
        signers: &RevocationSigners,
        ocsp_responder_id: &str,
        crl_signer_id: &str,
    ) -> Result<(), RegistryError> {
        sqlx::query(
            "INSERT INTO offline_revocation_signers (ca, ocsp_responder_der, ocsp_responder_key, crl_signer_der, crl_signer_key, signer_status_url, signer_status_crl, created) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(signers.ca.as_str())
        .bind(signers.ocsp_responder_der.as_slice())
        .bind(signers.ocsp_responder_key.as_str())
        .bind(signers.crl_signer_der.as_slice())
        .bind(signers.crl_signer_key.as_str())
        .bind(signers.signer_status_url.as_str())
        .bind(signers.signer_status_crl.as_slice())
        .bind(signers.created)
        .execute(&mut *self.tx)
        .await
        .map_err(|e| unique_to(e, "revocation signers of CA", &signers.ca))?;
        self.audit(
            &signers.ca,
            AuditEvent::OfflineRevocationSigners {
                ocsp_responder: ocsp_responder_id.to_string(),
                crl_signer: crl_signer_id.to_string(),
                signer_status_url: signers.signer_status_url.clone(),
            },
        );
        Ok(())
    }

    /// Records reconciled issuance log records (one `offline.log` audit
    /// record per call, naming the range and the last hash). A record
    /// already stored for the same batch and seq is an error: reconcile
    /// skips those before it writes.
    pub async fn insert_reconciled_records(
        &mut self,
        records: &[ReconciledRecord],
    ) -> Result<(), RegistryError> {
        let (Some(first), Some(last)) = (records.first(), records.last()) else {
            return Ok(());
        };
        for chunk in records.chunks(ROWS_PER_INSERT) {
            let sql = multi_insert(
                self.backend,
                "INSERT INTO offline_log_records (batch, seq, hash, event, certificate_id, serial, hw_id, finding_kind, finding, reconciled) VALUES ",
                10,
                chunk.len(),
            );
            let mut q = sqlx::query(&sql);
            for r in chunk {
                q = q
                    .bind(r.batch.as_str())
                    .bind(r.seq)
                    .bind(r.hash.as_str())
                    .bind(r.event.as_str())
                    .bind(r.certificate_id.as_deref())
                    .bind(r.serial)
                    .bind(r.hw_id.as_deref())
                    .bind(r.finding.as_ref().map(|f| f.kind.as_str()))
                    .bind(r.finding.as_ref().map(|f| f.message.as_str()))
                    .bind(r.reconciled);
            }
            q.execute(&mut *self.tx).await.map_err(|e| {
                unique_to(
                    e,
                    "issuance log record",
                    &chunk
                        .first()
                        .map(|r| format!("{} #{}", r.batch, r.seq))
                        .unwrap_or_default(),
                )
            })?;
        }
        let findings = records.iter().filter(|r| r.finding.is_some()).count();
        self.audit(
            &first.batch,
            AuditEvent::OfflineLog {
                first: first.seq,
                last: last.seq,
                head: last.hash.clone(),
                records: records.len() as u64,
                findings: findings as u64,
            },
        );
        Ok(())
    }
}
