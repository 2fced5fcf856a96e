//! Audit checkpoints: the audit chain's length and head hash at a moment,
//! MACed with a key derived from the CA passphrase (which is not in the
//! database), to keep outside the database. Whoever can write the database
//! can delete the newest records and rewrite the stored head so that the
//! chain still checks out end to end; against a checkpoint kept elsewhere,
//! every record up to it must still be there with the same hash.
//!
//! The file is JSON:
//! `{"format": "idmint-audit-checkpoint/1", "records": N, "headHash": "…",
//! "time": UNIX_SECONDS, "mac": "…"}`, the MAC being HMAC-SHA256 over the
//! format, records, head hash and time, one per line.

use serde::{Deserialize, Serialize};

use crate::{FlowError, Idmint};

/// The `format` of checkpoint files this version writes and reads.
pub const CHECKPOINT_FORMAT: &str = "idmint-audit-checkpoint/1";
const KEY_PURPOSE: &str = "idmint audit checkpoint";

/// A checkpoint of the audit chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuditCheckpoint {
    /// Always [`CHECKPOINT_FORMAT`].
    pub format: String,
    /// Records in the chain then (the head's sequence number).
    pub records: i64,
    /// The hash of record `records`.
    pub head_hash: String,
    /// When it was taken, Unix seconds.
    pub time: i64,
    /// HMAC-SHA256 (hex) over the fields above.
    pub mac: String,
}

/// What a check against a checkpoint found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "verdict")]
pub enum CheckpointVerdict {
    /// The chain is intact and holds every record up to the checkpoint
    /// unchanged; `records` is its length now.
    Intact {
        /// Records in the chain now.
        records: i64,
    },
    /// The chain no longer holds what the checkpoint saw.
    Broken {
        /// What is wrong, for a person.
        reason: String,
    },
}

fn signed_text(format: &str, records: i64, head_hash: &str, time: i64) -> String {
    format!("{format}\n{records}\n{head_hash}\n{time}")
}

impl Idmint {
    fn checkpoint_key(&self) -> Result<zeroize::Zeroizing<[u8; 32]>, FlowError> {
        let passphrase = self.passphrase()?;
        Ok(idmint_pki::derive_key(passphrase.as_bytes(), KEY_PURPOSE)?)
    }

    /// Takes a checkpoint of the audit chain now; refused if the chain is
    /// already broken (a checkpoint must not vouch for a tampered log).
    pub async fn audit_checkpoint(&self) -> Result<AuditCheckpoint, FlowError> {
        let report = self.store().verify_audit().await?;
        if let Some(fault) = &report.fault {
            return Err(FlowError::Internal(format!(
                "the audit log is broken at record {}: {}; no checkpoint taken",
                fault.seq, fault.reason
            )));
        }
        let time = idmint_registry::now();
        let text = signed_text(CHECKPOINT_FORMAT, report.records, &report.head, time);
        let mac = idmint_pki::hmac_sha256(self.checkpoint_key()?.as_ref(), text.as_bytes());
        Ok(AuditCheckpoint {
            format: CHECKPOINT_FORMAT.into(),
            records: report.records,
            head_hash: report.head,
            time,
            mac: hex::encode(mac),
        })
    }

    /// Checks the audit chain against `checkpoint`: its MAC (made with this
    /// data directory's passphrase), the chain end to end, and that record
    /// `checkpoint.records` is still there with the hash it had.
    pub async fn verify_audit_checkpoint(
        &self,
        checkpoint: &AuditCheckpoint,
    ) -> Result<CheckpointVerdict, FlowError> {
        if checkpoint.format != CHECKPOINT_FORMAT {
            return Err(FlowError::Invalid(format!(
                "checkpoint format {:?} is not {CHECKPOINT_FORMAT:?}",
                checkpoint.format
            )));
        }
        let text = signed_text(
            &checkpoint.format,
            checkpoint.records,
            &checkpoint.head_hash,
            checkpoint.time,
        );
        let mac_ok = hex::decode(&checkpoint.mac).is_ok_and(|tag| {
            self.checkpoint_key().is_ok_and(|key| {
                idmint_pki::hmac_sha256_verify(key.as_ref(), text.as_bytes(), &tag)
            })
        });
        if !mac_ok {
            return Ok(CheckpointVerdict::Broken {
                reason: "the checkpoint's MAC does not verify: it was altered, or made with another data directory's CA passphrase".into(),
            });
        }
        let report = self.store().verify_audit().await?;
        if let Some(fault) = report.fault {
            return Ok(CheckpointVerdict::Broken {
                reason: format!("record {}: {}", fault.seq, fault.reason),
            });
        }
        if report.records < checkpoint.records {
            return Ok(CheckpointVerdict::Broken {
                reason: format!(
                    "the log holds {} records but had {} at the checkpoint: records were removed from the end and the head rewritten",
                    report.records, checkpoint.records
                ),
            });
        }
        if checkpoint.records > 0 {
            let at = self
                .store()
                .audit_records(checkpoint.records - 1, 1)
                .await?
                .into_iter()
                .next()
                .filter(|r| r.seq == checkpoint.records);
            if at.is_none_or(|r| r.hash != checkpoint.head_hash) {
                return Ok(CheckpointVerdict::Broken {
                    reason: format!(
                        "record {} is not the one the checkpoint saw: the log was rewritten up to it",
                        checkpoint.records
                    ),
                });
            }
        }
        Ok(CheckpointVerdict::Intact {
            records: report.records,
        })
    }
}

/// Writes a checkpoint into `dir` as `checkpoint-<records>.json` and
/// `latest.json` (each replaced atomically) unless the log has not grown
/// past `last` records; returns the records checkpointed.
pub async fn write_checkpoint(
    idmint: &Idmint,
    dir: &std::path::Path,
    last: Option<i64>,
) -> Result<i64, FlowError> {
    let checkpoint = idmint.audit_checkpoint().await?;
    if last == Some(checkpoint.records) {
        return Ok(checkpoint.records);
    }
    std::fs::create_dir_all(dir).map_err(|e| FlowError::io(dir, e))?;
    let text = serde_json::to_string_pretty(&checkpoint)
        .map_err(|e| FlowError::Invalid(format!("checkpoint: {e}")))?;
    let named = dir.join(format!("checkpoint-{}.json", checkpoint.records));
    crate::files::replace_public(&named, text.as_bytes())?;
    crate::files::replace_public(&dir.join("latest.json"), text.as_bytes())?;
    Ok(checkpoint.records)
}

/// Writes checkpoints into `dir` every `every` until `shutdown`; a failure
/// (a broken log, an unwritable directory) is logged at error level and
/// tried again next time.
pub async fn run_checkpoints(
    idmint: std::sync::Arc<Idmint>,
    dir: std::path::PathBuf,
    every: std::time::Duration,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let mut ticks = tokio::time::interval(every.max(std::time::Duration::from_secs(1)));
    let mut last = None;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = ticks.tick() => {}
        }
        match write_checkpoint(&idmint, &dir, last).await {
            Ok(records) => {
                if last != Some(records) {
                    tracing::info!(records, dir = %dir.display(), "audit checkpoint written");
                }
                last = Some(records);
            }
            Err(e) => tracing::error!(dir = %dir.display(), "audit checkpoint failed: {e}"),
        }
    }
}
