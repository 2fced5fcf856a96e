//! `idmint batch reconcile LOG`: the maker checks an offline station's
//! issuance log and registers its devices.
//!
//! 1. The log names its batch; the batch must be an offline authorization
//!    of this registry (else: `foreign`).
//! 2. Structure ([`super::log`]): every line a record, positions 1, 2, 3…
//!    in order (`reordered`, `gap`), every hash matching its content
//!    (`edited`), every signature by the registered batch CA (`signature`),
//!    the chain from the authorization id (`foreign`, `edited`), a closing
//!    record at the end (`truncated`).
//! 3. Against earlier reconciles of the batch: every record reconciled
//!    before must be in this log, unchanged (`truncated`, `fork`).
//! 4. Content: certificates signed by the batch CA and matching their
//!    record, outcomes only for issued certificates, closing totals that
//!    add up (`edited`); the count, the serial range and the window
//!    (`excess`); a public key or a hardware id twice, in the log or
//!    already in the registry (`duplicate`); skipped serial numbers
//!    (`gap`, reported only).
//!
//! Any finding of the kinds in steps 1 to 3 and the content checks of step
//! 4 rejects the log: nothing is registered. Otherwise the records not
//! reconciled before are registered in one write transaction: a thing and a
//! certificate per issued device (`PENDING_ACTIVATION`, `ACTIVE` once
//! provisioned, `REVOKED` with `cessationOfOperation` when spoiled), the
//! quota taken per certificate; duplicates are registered revoked
//! (`keyCompromise`) without a thing, excess certificates revoked
//! (`privilegeWithdrawn`) outside the quota. Every record is stored
//! (batch, seq, hash, finding), so reconciling the same log again registers
//! nothing and reports the same findings.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use idmint_pki::{CertificateInfo, IssuedCertificate};
use idmint_registry::{
    validate_name, validate_thing_name, AuditEvent, CertificateId, CertificateStatus, NewThing,
    OfflineAuthorization, ReconciledRecord, RecordFinding, RegistryError, Thing, ThingName,
};
use serde::Serialize;

use super::bundle::signed_by;
use super::log::{certificate_der, check_log, Event, Finding, FindingKind, Record, Tally};
use crate::SPOILED_REASON;
use idmint_flows::issue::certificate_record;
use idmint_flows::FlowError;

/// Slack for the station's clock against the issuance window, seconds.
const CLOCK_SLACK_SECS: i64 = 300;
/// Findings listed per kind at most (the rest are counted).
const MAX_PER_KIND: usize = 20;

/// What `idmint batch reconcile` found and did.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReconcileReport {
    /// The log.
    pub log: PathBuf,
    /// The batch it names.
    pub batch: Option<String>,
    /// The authorization id, when the batch is one of this registry's.
    pub authorization: Option<String>,
    /// The authorized count.
    pub count: Option<u64>,
    /// Records in the log.
    pub records: u64,
    /// Records not reconciled before.
    pub new_records: u64,
    /// Certificates issued according to the log.
    pub issued: u64,
    /// Devices provisioned according to the log.
    pub provisioned: u64,
    /// Certificates spoiled according to the log.
    pub spoiled: u64,
    /// Certificates registered by this reconcile.
    pub registered: u64,
    /// Whether the log was accepted (false: rejected, nothing registered).
    pub accepted: bool,
    /// Everything found wrong; empty for an honest log.
    pub findings: Vec<Finding>,
}

impl ReconcileReport {
    /// Whether the log is accepted and nothing was found wrong.
    pub fn clean(&self) -> bool {
        self.accepted && self.findings.is_empty()
    }
}

/// The content checks' verdict on one `issued` record.
#[derive(Clone, Debug)]
struct Note {
    kind: FindingKind,
    message: String,
    /// The record's certificate is in the registry already (a log
    /// reconciled before): nothing more is registered for it.
    already_registered: bool,
}

/// One `issued` record's certificate, parsed.
struct Cert {
    der: Vec<u8>,
    info: CertificateInfo,
}

impl crate::Station<'_> {
    /// Reconciles an offline station's issuance log (see the module docs).
    /// Errors only when the file is not an issuance log at all or the
    /// registry fails; every problem with a log is a finding.
    pub async fn reconcile_issuance_log(
        &self,
        actor: &str,
        path: &Path,
    ) -> Result<ReconcileReport, FlowError> {
        let bytes = std::fs::read(path).map_err(|e| FlowError::io(path, e))?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(FlowError::Invalid(format!(
                "{} is empty: not an issuance log",
                path.display()
            )));
        }
        let first_line = bytes.split(|b| *b == b'\n').next().unwrap_or_default();
        let first: Record = serde_json::from_slice(first_line).map_err(|e| {
            FlowError::Invalid(format!(
                "{} is not an idmint issuance log (line 1: {e})",
                path.display()
            ))
        })?;
        let mut report = ReconcileReport {
            log: path.to_path_buf(),
            batch: Some(first.batch.clone()),
            authorization: None,
            count: None,
            records: 0,
            new_records: 0,
            issued: 0,
            provisioned: 0,
            spoiled: 0,
            registered: 0,
            accepted: false,
            findings: Vec::new(),
        };
        let Some(auth) = self.store().offline_authorization(&first.batch).await? else {
            report.findings.push(Finding::new(
                FindingKind::Foreign,
                Some(first.seq),
                Some(1),
                format!(
                    "the log is for batch {}, which is not an offline authorization of this registry (another maker's, or another registry's)",
                    first.batch
                ),
            ));
            return Ok(report);
        };
        report.authorization = Some(auth.authorization_id.clone());
        report.count = u64::try_from(self.store().require_batch(&auth.batch).await?.count).ok();
        let batch_ca = self.store().require_ca(&auth.batch_ca).await?;
        let batch_ca_info = CertificateInfo::from_der(&batch_ca.certificate_der)?;
        let checked = check_log(
            &bytes,
            &auth.authorization_id,
            &auth.batch,
            &batch_ca_info.spki_der,
        );
        let records = checked.records;
        let mut findings = checked.findings;
        report.records = records.len() as u64;

        // Against earlier reconciles of this batch.
        let earlier = self.store().reconciled_records(&auth.batch).await?;
        let by_seq: BTreeMap<u64, &Record> = records.iter().map(|r| (r.seq, r)).collect();
        let last_seq = records.last().map(|r| r.seq).unwrap_or(0);
        if let Some(max) = earlier.iter().map(|e| e.seq).max() {
            if u64::try_from(max).unwrap_or(0) > last_seq {
                findings.push(Finding::new(
                    FindingKind::Truncated,
                    None,
                    None,
                    format!(
                        "records up to {max} of batch {} were reconciled before; this log ends at record {last_seq}: it was truncated",
                        auth.batch
                    ),
                ));
            }
        }
        if let Some(e) = earlier.iter().find(|e| {
            u64::try_from(e.seq)
                .ok()
                .and_then(|s| by_seq.get(&s))
                .is_some_and(|r| r.hash != e.hash)
        }) {
            findings.push(Finding::new(
                FindingKind::Fork,
                u64::try_from(e.seq).ok(),
                None,
                format!(
                    "record {} differs from the one reconciled before: this is not the log that was reconciled (edited, or a second log for the same authorization)",
                    e.seq
                ),
            ));
        }

        // Content, over the whole log (so a re-run reports the same).
        let mut notes: BTreeMap<u64, Note> = BTreeMap::new();
        let mut certs: BTreeMap<u64, Cert> = BTreeMap::new();
        let structural_ok = !findings.iter().any(|f| f.rejects);
        let tally = if structural_ok {
            self.check_content(
                &auth,
                &batch_ca.certificate_der,
                &records,
                &mut findings,
                &mut notes,
                &mut certs,
            )
        } else {
            let mut t = Tally::default();
            records.iter().for_each(|r| t.add(&r.event));
            t
        };
        report.issued = tally.issued;
        report.provisioned = tally.provisioned;
        report.spoiled = tally.spoiled;

        let done: BTreeSet<u64> = earlier
            .iter()
            .filter_map(|e| u64::try_from(e.seq).ok())
            .collect();
        // Findings stored by earlier reconciles (registry duplicates) are
        // reported again.
        for e in &earlier {
            let seq = u64::try_from(e.seq).unwrap_or(0);
            if let (Some(stored), false) = (&e.finding, notes.contains_key(&seq)) {
                findings.push(Finding::new(
                    stored.kind,
                    Some(seq),
                    None,
                    stored.message.clone(),
                ));
            }
        }
        let new: Vec<&Record> = records.iter().filter(|r| !done.contains(&r.seq)).collect();
        report.new_records = new.len() as u64;
        if findings.iter().any(|f| f.rejects) {
            report.findings = cap(findings);
            return Ok(report);
        }
        // Duplicates of what the registry already holds (new records only).
        for r in &new {
            if let (Event::Issued { hw_id, thing, .. }, Some(cert)) = (&r.event, certs.get(&r.seq))
            {
                if notes.contains_key(&r.seq) {
                    continue;
                }
                if let Some(note) = self
                    .registry_duplicate(&cert.info, hw_id, thing, &auth.batch)
                    .await?
                {
                    findings.push(Finding::new(
                        note.kind,
                        Some(r.seq),
                        None,
                        note.message.clone(),
                    ));
                    notes.insert(r.seq, note);
                }
            }
        }
        report.accepted = true;
        if !new.is_empty() {
            report.registered = self
                .register_records(actor, &auth, &new, &notes, &certs)
                .await?;
        }
        report.findings = cap(findings);
        Ok(report)
    }

    /// The content checks (see the module docs); fills `notes` for issued
    /// records that are duplicates or excess and `certs` with every issued
    /// certificate.
    fn check_content(
        &self,
        auth: &OfflineAuthorization,
        batch_ca_der: &[u8],
        records: &[Record],
        findings: &mut Vec<Finding>,
        notes: &mut BTreeMap<u64, Note>,
        certs: &mut BTreeMap<u64, Cert>,
    ) -> Tally {
        let count = self.authorized_count(auth);
        let mut tally = Tally::default();
        let mut serial_seq: BTreeMap<u64, u64> = BTreeMap::new();
        let mut key_seq: BTreeMap<String, u64> = BTreeMap::new();
        let mut live_hw: BTreeMap<String, u64> = BTreeMap::new();
        let mut last_serial: Option<u64> = None;
        let edited = |findings: &mut Vec<Finding>, seq: u64, message: String| {
            findings.push(Finding::new(FindingKind::Edited, Some(seq), None, message));
        };
        for r in records {
            let seq = r.seq;
            match &r.event {
                Event::Issued {
                    serial,
                    hw_id,
                    thing,
                    certificate_id,
                    public_key_sha256,
                    certificate,
                    ..
                } => {
                    let Some(der) = certificate_der(certificate) else {
                        edited(
                            findings,
                            seq,
                            format!("record {seq}: its certificate is not base64"),
                        );
                        continue;
                    };
                    let info = match CertificateInfo::from_der(&der) {
                        Ok(i) => i,
                        Err(e) => {
                            edited(
                                findings,
                                seq,
                                format!("record {seq}: its certificate does not parse: {e}"),
                            );
                            continue;
                        }
                    };
                    if &info.id != certificate_id || &info.public_key_sha256 != public_key_sha256 {
                        edited(
                            findings,
                            seq,
                            format!("record {seq}: its certificate does not match its certificateId and publicKeySha256"),
                        );
                    }
                    if !signed_by(&der, batch_ca_der) {
                        edited(
                            findings,
                            seq,
                            format!("record {seq}: its certificate was not signed by the batch CA of {}", auth.batch),
                        );
                    }
                    if validate_name("hardware id", hw_id).is_err()
                        || validate_thing_name(thing).is_err()
                    {
                        edited(
                            findings,
                            seq,
                            format!("record {seq}: unusable hardware id or thing name"),
                        );
                    }
                    if tally.hw_of.contains_key(certificate_id) {
                        edited(findings, seq, format!("record {seq}: certificate {certificate_id} is issued a second time"));
                    }
                    let nth = tally.issued + 1;
                    let mut gap_finding = None;
                    let mut note: Option<Note> = None;
                    let mut add = |kind: FindingKind, message: String| {
                        findings.push(Finding::new(kind, Some(seq), None, message.clone()));
                        if note.is_none() {
                            note = Some(Note {
                                kind,
                                message,
                                already_registered: false,
                            });
                        }
                    };
                    if nth > count {
                        add(
                            FindingKind::Excess,
                            format!("record {seq}: certificate {nth} exceeds the authorized count {count} (serial {serial}, hardware id {hw_id})"),
                        );
                    } else if i64::try_from(*serial)
                        .map_or(true, |s| s < auth.serial_first || s > auth.serial_last)
                    {
                        add(
                            FindingKind::Excess,
                            format!(
                                "record {seq}: serial {serial} is outside the authorized range {}..{}",
                                auth.serial_first, auth.serial_last
                            ),
                        );
                    } else if r.time < auth.not_before - CLOCK_SLACK_SECS || r.time > auth.not_after
                    {
                        add(
                            FindingKind::Excess,
                            format!(
                                "record {seq}: issued at {}, outside the authorization's window {}..{}",
                                rfc3339(r.time),
                                rfc3339(auth.not_before),
                                rfc3339(auth.not_after)
                            ),
                        );
                    } else if info.not_after.unix_timestamp() > auth.not_after {
                        add(
                            FindingKind::Excess,
                            format!(
                                "record {seq}: its certificate is valid until {}, beyond the batch CA ({})",
                                rfc3339(info.not_after.unix_timestamp()),
                                rfc3339(auth.not_after)
                            ),
                        );
                    }
                    if let Some(other) = serial_seq.get(serial) {
                        add(
                            FindingKind::Duplicate,
                            format!("serial {serial} issued twice: records {other} and {seq}"),
                        );
                    } else if let Some(prev) = last_serial {
                        if *serial > prev.saturating_add(1) {
                            let gap = if *serial == prev + 2 {
                                format!("device serial {} was never issued", prev + 1)
                            } else {
                                format!(
                                    "device serials {}..{} were never issued",
                                    prev + 1,
                                    serial - 1
                                )
                            };
                            let mut f = Finding::new(
                                FindingKind::Gap,
                                Some(seq),
                                None,
                                format!("{gap} (before record {seq})"),
                            );
                            f.rejects = false;
                            gap_finding = Some(f);
                        }
                    }
                    if let Some(other) = key_seq.get(public_key_sha256) {
                        add(
                            FindingKind::Duplicate,
                            format!("the public key of record {seq} was certified before, in record {other}: a clone"),
                        );
                    } else if let Some(other) = live_hw.get(hw_id) {
                        add(
                            FindingKind::Duplicate,
                            format!(
                                "hardware id {hw_id} twice: records {other} and {seq} (a clone)"
                            ),
                        );
                    }
                    if let Some(note) = note {
                        notes.insert(seq, note);
                    }
                    findings.extend(gap_finding);
                    serial_seq.entry(*serial).or_insert(seq);
                    last_serial = Some(last_serial.map_or(*serial, |p| p.max(*serial)));
                    key_seq.entry(public_key_sha256.clone()).or_insert(seq);
                    live_hw.entry(hw_id.clone()).or_insert(seq);
                    certs.insert(seq, Cert { der, info });
                }
                Event::Provisioned { certificate_id, .. }
                | Event::Spoiled { certificate_id, .. } => {
                    if !tally.open.contains_key(certificate_id) {
                        edited(
                            findings,
                            seq,
                            format!(
                                "record {seq} ({}) is about certificate {certificate_id}, which is not waiting for its device (never issued, or already finished)",
                                r.event.name()
                            ),
                        );
                    }
                    if let (Event::Spoiled { .. }, Some(hw)) =
                        (&r.event, tally.hw_of.get(certificate_id))
                    {
                        live_hw.remove(hw);
                    }
                }
                Event::Closed {
                    issued,
                    provisioned,
                    spoiled,
                } => {
                    let have = (tally.issued, tally.provisioned, tally.spoiled);
                    if (*issued, *provisioned, *spoiled) != have || !tally.open.is_empty() {
                        edited(
                            findings,
                            seq,
                            format!(
                                "record {seq}: the closing totals (issued {issued}, provisioned {provisioned}, spoiled {spoiled}) do not match the records before it (issued {}, provisioned {}, spoiled {}, unfinished {})",
                                have.0,
                                have.1,
                                have.2,
                                tally.open.len()
                            ),
                        );
                    }
                }
            }
            tally.add(&r.event);
        }
        if let Some(last) = records.last() {
            if !matches!(last.event, Event::Closed { .. }) {
                findings.push(Finding::new(
                    FindingKind::Truncated,
                    Some(last.seq),
                    None,
                    format!(
                        "the log ends at record {} without the station's closing record: it was cut short, or its station was stopped abruptly (run the station on it again, e.g. with --count 0, to close it)",
                        last.seq
                    ),
                ));
            }
        }
        tally
    }

    fn authorized_count(&self, auth: &OfflineAuthorization) -> u64 {
        serde_json::from_str::<super::bundle::BatchLimits>(&auth.limits)
            .map(|l| l.count)
            .unwrap_or(0)
    }

    /// A duplicate of what the registry already holds: the same public key
    /// certified, the hardware id holding a live certificate, or a record
    /// naming a thing of another batch or device (never attached to it).
    async fn registry_duplicate(
        &self,
        info: &CertificateInfo,
        hw_id: &str,
        thing: &str,
        batch: &str,
    ) -> Result<Option<Note>, FlowError> {
        let store = self.store();
        if store.certificate(&info.id).await?.is_some() {
            return Ok(Some(Note {
                kind: FindingKind::Duplicate,
                message: format!("certificate {} is already registered", info.id),
                already_registered: true,
            }));
        }
        if let Some(c) = store
            .certificates_with_public_key(&info.public_key_sha256)
            .await?
            .first()
        {
            return Ok(Some(Note {
                kind: FindingKind::Duplicate,
                message: format!(
                    "the public key of certificate {} is already certified in the registry (certificate {}): a clone",
                    info.id, c.id
                ),
                already_registered: false,
            }));
        }
        if let Some(thing) = store.thing_by_device_id(hw_id).await? {
            let live = store
                .list_certificates(&idmint_registry::CertificateFilter {
                    thing: Some(thing.name.clone()),
                    ..Default::default()
                })
                .await?
                .into_iter()
                .any(|c| c.status != CertificateStatus::Revoked);
            if live {
                return Ok(Some(Note {
                    kind: FindingKind::Duplicate,
                    message: format!(
                        "hardware id {hw_id} is already provisioned in the registry (thing {}): a clone",
                        thing.name
                    ),
                    already_registered: false,
                }));
            }
        }
        let existing = match store.thing_by_device_id(hw_id).await? {
            Some(t) => Some(t),
            None => store.thing(thing).await?,
        };
        Ok(existing.and_then(|t| foreign_thing(&t, batch, hw_id)))
    }

    /// Registers the new records in one write transaction; returns the
    /// number of certificates registered.
    async fn register_records(
        &self,
        actor: &str,
        auth: &OfflineAuthorization,
        new: &[&Record],
        notes: &BTreeMap<u64, Note>,
        certs: &BTreeMap<u64, Cert>,
    ) -> Result<u64, FlowError> {
        let batch = self.store().require_batch(&auth.batch).await?;
        // Things that already hold a hardware id keep their name (read
        // before the write transaction takes its connection).
        let mut names: BTreeMap<String, String> = BTreeMap::new();
        for r in new {
            if let Event::Issued { hw_id, .. } = &r.event {
                if let Some(existing) = self.store().thing_by_device_id(hw_id).await? {
                    names.insert(hw_id.clone(), existing.name);
                }
            }
        }
        let mut tx = self.store().begin(actor).await?;
        let mut rows = Vec::with_capacity(new.len());
        let mut revoked: BTreeSet<CertificateId> = BTreeSet::new();
        let mut uncounted: BTreeSet<CertificateId> = BTreeSet::new();
        let mut registered = 0u64;
        let mut inserted: BTreeSet<CertificateId> = BTreeSet::new();
        let now = idmint_registry::now();
        for r in new {
            let mut row = ReconciledRecord {
                batch: auth.batch.clone(),
                seq: i64::try_from(r.seq).unwrap_or(i64::MAX),
                hash: r.hash.clone(),
                event: r.event.name().to_string(),
                certificate_id: None,
                serial: None,
                hw_id: None,
                finding: None,
                reconciled: now,
            };
            match &r.event {
                Event::Issued {
                    serial,
                    hw_id,
                    thing,
                    certificate_id,
                    ..
                } => {
                    row.certificate_id = Some(certificate_id.to_string());
                    row.serial = i64::try_from(*serial).ok();
                    row.hw_id = Some(hw_id.clone());
                    let mut note = notes.get(&r.seq).cloned();
                    let Some(cert) = certs.get(&r.seq) else {
                        // Unreachable: content checks reject a log whose
                        // certificate does not parse.
                        rows.push(row);
                        continue;
                    };
                    // Decided again inside the writing transaction: a
                    // thing of another batch or device is never written.
                    if note.is_none() {
                        let name = names.get(hw_id).unwrap_or(thing);
                        if let Some(existing) = tx.thing(name).await? {
                            note = foreign_thing(&existing, &batch.id, hw_id);
                        }
                    }
                    if note.as_ref().map(|n| n.kind) != Some(FindingKind::Excess) {
                        match tx.reserve_quota(&batch.id, 1).await {
                            Ok(()) => {}
                            Err(RegistryError::QuotaExhausted { quota, .. }) => {
                                note = Some(Note {
                                    kind: FindingKind::Excess,
                                    message: format!(
                                        "record {}: certificate {certificate_id} exceeds the batch quota {quota}",
                                        r.seq
                                    ),
                                    already_registered: false,
                                });
                            }
                            Err(e) => return Err(e.into()),
                        }
                    }
                    let excess = note.as_ref().map(|n| n.kind) == Some(FindingKind::Excess);
                    if excess {
                        uncounted.insert(certificate_id.clone());
                    }
                    row.finding = note.as_ref().map(|n| RecordFinding {
                        kind: n.kind,
                        message: n.message.clone(),
                    });
                    if note.as_ref().is_some_and(|n| n.already_registered) {
                        rows.push(row);
                        continue;
                    }
                    let thing_name = if note.is_some() {
                        None
                    } else {
                        let name = ThingName::parse(names.get(hw_id).unwrap_or(thing))
                            .map_err(RegistryError::from)?;
                        let mut t = NewThing::named(name.clone());
                        t.device_id = Some(hw_id.clone());
                        t.batch = Some(batch.id.clone());
                        t.thing_type = Some(batch.product.clone());
                        tx.upsert_thing(&t).await?;
                        Some(name)
                    };
                    let issued = IssuedCertificate {
                        der: cert.der.clone(),
                        info: cert.info.clone(),
                    };
                    // A record with a finding is registered revoked (a
                    // clone's key must not become live twice).
                    let status = if note.is_some() {
                        CertificateStatus::Revoked
                    } else {
                        CertificateStatus::PendingActivation
                    };
                    tx.insert_certificate(&certificate_record(
                        &issued,
                        &auth.batch_ca,
                        thing_name.as_deref(),
                        status,
                        Some(&batch.id),
                    ))
                    .await?;
                    registered += 1;
                    inserted.insert(certificate_id.clone());
                    if let Some(n) = &note {
                        let reason = if n.kind == FindingKind::Excess {
                            idmint_registry::RevocationReason::PrivilegeWithdrawn
                        } else {
                            idmint_registry::RevocationReason::KeyCompromise
                        };
                        tx.set_certificate_status(
                            certificate_id,
                            CertificateStatus::Revoked,
                            Some(reason),
                        )
                        .await?;
                        revoked.insert(certificate_id.clone());
                    }
                    tx.audit(
                        certificate_id,
                        AuditEvent::OfflineIssued {
                            batch: batch.id.to_string(),
                            seq: r.seq,
                            serial: *serial,
                            hw_id: hw_id.clone(),
                            thing: thing_name.map(ThingName::into_string),
                            time: r.time,
                            finding: note.as_ref().map(|n| n.message.clone()),
                        },
                    );
                }
                Event::Provisioned {
                    certificate_id,
                    serial,
                    locked,
                } => {
                    row.certificate_id = Some(certificate_id.to_string());
                    row.serial = i64::try_from(*serial).ok();
                    if inserted.contains(certificate_id) && !revoked.contains(certificate_id) {
                        tx.set_certificate_status(certificate_id, CertificateStatus::Active, None)
                            .await?;
                    }
                    tx.audit(
                        certificate_id,
                        AuditEvent::OfflineProvisioned {
                            batch: batch.id.to_string(),
                            seq: r.seq,
                            serial: *serial,
                            locked: *locked,
                            time: r.time,
                        },
                    );
                }
                Event::Spoiled {
                    certificate_id,
                    serial,
                    stage,
                    reason,
                } => {
                    row.certificate_id = Some(certificate_id.to_string());
                    row.serial = i64::try_from(*serial).ok();
                    if inserted.contains(certificate_id) && !revoked.contains(certificate_id) {
                        tx.set_certificate_status(
                            certificate_id,
                            CertificateStatus::Revoked,
                            Some(SPOILED_REASON),
                        )
                        .await?;
                    }
                    if !uncounted.contains(certificate_id) {
                        tx.add_spoiled(&batch.id, 1, &format!("{stage}: {reason}"))
                            .await?;
                    }
                    tx.audit(
                        certificate_id,
                        AuditEvent::OfflineSpoiled {
                            batch: batch.id.to_string(),
                            seq: r.seq,
                            serial: *serial,
                            stage: stage.clone(),
                            reason: reason.clone(),
                            time: r.time,
                        },
                    );
                }
                Event::Closed { .. } => {}
            }
            rows.push(row);
        }
        tx.insert_reconciled_records(&rows).await?;
        tx.commit().await?;
        Ok(registered)
    }
}

/// Unix seconds as RFC 3339 (or the number, if out of range).
fn rfc3339(t: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|d| {
            d.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| t.to_string())
}

/// A finding when a record for `hw_id` in `batch` names `thing` that is
/// another batch's (or of none) or another device's: the record's
/// certificate is registered revoked and attached to nothing.
fn foreign_thing(thing: &Thing, batch: &str, hw_id: &str) -> Option<Note> {
    let owner = match (thing.batch.as_deref(), thing.device_id.as_deref()) {
        (Some(b), _) if b != batch => format!("batch {b}"),
        (None, _) => "no batch".to_string(),
        (_, Some(d)) if d != hw_id => format!("device {d}"),
        _ => return None,
    };
    Some(Note {
        kind: FindingKind::Duplicate,
        message: format!(
            "hardware id {hw_id} names thing {} of {owner}: not attached",
            thing.name
        ),
        already_registered: false,
    })
}

/// At most [`MAX_PER_KIND`] findings of each kind, then one that counts
/// the rest.
fn cap(findings: Vec<Finding>) -> Vec<Finding> {
    let mut per_kind: BTreeMap<FindingKind, usize> = BTreeMap::new();
    let mut kept = Vec::new();
    let mut dropped: BTreeMap<FindingKind, (bool, usize)> = BTreeMap::new();
    for f in findings {
        let n = per_kind.entry(f.kind).or_insert(0);
        *n += 1;
        if *n <= MAX_PER_KIND {
            kept.push(f);
        } else {
            let d = dropped.entry(f.kind).or_insert((f.rejects, 0));
            d.1 += 1;
        }
    }
    for (kind, (rejects, n)) in dropped {
        let mut f = Finding::new(kind, None, None, format!("and {n} more {kind} findings"));
        f.rejects = rejects;
        kept.push(f);
    }
    kept
}
