//! The audit log's hash chain: how a record's hash is computed, and the
//! end-to-end check behind `idmint audit verify`.

use serde::Serialize;

use crate::AuditRecord;

/// The hash before the first record.
pub(crate) const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// SHA-256 over the previous hash and the record's canonical content: each
/// field length-prefixed, so no two different records hash alike.
pub(crate) fn record_hash(
    seq: i64,
    time: i64,
    actor: &str,
    action: &str,
    subject: &str,
    details: &str,
    prev_hash: &str,
) -> String {
    let mut message = Vec::with_capacity(64 + details.len());
    message.extend_from_slice(b"idmint-audit-v1");
    message.extend_from_slice(&seq.to_be_bytes());
    message.extend_from_slice(&time.to_be_bytes());
    for field in [actor, action, subject, details, prev_hash] {
        message.extend_from_slice(&(field.len() as u64).to_be_bytes());
        message.extend_from_slice(field.as_bytes());
    }
    idmint_pki::sha256_hex(&message)
}

/// The first fault found in the chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditFault {
    /// The sequence number where the chain breaks.
    pub seq: i64,
    /// What is wrong there.
    pub reason: String,
}

/// The result of checking the whole chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditReport {
    /// Records checked.
    pub records: i64,
    /// The hash of the last record.
    pub head: String,
    /// The first fault, if any.
    pub fault: Option<AuditFault>,
}

impl AuditReport {
    /// Whether the chain is intact.
    pub fn intact(&self) -> bool {
        self.fault.is_none()
    }
}

/// Walks records in sequence order and checks every link, then the stored
/// head (which catches removal of the newest records).
pub(crate) struct ChainChecker {
    expected_seq: i64,
    prev_hash: String,
    pub(crate) fault: Option<AuditFault>,
}

impl ChainChecker {
    pub(crate) fn new() -> Self {
        ChainChecker {
            expected_seq: 1,
            prev_hash: GENESIS.to_string(),
            fault: None,
        }
    }

    pub(crate) fn check(&mut self, r: &AuditRecord) {
        if self.fault.is_some() {
            return;
        }
        let fault = |reason: String| Some(AuditFault { seq: r.seq, reason });
        if r.seq != self.expected_seq {
            self.fault = fault(format!(
                "record {} is missing or out of order (found {} next)",
                self.expected_seq, r.seq
            ));
        } else if r.prev_hash != self.prev_hash {
            self.fault = fault(format!(
                "record {} does not link to record {}: a record before it was altered, removed or reordered",
                r.seq,
                r.seq - 1
            ));
        } else if record_hash(
            r.seq,
            r.time,
            &r.actor,
            &r.action,
            &r.subject,
            &r.details,
            &r.prev_hash,
        ) != r.hash
        {
            self.fault = fault(format!(
                "record {} was altered: its content does not match its hash",
                r.seq
            ));
        }
        self.expected_seq += 1;
        self.prev_hash = r.hash.clone();
    }

    pub(crate) fn finish(mut self, head_seq: i64, head_hash: &str) -> AuditReport {
        let records = self.expected_seq - 1;
        if self.fault.is_none() && (head_seq != records || head_hash != self.prev_hash) {
            self.fault = Some(AuditFault {
                seq: records + 1,
                reason: format!(
                    "the log ends at record {records} but the head says {head_seq}: records were removed from the end or the head was altered"
                ),
            });
        }
        AuditReport {
            records,
            head: self.prev_hash,
            fault: self.fault,
        }
    }
}
