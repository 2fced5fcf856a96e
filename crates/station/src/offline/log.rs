//! The issuance log of an offline station, format version 1: JSON lines,
//! one record per line, appended and fsynced as things happen.
//!
//! ```text
//! {"v":1,"seq":1,"prev":"<hex>","time":1760000000,"batch":"widget-…",
//!  "event":{"type":"issued",…},"hash":"<hex>","sig":"<base64>"}
//! ```
//!
//! - `seq` counts from 1 without gaps; `prev` is the previous record's
//!   `hash`, and for record 1 the authorization id (so a log cannot be moved
//!   to another authorization).
//! - `hash` is the lowercase hex SHA-256 of the record's canonical body: the
//!   compact JSON of `{"v","seq","prev","time","batch","event"}` in that
//!   order, each event's fields in the order below.
//! - `sig` is the batch CA key's signature (base64, the key's X.509
//!   signature algorithm) over `"idmint-offline-log-v1\0" || hash` (the 32
//!   hash bytes).
//! - `event` is one of
//!   - `issued`: `serial` (device serial number), `hwId`, `thing`,
//!     `certificateId`, `publicKeySha256`, `keyType`, `injected`,
//!     `certificate` (the DER, base64), written when the certificate is
//!     signed, before it goes to the device;
//!   - `provisioned`: `certificateId`, `serial`, `locked`: the device
//!     installed it and proved its key;
//!   - `spoiled`: `certificateId`, `serial`, `stage`, `reason`: issued but
//!     never usable (it still counts against the batch);
//!   - `closed`: `issued`, `provisioned`, `spoiled` (totals so far): the
//!     station stopped cleanly. A log ends with one; a log that does not
//!     was cut short (or its station killed: running the station again
//!     closes it).
//!
//! Next to the log the station keeps `LOG.state` (its counter: records,
//! head hash, issued, next serial) and holds `LOG.lock` while it runs.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use serde::{Deserialize, Serialize};

use super::bundle::{b64, sha256_hex, sign, verify};
use idmint_flows::FlowError;
use idmint_pki::Signer;
use idmint_registry::CertificateId;

/// The log format version.
pub const LOG_VERSION: u32 = 1;
/// Signed before each record hash (domain separation: the batch CA key
/// signs certificates too).
pub const LOG_CONTEXT: &[u8] = b"idmint-offline-log-v1\0";

/// What a record says happened.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "type",
    rename_all = "lowercase",
    rename_all_fields = "camelCase",
    deny_unknown_fields
)]
pub enum Event {
    /// A certificate was signed for a device.
    Issued {
        /// The device serial number (from the authorized range).
        serial: u64,
        /// The device's hardware id.
        hw_id: String,
        /// The thing name.
        thing: String,
        /// Certificate id (SHA-256 of the DER, hex).
        certificate_id: CertificateId,
        /// SHA-256 of the certified public key (SPKI DER), hex.
        public_key_sha256: String,
        /// The key type.
        key_type: String,
        /// Whether the station made the key and injected it.
        injected: bool,
        /// The certificate, DER, base64.
        certificate: String,
    },
    /// The device installed the certificate and proved its key.
    Provisioned {
        /// Certificate id.
        certificate_id: CertificateId,
        /// The device serial number.
        serial: u64,
        /// Whether the device locked its credential storage.
        locked: bool,
    },
    /// The certificate was issued but never became usable.
    Spoiled {
        /// Certificate id.
        certificate_id: CertificateId,
        /// The device serial number.
        serial: u64,
        /// The step that failed.
        stage: String,
        /// Why.
        reason: String,
    },
    /// The station stopped cleanly.
    Closed {
        /// Certificates issued so far.
        issued: u64,
        /// Devices provisioned so far.
        provisioned: u64,
        /// Certificates spoiled so far.
        spoiled: u64,
    },
}

impl Event {
    /// The event's name.
    pub fn name(&self) -> &'static str {
        match self {
            Event::Issued { .. } => "issued",
            Event::Provisioned { .. } => "provisioned",
            Event::Spoiled { .. } => "spoiled",
            Event::Closed { .. } => "closed",
        }
    }
}

/// The hashed part of a record, in canonical field order.
#[derive(Serialize)]
struct Body<'a> {
    v: u32,
    seq: u64,
    prev: &'a str,
    time: i64,
    batch: &'a str,
    event: &'a Event,
}

/// One record (one line).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    /// Format version ([`LOG_VERSION`]).
    pub v: u32,
    /// Position, from 1.
    pub seq: u64,
    /// The previous record's hash (the authorization id for record 1).
    pub prev: String,
    /// When, Unix seconds (the station's clock).
    pub time: i64,
    /// The batch id.
    pub batch: String,
    /// What happened.
    pub event: Event,
    /// SHA-256 of the canonical body, hex.
    pub hash: String,
    /// The batch CA key's signature over the hash, base64.
    pub sig: String,
}

impl Record {
    /// The hash of this record's body as it is now.
    pub fn body_hash(&self) -> String {
        body_hash(self.seq, &self.prev, self.time, &self.batch, &self.event)
    }

    /// Whether `sig` is a valid signature of `hash` by `spki_der`.
    pub fn signature_valid(&self, spki_der: &[u8]) -> bool {
        let (Ok(hash), Ok(sig)) = (hex::decode(&self.hash), b64().decode(self.sig.as_bytes()))
        else {
            return false;
        };
        verify(spki_der, LOG_CONTEXT, &hash, &sig)
    }
}

fn body_hash(seq: u64, prev: &str, time: i64, batch: &str, event: &Event) -> String {
    let body = Body {
        v: LOG_VERSION,
        seq,
        prev,
        time,
        batch,
        event,
    };
    // Serializing plain structs and strings cannot fail.
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    sha256_hex(&bytes)
}

pub use idmint_registry::FindingKind;

/// One problem in a log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    /// What kind.
    pub kind: FindingKind,
    /// Whether it rejects the whole log.
    pub rejects: bool,
    /// The record concerned, if one.
    pub seq: Option<u64>,
    /// The line of the log, from 1, if one.
    pub line: Option<usize>,
    /// What is wrong, for a person.
    pub message: String,
}

impl Finding {
    pub(crate) fn new(
        kind: FindingKind,
        seq: Option<u64>,
        line: Option<usize>,
        message: impl Into<String>,
    ) -> Finding {
        Finding {
            kind,
            rejects: kind.rejects(),
            seq,
            line,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

/// The result of checking a log's structure: its records (those that
/// parsed) and every structural problem.
#[derive(Clone, Debug)]
pub struct CheckedLog {
    /// The lines that parsed as records, in file order.
    pub records: Vec<Record>,
    /// Every structural problem found.
    pub findings: Vec<Finding>,
}

/// Checks a log's lines: every line a record of this `batch`, `seq`
/// 1, 2, 3… in order, each hash matching its body, each `prev` the hash
/// before (the authorization id first), each signature the batch CA's
/// (`batch_ca_spki`). Any bytes are a [`CheckedLog`]; what is wrong with
/// them is a finding, never an error or a panic. The station (restarting on
/// its own log) and reconcile (at the maker) both start here.
pub fn check_log(
    bytes: &[u8],
    authorization_id: &str,
    batch: &str,
    batch_ca_spki: &[u8],
) -> CheckedLog {
    let mut findings = Vec::new();
    let mut records = Vec::new();
    let mut lines: Vec<(usize, &[u8])> = bytes
        .split(|b| *b == b'\n')
        .enumerate()
        .map(|(i, l)| (i + 1, l))
        .collect();
    let complete_last = bytes.last() == Some(&b'\n');
    if complete_last {
        lines.pop();
    }
    let last_line = lines.len();
    let mut lines_of: Vec<usize> = Vec::new();
    for (n, text) in lines {
        if text.iter().all(u8::is_ascii_whitespace) {
            findings.push(Finding::new(
                FindingKind::Malformed,
                None,
                Some(n),
                format!("line {n} is empty"),
            ));
            continue;
        }
        match serde_json::from_slice::<Record>(text) {
            Ok(r) => {
                lines_of.push(n);
                records.push(r);
            }
            Err(e) if n == last_line && !complete_last => {
                findings.push(Finding::new(
                    FindingKind::Truncated,
                    None,
                    Some(n),
                    format!("line {n} is cut short ({e}): the log was truncated"),
                ));
            }
            Err(e) => findings.push(Finding::new(
                FindingKind::Malformed,
                None,
                Some(n),
                format!("line {n} is not an issuance log record: {e}"),
            )),
        }
    }
    // Order first: the positions must be 1, 2, 3…
    let seqs: Vec<u64> = records.iter().map(|r| r.seq).collect();
    let mut sorted = seqs.clone();
    sorted.sort_unstable();
    let in_order = seqs == sorted;
    let mut seen = BTreeMap::new();
    for (i, s) in seqs.iter().enumerate() {
        if let Some(first) = seen.insert(*s, lines_of[i]) {
            findings.push(Finding::new(
                FindingKind::Reordered,
                Some(*s),
                Some(lines_of[i]),
                format!(
                    "record {s} appears twice (lines {first} and {})",
                    lines_of[i]
                ),
            ));
        }
    }
    if !in_order {
        if let Some(i) = (1..seqs.len()).find(|&i| seqs[i] < seqs[i - 1]) {
            findings.push(Finding::new(
                FindingKind::Reordered,
                Some(seqs[i]),
                Some(lines_of[i]),
                format!(
                    "records are out of order: line {} holds record {} after record {}",
                    lines_of[i],
                    seqs[i],
                    seqs[i - 1]
                ),
            ));
        }
    } else {
        let mut expected = 1u64;
        for (i, s) in seqs.iter().enumerate() {
            if *s > expected {
                let what = if *s == expected + 1 {
                    format!("record {expected} is missing")
                } else {
                    format!("records {expected}..{} are missing", s - 1)
                };
                findings.push(Finding::new(
                    FindingKind::Gap,
                    Some(*s),
                    Some(lines_of[i]),
                    format!("{what} (line {} holds record {s})", lines_of[i]),
                ));
            }
            expected = expected.max(s.saturating_add(1));
        }
    }
    // Content, signatures and the chain.
    let mut prev = authorization_id.to_string();
    let mut prev_seq = 0u64;
    for (i, r) in records.iter().enumerate() {
        let line = Some(lines_of[i]);
        let seq = Some(r.seq);
        if r.v != LOG_VERSION {
            findings.push(Finding::new(
                FindingKind::Malformed,
                seq,
                line,
                format!(
                    "record {} has format version {}, expected {LOG_VERSION}",
                    r.seq, r.v
                ),
            ));
        }
        if r.batch != batch {
            findings.push(Finding::new(
                FindingKind::Foreign,
                seq,
                line,
                format!(
                    "record {} (line {}) belongs to batch {}, not {batch}: it comes from another authorization's log",
                    r.seq, lines_of[i], r.batch
                ),
            ));
        } else if r.body_hash() != r.hash {
            findings.push(Finding::new(
                FindingKind::Edited,
                seq,
                line,
                format!(
                    "record {} (line {}) was edited: its content does not match its hash",
                    r.seq, lines_of[i]
                ),
            ));
        } else if !r.signature_valid(batch_ca_spki) {
            findings.push(Finding::new(
                FindingKind::Signature,
                seq,
                line,
                format!(
                    "record {} (line {}) is not signed by the batch CA of {batch} (forged, or from another authorization)",
                    r.seq, lines_of[i]
                ),
            ));
        } else if in_order && r.prev != prev {
            let (kind, message) = if i == 0 && r.seq == 1 {
                (
                    FindingKind::Foreign,
                    format!(
                        "record 1 does not chain from authorization {}: the log belongs to another authorization",
                        short(authorization_id)
                    ),
                )
            } else if prev_seq.checked_add(1) == Some(r.seq) {
                (
                    FindingKind::Edited,
                    format!(
                        "the chain is broken at record {} (line {}): it does not follow record {prev_seq} (records replaced or taken from another log)",
                        r.seq, lines_of[i]
                    ),
                )
            } else {
                // Already reported as a gap.
                (FindingKind::Gap, String::new())
            };
            if !message.is_empty() {
                findings.push(Finding::new(kind, seq, line, message));
            }
        }
        prev = r.hash.clone();
        prev_seq = r.seq;
    }
    CheckedLog { records, findings }
}

/// The first 12 hex digits of a hash, for messages.
pub(crate) fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

/// The station's counter, kept in `LOG.state` next to the log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct StationState {
    pub(crate) format: String,
    pub(crate) version: u32,
    pub(crate) authorization: String,
    pub(crate) batch: String,
    pub(crate) records: u64,
    pub(crate) head: String,
    pub(crate) issued: u64,
    pub(crate) next_serial: u64,
}

pub(crate) const STATE_FORMAT: &str = "idmint-station-state";

/// `LOG.state`.
pub(crate) fn state_path(log: &Path) -> PathBuf {
    sibling(log, ".state")
}

/// `LOG.lock`.
pub(crate) fn lock_path(log: &Path) -> PathBuf {
    sibling(log, ".lock")
}

fn sibling(log: &Path, suffix: &str) -> PathBuf {
    let mut name = log
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(suffix);
    log.with_file_name(name)
}

/// Appends signed records to a log and keeps the state file in step.
pub(crate) struct LogWriter {
    path: PathBuf,
    file: File,
    batch: String,
    authorization: String,
    pub(crate) seq: u64,
    pub(crate) head: String,
    /// Set after a failed write: the log may end in a partial line.
    broken: Option<String>,
}

impl LogWriter {
    /// Opens `path` for appending after `seq` records ending in `head`.
    pub(crate) fn open(
        path: &Path,
        batch: &str,
        authorization: &str,
        seq: u64,
        head: String,
    ) -> Result<LogWriter, FlowError> {
        let mut options = OpenOptions::new();
        options.create(true).append(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o644);
        }
        let file = options.open(path).map_err(|e| FlowError::io(path, e))?;
        Ok(LogWriter {
            path: path.to_path_buf(),
            file,
            batch: batch.to_string(),
            authorization: authorization.to_string(),
            seq,
            head,
            broken: None,
        })
    }

    /// Signs and appends a record (fsynced), then records the new state.
    pub(crate) fn append(
        &mut self,
        signer: &Signer,
        event: Event,
        issued: u64,
        next_serial: u64,
    ) -> Result<Record, FlowError> {
        if let Some(why) = &self.broken {
            return Err(FlowError::Internal(format!(
                "the issuance log {} cannot be written ({why}): the station stops issuing",
                self.path.display()
            )));
        }
        let seq = self.seq + 1;
        let time = idmint_registry::now();
        let hash = body_hash(seq, &self.head, time, &self.batch, &event);
        let hash_bytes =
            hex::decode(&hash).map_err(|e| FlowError::Internal(format!("record hash: {e}")))?;
        let sig = sign(signer, LOG_CONTEXT, &hash_bytes)?;
        let record = Record {
            v: LOG_VERSION,
            seq,
            prev: self.head.clone(),
            time,
            batch: self.batch.clone(),
            event,
            hash: hash.clone(),
            sig: b64().encode(sig),
        };
        let mut line = serde_json::to_vec(&record)
            .map_err(|e| FlowError::Internal(format!("encoding a log record: {e}")))?;
        line.push(b'\n');
        if let Err(e) = self
            .file
            .write_all(&line)
            .and_then(|_| self.file.sync_data())
        {
            self.broken = Some(e.to_string());
            return Err(FlowError::io(&self.path, e));
        }
        self.seq = seq;
        self.head = hash;
        let state = StationState {
            format: STATE_FORMAT.into(),
            version: LOG_VERSION,
            authorization: self.authorization.clone(),
            batch: self.batch.clone(),
            records: self.seq,
            head: self.head.clone(),
            issued,
            next_serial,
        };
        if let Err(e) = write_state(&state_path(&self.path), &state) {
            self.broken = Some(e.to_string());
            return Err(e);
        }
        Ok(record)
    }
}

/// Writes the state file: temp file, fsync, rename.
pub(crate) fn write_state(path: &Path, state: &StationState) -> Result<(), FlowError> {
    let tmp = sibling(path, ".tmp");
    let mut bytes = serde_json::to_vec_pretty(state)
        .map_err(|e| FlowError::Internal(format!("encoding the station state: {e}")))?;
    bytes.push(b'\n');
    let mut file = File::create(&tmp).map_err(|e| FlowError::io(&tmp, e))?;
    file.write_all(&bytes)
        .and_then(|_| file.sync_data())
        .map_err(|e| FlowError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| FlowError::io(path, e))
}

/// Reads the state file, if there is one.
pub(crate) fn read_state(path: &Path) -> Result<Option<StationState>, FlowError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            FlowError::Invalid(format!(
                "{} is not a station state file ({e}): restore it, or remove it to rebuild it from the log",
                path.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(FlowError::io(path, e)),
    }
}

/// What a log's records add up to.
#[derive(Clone, Debug, Default)]
pub(crate) struct Tally {
    pub(crate) issued: u64,
    pub(crate) provisioned: u64,
    pub(crate) spoiled: u64,
    /// The last serial issued.
    pub(crate) last_serial: Option<u64>,
    /// Issued certificates without an outcome yet: id -> serial.
    pub(crate) open: BTreeMap<CertificateId, u64>,
    /// Hardware ids with a live (not spoiled) certificate: hw id -> serial.
    pub(crate) live_hw: BTreeMap<String, u64>,
    /// Certificate id -> hardware id.
    pub(crate) hw_of: BTreeMap<CertificateId, String>,
    /// Public keys certified so far.
    pub(crate) keys: BTreeSet<String>,
}

impl Tally {
    /// Adds one record.
    pub(crate) fn add(&mut self, event: &Event) {
        match event {
            Event::Issued {
                serial,
                hw_id,
                certificate_id,
                public_key_sha256,
                ..
            } => {
                self.issued += 1;
                self.last_serial = Some(*serial);
                self.open.insert(certificate_id.clone(), *serial);
                self.live_hw.insert(hw_id.clone(), *serial);
                self.hw_of.insert(certificate_id.clone(), hw_id.clone());
                self.keys.insert(public_key_sha256.clone());
            }
            Event::Provisioned { certificate_id, .. } => {
                self.provisioned += 1;
                self.open.remove(certificate_id);
            }
            Event::Spoiled { certificate_id, .. } => {
                self.spoiled += 1;
                self.open.remove(certificate_id);
                if let Some(hw) = self.hw_of.get(certificate_id) {
                    self.live_hw.remove(hw);
                }
            }
            Event::Closed { .. } => {}
        }
    }
}

/// Decodes an `issued` record's certificate.
pub(crate) fn certificate_der(certificate: &str) -> Option<Vec<u8>> {
    b64().decode(certificate.as_bytes()).ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use idmint_pki::{DeviceKey, KeyType};

    /// A record signed by `signer`, chained to `prev`.
    fn record(signer: &Signer, seq: u64, prev: &str, event: Event) -> Record {
        let hash = body_hash(seq, prev, 1_765_000_000, "b", &event);
        let sig = sign(signer, LOG_CONTEXT, &hex::decode(&hash).unwrap()).unwrap();
        Record {
            v: LOG_VERSION,
            seq,
            prev: prev.into(),
            time: 1_765_000_000,
            batch: "b".into(),
            event,
            hash,
            sig: b64().encode(sig),
        }
    }

    /// Found by reading while writing the `offline_log` fuzz target: a
    /// factory holding its batch CA key signs two records numbered
    /// u64::MAX that do not chain; checking them overflowed `seq + 1`
    /// (a panic in a debug build). Now it is a finding.
    #[test]
    fn records_numbered_u64_max_are_findings_not_an_overflow() {
        let signer = Signer::software(DeviceKey::generate(KeyType::P256).unwrap());
        let closed = Event::Closed {
            issued: 0,
            provisioned: 0,
            spoiled: 0,
        };
        let first = record(&signer, u64::MAX, "auth", closed.clone());
        let second = record(&signer, u64::MAX, "not-the-first", closed);
        let mut log = Vec::new();
        for r in [&first, &second] {
            log.extend(serde_json::to_vec(r).unwrap());
            log.push(b'\n');
        }
        let checked = check_log(&log, "auth", "b", &signer.spki_der());
        assert_eq!(checked.records.len(), 2);
        let kinds: Vec<FindingKind> = checked.findings.iter().map(|f| f.kind).collect();
        assert!(kinds.contains(&FindingKind::Reordered), "{kinds:?}");
        assert!(kinds.contains(&FindingKind::Gap), "{kinds:?}");
    }
}
