//! `manifest import`: read, check in parallel, register in batched
//! transactions, report.
//!
//! Idempotence: an entry whose certificate is already registered to the
//! same thing (a re-import) is counted as "already registered", not
//! rejected. A certificate registered to another thing, a unique id or
//! public key registered with another certificate, or any of these twice in
//! one manifest, is rejected with a duplicate reason. The import batch is
//! created with the first new entry, so a re-import that registers nothing
//! leaves no empty batch behind.
//!
//! A certificate accepted through an offered intermediate is registered
//! with it (the intermediate stored once, its chain recorded in the same
//! transaction as the certificate), so an export hands it on.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Instant;

use idmint_pki::CertificateInfo;
use idmint_registry::{
    AuditEvent, BatchId, BatchKind, CertificateStatus, NewBatch, NewCertificate, NewChain,
    NewIntermediate, NewThing,
};

use super::check::{CheckCache, CheckedEntry, Checker};
use super::source::read_entries;
use super::{LogSigner, ManifestEntry, ManifestFormat, RawEntry, Reason, Rejection};
use idmint_flows::{FlowError, Idmint};

/// Entries per work unit handed to a checking thread.
const CHUNK: usize = 128;
/// Entries per registry transaction.
const COMMIT: usize = 4096;
/// Chunks in flight at most between the reader and the registry writer:
/// queued, being checked, or waiting for an earlier chunk to be written.
/// It bounds the memory of the whole pipeline at any manifest size, and is
/// large enough (a transaction's worth) that the checking threads keep working
/// while a transaction commits.
const WINDOW: usize = COMMIT / CHUNK;

/// Where a thing's name comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThingNameFrom {
    /// The certificate's subject common name.
    Cn,
    /// The entry's unique id (the chip serial).
    UniqueId,
    /// The certificate's serial number (hex).
    Serial,
}

impl FromStr for ThingNameFrom {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "cn" => Ok(ThingNameFrom::Cn),
            "unique-id" => Ok(ThingNameFrom::UniqueId),
            "serial" => Ok(ThingNameFrom::Serial),
            other => Err(format!(
                "unknown thing name source {other:?} (cn, unique-id, serial)"
            )),
        }
    }
}

/// What to import and how.
#[derive(Clone, Debug)]
pub struct ImportOptions {
    /// The manifest: a file, or a folder of PEM certificates.
    pub path: PathBuf,
    /// The format (detected when `None`).
    pub format: Option<ManifestFormat>,
    /// The registered CA the certificates must chain to.
    pub ca: String,
    /// Initial certificate state.
    pub status: CertificateStatus,
    /// Where thing names come from (`None`: the entry's own thing name if it
    /// has one, else the unique id).
    pub thing_name_from: Option<ThingNameFrom>,
    /// The profile whose key types are allowed.
    pub profile: String,
    /// The import batch id (generated when `None`).
    pub batch: Option<String>,
    /// Checking threads.
    pub jobs: usize,
}

/// What an import did.
#[derive(Clone, Debug, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ImportSummary {
    /// The format read.
    pub format: String,
    /// Entries read.
    pub entries: u64,
    /// Newly registered.
    pub registered: u64,
    /// Already registered identically (re-import).
    pub already_registered: u64,
    /// Rejected (see the report).
    pub rejected: u64,
    /// The import batch, if anything was registered.
    pub batch: Option<String>,
    /// Wall time.
    pub seconds: f64,
    /// Entries per second.
    pub per_second: f64,
}

type Checked = Result<CheckedEntry, Rejection>;

impl crate::Manifests<'_> {
    /// Imports a manifest. `on_reject` sees each rejected entry in manifest
    /// order; `progress` the number of entries done so far.
    pub async fn import_manifest(
        &self,
        actor: &str,
        options: &ImportOptions,
        on_reject: &mut (dyn FnMut(&Rejection) -> Result<(), FlowError> + Send),
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<ImportSummary, FlowError> {
        let started = Instant::now();
        let ca = self.store().require_ca(&options.ca).await?;
        let profile = self.config().profile(&options.profile)?;
        let format = match options.format {
            Some(f) => f,
            None => ManifestFormat::detect(&options.path)?,
        };
        if !options.path.exists() {
            return Err(FlowError::io(
                &options.path,
                std::io::Error::from(std::io::ErrorKind::NotFound),
            ));
        }
        let signer = match &ca.signer_der {
            Some(der) => Some(LogSigner::from_certificate_der(der)?),
            None if format == ManifestFormat::Signed => {
                return Err(FlowError::Invalid(format!(
                    "CA {:?} has no manifest log signer: register it with `ca register --signer`",
                    ca.name
                )))
            }
            None => None,
        };
        let checker = Arc::new(Checker::new(
            ca.certificate_der.clone(),
            signer,
            profile,
            options.thing_name_from,
            time::OffsetDateTime::now_utc(),
        ));
        let batch_id = match &options.batch {
            Some(b) => BatchId::parse(b).map_err(|e| FlowError::Invalid(e.to_string()))?,
            None => new_batch_id()?,
        };
        let existing_batch = self.store().batch(&batch_id).await?;
        if let Some(b) = &existing_batch {
            if b.kind != BatchKind::Import || b.ca != ca.name {
                return Err(FlowError::Conflict(format!(
                    "batch {batch_id:?} exists and is not an import batch of CA {:?}",
                    ca.name
                )));
            }
        }

        // Reader thread -> checking threads -> (ordered) registry writer
        // here. The reader takes a slot before it sends a chunk and the
        // writer frees it when it takes that chunk in order, so at most
        // WINDOW chunks are anywhere in between, however unevenly the
        // checking threads progress.
        let jobs = options.jobs.max(1);
        let (slot_tx, slot_rx) = mpsc::sync_channel::<()>(WINDOW);
        let (tx_raw, rx_raw) = mpsc::sync_channel::<(u64, Vec<RawEntry>)>(jobs * 2);
        let (tx_checked, mut rx_checked) =
            tokio::sync::mpsc::channel::<(u64, Vec<Checked>)>(WINDOW);
        let path = options.path.clone();
        let reader = std::thread::spawn(move || read_in_chunks(&path, format, &slot_tx, &tx_raw));
        let rx_raw = Arc::new(Mutex::new(rx_raw));
        let mut workers = Vec::new();
        for _ in 0..jobs {
            let (rx_raw, tx_checked, checker) =
                (rx_raw.clone(), tx_checked.clone(), checker.clone());
            workers.push(std::thread::spawn(move || {
                let mut cache = CheckCache::default();
                loop {
                    let next = match rx_raw.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => return,
                    };
                    let Ok((seq, chunk)) = next else { return };
                    let checked: Vec<Checked> = chunk
                        .into_iter()
                        .map(|raw| {
                            ManifestEntry::parse(raw).and_then(|e| checker.check(e, &mut cache))
                        })
                        .collect();
                    if tx_checked.blocking_send((seq, checked)).is_err() {
                        return;
                    }
                }
            }));
        }
        drop(tx_checked);

        let mut run = Run {
            idmint: self,
            actor,
            options,
            ca: ca.name.clone(),
            batch_id,
            batch_created_now: false,
            batch_exists: existing_batch.is_some(),
            intermediates: HashMap::new(),
            summary: ImportSummary {
                format: format.as_str().to_string(),
                ..ImportSummary::default()
            },
        };
        let mut reorder: BTreeMap<u64, Vec<Checked>> = BTreeMap::new();
        let mut next_seq = 0u64;
        let mut pending: Vec<CheckedEntry> = Vec::with_capacity(COMMIT + CHUNK);
        let mut result = Ok(());
        'outer: while let Some((seq, chunk)) = rx_checked.recv().await {
            reorder.insert(seq, chunk);
            while let Some(chunk) = reorder.remove(&next_seq) {
                next_seq += 1;
                // The reader took this chunk's slot before sending it.
                let _ = slot_rx.try_recv();
                for item in chunk {
                    run.summary.entries += 1;
                    match item {
                        Ok(e) => pending.push(e),
                        Err(r) => {
                            run.summary.rejected += 1;
                            if let Err(e) = on_reject(&r) {
                                result = Err(e);
                                break 'outer;
                            }
                        }
                    }
                }
                if pending.len() >= COMMIT {
                    if let Err(e) = run.commit(&mut pending, on_reject).await {
                        result = Err(e);
                        break 'outer;
                    }
                    progress(run.summary.entries);
                }
            }
        }
        drop(rx_checked);
        drop(slot_rx);
        if result.is_ok() && !pending.is_empty() {
            result = run.commit(&mut pending, on_reject).await;
        }
        for w in workers {
            let _ = w.join();
        }
        let read = reader
            .join()
            .map_err(|_| FlowError::Internal("the manifest reader thread panicked".into()))?;
        result?;
        read?;
        progress(run.summary.entries);
        run.finish(started).await
    }
}

fn read_in_chunks(
    path: &Path,
    format: ManifestFormat,
    slot: &mpsc::SyncSender<()>,
    tx: &mpsc::SyncSender<(u64, Vec<RawEntry>)>,
) -> Result<(), FlowError> {
    let mut seq = 0u64;
    let mut chunk = Vec::with_capacity(CHUNK);
    let send =
        |seq: u64, chunk: Vec<RawEntry>| slot.send(()).is_ok() && tx.send((seq, chunk)).is_ok();
    let mut open = true;
    read_entries(path, format, &mut |raw| {
        chunk.push(raw);
        if chunk.len() >= CHUNK {
            open = send(
                seq,
                std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK)),
            );
            seq += 1;
        }
        open
    })?;
    if open && !chunk.is_empty() {
        send(seq, chunk);
    }
    Ok(())
}

fn new_batch_id() -> Result<BatchId, FlowError> {
    let mut random = [0u8; 3];
    idmint_pki::random_fill(&mut random)?;
    let now = time::OffsetDateTime::now_utc();
    let id = format!(
        "import-{:04}{:02}{:02}T{:02}{:02}{:02}-{}",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second(),
        hex::encode(random)
    );
    BatchId::parse(&id).map_err(|e| FlowError::Invalid(e.to_string()))
}

struct Run<'a> {
    idmint: &'a Idmint,
    actor: &'a str,
    options: &'a ImportOptions,
    ca: String,
    batch_id: BatchId,
    batch_created_now: bool,
    batch_exists: bool,
    /// Intermediates met so far, by DER: their certificate id, and whether
    /// a committed transaction of this run has stored them.
    intermediates: HashMap<Vec<u8>, (String, bool)>,
    summary: ImportSummary,
}

impl Run<'_> {
    /// Classifies `pending` against the registry and registers the new
    /// entries, in one transaction.
    async fn commit(
        &mut self,
        pending: &mut Vec<CheckedEntry>,
        on_reject: &mut (dyn FnMut(&Rejection) -> Result<(), FlowError> + Send),
    ) -> Result<(), FlowError> {
        let entries = std::mem::take(pending);
        let mut tx = self.idmint.store().begin(self.actor).await?;
        let ids: Vec<&str> = entries.iter().map(|e| e.info.id.as_str()).collect();
        let certs = tx.registered_certificates(&ids).await?;
        let keys: Vec<&str> = entries
            .iter()
            .map(|e| e.info.public_key_sha256.as_str())
            .collect();
        let pks = tx.registered_public_keys(&keys).await?;
        let uids: Vec<&str> = entries.iter().map(|e| e.unique_id.as_str()).collect();
        let devices = tx.registered_device_ids(&uids).await?;
        let names: Vec<&str> = entries.iter().map(|e| e.thing_name.as_str()).collect();
        let things = tx.registered_things(&names).await?;

        let (mut seen_ids, mut seen_keys, mut seen_uids, mut seen_names) = (
            HashSet::new(),
            HashSet::new(),
            HashSet::new(),
            HashSet::new(),
        );
        // First the verdicts, in manifest order; then the new entries are
        // moved (not copied) into what the registry writes.
        let mut register = Vec::with_capacity(entries.len());
        for e in &entries {
            let reject = |reason: Reason, message: String| Rejection {
                index: e.index,
                unique_id: Some(e.unique_id.clone()),
                reason,
                message,
            };
            let verdict = if let Some(reg) = certs.get(e.info.id.as_str()) {
                let this_run =
                    self.batch_created_now && reg.batch.as_deref() == Some(self.batch_id.as_str());
                if this_run {
                    Some(reject(
                        Reason::DuplicateCertificate,
                        "the certificate appears twice in the manifest".into(),
                    ))
                } else if reg.thing.as_deref() == Some(e.thing_name.as_str()) && reg.ca == self.ca {
                    self.summary.already_registered += 1;
                    register.push(false);
                    continue;
                } else {
                    Some(reject(
                        Reason::DuplicateCertificate,
                        format!(
                            "certificate {} is already registered (CA {}, thing {})",
                            e.info.id,
                            reg.ca,
                            reg.thing.as_deref().unwrap_or("-")
                        ),
                    ))
                }
            } else if !seen_ids.insert(e.info.id.as_str()) {
                Some(reject(
                    Reason::DuplicateCertificate,
                    "the certificate appears twice in the manifest".into(),
                ))
            } else if let Some(thing) = devices.get(&e.unique_id) {
                Some(reject(
                    Reason::DuplicateUniqueId,
                    format!("unique id {} is already registered to thing {thing} with another certificate", e.unique_id),
                ))
            } else if !seen_uids.insert(e.unique_id.as_str()) {
                Some(reject(
                    Reason::DuplicateUniqueId,
                    format!("unique id {} appears twice in the manifest", e.unique_id),
                ))
            } else if let Some(other) = pks.get(&e.info.public_key_sha256) {
                Some(reject(
                    Reason::DuplicatePublicKey,
                    format!("the public key is already registered with certificate {other}"),
                ))
            } else if !seen_keys.insert(e.info.public_key_sha256.as_str()) {
                Some(reject(
                    Reason::DuplicatePublicKey,
                    "the public key appears twice in the manifest".into(),
                ))
            } else if things.contains_key(e.thing_name.as_str()) {
                Some(reject(
                    Reason::DuplicateThingName,
                    format!("thing {} exists with another device id", e.thing_name),
                ))
            } else if !seen_names.insert(e.thing_name.as_str()) {
                Some(reject(
                    Reason::DuplicateThingName,
                    format!("thing name {} appears twice in the manifest", e.thing_name),
                ))
            } else {
                None
            };
            register.push(verdict.is_none());
            if let Some(r) = verdict {
                self.summary.rejected += 1;
                on_reject(&r)?;
            }
        }
        let fresh = register.iter().filter(|r| **r).count();
        let mut new_things = Vec::with_capacity(fresh);
        let mut new_certs = Vec::with_capacity(fresh);
        let mut new_intermediates = Vec::new();
        let mut new_chains = Vec::new();
        for (e, _) in entries.into_iter().zip(register).filter(|(_, r)| *r) {
            if !e.chain.is_empty() {
                let mut ids = Vec::with_capacity(e.chain.len());
                for der in &e.chain {
                    ids.push(self.intermediate_id(der, &mut new_intermediates)?);
                }
                new_chains.push(NewChain {
                    certificate: e.info.id.to_string(),
                    intermediates: ids,
                });
            }
            new_certs.push(NewCertificate {
                id: e.info.id,
                serial: e.info.serial,
                ca: self.ca.clone(),
                thing: Some(e.thing_name.to_string()),
                status: self.options.status,
                subject: e.info.subject,
                key_type: e.info.key_type.map(|k| k.to_string()),
                not_before: e.info.not_before.unix_timestamp(),
                not_after: e.info.not_after.unix_timestamp(),
                public_key_sha256: e.info.public_key_sha256,
                batch: Some(self.batch_id.clone()),
                der: e.der,
            });
            new_things.push(NewThing {
                name: e.thing_name,
                thing_type: None,
                attributes: e.attributes,
                device_id: Some(e.unique_id),
                batch: Some(self.batch_id.clone()),
            });
        }
        if new_certs.is_empty() {
            return Ok(());
        }
        if !self.batch_exists {
            tx.insert_batch(&NewBatch {
                id: self.batch_id.clone(),
                kind: BatchKind::Import,
                product: self.ca.clone(),
                count: 0,
                profile: self.options.profile.clone(),
                ca: self.ca.clone(),
                factory: None,
                allow_inject: false,
                params: serde_json::json!({"source": self.options.path.display().to_string(), "format": self.summary.format}),
            })
            .await?;
        }
        tx.record_imported(&self.batch_id, new_certs.len() as i64)
            .await?;
        tx.register_devices(AuditEvent::CertificateImport, &new_things, &new_certs)
            .await?;
        tx.insert_intermediates(&new_intermediates).await?;
        tx.insert_chains(&new_chains).await?;
        tx.commit().await?;
        for i in &new_intermediates {
            if let Some(known) = self.intermediates.get_mut(&i.der) {
                known.1 = true;
            }
        }
        if !self.batch_exists {
            self.batch_exists = true;
            self.batch_created_now = true;
        }
        self.summary.registered += new_certs.len() as u64;
        Ok(())
    }

    /// The certificate id of an intermediate; queues it in `new` unless
    /// this run stored it already (or queued it for this transaction).
    fn intermediate_id(
        &mut self,
        der: &[u8],
        new: &mut Vec<NewIntermediate>,
    ) -> Result<String, FlowError> {
        if let Some((id, stored)) = self.intermediates.get(der) {
            if !*stored && !new.iter().any(|i| i.id == *id) {
                new.push(NewIntermediate {
                    id: id.clone(),
                    subject: CertificateInfo::from_der(der)?.subject,
                    der: der.to_vec(),
                });
            }
            return Ok(id.clone());
        }
        let info = CertificateInfo::from_der(der)?;
        let id = info.id.into_string();
        self.intermediates.insert(der.to_vec(), (id.clone(), false));
        new.push(NewIntermediate {
            id: id.clone(),
            subject: info.subject,
            der: der.to_vec(),
        });
        Ok(id)
    }

    async fn finish(mut self, started: Instant) -> Result<ImportSummary, FlowError> {
        let s = &mut self.summary;
        s.seconds = started.elapsed().as_secs_f64();
        s.per_second = s.entries as f64 / s.seconds.max(1e-9);
        s.batch = (s.registered > 0).then(|| self.batch_id.to_string());
        let mut tx = self.idmint.store().begin(self.actor).await?;
        if s.registered > 0 && self.batch_created_now {
            tx.set_batch_state(&self.batch_id, "COMPLETE", None).await?;
        }
        tx.audit(
            s.batch.as_deref().unwrap_or(&self.ca),
            AuditEvent::ManifestImport {
                source: self.options.path.display().to_string(),
                format: s.format.clone(),
                ca: self.ca.clone(),
                entries: s.entries,
                registered: s.registered,
                already_registered: s.already_registered,
                rejected: s.rejected,
            },
        );
        tx.commit().await?;
        Ok(self.summary)
    }
}
