//! `idmint station run --authorization AUTH --log LOG`: the offline
//! station. Same device steps as the online station; the quota, the serial
//! range and the issuance window come from the signed limits, certificates
//! are signed by the batch CA, and every step is appended to the signed
//! issuance log instead of the registry.
//!
//! Restart safety: before it issues anything the station reads its log back
//! (checking the chain and every signature) and its `LOG.state` counter. A
//! log shorter than the state says, or one that does not match it, or a
//! missing log with a state that says records were written, stops the
//! station: deleting or truncating the log cannot reset the count. An
//! issued certificate whose device never finished (the station was killed)
//! is recorded as spoiled first. `LOG.lock` keeps a second station off the
//! same log.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Mutex, MutexGuard};

use idmint_pki::{CertificateAuthority, IssuedCertificate, Pkcs11Config, Profile};
use idmint_registry::CertificateId;
use serde::Serialize;

use super::bundle::{sha256_hex, Authorization, BatchLimits};
use super::log::{check_log, lock_path, read_state, short, state_path, Event, LogWriter, Tally};
use crate::{
    fail, run_line, DeviceOutcome, Failed, IssueRequest, LineIssuer, LineOptions, StationBackend,
};
use idmint_flows::FlowError;

/// How certificates are dated back (as `idmint-pki` does), seconds.
const BACKDATE_SECS: i64 = 300;
const DAY_SECS: i64 = 86_400;

/// Where an offline station finds its authorization and keeps its log.
#[derive(Clone, Debug)]
pub struct OfflineStationOptions {
    /// The authorization bundle.
    pub authorization: PathBuf,
    /// The age identity file that opens the batch CA key (age bundles).
    pub identity: Option<PathBuf>,
    /// The issuance log (created, or continued).
    pub log: PathBuf,
    /// The PKCS#11 module and PIN (PKCS#11 bundles).
    pub pkcs11: Option<Pkcs11Config>,
}

/// What an offline station run did.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OfflineRun {
    /// The batch.
    pub batch: String,
    /// One outcome per device attempted in this run.
    pub outcomes: Vec<DeviceOutcome>,
    /// The authorized count.
    pub count: u64,
    /// Certificates issued under the authorization so far (all runs).
    pub issued: u64,
    /// Devices provisioned so far.
    pub provisioned: u64,
    /// Certificates spoiled so far.
    pub spoiled: u64,
    /// Certificates left to issue.
    pub remaining: u64,
    /// Certificates of an earlier, interrupted run recorded as spoiled now.
    pub recovered: u64,
    /// Records in the log.
    pub records: u64,
    /// The log.
    pub log: PathBuf,
}

/// Runs an offline station: opens the authorization, its batch CA key and
/// the log, provisions devices like the online station, and closes the log
/// with a `closed` record.
pub fn run_offline_station(
    options: &OfflineStationOptions,
    line: &LineOptions,
    stop: &AtomicBool,
    report: &(dyn Fn(&DeviceOutcome) + Sync),
) -> Result<OfflineRun, FlowError> {
    if line.devices.is_empty() && line.count != Some(0) {
        return Err(FlowError::Invalid("give at least one --device".into()));
    }
    if line.partition.is_some() {
        return Err(FlowError::Invalid(
            "--partition is for the online station (--batch with this data directory), not an offline one".into(),
        ));
    }
    let auth = Authorization::read(&options.authorization)?;
    let ca = auth.open_batch_ca(options.identity.as_deref(), options.pkcs11.as_ref())?;
    let _lock = lock_log(&options.log)?;
    let (writer, tally, next_serial, closed) = open_log(&options.log, &auth, &ca)?;
    let limits = auth.limits.clone();
    let backend = OfflineBackend {
        limits: limits.clone(),
        ca,
        inner: Mutex::new(Inner {
            writer,
            tally,
            next_serial,
            closed,
        }),
    };
    let recovered = backend.recover()?;
    let mut chain_tail = vec![auth.batch_ca_der.clone()];
    chain_tail.extend(
        auth.chain_der
            .iter()
            .take(auth.chain_der.len().saturating_sub(1))
            .cloned(),
    );
    let issuer = LineIssuer {
        batch_id: limits.batch.clone(),
        product: limits.product.clone(),
        profile_name: limits.profile_name.clone(),
        profile: limits.profile.clone(),
        chain_tail,
        org: limits.org.clone(),
        preferred: limits.key_type,
        allow_inject: limits.allow_inject,
        inject_refusal: None,
        partition_chain: Vec::new(),
    };
    let outcomes = run_line(&backend, &issuer, line, stop, report);
    backend.close()?;
    let inner = backend.lock().map_err(|f| FlowError::Invalid(f.reason))?;
    Ok(OfflineRun {
        batch: limits.batch.clone(),
        outcomes,
        count: limits.count,
        issued: inner.tally.issued,
        provisioned: inner.tally.provisioned,
        spoiled: inner.tally.spoiled,
        remaining: limits.count.saturating_sub(inner.tally.issued),
        recovered,
        records: inner.writer.seq,
        log: options.log.clone(),
    })
}

/// Takes `LOG.lock` for the life of the returned file.
pub(super) fn lock_log(log: &Path) -> Result<File, FlowError> {
    let path = lock_path(log);
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| FlowError::io(&path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(FlowError::Conflict(format!(
            "another station is writing {} ({} is locked)",
            log.display(),
            path.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(FlowError::io(&path, e)),
    }
}

/// Reads the log back and checks it against the state file; returns the
/// writer positioned at its end, the tally, the next serial number and
/// whether the last record is `closed`.
fn open_log(
    path: &Path,
    auth: &Authorization,
    ca: &CertificateAuthority,
) -> Result<(LogWriter, Tally, u64, bool), FlowError> {
    let limits = &auth.limits;
    let state_file = state_path(path);
    let state = read_state(&state_file)?;
    if let Some(st) = &state {
        if st.authorization != auth.id {
            return Err(FlowError::Conflict(format!(
                "{} belongs to another authorization (batch {}): use a new --log for batch {}",
                path.display(),
                st.batch,
                limits.batch
            )));
        }
    }
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(FlowError::io(path, e)),
    };
    let mut tally = Tally::default();
    let mut closed = false;
    let (seq, head) = if bytes.is_empty() {
        if let Some(st) = state.as_ref().filter(|s| s.records > 0) {
            return Err(FlowError::Invalid(format!(
                "{} is missing or empty, but {} says {} records were written: restore the log (a station does not start over under an authorization it has issued under)",
                path.display(),
                state_file.display(),
                st.records
            )));
        }
        (0, auth.id.clone())
    } else {
        let checked = check_log(&bytes, &auth.id, &limits.batch, &ca.info().spki_der);
        if let Some(f) = checked.findings.first() {
            return Err(FlowError::Invalid(format!(
                "{} cannot be continued: {f}",
                path.display()
            )));
        }
        let records = checked.records;
        if let Some(st) = &state {
            let n = records.len() as u64;
            if st.records > n {
                return Err(FlowError::Invalid(format!(
                    "{} holds {n} records but {} says {} were written: the log was truncated or replaced",
                    path.display(),
                    state_file.display(),
                    st.records
                )));
            }
            if st.records > 0 {
                let at = usize::try_from(st.records - 1).unwrap_or(usize::MAX);
                if records.get(at).map(|r| r.hash.as_str()) != Some(st.head.as_str()) {
                    return Err(FlowError::Invalid(format!(
                        "{} does not match {} at record {} (expected hash {}): the log was replaced",
                        path.display(),
                        state_file.display(),
                        st.records,
                        short(&st.head)
                    )));
                }
            }
        }
        for r in &records {
            tally.add(&r.event);
        }
        closed = matches!(records.last().map(|r| &r.event), Some(Event::Closed { .. }));
        match records.last() {
            Some(last) => (last.seq, last.hash.clone()),
            None => (0, auth.id.clone()),
        }
    };
    let mut next_serial = tally
        .last_serial
        .map(|s| s.saturating_add(1))
        .unwrap_or(limits.serial_first)
        .max(limits.serial_first);
    if let Some(st) = &state {
        next_serial = next_serial.max(st.next_serial);
    }
    let writer = LogWriter::open(path, &limits.batch, &auth.id, seq, head)?;
    Ok((writer, tally, next_serial, closed))
}

struct Inner {
    writer: LogWriter,
    tally: Tally,
    next_serial: u64,
    /// Whether the last record is `closed`.
    closed: bool,
}

/// The offline station's counting and recording: the signed limits, the
/// batch CA, the issuance log.
struct OfflineBackend {
    limits: BatchLimits,
    ca: CertificateAuthority,
    inner: Mutex<Inner>,
}

impl OfflineBackend {
    fn lock(&self) -> Result<MutexGuard<'_, Inner>, Failed> {
        self.inner
            .lock()
            .map_err(|_| fail("issue", "the station's log writer failed earlier"))
    }

    fn append(&self, inner: &mut Inner, event: Event) -> Result<(), FlowError> {
        let issued = inner.tally.issued + u64::from(matches!(event, Event::Issued { .. }));
        let next_serial = inner.next_serial;
        inner
            .writer
            .append(self.ca.signer(), event.clone(), issued, next_serial)?;
        inner.tally.add(&event);
        inner.closed = matches!(event, Event::Closed { .. });
        Ok(())
    }

    /// Records every certificate of an interrupted run as spoiled.
    fn recover(&self) -> Result<u64, FlowError> {
        let mut inner = self.lock().map_err(|f| FlowError::Invalid(f.reason))?;
        let open: Vec<(CertificateId, u64)> = inner
            .tally
            .open
            .iter()
            .map(|(c, s)| (c.clone(), *s))
            .collect();
        for (certificate_id, serial) in &open {
            self.append(
                &mut inner,
                Event::Spoiled {
                    certificate_id: certificate_id.clone(),
                    serial: *serial,
                    stage: "station".into(),
                    reason: "the station stopped before the device finished".into(),
                },
            )?;
        }
        Ok(open.len() as u64)
    }

    /// Appends the `closed` record (unless the log already ends with one).
    fn close(&self) -> Result<(), FlowError> {
        let mut inner = self.lock().map_err(|f| FlowError::Invalid(f.reason))?;
        if inner.closed {
            return Ok(());
        }
        let event = Event::Closed {
            issued: inner.tally.issued,
            provisioned: inner.tally.provisioned,
            spoiled: inner.tally.spoiled,
        };
        self.append(&mut inner, event)
    }

    /// The authorization's limits, checked before a device is touched and
    /// again under the log lock before a certificate is signed.
    fn check_limits(&self, inner: &Inner) -> Result<(), Failed> {
        let l = &self.limits;
        let t = &inner.tally;
        if t.issued >= l.count {
            return Err(fail(
                "quota",
                format!(
                    "authorization {} quota exhausted: {} of {} issued ({} spoiled)",
                    l.batch, t.issued, l.count, t.spoiled
                ),
            ));
        }
        if inner.next_serial > l.serial_last {
            return Err(fail(
                "quota",
                format!(
                    "authorization {} serial range {}..{} is used up",
                    l.batch, l.serial_first, l.serial_last
                ),
            ));
        }
        let now = idmint_registry::now();
        if now < l.not_before {
            return Err(fail(
                "quota",
                format!(
                    "authorization {} is not valid yet (check the station's clock)",
                    l.batch
                ),
            ));
        }
        if now >= l.not_after {
            return Err(fail(
                "quota",
                format!("authorization {} has expired", l.batch),
            ));
        }
        Ok(())
    }

    /// The profile with the validity capped to the batch CA's, so no
    /// device certificate outlives its issuer.
    fn profile(&self) -> Result<Profile, Failed> {
        let left = self.limits.not_after - idmint_registry::now() + BACKDATE_SECS;
        let days = u32::try_from(left / DAY_SECS).unwrap_or(u32::MAX);
        if days == 0 {
            return Err(fail(
                "quota",
                format!(
                    "authorization {} expires within a day: no certificate can end before its batch CA does",
                    self.limits.batch
                ),
            ));
        }
        let mut profile = self.limits.profile.clone();
        profile.validity_days = profile.validity_days.min(days);
        Ok(profile)
    }
}

impl StationBackend for OfflineBackend {
    fn check_quota(&self) -> Result<(), Failed> {
        let inner = self.lock()?;
        self.check_limits(&inner)
    }

    fn admit(&self, hw_id: &str) -> Result<String, Failed> {
        let inner = self.lock()?;
        if let Some(serial) = inner.tally.live_hw.get(hw_id) {
            return Err(fail(
                "hello",
                format!(
                    "refused clone: hardware id {hw_id} is already provisioned under authorization {} (serial {serial})",
                    self.limits.batch
                ),
            ));
        }
        Ok(hw_id.to_string())
    }

    fn issue(
        &self,
        request: &IssueRequest<'_>,
        outcome: &mut DeviceOutcome,
    ) -> Result<IssuedCertificate, Failed> {
        let mut inner = self.lock()?;
        self.check_limits(&inner)?;
        let key_hash = sha256_hex(request.key.spki_der());
        if inner.tally.keys.contains(&key_hash) {
            return Err(fail(
                "issue",
                format!(
                    "refused clone: the device's public key is already certified under authorization {}",
                    self.limits.batch
                ),
            ));
        }
        if inner.tally.live_hw.contains_key(request.hw_id) {
            return Err(fail(
                "issue",
                format!(
                    "refused clone: hardware id {} is already provisioned under authorization {}",
                    request.hw_id, self.limits.batch
                ),
            ));
        }
        let serial = inner.next_serial;
        let values = request.values.clone().with("serial", serial.to_string());
        let profile = self.profile()?;
        let certificate = self
            .ca
            .issue(request.key, &profile, &values)
            .map_err(|e| fail("issue", e))?;
        let info = &certificate.info;
        let event = Event::Issued {
            serial,
            hw_id: request.hw_id.to_string(),
            thing: request.thing.to_string(),
            certificate_id: info.id.clone(),
            public_key_sha256: info.public_key_sha256.clone(),
            key_type: request.key.key_type().to_string(),
            injected: request.injected,
            certificate: super::bundle::b64_encode(&certificate.der),
        };
        inner.next_serial = serial.saturating_add(1);
        if let Err(e) = self.append(&mut inner, event) {
            // Not logged, not handed out: the certificate is dropped here.
            inner.next_serial = serial;
            return Err(fail("issue", format!("writing the issuance log: {e}")));
        }
        outcome.certificate_id = Some(info.id.clone());
        outcome.serial = Some(serial);
        Ok(certificate)
    }

    fn provisioned(
        &self,
        issued: &IssuedCertificate,
        outcome: &DeviceOutcome,
        locked: bool,
    ) -> Result<(), Failed> {
        let mut inner = self.lock()?;
        let event = Event::Provisioned {
            certificate_id: issued.info.id.clone(),
            serial: outcome.serial.unwrap_or_default(),
            locked,
        };
        self.append(&mut inner, event)
            .map_err(|e| fail("register", format!("writing the issuance log: {e}")))
    }

    fn spoil(&self, certificate_id: &CertificateId, failed: &Failed) -> Result<(), Failed> {
        let mut inner = self.lock()?;
        let serial = inner
            .tally
            .open
            .get(certificate_id)
            .copied()
            .unwrap_or_default();
        let event = Event::Spoiled {
            certificate_id: certificate_id.clone(),
            serial,
            stage: failed.stage.to_string(),
            reason: failed.reason.clone(),
        };
        self.append(&mut inner, event)
            .map_err(|e| fail("spoil", format!("writing the issuance log: {e}")))
    }
}
